"""Which backend distributions are installed, for tests that need one (the nox cells
install the core plus one backend only)."""

from __future__ import annotations

import importlib.metadata

import pytest


def installed(module: str) -> bool:
    """The backend's distribution is installed (its entry point registered), not merely
    importable."""
    try:
        importlib.metadata.distribution(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_loky = pytest.mark.skipif(not installed("anyexec_loky"), reason="anyexec-loky not installed")
needs_dask = pytest.mark.skipif(not installed("anyexec_dask"), reason="anyexec-dask not installed")
