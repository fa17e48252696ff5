from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anyexec import config, registry

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


def assert_cycles_leak_nothing(cycle: Callable[[], object], times: int) -> None:
    """Run ``cycle`` once (interpreter-wide helpers such as the forkserver start then), then
    ``times`` times: the counts of threads, file descriptors and child processes must come
    back to where they were (within 30 s, for processes still exiting)."""
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()

    def counts() -> tuple[int, int, int]:
        return threading.active_count(), me.num_fds(), len(me.children(recursive=True))

    cycle()
    time.sleep(0.5)
    before = counts()
    for _ in range(times):
        cycle()
    deadline = time.monotonic() + 30
    after = counts()
    while time.monotonic() < deadline and not all(a <= b for a, b in zip(after, before)):
        time.sleep(0.2)
        after = counts()
    assert all(a <= b for a, b in zip(after, before)), (
        f"threads, fds, children after {times} cycles: {before} -> {after}"
    )


@pytest.fixture
def leak_check() -> Callable[[Callable[[], object], int], None]:
    return assert_cycles_leak_nothing
