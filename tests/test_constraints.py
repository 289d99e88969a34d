"""The locks in constraints/ agree with pyproject.toml: each pins every declared dependency inside the declared range,
the oldest one at the lower bounds scripts/refresh_constraints.sh floors, both the torch pair setup_env.sh installs,
and neither pins this package itself."""

import re
import tomllib
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from helpers import ROOT


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock(which: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints" / f"{which}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", line), f"{which}.txt: not a pin: {line!r}"
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + extras["train"] + extras["test"] + extras["deepspeed"]
    return [Requirement(text) for text in requirements]


@pytest.mark.parametrize("which", ["newest", "oldest"])
def test_lock_pins_every_declared_dependency_inside_the_declared_range(which):
    pins = lock(which)
    assert "llava-next-ar" not in pins
    for requirement in declared():
        version = pins.get(canonical(requirement.name))
        assert version is not None, f"{which}.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(version, prereleases=True), f"{which}.txt: {requirement.name}=={version}"
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    for name in ("torch", "torchvision"):
        assert f'"{name}=={pins[name]}"' in setup, f"setup_env.sh installs another {name} than {which}.txt pins"


def test_oldest_lock_pins_the_declared_lower_bounds():
    floored = re.search(r'^FLOORED="([^"]*)"', (ROOT / "scripts" / "refresh_constraints.sh").read_text(), re.M)
    floored = {canonical(name) for name in floored.group(1).split()}
    assert "transformers" in floored
    oldest, newest = lock("oldest"), lock("newest")
    for requirement in declared():
        if canonical(requirement.name) in floored:
            (lower,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            assert Version(oldest[canonical(requirement.name)]) == Version(lower), requirement
    assert Version(oldest["transformers"]) < Version(newest["transformers"])
