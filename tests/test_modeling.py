"""The model behaves like any transformers model, and the objective does what DESIGN.md says."""

import inspect
import logging

import pytest
import torch
from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

from helpers import base_twin, tiny_config, tiny_model, video_batch
from llava_next_ar import (
    LlavaNextARConfig,
    LlavaNextARForConditionalGeneration,
    create_autoregressive_reconstruction_module,
)


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_output_has_all_losses_and_loss_is_their_sum():
    model = tiny_model()
    output = model(**video_batch())
    assert output.autoregressive_frame_losses.shape == (2, 3)
    assert torch.equal(output.loss, output.main_loss + output.autoregressive_loss)
    weight = model.config.autoregressive_config["loss_weight"]
    assert torch.equal(output.autoregressive_loss, weight * output.autoregressive_frame_losses.mean())
    only_frames = model.train()(**{**video_batch(), "labels": None})  # training without labels: the objective alone
    assert only_frames.main_loss is None and torch.equal(only_frames.loss, only_frames.autoregressive_loss)
    model.eval()
    only_labels = model(**{**video_batch(), "video_frames": None})
    assert only_labels.autoregressive_loss is None and torch.equal(only_labels.loss, only_labels.main_loss)


@pytest.mark.parametrize("how", ["enabled_false", "no_video_frames"])
def test_disabled_objective_equals_base_model(how):
    """`enabled=False` (and a call without `video_frames`) gives the base model's outputs and gradients exactly."""
    model = tiny_model()
    if how == "enabled_false":
        torch.manual_seed(0)
        disabled = LlavaNextARForConditionalGeneration(tiny_config(enabled=False)).to(torch.float64).eval()
        assert not hasattr(disabled, "autoregressive_module")
        disabled.load_state_dict(base_twin(model).state_dict())
        model = disabled
    base = base_twin(model)
    assert set(base.state_dict()) == {k for k in model.state_dict() if not k.startswith("autoregressive_module.")}
    batch = video_batch()
    if how == "no_video_frames":
        batch["video_frames"] = None
    ours, theirs = model(**batch), base(**{k: v for k, v in batch.items() if k != "video_frames"})
    assert torch.equal(ours.logits, theirs.logits) and torch.equal(ours.loss, theirs.loss)
    ours.loss.backward()
    theirs.loss.backward()
    ours_grads, theirs_grads = grads(model), grads(base)
    assert ours_grads.keys() == theirs_grads.keys()
    assert all(torch.equal(ours_grads[name], theirs_grads[name]) for name in theirs_grads)


def test_main_loss_equals_base_loss_when_objective_runs():
    model = tiny_model()
    batch = video_batch()
    ours = model(**batch)
    theirs = base_twin(model)(**{k: v for k, v in batch.items() if k != "video_frames"})
    assert torch.equal(ours.logits, theirs.logits) and torch.equal(ours.main_loss, theirs.loss)


def test_auxiliary_loss_trains_llm_vision_tower_and_predictor_not_teacher():
    model = tiny_model().train()
    model(**video_batch()).autoregressive_loss.backward()
    named = dict(model.named_parameters())
    nonzero = {name for name, p in named.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("model.language_model.layers.") for n in nonzero)
    assert any(n.startswith("model.vision_tower.") for n in nonzero)
    assert any(n.startswith("autoregressive_module.predictor.") for n in nonzero)
    teacher = [n for n in named if n.startswith("autoregressive_module.teacher.")]
    assert teacher and all(named[n].grad is None and not named[n].requires_grad for n in teacher)


def test_teacher_is_a_frozen_registered_submodule_in_eval_mode():
    model = tiny_model(dtype=torch.float32)
    teacher = model.autoregressive_module.teacher
    assert any(k.startswith("autoregressive_module.teacher.") for k in model.state_dict())
    model.train()
    assert model.training and not teacher.training and model.model.vision_tower.training
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in teacher.parameters())
    tower, copy = model.model.vision_tower.state_dict(), teacher.state_dict()
    assert all(torch.equal(tower[k], copy[k]) for k in tower)


