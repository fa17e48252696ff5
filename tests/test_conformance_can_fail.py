"""The conformance suite fails, readably, on deliberately broken backends."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BROKEN = '''
import concurrent.futures as cf
import subprocess
import sys

import pytest

from anyexec._worker.tasks import Call, Chunk, Failure
from anyexec.builtin.thread import ThreadBackend
from anyexec.testing import ConformanceSuite


class Tampering(cf.Executor):
    """Runs tasks on a real thread pool, then tampers with what map gets back."""

    def __init__(self, workers, tamper):
        self.inner = cf.ThreadPoolExecutor(workers)
        self.tamper = tamper

    def submit(self, fn, /, *args, **kwargs):
        if isinstance(fn, (Chunk, Call)):
            return self.inner.submit(lambda: self.tamper(fn))
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def drop(task):
    out = task()
    if isinstance(task, Chunk):
        values, seconds, failed = out
        return values[:-1], seconds, failed
    return out


def reorder(task):
    out = task()
    if isinstance(task, Chunk):
        values, seconds, failed = out
        return values[::-1], seconds, failed
    return out


def swallow(task):
    if isinstance(task, Call):
        try:
            return task()
        except Exception:
            return None
    values, seconds, failed = task()
    return [None if type(v) is Failure else v for v in values], seconds, False


class Broken(ThreadBackend):
    def __init__(self, tamper):
        self.tamper = tamper
        self.name = tamper.__name__

    def open(self, workers, **options):
        return Tampering(workers, self.tamper)


class Leaky(ThreadBackend):
    """Starts a helper worker process on open and never stops it."""

    name = "leaky"

    def open(self, workers, **options):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        return super().open(workers, **options)


class TestBroken(ConformanceSuite):
    @pytest.fixture(scope="class", params=["drop", "reorder", "swallow", "leak"])
    @classmethod
    def anyexec_backend(cls, request):
        if request.param == "leak":
            return Leaky()
        return Broken(globals()[request.param])
'''


@pytest.fixture
def run_suite(pytester: pytest.Pytester):  # type: ignore[no-untyped-def]
    pytester.makepyfile(test_broken=BROKEN)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p", "anyexec.testing", "-p", "no:cacheprovider", *args
        )

    return run


@pytest.mark.parametrize(
    ("backend", "check", "message"),
    [
        ("drop", "test_map_ordered", "*backend *drop* returned tuple with * outcomes for a chunk of *"),
        (
            "reorder",
            "test_map_ordered",
            "map results differ from serial: first difference at index",
        ),
        ("swallow", "test_swallowed_exceptions_are_caught", "a failing task raised nothing"),
        ("swallow", "test_type_and_message", "DID NOT RAISE"),
        ("leak", "test_no_leftovers_after_shutdown", "worker processes left after shutdown"),
    ],
)
def test_broken_backend_fails_readably(run_suite, backend: str, check: str, message: str) -> None:  # type: ignore[no-untyped-def]
    result = run_suite(f"test_broken.py::TestBroken::{check}[{backend}]")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


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
        "map_ordered or swallowed or type_and_message or leftovers",
    )
    result.assert_outcomes(passed=4)


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
    result = pytester.runpytest_subprocess(
        "-p",
        "anyexec.testing",
        "--anyexec-backend=serial",
        "-p",
        "no:cacheprovider",
        "-q",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 30 and not outcomes.get("failed"), result.stdout.str()
