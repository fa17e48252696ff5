"""``anyexec.tune`` and ``anyexec tune``: the search, its result, and writing a profile.

The fast tests use budgets of a few seconds and one or two backends. The acceptance
checks (``slow``) tune the four workloads of ``benchmarks/tasks.py`` on every installed
backend; each first checks that the machine has two free cores, since no tuner can find
a speedup that a busy machine does not have.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec import config
from anyexec.cli import main
from anyexec.errors import AnyexecError, BackendNotFound, ConfigError
from anyexec.tune import (
    Candidate,
    TuneResult,
    TuneTable,
    _clearly_beats,
    _replace_table,
    profile_file,
    tune,
    worker_counts,
    write_profile,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def nap(x: int) -> int:
    time.sleep(0.003)
    return x * x


def add(a: int, b: int) -> int:
    time.sleep(0.002)
    return a + b


def where(x: int) -> str:
    """Differs between the caller's thread (serial) and a pool thread."""
    time.sleep(0.003)
    return threading.current_thread().name


def noop(x: Any) -> Any:
    return x


def fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


@pytest.fixture(autouse=True)
def keep_import_path() -> Any:
    """``anyexec tune`` makes the working directory importable (sys.path and PYTHONPATH,
    for its workers); put both back after each test."""
    path, env = sys.path[:], os.environ.get("PYTHONPATH")
    yield
    sys.path[:] = path
    if env is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = env


def within_budget(seconds: float, budget: float) -> bool:
    return seconds < budget * 1.5 + 10


# -- the result ------------------------------------------------------------------------


def test_result_structure_and_json() -> None:
    start = time.monotonic()
    result = tune(nap, range(32), budget=4, backends=["thread"])
    assert within_budget(time.monotonic() - start, 4)
    assert isinstance(result, anyexec.TuneResult)
    assert result.backend in ("serial", "thread")
    assert result.workers >= 1
    assert result.chunksize == "auto" or isinstance(result.chunksize, int)
    assert isinstance(result.options, dict)
    assert result.efficiency == pytest.approx(result.speedup / result.workers)
    assert isinstance(result.table, TuneTable)
    assert result.table[0].tp is not None  # fastest first
    baseline = [r for r in result.table if r.backend == "serial"]
    assert len(baseline) == 1 and baseline[0]["status"] == "baseline"
    assert {r.backend for r in result.table} == {"serial", "thread"}
    text = str(result.table)
    assert text.splitlines()[0].split()[:4] == ["backend", "p", "chunk", "Tp"]
    assert result.verdict and "\n" not in result.verdict
    data = json.loads(result.to_json())
    assert data["schema"] == "anyexec.tune/1"
    assert data["recommendation"]["backend"] == result.backend
    assert len(data["candidates"]) == len(result.table)
    assert data["calibration"]["tasks"] == 32
    assert data["probes"] and data["probes"][0]["backend"] == "thread"


def test_waiting_work_gets_more_workers_than_cpus() -> None:
    result = tune(nap, range(32), budget=4, backends=["thread"])
    assert result.waiting
    assert max(r.workers for r in result.table) > config.available_cpus()


def test_argument_tuples_are_unpacked() -> None:
    result = tune(add, [(i, i) for i in range(16)], budget=3, backends=["thread"], workers=2)
    assert not [r for r in result.table if r.status in ("failed", "disqualified")]
    assert any(r.valid and r.backend == "thread" for r in result.table)


def scaled(a: int, *, scale: int) -> int:
    time.sleep(0.002)
    return a * scale


def test_args_items_carry_keyword_arguments() -> None:
    result = tune(
        scaled,
        [anyexec.Args(i, scale=3) for i in range(16)],
        budget=3,
        workers=2,
        backends=["thread", "process"],
    )
    assert not [r for r in result.table if r.status in ("failed", "disqualified")]
    assert "thread" in {r.backend for r in result.table if r.valid}  # process: if budget allows


