"""DESIGN §4.1-4.3: the prediction of a frame depends on nothing from that frame or later ones."""

import pytest
import torch

from helpers import IMAGE_SIZE, VIDEO_TOKEN, tiny_model, video_batch


MODES = {
    "frame_causal_full_history": {"num_hist": None},
    "frame_causal_num_hist_2": {"num_hist": 2},
    "token_causal": {"num_hist": None, "use_frame_causal_mask": False},
    "teacher_reused_from_frozen_tower": {"num_hist": None},
    "teacher_shared": {"num_hist": None, "teacher": "shared"},
}


def run(model, batch):
    """Forward; returns predictions `[B, T-1, P, D]` (captured from the predictor) and the output."""
    captured = {}
    handle = model.autoregressive_module.predictor.register_forward_hook(
        lambda module, args, output: captured.__setitem__("predictions", output)
    )
    try:
        with torch.no_grad():
            output = model(**batch)
    finally:
        handle.remove()
    return captured["predictions"], output


def perturbed(batch, k, llm_positions=None):
    """Change only frame k: in `video_frames` and, consistently, in `pixel_values_videos`."""
    batch = {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    noise = torch.randn(batch["video_frames"].shape[0], 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
    batch["video_frames"][:, k] += noise
    if batch.get("pixel_values_videos") is not None:
        for position in llm_positions if llm_positions is not None else [k]:
            batch["pixel_values_videos"][:, position] += noise
    return batch


@pytest.mark.parametrize("mode", list(MODES))
def test_influence_matrix_perturbing_each_frame(mode):
    """For every k: targets <= k keep bit-identical predictions, targets < k bit-identical losses; target k+1 moves."""
    num_frames = 5
    model = tiny_model(**MODES[mode])
    if mode == "teacher_reused_from_frozen_tower":
        model.model.vision_tower.requires_grad_(False)  # the LLM's vision forward stands in for the teacher
    batch = video_batch(num_frames=num_frames, text_before=3, text_after=3)
    reference, reference_output = run(model, batch)
    for k in range(num_frames):
        predictions, output = run(model, perturbed(batch, k))
        for target in range(1, num_frames):  # prediction index target-1 predicts frame `target`
            same = torch.equal(predictions[:, target - 1], reference[:, target - 1])
            if target <= k:
                assert same, f"{mode}: changing frame {k} moved the prediction of frame {target}"
            elif target == k + 1 or MODES[mode]["num_hist"] is None:
                assert not same, (
                    f"{mode}: changing frame {k} did not move the prediction of frame {target} (blind test)"
                )
        losses, reference_losses = output.autoregressive_frame_losses, reference_output.autoregressive_frame_losses
        assert torch.equal(losses[:, : max(k - 1, 0)], reference_losses[:, : max(k - 1, 0)])
        if k >= 1:
            assert not torch.equal(losses[:, k - 1], reference_losses[:, k - 1]), "the target's own loss must move"


def test_influence_matrix_by_gradient():
    """Autograd: zero gradient from frame j into the prediction of any target <= j, through LLM and teacher paths."""
    num_frames = 4
    model = tiny_model(num_hist=None)
    batch = video_batch(num_frames=num_frames, text_after=2)
    pixels = batch["pixel_values_videos"].requires_grad_(True)
    features = model.autoregressive_module.encode_frames(batch["video_frames"]).requires_grad_(True)
    captured = {}
    handle = model.autoregressive_module.predictor.register_forward_hook(
        lambda module, args, output: captured.__setitem__("predictions", output)
    )
    original_encode = model.autoregressive_module.encode_frames
    model.autoregressive_module.encode_frames = lambda *args, **kwargs: features
    try:
        model(**batch)
    finally:
        handle.remove()
        model.autoregressive_module.encode_frames = original_encode
    predictions = captured["predictions"]
    for target in range(1, num_frames):
        grads = torch.autograd.grad(predictions[:, target - 1].sum(), [pixels, features], retain_graph=True)
        for name, grad in zip(("pixel_values_videos (LLM path)", "teacher features"), grads):
            per_frame = grad.abs().flatten(2).sum(-1)  # [B, T]
            assert torch.all(per_frame[:, target:] == 0), f"{name}: frames >= {target} reach its prediction"
            assert torch.all(per_frame[:, target - 1] > 0), f"{name}: context frame {target - 1} does not"


def test_fast_slow_concat_order_follows_source_time():
    """DESIGN §4.2/§4.3: the LLM sees [slow] + [fast] (out of time order); video_frames are the sorted union."""
    torch.manual_seed(0)
    model = tiny_model(num_hist=None)
    clip = torch.randn(1, 16, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
    slow, fast = [0, 5, 10, 15], [13, 14, 15]
    llm_order = slow + fast  # concat: [slow] + [fast]; slow frame 15 comes before fast frame 13
    times = sorted(set(llm_order))  # [0, 5, 10, 13, 14, 15]
    input_ids = torch.cat(
        [torch.tensor([[5, 6]]), torch.full((1, 4 * len(llm_order)), VIDEO_TOKEN), torch.tensor([[7, 8, 9]])], dim=1
    )
    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": clip[:, llm_order],
        "llm_frame_indices": torch.tensor([llm_order]),
        "video_frames": clip[:, times],
        "video_frame_indices": torch.tensor([times]),
        "labels": input_ids,
    }
    reference, reference_output = run(model, batch)
    for k, time in enumerate(times):
        changed = clip.clone()
        changed[:, time] += torch.randn(3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
        predictions, output = run(
            model, {**batch, "pixel_values_videos": changed[:, llm_order], "video_frames": changed[:, times]}
        )
        for target in range(1, len(times)):
            same = torch.equal(predictions[:, target - 1], reference[:, target - 1])
            assert same == (target <= k), f"time {time}: prediction of time {times[target]} same={same}"
        assert torch.equal(
            output.autoregressive_frame_losses[:, : max(k - 1, 0)],
            reference_output.autoregressive_frame_losses[:, : max(k - 1, 0)],
        )


def test_llm_states_after_the_target_are_never_read():
    """Left padding, text after the video and a different LLM sampling: the allowed memory is a time prefix."""
    model = tiny_model(num_hist=None)
    module = model.autoregressive_module
    frame_indices = torch.tensor([[-1, -1, 0, 0, 2, 2, 4, 4, -1], [-1, 0, 0, 2, 2, 4, 4, -1, -1]])
    attention_mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 0]])
    index, mask = module.memory_slots(frame_indices, torch.tensor([[1, 3], [1, 3]]), attention_mask)
    readable = [set((index[b, t][mask[b, t]] - 1).tolist()) - {-1} for b in range(2) for t in range(2)]
    # receptive fields (cummax): row 0 [-1,-1,0,0,2,2,4,4,4], row 1 [-1,0,0,2,2,4,4,4,4]; padding never read
    assert readable == [{1, 2, 3}, {1, 2, 3, 4, 5}, {0, 1, 2}, {0, 1, 2, 3, 4}]
