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
- `LlavaNextARDataCollator` turns examples (a video and a chat: `messages`, LLaVA `conversations`, or `prompt` +
  `answer`) into model batches with the processor; `labels` cover every assistant turn and nothing else.

Imports only the standard library, torch and transformers.
"""

import re
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


VIDEO_TOKEN_IN_TEXT = "<video>"
LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _video_text_content(text: str, video_token: str = VIDEO_TOKEN_IN_TEXT) -> list[dict]:
    """A first user turn as content items: the video where `video_token` stands (one newline beside it dropped, the
    template renders its own), or first if the text has none."""
    if video_token not in text:
        return [{"type": "video"}] + ([{"type": "text", "text": text}] if text else [])
    before, after = text.split(video_token, 1)
    before = before[:-1] if before.endswith("\n") else before
    after = after[1:] if after.startswith("\n") else after
    after = after.replace(video_token, "")
    items = [{"type": "text", "text": before}] if before else []
    return items + [{"type": "video"}] + ([{"type": "text", "text": after}] if after else [])


def conversations_to_messages(conversations: list[dict]) -> list[dict]:
    """LLaVA `conversations` (`{"from": "human" | "gpt" | "system", "value": ...}`, any number of turns, `<video>`
    anywhere in the first human turn) as `apply_chat_template` messages, with the video in the first user turn."""
    messages, placed = [], False
    for index, turn in enumerate(conversations):
        role = LLAVA_ROLES.get(turn.get("from", turn.get("role")))
        if role is None:
            raise ValueError(f"conversations[{index}] has an unknown `from` {turn.get('from')!r}")
        text = turn.get("value", turn.get("content", ""))
        if role == "user" and not placed:
            content, placed = _video_text_content(text), True
        else:
            content = [{"type": "text", "text": text.replace(VIDEO_TOKEN_IN_TEXT, "")}]
        messages.append({"role": role, "content": content})
    return messages


def _with_video(messages: list[dict]) -> list[dict]:
    """`messages` with exactly one video item (added to the first user turn if none; the video's path is not
    needed by the template)."""
    out, placed = [], False
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            items = [{"type": "text", "text": content}]
        else:
            items = [dict(item) for item in content or []]
        if any(item.get("type") == "video" for item in items):
            placed = True
        out.append({**message, "content": items})
    if not placed:
        first = next((m for m in out if m["role"] == "user"), None)
        if first is None:
            raise ValueError("`messages` has no user turn to hold the video")
        first["content"] = [{"type": "video"}] + first["content"]
    return out


def render_chat_with_assistant_spans(processor, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """
    The text of a chat through the processor's chat template, and the character spans of the assistant turns in it.

    With `{% generation %}` markers in the template, the spans are the template's own (transformers'
    assistant-token mask); otherwise each assistant text is rendered as a unique placeholder, found in the output
    and put back, so its span is exact without re-tokenising a prefix.
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    template = processor.chat_template
    if not template:
        raise ValueError("the processor has no chat template: chat data needs one (`processor.chat_template`)")
    tokens = processor.tokenizer.special_tokens_map
    if re.search(r"\{%-?\s*generation\s*-?%\}", template):
        rendered, indices = render_jinja_template(
            conversations=[messages], chat_template=template, return_assistant_tokens_mask=True, **tokens
        )
        return rendered[0], [tuple(span) for span in indices[0]]
    placeholders, answers, marked = [], [], []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            marked.append(message)
            continue
        content = message["content"]
        text = content if isinstance(content, str) else "".join(
            item.get("text", "") for item in content if item.get("type") == "text"
        )
        placeholder = f"\u2063ANSWER{index}\u2063"
        placeholders.append(placeholder)
        answers.append(text)
        marked.append({**message, "content": [{"type": "text", "text": placeholder}]})
    rendered, _ = render_jinja_template(conversations=[marked], chat_template=template, **tokens)
    text, spans = rendered[0], []
    for placeholder, answer in zip(placeholders, answers):
        position = text.find(placeholder)
        if position < 0:
            raise ValueError("the chat template changes assistant texts; add `{% generation %}` markers to it")
        text = text[:position] + answer + text[position + len(placeholder):]
        spans.append((position, position + len(answer)))
    return text, spans


