"""Scale out for real (issue 17): `scripts/train.py` under `accelerate launch` with the shipped DeepSpeed ZeRO-3 config
on 2 CPU processes (DeepSpeed's CPU accelerator, gloo), and FSDP2 prepared by accelerate's own `fsdp2_prepare_model`
from the shipped FSDP config with CPU-RAM-efficient loading.

The sharded runs are compared with one process taking the same steps on the same global batch from the same weights
(`tests/distributed/accelerate_train.py` saves the weights the sharded run starts from, gathered, and the reference
run starts from them: a plain checkpoint gets a newly initialised predictor, which ZeRO-3 initialises on rank 0 with
its own random draws). Each launch costs ~10-20 s, so each test does several checks on one launch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import ROOT, free_port, plain_llava_next_video_checkpoint, run_as_stranger


HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed" / "accelerate_train.py"
TRAIN_FLAGS = [
    "--max_steps", "2", "--builtin_clips", "carphone_pristine", "--num_frames", "4",
    "--report_to", "none", "--plots", "False", "--reload_check", "False", "--disable_tqdm", "True",
    "--logging_steps", "1", "--seed", "0", "--learning_rate", "1e-3",
]
TEACHER, TOWER = "autoregressive_module.teacher.", "model.vision_tower."
WEIGHT_TOLERANCE = 1e-5  # float32, 2 steps: measured 1.2e-7 (ZeRO-3) and 6e-8 (FSDP2) against one process


def needs_deepspeed():
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):  # CI installs the [deepspeed] extra
        pytest.importorskip("deepspeed", reason="DeepSpeed is the optional [deepspeed] extra")


def environment(**extra: str) -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", **extra}


def zero3_launch(output_dir: Path, *flags: str, **env: str) -> subprocess.CompletedProcess:
    """The README's launch line with the shipped ZeRO-3 config, 2 processes, float32 (this CPU has no bf16 kernels
    worth testing numerics on)."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / "deepspeed_zero3.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", free_port(),
        str(WORKER), str(ROOT / "scripts" / "train.py"), "--output_dir", str(output_dir), *TRAIN_FLAGS, *flags,
    ]
    result = subprocess.run(command, env=environment(**env), capture_output=True, text=True, timeout=600,
                            cwd=output_dir.parent)
    assert result.returncode == 0, failure(result)
    return result


def failure(result: subprocess.CompletedProcess) -> str:
    """The end of the output and every line that names an error (a launch's last lines are the launcher's)."""
    words = ("Error", "terminate", "Signal")
    errors = [line for line in result.stderr.splitlines() if any(word in line for word in words)]
    return f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}\n" + "\n".join(errors[-40:])


def one_process(output_dir: Path, start: Path, *flags: str) -> None:
    """The reference: train.py in one process, starting from the weights the sharded run started from."""
    command = [sys.executable, str(WORKER), str(ROOT / "scripts" / "train.py"), "--output_dir", str(output_dir),
               *TRAIN_FLAGS, "--save_strategy", "no", *flags]
    result = subprocess.run(command, env=environment(PROBE_START_FROM=str(start)), capture_output=True, text=True,
                            timeout=600, cwd=output_dir.parent)
    assert result.returncode == 0, result.stderr[-5000:]


def probes(output_dir: Path) -> list[dict]:
    reports = [json.loads((output_dir / "probe" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [report["rank"] for report in reports] == [0, 1]
    return reports


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[key].double() - b[key].double()).abs().max().item() for key in a)


def final_weights(output_dir: Path) -> dict:
    return load_file(output_dir / "final" / "model.safetensors")


def check_zero3_probe(reports: list[dict], tower_trains: bool = True) -> None:
    for report in reports:
        assert report["world_size"] == 2 and report["engine"] == "DeepSpeedEngine", report
        assert report["distributed_type"] == "DistributedType.DEEPSPEED"
        assert report["partitioned"] == report["parameters"]  # every parameter is a ZeRO-3 partition...
        assert report["released"] > 0  # ...and the large ones hold no data outside a gather
        assert report["teacher_vs_tower_at_start"] == 0.0  # gathered: the teacher is an exact copy of the tower
        assert not report["teacher_trainable"] and not report["teacher_in_optimizer"]
        assert report["teacher_moved"] == 0.0  # the teacher is frozen...
        assert (report["tower_moved"] > 0) == tower_trains  # ...the tower trains (not under LoRA)
        assert report["logs"] == reports[0]["logs"]  # losses are reduced over ranks: every rank logs the same
        assert [entry["step"] for entry in report["logs"]] == [1, 2]


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory) -> Path:
    """A plain LLaVA-NeXT-Video checkpoint (no teacher, no predictor) with its stock processor, in float32."""
    folder = tmp_path_factory.mktemp("plain")
    plain_llava_next_video_checkpoint(folder)
    from transformers import LlavaNextVideoForConditionalGeneration

    LlavaNextVideoForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).save_pretrained(folder)
    return folder


