"""The ``dask`` backend: the user's dask cluster, or an embedded one anyexec starts.

Which cluster (:func:`describe` says which, and ``anyexec config`` prints it):

1. the ``client=`` option, a ``distributed.Client`` the caller made;
2. ``address=`` / ``scheduler_file=``: a running scheduler, connected to with ``security=``;
3. the process's default client (``distributed.default_client()``), e.g. one a user made
   for dask-jobqueue, Kubernetes or a hosted cluster: used, never a second cluster beside it;
4. otherwise an embedded cluster, hosted by a subprocess (``anyexec_dask._host``) that
   anyexec starts and always reaps, with per-cluster temporary TLS credentials.

Clusters of 1-3 belong to the user: ``shutdown`` releases anyexec's futures and leaves them
running. Tasks go through the client; ``map`` chunks are sent in one ``client.map`` batch.
Every future handed back is a standard ``concurrent.futures.Future``.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import logging
import os
import pickle
import queue
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import distributed
import distributed.protocol.pickle as dask_pickle

import anyexec
import anyexec.errors
from anyexec import Backend, ConfigError, Option, Unsupported, WorkerLost, _compat
from anyexec.contract import Chunk, abandoned_threads, cancel_unqueued

__all__ = ["DaskBackend", "DaskExecutor", "SchedulerLost", "SchedulerUnreachable", "describe"]

_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|ucx|inproc)://(\[[0-9a-fA-F:]+\]|[^:/\s]+):\d{1,5}$")

# Defined in anyexec.errors (re-exported here, where they were first defined).
SchedulerLost = anyexec.errors.SchedulerLost
SchedulerUnreachable = anyexec.errors.SchedulerUnreachable


# -- in the worker ----------------------------------------------------------------------


def _run(call: Callable[..., Any], *args: Any) -> bytes:
    """Run one anyexec call (``Call`` or ``Chunk``) in a dask worker; return its result
    pickled here, in the task.

    Pickling inside the task makes a result that cannot be sent, or whose pickling kills
    the worker, a failure *of the task*: dask counts it against ``allowed-failures`` and
    ends in ``KilledWorker`` (anyexec's ``WorkerLost``), where a worker dying while the
    client fetches a finished result would make dask compute it again forever.
    """
    # A task's SystemExit and the like never reach here: the core's Call and Chunk turn
    # them into the task's TaskAborted outcome in the worker.
    try:
        value = call(*args)
    finally:
        if abandoned_threads():
            _restart_when_idle()
    try:
        data: bytes = dask_pickle.dumps(value)
        return data
    except Exception as exc:
        raise anyexec.UnpicklableError(
            f"backend 'dask' could not send back a result of type "
            f"{type(value).__module__}.{type(value).__qualname__}: {type(exc).__name__}: {exc}"
        ) from None


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


#: At most this many seconds between a result finishing on a worker and its fetch from the
#: caller, while the results thread waits for more to fetch in the same round trip.
LINGER = 0.02

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


def _run_scattered(chunk: Chunk, *arrays: Any) -> bytes:
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
    workers, so removals only update the worker list here. Runs in the host subprocess
    (``anyexec_dask._host``).
    """

    def _update_worker_status(self, op: str, msg: Any) -> None:
        if op == "remove":
            _compat.update_worker_status_removal(self, op, msg)
        else:
            super()._update_worker_status(op, msg)


# -- in the caller ----------------------------------------------------------------------


class _Host:
    """The caller's handle on the embedded cluster's host subprocess (``_host``).

    Started in its own process group (a Ctrl-C in the terminal reaches the caller only;
    the caller closes the cluster), told what to start over its stdin, and answering the
    scheduler's address over a private pipe. ``close`` closes its stdin, on which the host
    kills its group; if it has not gone within ``grace`` seconds the caller kills the
    group. If the caller dies, its end of stdin closes all the same.
    """

    def __init__(self, spec: Any, start_timeout: float = 120.0) -> None:
        from anyexec_dask._host import HostSpec

        assert isinstance(spec, HostSpec)
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "anyexec_dask._host", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        try:
            if spec.security is None:
                # Per-cluster credentials, made while the host imports distributed.
                try:
                    spec.security = distributed.Security.temporary()
                except ImportError as exc:
                    raise anyexec.BackendUnavailable(
                        f"backend 'dask': the embedded cluster needs the 'cryptography' "
                        f"package for its TLS credentials ({exc}); pip install cryptography"
                    ) from exc
            self.security = spec.security
            payload = pickle.dumps(spec)
            assert self.proc.stdin is not None
            self.proc.stdin.write(struct.pack("!I", len(payload)) + payload)
            self.proc.stdin.flush()
            answer = _read_line(read_fd, start_timeout)
        except BaseException:
            self.close(grace=0)
            raise
        finally:
            os.close(read_fd)
        reply = json.loads(answer) if answer else {}
        if "address" not in reply:
            code = self.proc.poll()
            self.close(grace=0)
            raise RuntimeError(
                "backend 'dask': the embedded cluster did not start "
                + (f"(its host exited with code {code})" if code is not None else "in time")
                + (f": {reply['error']}" if "error" in reply else "")
            )
        self.address: str = reply["address"]
        self.dashboard: str | None = reply.get("dashboard")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self, grace: float = 5.0) -> None:
        """End the cluster: close the host's stdin (it then kills its process group), and
        kill the group from here if the host is still there after ``grace`` seconds."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # the group outlives its leader only if something in it survived
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _read_line(fd: int, timeout: float) -> str:
    """One line from ``fd`` within ``timeout`` seconds ('' at end of file or timeout)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        block = os.read(fd, 65536)
        if not block:
            break
        data += block
    return data.decode(errors="replace").split("\n", 1)[0]


