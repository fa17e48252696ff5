from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyexec import config, registry

pytest_plugins = ["anyexec.testing"]

pytest_plugins = ["anyexec.testing"]

BUILTIN = ["serial", "thread", "process", "asyncio"]


@pytest.fixture(autouse=True)
def clean_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts with no ANYEXEC_* variables and no config file in reach."""
    for name in list(os.environ):
        if name.startswith("ANYEXEC_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config.clear_cache()
    yield
    config.clear_cache()


@pytest.fixture(params=BUILTIN)
def builtin(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def refresh_registry() -> Iterator[None]:
    registry.refresh()
    yield
    registry.refresh()
