"""Run by `accelerate launch --multi_gpu --num_processes 2` (DDP over gloo on CPU) from tests/test_distributed.py.

Trains a tiny LLaVA-NeXT-AR with the vanilla Trainer for a few steps and writes, per rank, a JSON report: the final
weights' checksum, whether the teacher is unchanged and frozen, and the logged losses.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments


sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from helpers import synthetic_dataset, tiny_model  # noqa: E402

from llava_next_ar.training_llava_next_ar import add_loss_components_logging  # noqa: E402


def main(output_dir: str) -> None:
    model = tiny_model(dtype=torch.float32, seed=0)
    teacher_before = {k: v.clone() for k, v in model.autoregressive_module.teacher.state_dict().items()}
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=3,
        learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=True,  # without use_cpu a GPU-less launch silently runs 2 single processes
    )
    trainer = Trainer(model=model, args=args, train_dataset=synthetic_dataset(16))
    add_loss_components_logging(trainer)
    trainer.train()
    rank = trainer.args.process_index
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().numpy().tobytes())
    teacher = model.autoregressive_module.teacher
    report = {
        "rank": rank,
        "wrapped": type(trainer.model_wrapped).__name__,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "world_size": trainer.args.world_size,
        "weights_sha256": digest.hexdigest(),
        "teacher_unchanged": all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items()),
        "teacher_frozen": not any(p.requires_grad for p in teacher.parameters()) and not teacher.training,
        "logs": [e for e in trainer.state.log_history if "main_loss" in e],
    }
    Path(output_dir, f"rank{rank}.json").write_text(json.dumps(report))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from train import exit_without_finalizing  # what train.py does at the end of a launched process

    exit_without_finalizing()
