"""Who decides the backend, layer by layer, and the errors for bad values."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest
from installed import needs_dask, needs_loky

import anyexec
from anyexec import config


def write(path: Path, text: str) -> None:
    path.write_text(text)
    config.clear_cache()


LOKY = pytest.param("loky", marks=needs_loky)
DASK = pytest.param("dask", marks=needs_dask)


def test_default_is_thread_with_one_worker_per_cpu() -> None:
    s = config.resolve()
    assert s.name == "thread"
    assert s.workers == config.available_cpus()
    assert s.sources["backend"] == "default"


def test_pyproject_table(tmp_path: Path) -> None:
    write(Path("pyproject.toml"), '[tool.anyexec]\nbackend = "process"\nworkers = 3\n')
    s = config.resolve()
    assert (s.name, s.workers) == ("process", 3)
    assert "pyproject.toml [tool.anyexec]" in s.sources["backend"]


def test_anyexec_toml_found_from_a_parent_folder() -> None:
    write(Path("anyexec.toml"), 'backend = "serial"\n')
    deeper = Path("a/b")
    deeper.mkdir(parents=True)
    s = config.resolve(cwd=deeper)
    assert s.name == "serial"


def test_environment_beats_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write(Path("pyproject.toml"), '[tool.anyexec]\nbackend = "process"\nworkers = 3\n')
    monkeypatch.setenv("ANYEXEC_BACKEND", "serial")
    monkeypatch.setenv("ANYEXEC_WORKERS", "5")
    s = config.resolve()
    assert s.name == "serial" and s.sources["backend"] == "environment variable ANYEXEC_BACKEND"
    s = config.resolve(backend="thread")
    assert s.workers == 5 and "ANYEXEC_WORKERS" in s.sources["workers"]


def test_using_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "serial")
    with anyexec.using("thread", workers=2) as ex:
        assert (ex.backend, ex.workers) == ("thread", 2)
        with anyexec.using(workers=3):  # nested: inner wins value by value
            s = config.resolve()
            assert (s.name, s.workers) == ("thread", 3)
        assert config.resolve().workers == 2
    assert config.resolve().name == "serial"


def test_argument_beats_using() -> None:
    with anyexec.using("serial"):
        assert anyexec.Executor("thread", workers=1).backend == "thread"
        assert anyexec.Executor().backend == "serial"


def test_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        Path("pyproject.toml"),
        '[tool.anyexec]\nbackend = "thread"\nworkers = 2\n'
        '[tool.anyexec.profiles.heavy]\nbackend = "process"\nworkers = 4\n',
    )
    assert config.resolve().name == "thread"
    monkeypatch.setenv("ANYEXEC_PROFILE", "heavy")
    s = config.resolve()
    assert (s.name, s.workers) == ("process", 4)
    assert "profile 'heavy'" in s.sources["backend"]
    monkeypatch.setenv("ANYEXEC_PROFILE", "nope")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_PROFILE='nope'.*profiles: heavy"):
        config.resolve()


def test_profile_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_PROFILE", "x")
    with pytest.raises(anyexec.ConfigError, match=r"no anyexec\.toml"):
        config.resolve()


def test_backend_option_tables_apply_only_to_their_backend() -> None:
    write(
        Path("pyproject.toml"),
        '[tool.anyexec]\nbackend = "thread"\n[tool.anyexec.thread]\nthread_name_prefix = "t"\n'
        '[tool.anyexec.process]\nmp_context = "spawn"\n',
    )
    assert config.resolve().options == {"thread_name_prefix": "t"}
    assert config.resolve(backend="process").options == {"mp_context": "spawn"}


def test_backend_option_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_PROCESS_MP_CONTEXT", "spawn")
    s = config.resolve(backend="process")
    assert s.options == {"mp_context": "spawn"}
    assert s.sources["option mp_context"].startswith("environment variable ANYEXEC_PROCESS")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child needs 3.11")
def test_options_from_several_layers_merge() -> None:
    write(Path("anyexec.toml"), '[process]\nmp_context = "spawn"\n')
    with anyexec.using("process", max_tasks_per_child=5):
        assert config.resolve().options == {"mp_context": "spawn", "max_tasks_per_child": 5}


def test_using_is_isolated_per_thread() -> None:
    seen: dict[str, str] = {}

    def other() -> None:
        seen["other"] = config.resolve().name

    with anyexec.using("serial"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        seen["main"] = config.resolve().name
    assert seen == {"other": "thread", "main": "serial"}


def test_using_is_isolated_per_async_task() -> None:
    async def pick(name: str, delay: float) -> str:
        with anyexec.using(name):
            await asyncio.sleep(delay)
            return config.resolve().name

    async def main() -> list[str]:
        return list(await asyncio.gather(pick("serial", 0.05), pick("process", 0.01)))

    assert asyncio.run(main()) == ["serial", "process"]


def test_current_is_shared_per_configuration() -> None:
    a = anyexec.current()
    assert anyexec.current() is a
    with anyexec.using("serial"):
        b = anyexec.current()
        assert b is not a and b.backend == "serial"
    assert anyexec.current() is a
    assert list(anyexec.map(abs, [-1, 2])) == [1, 2]
    assert anyexec.submit(abs, -4).result() == 4


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, "abc", 1.5, True, "1_0", "-"])
def test_bad_workers_argument(bad: object) -> None:
    with pytest.raises(anyexec.ConfigError, match=r"argument: workers"):
        anyexec.Executor("thread", workers=bad)  # type: ignore[arg-type]


def test_bad_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_WORKERS", "abc")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_WORKERS='abc'.*positive integer"):
        anyexec.Executor()


def test_workers_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_WORKERS", "auto")
    assert anyexec.Executor("thread").workers == config.available_cpus()


def test_unknown_backend_lists_the_installed_ones() -> None:
    with pytest.raises(
        anyexec.BackendNotFound,
        match=r"unknown backend 'thraed'.*Installed backends: .*serial.*Did you mean 'thread'",
    ):
        anyexec.Executor("thraed")


def test_unknown_backend_from_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "nope")
    with pytest.raises(anyexec.BackendNotFound, match="ANYEXEC_BACKEND"):
        anyexec.current()


def test_backend_not_a_string() -> None:
    with pytest.raises(anyexec.ConfigError, match="backend must be a backend name"):
        anyexec.Executor(42)  # type: ignore[arg-type]


def test_option_the_backend_does_not_take() -> None:
    with pytest.raises(
        anyexec.ConfigError,
        match=r"backend 'thread' does not take option 'address'.*thread_name_prefix",
    ):
        anyexec.Executor("thread", address="tcp://x:1")


def test_option_of_the_wrong_type() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"option 'max_tasks_per_child' expects int"):
        anyexec.Executor("process", max_tasks_per_child="many")


def test_option_choice() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"mp_context.*must be one of"):
        anyexec.Executor("process", mp_context="teleport")


def test_malformed_config_file() -> None:
    write(Path("pyproject.toml"), "[tool.anyexec\nbackend = \n")
    with pytest.raises(anyexec.ConfigError, match=r"pyproject.toml: not valid TOML"):
        anyexec.Executor()


def test_unknown_key_in_config_file() -> None:
    write(Path("anyexec.toml"), 'backnd = "thread"\n')
    with pytest.raises(anyexec.ConfigError, match=r"anyexec.toml: unknown key 'backnd'"):
        anyexec.Executor()


def test_bad_workers_in_config_file() -> None:
    write(Path("pyproject.toml"), '[tool.anyexec]\nworkers = "lots"\n')
    with pytest.raises(anyexec.ConfigError, match=r"pyproject.toml \[tool.anyexec\]: workers"):
        anyexec.Executor()


def test_using_reports_errors_at_entry() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"using\(workers=0\): workers"):
        with anyexec.using(workers=0):
            pass  # pragma: no cover


def test_known_but_missing_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyexec import registry

    monkeypatch.setattr(registry, "KNOWN", {**registry.KNOWN, "warp": "pip install anyexec-warp"})
    with pytest.raises(anyexec.BackendUnavailable, match="pip install anyexec-warp"):
        anyexec.Executor("warp")


def test_bad_chunksize_and_buffersize() -> None:
    ex = anyexec.Executor("serial")
    with pytest.raises(anyexec.ConfigError, match=r"chunksize=0"):
        ex.map(abs, [1], chunksize=0)
    with pytest.raises(anyexec.ConfigError, match="buffersize=-2"):
        ex.map(abs, [1], buffersize=-2)


# -- workers: joblib's negative counts, strict text -------------------------------------


@pytest.mark.parametrize(("given", "expected"), [(-1, 0), (-2, -1), ("-1", 0), (-10_000, None)])
def test_negative_workers_count_from_every_usable_cpu(given: object, expected: int | None) -> None:
    cpus = config.available_cpus()
    want = 1 if expected is None else max(1, cpus + expected)
    assert anyexec.Executor("thread", workers=given).workers == want  # type: ignore[arg-type]


def test_negative_workers_from_environment_and_file(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = config.available_cpus()
    write(Path("anyexec.toml"), "workers = -2\n")
    assert config.resolve().workers == max(1, cpus - 1)
    monkeypatch.setenv("ANYEXEC_WORKERS", "-1")
    assert config.resolve().workers == cpus


@pytest.mark.parametrize("bad", [0, "0", "lots", 2.5, "1_0", " +3", "٣"])
def test_bad_workers_message_mentions_minus_one_and_auto(bad: object) -> None:
    with pytest.raises(anyexec.ConfigError) as err:
        config.resolve(workers=bad)
    assert "-1" in str(err.value) and "'auto'" in str(err.value)


def test_workers_with_underscores_is_not_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_WORKERS", "1_0")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_WORKERS='1_0'"):
        config.resolve()


# -- worker ceilings ----------------------------------------------------------------------

CEILINGS = {"thread": 32, "asyncio": 32, "process": 4, "loky": 4}


@pytest.mark.parametrize("name", ["asyncio", "process", "thread", LOKY])
def test_worker_count_above_the_ceiling_is_refused(name: str) -> None:
    ceiling = CEILINGS[name] * config.available_cpus()
    assert config.resolve(name, ceiling).workers == ceiling
    with pytest.raises(anyexec.ConfigError) as err:
        anyexec.Executor(name, workers=ceiling + 1)
    message = str(err.value)
    assert f"ceiling for backend {name!r} of {ceiling}" in message
    assert "allow_oversubscribe=True" in message and "ANYEXEC_ALLOW_OVERSUBSCRIBE" in message
    ex = anyexec.Executor(name, workers=10**6, allow_oversubscribe=True)  # never started
    assert ex.workers == 10**6 and ex.settings.allow_oversubscribe


def test_serial_has_no_ceiling() -> None:
    assert config.resolve("serial", 10**6).workers == 1


@needs_dask
def test_remote_cluster_has_no_ceiling() -> None:
    remote = {"address": "tcp://127.0.0.1:1"}  # workers elsewhere; nothing is started
    assert config.resolve("dask", 10**4, remote).workers == 10**4
    assert config.resolve("dask", 10**4, {"scheduler_file": "/x.json"}).workers == 10**4


@needs_dask
def test_embedded_cluster_has_the_process_ceiling() -> None:
    ceiling = 4 * config.available_cpus()
    assert config.resolve("dask", ceiling).workers == ceiling
    with pytest.raises(anyexec.ConfigError, match=f"ceiling for backend 'dask' of {ceiling}"):
        anyexec.Executor("dask", workers=ceiling + 1)
    assert config.resolve("dask", ceiling + 1, allow_oversubscribe=True).workers == ceiling + 1


def test_allow_oversubscribe_from_every_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    big = 33 * config.available_cpus()
    with anyexec.using(allow_oversubscribe=True):
        assert config.resolve("thread", big).workers == big
    monkeypatch.setenv("ANYEXEC_ALLOW_OVERSUBSCRIBE", "1")
    s = config.resolve("thread", big)
    assert s.sources["allow_oversubscribe"].startswith("environment variable ANYEXEC_ALLOW")
    monkeypatch.delenv("ANYEXEC_ALLOW_OVERSUBSCRIBE")
    write(Path("anyexec.toml"), f"allow_oversubscribe = true\nworkers = {big}\n")
    assert config.resolve().workers == big
    with pytest.raises(anyexec.ConfigError, match="ceiling"):  # an argument overrides the file
        config.resolve(allow_oversubscribe=False)


def test_bad_allow_oversubscribe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_ALLOW_OVERSUBSCRIBE", "maybe")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_ALLOW_OVERSUBSCRIBE='maybe'"):
        config.resolve()


# -- every option checked up front ---------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "options", "match"),
    [
        ("process", {"max_tasks_per_child": 0}, "max_tasks_per_child' must be at least 1"),
        ("process", {"max_tasks_per_child": -3}, "must be at least 1"),
        pytest.param(
            "dask",
            {"threads_per_worker": 0},
            "threads_per_worker' must be at least 1",
            marks=needs_dask,
        ),
        pytest.param(
            "dask", {"memory_limit": "lots"}, "memory_limit'='lots'.*byte unit", marks=needs_dask
        ),
        pytest.param("dask", {"memory_limit": -1}, "memory_limit'=-1", marks=needs_dask),
    ],
)
def test_bad_option_values_are_config_errors_before_start(
    backend: str, options: dict[str, object], match: str
) -> None:
    with pytest.raises(anyexec.ConfigError, match=match):
        anyexec.Executor(backend, **options)


@needs_dask
@pytest.mark.parametrize("limit", ["auto", "4GiB", 0, 0.5, "2e9"])
def test_good_dask_memory_limits(limit: object) -> None:
    assert config.resolve("dask", options={"memory_limit": limit}).options["memory_limit"] == limit


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1, 0, 1e300, "3", True])
def test_bad_task_timeout(value: object) -> None:
    with pytest.raises(anyexec.ConfigError, match="task_timeout"):
        anyexec.Executor("serial", task_timeout=value)  # type: ignore[arg-type]
    with pytest.raises(anyexec.ConfigError, match="task_timeout"):
        anyexec.Executor("serial").map(abs, [1], task_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_bad_retries(value: object) -> None:
    with pytest.raises(anyexec.ConfigError, match="retries"):
        anyexec.Executor("serial", retries=value)  # type: ignore[arg-type]


def test_option_hooks() -> None:
    from anyexec.contract import Option

    def even(value: int) -> None:
        if value % 2:
            raise ValueError("must be even")

    opt = Option(int, minimum=2, check=even)
    assert opt.coerce("n", "4", "src") == 4
    with pytest.raises(anyexec.ConfigError, match=r"src: option 'n' must be at least 2; got 0"):
        opt.coerce("n", 0, "src")
    with pytest.raises(anyexec.ConfigError, match=r"src: option 'n'=5: must be even"):
        opt.coerce("n", 5, "src")
    with pytest.raises(anyexec.ConfigError, match="expects int"):
        opt.coerce("n", "1_0", "src")
    with pytest.raises(anyexec.ConfigError, match="at least 1"):
        Option(float, minimum=1).coerce("x", float("nan"), "src")


def test_option_values_of_every_table_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    write(Path("anyexec.toml"), 'backend = "thread"\n[process]\nmax_tasks_per_child = 0\n')
    with pytest.raises(anyexec.ConfigError, match=r"anyexec.toml \[process\] max_tasks_per_child"):
        config.resolve()
    write(Path("anyexec.toml"), "[thread]\n")
    monkeypatch.setenv("ANYEXEC_PROCESS_MP_CONTEXT", "teleport")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_PROCESS_MP_CONTEXT='teleport'"):
        config.resolve()


@needs_dask
def test_dask_option_values_are_checked_when_dask_is_not_selected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANYEXEC_DASK_THREADS_PER_WORKER", "0")
    with pytest.raises(anyexec.ConfigError, match=r"ANYEXEC_DASK_THREADS_PER_WORKER='0'"):
        config.resolve()


# -- typos never pass silently ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "closest"),
    [
        ("[tool.anyexec.lokyy]\n", r"pyproject.toml \[tool.anyexec.lokyy\]", "'loky'"),
        pytest.param(
            "[tool.anyexec.loky]\ntimout = 3\n",
            r"\[tool.anyexec.loky\]",
            "'timeout'",
            marks=needs_loky,
        ),
        (
            "[tool.anyexec.thread]\nthread_prefix = 'x'\n",
            r"\[tool.anyexec.thread\]",
            "'thread_name_prefix'",
        ),
        ("[tool.anyexec]\nwrokers = 2\n", r"pyproject.toml \[tool.anyexec\]", "'workers'"),
        ("[tool.anyexec.profiles.p]\nbakend = 'x'\n", r"\[tool.anyexec.profiles.p\]", "'backend'"),
        ("[tool.anyexec.profiles.p.procss]\n", r"\[tool.anyexec.profiles.p.procss\]", "'process'"),
        pytest.param(
            "[tool.anyexec.profiles.p.dask]\nadress = 'x'\n",
            r"\[tool.anyexec.profiles.p.dask\]",
            "'address'",
            marks=needs_dask,
        ),
    ],
)
def test_typos_in_the_config_file(text: str, where: str, closest: str) -> None:
    write(Path("pyproject.toml"), text)
    with pytest.raises(anyexec.ConfigError, match=where) as err:
        config.resolve(backend="serial")  # whichever backend is selected
    assert f"Did you mean {closest}" in str(err.value)


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("ANYEXEC_BAKEND", "ANYEXEC_BACKEND"),
        ("ANYEXEC_WORKER", "ANYEXEC_WORKERS"),
        ("ANYEXEC_THREAD_BOGUS", "ANYEXEC_THREAD_THREAD_NAME_PREFIX"),
        pytest.param("ANYEXEC_LOKY_TIMOUT", "ANYEXEC_LOKY_TIMEOUT", marks=needs_loky),
        ("ANYEXEC_PROCES_MP_CONTEXT", "ANYEXEC_PROCESS_MP_CONTEXT"),
        pytest.param("ANYEXEC_DASK_ADRESS", "ANYEXEC_DASK_ADDRESS", marks=needs_dask),
    ],
)
def test_unknown_environment_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, closest: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(anyexec.ConfigError, match=f"environment variable {variable}='1'") as err:
        anyexec.Executor("serial")
    assert f"Did you mean {closest!r}" in str(err.value)


@needs_loky
@needs_dask
def test_every_variable_anyexec_reads_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    known = config.known_environment()
    for name in ("ANYEXEC_BACKEND", "ANYEXEC_PROFILE", "ANYEXEC_TRUSTED_CONFIG"):
        assert name in known
    assert {"ANYEXEC_DASK_ADDRESS", "ANYEXEC_LOKY_ENV", "ANYEXEC_PROCESS_MP_CONTEXT"} <= set(known)
    monkeypatch.setenv("ANYEXEC_PROCESS_MP_CONTEXT", "spawn")
    monkeypatch.setenv("ANYEXEC_LOKY_TIMEOUT", "7")
    monkeypatch.setenv("ANYEXEC_EMPTY", "")  # empty is unset
    assert config.resolve().name == "thread"


def test_tables_of_known_but_missing_backends_are_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyexec import cli, registry

    monkeypatch.setattr(registry, "KNOWN", {**registry.KNOWN, "warp": "pip install anyexec-warp"})
    write(Path("anyexec.toml"), "[warp]\nspeed = 9\n")
    monkeypatch.setenv("ANYEXEC_WARP_SPEED", "9")
    s = config.resolve()
    assert s.name == "thread"
    assert any(
        "[warp] is for backend 'warp'" in n and "pip install anyexec-warp" in n for n in s.notes
    )
    assert any("ANYEXEC_WARP_SPEED" in n for n in s.notes)
    assert cli.main(["config"]) == 0


def test_the_plain_default_path_scans_no_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyexec import registry

    def no_scan() -> list[object]:
        raise AssertionError("scanned every installed distribution")

    registry.refresh()
    try:
        monkeypatch.setattr(registry, "_entry_points", no_scan)
        monkeypatch.setenv("ANYEXEC_WORKERS", "2")
        monkeypatch.setenv("ANYEXEC_PROCESS_MP_CONTEXT", "spawn")
        write(Path("anyexec.toml"), 'backend = "process"\n[thread]\nthread_name_prefix = "t"\n')
        s = config.resolve()
        assert (s.name, s.workers, dict(s.options)) == ("process", 2, {"mp_context": "spawn"})
        assert config.resolve(prefer="threads", require="sharedmem").name == "thread"
    finally:
        registry.refresh()


@pytest.mark.parametrize("name", ["serial", "thread", "process", "asyncio", LOKY, DASK])
def test_unknown_option_of_every_backend_in_file_and_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(Path("anyexec.toml"), f'backend = "serial"\n[{name}]\nbogus_option = 1\n')
    with pytest.raises(
        anyexec.ConfigError, match=rf"anyexec.toml \[{name}\]: backend '{name}' does not take"
    ):
        config.resolve()
    write(Path("anyexec.toml"), 'backend = "serial"\n')
    monkeypatch.setenv(f"ANYEXEC_{name.upper()}_BOGUS_OPTION", "1")
    with pytest.raises(anyexec.ConfigError, match=rf"ANYEXEC_{name.upper()}_BOGUS_OPTION='1'"):
        config.resolve()


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="max_tasks_per_child exists")
def test_max_tasks_per_child_before_311_is_refused_up_front() -> None:
    with pytest.raises(anyexec.ConfigError, match=r"needs Python 3\.11 or newer"):
        config.resolve("process", options={"max_tasks_per_child": 5})
