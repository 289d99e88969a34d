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
"""LLaVA-NeXT-AR: LLaVA-NeXT-Video with an auxiliary next-frame feature prediction objective."""

import transformers
from transformers import AutoConfig, AutoModelForImageTextToText

from .configuration_llava_next_ar import (
    AUTOREGRESSIVE_CONFIG_DEFAULTS,
    LlavaNextARConfig,
    validate_autoregressive_config,
)
from .modeling_llava_next_ar import (
    LlavaNextARCausalLMOutputWithPast,
    LlavaNextARForConditionalGeneration,
    LlavaNextARPredictor,
    LlavaNextARReconstructionModule,
    create_autoregressive_reconstruction_module,
)
from .processing_llava_next_ar import LlavaNextARProcessor
from .video_processing_llava_next_ar import LlavaNextARVideoProcessor, SampledVideo
from .video_frame_utils import (
    FrameLevelMaskGenerator,
    VideoFrameSampler,
    create_frame_position_ids,
    frame_attention_pattern,
)


# With the package installed, the auto classes know the model type and its processors without remote code (no "model
# of type `llava_next_ar` to instantiate a model of type ``" warning when a processor reads a checkpoint's config).
AutoConfig.register(LlavaNextARConfig.model_type, LlavaNextARConfig, exist_ok=True)
AutoModelForImageTextToText.register(LlavaNextARConfig, LlavaNextARForConditionalGeneration, exist_ok=True)
# (Looked up here, not imported above: importing transformers' processing modules replaces the `transformers` module
# object, and the configuration file's version check, run at its import, must read the one the importer set up.)
transformers.AutoVideoProcessor.register(LlavaNextARConfig, LlavaNextARVideoProcessor, exist_ok=True)
transformers.AutoProcessor.register(LlavaNextARConfig, LlavaNextARProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "AUTOREGRESSIVE_CONFIG_DEFAULTS",
    "FrameLevelMaskGenerator",
    "LlavaNextARCausalLMOutputWithPast",
    "LlavaNextARConfig",
    "LlavaNextARForConditionalGeneration",
    "LlavaNextARPredictor",
    "LlavaNextARProcessor",
    "LlavaNextARReconstructionModule",
    "LlavaNextARVideoProcessor",
    "SampledVideo",
    "VideoFrameSampler",
    "create_autoregressive_reconstruction_module",
    "create_frame_position_ids",
    "frame_attention_pattern",
    "validate_autoregressive_config",
]
