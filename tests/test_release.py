"""The three distributions are released as one: one version (the file VERSION), backend
extras pinned to it exactly, and install hints that work. ``nox -s release`` builds and
installs the wheels; these checks read the sources, so they run everywhere, fast."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from anyexec import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BACKEND_DISTS = {"loky": "anyexec-loky", "dask": "anyexec-dask"}

pytestmark = pytest.mark.skipif(
    not (ROOT / "VERSION").is_file(), reason="needs the source tree (VERSION), not an sdist"
)


def _pyproject(folder: Path) -> dict[str, Any]:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def _version() -> str:
    return (ROOT / "VERSION").read_text().strip()


def _pins(requirements: list[str], dist: str) -> list[str]:
    """The versions ``dist`` is pinned to with ``==`` in these requirement strings; a
    requirement on ``dist`` that is not an exact pin shows up as ``"unpinned: ..."``."""
    out = []
    for req in requirements:
        name = re.split(r"[\s\[=<>!~;]", req, maxsplit=1)[0]
        if name.lower().replace("_", "-") != dist:
            continue
        match = re.fullmatch(rf"{re.escape(name)}\s*==\s*([^\s;,]+)", req.strip())
        out.append(match.group(1) if match else f"unpinned: {req}")
    return out


def test_version_file_is_one_plain_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", _version()), _version()


@pytest.mark.parametrize("folder", [".", *[f"backends/{d}" for d in BACKEND_DISTS.values()]])
def test_every_distribution_reads_its_version_from_the_one_file(folder: str) -> None:
    here = ROOT / folder
    data = _pyproject(here)
    assert "version" not in data["project"], "a fixed version would drift from VERSION"
    assert data["project"]["dynamic"] == ["version"]
    assert data["tool"]["hatch"]["version"]["path"] == "VERSION"
    # In a backend folder VERSION is a link to the top one; its sdist holds a copy.
    assert (here / "VERSION").read_text().strip() == _version()
    if folder != ".":
        assert (here / "VERSION").resolve() == (ROOT / "VERSION").resolve()
        sdist = data["tool"]["hatch"]["build"]["targets"]["sdist"]
        assert sdist["force-include"] == {"../../VERSION": "VERSION"}


def test_extras_pin_each_backend_to_the_core_version() -> None:
    extras = _pyproject(ROOT)["project"]["optional-dependencies"]
    for name, dist in BACKEND_DISTS.items():
        assert _pins(extras[name], dist) == [_version()], extras[name]
        assert _pins(extras["all"], dist) == [_version()], extras["all"]
    for name, reqs in extras.items():  # no other extra pulls a backend in unpinned
        for dist in BACKEND_DISTS.values():
            assert all(not pin.startswith("unpinned") for pin in _pins(reqs, dist)), (name, reqs)


@pytest.mark.parametrize("dist", list(BACKEND_DISTS.values()))
def test_backends_pin_the_core_to_their_own_version(dist: str) -> None:
    deps = _pyproject(ROOT / "backends" / dist)["project"]["dependencies"]
    assert _pins(deps, "anyexec") == [_version()], deps


@pytest.mark.parametrize("dist", list(BACKEND_DISTS.values()))
def test_backends_ship_the_same_license(dist: str) -> None:
    assert (ROOT / "backends" / dist / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()


def test_installed_versions_match_the_version_file() -> None:
    import anyexec

    assert anyexec.__version__ == metadata.version("anyexec") == _version()
    for dist in BACKEND_DISTS.values():
        try:
            assert metadata.version(dist) == _version(), dist
        except metadata.PackageNotFoundError:
            continue  # a nox cell installs the core and one backend only


def test_changelog_has_the_current_version() -> None:
    assert f"## [{_version()}]" in (ROOT / "CHANGELOG.md").read_text()


@pytest.mark.parametrize(("name", "dist"), list(BACKEND_DISTS.items()))
def test_install_hints_work_from_the_index_and_from_a_clone(name: str, dist: str) -> None:
    hint = registry.KNOWN[name]
    assert f"pip install 'anyexec[{name}]'" in hint
    assert f"pip install -e backends/{dist}" in hint
    assert (ROOT / "backends" / dist / "pyproject.toml").is_file()
