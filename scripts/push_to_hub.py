# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Push a LLaVA-NeXT-AR checkpoint folder (model, processor, remote code, model card), or its plain LLaVA-NeXT-Video
export (`scripts/export_base.py`), to the Hugging Face Hub.

    python scripts/push_to_hub.py out/final --repo-id my-org/llava-next-ar-7b --dry-run    # look first
    python scripts/push_to_hub.py out/final --repo-id my-org/llava-next-ar-7b --private
    python scripts/push_to_hub.py out/final --repo-id my-org/llava-next-ar-7b --create-pr --commit-message "v2"
    python scripts/push_to_hub.py out/served --repo-id my-org/llava-next-video-7b-ar       # an export, its own repo
    python scripts/push_to_hub.py out/served --repo-id my-org/llava-next-ar-7b --revision served   # or a branch

The folder is validated first. A LLaVA-NeXT-AR checkpoint needs `config.json` with an `auto_map` for `AutoConfig`,
`AutoModel` and `AutoModelForImageTextToText`, every `.py` file an `auto_map` (model or processor) names, and every
file those import relatively. An export (`model_type` `llava_next_video`) must need no remote code: no `auto_map`, no
`.py` file. Both need safetensors weights (all shards of an index) and a `README.md` model card. Pickle files (`*.bin`,
`*.pt`, `*.pth`, `*.pkl`: optimizer/scheduler/RNG state, `training_args.bin`), hidden files, `__pycache__` and
`checkpoint-*` sub-folders are never uploaded. In the card, the placeholder `path/or/repo-id` becomes `--repo-id`.

`--dry-run` prints exactly the files (path in the repo, size in bytes) and the card that would go up, reads no token
and makes no network call. A real run creates the repo if needed (`--private` applies only then), creates the
`--revision` branch if needed, and uploads everything in one commit (or one pull request with `--create-pr`) with
`HfApi.create_commit`, as `upload_folder` does but with the file list fixed up front. The token is read the standard
`huggingface_hub` way (`HF_TOKEN`, else the login saved by `hf auth login`) and is never printed or written.

Exit codes: 0 done, 2 invalid folder or arguments (nothing uploaded), 1 the Hub refused (message printed).
"""

import argparse
import ast
import fnmatch
import json
import sys
from pathlib import Path


REPO_ID_PLACEHOLDER = "path/or/repo-id"
"""Same value as `llava_next_ar.model_card_llava_next_ar.REPO_ID_PLACEHOLDER` (not imported: this needs no torch)."""
MODEL_CARD_NAME = "README.md"
REQUIRED_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForImageTextToText")
NEVER_UPLOADED = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.pyc", "*.ckpt")
"""Pickle-based files (weights go up as safetensors only) and bytecode."""
NEVER_UPLOADED_DIRS = ("__pycache__", "checkpoint-*", "global_step*", "runs")
DEFAULT_COMMIT_MESSAGE = "Upload LLaVA-NeXT-AR checkpoint"
EXPORT_MODEL_TYPE = "llava_next_video"
"""`model_type` of a plain LLaVA-NeXT-Video export (`scripts/export_base.py`), pushed without remote code."""
EXPORT_COMMIT_MESSAGE = "Upload LLaVA-NeXT-Video checkpoint exported from LLaVA-NeXT-AR"
KINDS = {
    EXPORT_MODEL_TYPE: "plain LLaVA-NeXT-Video checkpoint (llava_next_video, no remote code)",
    "llava_next_ar": "LLaVA-NeXT-AR checkpoint (remote code, trust_remote_code=True)",
}


class CheckpointError(Exception):
    """The folder is not a complete checkpoint to push, or the arguments are invalid (exit code 2)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="push_to_hub.py",
        description=__doc__.split("\n\n")[0].strip(),
        epilog="Token: HF_TOKEN or `hf auth login`; never printed. Run with --dry-run first.",
    )
    parser.add_argument(
        "checkpoint",
        help="checkpoint folder (model.save_pretrained + processor.save_pretrained, or scripts/export_base.py output)",
    )
    parser.add_argument("--repo-id", required=True, help="target model repo, e.g. my-org/llava-next-ar-7b")
    parser.add_argument(
        "--private", action="store_true", help="create the repo private (no effect on an existing repo)"
    )
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    parser.add_argument(
        "--create-pr", action="store_true", help="open a pull request (against --revision, else main), not a commit"
    )
    parser.add_argument(
        "--commit-message",
        default=None,
        help=f"commit / pull request title (default: {DEFAULT_COMMIT_MESSAGE!r}, or for an export "
        f"{EXPORT_COMMIT_MESSAGE!r})",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="also leave out files whose path in the repo matches GLOB (repeatable)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the files and model card that would go up; no network, no token"
    )
    return parser.parse_args(argv)