def test_mismatch_disqualifies_and_is_reported() -> None:
    result = tune(where, range(16), budget=4, backends=["thread"], workers=2)
    bad = [r for r in result.table if r.status == "disqualified"]
    assert bad and all("results differ" in r.note for r in bad)
    assert not [r for r in result.table if r.backend == "thread" and r.valid]
    assert result.backend == "serial"
    assert "disqualified: thread" in result.verdict


def test_tiny_tasks_are_sampled_by_their_own_time_not_the_maps() -> None:
    """One no-op through a serial map takes the map's fixed cost, hundreds of times the
    task: the sample is sized from a run long enough to time the tasks, so it keeps every
    input here (sizing it from one call kept a few hundred)."""
    result = tune(noop, range(5000), budget=5, backends=["thread"])
    assert result.sampled == 5000, result.verdict
    assert "sampled" not in result.verdict


def test_no_op_stays_serial_and_says_why() -> None:
    result = tune(noop, range(5000), budget=5, backends=["thread", "process"])
    assert (result.backend, result.workers, result.speedup) == ("serial", 1, 1.0)
    assert "METG" in result.verdict


def test_closure_skips_process() -> None:
    offset = 1

    def closure(x: int) -> int:
        time.sleep(0.002)
        return x + offset

    backends = ["thread", "process"]
    if importlib.util.find_spec("anyexec_loky") is not None:
        backends.append("loky")
    result = tune(closure, range(16), budget=4, backends=backends, workers=2)
    process = [r for r in result.table if r.backend == "process"]
    assert process and all(r.status == "skipped" and "pickle" in r.note for r in process)
    loky = [r for r in result.table if r.backend == "loky"]
    assert all("pickle" not in r.note for r in loky)  # cloudpickle takes closures


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="budget"):
        tune(noop, [1], budget=0)
    with pytest.raises(ConfigError, match="empty"):
        tune(noop, [], budget=1)
    with pytest.raises(ConfigError, match="string"):
        tune(noop, "abc", budget=1)
    with pytest.raises(BackendNotFound, match="nope"):
        tune(noop, [1], budget=1, backends=["nope"])
    with pytest.raises(ConfigError, match="workers"):
        tune(noop, [1], budget=1, workers=[0])
    with pytest.raises(ConfigError, match="chunksize"):
        tune(noop, [1], budget=1, chunksize=["big"])
    with pytest.raises(AnyexecError, match="bad input 0"):
        tune(fails, range(4), budget=1, backends=["thread"])


