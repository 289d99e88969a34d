"""
Every transformers internal the remote code still touches, pinned by name.

The remote code runs inside whatever transformers the user has. It lives on the base model's public surface (it builds
on `LlavaNextVideoForConditionalGeneration` with `super().__init__`, passes the base output through, lets cache and
position arguments travel in `**kwargs`). What it still needs beyond that surface is listed here, one test each, so the
next release that moves one fails here, by name, before anything else does. Keep this list short; say why each is
needed.
"""

import inspect
import re
import subprocess
import sys

import pytest
import torch
import transformers
from transformers import PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from helpers import ROOT, tiny_model, video_batch
from llava_next_ar import configuration_llava_next_ar, modeling_llava_next_ar
from llava_next_ar.configuration_llava_next_ar import TESTED_TRANSFORMERS, check_transformers_version


def test_conversion_registry_knows_llava_next_video():
    """Plain LLaVA-NeXT-Video checkpoints use the legacy key layout: the model registers the base's renamings."""
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    assert get_checkpoint_conversion_mapping("llava_next_video")
    assert "overwrite" in inspect.signature(register_checkpoint_conversion_mapping).parameters
    assert get_checkpoint_conversion_mapping("LlavaNextARForConditionalGeneration")


def test_from_pretrained_calls_tie_weights_with_the_missing_keys():
    """A checkpoint without a teacher gets the tower copied in from `tie_weights(missing_keys=...)`, before the missing
    keys are filtered by `_keys_to_ignore_on_load_missing`."""
    assert {"missing_keys", "recompute_mapping"} <= set(inspect.signature(PreTrainedModel.tie_weights).parameters)
    source = inspect.getsource(PreTrainedModel._finalize_model_loading)
    assert source.index("tie_weights(missing_keys=") < source.index("_adjust_missing_and_unexpected_keys")


def test_base_forward_takes_precomputed_video_features():
    """Teacher reuse hands the LLM's own vision forward to the base as `mm_encoder_outputs` (the one capability-checked
    place: `base_forward_takes_video_features`); without it the teacher recomputes the same numbers."""
    assert modeling_llava_next_ar.base_forward_takes_video_features()
    model = tiny_model()
    frames = video_batch()["pixel_values_videos"]
    outputs = model.model.get_video_features(frames, return_dict=True)
    assert outputs.pooler_output.shape[:2] == (2, 4 * model.config.video_tokens_per_frame)
    assert outputs.hidden_states[model.config.vision_feature_layer] is not None


def test_output_hidden_states_selects_layers_by_index():
    """The teacher asks its tower for only `vision_feature_layer`, and the model asks the LLM for only its last
    (normed) hidden state, by passing indices as `output_hidden_states`."""
    model = tiny_model()
    batch = video_batch()
    tower = model.model.vision_tower
    pixels = batch["video_frames"].flatten(0, 1)
    full = tower(pixels, output_hidden_states=True).hidden_states
    selected = tower(pixels, output_hidden_states=-2).hidden_states
    assert torch.equal(selected[-2], full[-2]) and all(state is None for state in selected[:-2])
    inputs = {k: batch[k] for k in ("input_ids", "pixel_values_videos")}
    last = model.model(**inputs, output_hidden_states=-1)
    assert torch.equal(last.hidden_states[-1], last.last_hidden_state)


def test_torch_compilable_check_takes_a_lazy_message():
    """The model's value checks are one device-side flag read through `torch_compilable_check(condition, message)`,
    so `TRANSFORMERS_DISABLE_TORCH_CHECK=1` turns them off with the base model's own."""
    from transformers.utils import torch_compilable_check

    torch_compilable_check(torch.tensor(True), lambda: "unused")
    with pytest.raises(ValueError, match="lazy"):
        torch_compilable_check(torch.tensor(False), lambda: "lazy")


def test_attention_interface_and_checkpointing_layer():
    """The predictor's attention dispatches through `ALL_ATTENTION_FUNCTIONS`; its layers are checkpointable."""
    from transformers.modeling_layers import GradientCheckpointingLayer
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert {"sdpa", "flex_attention"} <= set(ALL_ATTENTION_FUNCTIONS.valid_keys())
    assert ALL_ATTENTION_FUNCTIONS.get_interface("eager", len) is len
    assert issubclass(modeling_llava_next_ar.LlavaNextARPredictorLayer, GradientCheckpointingLayer)


def test_config_subclass_hook_and_video_token_id():
    """`LlavaNextARConfig` validates `autoregressive_config` in `__post_init__` (configs are dataclasses in v5)."""
    from transformers import LlavaNextVideoConfig

    assert "__post_init__" in vars(LlavaNextVideoConfig) or hasattr(LlavaNextVideoConfig, "__post_init__")
    config = tiny_model().config
    assert config.video_token_id == config.video_token_index


def test_processor_hooks():
    """The processor overrides `prepare_inputs_layout` and `validate_inputs` (public) and `_process_videos` (private,
    returning `(outputs, replacements)`), the steps `ProcessorMixin.__call__` runs for videos. `_process_videos` is
    the one private override: the base makes one `<video>` replacement per clip that `make_batched_videos` counts,
    and it drops the clip forms our video processor adds (a window mapping, a `SampledVideo`); no public hook sets
    the count. When `make_batched_videos` keeps them, the override can go."""
    from transformers.video_utils import make_batched_videos

    source = inspect.getsource(ProcessorMixin.__call__)
    assert "self.prepare_inputs_layout(" in source and "self.validate_inputs(" in source
    assert re.search(r"processed_videos, videos_replacements = self\._process_videos\(", source)
    assert list(inspect.signature(ProcessorMixin._process_videos).parameters) == ["self", "videos", "kwargs"]
    assert "make_batched_videos(videos)" in inspect.getsource(ProcessorMixin._process_videos)
    def count(videos) -> int | None:
        try:
            return len(make_batched_videos(videos))
        except (KeyError, TypeError, ValueError):  # 5.23/5.24: a mapping first raises KeyError
            return None

    assert count([{"path": "clip.mp4", "start_frame": 0, "num_frames": 2}, torch.zeros(2, 8, 8, 3)]) != 2