def _own_client(address: str | None, **kwargs: Any) -> distributed.Client:
    """A client of anyexec's own, not the default one. Its connection to the scheduler
    keeps only the last few messages for debugging (each update-graph message holds whole
    chunks of a map's items; dask's default of 1000 kept a long map's inputs alive in the
    caller)."""
    import dask.config

    from anyexec_dask._host import LOG_LENGTH

    with dask.config.set({"distributed.admin.low-level-log-length": LOG_LENGTH}):
        return distributed.Client(address, set_as_default=False, **kwargs)


def _default_client() -> distributed.Client | None:
    try:
        client: distributed.Client = distributed.default_client()
    except ValueError:
        return None
    return client


def _scheduler_address(client: distributed.Client) -> str:
    return str(getattr(client.scheduler, "address", "") or "")


def describe(options: dict[str, Any]) -> str:
    """Which cluster ``open`` with these options would use, in words (for ``anyexec
    config`` and error messages); the same order as ``DaskExecutor`` applies."""
    if options.get("client") is not None:
        return "the distributed.Client given as option client"
    if options.get("address") is not None:
        return f"the scheduler at {options['address']} (option address)"
    if options.get("scheduler_file") is not None:
        return f"the scheduler in {options['scheduler_file']} (option scheduler_file)"
    default = _default_client()
    if default is not None:
        return f"the process's default distributed.Client ({_scheduler_address(default)})"
    return "an embedded cluster in a subprocess (TLS, per-cluster credentials)"


class _DaskFuture(cf.Future):  # type: ignore[type-arg]
    """A standard future mirroring one dask future.

    ``running()`` asks the scheduler whether the task is "processing", i.e. handed to a
    worker, only while the future is pending, and remembers a yes. A worker may hold up to
    ``distributed.scheduler.worker-saturation`` (1.1) tasks per thread, so "processing"
    can include a task about to start. ``cancel()`` of such a task returns False and the
    task runs on, as the standard library's does.
    """

    def __init__(self, inner: distributed.Future[Any], owner: DaskExecutor) -> None:
        super().__init__()
        self._inner: distributed.Future[Any] | None = inner
        self._owner = weakref.ref(owner)
        self._asked_to_cancel = False
        self._killed = False

    def running(self) -> bool:
        if super().running():
            return True
        if self.done():
            return False
        inner, owner = self._inner, self._owner()
        if inner is None or owner is None or not owner._processing({inner.key}):
            return False
        try:
            self.set_running_or_notify_cancel()
        except RuntimeError:  # done or cancelled meanwhile
            return False
        return super().running()

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        if self.running():
            return False
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


