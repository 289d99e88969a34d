"""Run by `accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2` (CPU, gloo) from
tests/test_scale_out.py: FSDP2 the way accelerate applies it, from the shipped config, on a plain LLaVA-NeXT-Video
checkpoint loaded into LLaVA-NeXT-AR.

accelerate's `Accelerator` does not pick FSDP without a GPU (its state stays CPU DDP), so this worker takes the
parts accelerate uses itself: the `FullyShardedDataParallelPlugin` built from the launcher's environment (the
`FSDP_*` variables the shipped config sets), transformers' CPU-RAM-efficient `from_pretrained` (only local rank 0
is meant to read the weights; the others' are overwritten here), and accelerate's `fsdp2_prepare_model` (move to
meta, `fully_shard` by the config's layer classes, broadcast rank 0's weights, `tie_weights`). Then two SGD steps on
different data per rank, and, on rank 0, the same two steps taken by one unsharded process on both ranks' data.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist


sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from helpers import tiny_config, video_batch  # noqa: E402


def train(model, batches, steps=2):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = sum(model(**batch).loss for batch in batches) / len(batches)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def plugin_from_launcher():
    """accelerate's plugin from the launcher's environment. With `cpu_ram_efficient_loading` it looks for a GPU for
    FSDP1's `sync_module_states` (unused by FSDP2), so it is built with that off and switched on after."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    efficient = os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false").lower() == "true"
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    plugin = FullyShardedDataParallelPlugin()
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = str(efficient).lower()  # what transformers' loading reads
    plugin.cpu_ram_efficient_loading = efficient
    return plugin


def load(plain_dir: str):
    from llava_next_ar import LlavaNextARForConditionalGeneration

    torch.manual_seed(0)  # the new predictor's initialisation (on rank 0; the other ranks get rank 0's)
    return LlavaNextARForConditionalGeneration.from_pretrained(plain_dir, config=tiny_config(), dtype=torch.float32)


def full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def main(plain_dir: str, output: str) -> None:
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    plugin = plugin_from_launcher()
    model = load(plain_dir).train()
    from safetensors.torch import load_file

    checkpoint = load_file(Path(plain_dir, "model.safetensors"))
    tower_before = {n: p.detach().clone() for n, p in model.model.vision_tower.named_parameters()}
    saved = {key.removeprefix("model."): value for key, value in checkpoint.items()}  # either key layout
    read_tower = sum(  # tensors of the tower that hold the checkpoint's values before sharding
        p.device.type != "meta" and torch.equal(p, saved["vision_tower." + n]) for n, p in tower_before.items()
    )
    if rank != 0 and plugin.cpu_ram_efficient_loading:
        # What the flag is for: the other ranks need not hold the weights. transformers 5.23/5.24 still reads them on
        # every rank (`tower_tensors_read`); poison them, so everything they end up with must come from rank 0.
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    accelerator = SimpleNamespace(  # the attributes fsdp2_prepare_model reads from an FSDP `Accelerator`
        state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision="no", device=torch.device("cpu"),
        is_main_process=rank == 0, torch_device_mesh=None,
    )
    model = fsdp2_prepare_model(accelerator, model)

    from torch.distributed.fsdp import FSDPModule

    wrapped = sorted({  # fully_shard swaps a module's class for an FSDP<class> subclass: name the original
        next(cls for cls in type(module).__mro__ if not issubclass(cls, FSDPModule)).__name__
        for module in model.modules() if isinstance(module, FSDPModule)
    })
    tower, teacher = model.model.vision_tower, model.autoregressive_module.teacher
    towers = {name: full(p.detach()) for name, p in tower.named_parameters()}
    teacher_vs_tower = max((full(p.detach()) - towers[n]).abs().max().item() for n, p in teacher.named_parameters())
    teacher_is_sharded = all(p._local_tensor.numel() < p.numel() for p in teacher.parameters() if p.dim() > 1)
    start_teacher = {name: full(p.detach()).clone() for name, p in teacher.named_parameters()}

    batches = [video_batch(batch_size=2, dtype=torch.float32, seed=r) for r in range(world)]
    train(model, [batches[rank]])
    trained = {name: full(p.detach()) for name, p in model.named_parameters()}
    report = {
        "rank": rank,
        "cpu_ram_efficient_loading": plugin.cpu_ram_efficient_loading,
        "fsdp_version": plugin.fsdp_version,
        "wrapped_classes": wrapped,  # the classes fully_shard made units of (the root model's included)
        "tower_tensors": len(tower_before),
        "tower_tensors_read": read_tower,
        "teacher_vs_tower": teacher_vs_tower,
        "teacher_is_sharded": teacher_is_sharded,
        "teacher_trainable": any(p.requires_grad for p in teacher.parameters()),
        "teacher_moved": max((trained["autoregressive_module.teacher." + n] - t).abs().max().item()
                             for n, t in start_teacher.items()),
    }
    if rank == 0:
        os.environ["ACCELERATE_USE_FSDP"] = "false"  # the reference loads as one process does
        reference = load(plain_dir).train()
        train(reference, batches)  # mean of the ranks' losses == what FSDP's gradient averaging optimises
        report["max_abs_error_vs_single_process"] = max(
            (trained[name] - p.detach()).abs().max().item() for name, p in reference.named_parameters()
        )
    Path(output, f"rank{rank}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from train import exit_without_finalizing  # what train.py does at the end of a launched process

    exit_without_finalizing()