def test_save_pretrained_round_trip_is_exact(tmp_path):
    model = tiny_model(num_hist=2)
    with torch.no_grad():  # make the teacher differ from the tower, as after training
        for p in model.model.vision_tower.parameters():
            p.add_(0.01)
    model.save_pretrained(tmp_path)
    loaded = LlavaNextARForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert loaded.config.autoregressive_config == model.config.autoregressive_config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    batch = video_batch()
    a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.autoregressive_frame_losses, b.autoregressive_frame_losses)
    # the teacher stays frozen after loading: no optimizer group or DDP bucket ever sees it
    assert not any(p.requires_grad for p in loaded.autoregressive_module.teacher.parameters())
    assert loaded.num_parameters(only_trainable=True) == model.num_parameters(only_trainable=True)
    assert not loaded.train().autoregressive_module.teacher.training


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_plain_llava_next_video_checkpoint_gets_teacher_copied_from_tower(tmp_path, caplog, layout):
    model = tiny_model()
    base = base_twin(model)
    with torch.no_grad():
        for p in base.model.vision_tower.parameters():
            p.add_(0.5)  # differs from anything a fresh init would give
    base.save_pretrained(tmp_path)
    if layout == "legacy":  # the key layout of the llava-hf checkpoints on the Hub
        from safetensors.torch import save_file

        def legacy(key):
            if key == "lm_head.weight":
                return "language_model.lm_head.weight"
            if key.startswith("model.language_model."):
                return "language_model.model." + key[len("model.language_model."):]
            return key[len("model."):]

        save_file({legacy(k): v.contiguous() for k, v in base.state_dict().items()}, tmp_path / "model.safetensors",
                  metadata={"format": "pt"})
    config = LlavaNextARConfig.from_dict(
        {**LlavaNextVideoConfig.from_pretrained(tmp_path).to_dict(), "autoregressive_config": {"num_heads": 4}}
    )
    with caplog.at_level(logging.WARNING):
        loaded = LlavaNextARForConditionalGeneration.from_pretrained(tmp_path, config=config, dtype=torch.float64)
    tower, teacher = base.model.vision_tower.state_dict(), loaded.autoregressive_module.teacher.state_dict()
    assert all(torch.equal(tower[k], teacher[k]) for k in tower)
    base_state, loaded_state = base.state_dict(), loaded.state_dict()
    assert all(torch.equal(base_state[k], loaded_state[k]) for k in base_state)  # legacy key layout: lm_head too
    assert "teacher" not in caplog.text
    assert "predictor" in caplog.text  # the predictor is new, and reported as such
    predictor = loaded.autoregressive_module.predictor
    assert all(torch.isfinite(p).all() for p in predictor.parameters()) and not predictor.memory_null.any()


def test_init_weights_initialises_every_predictor_parameter():
    """Missing weights are materialised uninitialised (`empty_like`) and then `_init_weights` runs: it must set all."""
    model = tiny_model()
    predictor = model.autoregressive_module.predictor
    with torch.no_grad():
        for parameter in predictor.parameters():
            parameter.fill_(float("nan"))
            parameter._is_hf_initialized = False
    for module in predictor.modules():
        module._is_hf_initialized = False
        model._init_weights(module)
    assert all(torch.isfinite(p).all() for p in predictor.parameters())


def test_inference_without_labels_does_not_run_the_objective():
    """Like every transformers model: no labels at inference, no loss; the teacher and predictor do not run."""
    model = tiny_model()
    calls = []
    model.autoregressive_module.register_forward_hook(lambda *args: calls.append(1))
    batch = {**video_batch(), "labels": None}
    output = model(**batch)
    assert output.loss is None and output.autoregressive_loss is None and calls == []
    base_inputs = {k: v for k, v in batch.items() if k != "video_frames"}
    assert torch.equal(output.logits, base_twin(model)(**base_inputs).logits)
    model(**video_batch())
    assert calls == [1]


def test_generate_is_unaffected_by_the_objective():
    model = tiny_model()
    batch = video_batch(batch_size=1)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values_videos")}
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    plain = model.generate(**inputs, **kwargs)
    with_frames = model.generate(**inputs, video_frames=batch["video_frames"], **kwargs)
    assert torch.equal(plain, with_frames)
    assert torch.equal(plain, base_twin(model).generate(**inputs, **kwargs))


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = video_batch()
    results = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.autoregressive_module.predictor.layers[0].gradient_checkpointing
        model(**batch).loss.backward()
        results.append(grads(model))
    assert results[0].keys() == results[1].keys()
    assert all(torch.allclose(results[0][k], results[1][k], rtol=0, atol=1e-12) for k in results[0])


