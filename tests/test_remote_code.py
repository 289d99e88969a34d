"""Remote-code hygiene: the files a checkpoint carries import only what every user of `trust_remote_code` has.

A checkpoint carries the files of the classes it registers for the auto classes (configuration, modeling,
processing, video processing) and, recursively, the files they import relatively; transformers' loader refuses a file
whose `import` lines name a package that is not installed. Each of those files may therefore import the standard
library, torch, transformers and its siblings (one level up, files that exist), nothing that unpickles or opens a
socket, and call no `eval`/`exec`/`compile`/`__import__` or `torch.load`.
"""

import ast
import sys
from pathlib import Path

import pytest
from transformers.dynamic_module_utils import get_imports, get_relative_import_files

from helpers import ROOT


PACKAGE = ROOT / "llava_next_ar"
REMOTE_CODE_ROOTS = ("configuration", "modeling", "processing", "video_processing")
"""The files of the classes registered for the auto classes (`<root>_llava_next_ar.py`, where present)."""
ALLOWED_PACKAGES = {"torch", "transformers", "numpy"}  # numpy: a requirement of transformers itself
FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}
NETWORK_MODULES = {"socket", "ssl", "urllib", "http", "ftplib", "smtplib", "requests", "httpx", "aiohttp"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def remote_code_files() -> list[Path]:
    """The registered classes' files and every file they import relatively (what `save_pretrained` copies)."""
    roots = [PACKAGE / f"{root}_llava_next_ar.py" for root in REMOTE_CODE_ROOTS]
    files = {path for path in roots if path.is_file()}
    for path in list(files):
        files.update(Path(name) for name in get_relative_import_files(str(path)))
    return sorted(files)


def remote_code_problems(path: Path) -> list[str]:
    """What in the file at `path` a remote-code file must not do, one line per finding (empty: clean)."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):
            siblings = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
            if node.level != 1:
                problems.append(f"line {node.lineno}: relative import above the package (level {node.level})")
            problems += [
                f"line {node.lineno}: relative import of {name!r}, not a file of the package"
                for name in siblings
                if not (path.parent / f"{name}.py").is_file()
            ]
            continue
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"line {node.lineno}: call to {node.func.id}()")
            continue
        elif isinstance(node, ast.Attribute) and node.attr == "load" and getattr(node.value, "id", None) == "torch":
            problems.append(f"line {node.lineno}: torch.load (pickle)")
            continue
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN_MODULES or top in NETWORK_MODULES:
                problems.append(f"line {node.lineno}: imports {name}")
            elif top not in sys.stdlib_module_names and top not in ALLOWED_PACKAGES:
                problems.append(f"line {node.lineno}: imports {name} (not stdlib, torch, transformers or numpy)")
    # What transformers' loader itself checks: the `import` lines outside try/except, anywhere in the file.
    loader_imports = {module.split(".")[0] for module in get_imports(str(path))}
    problems += [
        f"the remote-code loader requires {name!r} (not stdlib, torch, transformers or numpy)"
        for name in sorted(loader_imports - ALLOWED_PACKAGES - set(sys.stdlib_module_names))
    ]
    return problems


def test_the_remote_code_set_is_the_registered_files_and_their_relative_imports():
    names = {path.name for path in remote_code_files()}
    assert {"configuration_llava_next_ar.py", "modeling_llava_next_ar.py", "processing_llava_next_ar.py"} <= names
    assert "training_llava_next_ar.py" not in names and "tiny_models.py" not in names  # package-only helpers


@pytest.mark.parametrize("path", remote_code_files(), ids=lambda path: path.name)
def test_remote_code_imports_only_stdlib_torch_transformers_and_itself(path):
    assert remote_code_problems(path) == []


def test_remote_code_check_catches_violations(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport scipy\nfrom urllib import request\nfrom .missing import x\nfrom ..up import y\n"
        "import torch\nexec('1')\neval('1')\ntorch.load('w.pt')\nimport os, json\nfrom transformers import AutoModel\n"
    )
    problems = remote_code_problems(bad)
    joined = "\n".join(problems)
    for expected in ("pickle", "scipy", "urllib", "'missing'", "level 2", "exec()", "eval()", "torch.load"):
        assert expected in joined
    assert "the remote-code loader requires 'scipy'" in joined
    assert len(problems) == 10
