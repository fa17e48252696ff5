"""The backend contract: the only thing a backend must write.

A backend hands over a standard :class:`concurrent.futures.Executor` for a worker count and
options, and says what crosses into its workers. Everything users touch -- chunking,
ordering, timeouts, error shaping, configuration, measurement -- is written once in the core
on top of that executor. A complete backend is a few dozen lines; see
``docs/writing-a-backend.md``.

Who calls what: :class:`anyexec.Executor` calls :meth:`Backend.open` the first time work is
submitted (and again after a reopen), :meth:`Backend.shares_memory` and
:meth:`Backend.submit_batch` when ``map`` has several chunks ready at once, and
:meth:`Backend.release` after it shut the executor down.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from anyexec import _compat
from anyexec._record import frozen
from anyexec._worker.tasks import Call, Chunk
from anyexec._worker.watch import abandoned as abandoned_threads
from anyexec.errors import ConfigError, Unsupported

#: What an executor's ``submit`` receives from the core: a ``Call`` (one ``submit``) or a
#: ``Chunk`` (several calls from ``map``). Both are zero-argument callables to run in a
#: worker; a backend may look inside a Chunk (dask scatters its large arrays).
__all__ = [
    "Backend",
    "Call",
    "Chunk",
    "Crossing",
    "Option",
    "PendingFutures",
    "TimeoutMode",
    "abandoned_threads",
    "cancel_unqueued",
]

#: What crosses into a backend's workers. ``"nothing"``: calls run in the caller's thread.
#: ``"threads"``: other threads of this process, nothing is copied. ``"processes"`` and
#: ``"cluster"``: functions, arguments, results and exceptions must pickle.
Crossing = Literal["nothing", "threads", "processes", "cluster"]

#: How ``task_timeout`` acts on a backend: see :attr:`Backend.timeout_mode`.
TimeoutMode = Literal["worker", "abandon", "none"]

_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*\Z")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@frozen
class Option:
    """One option a backend accepts, with how to read it from text (environment, CLI).

    ``kind`` is the Python type (or types) a value must have; a string from the
    environment, a config file or the command line is converted to the first of ``int``,
    ``float``, ``bool`` or ``str`` listed. ``choices`` restricts the values.

    Checks a backend declares here run when the configuration is resolved (``Executor()``,
    ``using()``, ``anyexec config``), so a bad value is a :class:`ConfigError` naming its
    source up front, never a raw ``ValueError`` when the pool starts:

    - ``minimum``: the smallest number allowed (``minimum=1`` for a count);
    - ``check``: a callable given the converted value; it raises ``ValueError`` or
      ``TypeError`` with a message saying what is wrong (and may return None).
    - ``sensitive``: the option can run code or send tasks and data elsewhere (a worker
      environment, a scheduler address, credentials). Such an option is refused from a
      config file above the project root unless that file is trusted explicitly (see
      ``docs/security.md``).
    """

    kind: type | tuple[type, ...]
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    check: Callable[[Any], object] | None = None
    sensitive: bool = False

    def _types(self) -> tuple[type, ...]:
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def coerce(self, name: str, value: Any, source: str) -> Any:
        """``value`` checked and converted, or a :class:`ConfigError` naming ``source``."""
        types = self._types()
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok and isinstance(value, str):
            value = self._from_text(name, value, types, source)
            ok = True
        if not ok and isinstance(value, int) and not isinstance(value, bool) and float in types:
            value, ok = float(value), True
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"{source}: option {name!r} expects {names}, got {value!r} ({type(value).__name__})"
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{source}: option {name!r} must be one of "
                f"{', '.join(map(repr, self.choices))}; got {value!r}"
            )
        if (
            self.minimum is not None
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not value >= self.minimum  # also refuses nan
        ):
            raise ConfigError(
                f"{source}: option {name!r} must be at least {self.minimum:g}; got {value!r}"
            )
        if self.check is not None:
            try:
                self.check(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{source}: option {name!r}={value!r}: {exc}") from None
        return value

    @staticmethod
    def _from_text(name: str, text: str, types: tuple[type, ...], source: str) -> Any:
        for t in types:
            if t is str:
                return text
            try:
                if t is bool:
                    low = text.strip().lower()
                    if low in _TRUE or low in _FALSE:
                        return low in _TRUE
                    continue
                if t is int:
                    # int() accepts "1_0" as 10: only plain digits read as a number here.
                    if _INT_TEXT.match(text):
                        return int(text)
                    continue
                if t is float:
                    if "_" not in text:
                        return float(text)
                    continue
            except ValueError:
                continue
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{source}: option {name!r} expects {names}, got {text!r}")


def cancel_unqueued(fut: cf.Future[Any]) -> bool:
    """Cancel a future that no pool will dequeue, and tell its waiters.

    A pool calls ``set_running_or_notify_cancel()`` on each future it dequeues; a future a
    backend made itself (mirroring an engine's own) is never dequeued, so without this
    ``wait()`` and ``as_completed()`` would not count it as done. Safe from any thread.
    """
    return _compat.cancel_and_notify(fut)


class PendingFutures:
    """The futures an executor handed out that are not done yet (thread-safe): a helper
    for backends whose engine cannot cancel its queue itself (``shutdown(cancel_futures=
    True)``, ``kill``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: set[cf.Future[Any]] = set()

    def track(self, fut: cf.Future[Any]) -> cf.Future[Any]:
        with self._lock:
            self._futures.add(fut)
        fut.add_done_callback(self._forget)
        return fut

    def _forget(self, fut: cf.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def cancel_all(self) -> None:
        with self._lock:
            pending = list(self._futures)
        for fut in pending:
            fut.cancel()


class Backend(abc.ABC):
    """Base class of every backend, built-in or third-party.

    Subclasses set :attr:`crosses`, declare :attr:`options`, and implement :meth:`open`.
    Register the class under the entry-point group ``anyexec.backends``; the entry point's
    name is the backend's name. ``docs/writing-a-backend.md`` is the full contract, and the
    conformance suite (``python -m pytest -p anyexec.testing --anyexec-backend=NAME``)
    checks every rule of it. In short, the executor :meth:`open` returns must:

    - run each submitted ``Call``/``Chunk`` exactly once, in a worker (never inside
      ``submit``, unless :attr:`crosses` is ``"nothing"``), up to ``workers`` at a time, and
      hand back exactly what it returned (``None`` included) or raised;
    - return *standard futures*: they always complete (result, exception or cancelled); a
      queued call can be cancelled and then never runs (call
      ``set_running_or_notify_cancel()`` before running one); a started call is
      ``running()`` and ``cancel()`` returns False for it; each done callback runs once;
    - fail the futures of a dead worker's calls with ``concurrent.futures.BrokenExecutor``
      (or a subclass): anyexec reports it as :class:`~anyexec.errors.WorkerLost` and
      ``map(retries=)`` acts on it; no other exception type does;
    - set a pickling error on the future or raise it from ``submit``, never drop it;
    - honour ``shutdown(wait=True, *, cancel_futures=False)`` as the standard library does,
      in bounded time, and leave no process or thread behind.
    """

    #: The backend's name; the registry sets it from the entry point.
    name: str = ""
    #: What crosses into the workers, and what that turns on in the core:
    #: ``"nothing"``, calls run inside ``submit`` in the caller's thread (nothing is ever
    #: pending); ``"threads"``, nothing is pickled; ``"processes"``, pickling errors become
    #: :class:`~anyexec.errors.UnpicklableError`, ``BrokenExecutor`` becomes
    #: :class:`~anyexec.errors.WorkerLost`, and large numpy arrays go through shared memory
    #: (``/dev/shm``); ``"cluster"``, as ``"processes"``, with shared memory only for an
    #: executor whose workers :meth:`shares_memory` says are on this machine. Workers that
    #: may run on another host must say ``"cluster"``.
    crosses: ClassVar[Crossing] = "threads"
    #: The options :meth:`open` accepts. Anything else is rejected with a ConfigError.
    options: ClassVar[Mapping[str, Option]] = {}
    #: Largest useful worker count (``serial`` says 1), or None for no limit.
    max_workers: ClassVar[int | None] = None
    #: Whether an executor can be opened again after shutdown (``with ex:`` after a close).
    reopenable: ClassVar[bool] = True
    #: Chunks ``map`` keeps in flight per worker by default (``buffersize="auto"``); more
    #: where each submission round trip is slow (a cluster scheduler).
    chunks_per_worker: ClassVar[int] = 4
    #: Per-chunk run time that adaptive chunking aims at; raise it where each submission
    #: costs more (a cluster scheduler), lower it where latency matters.
    target_chunk_seconds: ClassVar[float] = 0.02
    #: How ``task_timeout`` acts on a running *plain* function (coroutines are cancelled on
    #: every backend): ``"worker"``, the worker stops the call itself (a timer signal where
    #: tasks run in a process's main thread; where workers are processes that run tasks in
    #: threads, the call is abandoned inside the worker and the backend restarts a worker
    #: that :func:`abandoned_threads` says holds one); ``"abandon"``, the caller gives up on
    #: the call (it runs on, its result discarded) and the pool gets a replacement worker
    #: through :meth:`grow`, for ``map`` only; ``"none"``, a time limit on a plain function is
    #: refused with a ConfigError.
    timeout_mode: ClassVar[TimeoutMode] = "none"
    #: How to get this backend when it is missing, shown in error messages.
    install_hint: ClassVar[str] = ""

    @abc.abstractmethod
    def open(self, workers: int, **options: Any) -> cf.Executor:
        """Start and return an executor with ``workers`` workers.

        Called by :class:`anyexec.Executor` on first use, after a reopen, and to replace an
        executor whose ``submit`` raised ``BrokenExecutor``. ``workers`` is a positive int
        capped at :attr:`max_workers`. ``options`` holds only the options that were set
        somewhere (argument, ``using()``, environment, config file), already checked
        against :attr:`options`: one nobody set is absent, so apply your own default.
        """

    def submit_batch(
        self, executor: cf.Executor, calls: Sequence[Callable[[], Any]]
    ) -> list[cf.Future[Any]]:
        """Submit several zero-argument calls at once; override where the engine has a
        faster native path (dask's ``client.map``). Called by ``map`` with the chunks it
        has ready. Must return one standard future per call, in order, without waiting
        for any of them (``map(timeout=)`` is checked while they run)."""
        return [executor.submit(call) for call in calls]

    def release(self, executor: cf.Executor) -> None:
        """Free what :meth:`open` created beyond the executor (a cluster it started).

        Called once after ``executor.shutdown()``. Never close what was merely connected to.
        """

    def shares_memory(self, executor: cf.Executor) -> bool:
        """Whether ``executor``'s workers are processes on this machine, run by this user,
        that can open the files the caller writes in ``/dev/shm``: numpy arrays of 1 MiB
        or more in a ``map``'s items then reach them through one shared-memory file each
        (the chunk carries a small handle, the worker maps the file) instead of being
        pickled, unless the map says ``share_arrays=False``.

        Called by :class:`anyexec.Executor` before it submits each batch of ``map``
        chunks, with the executor that batch goes to; keep it cheap, and give one answer
        per executor. Only asked where :attr:`crosses` is ``"processes"`` or
        ``"cluster"``. The default says yes exactly where :attr:`crosses` is
        ``"processes"``. A ``"cluster"`` backend says yes only for an executor whose every
        worker, replacements included, is sure to run here (dask: the embedded cluster it
        started on 127.0.0.1, never a cluster it connected to): a file path means nothing
        on another host.
        """
        return self.crosses == "processes"

    def kill(self, executor: cf.Executor) -> None:
        """Stop the tasks running now (``Executor.kill_running``, and Ctrl-C leaving a
        ``with`` block).

        Afterwards the futures of the stopped calls must be done: failed with
        ``BrokenExecutor`` (reported as WorkerLost) or cancelled, never pending. Queued
        calls may run later or fail the same way. The executor must then accept new calls,
        or raise ``BrokenExecutor`` from ``submit``, upon which anyexec shuts it down and
        calls :meth:`open` for a fresh one. The default says this backend cannot: threads
        cannot be stopped from outside.
        """
        raise Unsupported(
            f"backend {self.name!r} cannot stop running tasks; only pending ones can be "
            f"cancelled (see docs/reliability.md)"
        )

    def exit_codes(self, executor: cf.Executor | None) -> list[str]:
        """How workers of a broken ``executor`` ended (``EXIT(3)``, ``SIGKILL(-9)``), for
        the WorkerLost message; empty where the backend cannot tell (or says it itself).

        Called when a future failed with ``BrokenExecutor``; ``executor`` is the one in use
        or the broken one just replaced, or None when anyexec holds neither."""
        return []

    def grow(self, executor: cf.Executor, workers: int) -> None:
        """Add (or, negative, remove) worker capacity; used when a timed-out task is
        abandoned. Only called where :attr:`timeout_mode` is ``"abandon"``: ``map`` calls
        ``grow(executor, 1)`` when it abandons a call, and ``grow(executor, -1)`` once
        that call has ended by itself."""
        raise Unsupported(f"backend {self.name!r} cannot change its worker count")

    def describe(self) -> str:
        """One line for ``anyexec backends``."""
        doc = (type(self).__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
