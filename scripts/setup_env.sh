#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/main_job.sh (or run on its own to only install). Installs exactly the set CI
# tested, pinned by a lock in constraints/ (`pip install -c`), into a venv; sets $PY to its python.
#   LLAVA_NEXT_AR_ENV=newest (default)  constraints/newest.txt  .venv         the newest tested releases
#   LLAVA_NEXT_AR_ENV=oldest            constraints/oldest.txt  .venv-oldest  the lower bounds pyproject.toml declares
# LLAVA_NEXT_AR_VENV overrides the venv folder. torch 2.14.1 + torchvision 0.29.1 go in first (from the local wheel
# cache on these machines; an unpinned torch would pull a multi-GB CUDA build), then this package (editable) with its
# training, test and deepspeed extras. Afterwards the venv is compared with the lock: any difference is an error when CI=true and a
# warning otherwise (e.g. extra packages in a reused venv). Locks are rewritten by scripts/refresh_constraints.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LLAVA_NEXT_AR_ENV="${LLAVA_NEXT_AR_ENV:-newest}"
case "$LLAVA_NEXT_AR_ENV" in
    newest) VENV="${LLAVA_NEXT_AR_VENV:-.venv}" ;;
    oldest) VENV="${LLAVA_NEXT_AR_VENV:-.venv-oldest}" ;;
    *) echo "setup_env.sh: LLAVA_NEXT_AR_ENV must be 'newest' or 'oldest', not '$LLAVA_NEXT_AR_ENV'" >&2; exit 2 ;;
esac
LOCK="constraints/$LLAVA_NEXT_AR_ENV.txt"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
echo "setup_env.sh: $LLAVA_NEXT_AR_ENV environment in $VENV, pinned by $LOCK" >&2
"$PY" -m pip install --quiet --disable-pip-version-check -c "$LOCK" "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install --quiet --disable-pip-version-check -c "$LOCK" -e ".[train,test,deepspeed]"
"$PY" -m pip freeze --exclude-editable --disable-pip-version-check 2>/dev/null | "$PY" -c '
import os, re, sys

def pins(lines):
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found

lock_path = sys.argv[1]
locked, installed = pins(open(lock_path)), pins(sys.stdin)
problems = [f"{name}=={installed[name]} is installed but not pinned" for name in sorted(installed.keys() - locked.keys())]
problems += [f"{name}=={locked[name]} is pinned but not installed" for name in sorted(locked.keys() - installed.keys())]
problems += [
    f"{name}=={installed[name]} is installed, the lock pins {locked[name]}"
    for name in sorted(locked.keys() & installed.keys()) if locked[name] != installed[name]
]
if problems:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    level = "ERROR" if ci else "warning"
    print(f"setup_env.sh: {level}: the venv differs from {lock_path}:", file=sys.stderr)
    print("\n".join("  " + problem for problem in problems), file=sys.stderr)
    print("  (a fresh venv matches the lock unless pyproject.toml changed: run bash scripts/refresh_constraints.sh)",
          file=sys.stderr)
    sys.exit(1 if ci else 0)
' "$LOCK"