def test_sdpa_and_eager_attention_agree():
    batch = video_batch()
    outputs = {}
    for implementation in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = LlavaNextARForConditionalGeneration(tiny_config(attn_implementation=implementation))
        outputs[implementation] = model.to(torch.float64).eval()(**batch).autoregressive_frame_losses
    # Llama's eager attention takes its softmax in float32, so float64 runs agree to ~1e-9, not bitwise
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], rtol=1e-7, atol=1e-9)


def test_num_hist_limits_the_frames_a_prediction_reads():
    """Teacher path only (fusion off): with num_hist=1, frame 0 cannot reach the prediction of frame 2."""
    batch = video_batch(num_frames=4)
    changed = {**batch, "video_frames": batch["video_frames"].clone()}
    changed["video_frames"][:, 0] += 1.0
    moved = {}
    for num_hist in (1, 2, None):
        model = tiny_model(num_hist=num_hist, fuse_llm_hidden_states=False)
        with torch.no_grad():
            a, b = model(**batch), model(**changed)
        moved[num_hist] = not torch.equal(a.autoregressive_frame_losses[:, 1], b.autoregressive_frame_losses[:, 1])
    assert moved == {1: False, 2: True, None: True}


def test_token_causal_mode_hides_later_patches_of_the_same_frame():
    model = tiny_model(use_frame_causal_mask=False, fuse_llm_hidden_states=False)
    module = model.autoregressive_module
    features = module.encode_frames(video_batch()["video_frames"]).requires_grad_(True)
    predictions = module(video_batch()["video_frames"], teacher_features=features).predictions
    grad = torch.autograd.grad(predictions[:, 1, 5].sum(), features)[0]  # frame 2, patch 5 (context frame 1)
    per_patch = grad[:, 1].abs().sum(-1)
    assert torch.all(per_patch[:, 6:] == 0) and torch.all(per_patch[:, :6] > 0)
    frame_model = tiny_model(fuse_llm_hidden_states=False).autoregressive_module
    frame_predictions = frame_model(video_batch()["video_frames"], teacher_features=features).predictions
    frame_grad = torch.autograd.grad(frame_predictions[:, 1, 5].sum(), features)[0]
    assert torch.all(frame_grad[:, 1].abs().sum(-1) > 0)  # frame mode: all patches of the context frame


def test_shared_teacher_holds_no_copy_and_still_trains():
    model = tiny_model(teacher="shared")
    assert model.autoregressive_module.teacher is None
    assert not any("teacher" in k for k in model.state_dict())
    output = model(**video_batch())
    output.loss.backward()
    assert torch.isfinite(output.autoregressive_loss)
    assert any(p.grad is not None for p in model.autoregressive_module.predictor.parameters())


def test_seed_factory_and_compute_autoregressive_loss():
    model = tiny_model()
    module = create_autoregressive_reconstruction_module(
        vision_tower=model.model.vision_tower,
        hidden_size=32,
        config={"embedding_dim": 24, "num_hist": 3, "loss_weight": 0.1, "num_heads": 4, "num_layers": 3},
    )
    tower, teacher = model.model.vision_tower.state_dict(), module.teacher.state_dict()
    assert all(torch.equal(tower[k], teacher[k]) for k in tower)
    hidden_states = torch.randn(2, 10, 32, dtype=torch.float64)
    loss = module.compute_autoregressive_loss(hidden_states=hidden_states, video_frames=video_batch()["video_frames"])
    assert loss.dim() == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="embedding_dim"):
        create_autoregressive_reconstruction_module(model.model.vision_tower, 32, {"embedding_dim": 1152})


