"""The embedded cluster's host: a subprocess that runs the dask scheduler and its nannies.

``DaskExecutor`` (the caller's process) starts ``python -m anyexec_dask._host`` in a new
process group, writes one pickled :class:`HostSpec` to its stdin and reads back one JSON
line with the scheduler's address. The caller's process then only holds a
``distributed.Client``: the scheduler's per-task state (task specs, transition logs,
task-group statistics) lives and grows here, not in the caller.

Reaping: this process keeps its stdin open to the caller. When the caller closes it
(``shutdown``) or dies in any way, ``kill -9`` included, the read returns end-of-file and
this process kills its whole process group, itself, the nannies and the workers, at once
with SIGKILL: everything in the cluster is disposable once its only client is gone. The
caller also kills the group itself if this process does not go within a few seconds.

Security: the caller generates per-cluster temporary TLS certificates
(``distributed.Security.temporary()``) and hands them over the pipe, never through a file;
the scheduler and workers require them, so no other process can connect.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import struct
import sys
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["LOG_LENGTH", "HostSpec", "main"]

#: Messages each dask connection keeps for debugging (``distributed.admin.low-level-log-
#: length``) in anyexec's own clients and embedded clusters: each may hold a whole chunk.
LOG_LENGTH = 8


@dataclass
class HostSpec:
    """What the caller asks the host to start (sent pickled over the host's stdin)."""

    n_workers: int
    threads_per_worker: int
    memory_limit: str | int | float | None
    dashboard: bool
    security: Any  # distributed.Security with the cluster's temporary credentials
    sys_path: list[str]  # the caller's: workers import the caller's modules as it does


def _die_with_group() -> None:
    """Kill this process group (this host, its nannies, their workers) at once.

    First unlink the named semaphores of the queues the nannies made to talk to their
    workers (three per queue, two queues per worker): the resource tracker that would
    unlink them at a normal exit dies with the group, and each would stay in ``/dev/shm``
    for as long as the machine runs."""
    try:
        from anyexec import _compat

        _compat.unlink_named_semaphores()
    except Exception:  # nothing may keep the group alive
        pass
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    finally:  # not a group leader (started by hand): at least go ourselves
        os._exit(0)


def _watch_caller(stdin: Any) -> None:
    """Block until the caller closes our stdin or dies; then take the cluster down."""
    try:
        while stdin.read(65536):
            pass
    except OSError:
        pass
    _die_with_group()


def main() -> None:
    """Read the spec, start the cluster, write its address to the file descriptor named
    on the command line, and live until the caller goes."""
    answer = os.fdopen(int(sys.argv[1]), "w")
    stdin = sys.stdin.buffer
    # The caller's Ctrl-C is the caller's business: it closes us through the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Import distributed (most of this process's start-up) first, while the caller makes
    # the cluster's credentials; then read what to start.
    import dask.config

    from anyexec_dask import _EmbeddedCluster

    (size,) = struct.unpack("!I", stdin.read(4))
    spec: HostSpec = pickle.loads(stdin.read(size))
    sys.path[:] = spec.sys_path  # spawned workers inherit it
    threading.Thread(target=_watch_caller, args=(stdin,), daemon=True).start()

    # Every BatchedSend (scheduler -> workers) keeps its last N messages for debugging,
    # and a compute-task message holds the task's spec: one whole chunk of the map's
    # items. dask's default, 1000, kept every chunk of a 10 M-item map alive. The nannies
    # pass this configuration on to their workers (their logs hold the same specs).
    dask.config.set({"distributed.admin.low-level-log-length": LOG_LENGTH})

    try:
        cluster = _EmbeddedCluster(  # type: ignore[no-untyped-call]
            n_workers=spec.n_workers,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            # distributed always starts its HTTP server (dask/distributed#8136): keep it on a
            # free loopback port, and the dashboard pages off unless asked for.
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": spec.dashboard},
            # Quiet: no tracebacks from workers closing or from payloads failing to load
            # (anyexec reports those as the task's own error).
            silence_logs=logging.CRITICAL + 10,
            memory_limit=spec.memory_limit,
            security=spec.security,
        )
    except Exception as exc:  # e.g. a memory_limit dask cannot read: the caller reports it
        answer.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        answer.close()
        _die_with_group()
    dashboard = cluster.dashboard_link if spec.dashboard else None
    answer.write(json.dumps({"address": cluster.scheduler_address, "dashboard": dashboard}))
    answer.write("\n")
    answer.close()
    threading.Event().wait()  # until _watch_caller ends the group


if __name__ == "__main__":
    main()
