"""The core never imports a plugin's dependencies."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_plugin_dependencies() -> None:
    code = (
        "import sys, anyexec\n"
        "from anyexec.testing import tasks\n"
        "for b in ('serial', 'thread', 'process', 'asyncio'):\n"
        "    with anyexec.Executor(b, workers=1) as ex:\n"
        "        assert list(ex.map(tasks.square, range(3))) == [0, 1, 4]\n"
        "import anyexec.measure, anyexec.bench, anyexec.cli\n"
        "bad = sorted(m for m in ('loky', 'dask', 'distributed', 'cloudpickle') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