BAD_INPUTS = {
    "rank": (lambda b: {"video_frames": b["video_frames"][0]}, "video_frames"),
    "one_frame": (lambda b: {"video_frames": b["video_frames"][:, :1], "pixel_values_videos": None}, "num_frames>=2"),
    "channels": (lambda b: {"video_frames": b["video_frames"][:, :, :1]}, "video_frames"),
    "image_size": (lambda b: {"video_frames": b["video_frames"][..., :16, :16]}, "32, 32"),
    "non_finite": (
        lambda b: {"video_frames": b["video_frames"].index_fill(1, torch.tensor([2]), float("nan"))}, "NaN"
    ),
    "batch": (lambda b: {"video_frames": b["video_frames"][:1]}, "batch_size=2"),
    "integer_frames": (lambda b: {"video_frames": b["video_frames"].long()}, "floating-point"),
    "indices_shape": (lambda b: {"video_frame_indices": torch.arange(4)}, "video_frame_indices"),
    "indices_not_increasing": (
        lambda b: {"video_frame_indices": torch.tensor([[0, 2, 2, 3], [0, 1, 2, 3]])}, "strictly increasing"
    ),
    "indices_float": (lambda b: {"video_frame_indices": torch.zeros(2, 4)}, "integer"),
    "llm_frames_disagree": (lambda b: {"pixel_values_videos": b["pixel_values_videos"][:, :3]}, "llm_frame_indices"),
    "negative_indices": (
        lambda b: {"video_frame_indices": torch.tensor([[-1, 0, 1, 2]] * 2)},
        r"video_frame_indices` must be >= 0.*\[\[-1",
    ),
    "llm_indices_shape": (
        lambda b: {"llm_frame_indices": torch.arange(3).expand(2, -1)}, r"llm_frame_indices` must have shape \(2, 4\)"
    ),
    "llm_indices_without_llm_video": (
        lambda b: {"pixel_values_videos": None, "llm_frame_indices": torch.arange(4).expand(2, -1)},
        "LLM sees no video",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_clear_error(case):
    model = tiny_model()
    batch = video_batch()
    change, message = BAD_INPUTS[case]
    if case == "llm_frames_disagree":
        batch["input_ids"] = batch["input_ids"][:, :-6]
        batch["attention_mask"] = batch["attention_mask"][:, :-6]
        batch["labels"] = batch["labels"][:, :-6]
    with pytest.raises(ValueError, match=message):
        model(**{**batch, **change(batch)})


def test_precomputed_llm_video_features_work_with_llm_frame_indices():
    model = tiny_model()
    batch = video_batch()
    batch["llm_frame_indices"] = torch.arange(4).expand(2, -1)
    with torch.no_grad():
        direct = model(**batch)
        video = model.model.get_video_features(batch["pixel_values_videos"], return_dict=True)
        precomputed = model(**{**batch, "pixel_values_videos": None}, mm_encoder_outputs={"video": video})
    assert torch.equal(direct.logits, precomputed.logits)
    assert torch.equal(direct.autoregressive_frame_losses, precomputed.autoregressive_frame_losses)


def test_frozen_tower_forward_is_reused_as_the_teacher_exactly():
    """Issue 6: frozen tower + video_frames == pixel_values_videos: the teacher does not run, numbers are unchanged."""
    batch = video_batch()
    results = {}
    for reuse in (True, False):
        model = tiny_model().train()
        model.model.vision_tower.requires_grad_(False)
        calls = []
        model.autoregressive_module.teacher.register_forward_hook(lambda *args: calls.append(1))
        if not reuse:
            model.autoregressive_module.can_reuse_vision_forward = lambda tower: False
        output = model(**batch)
        output.loss.backward()
        results[reuse] = (output, grads(model), len(calls))
    reused, reused_grads, reused_calls = results[True]
    recomputed, recomputed_grads, recomputed_calls = results[False]
    assert (reused_calls, recomputed_calls) == (0, 1)
    assert torch.equal(reused.loss, recomputed.loss) and torch.equal(reused.logits, recomputed.logits)
    assert torch.equal(reused.autoregressive_frame_losses, recomputed.autoregressive_frame_losses)
    assert reused_grads.keys() == recomputed_grads.keys()
    assert all(torch.equal(reused_grads[k], recomputed_grads[k]) for k in reused_grads)


@pytest.mark.parametrize("case", ["trainable_tower", "tower_differs", "other_frames"])
def test_teacher_runs_when_the_tower_cannot_stand_in_for_it(case):
    model = tiny_model()
    batch = video_batch()
    if case != "trainable_tower":
        model.model.vision_tower.requires_grad_(False)
    if case == "tower_differs":
        with torch.no_grad():
            next(model.model.vision_tower.parameters()).add_(0.1)
    if case == "other_frames":  # other pixels of the same source frames: `llm_frame_indices` says they differ
        batch["pixel_values_videos"] = batch["pixel_values_videos"] + 1.0
        batch["llm_frame_indices"] = torch.arange(4).expand(2, -1)
    calls = []
    model.autoregressive_module.teacher.register_forward_hook(lambda *args: calls.append(1))
    model(**batch)
    assert calls == [1]


def test_shared_teacher_reuses_the_llm_vision_forward():
    model = tiny_model(teacher="shared")
    calls = []
    model.model.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    output = model(**video_batch())
    assert calls == [1] and torch.isfinite(output.autoregressive_loss)


def test_predictor_hidden_size_sets_the_predictor_width_and_keeps_causality():
    model = tiny_model(predictor_hidden_size=8, num_heads=2)
    predictor = model.autoregressive_module.predictor
    assert predictor.embed.out_features == 8 and predictor.layers[0].cross_attn.k_proj.in_features == 32
    default = tiny_model().autoregressive_module.predictor
    assert default.embed.out_features == 24  # None = the teacher width (embedding_dim)
    assert model.config.autoregressive_config["predictor_hidden_size"] == 8
    seed_width = tiny_model(predictor_hidden_size=32).autoregressive_module.predictor  # the seed's: the LLM width
    assert seed_width.embed.out_features == 32 and seed_width.layers[0].cross_attn.k_proj.in_features == 32
    sizes = [sum(p.numel() for p in m.parameters()) for m in (predictor, default, seed_width)]
    assert sizes[0] < sizes[1] < sizes[2]
    batch = video_batch()
    changed = {**batch, **{key: batch[key].clone() for key in ("video_frames", "pixel_values_videos")}}
    changed["video_frames"][:, 2] += 1.0
    changed["pixel_values_videos"][:, 2] += 1.0
    with torch.no_grad():
        a, b = model(**batch), model(**changed)
    assert torch.equal(a.autoregressive_frame_losses[:, :1], b.autoregressive_frame_losses[:, :1])
    assert not torch.equal(a.autoregressive_frame_losses[:, 2], b.autoregressive_frame_losses[:, 2])


def test_mlp_ratio_and_fuse_llm_hidden_states_do_what_they_say():
    layer = tiny_model(mlp_ratio=2.0).autoregressive_module.predictor.layers[0]
    assert layer.mlp[0].out_features == 48  # 2.0 x the predictor width 24
    fused, unfused = tiny_model(), tiny_model(fuse_llm_hidden_states=False)
    assert hasattr(fused.autoregressive_module.predictor.layers[0], "cross_attn")
    assert not hasattr(unfused.autoregressive_module.predictor.layers[0], "cross_attn")
    batch = video_batch()
    other_llm_view = {**batch, "pixel_values_videos": batch["pixel_values_videos"] + 1.0}
    with torch.no_grad():
        for model, moves in ((fused, True), (unfused, False)):  # only fused predictions read the LLM states
            a, b = model(**batch), model(**other_llm_view)
            assert (not torch.equal(a.autoregressive_frame_losses, b.autoregressive_frame_losses)) == moves


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile:UserWarning")
@pytest.mark.parametrize("implementation", ["sdpa", "flex_attention", "flash_attention_2"])
def test_every_advertised_attention_implementation_gives_the_eager_predictions(implementation, monkeypatch, caplog):
    """The predictor's masks hold under each implementation the model declares. flex_attention adds the mask to the
    scores (a boolean mask would not be applied): it gets 0/-inf. Its compiled kernel does not run on this CPU, so the
    test runs torch's reference (uncompiled) flex_attention through transformers' own flex path. Flash kernels take
    no such mask: the predictor uses sdpa and says so once."""
    import transformers.integrations.flex_attention as flex_integration
    from torch.nn.attention.flex_attention import flex_attention

    monkeypatch.setattr(
        flex_integration,
        "compile_friendly_flex_attention",
        lambda q, k, v, training=False, **kw: flex_attention(q, k, v, **kw),
    )
    model = tiny_model(dtype=torch.float32)
    module = model.autoregressive_module
    batch = video_batch(dtype=torch.float32)
    with torch.no_grad():
        teacher_features = module.encode_frames(batch["video_frames"])
        hidden_states = model(**batch, output_hidden_states=True).hidden_states[-1]
    frame_indices = model.hidden_states_frame_indices(model.video_token_mask(batch["input_ids"], None), None)

    def predictions(attn_implementation):
        model.config._attn_implementation = attn_implementation
        with torch.no_grad():
            out = module(batch["video_frames"], hidden_states=hidden_states, hidden_states_frame_indices=frame_indices,
                         attention_mask=batch["attention_mask"], teacher_features=teacher_features)
        return out.predictions

    eager = predictions("eager")
    with caplog.at_level("WARNING"):
        other = predictions(implementation)
    torch.testing.assert_close(other, eager, rtol=1e-5, atol=1e-5)
    assert ("predictor attends" in caplog.text) == (implementation == "flash_attention_2")
    assert getattr(type(model), "_supports_flex_attn") and getattr(type(model), "_supports_flash_attn")


# ---------------------------------------------------------------------------------------------------------------------
# Behaves like a transformers model under the checks of transformers' common model tests


def test_generation_mixin_is_a_direct_base_and_generate_takes_inputs_embeds():
    from transformers import GenerationMixin

    assert GenerationMixin in LlavaNextARForConditionalGeneration.__bases__
    model = tiny_model()
    batch = video_batch(batch_size=1)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    ours = model.generate(inputs_embeds=embeds, pixel_values_videos=batch["pixel_values_videos"], **kwargs)
    theirs = base_twin(model).generate(
        inputs_embeds=embeds, pixel_values_videos=batch["pixel_values_videos"], **kwargs
    )
    assert ours.shape == (1, 4) and torch.equal(ours, theirs)


def test_teacher_keys_are_declared_ignorable_when_missing_weights_and_biases_not_buffers():
    import re

    model = tiny_model()
    patterns = [re.compile(p) for p in model._keys_to_ignore_on_load_missing]
    teacher = model.autoregressive_module.teacher
    teacher_parameters = ["autoregressive_module.teacher." + n for n, _ in teacher.named_parameters()]
    assert teacher_parameters and all(any(p.search(key) for p in patterns) for key in teacher_parameters)
    others = [key for key in model.state_dict() if not key.startswith("autoregressive_module.teacher.")]
    others.append("autoregressive_module.teacher.embeddings.position_ids")
    assert not any(p.search(key) for p in patterns for key in others)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs the objective cannot make causal are refused; padding gives what the sample gives alone


def test_continuing_from_a_filled_cache_is_refused():
    model = tiny_model()
    batch = video_batch()
    prefix = model(**{k: v for k, v in batch.items() if k not in ("video_frames", "labels")}, use_cache=True)
    # the cache argument and output field are `cache` from transformers 5.24 on, `past_key_values` before
    parameters = inspect.signature(LlavaNextVideoForConditionalGeneration.forward).parameters
    name = "cache" if "cache" in parameters else "past_key_values"
    after = torch.tensor([[5, 6], [7, 8]])
    with pytest.raises(ValueError, match="filled cache"):
        model(input_ids=after, video_frames=batch["video_frames"], labels=after, **{name: getattr(prefix, name)})


def test_inputs_embeds_with_the_video_already_merged_are_refused():
    model = tiny_model()
    batch = video_batch()
    merged = model.model(**{k: batch[k] for k in ("input_ids", "pixel_values_videos")}, output_hidden_states=True)
    embeds = merged.hidden_states[0]  # the LLM's input: text and video features merged
    with pytest.raises(ValueError, match="already merged"):
        model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], video_frames=batch["video_frames"],
              labels=batch["labels"])
    # placeholders in `inputs_embeds` + `pixel_values_videos` is the supported form, and equals `input_ids`
    placeholders = model.get_input_embeddings()(batch["input_ids"])
    by_embeds = model(**{**batch, "input_ids": None, "inputs_embeds": placeholders})
    by_ids = model(**batch)
    assert torch.equal(by_embeds.autoregressive_frame_losses, by_ids.autoregressive_frame_losses)


