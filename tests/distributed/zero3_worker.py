"""Run by `torchrun --nproc_per_node 2` (gloo, DeepSpeed's CPU accelerator) from tests/test_distributed.py: with ZeRO-3
active (a live `HfDeepSpeedConfig`, as `Trainer`/`accelerate` make it), load a plain LLaVA-NeXT-Video checkpoint
into LLaVA-NeXT-AR and build one from its config; report, from gathered parameters, how far the teacher is from the
vision tower (it must be an exact copy) and whether the teacher could reach an optimizer."""

import json
import sys
from pathlib import Path

import torch


sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]


def teacher_vs_tower(model) -> float:
    import deepspeed

    tower, teacher = model.model.vision_tower, model.autoregressive_module.teacher
    parameters = [*tower.parameters(), *teacher.parameters()]
    with deepspeed.zero.GatheredParameters(parameters):
        sources = dict(tower.named_parameters())
        return max((p - sources[name]).abs().max().item() for name, p in teacher.named_parameters())


def main(plain_dir: str, output: str) -> None:
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    from helpers import tiny_config
    from llava_next_ar import LlavaNextARForConditionalGeneration

    deepspeed.init_distributed(dist_backend="gloo")
    rank = torch.distributed.get_rank()
    ds_config = {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": {"stage": 3},
        "optimizer": {"type": "SGD", "params": {"lr": 0.01}},
    }
    keep_alive = HfDeepSpeedConfig(ds_config)  # noqa: F841  (transformers checks ZeRO-3 through this object)
    config = tiny_config()
    loaded = LlavaNextARForConditionalGeneration.from_pretrained(plain_dir, config=config, dtype=torch.float32)
    built = LlavaNextARForConditionalGeneration._from_config(config, dtype=torch.float32)
    report = {
        "partitioned": all(hasattr(p, "ds_id") for p in loaded.parameters()),
        "loaded_teacher_vs_tower": teacher_vs_tower(loaded),
        "built_teacher_vs_tower": teacher_vs_tower(built),
        "teacher_trainable": any(p.requires_grad for p in loaded.autoregressive_module.teacher.parameters()),
    }
    Path(output, f"rank{rank}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from train import exit_without_finalizing  # what train.py does at the end of a launched process

    exit_without_finalizing()
