"""
The training step of the objective never reads data back from the device (no host/device synchronisation), and its
block structures are built once per shape.

A tensor on the `meta` device has a shape and no data: any `.item()`, `bool(tensor)`, `.tolist()` or `torch.equal`
on one raises. Running forward + backward on meta tensors therefore proves that the step decides nothing from values,
which on a GPU means no sync. transformers' own value checks (`torch_compilable_check`, which our input checks also
use) read values by design; `TRANSFORMERS_DISABLE_TORCH_CHECK=1` turns them off, as in production.
"""

from unittest import mock

import pytest
import torch

from helpers import tiny_config, tiny_model, video_batch
from llava_next_ar import LlavaNextARForConditionalGeneration
from llava_next_ar.modeling_llava_next_ar import frame_window


def meta_model(**autoregressive_config) -> LlavaNextARForConditionalGeneration:
    with torch.device("meta"):
        model = LlavaNextARForConditionalGeneration(tiny_config(**autoregressive_config))
    return model.train()


def to_meta(batch: dict) -> dict:
    return {key: value.to("meta") if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


@pytest.mark.parametrize("case", ["trainable_tower", "frozen_tower_reused", "shared_teacher", "fast_slow_indices"])
def test_training_step_reads_nothing_back_from_the_device(case, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_DISABLE_TORCH_CHECK", "1")
    model = meta_model(teacher="shared") if case == "shared_teacher" else meta_model()
    batch = video_batch(dtype=torch.float32)
    batch["attention_mask"] = None  # the base LLM's mask code reads a padding mask back; ours does not (below)
    if case == "frozen_tower_reused":
        model.model.vision_tower.requires_grad_(False)
        # The tower-equals-teacher comparison runs once per change of the weights (here: now), not per step.
        with mock.patch("torch.equal", lambda a, b: True):
            assert model.autoregressive_module.can_reuse_vision_forward(model.model.vision_tower)
    if case == "fast_slow_indices":
        batch["video_frame_indices"] = torch.tensor([[0, 3, 5, 9], [1, 2, 6, 7]])
        batch["llm_frame_indices"] = torch.tensor([[0, 5, 3, 9], [1, 6, 2, 7]])
    teacher_calls = []
    if model.autoregressive_module.teacher is not None:
        model.autoregressive_module.teacher.register_forward_hook(lambda *args: teacher_calls.append(1))

    output = model(**to_meta(batch))
    output.loss.backward()

    assert output.loss.device.type == "meta" and output.autoregressive_frame_losses.shape == (2, 3)
    assert teacher_calls == ([] if case in ("frozen_tower_reused", "shared_teacher") else [1])
    predictor = model.autoregressive_module.predictor
    assert all(p.grad is not None for p in predictor.parameters())


def test_module_reads_nothing_back_with_a_padding_mask():
    model = meta_model()
    module = model.autoregressive_module
    batch = video_batch(dtype=torch.float32)
    hidden_states = torch.randn(2, batch["input_ids"].shape[1], 32, device="meta", requires_grad=True)
    is_video = batch["input_ids"].to("meta") == model.config.video_token_id
    frame_indices = model.hidden_states_frame_indices(is_video, None)
    attention_mask = torch.ones(2, hidden_states.shape[1], dtype=torch.long, device="meta")
    output = module(
        batch["video_frames"].to("meta"),
        hidden_states=hidden_states,
        hidden_states_frame_indices=frame_indices,
        attention_mask=attention_mask,
        video_frame_indices=torch.tensor([[0, 1, 2, 3], [2, 4, 6, 8]], device="meta"),
    )
    output.loss.backward()
    assert hidden_states.grad.shape == hidden_states.shape


def test_input_checks_read_the_device_once_and_can_be_disabled(monkeypatch):
    model = meta_model()
    batch = to_meta(video_batch(dtype=torch.float32))
    batch["attention_mask"] = None
    batch["video_frame_indices"] = torch.arange(4, device="meta").expand(2, -1)
    reads = []

    def read(error_type, cond, message):
        reads.append(cond.shape)
        raise RuntimeError("a host read")

    with mock.patch("torch._check_tensor_all_with", read), pytest.raises(RuntimeError, match="a host read"):
        model(**batch)
    assert reads == [torch.Size([])]  # NaN frames, negative and non-increasing indices: one flag, one read
    monkeypatch.setenv("TRANSFORMERS_DISABLE_TORCH_CHECK", "1")
    assert model(**batch).loss.device.type == "meta"


def test_block_structures_are_built_once_per_shape():
    model = tiny_model()
    frame_window.cache_clear()
    for seed in range(3):
        model(**video_batch(seed=seed))
    assert (frame_window.cache_info().misses, frame_window.cache_info().hits) == (1, 2)
