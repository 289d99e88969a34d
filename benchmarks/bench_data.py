"""
The training data path (decode + sample + processor + collate) against clip length: clips/s and peak RSS of

- `old`: the previous `scripts/video_data.py` path (kept below as `decode_everything`): decode every frame of the
  clip (squashed to a square at decode time), then take the frames;
- `load_video`: `transformers.video_utils.load_video(backend="pyav")` with the same uniform sampling (it decodes
  sequentially up to the last sampled frame, keeping only the sampled ones);
- `ours`: `LlavaNextARProcessor.read_video` (index the packets, seek to the keyframe before each sampled frame,
  decode only those, straight to the working size with the aspect ratio kept).

Clips are generated here with PyAV (H.264, 30 fps, a keyframe every 60 frames, moving shapes over noise) at 720p and
1080p and 10 / 60 / 300 s, plus the built-in clips. `ours` decodes in the decoder process that bounds each clip's time
(`decode_timeout`); `decoder_process_overhead` measures that against the same decode in the loader's own process.
Each (path, clip) runs in a fresh process, so the peak RSS (`ru_maxrss` of that child) is the path's own (for `ours`,
plus its decoder process's, reported apart). Then clips/s with 0 and 2 DataLoader workers for `ours`, and clips/s
per core next to the measured training step of the tiny model and the 7B-shaped CPU spec (`bench_step.json`).

    python benchmarks/bench_data.py                      # 10/60/300 s at 720p and 1080p (~15 min, mostly writing)
    python benchmarks/bench_data.py --lengths 10 60 --heights 720
    python benchmarks/bench_data.py --quick              # 2 s clips (tests)
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(HERE))


def decode_everything(path: str, size: int | None = None):
    """The previous data path's decoder (`video_data.decode_clip` before issue 13): every frame, squashed to
    `size x size` at decode time (the issue's "1.75 GB at 384 px for 60 s"; it was also cached per process)."""
    import av
    import numpy as np

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        kwargs = {"width": size, "height": size} if size else {}
        frames = [frame.to_ndarray(format="rgb24", **kwargs) for frame in container.decode(stream)]
    return np.stack(frames)


def make_clip(path: Path, seconds: float, height: int, fps: int = 30) -> Path:
    import av
    import numpy as np

    if path.exists():
        return path
    width = height * 16 // 9
    width -= width % 2
    partial = path.with_suffix(".part.mp4")
    container = av.open(str(partial), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "ultrafast", "g": "60", "crf": "28"}
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for index in range(int(seconds * fps)):
        image = background.copy()
        x = (index * 7) % (width - 200)
        image[100:300, x:x + 200] = (index * 3 % 255, 80, 200)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    partial.rename(path)
    return path


def build_processor(size: int, frames: int):
    import train

    model_args, *_ = train.parse_arguments(["--output_dir", "unused", "--tiny_image_size", str(size),
                                            "--tiny_patch_size", "16", "--tiny_hidden_size", "32"])
    _, processor = train.build_tiny_model_and_processor(model_args, "what happens a clip".split(), {})
    processor.frame_sampling, processor.sampling_num_frames = "uniform", frames
    return processor


EXAMPLE_TEXT = [{"from": "human", "value": "<video>\nwhat happens ?"}, {"from": "gpt", "value": "a clip"}]


def one_clip(method: str, path: str, size: int, frames: int, repeats: int) -> dict:
    """Run one data-path method on one clip `repeats` times in this process: seconds per clip (median) + peak RSS."""
    import torch

    from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator
    from llava_next_ar.video_decoding_llava_next_ar import index_video

    torch.set_num_threads(1)
    processor = build_processor(size, frames)
    collator = LlavaNextARDataCollator(processor)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if method == "ours":
            video = processor.read_video(path)
        else:
            total = index_video(path).num_frames
            wanted = processor.clip_frame_indices(total).tolist()
            if method == "old":
                video = torch.from_numpy(decode_everything(path, size)[wanted])
            else:
                from transformers.video_utils import load_video

                array, _ = load_video(path, backend="pyav", sample_indices_fn=lambda metadata, **kw: wanted)
                video = torch.from_numpy(array)
        batch = collator([{"video": video, "conversations": EXAMPLE_TEXT}])
        times.append(time.perf_counter() - start)
        assert batch["video_frames"].shape[1] == frames
    times.sort()
    decoder_peak = 0.0
    if method == "ours":  # its decoding ran in the decoder process: that process's own peak (Linux: VmHWM)
        from llava_next_ar import video_decoding_llava_next_ar as decoding

        status = Path(f"/proc/{decoding._decoder_process().process.pid}/status").read_text()
        decoder_peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": times[len(times) // 2], "peak_rss_mib": peak, "baseline_rss_mib": baseline / 1024,
            "decoder_peak_rss_mib": decoder_peak}


