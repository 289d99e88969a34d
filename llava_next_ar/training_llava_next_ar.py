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
    Logs the loss components the model returns (`main_loss`, `autoregressive_loss`) at every logging step.

    A forward hook on the model adds the detached components of every training micro-batch to running sums on the
    model's device (no host sync per step). At each log, the sums are all-reduced over processes, divided by the
    number of micro-batches, written into the logs (so TensorBoard, the console and `state.log_history` get them,
    provided the callback runs before the reporters: use `add_loss_components_logging`) and reset. Trainer's own
    `loss` is the mean over the same micro-batches of `main_loss + autoregressive_loss`.
    """

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}
        self._handle = None

    def _record(self, module, args, kwargs, output) -> None:
        if not module.training:
            return
        for name in LOSS_COMPONENTS:
            value = getattr(output, name, None)
            if value is None:
                continue
            value = value.detach().float()
            if name not in self._sums:
                self._sums[name] = torch.zeros((), device=value.device)
                self._counts[name] = torch.zeros((), device=value.device)
            self._sums[name] += value
            self._counts[name] += 1

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self._handle is None and model is not None:
            target = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
            self._handle = target.register_forward_hook(self._record, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # evaluation logs and the final summary
            return
        names = sorted(self._sums)
        if not names:
            return
        totals = torch.stack([torch.stack([self._sums[name], self._counts[name]]) for name in names])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        for name, (total, count) in zip(names, totals.tolist()):
            if count > 0:
                logs[name] = round(total / count, 6)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update({name: logs[name] for name in names if name in logs})
        for name in names:
            self._sums[name].zero_()
            self._counts[name].zero_()


def add_loss_components_logging(trainer: Trainer) -> LossComponentsCallback:
    """Add a `LossComponentsCallback` to `trainer`, ahead of the reporting callbacks so they see its values."""
    callback = LossComponentsCallback()
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback


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


__all__ = ["LossComponentsCallback", "add_loss_components_logging", "LlavaNextARDataCollator"]
