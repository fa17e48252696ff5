"""Conformance checks that fail today because of known bugs in the core and the backends.

Each is marked ``xfail`` with its cause, for the backends it affects only (``"*"``: every
backend, the bug is in the core), so the mark goes away with the fix: ``strict=False``
shows a fixed bug as XPASS. Used by ``test_conformance.py``, the plugin written from the
docs, and ``test_conformance_can_fail.py``.
"""

from __future__ import annotations

import pytest

#: (check, a parameter it must have or None, affected backends ("*": all), the cause).
KNOWN_FAILURES: list[tuple[str, str | None, tuple[str, ...], str]] = []


def mark_known_failures(request: pytest.FixtureRequest, backend: str) -> None:
    node = request.node
    params = set(getattr(getattr(node, "callspec", None), "params", {}).values())
    for check, param, backends, cause in KNOWN_FAILURES:
        if (
            node.originalname == check
            and (backend in backends or "*" in backends)
            and (param is None or param in params)
        ):
            node.add_marker(pytest.mark.xfail(reason=f"{backend}: {cause}", strict=False))


def known_to_fail(backend: str) -> list[str]:
    """Checks failing on ``backend`` whatever their parameters, for ``pytest -k``."""
    return [
        check
        for check, param, backends, _ in KNOWN_FAILURES
        if param is None and (backend in backends or "*" in backends)
    ]