def in_child(method: str, path: str, size: int, frames: int, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", method, path, str(size), str(frames), str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def loader_rate(path: str, size: int, frames: int, workers: int, clips: int) -> float:
    """clips/s of `ours` through a DataLoader (batch 1) over `clips` copies of one clip."""
    import torch

    from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator

    processor = build_processor(size, frames)

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return clips

        def __getitem__(self, index):
            return {"video": processor.read_video(path), "conversations": EXAMPLE_TEXT}

    loader = torch.utils.data.DataLoader(Clips(), batch_size=1, num_workers=workers,
                                         collate_fn=LlavaNextARDataCollator(processor))
    start = time.perf_counter()
    count = sum(1 for _ in loader)
    return count / (time.perf_counter() - start)


def decoder_process_overhead(path: str, size: int, frames: int, repeats: int = 7) -> dict:
    """What the hard decode bound costs per clip: `index_video` + `read_frames` of the processor's sampled frames at
    its working size, in this process (`timeout=None`, no bound) against in the decoder process (`timeout`: killed at
    the limit), alternating; median wall seconds of `repeats`, and CPU seconds (this process + the decoder process:
    less sensitive to other jobs than wall time); plus the first call's start of the decoder process."""
    import torch

    from llava_next_ar import video_decoding_llava_next_ar as decoding

    def decoder_cpu_seconds() -> float:  # Linux: utime + stime of the decoder process, /proc/<pid>/stat
        fields = Path(f"/proc/{decoding._decoder_process().process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    torch.set_num_threads(1)
    processor = build_processor(size, frames)
    start = time.perf_counter()
    index = decoding.index_video(path, timeout=120.0)  # starts the decoder process
    first_call = time.perf_counter() - start
    wanted = processor.clip_frame_indices(index.num_frames).tolist()
    working = processor.video_processor.working_size(index.height, index.width)
    wall, cpu = {"in_process": [], "decoder_process": []}, {"in_process": 0.0, "decoder_process": 0.0}
    for _ in range(repeats):
        for name, timeout in (("in_process", None), ("decoder_process", 120.0)):
            start, start_cpu, start_decoder = time.perf_counter(), time.process_time(), decoder_cpu_seconds()
            decoding.read_frames(decoding.index_video(path, timeout=timeout), wanted, working, timeout=timeout)
            wall[name].append(time.perf_counter() - start)
            cpu[name] += time.process_time() - start_cpu + decoder_cpu_seconds() - start_decoder
    median = {name: sorted(values)[len(values) // 2] for name, values in wall.items()}
    return {**{f"{name}_seconds": value for name, value in median.items()},
            **{f"{name}_cpu_seconds": value / repeats for name, value in cpu.items()},
            "overhead_seconds": median["decoder_process"] - median["in_process"],
            "ratio": median["decoder_process"] / median["in_process"],
            "cpu_ratio": cpu["decoder_process"] / cpu["in_process"], "first_call_seconds": first_call,
            "clip": path, "frames": len(wanted), "size": list(working)}


def tiny_step_seconds() -> float:
    """One training step of the main job's tiny model (batch 4 x 8 frames of 64 px), median of 5."""
    import torch

    import train

    model_args, *_ = train.parse_arguments(["--output_dir", "unused"])
    model, processor = train.build_tiny_model_and_processor(model_args, "what happens a clip".split(), {})
    from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator

    clip = torch.randint(0, 255, (8, 64, 64, 3), dtype=torch.uint8)
    batch = LlavaNextARDataCollator(processor)([{"video": clip, "conversations": EXAMPLE_TEXT}] * 4)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[2]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, path, size, frames, repeats = sys.argv[2:7]
        print(json.dumps(one_clip(method, path, int(size), int(frames), int(repeats))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--heights", type=int, nargs="+", default=[720, 1080])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--methods", nargs="+", default=["old", "load_video", "ours"])
    parser.add_argument("--old-max-seconds", type=float, default=60,
                        help="skip `old` on longer clips (300 s at 384 px needs ~9 GB)")
    parser.add_argument("--clips-dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_data_clips"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None, help="default: results/bench_data[_quick].json (BENCH_RESULTS_DIR)")
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.heights, args.size, args.frames = [2], [720], 96, 8
    results = Path(os.environ.get("BENCH_RESULTS_DIR") or HERE / "results")
    args.out = args.out or str(results / f"bench_data{'_quick' if args.quick else ''}.json")
    clips_dir = Path(args.clips_dir)
    clips_dir.mkdir(parents=True, exist_ok=True)
    from video_data import builtin_clips_dir

    from llava_next_ar.video_decoding_llava_next_ar import index_video

    clips = []
    for height in args.heights:
        for seconds in args.lengths:
            start = time.perf_counter()
            path = make_clip(clips_dir / f"clip_{height}p_{seconds:g}s.mp4", seconds, height)
            print(f"clip {path.name}: {path.stat().st_size / 2**20:.1f} MiB ({time.perf_counter() - start:.0f} s)",
                  flush=True)
            clips.append((f"{height}p {seconds:g} s", str(path), seconds))
    if not args.quick:
        for name in ("bigbuckbunny", "bikes", "carphone_pristine"):
            path = builtin_clips_dir() / f"{name}.mp4"
            index = index_video(str(path))
            clips.append((f"built-in {name}", str(path), index.num_frames / index.average_fps))

    rows = []
    for label, path, seconds in clips:
        for method in args.methods:
            if method == "old" and seconds > args.old_max_seconds:
                continue
            repeats = 1 if method == "old" or (method == "load_video" and seconds > 60) else 3
            result = in_child(method, path, args.size, args.frames, repeats)
            rows.append({"clip": label, "seconds_of_video": seconds, "method": method, **result,
                         "clips_per_s": 1 / result["seconds"]})
            print(f"{label:28s} {method:10s} {result['seconds']:7.3f} s/clip  peak RSS "
                  f"{result['peak_rss_mib']:7.0f} MiB", flush=True)

    probe = next(path for label, path, seconds in clips if "720p" in label and seconds == max(args.lengths))
    workers = {n: loader_rate(probe, args.size, args.frames, n, 8 if args.quick else 16) for n in (0, 2)}
    overhead = decoder_process_overhead(probe, args.size, args.frames, 3 if args.quick else 7)
    step = tiny_step_seconds()
    spec_path = HERE / "results" / "bench_step.json"
    spec_step = None
    if spec_path.exists():
        spec = json.loads(spec_path.read_text())
        spec_step = next((row["ar_seconds"] for row in spec["rows"] if row["case"] == "default" and row["T"] == 16
                          and row["P"] == 729), None)
    payload = {"benchmark": "bench_data", "args": vars(args), "rows": rows, "loader_clips_per_s": workers,
               "loader_clip": probe, "decoder_process_overhead": overhead, "tiny_step_seconds": step,
               "spec_7b_shaped_step_seconds": spec_step, "cores": os.cpu_count()}
    print()
    print("| clip | path | s/clip | clips/s | peak RSS MiB | of it the data path MiB | decoder process MiB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clip']} | {row['method']} | {row['seconds']:.3f} | {row['clips_per_s']:.2f} | "
              f"{row['peak_rss_mib']:.0f} | {row['peak_rss_mib'] - row['baseline_rss_mib']:.0f} | "
              f"{row['decoder_peak_rss_mib']:.0f} |")
    print()
    per_core = workers[0]  # 0 workers: the main process, one decode thread per clip at a time
    print(f"ours through a DataLoader on {Path(probe).name}: {workers[0]:.2f} clips/s with 0 workers, "
          f"{workers[2]:.2f} with 2 workers ({os.cpu_count()} cores)")
    ms = {key: value * 1000 for key, value in overhead.items() if key.endswith("seconds")}
    print(f"hard decode bound on {Path(probe).name} ({overhead['frames']} frames at {overhead['size']}): "
          f"{ms['in_process_seconds']:.0f} ms in process, {ms['decoder_process_seconds']:.0f} ms in the decoder "
          f"process ({overhead['ratio']:.2f}x wall); CPU {ms['in_process_cpu_seconds']:.0f} vs "
          f"{ms['decoder_process_cpu_seconds']:.0f} ms ({overhead['cpu_ratio']:.2f}x); starting the decoder process: "
          f"{overhead['first_call_seconds']:.2f} s once per loader process")
    print(f"tiny model step (batch 4): {step:.3f} s -> needs {4 / step:.1f} clips/s = "
          f"{4 / step / per_core:.1f} loader cores at {per_core:.2f} clips/s per core")
    if spec_step:
        print(f"7B-shaped CPU spec step (batch 1, bench_step.json): {spec_step:.2f} s -> {1 / spec_step:.2f} "
              f"clips/s = {1 / spec_step / per_core:.2f} loader cores")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