STRANGER = r"""
import json, sys
params = json.loads(open(sys.argv[1]).read())
sys.path.extend(params["site_dirs"])
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained(params["final"], trust_remote_code=True)
processor = AutoProcessor.from_pretrained(params["final"], trust_remote_code=True)
saved = load_file(params["final"] + "/model.safetensors")
state = model.state_dict()
teacher = model.autoregressive_module.teacher.state_dict()
tower = model.model.vision_tower.state_dict()
frames = torch.rand(1, 4, 3, 32, 32)
inputs = processor(text="USER: <video>\nwhat happens ? ASSISTANT: a car", videos=[frames.numpy()], return_tensors="pt")
with torch.no_grad():
    out = model(**inputs, labels=inputs["input_ids"])
print("STRANGER " + json.dumps({
    "model": type(model).__name__,
    "module": type(model).__module__,
    "weights_equal_file": len(saved) == len(state) and all(torch.equal(state[k], saved[k]) for k in saved),
    "teacher_equals_tower": all(torch.equal(tensor, tower[name]) for name, tensor in teacher.items()),
    "losses_finite": all(bool(torch.isfinite(x)) for x in (out.loss, out.main_loss, out.autoregressive_loss)),
}))
"""


def test_zero3_from_a_plain_checkpoint_matches_one_process_saves_whole_weights_and_resumes_exactly(
    plain_checkpoint, tmp_path
):
    """ZeRO-3 from a plain LLaVA-NeXT-Video checkpoint: the teacher is the gathered tower after loading; 2 steps on
    2 x 1 examples equal 2 steps of one process on 2 examples; `final/` holds the whole (gathered) weights and loads
    with remote code in a fresh process without the package; resuming from the step-1 checkpoint gives the same
    final weights as the uninterrupted run."""
    needs_deepspeed()
    run, start = tmp_path / "zero3", tmp_path / "start.safetensors"
    source = ["--model_name_or_path", str(plain_checkpoint)]
    zero3_launch(run, *source, "--per_device_train_batch_size", "1", "--save_strategy", "steps", "--save_steps", "1",
                 PROBE_SAVE_START=str(start))
    check_zero3_probe(probes(run))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    one_process(tmp_path / "single", start, *source, "--per_device_train_batch_size", "2")
    sharded = final_weights(run)
    difference = max_difference(sharded, final_weights(tmp_path / "single"))
    print(f"ZeRO-3 vs one process after 2 steps (plain checkpoint): max abs {difference:.3g}")
    assert difference < WEIGHT_TOLERANCE
    assert max_difference(sharded, load_file(start)) > 1e-3  # it trained (Adam: ~learning rate per step)

    report = run_as_stranger(STRANGER, {"final": str(run / "final")}, tmp_path)
    assert report["model"] == "LlavaNextARForConditionalGeneration"
    assert report["module"].startswith("transformers_modules.")
    assert report["weights_equal_file"] and report["losses_finite"]
    assert not report["teacher_equals_tower"]  # the tower trained; the teacher is the frozen copy it started as:
    started = load_file(start)
    teacher = {key.removeprefix(TEACHER): value for key, value in sharded.items() if key.startswith(TEACHER)}
    assert teacher and all(torch.equal(value, started[TOWER + key]) for key, value in teacher.items())

    resumed = tmp_path / "resumed"
    zero3_launch(resumed, *source, "--per_device_train_batch_size", "1", "--save_strategy", "no",
                 "--resume_from_checkpoint", str(run / "checkpoint-1"))
    difference = max_difference(final_weights(resumed), sharded)
    print(f"ZeRO-3 resumed from step 1 vs uninterrupted: max abs {difference:.3g}")
    assert difference == 0.0
    step_2 = [entry for entry in probes(resumed)[0]["logs"] if entry["step"] == 2]
    assert step_2 == [entry for entry in probes(run)[0]["logs"] if entry["step"] == 2]  # same loss, same grad norm


def test_zero3_from_the_tiny_config_with_gradient_accumulation_matches_one_process(tmp_path):
    """ZeRO-3 building the tiny model from its config (was: IndexError in `_init_weights` on a partitioned
    embedding), with `--gradient_accumulation_steps 2` (the shipped config leaves it to train.py): 2 processes x 1
    example x 2 accumulation steps equal one process on 4 examples."""
    needs_deepspeed()
    run, start = tmp_path / "zero3", tmp_path / "start.safetensors"
    zero3_launch(run, "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
                 "--save_strategy", "no", PROBE_SAVE_START=str(start))
    check_zero3_probe(probes(run))
    one_process(tmp_path / "single", start, "--per_device_train_batch_size", "4")
    difference = max_difference(final_weights(run), final_weights(tmp_path / "single"))
    print(f"ZeRO-3 vs one process after 2 steps (tiny config, GA 2): max abs {difference:.3g}")
    assert difference < WEIGHT_TOLERANCE


