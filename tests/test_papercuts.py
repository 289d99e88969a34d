"""Noise and papercuts a new user met (issue 12, item 12): loading a checkpoint in train.py without a model-type
warning, one plain line about the predictor a conversion initialises, saved tokenizers that pad for `generate`,
`fast_slow_preset` at load time and at call time."""

import json
import logging

import pytest
import torch

from helpers import load_script, plain_llava_next_video_checkpoint, tiny_model
from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor
from tiny_tokenizer import tiny_processor


convert_script = load_script("convert_llava_next_video")


class Messages(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def checkpoint(tmp_path):
    model = tiny_model()
    processor = tiny_processor(model.config)
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_train_loads_a_checkpoints_processor_without_a_model_type_warning(checkpoint):
    load_script("train")  # registers the config with AutoConfig, as train.py's own loading relies on

    handler = Messages()
    logging.getLogger("transformers").addHandler(handler)
    try:
        LlavaNextARProcessor.from_pretrained(checkpoint, trust_remote_code=False)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [message for message in handler.messages if "to instantiate a model of type" in message]


def test_conversion_says_once_plainly_that_the_predictor_is_new(tmp_path, capfd):
    plain_llava_next_video_checkpoint(tmp_path / "source")
    capfd.readouterr()
    assert convert_script.main([str(tmp_path / "source"), str(tmp_path / "converted")]) == 0
    out, err = capfd.readouterr()
    assert "MISSING" not in out + err
    assert (out + err).count("the predictor is new") == 1


def test_fast_slow_preset_at_load_time_replaces_the_saved_settings(checkpoint):
    saved = json.loads((checkpoint / "processor_config.json").read_text())
    assert saved["video_processor"]["use_fast_slow_frames"] is False
    processor = LlavaNextARProcessor.from_pretrained(checkpoint, fast_slow_preset="medium")
    assert processor.use_fast_slow_frames is True and (processor.num_fast, processor.slow_stride) == (8, 4)
    auto = LlavaNextARProcessor.from_pretrained(checkpoint, fast_slow_preset="auto")
    assert auto.fast_slow_preset == "auto"
    with pytest.raises(ValueError, match="disagrees"):  # an explicit setting still has to agree with the preset
        LlavaNextARProcessor.from_pretrained(checkpoint, fast_slow_preset="medium", num_fast=4)


def test_sampler_settings_at_call_time_raise_instead_of_being_ignored(checkpoint):
    processor = LlavaNextARProcessor.from_pretrained(checkpoint)
    clip = torch.randint(0, 256, (48, 40, 40, 3), dtype=torch.uint8)
    for setting in ({"fast_slow_preset": "medium"}, {"use_fast_slow_frames": True}):
        with pytest.raises(ValueError, match="settings of the processor"):
            processor(text="<video>", videos=clip, return_tensors="pt", **setting)


def test_train_saves_a_tokenizer_that_pads_left_for_generate(tmp_path):
    train = load_script("train")
    train.main([
        "--output_dir", str(tmp_path / "run"), "--max_steps", "1", "--use_cpu", "True", "--report_to", "none",
        "--save_strategy", "no", "--plots", "False", "--disable_tqdm", "True", "--builtin_clips",
        "carphone_pristine", "--num_frames", "4", "--decode_size", "32", "--tiny_image_size", "32",
        "--tiny_patch_size", "8", "--tiny_hidden_size", "32",
    ])
    tokenizer_config = json.loads((tmp_path / "run" / "final" / "tokenizer_config.json").read_text())
    assert tokenizer_config["padding_side"] == "left"