def test_rows_with_uneven_video_token_counts_are_refused_even_when_the_total_matches():
    model = tiny_model()
    batch = video_batch()
    ids = batch["input_ids"].clone()
    first_video = int((ids[0] == 63).nonzero()[0])
    ids[0, first_video] = 5  # row 0 loses a video token ...
    ids[1, 0] = 63  # ... row 1 gains one: the total still matches the features
    with pytest.raises(ValueError, match=r"every row must hold 4 frames x 4 = 16 video tokens.*\[15, 17\]"):
        model(**{**batch, "input_ids": ids, "labels": ids})


def test_llm_frame_indices_given_as_list_positions_are_refused():
    model = tiny_model()
    batch = video_batch()
    batch["video_frame_indices"] = torch.tensor([[0, 4, 8, 12]] * 2)  # source times
    batch["llm_frame_indices"] = torch.tensor([[0, 1, 2, 3]] * 2)  # list positions: not source times
    with pytest.raises(ValueError, match="list positions are not source times"):
        model(**batch)
    batch["llm_frame_indices"] = torch.tensor([[0, 4, 8, 12]] * 2)
    assert torch.isfinite(model(**batch).autoregressive_loss)


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_padded_row_predicts_what_the_sample_predicts_alone(side):
    """Memory window = the last `num_hist` frames' worth of real tokens, never of padding."""
    model = tiny_model(num_hist=2)
    alone = video_batch(batch_size=1, text_after=2)
    pad = 7
    ids = torch.cat([alone["input_ids"], torch.zeros(1, pad, dtype=torch.long)], dim=1)
    mask = torch.cat([alone["attention_mask"], torch.zeros(1, pad, dtype=torch.long)], dim=1)
    position_ids = None
    if side == "left":
        ids, mask = ids.roll(pad, dims=1), mask.roll(pad, dims=1)
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    padded = {**alone, "input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    if position_ids is not None:
        padded["position_ids"] = position_ids

    def predictions(batch):
        captured = {}
        hook = model.autoregressive_module.predictor.register_forward_hook(lambda m, a, out: captured.update(p=out))
        with torch.no_grad():
            model(**batch)
        hook.remove()
        return captured["p"]

    torch.testing.assert_close(predictions(padded), predictions(alone), rtol=0, atol=1e-9)


def test_output_autoregressive_returns_predictions_teacher_features_and_indices():
    """Predictions leave the model through its output (as VJEPA2's `predictor_output`), also at inference."""
    model = tiny_model()
    batch = {**video_batch(), "labels": None, "video_frame_indices": torch.tensor([[0, 2, 5, 6], [1, 2, 3, 9]])}
    batch["llm_frame_indices"] = batch["video_frame_indices"]
    captured = {}
    hook = model.autoregressive_module.predictor.register_forward_hook(lambda m, a, out: captured.update(p=out))
    with torch.no_grad():
        output = model(**batch, output_autoregressive=True)
    hook.remove()
    result = output.autoregressive_output
    assert result.predictions.shape == (2, 3, 16, 24)
    assert torch.equal(result.teacher_features, model.autoregressive_module.encode_frames(batch["video_frames"]))
    # predict_residual (the default): the predictor's output is the change from the context frame
    assert torch.equal(result.predictions, captured["p"] + result.teacher_features[:, :-1])
    assert torch.equal(result.targets, result.teacher_features[:, 1:])
    assert result.context_frame_indices.tolist() == [[0, 2, 5], [1, 2, 3]]
    assert result.target_frame_indices.tolist() == [[2, 5, 6], [2, 3, 9]]
    frame_losses = (result.predictions - result.targets).pow(2).mean(dim=(-2, -1))
    assert torch.equal(frame_losses, output.autoregressive_frame_losses) and torch.equal(output.loss, result.loss)
    assert model(**video_batch()).autoregressive_output is None  # only when asked


@pytest.mark.parametrize("mode", ["predict_residual", "normalize_targets"])
def test_predictor_options_do_what_they_say_and_stay_causal(mode):
    """`predict_residual`: prediction = context features + the predictor's output; `normalize_targets`: the teacher's
    features are layer-normalised per patch before the predictor and the loss. Each keeps causality."""
    options = {"predict_residual": False, "normalize_targets": False}
    plain, model = tiny_model(num_hist=None, **options), tiny_model(num_hist=None, **{**options, mode: True})
    batch = video_batch(num_frames=5)
    with torch.no_grad():
        reference = plain(**batch, output_autoregressive=True).autoregressive_output
        result = model(**batch, output_autoregressive=True).autoregressive_output
    features = reference.teacher_features
    if mode == "predict_residual":
        assert torch.equal(result.teacher_features, features)
        torch.testing.assert_close(result.predictions, reference.predictions + features[:, :-1], rtol=0, atol=1e-12)
    else:
        expected = torch.nn.functional.layer_norm(features, features.shape[-1:])
        assert torch.equal(result.teacher_features, expected)
        assert result.teacher_features.mean(-1).abs().max() < 1e-12
        assert not torch.allclose(result.predictions, reference.predictions)
    for k in range(5):  # changing frame k moves no prediction of a frame <= k
        changed = {**batch, "video_frames": batch["video_frames"].clone(), "pixel_values_videos": None,
                   "llm_frame_indices": None}
        changed["video_frames"][:, k] += 1.0
        changed["pixel_values_videos"] = changed["video_frames"].clone()
        with torch.no_grad():
            moved = model(**changed, output_autoregressive=True).autoregressive_output.predictions
        assert torch.equal(moved[:, :k], result.predictions[:, :k]), k


@pytest.mark.parametrize("num_hist", [None, 1, 2, 3, 7])
@pytest.mark.parametrize("frame_causal", [True, False])
def test_the_predictor_applies_exactly_the_frame_level_mask_generator_mask(num_hist, frame_causal):
    """One source of truth: the blocks the predictor gathers, rendered densely, are the seed-named helper's masks."""
    from llava_next_ar import FrameLevelMaskGenerator

    predictor = tiny_model(num_hist=num_hist, use_frame_causal_mask=frame_causal).autoregressive_module.predictor
    frames, patches = 5, 3
    dense = predictor.dense_attention_mask(frames, patches)
    if not frame_causal:
        expected = FrameLevelMaskGenerator.create_token_causal_mask(frames, patches, window_size=num_hist)
    elif num_hist is None:
        expected = FrameLevelMaskGenerator.create_causal_frame_mask(frames, patches)
    else:
        expected = FrameLevelMaskGenerator.create_sliding_window_frame_mask(frames, patches, num_hist)
    assert torch.equal(dense, expected)
    # ... and it is what the predictor does: in one layer, output token i depends on input token j iff dense[i, j]
    predictor = tiny_model(
        num_hist=num_hist, use_frame_causal_mask=frame_causal, num_layers=1, fuse_llm_hidden_states=False
    ).autoregressive_module.predictor
    module_patches = 16  # the tiny tower's patches per frame
    features = torch.randn(1, frames, module_patches, 24, dtype=torch.float64)
    times = torch.arange(frames)[None]
    with torch.no_grad():
        reference = predictor(features, times, times + 1).flatten(1, 2)[0]  # [T*P, D]
        influence = torch.zeros(frames * module_patches, frames * module_patches, dtype=torch.bool)
        for j in range(frames * module_patches):  # perturb input token j; which outputs move?
            changed = features.flatten(1, 2).clone()
            changed[0, j] += 1.0
            moved = predictor(changed.view_as(features), times, times + 1).flatten(1, 2)[0]
            influence[:, j] = (moved != reference).any(dim=-1)
    assert torch.equal(influence, predictor.dense_attention_mask(frames, module_patches))


@pytest.mark.parametrize("enabled", [True, False])
def test_no_split_modules_name_only_present_classes(enabled):
    """FSDP's transformer-based auto wrap (accelerate's default `fsdp_transformer_layer_cls_to_wrap`) raises on a
    class the model does not contain; the children declare some (CLIP's vision model: `CLIPTextEmbeddings`)."""
    from accelerate.utils.dataclasses import get_module_class_from_name

    model = tiny_model(enabled=enabled)
    present = {type(module).__name__ for module in model.modules()}
    assert model._no_split_modules and set(model._no_split_modules) <= present
    assert ("LlavaNextARPredictorLayer" in model._no_split_modules) == enabled
    assert all(get_module_class_from_name(model, name) is not None for name in model._no_split_modules)
