"""A fine-tuned LLaVA-NeXT-AR checkpoint exports to a plain LLaVA-NeXT-Video checkpoint (`scripts/export_base.py`,
`model.export_base_model()`): stock transformers serves it without remote code (a fresh process where this package
cannot be imported gets the same logits, tokens and pipeline answer), it is smaller by the teacher and predictor,
converts back to the same base weights, works from a LoRA adapter, and `scripts/push_to_hub.py` pushes it."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from transformers import (
    AutoProcessor,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaNextVideoProcessor,
)

from helpers import (
    FAKE_TOKEN,
    NO_NETWORK,
    ROOT,
    FakeHfApi,
    load_script,
    run_as_stranger,
    tiny_config,
    tiny_model,
    video_batch,
)
from llava_next_ar import LlavaNextARForConditionalGeneration
from llava_next_ar.model_card_llava_next_ar import PIPELINE_TAG, REPO_ID_PLACEHOLDER
from tiny_tokenizer import tiny_processor


AR_REPO_ID = "tiny-org/llava-next-ar-tiny-finetuned"
EXPORT_FILES = [
    "README.md",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
]
NEW_TOKENS = 6

export_script = load_script("export_base")
convert_script = load_script("convert_llava_next_video")
push_script = load_script("push_to_hub")


def run_export(*args) -> subprocess.CompletedProcess:
    """`python scripts/export_base.py *args` in a new process; it must succeed. Returns what it printed."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_base.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def video_chat(clip) -> list[dict]:
    """A user message with a decoded clip and a question (a new list each time: chat templating edits messages)."""
    text = {"type": "text", "text": "what happens ?"}
    return [{"role": "user", "content": [{"type": "video", "video": clip}, text]}]


