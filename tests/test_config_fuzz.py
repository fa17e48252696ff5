"""Config fuzzing: whatever the environment and config files hold, resolution either works or
raises ConfigError or BackendNotFound (or BackendUnavailable for a known plugin that is not
installed) -- never anything else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyexec
from anyexec import config

ALLOWED = (anyexec.ConfigError, anyexec.BackendNotFound, anyexec.BackendUnavailable)

text = st.text(max_size=30)
names = st.sampled_from(
    ["thread", "process", "serial", "asyncio", "nope", "", " thread ", "loky", "dask"]
)
values = st.one_of(text, st.integers(-5, 10), st.booleans(), st.floats(allow_nan=True), st.none())
toml_scalars = st.one_of(
    st.integers(-5, 10).map(str),
    st.booleans().map(lambda b: str(b).lower()),
    text.map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    ),
    st.just("[1, 2]"),
    st.just("{ a = 1 }"),
)
keys = st.sampled_from(
    [
        "backend",
        "workers",
        "profiles",
        "allow_oversubscribe",
        "thread_name_prefix",
        "mp_context",
        "max_tasks_per_child",
        "threads_per_worker",
        "memory_limit",
        "timout",
        "env",
        "x",
    ]
)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    lines = [f"{draw(keys)} = {draw(toml_scalars)}" for _ in range(draw(st.integers(0, 4)))]
    for table in draw(
        st.lists(
            st.sampled_from(
                ["thread", "process", "profiles.p", "dask", "lokyy", "profiles.p.loky"]
            ),
            max_size=3,
            unique=True,
        )
    ):
        lines.append(f"[{table}]")
        lines += [f"{draw(keys)} = {draw(toml_scalars)}" for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        lines.append(draw(text))  # often not TOML at all
    return "\n".join(lines)


def _resolve() -> None:
    try:
        s = config.resolve()
        assert s.workers >= 1
    except ALLOWED:
        pass


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    backend=st.one_of(st.none(), names, text),
    workers=st.one_of(st.none(), text, st.integers(-3, 5).map(str)),
    profile=st.one_of(st.none(), text),
    option=st.one_of(st.none(), text),
    allow=st.one_of(st.none(), text, st.sampled_from(["1", "0", "yes"])),
    stray=st.one_of(st.none(), text),
)
def test_environment_values(
    monkeypatch: pytest.MonkeyPatch, backend, workers, profile, option, allow, stray
) -> None:  # type: ignore[no-untyped-def]
    for var, value in (
        ("ANYEXEC_BACKEND", backend),
        ("ANYEXEC_WORKERS", workers),
        ("ANYEXEC_PROFILE", profile),
        ("ANYEXEC_PROCESS_MP_CONTEXT", option),
        ("ANYEXEC_ALLOW_OVERSUBSCRIBE", allow),
        ("ANYEXEC_THREAD_NAME_PREFX", stray),  # a typo: an error whenever it is set
    ):
        if value is None or "\x00" in value:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    _resolve()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=toml_documents(), as_pyproject=st.booleans())
def test_config_file_contents(doc: str, as_pyproject: bool) -> None:
    config.clear_cache()
    for name in ("pyproject.toml", "anyexec.toml"):
        if os.path.exists(name):
            os.unlink(name)
    if as_pyproject:
        body = "\n".join(
            (f"[tool.anyexec.{line[1:]}" if line.startswith("[") else line)
            for line in doc.splitlines()
        )
        Path("pyproject.toml").write_text("[tool.anyexec]\n" + body)
    else:
        Path("anyexec.toml").write_text(doc)
    _resolve()


@settings(max_examples=200, deadline=None)
@given(
    backend=st.one_of(st.none(), names, values),
    workers=st.one_of(values, st.integers(-(10**6), 10**6)),
    options=st.dictionaries(
        keys.filter(lambda k: k not in ("backend", "workers", "allow_oversubscribe")),
        values,
        max_size=3,
    ),
    allow=st.one_of(st.none(), st.booleans(), text),
    require=st.one_of(st.none(), st.sampled_from(["sharedmem", "x"])),
    prefer=st.one_of(st.none(), st.sampled_from(["threads", "processes", "x"])),
)
def test_arguments(backend, workers, options, allow, require, prefer) -> None:  # type: ignore[no-untyped-def]
    try:
        anyexec.Executor(backend, workers, allow_oversubscribe=allow, **options)
    except ALLOWED:
        pass
    try:
        s = config.resolve(
            backend, workers, options, allow_oversubscribe=allow, require=require, prefer=prefer
        )
    except ALLOWED:
        return
    assert s.workers >= 1
    if require == "sharedmem":
        assert s.backend.crosses in ("nothing", "threads")
    if not s.allow_oversubscribe and s.backend.crosses != "cluster":
        assert s.workers <= 32 * config.available_cpus()
