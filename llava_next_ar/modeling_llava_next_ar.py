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
LLaVA-NeXT-AR: LLaVA-NeXT-Video with an auxiliary next-frame feature prediction objective.

A frozen *teacher* (a copy of the vision tower) encodes `video_frames [B, T, 3, H, W]` into features
`[B, T, P, D]`. A small *predictor* reads the features of frames `0..T-2` and the LLM's hidden states and predicts
the teacher features of frames `1..T-1`; the MSE, weighted by `loss_weight`, is added to the language-modelling loss.

Causality is structural: the prediction of the frame at source time `n` reads
- teacher features of the `num_hist` sampled frames before it (attention blocks gathered per query frame), and
- LLM hidden states whose receptive field (in a causal LLM, every frame at or before that token) holds no frame
  at or after `n` (a prefix of the sequence, found with `searchsorted`).
Neither path ever sees a frame at or after the target, so no mask has to be trusted to hide one.
"""

import contextlib
import importlib
import inspect
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from transformers import AutoModel
from transformers import GenerationMixin
from transformers import initialization as init
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llava_next_video.modeling_llava_next_video import (
    LlavaNextVideoCausalLMOutputWithPast,
    LlavaNextVideoForConditionalGeneration,
)
from transformers.utils import logging, torch_compilable_check
from transformers.utils.generic import can_return_tuple

from .configuration_llava_next_ar import LlavaNextARConfig
from .model_card_llava_next_ar import write_model_card


logger = logging.get_logger(__name__)

TEACHER_PREFIX = "autoregressive_module.teacher."


@dataclass
class LlavaNextARReconstructionOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`): weighted auxiliary loss, `loss_weight * frame_losses.mean()`.
    frame_losses (`torch.FloatTensor` of shape `(batch_size, num_frames - 1)`): unweighted MSE per predicted frame.
    predictions (`torch.FloatTensor` of shape `(batch_size, num_frames - 1, num_patches, embedding_dim)`):
        predicted teacher features of frames `1..T-1`.
    teacher_features (`torch.FloatTensor` of shape `(batch_size, num_frames, num_patches, embedding_dim)`):
        the teacher's features of all `T` frames (detached; layer-normalised with `normalize_targets`): frames
        `0..T-2` are the context, `1..T-1` the targets.
    context_frame_indices (`torch.LongTensor` of shape `(batch_size, num_frames - 1)`):
        source-time index of the context frame each prediction starts from.
    target_frame_indices (`torch.LongTensor` of shape `(batch_size, num_frames - 1)`):
        source-time index of the frame each prediction predicts.
    """

    loss: torch.FloatTensor | None = None
    frame_losses: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    teacher_features: torch.FloatTensor | None = None
    context_frame_indices: torch.LongTensor | None = None
    target_frame_indices: torch.LongTensor | None = None

    @property
    def targets(self) -> torch.FloatTensor:
        """Teacher features of frames `1..T-1`, `(batch_size, num_frames - 1, num_patches, embedding_dim)`."""
        return self.teacher_features[:, 1:]


