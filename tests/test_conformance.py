"""The conformance suite over every installed backend (built-in and backends/).

A few checks fail today because of known bugs being fixed in the core and the backends;
each is marked ``xfail`` below with its cause, for the backends it affects only, so the
mark can be removed with the fix (``strict=False``: a fixed bug shows as XPASS).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import sys
from typing import Any

import pytest

from anyexec.builtin.process import ProcessBackend, default_start_method
from anyexec.testing import ConformanceSuite, selected_backends
from anyexec.testing.suite import PicklingChecks

#: (check, a parameter it must have or None, affected backends ("*": all), the cause).
KNOWN_FAILURES: list[tuple[str, str | None, tuple[str, ...], str]] = [
    (
        "test_plain_function_task_timeout",
        "amap",
        ("thread", "asyncio"),
        "amap ignores task_timeout where calls are abandoned (thread, asyncio); map honours it",
    ),
    (
        "test_running_call_cannot_be_cancelled",
        None,
        ("asyncio", "dask"),
        "futures of running calls say running() is False, and cancel() returns True",
    ),
    (
        "test_unpicklable_raises",
        "result",
        ("process", "loky", "dask"),
        "an unpicklable result is reported as 'could not send the function or an argument'",
    ),
    (
        "test_unpicklable_raises",
        "function",
        ("dask",),
        "dask raises TypeError('Could not serialize object ...'), whose message does not "
        "mention pickling (the pickling error is its __cause__): not seen as UnpicklableError",
    ),
    (
        "test_unpicklable_raises",
        "argument",
        ("dask",),
        "dask raises TypeError('Could not serialize object ...'), whose message does not "
        "mention pickling (the pickling error is its __cause__): not seen as UnpicklableError",
    ),
    (
        "test_map_with_no_iterable_is_empty",
        None,
        ("*",),
        "ex.map(fn) with no iterable raises TypeError instead of yielding nothing",
    ),
    (
        "test_unbounded_map_submits_everything",
        None,
        ("*",),
        "map(buffersize=None) does not submit everything at once: a map never iterated runs "
        "only part of its input",
    ),
    (
        "test_finished_future_releases_its_call",
        None,
        ("*",),
        "a finished future keeps its function and arguments alive",
    ),
    (
        "test_map_iterator_releases_results",
        None,
        ("*",),
        "the map iterator keeps the result it yielded (and the rest of its chunk) alive",
    ),
    (
        "test_cancel_futures_spares_running_calls",
        None,
        ("asyncio", "dask"),
        "shutdown(cancel_futures=True) marks running calls as cancelled",
    ),
    (
        "test_shutdown_without_wait_keeps_submitted_calls",
        None,
        ("dask",),
        "shutdown(wait=False) cancels calls already submitted",
    ),
]

if sys.version_info < (3, 11):
    KNOWN_FAILURES.append(
        (
            "test_map_timeout",
            None,
            ("*",),
            "on Python 3.10 map(timeout=) raises concurrent.futures.TimeoutError, which is "
            "not the builtin TimeoutError there",
        )
    )


def mark_known_failures(request: pytest.FixtureRequest, backend: str) -> None:
    node = request.node
    params = set(getattr(getattr(node, "callspec", None), "params", {}).values())
    for check, param, backends, cause in KNOWN_FAILURES:
        if (
            node.originalname == check
            and (backend in backends or "*" in backends)
            and (param is None or param in params)
        ):
            node.add_marker(pytest.mark.xfail(reason=f"{backend}: {cause}", strict=False))


class TestConformance(ConformanceSuite):
    @pytest.fixture(autouse=True)
    def _known_failures(self, request: pytest.FixtureRequest, anyexec_backend: Any) -> None:
        mark_known_failures(request, str(anyexec_backend))


class _PicklesInSubmit(cf.ProcessPoolExecutor):
    """A process pool that pickles each call in ``submit`` and raises from there, the
    other place the contract allows a pickling error to go."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        pickle.dumps((fn, args, kwargs))  # raises the pickler's own TypeError/PicklingError
        return super().submit(fn, *args, **kwargs)


class PicklesInSubmit(ProcessBackend):
    """A correct backend whose pickling errors come from ``submit`` itself."""

    name = "pickles_in_submit"
    options = {}

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _PicklesInSubmit(
            workers, mp_context=multiprocessing.get_context(default_start_method())
        )


class TestPicklingErrorRaisedFromSubmit(PicklingChecks):
    """Both places for a pickling error are shaped alike, through every route."""

    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_backend(cls) -> PicklesInSubmit:
        return PicklesInSubmit()

    @pytest.fixture(autouse=True)
    def _known_failures(self, request: pytest.FixtureRequest) -> None:
        if "process" not in selected_backends(request.config):
            pytest.skip("a process pool of its own; checked where 'process' is selected")
        params = request.node.callspec.params
        if params.get("what") != "result" and params.get("via") in ("map", "amap"):
            request.applymarker(
                pytest.mark.xfail(
                    reason="map() does not shape a pickling error raised by the backend's "
                    "submit; Executor.submit does",
                    strict=False,
                )
            )
        elif params.get("what") == "result":
            request.applymarker(
                pytest.mark.xfail(
                    reason="an unpicklable result is reported as 'could not send the "
                    "function or an argument'",
                    strict=False,
                )
            )
