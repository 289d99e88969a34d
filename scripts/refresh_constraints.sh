#!/usr/bin/env bash
# Re-resolves a lock in a throwaway venv and rewrites it (scripts/setup_env.sh installs from it with `pip install -c`):
#   bash scripts/refresh_constraints.sh          # constraints/newest.txt: the newest release of every dependency
#   bash scripts/refresh_constraints.sh oldest   # constraints/oldest.txt: the packages in FLOORED at the lower bound
#                                                # pyproject.toml declares for them, everything else resolved by pip
# torch 2.14.1 + torchvision 0.29.1 stay pinned (the pair these machines have on disk). `newest` ignores pyproject's
# upper bounds, so a new transformers minor shows up, and then names every locked version outside the declared range.
# Next: raise that upper bound in pyproject.toml (pip refuses the lock until you do), run `bash .ci/run` (both ends of
# the range, and checkpoints across them), and commit the lock with pyproject.toml when it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-newest}"
FLOORED="transformers huggingface_hub accelerate datasets peft"
case "$WHICH" in
    newest | oldest) ;;
    *) echo "usage: bash scripts/refresh_constraints.sh [newest|oldest]" >&2; exit 2 ;;
esac
LOCK="constraints/$WHICH.txt"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The requirements of llava-next-ar[train,test,deepspeed] from pyproject.toml, adjusted for WHICH (the package itself is not
# installed, so it never appears in the lock).
python3 - "$WHICH" "$FLOORED" > "$TMP/requirements.txt" <<'EOF'
import re, sys, tomllib

which, floored = sys.argv[1], {name.replace("_", "-") for name in sys.argv[2].split()}
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
declared = project["dependencies"] + sum((project["optional-dependencies"][extra] for extra in ("train", "test", "deepspeed")), [])
for requirement in declared:
    requirement, _, marker = requirement.partition(";")
    name, extras, spec = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(\[[^]]*\])?\s*(.*?)\s*", requirement).groups()
    clauses = [clause.strip() for clause in spec.split(",") if clause.strip()]
    if name.lower() in ("torch", "torchvision"):
        continue  # pinned separately
    if which == "newest":
        clauses = [">=" + clause[2:] if clause.startswith("~=") else clause for clause in clauses if clause[0] != "<"]
    elif re.sub(r"[-_.]+", "-", name).lower() in floored:
        lower = [clause[2:].strip() for clause in clauses if clause.startswith(">=")]
        if not lower:
            sys.exit(f"refresh_constraints.sh: pyproject.toml declares no lower bound (>=) for {name}")
        clauses = ["==" + lower[0]]
    print(name + (extras or "") + ",".join(clauses) + (";" + marker if marker else ""))
EOF
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$TMP/torch.txt"

echo "refresh_constraints.sh: resolving $WHICH in a throwaway venv:" >&2
sed 's/^/  /' "$TMP/requirements.txt" >&2
python3 -m venv "$TMP/venv"
PY="$TMP/venv/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check -r "$TMP/torch.txt"
"$PY" -m pip install --quiet --disable-pip-version-check -c "$TMP/torch.txt" -r "$TMP/requirements.txt"

mkdir -p constraints
{
    echo "# Every dependency of llava-next-ar[train,test,deepspeed] for LLAVA_NEXT_AR_ENV=$WHICH, pinned. scripts/setup_env.sh installs with"
    echo "# \`pip install -c <this file>\`. Written by \`bash scripts/refresh_constraints.sh $WHICH\`"
    echo "# on $(date -u +%F) with Python $("$PY" -c 'import platform; print(platform.python_version(), platform.machine())')"
    echo "# from the requirements (torch and torchvision pinned by hand):"
    sed 's/^/#   /' "$TMP/requirements.txt"
    "$PY" -m pip freeze --disable-pip-version-check 2>/dev/null
} > "$LOCK"
echo "refresh_constraints.sh: wrote $LOCK ($(grep -vc '^#' "$LOCK") pins)" >&2

# Which locked versions does pyproject.toml's range exclude?
"$PY" - "$LOCK" <<'EOF'
import re, sys, tomllib
from packaging.requirements import Requirement

lock = {}
for line in open(sys.argv[1]):
    if line.strip() and not line.startswith("#"):
        name, _, version = line.strip().partition("==")
        lock[re.sub(r"[-_.]+", "-", name).lower()] = version
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
outside = []
for text in project["dependencies"] + [r for extra in ("train", "test", "deepspeed") for r in project["optional-dependencies"][extra]]:
    requirement = Requirement(text)
    version = lock.get(re.sub(r"[-_.]+", "-", requirement.name).lower())
    if version is not None and not requirement.specifier.contains(version, prereleases=True):
        outside.append(f"  {requirement.name}=={version} is outside pyproject.toml's {text!r}")
if outside:
    print("refresh_constraints.sh: the lock leaves the declared range:", *outside, sep="\n", file=sys.stderr)
    print("Raise the bound in pyproject.toml, then run `bash .ci/run`; commit both if it passes.", file=sys.stderr)
else:
    print("refresh_constraints.sh: every locked version is inside pyproject.toml's range. Run `bash .ci/run`.",
          file=sys.stderr)
EOF