def select_files(folder: Path, exclude: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(path in repo, local path) of every file to upload, sorted; and the paths left out."""
    files, skipped = [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        parts = relative.parts
        name = relative.as_posix()
        hidden = any(part.startswith(".") for part in parts)
        in_skipped_dir = any(fnmatch.fnmatch(part, pattern) for part in parts[:-1] for pattern in NEVER_UPLOADED_DIRS)
        unwanted = any(fnmatch.fnmatch(parts[-1], pattern) for pattern in NEVER_UPLOADED)
        excluded = any(fnmatch.fnmatch(name, pattern) for pattern in exclude)
        if hidden:
            continue
        if in_skipped_dir or unwanted or excluded:
            skipped.append(name)
            continue
        files.append((name, path))
    return files, skipped


def _auto_map_modules(auto_map) -> list[str]:
    """Module names (`modeling_x` of `modeling_x.Class`) an `auto_map` refers to in this repo."""
    values = list(auto_map.values()) if isinstance(auto_map, dict) else []
    flat = [item for value in values for item in (value if isinstance(value, (list, tuple)) else [value])]
    return [item.rsplit(".", 1)[0] for item in flat if isinstance(item, str) and "--" not in item and "." in item]


def _relative_imports(source: str) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                modules.append(node.module.split(".")[0])
            else:
                modules.extend(alias.name for alias in node.names)
    return modules


def _model_card_module():
    """`llava_next_ar/model_card_llava_next_ar.py`, loaded by path (standard library only: no torch needed here)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "llava_next_ar" / "model_card_llava_next_ar.py"
    spec = importlib.util.spec_from_file_location("llava_next_ar_model_card", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate_checkpoint(folder: Path, files: list[tuple[str, Path]]) -> tuple[str, list[str]]:
    """Raise `CheckpointError` listing every problem; return the `model_type` and the remote-code files in use."""
    uploaded = {name for name, _ in files}
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no config.json: not a saved checkpoint (use model.save_pretrained)")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_file} is not valid JSON: {error}")
    problems = []
    export = config.get("model_type") == EXPORT_MODEL_TYPE
    auto_map = config.get("auto_map") or {}
    missing_classes = [name for name in REQUIRED_AUTO_CLASSES if name not in auto_map]
    if missing_classes and not export:
        problems.append(
            f"config.json auto_map lacks {missing_classes} (has {sorted(auto_map)}): save it with "
            "LlavaNextARForConditionalGeneration.save_pretrained so trust_remote_code can load it"
        )

    modules = set()
    for name, path in files:
        if "/" not in name and name.endswith(".json"):
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                problems.append(f"{name} is not valid JSON")
                continue
            if isinstance(data, dict):
                nested = [data] + [value for value in data.values() if isinstance(value, dict)]
                for entry in nested:
                    modules.update(_auto_map_modules(entry.get("auto_map")))
    pending, code_files = sorted(modules), []
    if export:  # served by stock transformers: nothing may ask for trust_remote_code
        remote = sorted({f"{module}.py" for module in modules} | {name for name in uploaded if name.endswith(".py")})
        if remote or auto_map:
            problems.append(
                f"a plain {EXPORT_MODEL_TYPE} checkpoint needs no remote code, but this one has auto_map entries or "
                f"code files ({remote}): export it again with scripts/export_base.py"
            )
        pending = []
    while pending:
        module = pending.pop()
        file_name = f"{module}.py"
        if file_name in code_files:
            continue
        if file_name not in uploaded:
            problems.append(f"{file_name} is named by an auto_map or imported by the remote code but is missing")
            continue
        code_files.append(file_name)
        try:
            pending.extend(_relative_imports((folder / file_name).read_text()))
        except SyntaxError as error:
            problems.append(f"{file_name} does not parse: {error}")

    index_name = "model.safetensors.index.json"
    if "model.safetensors" in uploaded:
        pass
    elif index_name in uploaded:
        try:
            shards = set(json.loads((folder / index_name).read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError, AttributeError):
            shards = None
            problems.append(f"{index_name} has no valid weight_map")
        missing_shards = sorted(shards - uploaded) if shards else []
        if missing_shards:
            problems.append(f"{index_name} names weight shards that are missing: {missing_shards}")
    else:
        problems.append("no weights: expected model.safetensors or model.safetensors.index.json with its shards")

    if MODEL_CARD_NAME not in uploaded and export:
        problems.append("no README.md model card: scripts/export_base.py writes one")
    elif MODEL_CARD_NAME not in uploaded:
        problems.append(
            "no README.md model card: LlavaNextARForConditionalGeneration.save_pretrained writes one, or call "
            "llava_next_ar.model_card_llava_next_ar.write_model_card(folder, model.config)"
        )
    if MODEL_CARD_NAME in uploaded and not export:
        problems.extend(_model_card_module().card_example_problems(folder))
    if problems:
        raise CheckpointError(f"{folder} is not ready to push:\n  - " + "\n  - ".join(problems))
    return config.get("model_type"), sorted(code_files)


def human_size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{num_bytes} B"


def plan(args: argparse.Namespace) -> tuple[list[tuple[str, Path]], list[str], str]:
    """Validate and return (files, skipped, model card text as uploaded); fill in the default commit message."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(args.repo_id)
    except HFValidationError as error:
        raise CheckpointError(f"--repo-id {args.repo_id!r} is not a valid repo id: {error}")
    folder = Path(args.checkpoint).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    files, skipped = select_files(folder, args.exclude)
    model_type, _ = validate_checkpoint(folder, files)
    args.kind = KINDS.get(model_type, f"{model_type} checkpoint")
    if args.commit_message is None:
        args.commit_message = EXPORT_COMMIT_MESSAGE if model_type == EXPORT_MODEL_TYPE else DEFAULT_COMMIT_MESSAGE
    card = (folder / MODEL_CARD_NAME).read_text(encoding="utf-8").replace(REPO_ID_PLACEHOLDER, args.repo_id)
    return files, skipped, card


def describe(args: argparse.Namespace, files: list[tuple[str, Path]], skipped: list[str], card: str) -> str:
    target = f"{args.repo_id} (branch {args.revision or 'main'}"
    target += ", as a pull request)" if args.create_pr else ", as a commit)"
    total = sum(path.stat().st_size for _, path in files)
    width = max(len(str(path.stat().st_size)) for _, path in files)
    lines = [
        f"Push {Path(args.checkpoint)} to model repo {target}",
        f"checkpoint: {args.kind}",
        f"repo visibility if created: {'private' if args.private else 'the account default'}",
        f"commit message: {args.commit_message}",
        f"{len(files)} files, {total} bytes ({human_size(total)}):",
    ]
    for name, path in files:
        size = path.stat().st_size
        lines.append(f"  {size:>{width}}  {name}" + (f"  ({human_size(size)})" if size >= 1000 else ""))
    if skipped:
        lines.append(f"not uploaded ({len(skipped)}): {', '.join(skipped)}")
    lines += [f"model card ({MODEL_CARD_NAME} as uploaded):", "-" * 80, card.rstrip("\n"), "-" * 80]
    return "\n".join(lines)


def push(args: argparse.Namespace, files: list[tuple[str, Path]], card: str) -> str:
    """Upload; returns the commit or pull-request URL."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = get_token()
    if not token:
        raise CheckpointError(
            f"no Hugging Face token: set HF_TOKEN or run `hf auth login` (write access to {args.repo_id} needed)"
        )
    api = HfApi(token=token)
    repo_id = api.create_repo(args.repo_id, private=args.private or None, exist_ok=True).repo_id
    if args.revision:
        api.create_branch(repo_id, branch=args.revision, exist_ok=True)
    operations = [
        CommitOperationAdd(
            path_in_repo=name, path_or_fileobj=card.encode("utf-8") if name == MODEL_CARD_NAME else str(path)
        )
        for name, path in files
    ]
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=args.commit_message,
        revision=args.revision,
        create_pr=args.create_pr,
    )
    return info.pr_url or info.commit_url


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        files, skipped, card = plan(args)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(args, files, skipped, card))
    if args.dry_run:
        print("dry run: nothing uploaded, no token read, no network call made")
        return 0
    try:
        url = push(args, files, card)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the Hub's answer (permissions, conflicts, network); it never holds the token
        print(f"error: the push failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"pushed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
