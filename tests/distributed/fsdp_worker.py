"""Run by `torchrun --nproc_per_node 2` (gloo, CPU) from tests/test_distributed.py: FSDP2 (`fully_shard`) of
LLaVA-NeXT-AR by its `_no_split_modules`, two SGD steps on different data per rank, then, on rank 0, a comparison
with the same two steps taken by one unsharded process on both ranks' data."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard


sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from helpers import tiny_model, video_batch  # noqa: E402


def train(model, batches, steps=2):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = sum(model(**batch).loss for batch in batches) / len(batches)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def main(output: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    batches = [video_batch(batch_size=2, dtype=torch.float32, seed=r) for r in range(world)]

    model = tiny_model(dtype=torch.float32, seed=0).train()
    sharded = 0
    for module in model.modules():
        if type(module).__name__ in model._no_split_modules:
            fully_shard(module)
            sharded += 1
    fully_shard(model)
    train(model, [batches[rank]])
    full = {name: p.full_tensor().detach() for name, p in model.named_parameters()}
    teacher_is_sharded = all(
        p._local_tensor.numel() < p.numel() or p.numel() < world
        for n, p in model.named_parameters() if n.startswith("autoregressive_module.teacher.") and p.dim() > 1
    )

    if rank == 0:
        reference = tiny_model(dtype=torch.float32, seed=0).train()
        train(reference, batches)  # mean of the ranks' losses == what FSDP's gradient averaging optimises
        expected = dict(reference.named_parameters())
        max_error = max((full[n] - expected[n].detach()).abs().max().item() for n in full)
        teacher_unchanged = all(
            torch.equal(full[n], tiny_model(dtype=torch.float32, seed=0).get_parameter(n).detach())
            for n in full if n.startswith("autoregressive_module.teacher.")
        )
        Path(output).write_text(json.dumps({
            "sharded_units": sharded, "max_abs_error_vs_single_process": max_error,
            "teacher_unchanged": teacher_unchanged, "teacher_is_sharded": teacher_is_sharded,
        }))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from train import exit_without_finalizing  # what train.py does at the end of a launched process

    exit_without_finalizing()
