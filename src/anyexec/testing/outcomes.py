"""Conformance checks: every input gets one outcome at its index, per-worker set-up, and
keyword items -- rules the core enforces on top of any backend's executor, checked here so
a backend cannot break them (for example by treating a task's ``SystemExit`` as its own, or
by losing a chunk to one unpicklable result).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import anyexec
from anyexec import Executor
from anyexec.contract import Backend
from anyexec.testing import outcome_tasks as ot
from anyexec.testing.suite import WAIT, Fixtures

__all__ = ["OutcomeChecks"]


class OutcomeChecks(Fixtures):
    """One outcome per input, at its index; initializers; starmap's keyword items;
    what a library declares with ``require``/``prefer``."""

    def test_base_exception_is_the_tasks_outcome(self, executor: Executor) -> None:
        out = list(
            executor.map(ot.leave_on, range(8), chunksize=4, return_exceptions=True, timeout=WAIT)
        )
        assert out[:3] == [0, 1, 2] and out[4:] == [4, 5, 6, 7], (
            f"{executor.backend}: a task's SystemExit cost other tasks their outcomes: {out}"
        )
        assert isinstance(out[3], anyexec.TaskAborted), (
            f"{executor.backend}: a task's SystemExit should be its TaskAborted outcome, "
            f"got {out[3]!r}"
        )
        assert list(executor.map(ot.double, range(4), timeout=WAIT)) == [0, 2, 4, 6], (
            f"{executor.backend}: the executor did not survive a task's SystemExit"
        )

    def test_unpicklable_result_fails_only_its_item(self, executor: Executor) -> None:
        if executor.settings.backend.crosses not in ("processes", "cluster"):
            pytest.skip("results are not pickled on this backend")
        out = list(
            executor.map(ot.lock_on, range(6), chunksize=6, return_exceptions=True, timeout=WAIT)
        )
        assert out[:2] == [0, 1] and out[3:] == [3, 4, 5], (
            f"{executor.backend}: one unpicklable result cost its neighbours: {out}"
        )
        assert isinstance(out[2], anyexec.UnpicklableError) and "result" in str(out[2])

    @pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
    def test_results_before_a_failing_input_arrive(self, executor: Executor, ordered: bool) -> None:
        got: list[int] = []
        with pytest.raises(ValueError, match="broke at 50"):
            for value in executor.map(
                ot.double, ot.breaks_at(100, 50), chunksize=7, ordered=ordered, timeout=WAIT
            ):
                got.append(value)
        assert sorted(got) == [2 * i for i in range(50)], (
            f"{executor.backend}: {len(got)} of the 50 results read before the input failed arrived"
        )

    def test_initializer_reaches_every_task(
        self, anyexec_backend: str | Backend, anyexec_options: dict[str, Any], anyexec_workers: int
    ) -> None:
        with Executor(
            anyexec_backend,
            anyexec_workers,
            initializer=ot.remember,
            initargs=("ready",),
            **anyexec_options,
        ) as ex:
            out = list(ex.map(ot.recall, range(24), chunksize=1, timeout=WAIT))
            assert out == [("ready", i) for i in range(24)], (
                f"{ex.backend}: tasks did not see what the initializer set: {out[:4]}..."
            )
            assert ex.submit(ot.recall, 1).result(timeout=WAIT) == ("ready", 1)

    def test_failing_initializer_is_an_error_not_a_hang(
        self, anyexec_backend: str | Backend, anyexec_options: dict[str, Any], anyexec_workers: int
    ) -> None:
        with Executor(
            anyexec_backend, anyexec_workers, initializer=ot.refuse, **anyexec_options
        ) as ex:
            with pytest.raises(anyexec.InitializerError, match="refuse"):
                list(ex.map(ot.double, range(8), timeout=WAIT))
            with pytest.raises(anyexec.InitializerError):
                ex.submit(ot.double, 1).result(timeout=WAIT)

    def test_starmap_keyword_items(self, executor: Executor) -> None:
        items = [(1,), anyexec.Args(2, scale=10), anyexec.Args(3, offset=1)]
        assert list(executor.starmap(ot.scaled, items, timeout=WAIT)) == [1, 20, 4]
        unordered = executor.starmap(
            ot.scaled, [anyexec.Args(i, scale=3) for i in range(30)], ordered=False, timeout=WAIT
        )
        assert sorted(unordered) == [3 * i for i in range(30)]
        endless = executor.starmap(
            ot.scaled, (anyexec.Args(i, offset=1) for i in itertools.count())
        )
        try:
            assert list(itertools.islice(endless, 40)) == list(range(1, 41))
        finally:
            endless.close()  # type: ignore[attr-defined]

    def test_require_sharedmem_and_prefer(self, executor: Executor) -> None:
        backend = executor.settings.backend
        with anyexec.using(backend, executor.workers) as chosen:
            assert chosen.settings.backend is backend
            shared = anyexec.current(require="sharedmem")
            hinted = anyexec.current(prefer="processes")
            got = list(anyexec.map(ot.double, range(6), require="sharedmem", timeout=WAIT))
        assert got == [0, 2, 4, 6, 8, 10]
        if backend.crosses in ("processes", "cluster"):
            assert shared.backend == "thread" and shared.workers == executor.workers, (
                f"{executor.backend}: require='sharedmem' should run on thread, ran on "
                f"{shared.backend}"
            )
        else:
            assert shared.settings.backend is backend, (
                f"{executor.backend}: require='sharedmem' changed a backend that shares memory"
            )
        assert hinted.settings.backend is backend, (
            f"{executor.backend}: prefer= is a hint and must not override using()"
        )
