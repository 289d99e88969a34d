"""The model card's own `## Use` example runs on the checkpoint it describes (issue 12, item 8): a `train.py`
checkpoint, a converted one; a model-only conversion says it has no processor, and `card_example_problems` flags it."""

import math
import re
from pathlib import Path

import torch

from llava_next_ar.model_card_llava_next_ar import MODEL_CARD_NAME, REPO_ID_PLACEHOLDER, card_example_problems
from helpers import load_script, plain_llava_next_video_checkpoint


convert_script = load_script("convert_llava_next_video")


def run_card_example(folder: Path, clip: torch.Tensor):
    """Exec the first python block of the card's `## Use` section with `clip` defined and the folder as the repo."""
    card = (folder / MODEL_CARD_NAME).read_text()
    use = card[card.index("## Use"):]
    code = re.search(r"```python\n(.*?)```", use, re.S).group(1).replace(REPO_ID_PLACEHOLDER, str(folder))
    namespace = {"clip": clip}
    exec(compile(code, f"{folder}/README.md", "exec"), namespace)
    return namespace["out"]


def test_train_checkpoint_card_example_runs(tmp_path):
    train = load_script("train")
    output_dir = tmp_path / "run"
    train.main([
        "--output_dir", str(output_dir), "--max_steps", "1", "--use_cpu", "True", "--report_to", "none",
        "--save_strategy", "no", "--plots", "False", "--disable_tqdm", "True", "--builtin_clips",
        "carphone_pristine", "--num_frames", "4", "--decode_size", "32", "--tiny_image_size", "32",
        "--tiny_patch_size", "8", "--tiny_hidden_size", "32",
    ])
    final = output_dir / "final"
    assert card_example_problems(final) == []
    assert "apply_chat_template" in (final / MODEL_CARD_NAME).read_text()
    clip = torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8)
    out = run_card_example(final, clip)
    assert math.isfinite(out.loss.item()) and out.autoregressive_loss.item() > 0


def test_converted_checkpoint_card_example_runs(tmp_path):
    source, converted = tmp_path / "source", tmp_path / "converted"
    plain_llava_next_video_checkpoint(source)
    assert convert_script.main([str(source), str(converted), "--dtype", "float32"]) == 0
    assert card_example_problems(converted) == []
    clip = torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8)
    out = run_card_example(converted, clip)
    assert math.isfinite(out.loss.item())


def test_model_only_conversion_card_says_it_has_no_processor(tmp_path):
    source, converted = tmp_path / "source", tmp_path / "converted"
    plain_llava_next_video_checkpoint(source)
    for path in source.iterdir():
        if path.name not in ("config.json", "model.safetensors", "generation_config.json"):
            path.unlink()
    assert convert_script.main([str(source), str(converted)]) == 0
    assert "This checkpoint has no processor" in (converted / MODEL_CARD_NAME).read_text()
    problems = card_example_problems(converted)
    assert any("no processor_config.json" in problem for problem in problems), problems