def tensor_bytes(path: Path, skip: str | None = None) -> int:
    """Bytes of the tensors in a safetensors file (header excluded), leaving out keys starting with `skip`."""
    with safe_open(path, "pt") as file:
        tensors = [file.get_tensor(key) for key in file.keys() if not (skip and key.startswith(skip))]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def without_objective(batch: dict) -> dict:
    """The inputs a stock model takes: no `labels` (so the objective is off) and no objective frames."""
    return {key: value for key, value in batch.items() if key not in ("labels", "video_frames", "video_frame_indices")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """
    - `ar`: a tiny fine-tuned LLaVA-NeXT-AR checkpoint (teacher made to differ from the tower, as after training) with
      its processor; `out`: `scripts/export_base.py ar out --base-model AR_REPO_ID`, and what it printed.
    - `reference.pt`: inputs and what the LLaVA-NeXT-AR model gave (logits, generated tokens, decoded answer) for the
      fresh process to compare against.
    """
    root = tmp_path_factory.mktemp("export")
    model = tiny_model(num_hist=2)
    with torch.no_grad():
        for parameter in model.model.vision_tower.parameters():
            parameter.add_(0.01)
    processor = tiny_processor(model.config)
    ar, out = root / "ar", root / "out"
    model.save_pretrained(ar)
    processor.save_pretrained(ar)

    result = run_export(ar, out, "--base-model", AR_REPO_ID)

    clip = torch.randint(0, 256, (6, 40, 48, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    stock = AutoProcessor.from_pretrained(out)
    chat = dict(
        stock.apply_chat_template(
            video_chat(clip.numpy()), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(dtype=torch.float64)
    )
    batch = without_objective(video_batch())
    with torch.no_grad():
        logits = model(**{**video_batch(), "labels": None}).logits  # objective off: no labels, eval mode
        tokens = model.generate(**chat, max_new_tokens=NEW_TOKENS, do_sample=False)
    answer = stock.decode(tokens[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
    reference = {"batch": batch, "logits": logits, "chat": chat, "tokens": tokens, "answer": answer, "clip": clip}
    torch.save(reference, root / "reference.pt")
    return {
        "root": root,
        "model": model,
        "processor": processor,
        "ar": ar,
        "out": out,
        "stdout": result.stdout,
        "reference": reference,
    }


# ---------------------------------------------------------------------------------------------------------------------
# The method and the folder


def test_export_base_model_shares_every_weight_and_computes_the_same():
    model = tiny_model(num_hist=2)
    base = model.export_base_model()
    assert type(base) is LlavaNextVideoForConditionalGeneration and type(base.config) is LlavaNextVideoConfig
    assert base.model is model.model and base.lm_head is model.lm_head  # shared, not copied
    assert not any(parameter.is_meta for parameter in base.parameters())
    assert base.config.model_type == "llava_next_video"
    assert not hasattr(base.config, "autoregressive_config") and not getattr(base.config, "auto_map", None)
    assert base.generation_config.to_dict() == model.generation_config.to_dict()
    assert base.generation_config is not model.generation_config
    assert base.config._attn_implementation == model.config._attn_implementation
    assert base.training is False
    batch = video_batch()
    with torch.no_grad():
        assert torch.equal(base(**without_objective(batch)).logits, model(**without_objective(batch)).logits)
        assert torch.equal(
            base(**without_objective(batch)).logits, model(**{**batch, "labels": None}).logits
        )  # video_frames without labels: the objective is off
    eager = LlavaNextARForConditionalGeneration(tiny_config("eager")).export_base_model()
    assert eager.config._attn_implementation == eager.config.text_config._attn_implementation == "eager"


def test_export_writes_a_plain_llava_next_video_folder(exported):
    out, ar = exported["out"], exported["ar"]
    assert sorted(path.name for path in out.iterdir()) == EXPORT_FILES  # no .py file
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava_next_video"
    assert config["architectures"] == ["LlavaNextVideoForConditionalGeneration"]
    assert "autoregressive_config" not in config and "auto_map" not in config
    assert export_script.remote_code_left(out) == []
    for name in EXPORT_FILES:
        if name.endswith(".json"):
            assert "auto_map" not in (out / name).read_text() and "llava_next_ar" not in (out / name).read_text()
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "LlavaNextVideoProcessor"
    assert (out / "generation_config.json").read_text() == (ar / "generation_config.json").read_text()

    # The key layout LlavaNextVideoForConditionalGeneration.save_pretrained writes by default (the llava-hf one).
    reference = exported["root"] / "stock"
    stock = LlavaNextVideoForConditionalGeneration(LlavaNextVideoConfig.from_pretrained(out))
    stock.save_pretrained(reference)
    with safe_open(out / "model.safetensors", "pt") as a, safe_open(reference / "model.safetensors", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert "language_model.lm_head.weight" in a.keys()
        assert not [key for key in a.keys() if "teacher" in key or "predictor" in key or "autoregressive" in key]

    processor = AutoProcessor.from_pretrained(out)
    assert type(processor) is LlavaNextVideoProcessor
    assert processor.chat_template == exported["processor"].chat_template
    clip = exported["reference"]["clip"].numpy()
    prompt = processor.apply_chat_template(video_chat(clip), add_generation_prompt=True)
    stock_inputs = processor(text=prompt, videos=clip, return_tensors="pt")
    ours = exported["processor"](text=prompt, videos=clip, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "pixel_values_videos"):
        assert torch.equal(stock_inputs[key], ours[key]), key

    assert "merge" not in exported["stdout"]
    assert not [path.name for path in out.parent.iterdir() if path.name.startswith(".out.")]


def test_model_card_links_the_ar_checkpoint_records_the_objective_and_says_how_to_serve(exported):
    card = (exported["out"] / "README.md").read_text()
    metadata = ModelCard.load(exported["out"] / "README.md").data.to_dict()
    assert metadata["base_model"] == AR_REPO_ID
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == PIPELINE_TAG
    assert metadata["license"] == "apache-2.0"
    assert "custom_code" not in metadata["tags"] and "llava_next_video" in metadata["tags"]
    assert f"https://huggingface.co/{AR_REPO_ID}" in card
    provenance = re.search(r"## Provenance\n.*?```json\n(.*?)```", card, re.S).group(1)
    assert json.loads(provenance) == exported["model"].config.autoregressive_config
    assert "## Serve" in card and f'pipeline("image-text-to-text", model="{REPO_ID_PLACEHOLDER}")' in card
    assert "trust_remote_code" not in card.split("## Serve")[1]
    assert "vLLM" in card and "no serving stack was run" in card
    assert "all frames of each clip in time order" in card

    fast_slow = tiny_config(use_fast_slow_frames=True, num_fast=2, num_slow=2)
    card = export_script.export_card(
        fast_slow,
        base_model="me/ar",
        converted_from="llava-hf/LLaVA-NeXT-Video-7B-hf",
        license="llama2",
        extra_metadata={},
        adapter={"type": "LORA", "base": "me/ar"},
        dropped_bytes=1,
        weights=2,
    )
    assert "(itself converted from [`llava-hf/LLaVA-NeXT-Video-7B-hf`](https://huggingface.co/llava-hf" in card
    assert "with a LORA adapter merged into it (peft `merge_and_unload`)" in card
    assert "fast/slow frame sampling (2 slow frames 4 apart, then 2 fast frames 1 apart" in card


def test_size_on_disk_drops_by_the_teacher_and_predictor(exported):
    model, ar, out = exported["model"], exported["ar"], exported["out"]
    objective = export_script.state_bytes(model.autoregressive_module)
    teacher = export_script.state_bytes(model.autoregressive_module.teacher)
    predictor = export_script.state_bytes(model.autoregressive_module.predictor)
    assert objective == teacher + predictor > 0
    ar_tensors, out_tensors = tensor_bytes(ar / "model.safetensors"), tensor_bytes(out / "model.safetensors")
    assert ar_tensors - out_tensors == objective  # exactly the teacher and predictor tensors
    assert tensor_bytes(ar / "model.safetensors", skip="autoregressive_module.") == out_tensors
    ar_file, out_file = (ar / "model.safetensors").stat().st_size, (out / "model.safetensors").stat().st_size
    assert ar_file - out_file >= objective  # plus the header entries of their keys
    line = f"weights: {out_file} bytes; the LLaVA-NeXT-AR checkpoint's: {ar_file} bytes ({ar_file - out_file} fewer; "
    assert line + f"teacher + predictor: {objective} bytes)" in exported["stdout"]
    print(
        f"\nsize on disk: {ar_file} -> {out_file} bytes (-{ar_file - out_file}); teacher {teacher} + predictor "
        f"{predictor} = {objective} bytes of tensors ({100 * (ar_file - out_file) / ar_file:.1f}% of the file)"
    )


# ---------------------------------------------------------------------------------------------------------------------
# A stranger serves it: fresh process, offline, no remote code, llava_next_ar not importable


STRANGER = r"""
import importlib.util, json, re, sys

params = json.loads(open(sys.argv[1]).read())
sys.path.extend(params["site_dirs"])  # python -I -S: no site hooks (no editable-install .pth), no PYTHONPATH, no cwd
assert importlib.util.find_spec("llava_next_ar") is None, f"llava_next_ar is importable from {sys.path}"

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, pipeline

reference = torch.load(params["reference"], weights_only=True)
out = params["out"]
clip = reference["clip"].numpy()  # a decoded clip, [T, H, W, 3] uint8


def chat():
    text = {"type": "text", "text": "what happens ?"}
    return [{"role": "user", "content": [{"type": "video", "video": clip}, text]}]


config = AutoConfig.from_pretrained(out)  # no trust_remote_code anywhere
model = AutoModelForImageTextToText.from_pretrained(out)
processor = AutoProcessor.from_pretrained(out)
with torch.no_grad():
    logits = model(**reference["batch"]).logits
processed = processor.apply_chat_template(
    chat(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
).to(dtype=model.dtype)
tokens = model.generate(**processed, max_new_tokens=params["new_tokens"], do_sample=False)

pipe = pipeline("image-text-to-text", model=out)
answer = pipe(text=chat(), max_new_tokens=params["new_tokens"], do_sample=False, return_full_text=False)
pipe_tokens = pipe(text=chat(), max_new_tokens=params["new_tokens"], do_sample=False, return_tensors=True)

card = open(out + "/README.md").read()
examples = re.findall(r"```python\n(.*?)```", card.split("## Serve")[1], re.S)
namespace = {"frames": clip}
for code in examples:  # the card's Serve examples, as a stranger would paste them
    exec(code.replace(params["placeholder"], out), namespace)

report = {
    "config": type(config).__name__,
    "model": type(model).__name__,
    "module": type(model).__module__,
    "processor": type(processor).__name__,
    "pipeline_model": type(pipe.model).__name__,
    "dtype": str(model.dtype),
    "logits_equal": torch.equal(logits, reference["logits"]),
    "processed_equal": processed.keys() == reference["chat"].keys()
    and all(torch.equal(processed[key], reference["chat"][key]) for key in processed),
    "tokens_equal": torch.equal(tokens, reference["tokens"]),
    "pipeline_answer": answer[0]["generated_text"],
    "pipeline_tokens_equal": torch.equal(pipe_tokens[0]["generated_token_ids"], reference["tokens"][0]),
    "card_answers": [type(namespace["answer"]).__name__, namespace["tokens"].shape[0]],
    "llava_next_ar_modules": sorted(name for name in sys.modules if name.split(".")[0] == "llava_next_ar"),
    "remote_modules": sorted(name for name in sys.modules if name.startswith("transformers_modules")),
}
print("STRANGER " + json.dumps(report))
"""


def test_stock_transformers_serves_the_export_in_a_fresh_process_without_the_package(exported, tmp_path):
    params = {
        "reference": str(exported["root"] / "reference.pt"),
        "out": str(exported["out"]),
        "new_tokens": NEW_TOKENS,
        "placeholder": REPO_ID_PLACEHOLDER,
    }
    report = run_as_stranger(STRANGER, params, tmp_path, HF_HOME=str(tmp_path / "hf_home"))
    assert report["llava_next_ar_modules"] == [] and report["remote_modules"] == []
    assert report["config"] == "LlavaNextVideoConfig" and report["processor"] == "LlavaNextVideoProcessor"
    assert report["model"] == report["pipeline_model"] == "LlavaNextVideoForConditionalGeneration"
    assert report["module"] == "transformers.models.llava_next_video.modeling_llava_next_video"
    assert report["dtype"] == "torch.float64"
    assert report["logits_equal"] and report["processed_equal"] and report["tokens_equal"]
    assert report["pipeline_tokens_equal"]
    answer = exported["reference"]["answer"]
    assert answer and report["pipeline_answer"].strip() == answer
    assert report["card_answers"] == ["str", 1]


# ---------------------------------------------------------------------------------------------------------------------
# Round trip, LoRA, refusals


def test_converting_the_export_back_gives_the_same_base_weights(exported, tmp_path):
    card = (exported["out"] / "README.md").read_text()
    settings = re.search(r"```json\n(.*?)```", card, re.S).group(1)  # the card's provenance restores the objective
    back = tmp_path / "back"
    argv = [str(exported["out"]), str(back), "--autoregressive-config", settings]
    assert convert_script.main(argv) == 0
    model = LlavaNextARForConditionalGeneration.from_pretrained(back)
    original = exported["model"]
    assert model.config.autoregressive_config == original.config.autoregressive_config
    state, before = model.state_dict(), original.state_dict()
    base_keys = [key for key in before if not key.startswith("autoregressive_module.")]
    assert sorted(key for key in state if not key.startswith("autoregressive_module.")) == sorted(base_keys)
    assert all(torch.equal(state[key], before[key]) for key in base_keys)
    assert model.dtype == torch.float64
    batch = video_batch()
    with torch.no_grad():
        assert torch.equal(model(**without_objective(batch)).logits, exported["reference"]["logits"])


def test_export_from_a_lora_adapter_merges_it_first(exported, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = LlavaNextARForConditionalGeneration.from_pretrained(exported["ar"])
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", modules_to_save=["predictor"]
    )
    peft_model = get_peft_model(base, lora)
    torch.manual_seed(5)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)  # as after training (LoRA starts as a no-op)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(exported["ar"])
    out = tmp_path / "out"
    result = run_export(adapter, out)
    merged_line = f"merged the LORA adapter into {exported['ar']} with peft's merge_and_unload, then exported"
    assert merged_line in result.stdout
    assert sorted(path.name for path in out.iterdir()) == EXPORT_FILES  # processor taken from the base checkpoint
    assert "LORA adapter merged into it" in (out / "README.md").read_text()

    exported_model = LlavaNextVideoForConditionalGeneration.from_pretrained(out)
    batch = without_objective(video_batch())
    with torch.no_grad():
        merged = exported_model(**batch).logits
        ar = LlavaNextARForConditionalGeneration.from_pretrained(exported["ar"])
        expected = PeftModel.from_pretrained(ar, adapter).eval()(**batch).logits
    assert torch.allclose(merged, expected, rtol=0, atol=1e-12)  # merged weights: equal up to rounding
    assert not torch.allclose(merged, exported["reference"]["logits"], atol=1e-6)  # the adapter mattered
    with safe_open(out / "model.safetensors", "pt") as file:
        assert not [key for key in file.keys() if "lora" in key or "modules_to_save" in key or "predictor" in key]


def test_export_refuses_bad_arguments_and_leaves_nothing_behind(exported, tmp_path, capsys, monkeypatch):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    assert export_script.main([str(exported["ar"]), str(occupied)]) == 2
    assert "output_dir" in capsys.readouterr().err and [p.name for p in occupied.iterdir()] == ["keep.txt"]

    assert export_script.main([str(exported["out"]), str(tmp_path / "a")]) == 2
    assert "source" in (err := capsys.readouterr().err) and "already a plain LLaVA-NeXT-Video" in err
    assert export_script.main(["tiny-org/not-in-the-cache", str(tmp_path / "b"), "--local-files-only"]) == 2
    assert "tiny-org/not-in-the-cache" in capsys.readouterr().err
    assert export_script.main([str(exported["ar"]), str(tmp_path / "c"), "--chat-template", "nope.jinja"]) == 2
    assert "--chat-template" in capsys.readouterr().err
    assert export_script.main([str(exported["ar"]), str(tmp_path / "d"), "--adapter-base", "x"]) == 2
    assert "--adapter-base" in capsys.readouterr().err

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "base_model_name_or_path": null}')
    assert export_script.main([str(adapter), str(tmp_path / "e")]) == 2
    assert "--adapter-base" in capsys.readouterr().err

    no_template = tmp_path / "no_template"
    shutil.copytree(exported["ar"], no_template)
    (no_template / "chat_template.jinja").unlink()
    assert export_script.main([str(no_template), str(tmp_path / "f")]) == 2
    assert "no chat template; pass --chat-template FILE" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(export_script, "export_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_script.main([str(exported["ar"]), str(empty)])
    assert list(empty.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["adapter", "empty", "no_template", "occupied"]


def test_export_refuses_a_model_the_stock_processor_cannot_feed(tmp_path, capsys):
    config = tiny_config()
    config.spatial_pool_stride = 4  # 1 video token per frame; the stock processor counts (32 / 8) ** 2 // 4 = 4
    torch.manual_seed(0)
    model = LlavaNextARForConditionalGeneration(config)
    source = tmp_path / "source"
    model.save_pretrained(source)
    tiny_processor(config).save_pretrained(source)
    assert export_script.main([str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "spatial_pool_stride=4" in err and "would give 4" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["source"]


# ---------------------------------------------------------------------------------------------------------------------
# scripts/push_to_hub.py pushes the export


def test_push_dry_run_of_the_export_offline(exported, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(HF_TOKEN=FAKE_TOKEN, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://10.255.255.1", HF_HOME=str(tmp_path / "h"))
    script = str(ROOT / "scripts" / "push_to_hub.py")
    argv = [script, str(exported["out"]), "--repo-id", "me/tiny-served", "--revision", "served", "--dry-run"]
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert FAKE_TOKEN not in out + result.stderr and "no network call made" in out
    assert [name for name in re.findall(r"^  +\d+  (\S+)", out, re.M)] == EXPORT_FILES
    assert "plain LLaVA-NeXT-Video checkpoint (llava_next_video, no remote code)" in out
    assert "me/tiny-served (branch served, as a commit)" in out
    assert 'pipeline("image-text-to-text", model="me/tiny-served")' in out


def test_push_refuses_an_export_that_carries_remote_code(exported, tmp_path, capsys):
    folder = tmp_path / "served"
    shutil.copytree(exported["out"], folder)
    (folder / "modeling_llava_next_ar.py").write_text("")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_llava_next_ar.LlavaNextARForConditionalGeneration"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").unlink()
    assert push_script.main([str(folder), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "modeling_llava_next_ar.py" in err and "auto_map" in err and "scripts/export_base.py" in err


def test_push_the_export_to_its_own_repo(exported, monkeypatch, capsys):
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    assert push_script.main([str(exported["out"]), "--repo-id", "me/tiny-served"]) == 0
    assert FAKE_TOKEN not in capsys.readouterr().out
    (_, token), create_repo, (_, repo_id, files, message, revision, create_pr) = FakeHfApi.calls
    assert create_repo == ("create_repo", "me/tiny-served", None, True) and revision is None and not create_pr
    assert sorted(files) == EXPORT_FILES and "LLaVA-NeXT-Video" in message
    assert b'pipeline("image-text-to-text", model="me/tiny-served")' in files["README.md"]
