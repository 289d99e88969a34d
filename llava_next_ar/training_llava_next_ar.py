# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
Pieces for fine-tuning LLaVA-NeXT-AR with the vanilla `transformers.Trainer`:

- `LossComponentsCallback` logs `main_loss` and `autoregressive_loss` next to Trainer's `loss`, averaged over the
  logging window, over gradient-accumulation micro-batches and over processes. Add it with one line:
  `add_loss_components_logging(trainer)`.
- `LlavaNextARDataCollator` turns `{"video", "prompt", "answer"}` examples into model batches with the processor,
  masking the prompt and the padding in `labels`.

Imports only the standard library, torch and transformers.
"""

from typing import Any

import torch
from transformers import Trainer, TrainerCallback


LOSS_COMPONENTS = ("main_loss", "autoregressive_loss")


class LossComponentsCallback(TrainerCallback):
    """
    Logs the loss components the model returns (`main_loss`, `autoregressive_loss`) at every logging step, and
    their evaluation means (`eval_main_loss`, `eval_autoregressive_loss`, with `evaluate`'s metric prefix) next to
    `eval_loss`.

    A forward hook on the model adds the detached components of every micro-batch to running sums on the model's
    device (no host sync per step), training and evaluation (model in eval mode, `labels` given) apart. At each
    log, the sums are all-reduced over processes, divided by the number of micro-batches, written into the logs (so
    TensorBoard, the console, `state.log_history` and the metrics `Trainer.evaluate` returns get them, provided the
    callback runs before the reporters: use `add_loss_components_logging`) and reset. Trainer's own `loss` is the
    mean over the same micro-batches of `main_loss + autoregressive_loss`.
    """

    def __init__(self):
        self._sums: dict[tuple[bool, str], torch.Tensor] = {}
        self._counts: dict[tuple[bool, str], torch.Tensor] = {}
        self._handle = None

    def _record(self, module, args, kwargs, output) -> None:
        for name in LOSS_COMPONENTS:
            value = getattr(output, name, None)
            if value is None:
                continue
            key = (module.training, name)
            value = value.detach().float()
            if key not in self._sums:
                self._sums[key] = torch.zeros((), device=value.device)
                self._counts[key] = torch.zeros((), device=value.device)
            self._sums[key] += value
            self._counts[key] += 1

    def _attach(self, model) -> None:
        if self._handle is None and model is not None:
            target = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
            self._handle = target.register_forward_hook(self._record, with_kwargs=True)

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self._attach(model)  # so that `trainer.evaluate()` without training logs the components too

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._attach(model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        if "loss" in logs:
            training, prefix = True, ""
        else:  # evaluate() logs f"{metric_key_prefix}_runtime" with its metrics
            prefix = next((key[: -len("runtime")] for key in logs if key.endswith("_runtime")), None)
            if prefix is None or prefix == "train_":  # the final training summary
                return
            training = False
        keys = sorted(key for key in self._sums if key[0] == training)
        if not keys:
            return
        totals = torch.stack([torch.stack([self._sums[key], self._counts[key]]) for key in keys])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        logged = {}
        for (_, name), (total, count) in zip(keys, totals.tolist()):
            if count > 0:
                logged[prefix + name] = round(total / count, 6)
        logs.update(logged)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(logged)
        for key in keys:
            self._sums[key].zero_()
            self._counts[key].zero_()


def add_loss_components_logging(trainer: Trainer) -> LossComponentsCallback:
    """Add a `LossComponentsCallback` to `trainer`, ahead of the reporting callbacks so they see its values."""
    callback = LossComponentsCallback()
    trainer.callback_handler.callbacks.insert(0, callback)
    callback._attach(trainer.model)  # Trainer's `on_init_end` has passed: attach now, for `evaluate` before `train`
    return callback


def freeze_parameters_without_gradients(model: torch.nn.Module, batch: dict[str, Any]) -> list[str]:
    """
    Set `requires_grad=False` on the trainable parameters that get no gradient from a training step, and return
    their names.

    Runs one forward + backward of `batch` in training mode (RNG state restored, gradients cleared, mode restored).
    Typical finds: `image_newline` (video-only data), the vision tower's layers after `vision_feature_layer` and its
    `post_layernorm`, a teacher loaded as trainable. Under `DistributedDataParallel` such parameters make the
    reducer wait for gradients that never come (the "Expected to have finished reduction in the prior iteration"
    error, e.g. with activation checkpointing); frozen, they are not in DDP's buckets at all, so
    `ddp_find_unused_parameters=False` works and nothing is searched per step. Only use it when the set of unused
    parameters does not depend on the batch (true for video-only batches of this model).
    """
    was_training = model.training
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    previous = {name: parameter.grad for name, parameter in trainable}
    for _, parameter in trainable:
        parameter.grad = None
    device = next(model.parameters()).device
    inputs = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            model(**inputs).loss.backward()
        unused = [name for name, parameter in trainable if parameter.grad is None]
    finally:
        for name, parameter in trainable:
            parameter.grad = previous[name]
        model.train(was_training)
    named = dict(trainable)
    for name in unused:
        named[name].requires_grad_(False)
    return unused


class LlavaNextARDataCollator:
    """
    Batches `{"video": frames, "prompt": str, "answer": str}` examples for `LlavaNextARForConditionalGeneration`.

    `prompt` holds the processor's video placeholder (e.g. `"USER: <video>\\nWhat happens? ASSISTANT:"`); the text
    fed to the model is `prompt + " " + answer`. `labels` are the input ids with the prompt and padding set to
    `-100`, so only the answer is learned. `video` is anything the processor takes (a `[T, H, W, C]` array, a list of
    PIL images, a path); examples whose `video` is `None` (clips that failed to decode) are dropped. Returns the processor's tensors (`input_ids`, `attention_mask`, `pixel_values_videos`,
    `video_frames`, `video_frame_indices`, and `llm_frame_indices` when the LLM sees other frames) plus `labels`.
    """

    def __init__(self, processor, max_length: int | None = None):
        self.processor = processor
        self.max_length = max_length
        tokenizer = processor.tokenizer
        self.video_token = processor.video_token
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        examples = [example for example in examples if example.get("video") is not None]  # failed decodes
        if not examples:
            raise ValueError("every clip of this batch failed to decode (see the warnings naming their paths)")
        texts = [f"{example['prompt']} {example['answer']}" for example in examples]
        batch = self.processor(
            text=texts,
            videos=[example["video"] for example in examples],
            return_tensors="pt",
            padding=True,
            padding_side="right",
        )
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        tokenizer = self.processor.tokenizer
        for row, example in enumerate(examples):
            num_video_tokens = int((batch["input_ids"][row] == self.video_token_id).sum())
            expanded = example["prompt"].replace(self.video_token, self.video_token * num_video_tokens, 1)
            prompt_length = len(tokenizer(expanded)["input_ids"])
            labels[row, :prompt_length] = -100
        batch["labels"] = labels
        return dict(batch)


__all__ = [
    "LossComponentsCallback",
    "add_loss_components_logging",
    "freeze_parameters_without_gradients",
    "LlavaNextARDataCollator",
]
