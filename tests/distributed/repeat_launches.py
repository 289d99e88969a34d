"""Run the engine launches of tests/test_scale_out.py many times and count how each one ended: the robustness
measurement for exit-time aborts ("terminate called without an active exception", SIGABRT after the work is done).

    nice -n 10 .venv/bin/python tests/distributed/repeat_launches.py --launch zero3 --repeats 10
    nice -n 10 .venv/bin/python tests/distributed/repeat_launches.py --launch fsdp2 --repeats 10
    nice -n 10 .venv/bin/python tests/distributed/repeat_launches.py --launch ddp --repeats 20 --core_dumps /tmp/cores

Each line printed is one launch: exit code, seconds, and whether the output names an abort (and which process: a
worker, reported by torch's elastic agent, or the launcher itself). The summary line counts them. Not a test: the
tests run each launch once and fail on any non-zero exit; this script is how often that would happen.
"""

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from test_scale_out import ROOT, TRAIN_FLAGS, WORKER, environment  # noqa: E402
from helpers import free_port, plain_llava_next_video_checkpoint  # noqa: E402


def zero3_command(folder: Path, plain: Path | None) -> list[str]:
    """test_scale_out's ZeRO-3 launch of train.py (tiny config, 2 steps, no intermediate checkpoint)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / "deepspeed_zero3.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", free_port(),
        str(WORKER), str(ROOT / "scripts" / "train.py"), "--output_dir", str(folder / "run"), *TRAIN_FLAGS,
        "--per_device_train_batch_size", "1", "--save_strategy", "no",
    ]


def fsdp2_command(folder: Path, plain: Path | None) -> list[str]:
    """test_scale_out's FSDP2 launch (accelerate's fsdp2_prepare_model from the shipped config)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / "fsdp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", free_port(),
        str(HERE / "fsdp_accelerate_worker.py"), str(plain), str(folder),
    ]


def ddp_command(folder: Path, plain: Path | None) -> list[str]:
    """test_distributed's DDP launch (Trainer on the tiny model, `--multi_gpu` on CPU processes, gloo)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", free_port(),
        str(HERE / "ddp_worker.py"), str(folder),
    ]


LAUNCHES = {"zero3": zero3_command, "fsdp2": fsdp2_command, "ddp": ddp_command}


def outcome(result: subprocess.CompletedProcess) -> str:
    text = result.stdout + result.stderr
    if result.returncode == 0:
        return "ok" if "terminate called" not in text else "ok-but-terminate-printed"
    if "Signal 6" in text or "SIGABRT" in text:
        return "worker SIGABRT"
    if result.returncode in (-6, 134):
        return "launcher SIGABRT"
    return "error"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launch", choices=sorted(LAUNCHES), required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write every launch's outcome here")
    parser.add_argument("--keep_failures", type=Path, help="write the output of each failed launch into this folder")
    parser.add_argument(
        "--core_dumps", type=Path,
        help="launch in this folder (kept) with core dumps on: an abort leaves a core file to open with gdb "
             "(`gdb python core`, then `thread apply all bt`), if the kernel's core_pattern is 'core'",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.core_dumps:
        import resource

        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.setrlimit(resource.RLIMIT_CORE, unlimited)  # the launched processes inherit it
        args.core_dumps.mkdir(parents=True, exist_ok=True)
    folder = contextlib.nullcontext(str(args.core_dumps)) if args.core_dumps else tempfile.TemporaryDirectory()
    with folder as scratch:
        plain = None
        if args.launch == "fsdp2":
            plain = Path(scratch, "plain")
            plain_llava_next_video_checkpoint(plain)
        results = []
        for attempt in range(args.repeats):
            folder = Path(scratch, f"launch{attempt}")
            folder.mkdir(exist_ok=True)
            start = time.perf_counter()
            result = subprocess.run(LAUNCHES[args.launch](folder, plain), env=environment(), capture_output=True,
                                    text=True, timeout=900, cwd=folder)
            seconds = time.perf_counter() - start
            kind = outcome(result)
            results.append(
                {"attempt": attempt, "exit": result.returncode, "seconds": round(seconds, 1), "outcome": kind}
            )
            print(f"{args.launch} #{attempt}: exit {result.returncode}, {seconds:.1f} s, {kind}", flush=True)
            if kind != "ok" and args.keep_failures:
                args.keep_failures.mkdir(parents=True, exist_ok=True)
                (args.keep_failures / f"{args.launch}{attempt}.log").write_text(result.stdout + "\n" + result.stderr)
    failed = sum(r["outcome"] != "ok" for r in results)
    print(f"{args.launch}: {failed} of {len(results)} launches did not end cleanly "
          f"({', '.join(sorted({r['outcome'] for r in results}))})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
