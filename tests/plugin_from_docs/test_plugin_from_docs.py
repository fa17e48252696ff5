"""The plugin written from docs/writing-a-backend.md alone passes the conformance suite,
both passed as an instance and found through a (fake) entry point."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest
from known_failures import mark_known_failures
from pool_backend import PoolBackend

import anyexec
from anyexec import registry
from anyexec.testing import ConformanceSuite, selected_backends, tasks


@pytest.fixture(autouse=True)
def _once_per_run(request: pytest.FixtureRequest) -> None:
    """This plugin is a backend of its own: check it once, in the session that selects
    'thread', not in every cell of the backend matrix."""
    if "thread" not in selected_backends(request.config):
        pytest.skip("a backend of its own; checked where 'thread' is selected")


class TestPluginFromDocs(ConformanceSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_backend(cls) -> PoolBackend:
        return PoolBackend()

    @pytest.fixture(autouse=True)
    def _known_failures(self, request: pytest.FixtureRequest) -> None:
        mark_known_failures(request, "pool")  # the core's bugs reach every backend


def test_registered_through_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="pool", value="pool_backend:PoolBackend", group=registry.GROUP)
    real = registry._entry_points

    def with_pool() -> list[Any]:
        return [*real(), ep]

    monkeypatch.setattr(registry, "_entry_points", with_pool)
    registry.refresh()
    try:
        assert "pool" in [b.name for b in anyexec.backends() if b.available]
        with anyexec.Executor("pool", workers=2, label="x") as ex:
            assert list(ex.map(tasks.square, range(10))) == [x * x for x in range(10)]
    finally:
        monkeypatch.undo()
        registry.refresh()
