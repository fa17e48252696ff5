"""Large numpy arrays cross into workers on this machine through shared memory, not pickles
(where the backend's ``shares_memory`` says its workers can open the files).

The parent writes each array above :data:`THRESHOLD` bytes once to a file in ``/dev/shm``
(a RAM-backed file system; the system temp folder elsewhere) and sends a small
:class:`SharedArray` handle instead; the worker maps the file copy-on-write, so it reads the
data in place and may even write to its view without affecting anyone. This is joblib's
memmapping idea, done per map call: the file is removed as soon as every chunk that uses it
has finished -- succeeded, failed, been cancelled, or lost its worker -- and the folder at
interpreter exit, so nothing is left in ``/dev/shm``.

A process killed by a signal runs no exit handler, so its folder stays. The folder's name
holds its owner's pid: the next anyexec process that shares an array removes every folder of
the same user whose owner is dead (:func:`reap_orphans`). Every file is created 0600 in a
0700 folder, whatever the umask: only the user who ran the program can read the data.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from typing import Any

from anyexec._worker.args import Args
from anyexec._worker.arrays import SharedArray

__all__ = [
    "THRESHOLD",
    "SharedArray",
    "SharedStore",
    "reap_orphans",
    "shared_array",
    "shared_dir",
]

#: Arrays at least this large (bytes) are shared rather than pickled.
THRESHOLD = 1 << 20

_dir_lock = threading.Lock()
_dir: str | None = None

#: Folder names: ``anyexec-<owner pid>-<8 hex digits>``.
_NAME = re.compile(r"anyexec-(\d+)-[0-9a-f]{8}")


def _base() -> str:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def shared_dir() -> str:
    """This process's folder for shared arrays (created on first use, removed at exit).
    Creating it first removes the folders that killed anyexec processes left behind."""
    global _dir
    with _dir_lock:
        if _dir is None:
            base = _base()
            reap_orphans(base)
            _dir = os.path.join(base, f"anyexec-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.makedirs(_dir, mode=0o700)
            os.chmod(_dir, 0o700)  # makedirs' mode is subject to the umask; this is not
            atexit.register(shutil.rmtree, _dir, True)
        return _dir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def reap_orphans(base: str | None = None) -> list[str]:
    """Remove the shared-array folders in ``base`` (``/dev/shm`` by default) that belong to
    this user and whose owner process is gone (killed by SIGKILL or SIGTERM, which run no
    exit handler). Returns the folders removed. A folder whose owner's pid was reused by a
    live process is kept until that process ends too."""
    base = base or _base()
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    me = os.getuid() if hasattr(os, "getuid") else None
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        path = os.path.join(base, name)
        try:
            if me is not None and os.stat(path, follow_symlinks=False).st_uid != me:
                continue
        except OSError:
            continue
        if not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _create(path: str) -> int:
    """A new file for one array, readable and writable by this user only (0600 whatever
    the umask: the umask can only take permission bits away)."""
    return os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)


_created_lock = threading.Lock()
#: id -> (weak reference to an array made by shared_array(), its file)
_created: dict[int, tuple[Any, str]] = {}


def _forget(key: int, path: str) -> None:
    with _created_lock:
        _created.pop(key, None)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def shared_array(shape: int | tuple[int, ...], dtype: Any = float) -> Any:
    """A zeroed numpy array that lives in shared memory from the start.

    Passed to ``map`` on a backend whose workers share this machine's memory (process,
    loky, dask's embedded cluster) it reaches the workers with no copy at all (a plain
    array costs one copy into shared memory). Its file goes when the array does.
    """
    import weakref

    import numpy as np

    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = max(1, int(np.prod(shape)) * dt.itemsize)
    path = os.path.join(shared_dir(), uuid.uuid4().hex)
    fd = _create(path)
    try:
        os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)
    arr = np.memmap(path, dtype=dt, mode="r+", shape=shape)
    key = id(arr)
    with _created_lock:
        _created[key] = (weakref.ref(arr), path)
    weakref.finalize(arr, _forget, key, path)
    return arr


def _own_file(arr: Any) -> str | None:
    with _created_lock:
        entry = _created.get(id(arr))
    if entry is not None and entry[0]() is arr:
        return entry[1]
    return None


def _write(arr: Any, path: str) -> None:
    """The one copy: the array's bytes into a new file in shared memory."""
    import numpy as np

    data = np.ascontiguousarray(arr)
    fd = _create(path)
    try:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
    except (TypeError, ValueError):  # dtypes the buffer protocol lacks (datetime64)
        with os.fdopen(fd, "wb") as fh:
            data.tofile(fh)
        return
    try:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done : done + (1 << 30)])
    finally:
        os.close(fd)


class SharedStore:
    """The parent's side: which arrays are in shared files, and how many chunks use each."""

    def __init__(self, threshold: int = THRESHOLD) -> None:
        self.threshold = threshold
        self._lock = threading.Lock()
        # id(array) -> [handle, users, the array itself (keeps the id from being reused)]
        self._live: dict[int, list[Any]] = {}

    def share(self, items: list[Any], mode: int = 0) -> tuple[list[Any], list[int]] | None:
        """Replace large arrays in ``items`` by handles; None when there are none.

        ``mode`` says how the chunk passes its items (``anyexec._worker.tasks``: argument
        tuples, single values, or starmap's tuples and ``Args``). Returns the new items and the keys
        to :meth:`release` when the chunk is done.
        """
        np = sys.modules.get("numpy")
        if np is None:  # no numpy imported: there can be no arrays
            return None
        ndarray, limit = np.ndarray, self.threshold

        def big(a: Any) -> bool:
            return (
                isinstance(a, ndarray)
                and a.nbytes >= limit
                and a.size > 0
                and (not a.dtype.hasobject)
            )

        keys: list[int] = []

        def swap(a: Any) -> Any:
            return self._handle(a, keys) if big(a) else a

        out: list[Any] | None = None
        for i, item in enumerate(items):
            if mode == 1:
                if not big(item):
                    continue
                new: Any = swap(item)
            elif type(item) is Args:
                if not any(map(big, item.args)) and not any(map(big, item.kwargs.values())):
                    continue
                new = Args(*map(swap, item.args), **{k: swap(v) for k, v in item.kwargs.items()})
            else:
                if not any(map(big, item)):
                    continue
                new = tuple(map(swap, item))
            if out is None:
                out = list(items)
            out[i] = new
        return None if out is None else (out, keys)

    def _handle(self, arr: Any, keys: list[int]) -> SharedArray:
        key = id(arr)
        with self._lock:
            entry = self._live.get(key)
            if entry is not None and entry[2] is arr:
                entry[1] += 1
                keys.append(key)
                return entry[0]  # type: ignore[no-any-return]
        own = _own_file(arr)
        if own is not None:  # made by shared_array(): already in shared memory
            arr.flush()
            keys.append(-1)  # nothing to release: the array owns its file
            return SharedArray(own, arr.dtype.str, tuple(arr.shape))
        path = os.path.join(shared_dir(), uuid.uuid4().hex)
        _write(arr, path)
        handle = SharedArray(path, arr.dtype.str, tuple(arr.shape))
        with self._lock:
            self._live[key] = [handle, 1, arr]
        keys.append(key)
        return handle

    def release(self, keys: list[int]) -> None:
        """A chunk is done (in any way): drop its uses; remove files no chunk needs."""
        gone = []
        with self._lock:
            for key in keys:
                entry = self._live.get(key)
                if entry is None:
                    continue
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._live[key]
                    gone.append(entry[0].path)
        for path in gone:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def files(self) -> int:
        with self._lock:
            return len(self._live)
