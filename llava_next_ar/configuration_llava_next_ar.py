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
"""LLaVA-NeXT-AR configuration: LLaVA-NeXT-Video plus an `autoregressive_config` for next-frame prediction."""

import math
import re
from typing import Any

import transformers
from transformers import LlavaNextVideoConfig
from transformers.utils import logging

from .model_card_llava_next_ar import autoregressive_config_table


logger = logging.get_logger(__name__)

TESTED_TRANSFORMERS = (">=5.23.0", "<5.25")
"""The transformers releases CI tests this code with, both ends (`pyproject.toml` declares the same range)."""


def _minor(version: str) -> tuple[int, int]:
    major, minor = re.match(r"\D*(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


def check_transformers_version(installed: str = transformers.__version__) -> None:
    """
    Run at import of the remote code: below the tested range, raise one clear `ImportError`; above it, warn once
    (it may work; it was not tested).
    """
    lowest, below = TESTED_TRANSFORMERS[0].removeprefix(">="), TESTED_TRANSFORMERS[1].removeprefix("<")
    tested = ",".join(TESTED_TRANSFORMERS)
    if tuple(int(part) for part in re.findall(r"\d+", installed)[:3]) < tuple(int(part) for part in lowest.split(".")):
        raise ImportError(
            f"LLaVA-NeXT-AR needs transformers>={lowest}; transformers {installed} is installed. "
            f"Install a tested version: pip install 'transformers{tested}'"
        )
    if _minor(installed) >= _minor(below):
        logger.warning_once(
            f"LLaVA-NeXT-AR is tested with transformers{tested}; transformers {installed} is installed. It may work; "
            f"if it does not, install a tested version (pip install 'transformers{tested}') or report it."
        )


check_transformers_version()


AUTOREGRESSIVE_CONFIG_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "embedding_dim": None,
    "num_hist": 3,
    "loss_weight": 0.1,
    "num_heads": 8,
    "num_layers": 3,
    "predictor_hidden_size": None,
    "mlp_ratio": 4.0,
    "use_frame_causal_mask": True,
    "fuse_llm_hidden_states": True,
    "predict_residual": True,
    "normalize_targets": False,
    "teacher": "copy",
    "use_fast_slow_frames": False,
    "fast_stride": 1,
    "slow_stride": 4,
    "num_fast": 8,
    "num_slow": 8,
    "merge_strategy": "concat",
    "short_clip": "shrink",
}
"""Defaults of `LlavaNextARConfig.autoregressive_config`: the seed's values (DESIGN.md §2), except `predict_residual`
(the seed predicts the features outright; on held-out generated clips the residual form measured better,
`docs/temporal_qa.md`; on the two-clip real ablation, where every variant overfits, worse, `docs/ablation.md`)."""

_CHOICES = {
    "teacher": ("copy", "shared"),
    "merge_strategy": ("concat", "interleave"),
    "short_clip": ("shrink", "error"),
}
_BOOLS = (
    "enabled", "use_frame_causal_mask", "fuse_llm_hidden_states", "predict_residual", "normalize_targets",
    "use_fast_slow_frames",
)
_POSITIVE_INTS = ("num_heads", "num_layers", "fast_stride", "slow_stride", "num_fast", "num_slow")


def _fail(key: str, expected: str, value: Any) -> None:
    raise ValueError(f"autoregressive_config[{key!r}] must be {expected}, got {value!r}")


