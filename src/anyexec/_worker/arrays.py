"""The worker side of shared arrays: a small handle that a worker maps back into the array
(a copy-on-write memory map of the file the caller wrote; see ``anyexec._shared``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyexec._worker.args import remap

__all__ = ["SharedArray", "unshare"]


class SharedArray:
    """A handle a worker turns back into the array (a copy-on-write memory map)."""

    __slots__ = ("dtype", "path", "shape")

    def __init__(self, path: str, dtype: str, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, dtype, shape

    def __getstate__(self) -> tuple[str, str, tuple[int, ...]]:
        return self.path, self.dtype, self.shape

    def __setstate__(self, state: tuple[str, str, tuple[int, ...]]) -> None:
        self.path, self.dtype, self.shape = state

    def load(self) -> Any:
        import numpy as np

        return np.memmap(self.path, dtype=self.dtype, mode="c", shape=self.shape)


def _load(value: Any) -> Any:
    return value.load() if type(value) is SharedArray else value


def unshare(items: Sequence[Any], mode: int = 0) -> list[Any]:
    """In the worker: handles back to arrays, whatever way the chunk passes its items."""
    return remap(items, mode, _load)
