"""What the tests share: tiny random LLaVA-NeXT-AR models, inputs and datasets (built by `llava_next_ar.tiny_models`,
no downloads), the base-model twin of a model, a tiny plain LLaVA-NeXT-Video checkpoint, the repository root, importing
a script of `scripts/` or `benchmarks/`, a free port for launchers, running code as a stranger (a fresh process where
this package cannot be imported) and a fake `HfApi`. Test modules and the distributed workers (`tests/distributed/`)
import from here, never from a test module."""

import copy
import importlib.util
import json
import os
import site
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
from transformers import (
    LlavaNextImageProcessor,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaNextVideoProcessor,
    LlavaNextVideoVideoProcessor,
)

from llava_next_ar import LlavaNextARConfig, LlavaNextARForConditionalGeneration, tiny_models


ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""

VOCAB = 64
VIDEO_TOKEN = 63
IMAGE_TOKEN = 62
IMAGE_SIZE = 32
TEXT_IDS_BELOW = 60
"""Random text ids of `video_batch` are drawn from 1..59 (no placeholder, no special token beyond 0..3's meaning)."""


def load_script(name: str, folder: str = "scripts") -> ModuleType:
    """`<folder>/<name>.py` of the repository (`scripts/` or `benchmarks/`) imported as the module `name`, once per
    process, like `import name` with the folder on `sys.path`: a script that imports a sibling, as `train` imports
    `video_data`, shares the one module object."""
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / folder / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"`name` must be a file of {ROOT / folder}, got {name!r} (no {path})")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def tiny_config(attn_implementation: str = "sdpa", **autoregressive_config) -> LlavaNextARConfig:
    """CLIP 32x32 / patch 8 (16 patches + CLS), pool stride 2 (4 LLM tokens per frame), Llama width 32."""
    return tiny_models.tiny_config(
        VOCAB, VIDEO_TOKEN, IMAGE_TOKEN, image_size=IMAGE_SIZE, patch_size=8, vision_hidden_size=24, hidden_size=32,
        autoregressive_config=autoregressive_config, attn_implementation=attn_implementation,
    )


def tiny_model(dtype=torch.float64, seed: int = 0, **autoregressive_config) -> LlavaNextARForConditionalGeneration:
    """`LlavaNextARForConditionalGeneration(tiny_config(...))` initialised from `seed`, in `dtype`, in eval mode."""
    torch.manual_seed(seed)
    model = LlavaNextARForConditionalGeneration(tiny_config(**autoregressive_config))
    return model.to(dtype).eval()


def base_twin(model: LlavaNextARForConditionalGeneration) -> LlavaNextVideoForConditionalGeneration:
    """The stock `LlavaNextVideoForConditionalGeneration` of `model` (its `export_base_model()`: teacher and predictor
    dropped) with its own copy of the weights, so that its gradients are its own."""
    return copy.deepcopy(model.export_base_model())


def video_batch(**kwargs) -> dict:
    """`llava_next_ar.tiny_models.video_batch` for `tiny_config()` (4 video tokens per LLM frame), float64 frames,
    text ids below `TEXT_IDS_BELOW`; keyword arguments as there (`batch_size=2`, `num_frames=4`, `seed=0`, ...)."""
    kwargs = {"dtype": torch.float64, "text_ids_below": TEXT_IDS_BELOW, **kwargs}
    return tiny_models.video_batch(tiny_config(), **kwargs)


class ListDataset(torch.utils.data.Dataset):
    """A map-style dataset over a list of examples."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def synthetic_dataset(size: int = 8) -> ListDataset:
    """`size` examples of equal length (so per-micro-batch and global token means coincide), float32: the rows of one
    `video_batch(num_frames=4, seed=1)`. For `Trainer` runs, in the tests and in the distributed workers."""
    batch = video_batch(batch_size=size, num_frames=4, dtype=torch.float32, seed=1)
    return ListDataset([{key: value[i] for key, value in batch.items()} for i in range(size)])


def free_port() -> str:
    """A port no one listens on now (fixed ports collide when two test runs share a machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def plain_llava_next_video_checkpoint(folder: Path) -> LlavaNextVideoForConditionalGeneration:
    """A tiny plain LLaVA-NeXT-Video checkpoint (the stock model of `tiny_config()`, seed 1, float64, eval mode) saved
    in `folder` with its stock processor on `tiny_tokenizer()` and an MIT-licensed card. Returns the model."""
    from tiny_tokenizer import tiny_tokenizer  # tiny_tokenizer imports this module: import it when called

    config = {k: v for k, v in tiny_config().to_dict().items() if k not in ("autoregressive_config", "auto_map")}
    config.pop("model_type")
    torch.manual_seed(1)
    model = LlavaNextVideoForConditionalGeneration(LlavaNextVideoConfig(**config)).to(torch.float64).eval()
    model.save_pretrained(folder)
    size = {"shortest_edge": IMAGE_SIZE}
    crop = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    tokenizer = tiny_tokenizer()
    LlavaNextVideoProcessor(
        tokenizer=tokenizer,
        image_processor=LlavaNextImageProcessor(size=size, crop_size=crop),
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        chat_template=tokenizer.chat_template,
        patch_size=8,
        vision_feature_select_strategy="default",
    ).save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# A tiny LLaVA-NeXT-Video\n")
    return model


def dependency_site_dirs() -> list[str]:
    """The site-packages folders that hold transformers, torch and their dependencies (added without `.pth` files)."""
    dirs = [str(Path(importlib.util.find_spec(name).origin).parents[1]) for name in ("torch", "transformers")]
    return list(dict.fromkeys(dirs + site.getsitepackages()))


def run_as_stranger(code: str, params: dict, tmp_path: Path, **env: str) -> dict:
    """
    Run `code` with `params.json` (`params` plus `site_dirs`) in a fresh `python -I -S` process, offline, in an empty
    folder, with no HF_/PYTHON variables but `env`: only transformers, torch and their dependencies are importable.
    Returns the JSON report it prints after `STRANGER `.
    """
    (tmp_path / "params.json").write_text(json.dumps({**params, "site_dirs": dependency_site_dirs()}))
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING", "PYTHON"))}
    environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(tmp_path / "params.json")],
        cwd=elsewhere,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("STRANGER "))
    print(line)
    return json.loads(line.removeprefix("STRANGER "))


NO_NETWORK = r"""
import runpy, socket, sys

def refuse(*args, **kwargs):
    raise RuntimeError("network call attempted")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""`python -c NO_NETWORK script.py args...` runs `script.py args...` as `__main__`, every socket connect refused."""

FAKE_TOKEN = "hf_FakeTokenThatMustNeverBePrinted0123456789"
"""A token in the environment that no output may ever show."""


class FakeHfApi:
    """Stands in for `huggingface_hub.HfApi`: records every call in `FakeHfApi.calls` (reset it before use) and
    answers as the Hub would, without the network."""

    calls = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_branch(self, repo_id, branch, exist_ok=False):
        self.calls.append(("create_branch", repo_id, branch, exist_ok))

    def create_commit(self, repo_id, operations, commit_message, revision=None, create_pr=False):
        files = {op.path_in_repo: op.path_or_fileobj for op in operations}
        self.calls.append(("create_commit", repo_id, files, commit_message, revision, create_pr))
        return type("CommitInfo", (), {"pr_url": "https://hub/me/x/discussions/1", "commit_url": None})()