def validate_autoregressive_config(
    autoregressive_config: dict[str, Any] | None,
    vision_feature_width: int | None = None,
    hidden_size: int | None = None,
) -> dict[str, Any]:
    """
    Fill in defaults and validate an `autoregressive_config` dict.

    Args:
        autoregressive_config (`dict`, *optional*): user values; missing keys take `AUTOREGRESSIVE_CONFIG_DEFAULTS`.
        vision_feature_width (`int`, *optional*): width `D` of the teacher features. `embedding_dim=None` becomes
            this value; any other value must equal it.
        hidden_size (`int`, *optional*): the LLM width, used when `embedding_dim` is unknown (no
            `vision_feature_width`): `predictor_hidden_size=None` becomes the teacher width `embedding_dim`, else this.
            The predictor width must be divisible by `num_heads`.

    Returns:
        A new dict with every key of `AUTOREGRESSIVE_CONFIG_DEFAULTS`.

    Raises:
        ValueError: naming the key, the allowed values and the value given.
    """
    if autoregressive_config is None:
        autoregressive_config = {}
    if not isinstance(autoregressive_config, dict):
        raise ValueError(f"autoregressive_config must be a dict or None, got {type(autoregressive_config).__name__}")
    unknown = sorted(set(autoregressive_config) - set(AUTOREGRESSIVE_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(
            f"autoregressive_config has unknown key(s) {unknown}; known keys are "
            f"{sorted(AUTOREGRESSIVE_CONFIG_DEFAULTS)}"
        )
    config = {**AUTOREGRESSIVE_CONFIG_DEFAULTS, **autoregressive_config}

    for key in _BOOLS:
        if not isinstance(config[key], bool):
            _fail(key, "a bool", config[key])
    for key in _POSITIVE_INTS:
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1:
            _fail(key, "an int >= 1", config[key])
    for key, choices in _CHOICES.items():
        if config[key] not in choices:
            _fail(key, f"one of {choices}", config[key])

    num_hist = config["num_hist"]
    if num_hist is not None and (isinstance(num_hist, bool) or not isinstance(num_hist, int) or num_hist < 1):
        _fail("num_hist", "an int >= 1 (frames of history a prediction sees) or None (all earlier frames)", num_hist)
    loss_weight = config["loss_weight"]
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, (int, float)) or not math.isfinite(loss_weight):
        _fail("loss_weight", "a finite float >= 0", loss_weight)
    if loss_weight < 0:
        _fail("loss_weight", "a finite float >= 0", loss_weight)
    config["loss_weight"] = float(loss_weight)
    mlp_ratio = config["mlp_ratio"]
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
        _fail("mlp_ratio", "a number > 0", mlp_ratio)

    embedding_dim = config["embedding_dim"]
    if embedding_dim is not None and (
        isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1
    ):
        _fail("embedding_dim", "an int >= 1 or None (= the vision tower's feature width)", embedding_dim)
    if vision_feature_width is not None:
        if embedding_dim is None:
            config["embedding_dim"] = vision_feature_width
        elif embedding_dim != vision_feature_width:
            _fail("embedding_dim", f"the teacher's feature width {vision_feature_width} (or None)", embedding_dim)
    width = config["predictor_hidden_size"]
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        _fail("predictor_hidden_size", "an int >= 1 or None (= the teacher width, embedding_dim)", width)
    if width is None:
        width = config["embedding_dim"] if config["embedding_dim"] is not None else hidden_size
        config["predictor_hidden_size"] = width
    if width is not None and width % config["num_heads"] != 0:
        _fail("num_heads", f"a divisor of the predictor width (predictor_hidden_size={width})", config["num_heads"])
    return config


class LlavaNextARConfig(LlavaNextVideoConfig):
    r"""
    Configuration of [`LlavaNextARForConditionalGeneration`]: a [`LlavaNextVideoConfig`] plus
    `autoregressive_config`, the settings of the auxiliary next-frame feature prediction objective.

    autoregressive_config (`dict`, *optional*):
        Missing keys take their defaults; invalid values raise `ValueError` at construction.

        {autoregressive_config_table}

    Example:

    ```python
    >>> from transformers import CLIPVisionConfig, LlamaConfig
    >>> config = LlavaNextARConfig(
    ...     vision_config=CLIPVisionConfig(hidden_size=32, image_size=32, patch_size=8, num_hidden_layers=2,
    ...                                    num_attention_heads=2, intermediate_size=64),
    ...     text_config=LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...                             intermediate_size=64, vocab_size=128),
    ...     autoregressive_config={"loss_weight": 0.05, "num_heads": 2},
    ... )
    >>> config.autoregressive_config["embedding_dim"]
    32
    ```
    """

    model_type = "llava_next_ar"

    autoregressive_config: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        layers = 1 if isinstance(self.vision_feature_layer, int) else len(self.vision_feature_layer)
        self.autoregressive_config = validate_autoregressive_config(
            self.autoregressive_config,
            vision_feature_width=self.vision_config.hidden_size * layers,
            hidden_size=self.text_config.hidden_size,
        )

    @property
    def video_tokens_per_frame(self) -> int:
        """Number of LLM tokens one video frame becomes (after the spatial pooling of LLaVA-NeXT-Video)."""
        side = self.vision_config.image_size // self.vision_config.patch_size
        return (side // self.spatial_pool_stride) ** 2


LlavaNextARConfig.__doc__ = LlavaNextARConfig.__doc__.replace(
    "{autoregressive_config_table}",
    autoregressive_config_table(AUTOREGRESSIVE_CONFIG_DEFAULTS, header="default").replace("\n", "\n        "),
)
LlavaNextARConfig.register_for_auto_class()

__all__ = [
    "LlavaNextARConfig",
    "validate_autoregressive_config",
    "AUTOREGRESSIVE_CONFIG_DEFAULTS",
]