def test_progress_without_tqdm_prints_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails: plain lines
    tune(nap, range(8), budget=2, backends=["thread"], workers=2, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("/2 s] serial calibration")
    assert any("thread × 2, chunksize auto" in line for line in err)


def test_async_function_tries_asyncio_first(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def wait(x: int) -> int:
        await asyncio.sleep(0.005)
        return x

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    result = tune(wait, range(16), budget=4, backends=["thread", "asyncio"], workers=[4])
    starts = [line for line in capsys.readouterr().err.splitlines() if line.endswith(": start")]
    assert starts == []  # progress is off by default
    result = tune(
        wait, range(16), budget=4, backends=["thread", "asyncio"], workers=[4], progress=True
    )
    starts = [line for line in capsys.readouterr().err.splitlines() if line.endswith(": start")]
    assert "asyncio × 4" in starts[0]
    assert {r.backend for r in result.table if r.valid} == {"thread", "asyncio"}


def test_worker_counts() -> None:
    assert worker_counts(2, False, 64) == [2]
    assert worker_counts(2, True, 64) == [2, 4, 8, 16]
    assert worker_counts(6, False, 64) == [2, 4, 6]
    assert worker_counts(2, True, 5) == [2, 4, 5]
    assert worker_counts(1, False, 64) == [1]
    assert worker_counts(4, False, 1) == [1]


def _remeasured(backend: str, serial: list[float], parallel: list[float]) -> Candidate:
    from anyexec.measure import Measurement

    m = Measurement(backend, 2, "w", 64, serial, parallel, startup=0.0)
    return Candidate(backend, 2, status="re-measured", measurement=m)


def test_a_difference_within_the_noise_is_a_tie() -> None:
    # Quiet rounds: 1.9 against 1.6 every time -- a clear win.
    quiet_process = _remeasured("process", [1.9] * 5, [1.0] * 5)
    quiet_dask = _remeasured("dask", [1.6] * 5, [1.0] * 5)
    assert _clearly_beats(quiet_process, quiet_dask)
    assert not _clearly_beats(quiet_dask, quiet_process)
    # Busy rounds: dask's median is 9% ahead, but its lower quartile is below process's
    # median, so it is a tie (and the simpler backend wins it).
    busy_dask = _remeasured("dask", [1.0] * 5, [0.50, 0.52, 0.55, 0.64, 0.66])
    busy_process = _remeasured("process", [1.0] * 5, [0.60, 0.58, 0.62, 0.55, 0.63])
    assert busy_dask.speedup > 1.05 * busy_process.speedup  # type: ignore[operator]
    assert not _clearly_beats(busy_dask, busy_process)
    # One disturbed round does not make a tie of a clear difference.
    one_outlier = _remeasured("process", [1.0] * 5, [0.52, 0.52, 0.53, 0.53, 0.95])
    assert _clearly_beats(one_outlier, quiet_dask)
    # With one round each there are no quartiles: the serial runs around them measure the
    # noise. dask 8% ahead while its serial runs spread by 20% is a tie; by 2%, it is not.
    loky = _remeasured("loky", [1.0], [0.52])
    lucky_dask = _remeasured("dask", [1.0], [0.48])
    lucky_dask.serial_runs = [1.2, 1.0]
    assert lucky_dask.speedup > 1.05 * loky.speedup  # type: ignore[operator]
    assert not _clearly_beats(lucky_dask, loky)
    lucky_dask.serial_runs = [1.02, 1.0]
    assert _clearly_beats(lucky_dask, loky)
    # Within 5% is a tie for screened rows (one run each) too.
    one = Candidate("thread", 2, ts=1.0, times=[0.55])
    other = Candidate("process", 2, ts=1.0, times=[0.53])
    assert not _clearly_beats(other, one)
    assert _clearly_beats(Candidate("loky", 2, ts=1.0, times=[0.4]), one)


#: Calls in the caller's thread still to slow down (see ``disturbed``).
_slowed_calls = [0]


def disturbed(x: int) -> int:
    """A task whose serial runs (in the caller's thread) are slowed while
    ``_slowed_calls`` lasts, as other work on the machine would slow them."""
    time.sleep(0.002)
    if threading.current_thread() is threading.main_thread() and _slowed_calls[0] > 0:
        _slowed_calls[0] -= 1
        time.sleep(0.02)
    return x


def test_a_slowed_serial_run_does_not_lift_a_speedup() -> None:
    from anyexec.tune import _Search

    search = _Search(disturbed, list(range(16)), 20.0, ["thread"], [2], None, False)
    search.calibrate()
    _slowed_calls[0] = 16  # the whole first serial run of the series
    before = len(search.serial_times)
    row = Candidate("thread", 2)
    m = search.alternate(row, 1, time.perf_counter() + 60)
    slowed, quiet = search.serial_times[before:]
    assert slowed > quiet
    # The parallel run's reference is the faster serial run beside it.
    assert m.serial_times == [quiet]
    assert row.serial_runs == [slowed, quiet]  # their spread is the noise seen
    assert len(m.parallel_times) == 1


def test_module_is_callable_like_the_function() -> None:
    import anyexec.tune as module

    result = module(nap, range(8), budget=2, backends=["thread"], workers=2)
    assert isinstance(result, TuneResult)


# -- writing a profile -------------------------------------------------------------------


def made(backend: str = "thread", workers: int = 4, chunksize: int | str = "auto") -> TuneResult:
    return TuneResult(
        backend=backend,
        workers=workers,
        chunksize=chunksize,
        options={},
        speedup=3.5,
        efficiency=3.5 / workers,
        table=TuneTable([Candidate("serial", 1, status="baseline", times=[1.0], ts=1.0)]),
        verdict=f"{backend} × {workers}, chunksize {chunksize}: S 3.50",
        task_time=0.01,
        serial_time=1.0,
        tasks=100,
        sampled=100,
        cpu_ratio=0.02,
        waiting=True,
        probes=[],
        budget=10.0,
        elapsed=5.0,
    )


PYPROJECT = (
    '[project]\nname = "demo"  # keep this comment\n\n'
    "[tool.anyexec]\nbackend = 'process'\n\n"
    '[tool.anyexec.profiles.fast]\nbackend = "asyncio"\nworkers = 3\n\n'
    "[tool.anyexec.profiles.fast.asyncio]\nbackend_name = 'trio'\n\n"
    "# ruff settings follow\n[tool.ruff]\nline-length   =   99\n"
)


def test_write_replaces_the_profile_and_keeps_every_other_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = Path("pyproject.toml")
    path.write_bytes(PYPROJECT.encode())
    assert profile_file() == path.resolve()
    assert write_profile(made(), "fast") == path.resolve()
    text = path.read_text()
    head, _tail = PYPROJECT.split("[tool.anyexec.profiles.fast]")
    assert text.startswith(head)
    assert text.endswith("\n# ruff settings follow\n[tool.ruff]\nline-length   =   99\n")
    data = tomllib.loads(text)
    assert data["tool"]["anyexec"]["profiles"]["fast"] == {"backend": "thread", "workers": 4}
    assert data["tool"]["anyexec"]["backend"] == "process"
    monkeypatch.setenv("ANYEXEC_PROFILE", "fast")
    config.clear_cache()
    settings = config.resolve()
    assert (settings.name, settings.workers) == ("thread", 4)


def test_write_appends_and_round_trips_crlf(monkeypatch: pytest.MonkeyPatch) -> None:
    original = b'[project]\r\nname = "demo"\r\n\r\n[tool.black]\r\nline-length = 99'
    Path("pyproject.toml").write_bytes(original)
    write_profile(made("process", 2, chunksize=8), "cpu")
    raw = Path("pyproject.toml").read_bytes()
    assert raw.startswith(original + b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"map(..., chunksize=8)" in raw  # not a config key: a comment says how
    monkeypatch.setenv("ANYEXEC_PROFILE", "cpu")
    config.clear_cache()
    settings = config.resolve()
    assert (settings.name, settings.workers) == ("process", 2)


def test_write_creates_anyexec_toml_and_prefers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert profile_file() == Path("anyexec.toml").resolve()
    write_profile(made(), "io")
    assert Path("anyexec.toml").read_text().startswith("[profiles.io]\n")
    Path("pyproject.toml").write_text("[tool.anyexec]\nworkers = 1\n")
    write_profile(made("asyncio", 8), "io2")  # the folder's anyexec.toml, read first
    assert "io2" not in Path("pyproject.toml").read_text()
    monkeypatch.setenv("ANYEXEC_PROFILE", "io2")
    config.clear_cache()
    assert config.resolve().name == "asyncio"


def test_write_refuses_what_would_not_read_back() -> None:
    original = "[tool.anyexec]\nprofiles = { slow = { backend = 'serial' } }\n"
    Path("pyproject.toml").write_text(original)
    with pytest.raises(ConfigError, match="by hand"):
        write_profile(made(), "fast")
    assert Path("pyproject.toml").read_text() == original
    with pytest.raises(ConfigError, match="profile name"):
        write_profile(made(), "has space")


def test_replace_table_leaves_other_tables() -> None:
    text = "[a]\nx = 1\n[a.b]\ny = 2\n[a.bc]\nz = 3\n"
    assert _replace_table(text, ["a", "b"], "[a.b]\ny = 9\n", "\n") == (
        "[a]\nx = 1\n[a.b]\ny = 9\n[a.bc]\nz = 3\n"
    )


# -- the command -------------------------------------------------------------------------


def test_cli_writes_json_and_profile(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = main(
        [
            "tune",
            "tiny",
            "--inputs",
            "2000",
            "--budget",
            "3",
            "-b",
            "thread",
            "-q",
            "--json",
            "out.json",
            "--write",
            "quick",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("backend ") and "wrote out.json" in out and "ANYEXEC_PROFILE=quick" in out
    data = json.loads(Path("out.json").read_text())
    assert data["schema"] == "anyexec.tune/1" and data["verdict"] in out
    assert "[profiles.quick]" in Path("anyexec.toml").read_text()
    monkeypatch.setenv("ANYEXEC_PROFILE", "quick")
    config.clear_cache()
    assert config.resolve().name == data["recommendation"]["backend"]


def test_cli_json_inputs_are_argument_lists(capsys: pytest.CaptureFixture[str]) -> None:
    Path("inputs.json").write_text(json.dumps([[i, 0.002] for i in range(12)]))
    code = main(
        [
            "tune",
            "anyexec.workloads:io_task",
            "--inputs",
            "inputs.json",
            "--budget",
            "3",
            "-b",
            "thread",
            "-p",
            "2",
            "-q",
        ]
    )
    assert code == 0
    assert "failed" not in capsys.readouterr().out


def test_cli_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "no.such.module:f", "--inputs", "3"]) == 2
    assert "cannot be imported" in capsys.readouterr().err
    assert main(["tune", "tiny", "--chunksize", "big", "-q"]) == 2
    assert "--chunksize" in capsys.readouterr().err
    assert main(["tune", "tiny", "--inputs", "x.json", "-q"]) == 2
    assert "task count" in capsys.readouterr().err
    assert main(["tune", "tiny", "--write", "a b", "-q"]) == 2
    assert "profile name" in capsys.readouterr().err


# -- acceptance: the four workloads on every installed backend ------------------------------

#: Budget of each acceptance run: decisions were stable at it (see docs/tuning.md).
SLOW_BUDGET = 30.0


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))  # process workers get the parent's sys.path
    from benchmarks import tasks

    return tasks


def two_free_cores(tasks: Any) -> None:
    """Skip unless two processes really run at once here now (a busy shared machine has
    no speedup for the tuner to find)."""
    from anyexec.measure import measure

    m = measure(tasks.cpu20ms, list(range(16)), backend="process", workers=2, repeat=2)
    if config.available_cpus() < 2 or m.speedup < 1.5:
        pytest.skip(f"no two free cores now (process × 2 on CPU work: S {m.speedup:.2f})")


def tuned(fn: Any, inputs: Any) -> TuneResult:
    start = time.monotonic()
    result = tune(fn, inputs, budget=SLOW_BUDGET)
    assert within_budget(time.monotonic() - start, SLOW_BUDGET), result.elapsed
    print(result)
    return result


@pytest.mark.slow
def test_sleeps_pick_threads_or_asyncio_beyond_the_cpus(tasks: Any) -> None:
    result = tuned(tasks.sleep10ms, range(64))
    assert result.backend in ("thread", "asyncio"), result.verdict
    assert result.workers > config.available_cpus()


@pytest.mark.slow
def test_pure_python_picks_processes_at_two_workers(tasks: Any) -> None:
    two_free_cores(tasks)
    result = tuned(tasks.cpu20ms, range(32))
    assert result.backend in ("process", "loky"), result.verdict
    assert result.workers == 2


@pytest.mark.slow
def test_no_op_picks_serial(tasks: Any) -> None:
    result = tuned(tasks.noop, range(10_000))
    assert result.backend == "serial", result.verdict


@pytest.mark.slow
def test_gil_releasing_numpy_threads_within_ten_percent(tasks: Any) -> None:
    pytest.importorskip("threadpoolctl")
    two_free_cores(tasks)
    result = tuned(tasks.matmul, range(64))
    best = max(r.speedup or 0.0 for r in result.table if r.valid)
    thread = max(r.speedup or 0.0 for r in result.table if r.valid and r.backend == "thread")
    assert thread >= 0.9 * best, result.verdict


def test_tune_leaves_the_environment_alone() -> None:
    before = dict(os.environ)
    tune(nap, range(8), budget=2, backends=["thread"], workers=2)
    assert dict(os.environ) == before
