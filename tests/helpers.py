"""What the tests share: tiny random LLaVA-NeXT-AR models, inputs and datasets (built by `llava_next_ar.tiny_models`,
no downloads), the base-model twin of a model, the repository root, and importing a script of `scripts/` or
`benchmarks/`. The distributed workers (`tests/distributed/`) import from here, never from a test module."""

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from transformers import LlavaNextVideoForConditionalGeneration

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
