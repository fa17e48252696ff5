"""anyexec's own installed metadata, found without ``importlib.metadata``.

Importing ``importlib.metadata`` and scanning every distribution costs 20-200 ms; anyexec's
version and its own entry points are read straight from its ``.dist-info`` folder, the
first one on ``sys.path``, which is the one ``importlib.metadata`` would find first too.
"""

from __future__ import annotations

import os
import sys

__all__ = ["own_dist_info"]

_PREFIX = "anyexec-"
_SUFFIX = ".dist-info"


def own_dist_info() -> tuple[str, str] | None:
    """``(folder, version)`` of anyexec's ``.dist-info``, or None where there is none on
    ``sys.path`` (an egg, a zip, a source tree that was not installed)."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or os.curdir)
        except OSError:
            continue
        for name in names:
            if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                version = name[len(_PREFIX) : -len(_SUFFIX)]
                if version and "-" not in version:  # not anyexec_dask-..., anyexec-x-y
                    return os.path.join(entry or os.curdir, name), version
    return None
