"""The conformance suite over every installed backend (built-in and backends/).

A few checks fail today because of known bugs being fixed in the core and the backends;
``known_failures.py`` marks each ``xfail`` with its cause, for the backends it affects
only, so the mark can be removed with the fix (``strict=False``: a fixed bug shows as
XPASS).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
from typing import Any

import pytest
from known_failures import mark_known_failures

from anyexec.builtin.process import ProcessBackend, default_start_method
from anyexec.testing import ConformanceSuite, selected_backends
from anyexec.testing.suite import PicklingChecks


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
    def _only_where_process_is_selected(self, request: pytest.FixtureRequest) -> None:
        if "process" not in selected_backends(request.config):
            pytest.skip("a process pool of its own; checked where 'process' is selected")
