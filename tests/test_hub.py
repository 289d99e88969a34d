"""Checkpoints are Hub-native: a stranger with only transformers and torch loads them with `trust_remote_code=True`
(from a folder or by repo id from the Hub cache, offline), a plain LLaVA-NeXT-Video checkpoint converts into one, the
model card describes it, and the push script shows exactly what it would upload without touching the network."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, scan_cache_dir

from helpers import (
    FAKE_TOKEN,
    NO_NETWORK,
    ROOT,
    FakeHfApi,
    load_script,
    plain_llava_next_video_checkpoint,
    run_as_stranger,
    tiny_model,
    video_batch,
)
from llava_next_ar import LlavaNextARConfig, LlavaNextARForConditionalGeneration
from llava_next_ar.model_card_llava_next_ar import PIPELINE_TAG, REPO_ID_PLACEHOLDER, TAGS, model_card
from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor
from tiny_tokenizer import tiny_processor


PACKAGE = ROOT / "llava_next_ar"
REPO_ID = "tiny-org/llava-next-ar-tiny"
BASE_REPO_ID = "tiny-org/tiny-llava-next-video"
PROMPT = "user : <video> what happens ?"
OUTPUT_FIELDS = ("logits", "loss", "main_loss", "autoregressive_loss", "autoregressive_frame_losses")


convert_script = load_script("convert_llava_next_video")
push_script = load_script("push_to_hub")


def card_metadata(path: Path) -> dict:
    return ModelCard.load(path).data.to_dict()


def outputs(model, batch) -> dict:
    with torch.no_grad():
        out = model(**batch)
    return {name: getattr(out, name) for name in OUTPUT_FIELDS}


def populate_hub_cache(folder: Path, cache: Path, repo_id: str) -> str:
    """Lay `folder` out as `huggingface_hub` does in its cache: `blobs/<etag>` (sha256 for LFS files, git blob sha1
    otherwise), `snapshots/<commit>/<file>` relative symlinks to the blobs, `refs/main` holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    commit = hashlib.sha1("".join(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in files).encode()).hexdigest()
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return commit


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """
    - `saved`: a tiny LLaVA-NeXT-AR model (teacher made to differ from the tower, as after training) and its
      processor, saved with `save_pretrained`; also laid out in a Hub cache as `REPO_ID`.
    - `converted`: `scripts/convert_llava_next_video.py` run on a plain LLaVA-NeXT-Video checkpoint `source`.
    - `reference.pt`: inputs and the outputs the in-process models gave, for the fresh process to compare against.
    """
    root = tmp_path_factory.mktemp("hub")
    model = tiny_model(num_hist=2)
    with torch.no_grad():
        for parameter in model.model.vision_tower.parameters():
            parameter.add_(0.01)
    processor = tiny_processor(model.config)
    saved = root / "saved"
    model.save_pretrained(saved)
    processor.save_pretrained(saved)

    hf_home = root / "hf_home"
    commit = populate_hub_cache(saved, hf_home / "hub", REPO_ID)

    source = root / "source"
    base = plain_llava_next_video_checkpoint(source)
    converted = root / "converted"
    argv = [str(source), str(converted), "--dtype", "float64", "--base-model", BASE_REPO_ID, "--set", "num_layers=1"]
    argv += ["--autoregressive-config", '{"loss_weight": 0.05, "num_heads": 4}']
    assert convert_script.main(argv) == 0
    converted_model = LlavaNextARForConditionalGeneration.from_pretrained(converted).eval()

    clip = torch.randint(0, 256, (6, 40, 48, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    processed = dict(processor(text=PROMPT, videos=clip, return_tensors="pt"))
    batch = video_batch()
    reference = {
        "batch": batch,
        "processor_call": {"text": PROMPT, "videos": clip},
        "processed": processed,
        "saved": outputs(model, batch),
        "saved_on_processed": outputs(model, {**processed, "labels": processed["input_ids"]}),
        "converted": outputs(converted_model, batch),
        "source_state": base.state_dict(),
    }
    torch.save(reference, root / "reference.pt")
    return {
        "root": root,
        "model": model,
        "saved": saved,
        "hf_home": hf_home,
        "commit": commit,
        "source": source,
        "base": base,
        "converted": converted,
        "converted_model": converted_model,
        "reference": reference,
    }


# ---------------------------------------------------------------------------------------------------------------------
# What save_pretrained writes


def test_save_pretrained_writes_a_remote_code_checkpoint(checkpoints):
    saved = checkpoints["saved"]
    config = json.loads((saved / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_llava_next_ar.LlavaNextARConfig",
        "AutoModel": "modeling_llava_next_ar.LlavaNextARForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_llava_next_ar.LlavaNextARForConditionalGeneration",
    }
    processor_config = json.loads((saved / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_llava_next_ar.LlavaNextARProcessor"
    assert processor_config["video_processor"]["auto_map"]["AutoVideoProcessor"] == (
        "video_processing_llava_next_ar.LlavaNextARVideoProcessor"
    )
    for name in ("modeling", "configuration", "model_card", "processing", "video_processing", "video_decoding"):
        assert (saved / f"{name}_llava_next_ar.py").read_text() == (PACKAGE / f"{name}_llava_next_ar.py").read_text()
    assert (saved / "video_frame_utils.py").is_file()  # imported relatively by the video processor
    assert (saved / "model.safetensors").is_file()
    metadata = card_metadata(saved / "README.md")
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == PIPELINE_TAG == "video-text-to-text"
    assert metadata["license"] == "apache-2.0"
    assert metadata["tags"] == list(TAGS) and "custom_code" in TAGS
    assert "base_model" not in metadata


def test_model_card_describes_the_config(checkpoints):
    config = checkpoints["model"].config
    card = (checkpoints["saved"] / "README.md").read_text()
    assert card == model_card(config)
    for key, value in config.autoregressive_config.items():
        assert f"| `{key}` | `{json.dumps(value)}` |" in card
        row = f"| `{key}` | `{json.dumps(value)}` |"
        assert f"{row} |" not in card and f"{row}  |" not in card
    width = config.autoregressive_config["predictor_hidden_size"]
    assert f"heads at width {width}, cross-attending to the LLM (width 32)" in card
    assert f"| video tokens per frame | {config.video_tokens_per_frame} |" in card
    assert "`clip_vision_model`, width 24, 2 layers" in card and "`llama`, width 32, 2 layers" in card
    assert f'AutoModelForImageTextToText.from_pretrained("{REPO_ID_PLACEHOLDER}", trust_remote_code=True' in card
    assert f'AutoProcessor.from_pretrained("{REPO_ID_PLACEHOLDER}", trust_remote_code=True)' in card
    assert "Trainer(" in card and "main_loss" in card and "autoregressive_loss" in card and "video_frames" in card

    extra = {"license_name": "tiny license: v2", "license_link": "LICENSE"}
    custom = model_card(config, base_model="org/base-7b", license="other", extra_metadata=extra, repo_id="me/x")
    path = checkpoints["root"] / "custom_card.md"
    path.write_text(custom)
    assert card_metadata(path) == {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAG,
        "license": "other",
        **extra,
        "base_model": "org/base-7b",
        "tags": list(TAGS),
    }
    assert REPO_ID_PLACEHOLDER not in custom and 'from_pretrained("me/x"' in custom


def test_save_pretrained_keeps_an_existing_model_card(tmp_path):
    (tmp_path / "README.md").write_text("my own card\n")
    tiny_model().save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own card\n"
    assert (tmp_path / "config.json").is_file()


def test_push_script_placeholder_matches_the_model_card():
    assert push_script.REPO_ID_PLACEHOLDER == REPO_ID_PLACEHOLDER


# ---------------------------------------------------------------------------------------------------------------------
# A stranger loads the checkpoints: fresh process, offline, cwd elsewhere, llava_next_ar not importable


STRANGER = r"""
import importlib.util, json, re, sys

params = json.loads(open(sys.argv[1]).read())
sys.path.extend(params["site_dirs"])  # python -I -S: no site hooks (no editable-install .pth), no PYTHONPATH, no cwd
assert importlib.util.find_spec("llava_next_ar") is None, f"llava_next_ar is importable from {sys.path}"

import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor, AutoVideoProcessor

reference = torch.load(params["reference"], weights_only=True)


def outputs(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return {name: getattr(out, name) for name in params["fields"]}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


report = {}
for label, location in params["checkpoints"].items():
    config = AutoConfig.from_pretrained(location, trust_remote_code=True)
    model = AutoModelForImageTextToText.from_pretrained(location, trust_remote_code=True)
    plain = AutoModel.from_pretrained(location, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(location, trust_remote_code=True)
    video_processor = AutoVideoProcessor.from_pretrained(location, trust_remote_code=True)
    processed = dict(processor(**reference["processor_call"], return_tensors="pt"))
    alone = dict(video_processor(reference["processor_call"]["videos"], return_tensors="pt"))
    entry = {
        "config": type(config).__name__,
        "model": type(model).__name__,
        "module": type(model).__module__,
        "auto_model": type(plain).__name__,
        "processor": type(processor).__name__,
        "video_processor": type(video_processor).__name__,
        "video_processor_module": type(video_processor).__module__,
        "processor_composes_it": type(processor.video_processor).__name__ == type(video_processor).__name__,
        "video_processor_outputs_equal": same(alone, {key: processed[key] for key in alone}),
        "video_processor_keys": sorted(alone),
        "dtype": str(model.dtype),
        "training": model.training,
        "processed_keys": sorted(processed),
    }
    if label == "converted":
        state, source = model.state_dict(), reference["source_state"]
        teacher = model.autoregressive_module.teacher.state_dict()
        out = outputs(model, reference["batch"])
        entry["source_weights_equal"] = all(torch.equal(state[key], source[key]) for key in source)
        entry["teacher_equals_source_tower"] = all(
            torch.equal(tensor, source["model.vision_tower." + key]) for key, tensor in teacher.items()
        )
        entry["predictor_tensors"] = sum(key.startswith("autoregressive_module.predictor.") for key in state)
        entry["autoregressive_config"] = config.autoregressive_config
        entry["autoregressive_loss"] = float(out["autoregressive_loss"])
        entry["outputs_equal"] = same(out, reference["converted"])
    else:
        entry["outputs_equal"] = same(outputs(model, reference["batch"]), reference["saved"])
        entry["processor_outputs_equal"] = same(processed, reference["processed"])
        on_processed = outputs(model, {**processed, "labels": processed["input_ids"]})
        entry["outputs_on_processed_equal"] = same(on_processed, reference["saved_on_processed"])
        card = open(model.name_or_path + "/README.md").read() if label == "folder" else None
        if card:  # the model card's "Use" example, as a stranger would paste it
            code = re.search(r"## Use\n\n```python\n(.*?)```", card, re.S).group(1)
            namespace = {"clip": reference["processor_call"]["videos"]}
            exec(code.replace(params["placeholder"], location), namespace)
            out = namespace["out"]
            entry["card_example_losses"] = [float(out.loss), float(out.main_loss), float(out.autoregressive_loss)]
    report[label] = entry

report["llava_next_ar_modules"] = sorted(name for name in sys.modules if name.split(".")[0] == "llava_next_ar")
print("STRANGER " + json.dumps(report))
"""


def test_fresh_process_without_the_package_loads_checkpoints_from_folder_and_hub_cache(checkpoints, tmp_path):
    hf_home = checkpoints["hf_home"]
    cached = scan_cache_dir(hf_home / "hub")  # huggingface_hub reads our layout as its own
    (repo,) = [repo for repo in cached.repos if repo.repo_id == REPO_ID]
    (revision,) = repo.revisions
    assert revision.commit_hash == checkpoints["commit"] and revision.refs == frozenset({"main"})
    assert {file.file_name for file in revision.files} == {path.name for path in checkpoints["saved"].iterdir()}

    params = {
        "reference": str(checkpoints["root"] / "reference.pt"),
        "fields": list(OUTPUT_FIELDS),
        "placeholder": REPO_ID_PLACEHOLDER,
        "checkpoints": {
            "folder": str(checkpoints["saved"]),
            "hub_cache": REPO_ID,
            "converted": str(checkpoints["converted"]),
        },
    }
    report = run_as_stranger(STRANGER, params, tmp_path, HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"))

    assert report.pop("llava_next_ar_modules") == []
    for label, entry in report.items():
        assert entry["config"] == "LlavaNextARConfig", label
        assert entry["model"] == entry["auto_model"] == "LlavaNextARForConditionalGeneration", label
        assert entry["module"].startswith("transformers_modules."), label
        assert entry["processor"] == "LlavaNextARProcessor", label
        assert entry["video_processor"] == "LlavaNextARVideoProcessor", label
        assert entry["video_processor_module"].startswith("transformers_modules."), label
        assert entry["processor_composes_it"] and entry["video_processor_outputs_equal"], label
        assert {"pixel_values_videos", "video_frames", "video_frame_indices"} <= set(entry["video_processor_keys"])
        assert entry["dtype"] == "torch.float64" and entry["training"] is False, label
        assert {"video_frames", "video_frame_indices", "pixel_values_videos"} <= set(entry["processed_keys"]), label
        assert entry["outputs_equal"], label
    for label in ("folder", "hub_cache"):
        assert report[label]["processor_outputs_equal"] and report[label]["outputs_on_processed_equal"], label
    loss, main_loss, autoregressive_loss = report["folder"]["card_example_losses"]
    assert autoregressive_loss > 0 and loss == pytest.approx(main_loss + autoregressive_loss)
    converted = report["converted"]
    assert converted["source_weights_equal"] and converted["teacher_equals_source_tower"]
    assert converted["predictor_tensors"] > 0 and converted["autoregressive_loss"] > 0
    assert converted["autoregressive_config"]["loss_weight"] == 0.05
    assert converted["autoregressive_config"]["num_layers"] == 1


# ---------------------------------------------------------------------------------------------------------------------
# scripts/convert_llava_next_video.py


def test_convert_copies_every_source_weight_and_the_tower_into_the_teacher(checkpoints):
    model, source = checkpoints["converted_model"], checkpoints["base"].state_dict()
    state = model.state_dict()
    assert all(torch.equal(state[key], source[key]) for key in source)  # lm_head too (legacy checkpoint layout)
    teacher = model.autoregressive_module.teacher.state_dict()
    assert teacher.keys() == model.model.vision_tower.state_dict().keys()
    assert all(torch.equal(tensor, source["model.vision_tower." + key]) for key, tensor in teacher.items())
    assert len(model.autoregressive_module.predictor.layers) == 1
    assert model.config.autoregressive_config["loss_weight"] == 0.05
    out = checkpoints["reference"]["converted"]
    assert out["autoregressive_frame_losses"].shape == (2, 3) and torch.isfinite(out["autoregressive_loss"])
    assert torch.equal(out["loss"], out["main_loss"] + out["autoregressive_loss"])


def test_convert_from_a_repo_id_in_the_hub_cache_offline(checkpoints, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    populate_hub_cache(checkpoints["source"], tmp_path / "hub", BASE_REPO_ID)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    output = tmp_path / "out"
    assert convert_script.main([BASE_REPO_ID, str(output), "--local-files-only", "--copy-processor"]) == 0
    assert card_metadata(output / "README.md")["base_model"] == BASE_REPO_ID  # the repo id, by default
    assert (output / "tokenizer.json").read_bytes() == (checkpoints["source"] / "tokenizer.json").read_bytes()
    assert "copied unchanged" in capsys.readouterr().out
    model = LlavaNextARForConditionalGeneration.from_pretrained(output)
    assert model.dtype == torch.float64  # --dtype auto keeps the source's
    tower = checkpoints["base"].state_dict()
    assert all(
        torch.equal(tensor, tower["model.vision_tower." + key])
        for key, tensor in model.autoregressive_module.teacher.state_dict().items()
    )


def test_convert_an_llava_next_ar_checkpoint_keeps_its_weights_and_updates_the_processor(checkpoints, tmp_path):
    output = tmp_path / "out"
    argv = ["--set", "use_fast_slow_frames=true", "--set", "num_fast=2", "--set", "num_slow=2"]
    assert convert_script.main([str(checkpoints["saved"]), str(output), *argv]) == 0
    model = LlavaNextARForConditionalGeneration.from_pretrained(output)
    original = checkpoints["model"].state_dict()
    state = model.state_dict()
    assert state.keys() == original.keys() and all(torch.equal(state[key], original[key]) for key in original)
    assert model.config.autoregressive_config["num_hist"] == 2  # the source's settings stay
    processor = LlavaNextARProcessor.from_pretrained(output, trust_remote_code=False)
    processor.check_compatible(model.config)
    assert processor.use_fast_slow_frames and processor.num_fast == 2


def test_scripts_document_their_flags():
    for name, flags in {
        "convert_llava_next_video": ("--autoregressive-config", "--set", "--dtype", "--base-model", "--overwrite"),
        "push_to_hub": ("--repo-id", "--private", "--revision", "--create-pr", "--commit-message", "--dry-run"),
    }.items():
        script = str(ROOT / "scripts" / f"{name}.py")
        result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and all(flag in result.stdout for flag in flags), result.stdout + result.stderr


def test_convert_writes_processor_and_card_with_base_model(checkpoints):
    converted = checkpoints["converted"]
    metadata = card_metadata(converted / "README.md")
    assert metadata["base_model"] == BASE_REPO_ID
    assert metadata["license"] == "mit"  # the source card's
    assert metadata["pipeline_tag"] == PIPELINE_TAG
    assert "only the predictor is newly initialised" in (converted / "README.md").read_text()
    processor = LlavaNextARProcessor.from_pretrained(converted, trust_remote_code=False)
    processor.check_compatible(checkpoints["converted_model"].config)
    assert not [path.name for path in converted.parent.iterdir() if path.name.startswith(".converted.")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "num_hiist=2"], "num_hiist"),
        (["--set", "loss_weight=-1"], "loss_weight"),
        (["--autoregressive-config", "[1, 2]"], "JSON object"),
        (["--autoregressive-config", "{loss_weight: 1}"], "not valid JSON"),
        (["--set", "novalue"], "KEY=VALUE"),
    ],
)
def test_convert_rejects_bad_overrides_before_writing_anything(checkpoints, tmp_path, capsys, argv, message):
    output = tmp_path / "out"
    assert convert_script.main([str(checkpoints["source"]), str(output), *argv]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_convert_rejects_other_models_and_occupied_outputs(checkpoints, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llama"}')
    assert convert_script.main([str(other), str(tmp_path / "out")]) == 2
    assert "'llava_next_video'" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    assert convert_script.main([str(checkpoints["source"]), str(occupied)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert convert_script.main(["tiny-org/not-in-the-cache", str(tmp_path / "out2"), "--local-files-only"]) == 2
    assert "tiny-org/not-in-the-cache" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["occupied", "other"]


def test_convert_failure_leaves_no_half_written_output(checkpoints, tmp_path, monkeypatch):
    output = tmp_path / "out"
    output.mkdir()
    (output / "previous.txt").write_text("the previous conversion")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(convert_script, "convert_processor", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        convert_script.main([str(checkpoints["source"]), str(output), "--overwrite", "--dtype", "float64"])
    assert [path.name for path in tmp_path.iterdir()] == ["out"]  # no staging folder left
    assert [path.name for path in output.iterdir()] == ["previous.txt"]


# ---------------------------------------------------------------------------------------------------------------------
# scripts/push_to_hub.py


@pytest.fixture
def push_folder(checkpoints, tmp_path):
    """The saved checkpoint plus what a Trainer output folder also holds."""
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints["saved"], folder)
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"pickle")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.lock").write_text("")
    return folder


def test_push_dry_run_prints_files_and_card_without_network_or_token(push_folder, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(HF_TOKEN=FAKE_TOKEN, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://10.255.255.1", HF_HOME=str(tmp_path / "h"))
    script = str(ROOT / "scripts" / "push_to_hub.py")
    argv = [script, str(push_folder), "--repo-id", "me/tiny-ar", "--revision", "v1", "--private", "--dry-run"]
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert FAKE_TOKEN not in result.stdout + result.stderr
    out = result.stdout
    uploaded = sorted(
        path.relative_to(push_folder).as_posix()
        for path in push_folder.rglob("*")
        if path.is_file() and ".cache" not in path.parts and path.name != "training_args.bin"
        and "checkpoint-10" not in path.parts
    )
    listed = re.findall(r"^  +(\d+)  (\S+)", out, re.M)
    assert [name for _, name in listed] == uploaded
    assert all(int(size) == (push_folder / name).stat().st_size for size, name in listed)
    assert "not uploaded (2): checkpoint-10/optimizer.pt, training_args.bin" in out
    card = (push_folder / "README.md").read_text().replace(REPO_ID_PLACEHOLDER, "me/tiny-ar")
    assert card.rstrip("\n") in out and 'from_pretrained("me/tiny-ar", trust_remote_code=True' in out
    assert "me/tiny-ar (branch v1, as a commit)" in out and "private" in out
    assert "no network call made" in out


def test_push_refuses_an_incomplete_folder(push_folder, capsys):
    (push_folder / "model_card_llava_next_ar.py").unlink()  # imported by modeling_llava_next_ar.py
    (push_folder / "model.safetensors").unlink()
    config = json.loads((push_folder / "config.json").read_text())
    del config["auto_map"]["AutoModel"]
    (push_folder / "config.json").write_text(json.dumps(config))
    assert push_script.main([str(push_folder), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "model_card_llava_next_ar.py" in err and "no weights" in err and "['AutoModel']" in err


def test_push_refuses_a_folder_whose_card_example_cannot_run(push_folder, capsys):
    """The card loads `AutoProcessor`: a folder without the processor's files would publish an example that fails."""
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        (push_folder / name).unlink(missing_ok=True)
    assert push_script.main([str(push_folder), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "the card loads `AutoProcessor` but the folder has no processor_config.json" in err


def test_push_real_run_uses_the_standard_token_and_one_commit(push_folder, monkeypatch, capsys, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    argv = [str(push_folder), "--repo-id", "me/x", "--revision", "v1", "--create-pr", "--commit-message", "hello"]
    assert push_script.main(argv) == 0
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in captured.out + captured.err and "https://hub/me/x/discussions/1" in captured.out
    (_, token), create_repo, create_branch, (_, repo_id, files, message, revision, create_pr) = FakeHfApi.calls
    assert token == FAKE_TOKEN and create_repo == ("create_repo", "me/x", None, True)
    assert create_branch == ("create_branch", "me/x", "v1", True)
    assert (repo_id, message, revision, create_pr) == ("me/x", "hello", "v1", True)
    assert "training_args.bin" not in files and "model.safetensors" in files
    assert b'from_pretrained("me/x", trust_remote_code=True' in files["README.md"]

    FakeHfApi.calls = []
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert push_script.main([str(push_folder), "--repo-id", "me/x"]) == 2
    assert "no Hugging Face token: set HF_TOKEN or run `hf auth login`" in capsys.readouterr().err
    assert FakeHfApi.calls == []


def test_the_installed_package_registers_the_auto_classes(checkpoints, caplog):
    """With the package imported, a checkpoint loads through the auto classes without remote code, and reading its
    config says nothing about a model of type ``."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    with caplog.at_level("WARNING"):
        config = AutoConfig.from_pretrained(checkpoints["saved"])
        model = AutoModelForImageTextToText.from_pretrained(checkpoints["saved"])
    assert type(config) is LlavaNextARConfig and type(model) is LlavaNextARForConditionalGeneration
    assert "to instantiate a model of type" not in caplog.text
