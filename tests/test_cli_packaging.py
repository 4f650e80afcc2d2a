"""What a new user installs: the extras, the LICENSE and the dependency floors
in pyproject.toml."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest

from tinynet import backends

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.match(r"[\w.-]+", requirement)[0]


def test_license_file_matches_the_metadata(project):
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the tinynet authors" in text


def test_strict_extra_is_array_api_strict_alone(project):
    assert list(map(_name, project["optional-dependencies"]["strict"])) == ["array-api-strict"]
    message = str(backends.missing_package("strict", "array-api-strict"))
    assert "pip install 'tinynet[strict]'" in message


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_safetensors_is_only_a_test_dependency(project):
    # tinynet reads and writes the format itself (tinynet/checkpoint.py)
    assert "safetensors" not in map(_name, project["dependencies"])
    assert "safetensors" in map(_name, project["optional-dependencies"]["dev"])
    for package in ("tinynet", "backends"):
        for path in (ROOT / package).rglob("*.py"):
            assert "safetensors" not in _imports(path), path


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r"\d+(\.\d+)*", version)[0].split("."))


def test_version_floors_hold_for_what_is_installed(project):
    """Every requirement states a floor, and what the tests run with meets
    it.  The floors are the versions the suite was last run with (raised
    then, not tested separately); a newer release in CI does not fail this."""
    extras = project["optional-dependencies"]
    for_users = list(project["dependencies"])
    for extra, packages in extras.items():
        for_users += packages if extra != "dev" else []
    checked = 0
    for requirement in for_users + extras["dev"]:
        floor = re.search(r">=\s*([\w.]+)", requirement)
        assert floor, f"{requirement}: state the tested version as a floor"
        try:
            installed = metadata.version(_name(requirement))
        except metadata.PackageNotFoundError:
            continue  # e.g. cupy without a GPU: nothing is tested
        assert _release(installed) >= _release(floor[1]), f"{requirement}: found {installed}"
        checked += requirement in for_users
    assert checked >= 6
