"""Checkpoints cross the supported transformers range: a remote-code checkpoint saved under the oldest supported
transformers loads under the newest tested one in a fresh process that cannot import this package, and the other way
round, with bit-identical losses and logits (float64).

Needs the python of each environment: `.ci/run` installs both (`scripts/setup_env.sh`, `LLAVA_NEXT_AR_ENV=newest` and
`oldest`) and exports LLAVA_NEXT_AR_NEWEST_PYTHON and LLAVA_NEXT_AR_OLDEST_PYTHON. Under CI (`CI=true`) a missing one
fails the test; elsewhere it skips and says how to enable it.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT


PYTHON_VARIABLES = {"oldest": "LLAVA_NEXT_AR_OLDEST_PYTHON", "newest": "LLAVA_NEXT_AR_NEWEST_PYTHON"}
OUTPUT_FIELDS = ("logits", "loss", "main_loss", "autoregressive_loss", "autoregressive_frame_losses")
ENABLE = (
    "LLAVA_NEXT_AR_ENV=oldest bash scripts/setup_env.sh, then "
    "LLAVA_NEXT_AR_OLDEST_PYTHON=$PWD/.venv-oldest/bin/python LLAVA_NEXT_AR_NEWEST_PYTHON=$PWD/.venv/bin/python "
    "bash scripts/test.sh tests/test_cross_version.py (bash .ci/run does all of this)"
)

# Run by the python of the environment that saves, in the repo (the package importable from this checkout).
SAVER = r"""
import json, sys
params = json.loads(open(sys.argv[1]).read())
sys.path[:0] = [params["root"], params["root"] + "/tests"]

import torch
import transformers
import llava_next_ar
from helpers import tiny_model, video_batch

assert llava_next_ar.__file__.startswith(params["root"]), llava_next_ar.__file__
model = tiny_model(num_hist=2)
with torch.no_grad():  # the teacher differs from the tower, as after training: loading must keep both
    for parameter in model.model.vision_tower.parameters():
        parameter.add_(0.01)
model.save_pretrained(params["checkpoint"])
batch = video_batch()
with torch.no_grad():
    out = model(**batch)
torch.save(
    {
        "batch": batch,
        "outputs": {name: getattr(out, name) for name in params["fields"]},
        "transformers": transformers.__version__,
        "torch": str(torch.__version__),
    },
    params["reference"],
)
print("SAVED " + json.dumps({"transformers": transformers.__version__, "torch": str(torch.__version__)}))
"""

# Run by the python of the environment that loads, as `python -I -S` from elsewhere, offline: only the dependency
# site-packages on sys.path (no .pth files, so no editable install of this package), the code from the checkpoint.
LOADER = r"""
import importlib.util, json, sys
params = json.loads(open(sys.argv[1]).read())
sys.path.extend(params["site_dirs"])
assert importlib.util.find_spec("llava_next_ar") is None, f"llava_next_ar is importable from {sys.path}"

import torch
import transformers
from transformers import AutoModelForImageTextToText

reference = torch.load(params["reference"], weights_only=True)
if transformers.__version__ == reference["transformers"]:
    sys.exit(f"saved and loaded under the same transformers {transformers.__version__}: nothing crosses a version")
model = AutoModelForImageTextToText.from_pretrained(params["checkpoint"], trust_remote_code=True)
with torch.no_grad():
    out = model(**reference["batch"])
got = {name: getattr(out, name) for name in params["fields"]}
expected = reference["outputs"]
report = {
    "saved_with": {"transformers": reference["transformers"], "torch": reference["torch"]},
    "loaded_with": {"transformers": transformers.__version__, "torch": str(torch.__version__)},
    "model": type(model).__name__,
    "module": type(model).__module__,
    "dtype": str(model.dtype),
    "training": model.training,
    "llava_next_ar_modules": sorted(name for name in sys.modules if name.split(".")[0] == "llava_next_ar"),
    "equal": {name: torch.equal(got[name], expected[name]) for name in expected},
    "max_abs_difference": {
        name: (got[name] - expected[name]).abs().max().item() if got[name].shape == expected[name].shape else None
        for name in expected
    },
    "losses": {name: got[name].item() for name in ("loss", "main_loss", "autoregressive_loss")},
}
print("LOADED " + json.dumps(report))
"""

# What an environment has: its transformers version and the site-packages that hold its dependencies.
DESCRIBE = r"""
import importlib.metadata, importlib.util, json, site
from pathlib import Path
dirs = [str(Path(importlib.util.find_spec(name).origin).parents[1]) for name in ("torch", "transformers")]
print(json.dumps({
    "transformers": importlib.metadata.version("transformers"),
    "site_dirs": list(dict.fromkeys(dirs + site.getsitepackages())),
}))
"""


def environment_python(which: str) -> str:
    variable = PYTHON_VARIABLES[which]
    python = os.environ.get(variable)
    if not python:
        message = f"{variable} is not set: this test needs both environments' pythons. To run it: {ENABLE}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    assert os.access(python, os.X_OK), f"{variable}={python} is not an executable python"
    return python


def clean_env(hf_home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING", "PYTHON"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run(argv: list[str], prefix: str, **kwargs) -> dict:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stderr[-4000:]}"
    line = next(line for line in result.stdout.splitlines() if line.startswith(prefix))
    return json.loads(line.removeprefix(prefix))


def describe(python: str) -> dict:
    result = subprocess.run([python, "-I", "-c", DESCRIBE], capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, f"{python} failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)


@pytest.mark.parametrize("saver, loader", [("oldest", "newest"), ("newest", "oldest")])
def test_checkpoint_saved_under_one_end_loads_under_the_other_with_equal_outputs(saver, loader, tmp_path):
    pythons = {which: environment_python(which) for which in (saver, loader)}
    environments = {which: describe(python) for which, python in pythons.items()}
    assert environments[saver]["transformers"] != environments[loader]["transformers"], environments

    params = {
        "root": str(ROOT),
        "checkpoint": str(tmp_path / "checkpoint"),
        "reference": str(tmp_path / "reference.pt"),
        "fields": list(OUTPUT_FIELDS),
        "site_dirs": environments[loader]["site_dirs"],
    }
    (tmp_path / "params.json").write_text(json.dumps(params))
    saved = run(
        [pythons[saver], "-I", "-c", SAVER, str(tmp_path / "params.json")],
        "SAVED ",
        cwd=ROOT,
        env=clean_env(tmp_path / "hf_home_saver"),
    )
    assert saved["transformers"] == environments[saver]["transformers"]
    config = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    auto_model = config["auto_map"]["AutoModelForImageTextToText"]
    assert auto_model == "modeling_llava_next_ar.LlavaNextARForConditionalGeneration"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = run(
        [pythons[loader], "-I", "-S", "-c", LOADER, str(tmp_path / "params.json")],
        "LOADED ",
        cwd=elsewhere,
        env=clean_env(tmp_path / "hf_home_loader"),
    )
    print(f"{saver} -> {loader}: " + json.dumps(report))

    assert report["saved_with"]["transformers"] == environments[saver]["transformers"]
    assert report["loaded_with"]["transformers"] == environments[loader]["transformers"]
    assert report["llava_next_ar_modules"] == []
    assert report["model"] == "LlavaNextARForConditionalGeneration"
    assert report["module"].startswith("transformers_modules.")
    assert report["dtype"] == "torch.float64" and report["training"] is False
    assert report["losses"]["autoregressive_loss"] > 0
    assert all(report["equal"].values()), report["max_abs_difference"]