#: distributed's coroutine that waits, on the client's event loop, for a future to finish
#: and then calls a function with it (what ``Future.add_done_callback`` runs, before handing
#: the call to a thread); None where this distributed has none.
_DONE_CALLBACK: Callable[..., Any] | None = _compat.dask_done_callback()

_LIVE: weakref.WeakSet[DaskExecutor] = weakref.WeakSet()  # open executors, for exit
_CLOSERS: set[threading.Thread] = set()  # closing after shutdown(wait=False), for exit


def _stopped_by_kill() -> WorkerLost:
    return WorkerLost("backend 'dask': the task was stopped by kill_running()")


class DaskExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` over a ``distributed.Client``."""

    def __init__(self, workers: int, options: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._pending: dict[distributed.Future[Any], _DaskFuture] = {}
        # futures whose results the results thread is fetching now (out of _pending):
        # kill_running() stops them too, and shutdown waits for them
        self._fetching: set[_DaskFuture] = set()
        # finished dask futures, for the results thread (_fetch); None stops it
        self._ready: queue.SimpleQueue[distributed.Future[Any] | None] = queue.SimpleQueue()
        self._fetcher: threading.Thread | None = None
        self._closed = False
        self.host: _Host | None = None
        self.owns_client = True
        self.source = describe(options)
        timeout = options.get("connect_timeout", 10)
        security = options.get("security")
        address = options.get("address")
        scheduler_file = options.get("scheduler_file")
        given = options.get("client")
        default = None if given is not None or address or scheduler_file else _default_client()
        if given is not None or default is not None:
            chosen = given if given is not None else default
            assert chosen is not None
            self.client: distributed.Client = chosen
            self.owns_client = False
            self.address = _scheduler_address(chosen)
        elif address is not None or scheduler_file is not None:
            where = address or f"the scheduler file {scheduler_file}"
            try:
                self.client = _own_client(
                    address,
                    scheduler_file=scheduler_file,
                    timeout=timeout,
                    security=security,
                )
            except (OSError, TimeoutError, ValueError) as exc:
                raise SchedulerUnreachable(
                    f"backend 'dask': cannot reach a dask scheduler at {where} within "
                    f"{timeout} s (option connect_timeout): {exc}. Check that `dask scheduler` "
                    f"runs there, or leave address unset to start an embedded cluster"
                ) from None
            self.address = str(address or _scheduler_address(self.client))
        else:
            from anyexec_dask._host import HostSpec

            self.host = _Host(
                HostSpec(
                    n_workers=workers,
                    threads_per_worker=options.get("threads_per_worker", 1),
                    memory_limit=options.get("memory_limit", "auto"),
                    dashboard=bool(options.get("dashboard", False)),
                    security=security,
                    sys_path=list(sys.path),
                )
            )
            try:
                self.client = _own_client(
                    self.host.address,
                    security=self.host.security,
                    timeout=max(timeout, 30),
                )
            except BaseException:
                self.host.close(grace=0)
                raise
            self.address = self.host.address
        _LIVE.add(self)

    @property
    def dashboard_link(self) -> str | None:
        return self.host.dashboard if self.host is not None else None

    # -- futures ------------------------------------------------------------------------

    def _processing(self, keys: set[Any]) -> set[Any]:
        """Those of ``keys`` the scheduler has handed to a worker (one round trip)."""
        try:
            busy = self.client.processing()
        except Exception:  # closed or unreachable: nothing known to be running
            return set()
        return keys.intersection(k for ks in busy.values() for k in ks)

    def _wrap(self, inner: distributed.Future[Any]) -> _DaskFuture:
        outer = _DaskFuture(inner, self)
        with self._lock:
            self._pending[inner] = outer  # keeps the dask future, hence the task, alive
            if self._fetcher is None:
                self._fetcher = threading.Thread(
                    target=self._fetch, name="anyexec-dask-results", daemon=True
                )
                self._fetcher.start()
        return outer

    def _watch(self, inners: list[distributed.Future[Any]]) -> None:
        """Have each of ``inners`` put on the results thread's queue once finished.

        ``distributed.Future.add_done_callback`` wakes the client's event loop once per
        future and runs each callback through a thread of its own; here one wake-up of the
        loop watches the whole batch and the loop itself queues each finished future."""
        loop = self.client.loop
        if _DONE_CALLBACK is None or loop is None:  # one callback (and thread hop) each
            for inner in inners:
                inner.add_done_callback(self._ready.put)
            return
        loop.add_callback(self._watch_on_loop, loop, _DONE_CALLBACK, inners)

    def _watch_on_loop(
        self, loop: Any, done_callback: Callable[..., Any], inners: list[distributed.Future[Any]]
    ) -> None:
        put = self._ready.put
        for inner in inners:
            loop.add_callback(done_callback, inner, put)

    def _fetch(self) -> None:
        """The results thread: copies each finished dask future into its standard one.

        dask runs done-callbacks one at a time on one thread; fetching each result there
        (a round trip to the cluster per task) made results queue up behind each other.
        Here finished futures are fetched together, one ``client.gather`` per batch
        (:meth:`_next_batch` says when a batch is complete)."""
        while True:
            batch = self._next_batch()
            stop = None in batch  # closed: what came with the sentinel is settled first
            self._copy([inner for inner in batch if inner is not None])
            # Hold no dask future while waiting for the next: each one held keeps its
            # result on a worker (and a worker due for a restart busy).
            del batch
            if stop:
                return

    def _next_batch(self) -> list[distributed.Future[Any] | None]:
        """The next finished futures to fetch in one ``gather``: at least one, then more
        while they come, until a quarter of the pending futures are in (a map's window
        is refilled a quarter at a time), every pending future is in, or ``LINGER``
        seconds passed since the first.

        Each ``gather`` is a round trip through the scheduler to the workers that costs
        all three processes CPU; fetching whatever had finished at each moment made
        one round trip per one or two results on short tasks, and those round trips,
        competing with the tasks for the cores, set the pace."""
        ready = self._ready
        batch = [ready.get()]
        deadline = time.monotonic() + LINGER
        while batch[-1] is not None:
            with self._lock:
                pending = len(self._pending)
            if len(batch) >= max(1, pending // 4) or len(batch) >= pending:
                # Enough for a batch, or all there is: take what is ready, no more waiting.
                try:
                    while batch[-1] is not None:
                        batch.append(ready.get_nowait())
                except queue.Empty:
                    pass
                break
            left = deadline - time.monotonic()
            try:
                batch.append(ready.get(timeout=left) if left > 0 else ready.get_nowait())
            except queue.Empty:
                break
        return batch

    def _copy(self, batch: list[distributed.Future[Any]]) -> None:
        with self._lock:
            taken = [(inner, self._pending.pop(inner, None)) for inner in batch]
            # Out of _pending, kill_running() still counts them: a result may be lost
            # mid-fetch when it restarts the workers.
            self._fetching.update(outer for _, outer in taken if outer is not None)
        try:
            self._copy_taken(taken)
        finally:
            with self._lock:
                self._fetching.difference_update(outer for _, outer in taken)

    def _copy_taken(self, taken: list[tuple[distributed.Future[Any], _DaskFuture | None]]) -> None:
        finished: list[tuple[distributed.Future[Any], _DaskFuture]] = []
        for inner, outer in taken:
            if outer is None or outer.done():
                continue
            status = inner.status
            if status in ("pending", "lost"):
                # Done, then its result was lost with a worker before this ran: the
                # scheduler computes it again; wait for that.
                with self._lock:
                    self._pending[inner] = outer
                self._watch([inner])
                continue
            # Let go of the dask future once copied: the scheduler then frees its result
            # on the worker now, not whenever the caller's future is garbage-collected.
            outer._inner = None
            if status == "finished":
                finished.append((inner, outer))
            else:
                self._settle(inner, outer, str(status))
        if not finished:
            return
        try:
            values = self.client.gather([inner for inner, _ in finished])
        except Exception:  # one by one, so that each gets its own outcome
            for inner, outer in finished:
                self._settle(inner, outer, "finished")
            return
        for (_, outer), value in zip(finished, values):
            self._deliver(outer, value)

    def _deliver(self, outer: _DaskFuture, value: bytes) -> None:
        try:
            outer.set_result(pickle.loads(value))
        except cf.InvalidStateError:  # cancelled meanwhile
            pass
        except Exception as exc:  # the result cannot be loaded here
            try:
                outer.set_exception(exc)
            except cf.InvalidStateError:
                pass

    def _settle(self, inner: distributed.Future[Any], outer: _DaskFuture, status: str) -> None:
        try:
            if status == "finished":
                self._deliver(outer, inner.result())
            elif status == "cancelled":
                if outer._killed:
                    outer.set_exception(_stopped_by_kill())
                elif outer._asked_to_cancel:
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
        except Exception as exc:  # the result could not be fetched
            if not outer.done():
                gone: Exception
                if outer._killed:  # kill_running() restarted the workers that held it
                    gone = _stopped_by_kill()
                else:  # the scheduler went away
                    gone = SchedulerLost(
                        f"backend 'dask': the connection to the scheduler at {self.address} "
                        f"was lost while fetching the task's result: "
                        f"{type(exc).__name__}: {exc}"
                    )
                gone.__cause__ = exc
                try:
                    outer.set_exception(gone)
                except cf.InvalidStateError:
                    pass

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if args or kwargs:
            fn = _Bound(fn, args, kwargs)
        inner = _sent(self.client.submit, _run, fn, pure=False)
        outer = self._wrap(inner)
        self._watch([inner])
        return outer

    def submit_batch(self, calls: Sequence[Callable[[], Any]]) -> list[cf.Future[Any]]:
        """Chunks go in one ``client.map``; a chunk holding large numpy arrays scatters them
        to the workers first (sent once, not embedded in the graph) and is submitted on
        its own with the scattered futures as arguments. On the embedded cluster the core
        has already put such arrays in shared memory (:meth:`DaskBackend.shares_memory`),
        so its chunks hold small handles and nothing is scattered, unless the map said
        ``share_arrays=False``."""
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
            inner = _sent(self.client.submit, _run_scattered, skeleton, *futures, pure=False)
            out[i] = self._wrap(inner)
            self._watch([inner])
        if plain:
            batch = [calls[i] for i in plain]
            mapped = _sent(self.client.map, _run, batch, pure=False)
            for i, fut in zip(plain, mapped):
                out[i] = self._wrap(fut)
            self._watch(mapped)
        return [f for f in out if f is not None]

    def kill(self) -> None:
        with self._lock:
            pending = dict(self._pending)
            for outer in [*pending.values(), *self._fetching]:
                outer._killed = True
        if pending:
            self.client.cancel(list(pending), force=True)
        self.client.restart(wait_for_workers=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As the standard library's: ``cancel_futures`` cancels what no worker has
        started (calls already running run on and are not marked cancelled); ``wait``
        waits for the rest. ``wait=False`` returns at once and closes the client (and an
        embedded cluster) from a thread once the pending calls are done, so their
        futures still deliver; the interpreter waits for that thread at exit."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        if cancel_futures:
            self._cancel_queued()
        if wait:
            self._wait_pending()
            self._close()
        else:
            closer = threading.Thread(
                target=self._close_when_done, name="anyexec-dask-close", daemon=False
            )
            _CLOSERS.add(closer)
            closer.start()

    def _cancel_queued(self) -> None:
        with self._lock:
            pending = dict(self._pending)
        if not pending:
            return
        busy = self._processing({inner.key for inner in pending})
        queued = [inner for inner in pending if inner.key not in busy]
        for inner in queued:
            pending[inner]._asked_to_cancel = True
        try:
            self.client.cancel(queued)
        except Exception:  # the client already closed (at interpreter exit)
            pass
        for inner in queued:
            pending[inner].cancel_and_notify()

    def _wait_pending(self) -> None:
        with self._lock:  # those being fetched too: closing the client would lose them
            pending = [*self._pending.values(), *self._fetching]
        # Wait on our own futures: distributed.wait() needs a default client, and ours
        # is deliberately not the default one.
        cf.wait(pending)

    def _close_when_done(self) -> None:
        try:
            self._wait_pending()
            self._close()
        finally:
            _CLOSERS.discard(threading.current_thread())

    def _close(self) -> None:
        self._ready.put(None)  # the results thread ends once it handled what came before
        if not self.owns_client:  # the user's client and cluster: ours are released
            with self._lock:
                pending = list(self._pending)
            if pending:
                try:
                    self.client.cancel(pending)
                except Exception:
                    pass
            return
        try:
            self.client.close(timeout=5)
        except Exception:  # already closed, or the scheduler went away
            pass
        if self.host is not None:  # ours: end it; a cluster merely connected to stays up
            self.host.close()


def _sent(submit: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``client.submit``/``client.map``; dask's serialization failure becomes a
    ``pickle.PicklingError`` naming the root cause (dask's error as ``__cause__``), which
    anyexec's core turns into ``UnpicklableError`` naming the argument. dask's own
    "Failed to serialize" log record for it is dropped (:class:`_QuietPickling`)."""
    _QUIET.active = True
    try:
        return submit(*args, **kwargs)
    except TypeError as exc:
        if "serialize" not in str(exc) and "pickle" not in str(exc):
            raise
        root: BaseException = exc
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        raise pickle.PicklingError(
            f"cannot pickle a task for dask: {type(root).__name__}: {root}"
        ) from exc
    finally:
        _QUIET.active = False


class _QuietPickling(logging.Filter):
    """Drops distributed's ERROR/CRITICAL records with a traceback for a payload that
    failed to (de)serialize, where anyexec reports that failure as the task's error: a
    "Failed to serialize" while anyexec submits (this thread), and a "Failed to
    deserialize" while an anyexec dask executor is open. Logs stay quiet, as
    docs/security.md promises; other distributed records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith("Failed to serialize"):
            return not getattr(_QUIET, "active", False)
        if text.startswith("Failed to deserialize"):
            return not _LIVE
        return True


_QUIET = threading.local()
for _name in ("distributed.protocol.pickle", "distributed.protocol.core"):
    logging.getLogger(_name).addFilter(_QuietPickling())


class _Bound:
    """``fn(*args, **kwargs)`` as one picklable call (keeps ``submit``'s arguments out of
    dask's own argument handling, which would treat dask futures and collections in them
    specially)."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


def _finish_at_exit() -> None:
    """As the standard library does at interpreter exit, wait for the work submitted to
    every executor not shut down, then close it. After an uncaught Ctrl-C the user wants
    out: calls no worker has started are cancelled instead of run."""
    interrupted = isinstance(
        getattr(sys, "last_exc", None) or getattr(sys, "last_value", None), KeyboardInterrupt
    )
    for ex in list(_LIVE):
        try:
            ex.shutdown(wait=True, cancel_futures=interrupted)
        except Exception:
            pass
    for closer in list(_CLOSERS):  # shut down with wait=False: their work still runs
        closer.join()


def validate(options: dict[str, Any]) -> None:
    """Check the dask options up front (``open`` calls this), each failure a
    ``ConfigError`` naming the option, not a raw error from dask at first use."""
    address = options.get("address")
    if address is not None:
        if "://" not in address:
            address = options["address"] = f"tcp://{address}"
        if not _ADDRESS.match(address):
            raise ConfigError(
                f"option address={address!r} is not a dask scheduler address; "
                f"expected tcp://HOST:PORT (or tls://HOST:PORT)"
            )
    client = options.get("client")
    if client is not None and not isinstance(client, distributed.Client):
        raise ConfigError(
            f"option client={client!r} is not a distributed.Client; pass the client you "
            f"made (distributed.Client(...)), or use address= for a scheduler address"
        )
    threads = options.get("threads_per_worker")
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ConfigError(
            f"option threads_per_worker={threads!r} must be a whole number of threads, at least 1"
        )
    memory = options.get("memory_limit")
    if memory is not None and memory != "auto":
        from dask.utils import parse_bytes

        try:
            ok = parse_bytes(memory) >= 0
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ConfigError(
                f"option memory_limit={memory!r} is not a size: use 'auto' (the default: "
                f"the machine's memory shared among the workers), or a size such as "
                f"'4GiB' or '500MB'"
            )
    security = options.get("security")
    if security is not None and not isinstance(security, distributed.Security):
        raise ConfigError(
            f"option security={security!r} is not a distributed.Security; make one with "
            f"distributed.Security(tls_ca_file=..., ...) or distributed.Security.temporary()"
        )


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
    """dask.distributed: the user's cluster (client, address, default client) or an
    embedded one."""

    crosses = "cluster"
    # task_timeout: a worker thread cannot be interrupted, so the call is abandoned in the
    # worker (anyexec._worker.watch) and that worker restarted by its nanny once idle.
    timeout_mode = "worker"
    # Each submission costs ~1-2 ms in the scheduler: aim chunks at 100 ms.
    target_chunk_seconds = 0.1
    # A client.map round trip costs milliseconds: keep more chunks queued at the scheduler.
    chunks_per_worker = 16
    options = {
        "client": Option(
            object, "A distributed.Client to run on (the user's own cluster).", sensitive=True
        ),
        "address": Option(
            str, "Scheduler address tcp://HOST:PORT or tls://HOST:PORT.", sensitive=True
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
        "security": Option(
            object, "A distributed.Security for TLS to address/scheduler_file.", sensitive=True
        ),
    }

    def open(self, workers: int, **options: Any) -> cf.Executor:
        validate(options)
        return DaskExecutor(workers, options)

    def describe_cluster(self, options: dict[str, Any]) -> str:
        """Which cluster these options reach (printed by ``anyexec config``)."""
        return describe(options)

    def submit_batch(
        self, executor: cf.Executor, calls: Sequence[Callable[[], Any]]
    ) -> list[cf.Future[Any]]:
        assert isinstance(executor, DaskExecutor)
        return executor.submit_batch(calls)

    def shares_memory(self, executor: cf.Executor) -> bool:
        """Only on the embedded cluster: its workers are processes of this user on this
        machine (the host subprocess anyexec started on 127.0.0.1), so large arrays reach
        them through shared-memory files, not over TLS. A cluster reached through
        ``client=``, ``address=``, ``scheduler_file=`` or the default client may have
        workers on other hosts: its arrays are scattered (:meth:`DaskExecutor.submit_batch`).
        """
        return isinstance(executor, DaskExecutor) and executor.host is not None

    def kill(self, executor: cf.Executor) -> None:
        """Embedded cluster: cancel everything and restart its workers. A cluster merely
        connected to is shared with others, so it is never restarted from here."""
        assert isinstance(executor, DaskExecutor)
        if executor.host is None:
            raise Unsupported(
                "backend 'dask': kill_running() would restart the workers of a cluster "
                f"shared with others ({executor.address}); cancel futures instead"
            )
        executor.kill()


# Before concurrent.futures closes its thread pools at exit: the client delivers results
# through one, and waiting for pending work needs those deliveries.
_compat.register_thread_exit(_finish_at_exit)
