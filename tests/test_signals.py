"""Signals to a program that runs a bare ``anyexec.map`` (no ``with``), with real processes.

- SIGINT (Ctrl-C): the program exits at once, its queued tasks cancelled, no worker left.
- SIGTERM and SIGKILL of the parent: no worker, forkserver or resource tracker outlives it
  (each worker watches its parent), and the next anyexec process removes the
  shared-memory folder it left behind.

Bounds are generous (a noisy 2-core machine): the program must exit well before its queued
work could have run, and its descendants must be gone within 30 s. The measured times are
printed (``pytest -s``); docs/reliability.md gives the typical figures.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

LOKY = pytest.param(
    "loky",
    marks=pytest.mark.skipif(
        not importlib.util.find_spec("anyexec_loky"), reason="anyexec-loky not installed"
    ),
)
PROCESS_LIKE = ["process", LOKY]

#: Each task sleeps this long: far longer than any bound below, so a worker that merely
#: finished its task cannot pass for one that noticed its parent was gone.
TASK_SECONDS = 120.0

SCRIPT = textwrap.dedent(f"""
    import sys
    import anyexec
    from anyexec import _shared
    from anyexec.testing import tasks

    if __name__ == "__main__":
        if sys.argv[1] == "share":
            kept = anyexec.shared_array(1000)
            print(_shared.shared_dir(), flush=True)
        else:
            print("-", flush=True)
        list(anyexec.map(tasks.sleep_then, [{TASK_SECONDS}] * 40))
        print("the map ran to its end", flush=True)
""")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def _start(backend: str, tmp_path: Path, share: bool) -> tuple[subprocess.Popen[str], str]:
    """Start the program; its output goes to a file, not a pipe (workers that outlive it
    would hold a pipe open). Returns it and the first line it printed."""
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYEXEC_")}
    env.update(ANYEXEC_BACKEND=backend, ANYEXEC_WORKERS="2")
    with (tmp_path / "out.txt").open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), "share" if share else "-"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
            env=env,
            # A test runner started in the background inherits SIGINT ignored; a user's
            # terminal does not: give the program the default disposition, as a shell would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.monotonic() + 120
    while "\n" not in _output(tmp_path) and time.monotonic() < deadline:
        assert proc.poll() is None, _output(tmp_path)
        time.sleep(0.05)
    return proc, _output(tmp_path).split("\n", 1)[0].strip()


def _output(tmp_path: Path) -> str:
    return (tmp_path / "out.txt").read_text()


def _wait_for_work(proc: subprocess.Popen[str], backend: str) -> list[psutil.Process]:
    """Wait until the map's tasks run (the workers are up), then a little more."""
    wanted = 0 if backend in ("thread", "asyncio") else 3  # 2 workers + a tracker at least
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_descendants(proc.pid)) >= wanted:
            break
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "the program ended before it was signalled"
    return _descendants(proc.pid)


def _signal_and_measure(
    proc: subprocess.Popen[str], sig: signal.Signals, kids: list[psutil.Process], tmp_path: Path
) -> tuple[float, float, str]:
    """Send ``sig``; seconds until the program exited, seconds until its last descendant
    was gone, and what it printed."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        for kid in [*_alive(kids), proc]:
            kid.kill()
        proc.wait()
        pytest.fail(f"{sig.name}: no exit within 120 s:\n{_output(tmp_path)[-3000:]}")
    exited = time.monotonic() - started
    out = _output(tmp_path)
    while _alive(kids) and time.monotonic() - started < exited + 30:
        time.sleep(0.1)
    left = _alive(kids)
    gone = time.monotonic() - started
    for kid in left:  # leave nothing behind, even when the test fails
        kid.kill()
    assert not left, f"{sig.name}: still running 30 s after exit: " + ", ".join(
        " ".join(k.cmdline())[:120] for k in left
    )
    return exited, gone, out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["thread", "asyncio", *PROCESS_LIKE])
def test_ctrl_c_during_a_bare_map(backend: str, tmp_path: Path) -> None:
    proc, _ = _start(backend, tmp_path, share=False)
    kids = _wait_for_work(proc, backend)
    exited, gone, out = _signal_and_measure(proc, signal.SIGINT, kids, tmp_path)
    print(f"\n{backend}: SIGINT -> exit in {exited:.2f} s, descendants gone in {gone:.2f} s")
    assert "KeyboardInterrupt" in out and "ran to its end" not in out, out[-3000:]
    assert proc.returncode != 0
    # Far less than one more round of tasks: queued tasks were cancelled, not run.
    assert exited < TASK_SECONDS, f"took {exited:.1f} s: the exit waited for tasks"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("backend", PROCESS_LIKE)
def test_killed_parent_leaves_nothing_behind(
    backend: str, sig: signal.Signals, tmp_path: Path
) -> None:
    proc, folder = _start(backend, tmp_path, share=True)
    kids = _wait_for_work(proc, backend)
    names = sorted(" ".join(k.cmdline())[:60] for k in kids)
    _, gone, _ = _signal_and_measure(proc, sig, kids, tmp_path)
    print(f"\n{backend}: {sig.name} -> descendants gone in {gone:.2f} s: {names}")
    assert proc.returncode == -sig
    # A signal runs no exit handler: the folder stays until the next anyexec process.
    assert os.path.isdir(folder)
    subprocess.run(
        [sys.executable, "-c", "from anyexec import _shared; _shared.shared_dir()"],
        check=True,
        timeout=120,
    )
    assert not os.path.exists(folder)
