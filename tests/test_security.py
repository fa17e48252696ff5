"""Config files someone else could have written: skipped with one warning; options that can
run code or send tasks elsewhere are refused from a file above the project root unless the
file is trusted explicitly."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from installed import needs_dask, needs_loky

import anyexec
from anyexec import config
from anyexec.errors import ConfigWarning

needs_root = pytest.mark.skipif(
    not hasattr(os, "getuid") or os.getuid() != 0,
    reason="making a file owned by another user needs root",
)
needs_owners = pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners")

OTHER_UID = 65534  # nobody


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    config.clear_cache()
    return path


def resolve_collecting() -> tuple[config.Settings, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = config.resolve()
    return s, [w for w in caught if issubclass(w.category, ConfigWarning)]


# -- trust: owner and mode ----------------------------------------------------------------


@needs_root
@pytest.mark.parametrize("name", ["anyexec.toml", "pyproject.toml"])
def test_file_owned_by_another_user_is_skipped_with_one_warning(name: str) -> None:
    text = (
        'backend = "serial"\n' if name == "anyexec.toml" else '[tool.anyexec]\nbackend = "serial"\n'
    )
    path = write(Path(name), text)
    os.chown(path, OTHER_UID, OTHER_UID)
    config.clear_cache()
    s, warned = resolve_collecting()
    assert s.name == "thread" and s.config_file is None
    assert len(warned) == 1
    message = str(warned[0].message)
    assert str(path.resolve()) in message and f"owned by uid {OTHER_UID}" in message
    _, again = resolve_collecting()  # one warning per file, not one per resolve
    assert again == []


@needs_owners
@pytest.mark.parametrize(
    ("mode", "who"), [(0o666, "group and others"), (0o646, "others"), (0o664, "group")]
)
def test_file_writable_by_others_is_skipped(mode: int, who: str) -> None:
    path = write(Path("anyexec.toml"), 'backend = "serial"\n', mode)
    s, warned = resolve_collecting()
    assert s.name == "thread"
    assert len(warned) == 1 and f"writable by {who}" in str(warned[0].message)
    assert str(path.resolve()) in str(warned[0].message)


@needs_owners
def test_search_goes_on_past_an_untrusted_file() -> None:
    write(Path("../anyexec.toml"), 'backend = "serial"\n')  # the parent's file is fine
    write(Path("anyexec.toml"), 'backend = "process"\n', 0o666)
    s, warned = resolve_collecting()
    assert s.name == "serial" and s.config_file == Path("../anyexec.toml").resolve()
    assert len(warned) == 1


@needs_owners
def test_untrusted_pyproject_without_an_anyexec_table_is_not_warned_about() -> None:
    write(Path("pyproject.toml"), '[project]\nname = "x"\n', 0o666)
    _, warned = resolve_collecting()
    assert warned == []


@needs_owners
def test_untrusted_file_is_not_even_parsed() -> None:
    write(Path("anyexec.toml"), "this is [not toml\n", 0o666)
    s, warned = resolve_collecting()  # no ConfigError: the file is skipped unread
    assert s.name == "thread" and len(warned) == 1
    write(Path("anyexec.toml"), 'backend = "serial"\n', 0o666)
    write(Path("pyproject.toml"), "[tool.anyexec\n", 0o666)  # not ours to report
    s, warned = resolve_collecting()
    assert s.name == "thread" and len(warned) == 1


def test_trusted_file_owned_by_me_is_used() -> None:
    write(Path("anyexec.toml"), 'backend = "serial"\n', 0o600)
    s, warned = resolve_collecting()
    assert s.name == "serial" and warned == []


# -- the project root -----------------------------------------------------------------------


def test_project_root_is_the_nearest_git_folder() -> None:
    work = Path.cwd()
    (work / ".git").mkdir()
    deeper = work / "src" / "pkg"
    deeper.mkdir(parents=True)
    (work / "src" / "pyproject.toml").write_text("")  # .git wins over a nearer pyproject
    assert config.project_root(deeper) == work


def test_project_root_falls_back_to_pyproject_then_the_working_directory() -> None:
    work = Path.cwd()
    deeper = work / "a" / "b"
    deeper.mkdir(parents=True)
    assert config.project_root(deeper) == deeper
    (work / "a" / "pyproject.toml").write_text("")
    assert config.project_root(deeper) == work / "a"


# -- sensitive options from above the project root ------------------------------------------

SENSITIVE = [
    ("loky", "env", '{ PYTHONPATH = "/tmp/evil" }'),
    ("dask", "address", '"tcp://10.9.9.9:8786"'),
    ("dask", "scheduler_file", '"/tmp/evil.json"'),
    ("dask", "security", '"x"'),
]


@pytest.fixture
def project() -> Path:
    """The working directory is a project (it holds .git); its parent is outside it."""
    (Path.cwd() / ".git").mkdir()
    return Path.cwd()


@pytest.mark.parametrize(("backend", "key", "value"), SENSITIVE)
def test_sensitive_option_above_the_project_root_is_refused(
    project: Path, backend: str, key: str, value: str
) -> None:
    above = write(
        project.parent / "anyexec.toml", f'backend = "thread"\n[{backend}]\n{key} = {value}\n'
    )
    with pytest.raises(anyexec.ConfigError) as err:
        config.resolve()
    message = str(err.value)
    assert f"{above.resolve()} [{backend}]" in message and repr(key) in message
    assert "above the project root" in message and str(project) in message
    assert "ANYEXEC_TRUSTED_CONFIG" in message
    with pytest.raises(anyexec.ConfigError):  # whichever backend is selected
        anyexec.Executor("serial")


def test_sensitive_option_in_a_profile_above_the_root_is_refused(project: Path) -> None:
    write(
        project.parent / "pyproject.toml",
        '[tool.anyexec]\nbackend = "thread"\n[tool.anyexec.profiles.p.loky]\nenv = { A = "1" }\n',
    )
    with pytest.raises(anyexec.ConfigError, match=r"\[tool\.anyexec\.profiles\.p\.loky\] env"):
        config.resolve()


@needs_loky
def test_harmless_settings_above_the_root_are_used(project: Path) -> None:
    write(project.parent / "anyexec.toml", 'backend = "loky"\nworkers = 1\n[loky]\ntimeout = 5\n')
    s = config.resolve()
    assert (s.name, s.workers, dict(s.options)) == ("loky", 1, {"timeout": 5})


@needs_loky
def test_sensitive_option_inside_the_project_is_used(project: Path) -> None:
    write(project / "anyexec.toml", '[loky]\nenv = { A = "1" }\n')
    assert config.resolve(backend="loky").options == {"env": {"A": "1"}}


@needs_loky
def test_explicitly_trusted_file_above_the_root_is_used(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    above = write(project.parent / "anyexec.toml", '[loky]\nenv = { A = "1" }\n')
    monkeypatch.setenv("ANYEXEC_TRUSTED_CONFIG", f"/nowhere{os.pathsep}{above}")
    config.clear_cache()
    assert config.resolve(backend="loky").options == {"env": {"A": "1"}}


def test_without_a_project_marker_the_working_directory_is_the_root() -> None:
    write(Path("../anyexec.toml"), '[loky]\nenv = { A = "1" }\n')
    with pytest.raises(anyexec.ConfigError, match="above the project root"):
        config.resolve()


def test_sensitive_names_of_a_backend_that_is_not_installed_are_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyexec import registry

    monkeypatch.setattr(registry, "KNOWN", {**registry.KNOWN, "warp": "pip install anyexec-warp"})
    write(project.parent / "anyexec.toml", '[warp]\naddress = "tcp://10.9.9.9:1"\n')
    with pytest.raises(anyexec.ConfigError, match=r"\[warp\] address.*above the project root"):
        config.resolve()


@pytest.mark.parametrize(
    ("name", "marked"),
    [
        ("thread", []),
        ("process", []),
        pytest.param("loky", ["env"], marks=needs_loky),
        pytest.param("dask", ["address", "client", "scheduler_file", "security"], marks=needs_dask),
    ],
)
def test_backends_mark_their_sensitive_options(name: str, marked: list[str]) -> None:
    from anyexec import registry

    options = registry.get(name).options
    assert sorted(k for k, o in options.items() if o.sensitive) == marked
