"""examples/pipeline.py, run as the README shows: one script, the backend chosen by
ANYEXEC_BACKEND only, the same results on every backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from anyexec import registry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pipeline.py"


def run_example(backend: str) -> tuple[str, str]:
    """The backend the example reports and its results, without the time it took."""
    env = {**os.environ, "ANYEXEC_BACKEND": backend, "ANYEXEC_WORKERS": "2"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(r"(\w+): (sum \d+, best \d+) in \d+\.\d\d s\n", done.stdout)
    assert match, done.stdout
    return match.group(1), match.group(2)


@pytest.fixture(scope="module")
def serial_results() -> str:
    backend, results = run_example("serial")
    assert backend == "serial"
    return results


@pytest.mark.parametrize("backend", ["thread", "process", "loky", "dask"])
def test_pipeline_gives_the_serial_results_on_every_backend(
    backend: str, serial_results: str
) -> None:
    if backend not in registry.names():
        pytest.skip(f"{backend} is not installed")
    assert run_example(backend) == (backend, serial_results)


def test_readme_shows_the_results_the_example_gives(serial_results: str) -> None:
    """The README's three runs print what the example prints today."""
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    shown = re.findall(r"^(\w+): (sum \d+, best \d+) in \d+\.\d\d s$", readme, re.M)
    commands = re.findall(
        r"^\$ time ANYEXEC_BACKEND=(\w+) python examples/pipeline\.py$", readme, re.M
    )
    assert len(shown) == 3 and [b for b, _ in shown] == commands, (shown, commands)
    assert {results for _, results in shown} == {serial_results}
