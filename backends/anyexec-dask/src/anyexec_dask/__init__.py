"""The ``dask`` backend: an embedded ``LocalCluster`` or a running dask scheduler.

Tasks go through a ``distributed.Client``; ``map`` chunks are sent in one ``client.map``
batch. Every future handed back is a standard ``concurrent.futures.Future``.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import distributed

from anyexec import Backend, ConfigError, Option, Unsupported, WorkerLost, _compat
from anyexec.contract import Chunk, abandoned_threads, cancel_unqueued

__all__ = ["DaskBackend", "DaskExecutor", "SchedulerLost", "SchedulerUnreachable"]

_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|ucx|inproc)://(\[[0-9a-fA-F:]+\]|[^:/\s]+):\d{1,5}$")


class SchedulerUnreachable(ConnectionError):
    """No dask scheduler answered at the address within the connect timeout."""


class SchedulerLost(ConnectionError):
    """The connection to the dask scheduler went away while the task was pending."""


def _run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    finally:
        if abandoned_threads():
            _restart_when_idle()


_RESTARTING: set[str] = set()  # workers of this process with a restart scheduled


def _restart_when_idle() -> None:
    """In a worker that abandoned a task past its task_timeout (its thread runs on): have
    the nanny restart the worker process once it holds no task and no result, so the
    restart loses nothing and re-runs nothing. Without a nanny nothing would start it
    again, so the thread is left to run on."""
    try:
        worker = distributed.get_worker()
    except ValueError:
        return
    if not worker.nanny or worker.address in _RESTARTING:
        return
    _RESTARTING.add(worker.address)
    worker.loop.add_callback(_restart_idle, worker)


async def _restart_idle(worker: distributed.Worker) -> None:
    import asyncio

    from distributed.core import Status

    quiet = 0
    while worker.status == Status.running:
        if not abandoned_threads():  # the abandoned calls ended by themselves: no restart
            _RESTARTING.discard(worker.address)
            return
        quiet = 0 if worker.state.tasks else quiet + 1
        if quiet >= 3:  # idle for three looks in a row, 0.3 s
            await worker.close_gracefully(
                restart=True, reason="anyexec: a task's thread was abandoned past task_timeout"
            )
            return
        await asyncio.sleep(0.1)


#: Arrays at least this large (bytes) are scattered to the workers once, not pickled into
#: the task graph.
SCATTER_THRESHOLD = 1 << 20


class _Slot:
    """Stands in a chunk's arguments for the i-th scattered array."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i

    def __getstate__(self) -> int:
        return self.i

    def __setstate__(self, i: int) -> None:
        self.i = i


def _run_scattered(chunk: Chunk, *arrays: Any) -> Any:
    """In the worker: put the scattered arrays (dask resolved the futures) back in place."""
    return _run(chunk.remapped(lambda a: arrays[a.i] if type(a) is _Slot else a))


def _to_slot(slots: dict[int, _Slot], value: Any) -> Any:
    return slots.get(id(value), value)


def _big_arrays(chunk: Chunk) -> list[Any]:
    np = sys.modules.get("numpy")
    if np is None:
        return []
    found: dict[int, Any] = {}
    for a in chunk.values():
        if isinstance(a, np.ndarray) and a.nbytes >= SCATTER_THRESHOLD:
            found[id(a)] = a
    return list(found.values())


class _EmbeddedCluster(distributed.LocalCluster):  # type: ignore[misc]
    """A LocalCluster that keeps its nannies: each restarts its worker after a crash.

    SpecCluster closes for good any nanny whose worker is missing 15 s after a worker was
    removed (``distributed.deploy.lost-worker-timeout``); a worker that happens to be
    restarting then, after repeated crashes, is taken away with its nanny, and once both
    are gone every task waits forever. The embedded cluster's nannies always restart their
    workers, so removals only update the worker list here.
    """

    def _update_worker_status(self, op: str, msg: Any) -> None:
        if op == "remove":
            _compat.update_worker_status_removal(self, op, msg)
        else:
            super()._update_worker_status(op, msg)


class _DaskFuture(cf.Future):  # type: ignore[type-arg]
    """A standard future mirroring one dask future; ``cancel`` cancels the dask task."""

    def __init__(self, inner: distributed.Future[Any]) -> None:
        super().__init__()
        self._inner: distributed.Future[Any] | None = inner
        self._asked_to_cancel = False

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        self._asked_to_cancel = True
        try:
            inner = self._inner  # None once the result was copied
            if inner is not None:
                inner.cancel()
        except Exception:  # the client already closed: nothing left to cancel there
            pass
        return self.cancel_and_notify()

    def cancel_and_notify(self) -> bool:
        return cancel_unqueued(self)


class DaskExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` over a ``distributed.Client``."""

    def __init__(self, workers: int, options: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._pending: dict[distributed.Future[Any], _DaskFuture] = {}
        self._closed = False
        self.cluster: distributed.LocalCluster | None = None
        timeout = options.get("connect_timeout", 10)
        security = options.get("security")
        address = options.get("address")
        scheduler_file = options.get("scheduler_file")
        if address is not None or scheduler_file is not None:
            where = address or f"the scheduler file {scheduler_file}"
            try:
                self.client = distributed.Client(
                    address,
                    scheduler_file=scheduler_file,
                    timeout=timeout,
                    security=security,
                    set_as_default=False,
                )
            except (OSError, TimeoutError, ValueError) as exc:
                raise SchedulerUnreachable(
                    f"backend 'dask': cannot reach a dask scheduler at {where} within "
                    f"{timeout} s (option connect_timeout): {exc}. Check that `dask scheduler` "
                    f"runs there, or leave address unset to start an embedded cluster"
                ) from None
            self.address = str(address or self.client.scheduler_info().get("address", ""))
        else:
            self.cluster = _EmbeddedCluster(
                n_workers=workers,
                threads_per_worker=options.get("threads_per_worker", 1),
                processes=True,
                host="127.0.0.1",
                # distributed always starts its HTTP server (dask/distributed#8136):
                # keep it on a free loopback port, and the dashboard pages off.
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": bool(options.get("dashboard", False))},
                # Quiet: workers log heartbeat errors while the cluster closes.
                silence_logs=logging.CRITICAL,
                memory_limit=options.get("memory_limit", "auto"),
                security=security,
            )
            self.client = distributed.Client(self.cluster, set_as_default=False)
            self.address = self.cluster.scheduler_address

    # -- futures ------------------------------------------------------------------------

    def _wrap(self, inner: distributed.Future[Any]) -> _DaskFuture:
        outer = _DaskFuture(inner)
        with self._lock:
            self._pending[inner] = outer  # keeps the dask future, hence the task, alive
        inner.add_done_callback(self._copy)
        return outer

    def _copy(self, inner: distributed.Future[Any]) -> None:
        with self._lock:
            outer = self._pending.pop(inner, None)
        if outer is None or outer.done():
            return
        status = inner.status
        if status in ("pending", "lost"):
            # Done, then its result was lost with a worker before this ran: the scheduler
            # computes it again; wait for that.
            with self._lock:
                self._pending[inner] = outer
            inner.add_done_callback(self._copy)
            return
        # Let go of the dask future once copied: the scheduler then frees its result on
        # the worker now, not whenever the caller's future is garbage-collected.
        outer._inner = None
        try:
            if status == "finished":
                outer.set_result(inner.result())
            elif status == "cancelled":
                if outer._asked_to_cancel or self._closed:
                    outer.cancel_and_notify()
                else:
                    outer.set_exception(
                        SchedulerLost(
                            f"backend 'dask': the task was lost with the connection to the "
                            f"scheduler at {self.address}"
                        )
                    )
            else:  # "error"
                exc = inner.exception()
                if isinstance(exc, distributed.KilledWorker):
                    lost = WorkerLost(
                        f"backend 'dask': every worker that ran this task died (more than "
                        f"distributed.scheduler.allowed-failures times): {exc}"
                    )
                    lost.__cause__ = exc
                    exc = lost
                outer.set_exception(exc)
        except cf.InvalidStateError:  # cancelled meanwhile
            pass
        except Exception as exc:  # the result could not be fetched: the scheduler went away
            if not outer.done():
                outer.set_exception(exc)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return self._wrap(self.client.submit(_run, fn, *args, pure=False, **kwargs))

    def submit_batch(self, calls: Sequence[Callable[[], Any]]) -> list[cf.Future[Any]]:
        """Chunks go in one ``client.map``; a chunk holding large numpy arrays scatters them
        to the workers first (sent once, not embedded in the graph) and is submitted on
        its own with the scattered futures as arguments."""
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        out: list[cf.Future[Any] | None] = [None] * len(calls)
        plain: list[int] = []
        for i, call in enumerate(calls):
            arrays = _big_arrays(call) if isinstance(call, Chunk) else []
            if not arrays:
                plain.append(i)
                continue
            assert isinstance(call, Chunk)
            futures = self.client.scatter(arrays, hash=False)
            slots = {id(a): _Slot(n) for n, a in enumerate(arrays)}
            skeleton = call.remapped(functools.partial(_to_slot, slots))
            out[i] = self._wrap(self.client.submit(_run_scattered, skeleton, *futures, pure=False))
        if plain:
            mapped = self.client.map(_run, [calls[i] for i in plain], pure=False)
            for i, fut in zip(plain, mapped):
                out[i] = self._wrap(fut)
        return [f for f in out if f is not None]

    def kill(self) -> None:
        with self._lock:
            pending = list(self._pending)
        if pending:
            self.client.cancel(pending, force=True)
        self.client.restart(wait_for_workers=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = dict(self._pending)
        if cancel_futures and pending:
            try:
                self.client.cancel(list(pending))
            except Exception:  # the client already closed (at interpreter exit)
                pass
        elif wait and pending:
            # Wait on our own futures: distributed.wait() needs a default client, and
            # ours is deliberately not the default one.
            cf.wait(list(pending.values()))
        self.client.close()
        if self.cluster is not None:  # ours: close it; one we connected to stays up
            self.cluster.close()


def _check_memory_limit(value: str | int | float) -> None:
    """``memory_limit`` as distributed reads it (``parse_memory_limit``): "auto", a number of
    bytes (0: no limit), a fraction of the machine's memory (<= 1), or text such as "4GiB"."""
    import math

    from dask.utils import parse_bytes

    if value == "auto":
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        parse_bytes(str(value))  # ValueError: "Could not interpret 'lots' as a byte unit"
        return
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be 'auto', 0 (no limit), a fraction <= 1, or bytes such as '4GiB'")


class DaskBackend(Backend):
    """dask.distributed: an embedded LocalCluster, or a scheduler at `address`."""

    crosses = "cluster"
    # task_timeout: a worker thread cannot be interrupted, so the call is abandoned in the
    # worker (anyexec._worker.watch) and that worker restarted by its nanny once idle.
    timeout_mode = "worker"
    # Each submission costs ~1-2 ms in the scheduler: aim chunks at 100 ms.
    target_chunk_seconds = 0.1
    # A client.map round trip costs milliseconds: keep more chunks queued at the scheduler.
    chunks_per_worker = 16
    options = {
        "address": Option(
            str, "Scheduler address tcp://HOST:PORT; unset starts a LocalCluster.", sensitive=True
        ),
        "scheduler_file": Option(
            str, "Scheduler file written by `dask scheduler`.", sensitive=True
        ),
        "connect_timeout": Option((int, float), "Seconds to wait for the scheduler (10)."),
        "dashboard": Option(bool, "Serve the embedded cluster's dashboard (off)."),
        "threads_per_worker": Option(int, "Threads per embedded worker process (1).", minimum=1),
        "memory_limit": Option(
            (str, int, float),
            "Memory limit per embedded worker: 'auto' (default), bytes such as '4GiB', "
            "a fraction of the machine's memory, or 0 for none.",
            check=_check_memory_limit,
        ),
        "security": Option(object, "A distributed.Security for TLS.", sensitive=True),
    }

    def open(self, workers: int, **options: Any) -> cf.Executor:
        address = options.get("address")
        if address is not None:
            if "://" not in address:
                address = options["address"] = f"tcp://{address}"
            if not _ADDRESS.match(address):
                raise ConfigError(
                    f"option address={address!r} is not a dask scheduler address; "
                    f"expected tcp://HOST:PORT (or tls://HOST:PORT)"
                )
        return DaskExecutor(workers, options)

    def submit_batch(
        self, executor: cf.Executor, calls: Sequence[Callable[[], Any]]
    ) -> list[cf.Future[Any]]:
        assert isinstance(executor, DaskExecutor)
        return executor.submit_batch(calls)

    def kill(self, executor: cf.Executor) -> None:
        """Embedded cluster: cancel everything and restart its workers. A cluster merely
        connected to is shared with others, so it is never restarted from here."""
        assert isinstance(executor, DaskExecutor)
        if executor.cluster is None:
            raise Unsupported(
                "backend 'dask': kill_running() would restart the workers of a cluster "
                f"shared with others ({executor.address}); cancel futures instead"
            )
        executor.kill()
