"""Conformance checks that fail today because of known bugs in the core and the backends.

Each is marked ``xfail`` with its cause, for the backends it affects only (``"*"``: every
backend, the bug is in the core), so the mark goes away with the fix: ``strict=False``
shows a fixed bug as XPASS. Used by ``test_conformance.py``, the plugin written from the
docs, and ``test_conformance_can_fail.py``.
"""

from __future__ import annotations

import sys

import pytest

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
        ("process", "loky"),
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


def known_to_fail(backend: str) -> list[str]:
    """Checks failing on ``backend`` whatever their parameters, for ``pytest -k``."""
    return [
        check
        for check, param, backends, _ in KNOWN_FAILURES
        if param is None and (backend in backends or "*" in backends)
    ]