@dataclass
class LlavaNextARCausalLMOutputWithPast(LlavaNextVideoCausalLMOutputWithPast):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        `main_loss + autoregressive_loss`, or whichever of the two was computed.
    main_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        Language-modelling (next-token) loss, as the base model computes it.
    autoregressive_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when the objective runs):
        `loss_weight * autoregressive_frame_losses.mean()`.
    autoregressive_frame_losses (`torch.FloatTensor` of shape `(batch_size, num_frames - 1)`, *optional*):
        Unweighted MSE of each predicted frame (frames `1..T-1` of `video_frames`, in source-time order).
    autoregressive_output ([`LlavaNextARReconstructionOutput`], *optional*, with `output_autoregressive=True`):
        The objective's predictions, teacher features and frame indices.
    """

    main_loss: torch.FloatTensor | None = None
    autoregressive_loss: torch.FloatTensor | None = None
    autoregressive_frame_losses: torch.FloatTensor | None = None
    autoregressive_output: LlavaNextARReconstructionOutput | None = None


def gathered(parameters: list[nn.Parameter]) -> contextlib.AbstractContextManager:
    """
    DeepSpeed ZeRO-3 partitions every parameter (each then has a `ds_id`, and holds an empty tensor outside a gather):
    read or write them whole inside this context (collective: every rank calls it). Without ZeRO-3, a no-op.
    """
    if any(hasattr(p, "ds_id") for p in parameters):
        # Not an `import` statement: transformers' remote-code loader requires every imported package to be installed.
        deepspeed = importlib.import_module("deepspeed")
        return deepspeed.zero.GatheredParameters(parameters, modifier_rank=0)
    return contextlib.nullcontext()


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention; `attention_mask` is boolean (`True` = may attend) or additive."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros_like(attention_mask, dtype=attn_weights.dtype).masked_fill(
                ~attention_mask, float("-inf")
            )
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.promote_types(query.dtype, torch.float32))
    attn_weights = nn.functional.dropout(attn_weights.to(query.dtype), p=dropout, training=module.training)
    return torch.matmul(attn_weights, value).transpose(1, 2).contiguous(), attn_weights


@lru_cache(maxsize=32)
def frame_window(
    num_frames: int, num_patches: int, num_hist: int | None, token_causal: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Block structure of the predictor's self-attention, cached per shape.

    Query frame `t` reads the keys of frames `t - h + 1 .. t` (`h = min(num_hist, T)`), gathered per query frame,
    so nothing of size `[T*P, T*P]` is built.

    Returns:
        key_frames (`torch.LongTensor` of shape `[T, h]`): frame of each key slot (clamped to 0 where invalid).
        mask (`torch.BoolTensor` of shape `[T, 1 or P, h*P]`): `True` = may attend. Frame mode: all patches of the
            valid frames. Token mode: additionally, in frame `t` itself only patches `<= ` the query patch.
    """
    h = num_frames if num_hist is None else min(num_hist, num_frames)
    key_frames = torch.arange(num_frames, device=device)[:, None] - h + 1 + torch.arange(h, device=device)
    valid = (key_frames >= 0).repeat_interleave(num_patches, dim=1)[:, None, :]  # [T, 1, h*P]
    if token_causal:
        patch = torch.arange(num_patches, device=device)
        own = torch.ones(num_patches, (h - 1) * num_patches, dtype=torch.bool, device=device)
        own = torch.cat([own, patch[None, :] <= patch[:, None]], dim=1)  # [P, h*P]
        valid = valid & own
    return key_frames.clamp(min=0), valid


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """`[...]` integer positions (source-time frame indices; any size, no table) -> `[..., dim]` sin/cos features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return nn.functional.pad(embedding, (0, dim - 2 * half))


class LlavaNextARAttention(nn.Module):
    """Multi-head attention of the predictor (self- or cross-), dispatched through `ALL_ATTENTION_FUNCTIONS`."""

    def __init__(self, config: LlavaNextARConfig, key_value_width: int | None = None):
        super().__init__()
        self.config = config
        self.hidden_size = config.autoregressive_config["predictor_hidden_size"]
        self.num_heads = config.autoregressive_config["num_heads"]
        self.head_dim = self.hidden_size // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        key_value_width = key_value_width or self.hidden_size  # cross-attention reads the LLM width
        self.q_proj = nn.Linear(self.hidden_size, self.hidden_size)
        self.k_proj = nn.Linear(key_value_width, self.hidden_size)
        self.v_proj = nn.Linear(key_value_width, self.hidden_size)
        self.o_proj = nn.Linear(self.hidden_size, self.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        hidden_states `[N, Q, C]` (projected to queries here); key_states / value_states `[N, S, H, d]`, already
        projected by `project_keys_values` and gathered per query frame; attention_mask boolean broadcastable to
        `[N, 1, Q, S]`. Returns `[N, Q, C]`.
        """
        n, q_len, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(n, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        keys, values = key_states.transpose(1, 2), value_states.transpose(1, 2)
        implementation = self.config._attn_implementation or "eager"
        if "flash" in implementation:
            logger.warning_once(
                f"attn_implementation={implementation!r}: the LLM and the vision towers use it; the predictor attends "
                "to keys gathered per query frame under a mask, which flash kernels do not take, so it uses sdpa "
                "(the same numbers as eager)."
            )
            implementation = "sdpa"
        if implementation not in ("eager", "sdpa"):
            # flex_attention (and kernels registered by name) add the mask to the scores: 0 / -inf, full size.
            additive = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
            additive = additive.masked_fill(~attention_mask, float("-inf"))
            attention_mask = additive.expand(n, 1, q_len, keys.shape[2])
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, _ = attention_interface(self, query, keys, values, attention_mask, scaling=self.scaling)
        return self.o_proj(output.reshape(n, q_len, self.hidden_size))

    def project_keys_values(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[..., C]` -> key_states and value_states `[..., H, d]`."""
        shape = (*hidden_states.shape[:-1], self.num_heads, self.head_dim)
        return self.k_proj(hidden_states).view(shape), self.v_proj(hidden_states).view(shape)


class LlavaNextARPredictorLayer(GradientCheckpointingLayer):
    """Pre-norm block: frame-causal self-attention, cross-attention to allowed LLM states, MLP."""

    def __init__(self, config: LlavaNextARConfig):
        super().__init__()
        width = config.autoregressive_config["predictor_hidden_size"]
        self.self_attn_norm = nn.LayerNorm(width)
        self.self_attn = LlavaNextARAttention(config)
        self.fuse_llm_hidden_states = config.autoregressive_config["fuse_llm_hidden_states"]
        if self.fuse_llm_hidden_states:
            self.cross_attn_norm = nn.LayerNorm(width)
            self.cross_attn = LlavaNextARAttention(config, key_value_width=config.text_config.hidden_size)
        inner = int(width * config.autoregressive_config["mlp_ratio"])
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, inner), nn.GELU(), nn.Linear(inner, width))

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_frames: torch.Tensor,
        self_attn_mask: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_index: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        hidden_states `[B, T, P, C]`; key_frames `[T, h]`; self_attn_mask `[T, 1|P, h*P]`;
        memory `[B, M, C]` (the LLM hidden states, null slot first); memory_index / memory_mask `[B, T, W]`.
        """
        batch, frames, patches, width = hidden_states.shape
        x = self.self_attn_norm(hidden_states)
        keys, values = self.self_attn.project_keys_values(x)  # [B, T, P, H, d]
        keys, values = (s[:, key_frames].flatten(2, 3).flatten(0, 1) for s in (keys, values))  # [B*T, h*P, H, d]
        mask = self_attn_mask[None].expand(batch, -1, -1, -1).flatten(0, 1)[:, None]  # [B*T, 1, 1|P, h*P]
        x = self.self_attn(x.flatten(0, 1), keys, values, mask)
        hidden_states = hidden_states + x.view(batch, frames, patches, width)

        if self.fuse_llm_hidden_states and memory is not None:
            keys, values = self.cross_attn.project_keys_values(memory)  # [B, M, H, d]
            rows = torch.arange(batch, device=memory.device)[:, None, None]
            keys, values = (s[rows, memory_index].flatten(0, 1) for s in (keys, values))  # [B*T, W, H, d]
            x = self.cross_attn_norm(hidden_states).flatten(0, 1)
            x = self.cross_attn(x, keys, values, memory_mask.flatten(0, 1)[:, None, None, :])
            hidden_states = hidden_states + x.view(batch, frames, patches, width)

        return hidden_states + self.mlp(self.mlp_norm(hidden_states))


class LlavaNextARPredictor(nn.Module):
    """
    Parallel next-frame predictor (seed: `ParallelAutoregressivePredictor`): project teacher features to the
    predictor width (`predictor_hidden_size`, by default the teacher width `D`), add source-time embeddings of the
    context and target frames, run the layers (cross-attention projects the LLM states into that width), project
    back to `D`.
    """

    def __init__(self, config: LlavaNextARConfig):
        super().__init__()
        ar = config.autoregressive_config
        width = ar["predictor_hidden_size"]
        self.num_hist = ar["num_hist"]
        self.token_causal = not ar["use_frame_causal_mask"]
        self.embed = nn.Linear(ar["embedding_dim"], width)
        self.time_proj = nn.Linear(2 * width, width)
        self.memory_null = nn.Parameter(torch.zeros(config.text_config.hidden_size))  # an LLM-width memory slot
        self.layers = nn.ModuleList([LlavaNextARPredictorLayer(config) for _ in range(ar["num_layers"])])
        self.norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, ar["embedding_dim"])

    def dense_attention_mask(self, num_frames: int, num_patches: int) -> torch.BoolTensor:
        """
        The self-attention pattern this predictor applies to `num_frames` context frames of `num_patches` patches, as
        one dense `[T*P, T*P]` boolean matrix (`True` = may attend; token `f * P + p` is patch `p` of frame `f`), for
        pictures, comparisons and tests. The forward never builds it: it reads the same `frame_window` blocks.
        """
        key_frames, mask = frame_window(num_frames, num_patches, self.num_hist, self.token_causal, torch.device("cpu"))
        slots = key_frames.shape[1]
        mask = mask.expand(num_frames, num_patches, slots * num_patches)
        mask = mask.view(num_frames, num_patches, slots, num_patches)
        dense = torch.zeros(num_frames, num_patches, num_frames, num_patches, dtype=torch.bool)
        frames = torch.arange(num_frames)
        for slot in range(slots):  # key slot `slot` of query frame `t` holds frame `key_frames[t, slot]`
            dense[frames, :, key_frames[:, slot]] |= mask[:, :, slot]
        return dense.view(num_frames * num_patches, num_frames * num_patches)

    def forward(
        self,
        context_features: torch.Tensor,
        context_frame_indices: torch.Tensor,
        target_frame_indices: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_index: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        context_features `[B, T', P, D]` (frames 0..T-2); context_frame_indices / target_frame_indices `[B, T']`
        source-time indices; memory `[B, L, C]` the LLM hidden states the cross-attention reads (`memory` as in the
        seed's `TransformerDecoder`) and memory_index / memory_mask `[B, T', W]` (index 0 = null slot).
        Returns predictions `[B, T', P, D]` of frames 1..T-1.
        """
        batch, frames, patches, _ = context_features.shape
        width = self.time_proj.out_features
        times = torch.cat(
            [
                sinusoidal_embedding(context_frame_indices, width),
                sinusoidal_embedding(target_frame_indices - context_frame_indices, width),
            ],
            dim=-1,
        ).to(context_features.dtype)
        hidden_states = self.embed(context_features) + self.time_proj(times)[:, :, None]
        if memory is not None:
            memory = torch.cat([self.memory_null.to(memory.dtype).expand(batch, 1, -1), memory], dim=1)
        key_frames, self_attn_mask = frame_window(
            frames, patches, self.num_hist, self.token_causal, context_features.device
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_frames, self_attn_mask, memory, memory_index, memory_mask)
        return self.proj_out(self.norm(hidden_states))


class LlavaNextARReconstructionModule(nn.Module):
    """
    The auxiliary objective (seed: `AutoregressiveReconstructionModule`): owns the frozen teacher and the
    predictor and computes the weighted next-frame MSE.

    Args:
        config ([`LlavaNextARConfig`]): model config; `autoregressive_config` must be validated.
        memory_window (`int`, *optional*): LLM positions a prediction may read, ending at the last allowed one;
            `None` = the whole allowed prefix. The model passes `num_hist * video_tokens_per_frame`.
    """

    def __init__(self, config: LlavaNextARConfig, memory_window: int | None = None):
        super().__init__()
        ar = config.autoregressive_config
        self.loss_weight = ar["loss_weight"]
        self.predict_residual = ar["predict_residual"]
        self.normalize_targets = ar["normalize_targets"]
        self.memory_window = memory_window
        self.vision_feature_layer = config.vision_feature_layer
        self.vision_feature_select_strategy = config.vision_feature_select_strategy
        self.teacher = AutoModel.from_config(config.vision_config) if ar["teacher"] == "copy" else None
        self.freeze_teacher()
        self.predictor = LlavaNextARPredictor(config)

    def freeze_teacher(self) -> None:
        """The teacher never trains: no gradient (so no optimizer or DDP bucket sees it), eval mode (no dropout)."""
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
            self.teacher.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.freeze_teacher()
        return self

    @torch.no_grad()
    def encode_frames(self, video_frames: torch.Tensor, vision_tower: nn.Module | None = None) -> torch.Tensor:
        """`[B, T, 3, H, W]` -> teacher features `[B, T, P, D]` (no gradient), one frame at a time per row."""
        tower = self.teacher if self.teacher is not None else vision_tower
        if tower is None:
            raise ValueError("teacher='shared' needs the live `vision_tower` passed to the module")
        batch, frames = video_frames.shape[:2]
        pixels = video_frames.flatten(0, 1).to(next(tower.parameters()).dtype)
        outputs = tower(pixels, output_hidden_states=self.vision_feature_layer, return_dict=True)
        return self.select_features(outputs.hidden_states).unflatten(0, (batch, frames))

    def select_features(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The tower's hidden states -> the features the projector reads (`vision_feature_layer`, CLS dropped for the
        "default" strategy), `[N, P, D]`: the teacher's targets."""
        layers = self.vision_feature_layer
        features = (
            hidden_states[layers]
            if isinstance(layers, int)
            else torch.cat([hidden_states[layer] for layer in layers], dim=-1)
        )
        return features[:, 1:] if self.vision_feature_select_strategy == "default" else features

    def can_reuse_vision_forward(self, vision_tower: nn.Module) -> bool:
        """
        Whether `vision_tower` computes exactly the teacher's features, so the LLM's vision forward can be reused as
        the teacher's: it is the teacher (`teacher="shared"`), or it is frozen and has the teacher's weights (checked
        once per change of the parameters' versions, so a frozen tower costs no comparison per step); in both cases
        without active dropout.
        """
        config = getattr(vision_tower, "config", None)
        dropout = any(isinstance(m, nn.Dropout) and m.p > 0 for m in vision_tower.modules()) or any(
            isinstance(value, float) and value > 0 for key, value in vars(config or {}).items() if "dropout" in key
        )
        if vision_tower.training and dropout:
            return False
        if self.teacher is None:
            return True
        tower_parameters = list(vision_tower.parameters())
        if any(p.requires_grad or hasattr(p, "ds_id") for p in tower_parameters):
            return False  # trainable, or partitioned by ZeRO-3 (comparing would gather it every step): recompute
        teacher_parameters = list(self.teacher.parameters())
        key = tuple((id(p), p._version) for p in tower_parameters + teacher_parameters)
        if getattr(self, "_reuse_key", None) != key:
            self._reuse_key = key
            self._reuse_vision_forward = len(tower_parameters) == len(teacher_parameters) and all(
                a.shape == b.shape and torch.equal(a, b) for a, b in zip(tower_parameters, teacher_parameters)
            )
        return self._reuse_vision_forward

    def memory_slots(
        self,
        hidden_states_frame_indices: torch.Tensor,
        target_frame_indices: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Which LLM positions each prediction may read.

        A causal LLM's token at position `p` has seen every frame at positions `<= p`, so its receptive field ends at
        `cummax(frame index)[p]` (non-decreasing). The prediction of a frame at source time `n` may read the prefix of
        positions whose receptive field ends before `n`; we take its last `memory_window` real (not padding)
        positions, so a padded row reads exactly what it would read alone.

        Returns memory_index `[B, T', 1+W]` into `[null] + hidden_states` and memory_mask `[B, T', 1+W]`.
        """
        receptive_field = hidden_states_frame_indices.cummax(dim=1).values.contiguous()  # [B, L]
        num_allowed = torch.searchsorted(receptive_field, target_frame_indices.contiguous(), side="left")  # [B, T']
        length = receptive_field.shape[1]
        if attention_mask is None:
            real_positions = torch.arange(length, device=num_allowed.device).expand_as(receptive_field)
            num_real_allowed = num_allowed
        else:
            padding = ~attention_mask.bool()
            # real positions first, in order
            real_positions = torch.sort(padding.to(torch.uint8), dim=1, stable=True).indices
            real_before = (~padding).long().cumsum(1)
            real_before = torch.cat([torch.zeros_like(real_before[:, :1]), real_before], 1)
            num_real_allowed = real_before.gather(1, num_allowed)
        window = length if self.memory_window is None else min(self.memory_window, length)
        rank = num_real_allowed[..., None] - window + torch.arange(window, device=num_allowed.device)  # [B, T', W]
        valid = rank >= 0
        positions = real_positions.gather(1, rank.clamp(min=0).flatten(1)).view_as(rank)
        index = torch.where(valid, positions + 1, 0)
        null = torch.zeros_like(index[..., :1])
        return torch.cat([null, index], dim=-1), torch.cat([torch.ones_like(valid[..., :1]), valid], dim=-1)

    def forward(
        self,
        video_frames: torch.Tensor,
        hidden_states: torch.Tensor | None = None,
        hidden_states_frame_indices: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        video_frame_indices: torch.Tensor | None = None,
        vision_tower: nn.Module | None = None,
        teacher_features: torch.Tensor | None = None,
    ) -> LlavaNextARReconstructionOutput:
        r"""
        video_frames (`[B, T, 3, H, W]`): frames in source-time order (`T >= 2`).
        hidden_states (`[B, L, C]`, *optional*): LLM hidden states to fuse.
        hidden_states_frame_indices (`[B, L]`, *optional*): source-time index of the frame each position holds
            (`-1` for text). Without it, `hidden_states` cannot be placed in time and is not read (only the null
            memory slot is), which is the only leak-free choice.
        attention_mask (`[B, L]`, *optional*): padding mask of `hidden_states`.
        video_frame_indices (`[B, T]`, *optional*): strictly increasing source-time indices; default `0..T-1`.
        vision_tower: the live tower, required when `teacher="shared"`.
        teacher_features (`[B, T, P, D]`, *optional*): precomputed teacher features (skips the teacher).
        """
        batch, frames = video_frames.shape[:2]
        if video_frame_indices is None:
            video_frame_indices = torch.arange(frames, device=video_frames.device).expand(batch, -1)
        features = self.encode_frames(video_frames, vision_tower) if teacher_features is None else teacher_features
        if self.normalize_targets:  # per patch, over the feature width, without parameters (V-JEPA's targets)
            features = nn.functional.layer_norm(features, features.shape[-1:])
        context_frame_indices, target_frame_indices = video_frame_indices[:, :-1], video_frame_indices[:, 1:]

        memory = memory_index = memory_mask = None
        if hidden_states is not None:
            if hidden_states_frame_indices is None:
                logger.warning_once(
                    "`hidden_states` given without `hidden_states_frame_indices`: they cannot be placed in time, so "
                    "only the null memory slot is read (reading them could leak future frames)."
                )
                hidden_states_frame_indices = torch.full(
                    hidden_states.shape[:2], torch.iinfo(torch.long).max, device=hidden_states.device
                )
            memory = hidden_states
            memory_index, memory_mask = self.memory_slots(
                hidden_states_frame_indices, target_frame_indices, attention_mask
            )

        predictions = self.predictor(
            features[:, :-1], context_frame_indices, target_frame_indices, memory, memory_index, memory_mask
        )
        if self.predict_residual:  # the predictor outputs the change from the context frame
            predictions = predictions + features[:, :-1]
        features = features.detach()
        loss_dtype = torch.promote_types(predictions.dtype, torch.float32)
        frame_losses = (predictions.to(loss_dtype) - features[:, 1:].to(loss_dtype)).pow(2).mean(dim=(-2, -1))
        return LlavaNextARReconstructionOutput(
            loss=self.loss_weight * frame_losses.mean(),
            frame_losses=frame_losses,
            predictions=predictions,
            teacher_features=features,
            context_frame_indices=context_frame_indices,
            target_frame_indices=target_frame_indices,
        )

    def compute_autoregressive_loss(
        self, hidden_states: torch.Tensor | None, video_frames: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Seed API: the weighted auxiliary loss (a scalar). Keyword arguments go to `forward`."""
        return self(video_frames, hidden_states=hidden_states, **kwargs).loss


def create_autoregressive_reconstruction_module(
    vision_tower: nn.Module, hidden_size: int, config: dict | None = None
) -> LlavaNextARReconstructionModule:
    """
    Seed factory: a reconstruction module whose teacher is a frozen copy of `vision_tower` (copied now, once).

    Args:
        vision_tower: a transformers vision model (e.g. `CLIPVisionModel`, `SiglipVisionModel`).
        hidden_size: width of the LLM hidden states that will be fused (the predictor's width is the teacher's
            unless `predictor_hidden_size` is given).
        config: `autoregressive_config` keys, plus optionally `vision_feature_layer` (default -2),
            `vision_feature_select_strategy` (default "default" = drop CLS; use "full" for SigLIP) and
            `memory_window` (LLM positions read per prediction; default all allowed).
    """
    config = dict(config or {})
    vision_feature_layer = config.pop("vision_feature_layer", -2)
    strategy = config.pop("vision_feature_select_strategy", "default")
    memory_window = config.pop("memory_window", None)
    vision_config = vision_tower.config
    text_config = {"model_type": "llama", "hidden_size": hidden_size, "num_attention_heads": 1}
    model_config = LlavaNextARConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=strategy,
        autoregressive_config=config,
    )
    model_config._attn_implementation = vision_config._attn_implementation or "sdpa"
    module = LlavaNextARReconstructionModule(model_config, memory_window=memory_window)
    if module.teacher is not None:
        module.teacher.load_state_dict(vision_tower.state_dict())
    return module.to(next(vision_tower.parameters()).dtype)


def base_forward_takes_video_features() -> bool:
    """
    The one release-specific capability the model uses: the base forward accepting precomputed vision features
    (`mm_encoder_outputs={"video": <get_video_features output>}`), which lets the LLM's own vision forward also give
    the teacher's targets. Where it is missing, the teacher recomputes the same numbers.
    """
    return "mm_encoder_outputs" in inspect.signature(LlavaNextVideoForConditionalGeneration.forward).parameters


_BASE_FORWARD_TAKES_VIDEO_FEATURES = base_forward_takes_video_features()


class LlavaNextARForConditionalGeneration(LlavaNextVideoForConditionalGeneration, GenerationMixin):
    """
    LLaVA-NeXT-Video with the next-frame feature prediction objective. `forward` takes the usual inputs plus
    `video_frames`; everything else (generation, saving, PEFT, gradient checkpointing) is the base model's.
    """

    config_class = LlavaNextARConfig
    config: LlavaNextARConfig
    # Trainer: divide the whole loss by the gradient-accumulation steps rather than pass `num_items_in_batch`, which
    # would normalise only the language-modelling part and over-weight the auxiliary loss by GA x world size.
    accepts_loss_kwargs = False
    # Device maps and FSDP wrapping keep each predictor layer whole (the towers' and LLM's layers come from them).
    _no_split_modules = ["LlavaNextARPredictorLayer"]
    # A checkpoint without a teacher (a plain LLaVA-NeXT-Video one) gets the loaded tower copied in by `tie_weights`.
    _keys_to_ignore_on_load_missing = [r"^autoregressive_module\.teacher\.(?!.*position_ids$)"]
    # The LLM and the towers run the selected `attn_implementation`. The predictor attends, per query frame, to
    # gathered keys under a mask: eager, sdpa and flex_attention give the same numbers (tested); flash kernels take
    # no such mask, so under a flash implementation the predictor alone runs on sdpa (said once, at its first call).
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = True

    def __init__(self, config: LlavaNextARConfig):
        super().__init__(config)
        ar = config.autoregressive_config
        if ar["enabled"]:
            window = None if ar["num_hist"] is None else ar["num_hist"] * config.video_tokens_per_frame
            self.autoregressive_module = LlavaNextARReconstructionModule(config, memory_window=window)
            self.post_init()
            # Under ZeRO-3 (`from_config`/`from_pretrained` build inside `deepspeed.zero.Init`) the weights are
            # initialised or loaded after `__init__`, and `tie_weights` copies the tower then.
            self._teacher_copy_pending = any(hasattr(p, "ds_id") for p in self.model.vision_tower.parameters())
            if not self._teacher_copy_pending:
                self.copy_vision_tower_to_teacher()
        # `post_init` collects the children's `_no_split_modules`, which can name classes this model does not contain
        # (CLIP's vision model declares `CLIPTextEmbeddings`); FSDP's transformer-based auto wrap stops on an absent
        # class, so keep only the present ones.
        present = {type(module).__name__ for module in self.modules()}
        self._no_split_modules = {name for name in self._no_split_modules if name in present}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, LlavaNextARPredictor):  # the one parameter the generic init does not know
            init.zeros_(module.memory_null)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights, config and, as remote code, this file and its relative imports (`auto_map` for `AutoConfig`,
        `AutoModel` and `AutoModelForImageTextToText`), so `trust_remote_code=True` loads it without this package.
        Also writes a model card `README.md` generated from the config, unless the directory already has one."""
        auto_map = getattr(self.config, "auto_map", None) or {}
        self.config.auto_map = {**auto_map, "AutoModel": f"{__name__.split('.')[-1]}.{type(self).__name__}"}
        # Keys as the modules name them (not reverted to the legacy LLaVA layout): `Trainer` resumes by
        # `load_state_dict` without key conversion, which would silently skip the renamed LLM weights.
        kwargs.setdefault("save_original_format", False)
        output = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", args[0] if args else True):
            write_model_card(save_directory, self.config)
        return output

    def copy_vision_tower_to_teacher(self, keys: set[str] | None = None) -> None:
        """Make the teacher an exact copy of the vision tower (all of it, or the given teacher state-dict keys)."""
        teacher = getattr(getattr(self, "autoregressive_module", None), "teacher", None)
        if teacher is None:
            return
        tower = self.model.vision_tower
        sources = {**dict(tower.named_parameters()), **dict(tower.named_buffers())}
        targets = {**dict(teacher.named_parameters()), **dict(teacher.named_buffers())}
        names = [name for name in targets if keys is None or TEACHER_PREFIX + name in keys]
        if not names:
            return
        with gathered([*tower.parameters(), *teacher.parameters()]), torch.no_grad():  # whole weights under ZeRO-3
            for name in names:
                targets[name].copy_(sources[name])

    def export_base_model(self) -> LlavaNextVideoForConditionalGeneration:
        """
        This model as a stock `LlavaNextVideoForConditionalGeneration` sharing its modules (no weight is copied): the
        vision tower, projector, LLM and `lm_head`; not the teacher or predictor. Its config is this one without
        `autoregressive_config` and `auto_map` (`model_type` `llava_next_video`), with the same attention
        implementations; its `generation_config` is a copy of this one's. It computes what this model computes without
        the objective, and its `save_pretrained` writes a checkpoint stock transformers loads without
        `trust_remote_code` (`scripts/export_base.py` adds the processor and a card). Merge LoRA adapters first.
        """
        import copy

        dropped = ("autoregressive_config", "auto_map", "model_type", "architectures")
        config = {key: value for key, value in self.config.to_dict().items() if key not in dropped}
        config = LlavaNextVideoForConditionalGeneration.config_class.from_dict(config)
        config._attn_implementation = {"": self.config._attn_implementation} | {
            name: getattr(self.config, name)._attn_implementation for name in config.sub_configs
        }
        with torch.device("meta"):  # allocates nothing: the modules are replaced by ours
            base = LlavaNextVideoForConditionalGeneration(config)
        base.model, base.lm_head = self.model, self.lm_head
        base.generation_config = copy.deepcopy(self.generation_config)
        return base.train(self.training)

    def tie_weights(self, missing_keys: set[str] | None = None, recompute_mapping: bool = True):
        # `from_pretrained` passes the keys the checkpoint lacked: a teacher missing from it (a plain LLaVA-NeXT-Video
        # checkpoint) becomes a copy of the loaded vision tower, never random (`_keys_to_ignore_on_load_missing`
        # then keeps it out of the loading report). Under ZeRO-3, `from_config` initialises the weights after
        # `__init__` and then calls `tie_weights()`: the whole teacher is copied then.
        if missing_keys is not None or getattr(self, "_teacher_copy_pending", False):
            keys = None if missing_keys is None else {key for key in missing_keys if key.startswith(TEACHER_PREFIX)}
            self.copy_vision_tower_to_teacher(keys)
            self._teacher_copy_pending = False
        if hasattr(self, "autoregressive_module"):  # loading makes new parameters (`requires_grad=True`)
            self.autoregressive_module.freeze_teacher()
        return super().tie_weights(missing_keys=missing_keys, recompute_mapping=recompute_mapping)

    def video_token_mask(self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        """`[B, L]`: which positions are video placeholders (from `input_ids`, else by the placeholder embedding)."""
        if input_ids is not None:
            return input_ids == self.config.video_token_id
        video_token_id = torch.tensor(self.config.video_token_id, device=inputs_embeds.device)
        placeholder = self.get_input_embeddings()(video_token_id)
        return (inputs_embeds == placeholder.to(inputs_embeds.dtype)).all(dim=-1)

    def hidden_states_frame_indices(
        self, video_token_mask: torch.BoolTensor, llm_frame_indices: torch.Tensor | None
    ) -> torch.LongTensor:
        """
        `[B, L]` source-time index of the frame each LLM position holds (`video_token_mask` from `video_token_mask()`):
        `-1` for text; for video tokens whose frames are not known (no `llm_frame_indices`), the largest index, so
        that nothing at or after them is ever read.
        """
        is_video = video_token_mask
        if llm_frame_indices is None:
            return torch.where(is_video, torch.iinfo(torch.long).max, -1)
        slot = (is_video.long().cumsum(dim=1) - 1).clamp(min=0) // self.config.video_tokens_per_frame
        slot = slot.clamp(max=llm_frame_indices.shape[1] - 1)
        times = llm_frame_indices.to(is_video.device).gather(1, slot)
        return torch.where(is_video, times, -1)

    def _check_autoregressive_inputs(
        self,
        video_frames: torch.Tensor,
        video_frame_indices: torch.Tensor | None,
        llm_frame_indices: torch.Tensor | None,
        llm_num_frames: int | None,
        video_token_mask: torch.BoolTensor,
        from_inputs_embeds: bool,
        kwargs: dict,
    ) -> None:
        """Refuse, before any work, every input the objective cannot make causal. Shape checks read no data; the value
        checks are one device-side flag read once (`torch_compilable_check`, as the base model's own checks)."""
        batch_size = video_token_mask.shape[0]
        vision = self.config.vision_config
        size = vision.image_size
        expected = f"[batch_size={batch_size}, num_frames>=2, {vision.num_channels}, {size}, {size}]"
        if not isinstance(video_frames, torch.Tensor) or video_frames.dim() != 5:
            given = video_frames.shape if isinstance(video_frames, torch.Tensor) else type(video_frames).__name__
            shape = tuple(given) if isinstance(video_frames, torch.Tensor) else given
            raise ValueError(f"`video_frames` must be a tensor of shape {expected}, got {shape}")
        b, t, c, h, w = video_frames.shape
        if b != batch_size or t < 2 or c != vision.num_channels or (h, w) != (vision.image_size, vision.image_size):
            raise ValueError(f"`video_frames` must have shape {expected}, got {tuple(video_frames.shape)}")
        if not video_frames.is_floating_point():
            raise ValueError(f"`video_frames` must be a floating-point tensor, got dtype {video_frames.dtype}")
        # A cache holds LLM states computed earlier (possibly of the video): they cannot be placed in time. The cache
        # argument is `cache` from transformers 5.24 on, `past_key_values` before.
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and cache.get_seq_length() > 0:
            raise ValueError(
                "The objective (`video_frames` with `labels` or in training) cannot continue from a filled cache: the "
                "cached positions cannot be placed in time. Run the whole sequence without a cache"
            )
        if from_inputs_embeds and llm_num_frames is None:
            raise ValueError(
                "The objective with `inputs_embeds` needs the LLM's video as `pixel_values_videos` (or "
                "`mm_encoder_outputs`) and `<video>` placeholders in `inputs_embeds`: video features already merged "
                "into `inputs_embeds` cannot be told from text, so the predictor could read future frames"
            )
        problems = {"`video_frames` contains NaN or infinite values": ~torch.isfinite(video_frames).all()}
        for name, indices, frames in (
            ("video_frame_indices", video_frame_indices, t),
            ("llm_frame_indices", llm_frame_indices, llm_num_frames),
        ):
            if indices is None:
                continue
            if frames is None:
                raise ValueError(
                    f"`{name}` is given but the LLM sees no video (neither `pixel_values_videos` nor "
                    "`mm_encoder_outputs['video']`)"
                )
            if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.dim() != 2:
                raise ValueError(
                    f"`{name}` must be an integer tensor of shape [batch_size, num_frames], got {indices!r}"
                )
            if tuple(indices.shape) != (batch_size, frames):
                raise ValueError(f"`{name}` must have shape {(batch_size, frames)}, got {tuple(indices.shape)}")
            problems[f"`{name}` must be >= 0 (source-time frame indices), got {{{name}}}"] = (indices < 0).any()
        if video_frame_indices is not None:
            problems[
                "`video_frame_indices` must be strictly increasing along each row: give `video_frames` in source-time "
                "order without repeats (merge orders like [slow] + [fast] are for `pixel_values_videos`); got "
                "{video_frame_indices}"
            ] = (video_frame_indices.diff(dim=1) <= 0).any()
        if llm_frame_indices is not None:
            reference = video_frame_indices
            if reference is None:
                reference = torch.arange(t, device=video_frames.device)
            known = (llm_frame_indices[..., None] == reference.expand(batch_size, -1)[:, None, :]).any(dim=-1)
            problems[
                "every `llm_frame_indices` value must be the source time of one of that row's `video_frames` (as the "
                "processor returns them; list positions are not source times): got llm_frame_indices="
                "{llm_frame_indices}, video_frame_indices={video_frame_indices}"
            ] = ~known.all()
        video_tokens_per_row = video_token_mask.sum(dim=1)
        if llm_num_frames is not None:
            tokens = llm_num_frames * self.config.video_tokens_per_frame
            problems[
                f"every row must hold {llm_num_frames} frames x {self.config.video_tokens_per_frame} = {tokens} "
                "video tokens (the frames the LLM sees), got {video_tokens_per_row} per row"
            ] = (video_tokens_per_row != tokens).any()
        flags = torch.stack([flag.to(video_frames.device) for flag in problems.values()])

        def message() -> str:
            values = {
                "video_frame_indices": video_frame_indices,
                "llm_frame_indices": llm_frame_indices,
                "video_tokens_per_row": video_tokens_per_row,
            }
            failed = [text for text, flag in zip(problems, flags.tolist()) if flag]
            values = {key: None if value is None else value.tolist() for key, value in values.items()}
            return "; ".join(text.format(**values) for text in failed)

        torch_compilable_check(~flags.any(), message)

    def _teacher_features_from_the_llm_vision_forward(
        self,
        pixel_values_videos: torch.Tensor | None,
        video_frames: torch.Tensor,
        same_frames: bool,
        kwargs: dict,
    ) -> torch.Tensor | None:
        """
        Teacher reuse: when the LLM sees exactly `video_frames` (no `llm_frame_indices`) through a tower that computes
        the teacher's features, run the tower once, hand its output to the base forward as precomputed video
        features (`kwargs["mm_encoder_outputs"]`), and return the teacher features `[B, T, P, D]` taken from it.
        Returns `None` (the teacher then runs, with the same result) whenever a condition or the capability
        (`base_forward_takes_video_features`) is missing.
        """
        module = self.autoregressive_module
        if not (
            same_frames
            and pixel_values_videos is not None
            and pixel_values_videos.shape == video_frames.shape
            and kwargs.get("mm_encoder_outputs") is None
            and kwargs.get("vision_feature_layer") in (None, self.config.vision_feature_layer)
            and kwargs.get("vision_feature_select_strategy") in (None, self.config.vision_feature_select_strategy)
            and _BASE_FORWARD_TAKES_VIDEO_FEATURES
            and module.can_reuse_vision_forward(self.model.vision_tower)
        ):
            return None
        video_outputs = self.model.get_video_features(pixel_values_videos, return_dict=True)
        kwargs["mm_encoder_outputs"] = {"video": video_outputs}
        features = module.select_features(video_outputs.hidden_states).detach()
        return features.unflatten(0, video_frames.shape[:2])

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        video_frames: torch.Tensor | None = None,
        video_frame_indices: torch.LongTensor | None = None,
        llm_frame_indices: torch.LongTensor | None = None,
        output_autoregressive: bool = False,
        **kwargs,
    ) -> LlavaNextARCausalLMOutputWithPast:
        r"""
        video_frames (`torch.FloatTensor` of shape `(batch_size, num_frames, channels, height, width)`, *optional*):
            Frames for the next-frame objective, in source-time order, preprocessed like `pixel_values_videos`.
            Frames `0..T-2` are the context, frames `1..T-1` the targets. The objective runs when `video_frames` is
            given and the call trains (`labels` are given or the model is in training mode) or asks for it
            (`output_autoregressive=True`): inference, including `generate`, never pays for it. Ignored when
            `autoregressive_config.enabled` is `False`.
        video_frame_indices (`torch.LongTensor` of shape `(batch_size, num_frames)`, *optional*):
            Strictly increasing source-time indices of `video_frames` (default `0..T-1`).
        llm_frame_indices (`torch.LongTensor` of shape `(batch_size, num_llm_frames)`, *optional*):
            Source-time indices of the frames in `pixel_values_videos`, in the order the LLM sees them (any order,
            e.g. `[slow] + [fast]`), each one of the row's `video_frame_indices`. Default: `pixel_values_videos` *is*
            `video_frames` (the same pixels; the processor omits `llm_frame_indices` exactly then). A frozen vision
            tower equal to the teacher then computes the teacher's features once, in the LLM's forward, instead of
            twice; pass `llm_frame_indices` when the LLM sees other frames or other pixels (e.g. augmented).
        output_autoregressive (`bool`, *optional*, defaults to `False`):
            Run the objective (with `video_frames`) and return its predictions, teacher features and frame indices as
            `autoregressive_output`, e.g. to evaluate the predictor at inference.

        Every other argument (`cache`/`past_key_values`, `position_ids`, `use_cache`, `logits_to_keep`, ...) goes to
        [`LlavaNextVideoForConditionalGeneration.forward`] unchanged.
        """
        inputs = dict(
            input_ids=input_ids,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_sizes=image_sizes,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels,
            **kwargs,
        )
        module = getattr(self, "autoregressive_module", None)
        runs_objective = video_frames is not None and (self.training or labels is not None or output_autoregressive)
        if module is None or not runs_objective:
            outputs = super().forward(**inputs, return_dict=True)
            return LlavaNextARCausalLMOutputWithPast(**outputs, main_loss=outputs.loss)

        llm_num_frames = None  # frames the LLM sees
        if pixel_values_videos is not None:
            llm_num_frames = pixel_values_videos.shape[1]
        elif (kwargs.get("mm_encoder_outputs") or {}).get("video") is not None:
            video_tokens = kwargs["mm_encoder_outputs"]["video"].pooler_output.shape[1]
            llm_num_frames = video_tokens // self.config.video_tokens_per_frame
        same_frames = llm_frame_indices is None  # the documented default: the LLM sees `video_frames`
        if same_frames and llm_num_frames is not None and llm_num_frames != video_frames.shape[1]:
            raise ValueError(
                f"`pixel_values_videos` has {llm_num_frames} frames and `video_frames` {video_frames.shape[1]}: "
                "pass `llm_frame_indices` (and `video_frame_indices`) so they can be compared by source time"
            )
        if video_frame_indices is None:
            video_frame_indices = torch.arange(video_frames.shape[1], device=video_frames.device).expand(
                video_frames.shape[0], -1
            )
            given_video_frame_indices = None
        else:
            given_video_frame_indices = video_frame_indices
        if same_frames and llm_num_frames is not None:
            llm_frame_indices = video_frame_indices
        video_token_mask = self.video_token_mask(input_ids, inputs_embeds)
        self._check_autoregressive_inputs(
            video_frames,
            given_video_frame_indices,
            None if same_frames else llm_frame_indices,
            llm_num_frames,
            video_token_mask,
            input_ids is None,
            kwargs,
        )
        frame_indices = self.hidden_states_frame_indices(video_token_mask, llm_frame_indices)
        teacher_features = self._teacher_features_from_the_llm_vision_forward(
            pixel_values_videos, video_frames, same_frames, inputs
        )
        if teacher_features is not None:
            inputs["pixel_values_videos"] = None

        # The fused LLM states are the last layer's (after the final norm); only they are kept unless all were asked.
        asked = kwargs.get("output_hidden_states", self.config.output_hidden_states)
        inputs["output_hidden_states"] = True if asked is True else -1
        outputs = super().forward(**inputs, return_dict=True)
        hidden_states = outputs.hidden_states[-1]
        autoregressive = module(
            video_frames,
            hidden_states=hidden_states,
            hidden_states_frame_indices=frame_indices,
            attention_mask=attention_mask,
            video_frame_indices=video_frame_indices,
            vision_tower=self.model.vision_tower,
            teacher_features=teacher_features,
        )
        fields = dict(outputs)
        if asked is not True:
            fields.pop("hidden_states")
        main_loss = fields.pop("loss", None)
        return LlavaNextARCausalLMOutputWithPast(
            **fields,
            loss=autoregressive.loss if main_loss is None else main_loss + autoregressive.loss,
            main_loss=main_loss,
            autoregressive_loss=autoregressive.loss,
            autoregressive_frame_losses=autoregressive.frame_losses,
            autoregressive_output=autoregressive if output_autoregressive else None,
        )

LlavaNextARForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
# Plain LLaVA-NeXT-Video checkpoints use the legacy key layout (`language_model.lm_head.weight`, ...): load them with
# the base model's key renamings (registered by class name, which wins over `model_type`).
register_checkpoint_conversion_mapping(
    LlavaNextARForConditionalGeneration.__name__,
    get_checkpoint_conversion_mapping("llava_next_video"),
    overwrite=True,
)

__all__ = [
    "LlavaNextARForConditionalGeneration",
    "LlavaNextARReconstructionModule",
    "LlavaNextARPredictor",
    "LlavaNextARCausalLMOutputWithPast",
    "create_autoregressive_reconstruction_module",
]