def test_video_processor_hooks():
    """`LlavaNextARVideoProcessor` builds on public methods of `BaseVideoProcessor`: it overrides `preprocess` (and
    calls the base's with `do_sample_frames=False` for the pixels), calls `sample_frames(metadata, num_frames, fps)`
    for `do_sample_frames`, overrides `from_dict` (a preset given at load time), and declares its settings in
    `valid_kwargs` (a `VideosKwargs` TypedDict) so `_set_attributes` stores them and `to_dict` saves them."""
    from transformers import LlavaNextVideoVideoProcessor
    from transformers.image_processing_utils import BaseImageProcessor
    from transformers.processing_utils import VideosKwargs
    from transformers.video_processing_utils import BaseVideoProcessor

    from llava_next_ar.video_processing_llava_next_ar import LlavaNextARVideoProcessor

    assert LlavaNextARVideoProcessor.__mro__[1] is LlavaNextVideoVideoProcessor
    assert issubclass(LlavaNextVideoVideoProcessor, BaseVideoProcessor)
    assert set(VideosKwargs.__annotations__) < set(LlavaNextARVideoProcessor.valid_kwargs.__annotations__)
    assert list(inspect.signature(BaseVideoProcessor.preprocess).parameters) == ["self", "videos", "kwargs"]
    assert {"metadata", "num_frames", "fps"} <= set(inspect.signature(BaseVideoProcessor.sample_frames).parameters)
    assert list(inspect.signature(BaseVideoProcessor.from_dict).parameters) == ["video_processor_dict", "kwargs"]
    assert "self.valid_kwargs.__annotations__" in inspect.getsource(BaseImageProcessor._set_attributes)
    preprocess = inspect.getsource(BaseVideoProcessor.preprocess)
    assert "self._decode_and_sample_videos(" in preprocess and "do_sample_frames=do_sample_frames" in preprocess
    private = {
        name for name, value in vars(LlavaNextARVideoProcessor).items()
        if name.startswith("_") and not name.startswith("__") and callable(value)
    }
    inherited = {name for name in private if any(name in vars(base) for base in LlavaNextARVideoProcessor.__mro__[1:])}
    assert inherited == set(), f"overrides private methods of the base: {inherited}"


def test_save_pretrained_writes_the_current_key_layout_on_request():
    """`save_pretrained(save_original_format=False)` keeps the module key names (Trainer resumes without
    conversion)."""
    assert "save_original_format" in inspect.signature(PreTrainedModel.save_pretrained).parameters


def test_generation_forwards_unknown_inputs_and_drops_labels():
    """`generate` forwards `video_frames` to the model but never `labels`: at inference the objective never runs."""
    from transformers.generation import utils as generation_utils

    source = inspect.getsource(generation_utils.GenerationMixin.prepare_inputs_for_generation)
    assert '"labels"' in source


# ---------------------------------------------------------------------------------------------------------------------
# The declared range: one place in the code, the same in pyproject.toml, checked at import


def test_pyproject_declares_the_tested_range():
    from packaging.specifiers import SpecifierSet

    declared = SpecifierSet(re.search(r'"transformers([^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1))
    tested = SpecifierSet(",".join(TESTED_TRANSFORMERS))
    candidates = ["5.22.9", "5.23.0", "5.23.4", "5.24.0", "5.24.9", "5.25.0", "6.0.0"]
    assert [v in declared for v in candidates] == [v in tested for v in candidates]


def test_installed_transformers_is_in_the_tested_range():
    check_transformers_version(transformers.__version__)  # no error, no warning
    lowest, below = (spec.lstrip("<>=") for spec in TESTED_TRANSFORMERS)
    assert configuration_llava_next_ar._minor(lowest) <= configuration_llava_next_ar._minor(transformers.__version__)
    assert configuration_llava_next_ar._minor(transformers.__version__) < configuration_llava_next_ar._minor(below)


def test_an_older_transformers_raises_one_clear_error_and_a_newer_one_warns(caplog):
    with pytest.raises(ImportError, match=r"needs transformers>=5\.23\.0; transformers 5\.22\.1 is installed"):
        check_transformers_version("5.22.1")
    with caplog.at_level("WARNING"):
        check_transformers_version("5.99.0")
        check_transformers_version("5.24.3")
    assert caplog.text.count("is tested with transformers>=5.23.0,<5.25; transformers 5.99.0 is installed") == 1
    assert "5.24.3" not in caplog.text


@pytest.mark.parametrize("installed", ["5.22.0", "5.30.1"])
def test_remote_code_checks_the_version_at_import(installed):
    """The check runs when the code is imported (the config file is imported first by every other one)."""
    code = f"import transformers; transformers.__version__ = {installed!r}; import llava_next_ar; print('imported')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if installed == "5.22.0":
        assert result.returncode != 0 and "imported" not in result.stdout
        message = f"ImportError: LLaVA-NeXT-AR needs transformers>=5.23.0; transformers {installed} is installed"
        assert message in result.stderr
    else:
        assert result.returncode == 0 and "imported" in result.stdout
        assert result.stderr.count(f"transformers {installed} is installed. It may work") == 1
