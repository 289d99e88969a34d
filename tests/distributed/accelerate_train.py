"""Run `scripts/train.py` as `accelerate launch` starts it, for tests/test_scale_out.py, with two test-only additions:

1. CPU DeepSpeed. accelerate starts DeepSpeed only on an accelerator device: on a machine without one its state is
   "no distribution" (or, with `use_cpu`, plain CPU DDP, with the DeepSpeed config half applied). With
   `DS_ACCELERATOR=cpu` (DeepSpeed's CPU accelerator) this makes accelerate take gloo where it would take NCCL, so
   the shipped ZeRO-3 config runs as it would on GPUs: `deepspeed.init_distributed`, `zero.Init`, the DeepSpeed
   engine and its ZeRO-3 optimizer.
2. A probe (a `TrainerCallback` added to train.py's `Trainer`): at the start and the end of training each rank writes
   `<output_dir>/probe/rank<r>.json` with the engine that wraps the model, whether the weights are partitioned or
   sharded, the teacher's distance to the vision tower (gathered), whether the teacher can reach the optimizer, and
   whether it moved. With `PROBE_SAVE_START=<file>` rank 0 also saves the (gathered) weights training starts from,
   and with `PROBE_START_FROM=<file>` a one-process run starts from them: a reference that differs from the sharded
   run only in how it is run. No other change to the script.

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml --num_processes 2 \\
        tests/distributed/accelerate_train.py scripts/train.py --output_dir ... [train.py flags]
"""

import contextlib
import json
import os
import runpy
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback


def deepspeed_on_cpu() -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    original = PartialState._prepare_backend

    def prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        if not cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            return backend or "gloo", DistributedType.MULTI_CPU  # then accelerate's own DeepSpeed branch runs
        return original(self, cpu, sagemaker_dp, backend)

    PartialState._prepare_backend = prepare_backend


def whole(parameters: list) -> contextlib.AbstractContextManager:
    """Read parameters whole: gathered under ZeRO-3 (collective), as they are otherwise."""
    if any(hasattr(p, "ds_id") for p in parameters):
        import deepspeed

        return deepspeed.zero.GatheredParameters(parameters)
    return contextlib.nullcontext()


def full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor  # FSDP2: a DTensor (collective)


class Probe(TrainerCallback):
    """Writes what the engine did with the model, at the start and at the end of training (every rank)."""

    def __init__(self, trainer, folder: Path):
        self.trainer, self.folder, self.report = trainer, folder, {}

    def teacher_state(self, model) -> dict[str, torch.Tensor]:
        model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a LoRA (PEFT) run
        tower, teacher = model.model.vision_tower, model.autoregressive_module.teacher
        with whole([*tower.parameters(), *teacher.parameters()]):
            towers = {name: full(p.detach()).clone() for name, p in tower.named_parameters()}
            teachers = {name: full(p.detach()).clone() for name, p in teacher.named_parameters()}
        return {"tower": towers, "teacher": teachers}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        parameters = list(model.parameters())
        if os.environ.get("PROBE_START_FROM"):  # a reference run: start from the weights another run started from
            from safetensors.torch import load_file

            start = load_file(os.environ["PROBE_START_FROM"])
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(start[name])
        if os.environ.get("PROBE_SAVE_START"):  # the weights this run starts from, gathered, for a reference run
            from safetensors.torch import save_file

            with whole(parameters):
                start = {name: full(p.detach()).clone().contiguous() for name, p in model.named_parameters()}
            if args.process_index == 0:
                save_file(start, os.environ["PROBE_SAVE_START"])
        self.start = self.teacher_state(model)
        teacher = (model.get_base_model() if hasattr(model, "get_base_model") else model).autoregressive_module.teacher
        teacher_ids = {id(p) for p in teacher.parameters()}
        optimizer = self.trainer.optimizer
        groups = getattr(getattr(optimizer, "optimizer", optimizer), "fp16_groups", None)  # DeepSpeed ZeRO-3
        if groups is None:
            groups = [group["params"] for group in optimizer.param_groups]
        self.report.update(
            rank=args.process_index,
            world_size=args.world_size,
            engine=type(self.trainer.model_wrapped).__name__,
            distributed_type=str(self.trainer.accelerator.distributed_type),
            partitioned=sum(hasattr(p, "ds_id") for p in parameters),
            released=sum(p.numel() == 0 for p in parameters),  # ZeRO-3 parameters whose data lives in partitions
            sharded=sum(hasattr(p, "full_tensor") for p in parameters),  # FSDP2 DTensors
            parameters=len(parameters),
            teacher_vs_tower_at_start=max(
                (self.start["teacher"][n] - self.start["tower"][n]).abs().max().item() for n in self.start["teacher"]
            ),
            teacher_trainable=any(p.requires_grad for p in teacher.parameters()),
            teacher_in_optimizer=any(id(p) in teacher_ids for group in groups for p in group),
        )

    def on_train_end(self, args, state, control, **kwargs):
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        end = self.teacher_state(model)
        self.report.update(
            teacher_moved=max((t - self.start["teacher"][n]).abs().max().item() for n, t in end["teacher"].items()),
            tower_moved=max((end["tower"][n] - self.start["tower"][n]).abs().max().item() for n in end["tower"]),
            logs=[entry for entry in state.log_history if "main_loss" in entry],
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{args.process_index}.json").write_text(json.dumps(self.report))


def main() -> None:
    if os.environ.get("DS_ACCELERATOR") == "cpu" and not torch.cuda.is_available():
        deepspeed_on_cpu()
    script = Path(sys.argv[1]).resolve()
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path.insert(0, str(script.parent))
    import transformers

    class ProbedTrainer(transformers.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Probe(self, Path(self.args.output_dir) / "probe"))

    transformers.Trainer = ProbedTrainer  # train.py's `from transformers import Trainer` takes this one
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
