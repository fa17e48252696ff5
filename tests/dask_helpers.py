"""Task functions for tests/test_dask.py that the dask workers import by name (the
caller's ``sys.path``, with this folder on it, is handed to the embedded cluster)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


class KillsWhenPickled:
    """A result whose pickling ends the process that pickles it: a worker dying while it
    sends back a finished result."""

    def __reduce__(self) -> Any:
        os._exit(3)


def returns_worker_killer(x: int) -> KillsWhenPickled:
    return KillsWhenPickled()


def exits(code: int) -> None:
    sys.exit(code)


def interrupts(x: int) -> None:
    raise KeyboardInterrupt


def touch_then_sleep(i: int, folder: str, seconds: float) -> int:
    """Leaves a file per run (side-effect count), then waits."""
    Path(folder, f"{i}-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return i
