"""The conformance suite fails every broken backend, readably and in bounded time.

Each backend in ``tests/broken_backends`` has one defect. The suite runs against it in a
fresh pytest process (``pytester``), through the plugin exactly as a third party runs it,
with a short ``--anyexec-deadline`` so that hangs fail fast; the check that must catch the
defect has to fail with a message naming the defect.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import anyexec.testing

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

SUITE_ON_BROKEN = """
import os

import pytest
from broken_backends import BROKEN

from anyexec.testing import ConformanceSuite


class TestBroken(ConformanceSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_backend(cls):
        return BROKEN[os.environ["BROKEN_BACKEND"]]()
"""

#: (defect, checks that must fail (-k), what the failure must say)
CASES = [
    ("drop", "test_map_ordered", "*backend *drop* returned * outcomes for a chunk of *"),
    ("reorder", "test_map_ordered", "map results differ from serial: first difference at index"),
    ("twice", "test_each_task_runs_once", "ran tasks more than once (task: runs)"),
    ("swallow", "test_exception_keeps_its_type", "swallowed a task's exception"),
    ("retype", "test_exception_keeps_its_type", "changed the task's exception type*RuntimeError"),
    ("none_fails", "test_none_results", "submit of a function returning None failed"),
    (
        "never_on_error",
        "test_exception_keeps_its_type and not amap and not asubmit",
        "*its future never completes*did not finish within*",
    ),
    ("leak_process", "test_no_leftovers_after_shutdown", "worker processes left after shutdown"),
    ("leak_thread", "test_no_leftovers_after_shutdown", "threads grew across open/close cycles"),
    ("early_shutdown", "test_shutdown_waits", "shutdown(wait=True) returned early"),
    ("hang_shutdown", "test_shutdown_waits", "shutdown(wait=True) did not finish within*it hangs"),
    ("ignore_cancel_futures", "test_cancel_futures", "ignores cancel_futures"),
    ("uncancellable", "test_queued_call_can_be_cancelled", "futures cannot be cancelled"),
    (
        "fake_cancel",
        "test_queued_call_can_be_cancelled",
        "was cancelled (cancel()) while queued, yet it ran",
    ),
    ("inline", "test_submit_returns_before", "runs tasks inline in submit()"),
    (
        "one_worker",
        "test_calls_run_at_the_same_time",
        "did not run at the same time*on one worker only",
    ),
    ("blocking_batch", "test_map_timeout", "ignores timeout="),
    (
        "pebble_like",
        "test_dead_worker_is_worker_lost",
        "surfaced through * as broken_backends.ProcessExpired*not as concurrent.futures.BrokenExecutor",
    ),
    (
        "mpire_like",
        "test_unpicklable_raises and (function-map or argument-submit or result-asubmit)",
        "hangs on pickling errors*did not finish within",
    ),
    (
        "forgets_dead_workers",
        "test_dead_worker_is_worker_lost and not amap and not asubmit",
        "task that kills its worker did not finish within",
    ),
    (
        "kill_own_error",
        "test_kill_running_fails_what_it_stops",
        "*a task stopped by kill_running() gave *ShutdownExecutorError*not WorkerLost",
    ),
]


@pytest.fixture(autouse=True)
def _once_per_run(request: pytest.FixtureRequest) -> None:
    """These check the suite itself, not a backend: run them in the one session that
    selects 'thread' (every nox cell of the matrix would otherwise repeat them)."""
    if "thread" not in anyexec.testing.selected_backends(request.config):
        pytest.skip("checks the conformance suite itself; runs where 'thread' is selected")


@pytest.fixture
def run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run the suite, in a subprocess, on the broken backend ``name``."""
    pytester.makepyfile(test_broken=SUITE_ON_BROKEN)
    path = [str(TESTS), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))

    def run(name: str, *args: str) -> pytest.RunResult:
        monkeypatch.setenv("BROKEN_BACKEND", name)
        return pytester.runpytest_subprocess(
            "-p",
            "anyexec.testing",
            "-p",
            "no:cacheprovider",
            "--anyexec-deadline=8",
            "test_broken.py",
            *args,
            timeout=300,
        )

    return run


def test_every_defect_kind_is_covered() -> None:
    from broken_backends import BROKEN  # type: ignore[import-not-found]

    assert sorted(BROKEN) == sorted(name for name, _, _ in CASES)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "check", "message"), CASES, ids=[c[0] for c in CASES])
def test_broken_backend_fails_readably(run_suite, backend: str, check: str, message: str) -> None:  # type: ignore[no-untyped-def]
    result = run_suite(backend, "-k", check)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    result.stdout.fnmatch_lines([f"*{message}*"])


@pytest.mark.slow
def test_process_leak_is_caught_without_psutil(
    run_suite, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    hidden = pytester.mkdir("without_psutil")
    (hidden / "psutil.py").write_text("raise ImportError('psutil is hidden for this test')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hidden), os.environ["PYTHONPATH"]]))
    result = run_suite("leak_process", "-k", "test_no_leftovers_after_shutdown")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*worker processes left after shutdown*"])


def test_healthy_backend_passes_the_same_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ok="from anyexec.testing import ConformanceSuite\n"
        "class TestOk(ConformanceSuite):\n    pass\n"
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "anyexec.testing",
        "--anyexec-backend=thread",
        "-p",
        "no:cacheprovider",
        "test_ok.py",
        "-k",
        "map_ordered or keeps_its_type or leftovers or runs_once or none_results",
        timeout=300,
    )
    result.assert_outcomes(passed=15)


def test_plugin_alone_runs_the_whole_suite(pytester: pytest.Pytester) -> None:
    """`pytest -p anyexec.testing --anyexec-backend=NAME` with nothing else written."""
    result = pytester.runpytest_subprocess(
        "-p",
        "anyexec.testing",
        "--anyexec-backend=serial",
        "-p",
        "no:cacheprovider",
        "-q",
        "--anyexec-option",
        "x=1",
        "-k",
        "test_map_empty",
    )
    # serial takes no option "x": the suite reports the configuration error clearly
    result.stdout.fnmatch_lines(["*backend 'serial' does not take option 'x'*"])
    from known_failures import known_to_fail  # type: ignore[import-not-found]

    known = known_to_fail("serial")  # bugs of the core, fixed elsewhere
    result = pytester.runpytest_subprocess(
        "-p",
        "anyexec.testing",
        "--anyexec-backend=serial",
        "-p",
        "no:cacheprovider",
        "-q",
        *(["-k", " and ".join(f"not {name}" for name in known)] if known else []),
        timeout=600,
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 50 and not outcomes.get("failed"), result.stdout.str()


def test_no_backend_named_is_one_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "anyexec.testing", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*name the backend to check with --anyexec-backend=NAME*Installed backends: *serial*"]
    )
    assert "error" not in result.stdout.str().lower()


def test_unknown_backend_is_one_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "anyexec.testing", "--anyexec-backend=nosuch", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--anyexec-backend=nosuch: unknown backend 'nosuch'. Installed backends: *serial*"]
    )


def test_missing_package_is_one_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(anyexec.testing.REQUIRED, "no_such_package_for_anyexec", "a test")
    result = pytester.runpytest_inprocess(
        "-p", "anyexec.testing", "--anyexec-backend=serial", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*needs no_such_package_for_anyexec (no_such_package_for_anyexec, for a test)*"
            "Install the test extra: pip install 'anyexec?test?'"
        ]
    )
