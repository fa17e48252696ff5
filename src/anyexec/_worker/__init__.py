"""Everything that runs inside a worker, in one package.

``tasks`` (the ``Call`` and ``Chunk`` objects the core hands to a backend's executor),
``failures`` (an exception kept at its item's position and made able to travel back),
``timer`` (a SIGALRM limit for workers that run tasks in their main thread), ``watch``
(a limit for calls run in worker threads, which can only be abandoned), ``loops`` (running
coroutines from synchronous code), ``context`` (the "inside a worker" flag), ``arrays``
(shared-array handles), ``limits`` (native thread pools held to a worker's share of the
CPUs) and ``processes`` (the process backend's worker Process classes).

Rules that keep workers cheap to start (a forkserver preloads this package): every module
here imports only the standard library and ``anyexec.errors`` at module level, and the
import graph has no cycle (``tests/test_isolation.py`` checks both).
"""
