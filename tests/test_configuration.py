"""`LlavaNextARConfig`: defaults, validation at construction, serialisation round trips."""

import pytest

from helpers import tiny_config
from llava_next_ar import AUTOREGRESSIVE_CONFIG_DEFAULTS, LlavaNextARConfig


def test_defaults_are_the_seed_values():
    config = tiny_config().autoregressive_config
    seed = {"enabled": True, "num_hist": 3, "loss_weight": 0.1, "use_frame_causal_mask": True,
            "use_fast_slow_frames": False, "fast_stride": 1, "slow_stride": 4, "num_fast": 8, "num_slow": 8,
            "merge_strategy": "concat"}
    assert {k: config[k] for k in seed} == seed
    assert set(config) == set(AUTOREGRESSIVE_CONFIG_DEFAULTS)
    assert config["embedding_dim"] == 24  # = the tiny vision tower's width
    assert LlavaNextARConfig().autoregressive_config["num_heads"] == 8  # seed default on the default tower


BAD = [
    ("enabled", "yes", "a bool"),
    ("num_hist", 0, "int >= 1"),
    ("num_hist", 2.5, "int >= 1"),
    ("loss_weight", -0.1, "finite float >= 0"),
    ("loss_weight", float("nan"), "finite float >= 0"),
    ("num_heads", 5, "divisor"),
    ("num_layers", 0, "int >= 1"),
    ("slow_stride", 0, "int >= 1"),
    ("num_fast", True, "int >= 1"),
    ("merge_strategy", "zip", "concat"),
    ("teacher", "ema", "copy"),
    ("short_clip", "pad", "shrink"),
    ("embedding_dim", 1152, "feature width 24"),
    ("mlp_ratio", 0, "> 0"),
    ("predictor_hidden_size", 0, "int >= 1"),
]


@pytest.mark.parametrize("key,value,expected", BAD)
def test_invalid_value_names_the_key_range_and_value(key, value, expected):
    with pytest.raises(ValueError, match=rf"autoregressive_config\['{key}'\].*{expected}.*got"):
        tiny_config(**{key: value})


def test_unknown_key_is_rejected():
    with pytest.raises(ValueError, match="unknown key.*los_weight"):
        tiny_config(los_weight=0.1)


def test_round_trips_through_dict_and_disk(tmp_path):
    config = tiny_config(loss_weight=0.05, num_hist=None, use_fast_slow_frames=True, merge_strategy="interleave")
    again = LlavaNextARConfig.from_dict(config.to_dict())
    assert again.autoregressive_config == config.autoregressive_config
    config.save_pretrained(tmp_path)
    loaded = LlavaNextARConfig.from_pretrained(tmp_path)
    assert loaded.model_type == "llava_next_ar"
    assert loaded.autoregressive_config == config.autoregressive_config
    assert loaded.text_config.hidden_size == 32 and loaded.video_tokens_per_frame == 4
