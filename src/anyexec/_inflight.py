"""What one ``map`` has in flight, and which finished chunk it delivers next.

Two kinds behind one small interface (:class:`InFlight`): :class:`Ordered` delivers chunks
in input order (the head must finish first), :class:`Unordered` in the order they finish.
Each entry is a ``[future, chunk]`` pair; its future is None while the chunk waits to be
re-run alone after its worker died (``retries``), and a stand-in future replaces one that
was abandoned past its ``task_timeout``.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from typing import Any, Protocol

from anyexec._worker.tasks import Chunk

__all__ = ["Entry", "InFlight", "Ordered", "Unordered", "make"]

#: ``[future or None, chunk]``; a list so that a stand-in can replace the future in place.
Entry = list[Any]


class InFlight(Protocol):
    """The bookkeeping the map engine needs, whatever the delivery order."""

    def __len__(self) -> int:
        """Entries not yet delivered: running, finished, or waiting to be re-run."""

    def running(self) -> int:
        """Entries submitted and not finished (what the window bounds)."""

    def add(self, fut: cf.Future[Any], chunk: Chunk) -> None:
        """A chunk was submitted."""

    def arrived(self, fut: cf.Future[Any]) -> None:
        """``fut`` finished (called from its done callback, in any thread)."""

    def take(self) -> Entry | None:
        """The next entry to deliver, removed, if its turn has come and it finished."""

    def rerun_alone(self, chunks: list[Chunk]) -> None:
        """Queue one-item chunks to re-run one at a time, where the lost chunk stood."""

    def next_rerun(self) -> Entry | None:
        """An entry waiting to be re-run whose turn has come and beside which nothing
        runs; the caller submits it, sets its future and calls :meth:`resubmitted`."""

    def resubmitted(self, entry: Entry) -> None:
        """A re-run entry from :meth:`next_rerun` got its future."""

    def replace(self, entry: Entry, stand_in: cf.Future[Any]) -> None:
        """Deliver ``stand_in`` in place of the entry's (abandoned) future."""

    def watched(self) -> list[Entry]:
        """Running entries whose task may have to be abandoned (the ones the caller
        waits for next)."""

    def futures(self) -> list[cf.Future[Any]]:
        """Every future in flight (to cancel them)."""


class Ordered:
    """Input order: a FIFO of entries; only the head may be delivered."""

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()

    def __len__(self) -> int:
        return len(self.entries)

    def running(self) -> int:
        return len(self.entries)

    def add(self, fut: cf.Future[Any], chunk: Chunk) -> None:
        self.entries.append([fut, chunk])

    def arrived(self, fut: cf.Future[Any]) -> None:
        pass  # the head is looked at directly

    def take(self) -> Entry | None:
        entries = self.entries
        if entries:
            fut = entries[0][0]
            if fut is not None and fut.done():
                return entries.popleft()
        return None

    def rerun_alone(self, chunks: list[Chunk]) -> None:
        self.entries.extendleft([None, chunk] for chunk in reversed(chunks))

    def next_rerun(self) -> Entry | None:
        if not self.entries or self.entries[0][0] is not None:
            return None
        for fut, _ in self.entries:
            if fut is not None and not fut.done():
                return None  # a re-run waits until nothing else of the map runs
        return self.entries[0]

    def resubmitted(self, entry: Entry) -> None:
        pass  # still in place at the head

    def replace(self, entry: Entry, stand_in: cf.Future[Any]) -> None:
        entry[0] = stand_in

    def watched(self) -> list[Entry]:
        return [self.entries[0]] if self.entries and self.entries[0][0] is not None else []

    def futures(self) -> list[cf.Future[Any]]:
        return [fut for fut, _ in list(self.entries) if fut is not None]


class Unordered:
    """Completion order: live entries by future, a queue of arrivals, and re-runs."""

    def __init__(self) -> None:
        self.live: dict[cf.Future[Any], Entry] = {}
        self.done: deque[cf.Future[Any]] = deque()
        self.waiting: deque[Entry] = deque()

    def __len__(self) -> int:
        return len(self.live) + len(self.waiting)

    def running(self) -> int:
        return len(self.live)

    def add(self, fut: cf.Future[Any], chunk: Chunk) -> None:
        self.live[fut] = [fut, chunk]

    def arrived(self, fut: cf.Future[Any]) -> None:
        self.done.append(fut)  # deque.append is atomic: safe from any thread

    def take(self) -> Entry | None:
        while self.done:
            entry = self.live.pop(self.done.popleft(), None)
            if entry is not None:
                return entry
        return None

    def rerun_alone(self, chunks: list[Chunk]) -> None:
        self.waiting.extend([None, chunk] for chunk in chunks)

    def next_rerun(self) -> Entry | None:
        if not self.waiting or not all(fut.done() for fut in self.live):
            return None
        return self.waiting.popleft()

    def resubmitted(self, entry: Entry) -> None:
        self.live[entry[0]] = entry

    def replace(self, entry: Entry, stand_in: cf.Future[Any]) -> None:
        self.live.pop(entry[0], None)
        entry[0] = stand_in
        self.live[stand_in] = entry
        self.done.append(stand_in)

    def watched(self) -> list[Entry]:
        return [e for e in self.live.values() if e[0] is not None and not e[0].done()]

    def futures(self) -> list[cf.Future[Any]]:
        return [fut for fut, _ in list(self.live.values()) if fut is not None]


def make(ordered: bool) -> Ordered | Unordered:
    return Ordered() if ordered else Unordered()