def test_fsdp2_as_accelerate_applies_it_from_the_shipped_config(plain_checkpoint, tmp_path):
    """FSDP2 from configs/accelerate/fsdp.yaml through `accelerate launch` (the plugin from its environment,
    accelerate's `fsdp2_prepare_model`; its `Accelerator` does not pick FSDP on a CPU): with CPU-RAM-efficient
    loading the other rank's weights come from rank 0 (poisoned here before sharding), the teacher equals the tower on
    both ranks and is sharded and frozen, and 2 sharded steps equal one process's."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / "fsdp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", free_port(),
        str(HERE / "distributed" / "fsdp_accelerate_worker.py"), str(plain_checkpoint), str(tmp_path),
    ]
    result = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, failure(result)
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["fsdp_version"] == 2 and report["cpu_ram_efficient_loading"]
        assert {"CLIPEncoderLayer", "LlamaDecoderLayer", "LlavaNextARPredictorLayer"} <= set(report["wrapped_classes"])
        assert report["teacher_vs_tower"] == 0.0 and report["teacher_is_sharded"]
        assert not report["teacher_trainable"] and report["teacher_moved"] == 0.0
    print(f"FSDP2 vs one process after 2 steps: max abs {reports[0]['max_abs_error_vs_single_process']:.3g}; "
          f"tower tensors read from the checkpoint on rank 1: {reports[1]['tower_tensors_read']}/"
          f"{reports[1]['tower_tensors']}")
    assert reports[0]["max_abs_error_vs_single_process"] < WEIGHT_TOLERANCE



def test_zero3_lora_saves_an_adapter_and_a_merged_model_equal_to_one_process(plain_checkpoint, tmp_path):
    """LoRA (`--use_lora True`, train.py's PEFT path) under ZeRO-3 from a plain checkpoint: the adapter (`adapter/`)
    and the merged model (`final/`) are whole (no empty partitions) and equal those of one process on the same global
    batch; the adapter's base is the checkpoint it was trained on; the LoRA weights trained."""
    needs_deepspeed()
    run, start = tmp_path / "zero3", tmp_path / "start.safetensors"
    source = ["--model_name_or_path", str(plain_checkpoint), "--use_lora", "True"]
    zero3_launch(run, *source, "--per_device_train_batch_size", "1", "--save_strategy", "no",
                 PROBE_SAVE_START=str(start))
    check_zero3_probe(probes(run), tower_trains=False)  # LoRA trains the LLM's attention and the predictor only
    one_process(tmp_path / "single", start, *source, "--per_device_train_batch_size", "2")
    for folder, weights in (("final", "model.safetensors"), ("adapter", "adapter_model.safetensors")):
        sharded, single = load_file(run / folder / weights), load_file(tmp_path / "single" / folder / weights)
        assert all(tensor.numel() > 0 for tensor in sharded.values()), f"{folder}: an empty (partitioned) tensor"
        difference = max_difference(sharded, single)
        print(f"ZeRO-3 + LoRA vs one process after 2 steps ({folder}): max abs {difference:.3g}")
        assert difference < WEIGHT_TOLERANCE
    adapter_config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(plain_checkpoint)
    started, adapter = load_file(start), load_file(run / "adapter" / "adapter_model.safetensors")
    lora_b = [key for key in adapter if ".lora_B." in key]
    assert lora_b and all(  # lora_B starts at zero: trained, it is not
        not torch.equal(adapter[key], started[key.replace(".lora_B.weight", ".lora_B.default.weight")])
        for key in lora_b
    )


def test_zero3_lora_on_the_tiny_config_saves_a_whole_base_the_adapter_loads_on(tmp_path):
    """LoRA on the model built from the tiny config under ZeRO-3: `base/` (the adapter's base, saved by train.py
    because it exists nowhere else) holds whole weights, gathered by every rank (was: rank 0 saved its empty
    partitions), and the adapter loads on it."""
    needs_deepspeed()
    from peft import PeftModel

    from llava_next_ar import LlavaNextARForConditionalGeneration

    run = tmp_path / "zero3_lora"
    zero3_launch(run, "--use_lora", "True", "--per_device_train_batch_size", "1", "--save_strategy", "no")
    base = load_file(run / "base" / "model.safetensors")
    assert all(tensor.numel() > 0 for tensor in base.values()), "base/: an empty (partitioned) tensor"
    base_model = LlavaNextARForConditionalGeneration.from_pretrained(run / "base")
    model = PeftModel.from_pretrained(base_model, run / "adapter")
    assert sum("lora_B" in name for name, _ in model.named_parameters()) > 0
