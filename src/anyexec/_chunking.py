"""How ``map`` cuts its input into chunks, and how many chunks it keeps in flight: every
chunk-size rule lives here.

- A fixed ``chunksize`` is used as given.
- ``chunksize="auto"`` starts small, then sizes chunks so each runs about the backend's
  ``target_chunk_seconds`` inside the worker (:class:`ChunkSizer`).
- ``buffersize=None`` submits everything at once, as the standard library does; then an
  automatic chunk size is fixed up front at four chunks per worker, as
  ``multiprocessing.Pool`` does.
- A ``task_timeout`` that can only abandon a task (threads) runs one task per chunk, so
  abandoning one discards no other result.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from typing import Any

from anyexec._record import frozen
from anyexec.errors import ConfigError

__all__ = ["MAX_CHUNK", "ChunkSizer", "Window", "check_chunksize", "known_length", "window"]

#: Largest adaptive chunk: bounds memory when the input length is unknown.
MAX_CHUNK = 8192
#: How much an adaptive chunk may grow per observation (shrinking is immediate).
GROWTH = 16
#: Chunks each worker gets of a known-length input at least, so the tail stays balanced.
PER_WORKER = 4


def check_chunksize(chunksize: Any) -> int | None:
    """A fixed chunk size, or None for ``"auto"``; a ConfigError for anything else."""
    if chunksize == "auto" or chunksize is None:
        return None
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ConfigError(f"argument chunksize={chunksize!r}: must be a positive int or 'auto'")
    return chunksize


def known_length(iterables: Sequence[Iterable[Any]]) -> int | None:
    """How many items zipping ``iterables`` gives, where each says its length."""
    lengths = []
    for it in iterables:
        if not hasattr(it, "__len__"):
            return None
        lengths.append(operator.length_hint(it))
    return min(lengths, default=0)


@frozen
class Window:
    """How many chunks may be in flight (None: no bound), and how often to refill."""

    size: int | None
    #: Refill once this many places are free, so one submission carries several chunks
    #: (one ``client.map`` call on dask instead of one per chunk).
    refill_at: int


def window(buffersize: Any, chunks_per_worker: int, workers: int) -> Window:
    """The in-flight bound for ``buffersize`` (``"auto"``: ``chunks_per_worker`` each)."""
    if buffersize == "auto":
        size: int | None = chunks_per_worker * workers
    elif buffersize is None:
        size = None
    elif isinstance(buffersize, int) and not isinstance(buffersize, bool) and buffersize >= 1:
        size = buffersize
    else:
        raise ConfigError(
            f"argument buffersize={buffersize!r}: must be a positive int, 'auto' or None"
        )
    return Window(size, 1 if size is None else max(1, size // 4))


class ChunkSizer:
    """How many items the next chunk holds.

    With a fixed ``chunksize`` it always says that. Adaptive (``chunksize="auto"``), it
    starts at one item, then sizes chunks so each runs about ``target`` seconds inside the
    worker, judged from a decaying, item-weighted mean time per item of finished chunks. With an
    unknown input length it grows by at most ``GROWTH``× per observation (up to
    ``MAX_CHUNK``); it shrinks at once. When the input length is known it may jump to the
    ideal size at once, and chunks are also kept small enough that each worker gets at
    least ``PER_WORKER`` of the remaining items' chunks, so the tail stays balanced -- but
    never split below a quarter of the target duration, where balance no longer matters
    and submissions would.
    """

    def __init__(
        self,
        fixed: int | None,
        workers: int,
        target: float,
        total: int | None,
        max_size: int = MAX_CHUNK,
    ) -> None:
        self.fixed = fixed
        self.workers = workers
        self.target = target
        self.total = total
        # A known-length input is already in memory: larger chunks cost no extra memory.
        self.max_size = max_size if total is None else 8 * max_size
        self.size = fixed or 1
        self.per_item: float | None = None
        self._seconds = 0.0
        self._items = 0.0
        self.handed_out = 0
        #: False while adaptive sizes are still growing towards the target.
        self.settled = fixed is not None

    @classmethod
    def plan(
        cls,
        chunksize: int | None,
        workers: int,
        target: float,
        total: int | None,
        *,
        everything_now: bool,
        one_per_task: bool,
    ) -> ChunkSizer:
        """The sizer for one map: ``everything_now`` (``buffersize=None``) fixes an
        automatic size up front; ``one_per_task`` (abandonable timeouts) forces 1."""
        if one_per_task:
            chunksize = 1
        elif everything_now and chunksize is None and total is not None:
            chunksize = max(1, math.ceil(total / (PER_WORKER * workers)))
        return cls(chunksize, workers, target, total)

    def next_size(self) -> int:
        size = self.size
        if self.fixed is None and self.total is not None:
            remaining = self.total - self.handed_out
            balanced = math.ceil(remaining / (PER_WORKER * self.workers))
            if self.per_item:
                balanced = max(balanced, math.ceil(self.target / 4 / self.per_item))
            size = max(1, min(size, balanced))
        self.handed_out += size
        return size

    def observe(self, items: int, seconds: float) -> None:
        if self.fixed is not None or items <= 0:
            return
        # A decaying, item-weighted mean: a large chunk outweighs a one-item one (whose
        # time is mostly fixed cost), and old chunks fade as the tasks change.
        self._seconds = 0.5 * self._seconds + seconds
        self._items = 0.5 * self._items + items
        self.per_item = self._seconds / self._items
        ideal = self.target / self.per_item if self.per_item > 0 else float(self.max_size)
        # With a known length the balance rule of next_size() already bounds a chunk, so
        # the size may jump to the ideal at once; otherwise it grows step by step, so one
        # misleading early sample cannot make a huge chunk.
        grown = min(ideal, self.size * GROWTH) if self.total is None else ideal
        self.settled = grown >= ideal or grown >= self.max_size
        self.size = max(1, min(self.max_size, int(grown)))