class LlavaNextARDataCollator:
    """
    Batches examples for `LlavaNextARForConditionalGeneration`. An example holds `video` (anything the processor
    takes: a `[T, H, W, C]` array, a path, a `SampledVideo` from `processor.read_video`) and its text as one of

    - `messages` (the `apply_chat_template` format; a video item in the first user turn, added if missing),
    - `conversations` (LLaVA format, any number of turns, `<video>` anywhere in the first human turn),
    - `prompt` + `answer` (text already in the model's format; the model reads `prompt + " " + answer`).

    Chats go through the processor's chat template; `labels` are the input ids on every assistant turn (the spans the
    template marks with `{% generation %}`, or the assistant texts, see `render_chat_with_assistant_spans`; for
    `prompt` + `answer`, the answer) and `-100` elsewhere (prompts, video tokens, padding): found from the tokenizer's
    offsets in the text the model reads, never by tokenising a prefix again. Examples whose `video` is `None` (clips
    that failed to decode) are dropped. Returns the processor's tensors (`input_ids`, `attention_mask`,
    `pixel_values_videos`, `video_frames`, `video_frame_indices`, and `llm_frame_indices` when the LLM sees other
    frames) plus `labels`.
    """

    def __init__(self, processor, max_length: int | None = None):
        self.processor = processor
        self.max_length = max_length
        tokenizer = processor.tokenizer
        self.video_token = processor.video_token
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)

    def text_and_spans(self, example: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        """The text of an example and the character spans of what is learned in it."""
        if example.get("messages") is not None:
            return render_chat_with_assistant_spans(self.processor, _with_video(example["messages"]))
        if example.get("conversations") is not None:
            messages = conversations_to_messages(example["conversations"])
            return render_chat_with_assistant_spans(self.processor, messages)
        text = f"{example['prompt']} {example['answer']}"
        return text, [(len(example["prompt"]) + 1, len(text))]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        examples = [example for example in examples if example.get("video") is not None]  # failed decodes
        if not examples:
            raise ValueError("every clip of this batch failed to decode (see the warnings naming their paths)")
        texts, spans = zip(*(self.text_and_spans(example) for example in examples))
        tokenizer = self.processor.tokenizer
        starts_with_bos = tokenizer.bos_token is not None and all(t.startswith(tokenizer.bos_token) for t in texts)
        batch = self.processor(
            text=list(texts),
            videos=[example["video"] for example in examples],
            return_tensors="pt",
            padding=True,
            padding_side="right",
            return_offsets_mapping=True,
            **({"add_special_tokens": False} if starts_with_bos else {}),
        )
        offsets = batch.pop("offset_mapping")
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, -100)
        for row, (text, row_spans) in enumerate(zip(texts, spans)):
            # The processor expands each `<video>` of the text into the clip's video tokens: move the spans with it.
            places = [match.start() for match in re.finditer(re.escape(self.video_token), text)]
            expanded = int((input_ids[row] == self.video_token_id).sum())
            per_place = expanded // max(len(places), 1)
            gained = (per_place - 1) * len(self.video_token)
            learned = torch.zeros(input_ids.shape[1], dtype=torch.bool)
            for start, end in row_spans:
                shift_start = gained * sum(place < start for place in places)
                shift_end = gained * sum(place < end for place in places)
                token_start, token_end = offsets[row, :, 0], offsets[row, :, 1]
                learned |= (token_start < end + shift_end) & (token_end > start + shift_start)
            learned &= batch["attention_mask"][row].bool() & (input_ids[row] != self.video_token_id)
            labels[row, learned] = input_ids[row, learned]
        batch["labels"] = labels
        return dict(batch)


__all__ = [
    "LossComponentsCallback",
    "add_loss_components_logging",
    "freeze_parameters_without_gradients",
    "LlavaNextARDataCollator",
    "conversations_to_messages",
    "render_chat_with_assistant_spans",
]
