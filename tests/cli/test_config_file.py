"""``--config PATH`` and ``[tool.asgi-worker]``: TOML settings below the environment and the flags.

The layering is checked by calling ``parse_config_kwargs`` directly (a matrix of layers); what an
operator sees (exit codes, one-line errors, ``--print-config``) in real processes of both commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asgi_worker.cli import parse_config_kwargs
from asgi_worker.config import OPTIONS, Config
from asgi_worker.errors import ConfigError
from supervisor.config import SUPERVISOR_OPTIONS, SupervisorConfig
from tests.cli.test_cli import APPS, run_cli
from tests.timing import TIMEOUT

BOTH = (*OPTIONS, *SUPERVISOR_OPTIONS)  # what asgi-supervise reads


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def kwargs_of(*argv: str, environ: dict[str, str] | None = None) -> dict[str, object]:
    """What ``asgi-supervise APP ARGV`` would pass on, in ``environ`` alone."""
    _app, kwargs = parse_config_kwargs(["app:app", *argv], environ or {}, options=BOTH)
    return kwargs


def run_supervise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m supervisor ARGS`` to completion (these exit before any worker is forked)."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def error_line(result: subprocess.CompletedProcess[str], prog: str = "asgi_worker") -> str:
    """The one line a failed command wrote, checked to be one line and the command's own."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """``--print-config``'s lines as ``{name: (value, source)}``."""
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        setting, _, source = line.partition("  # ")
        name, _, value = setting.partition(" = ")
        rows[name] = (value, source)
    return rows


# What a file can set


def test_a_file_sets_settings_of_every_type(tmp_path):
    path = write(
        tmp_path / "asgi.toml",
        """
port = 9001                   # int
timeout-keep-alive = 7        # a float setting takes an int
ws_ping_interval = 2.5        # float
access-log = false            # switch
factory = true                # flag
ws-per-message-deflate = false
headers = ["X-Site: one", "X-Team: two"]
root-path = "/api"            # string
loop = "asyncio"              # choice
uds-mode = 0o660
workers = 3                   # asgi_worker's, read by the supervisor
preload = true                # the supervisor's own
binds = ["127.0.0.1:9001", "unix:/tmp/asgi.sock"]
reload-delay = 1
""",
    )
    kwargs = kwargs_of("--config", path)
    assert kwargs == {
        "port": 9001,
        "timeout_keep_alive": 7.0,
        "ws_ping_interval": 2.5,
        "access_log": False,
        "factory": True,
        "ws_per_message_deflate": False,
        "headers": ["X-Site: one", "X-Team: two"],
        "root_path": "/api",
        "loop": "asyncio",
        "uds_mode": 0o660,
        "workers": 3,
        "preload": True,
        "binds": ["127.0.0.1:9001", "unix:/tmp/asgi.sock"],
        "reload_delay": 1.0,
    }
    assert isinstance(kwargs["timeout_keep_alive"], float)
    own = {name: kwargs.pop(name) for name in ("preload", "binds", "reload_delay")}
    workers = kwargs.pop("workers")
    config = Config("app:app", **kwargs)
    assert config.headers == [("X-Site", "one"), ("X-Team", "two")]
    assert SupervisorConfig(workers=workers, **own).binds == ["127.0.0.1:9001", "unix:/tmp/asgi.sock"]


def test_an_octal_mode_may_be_written_as_the_flag_is(tmp_path):
    assert kwargs_of("--config", write(tmp_path / "a.toml", 'uds-mode = "660"\n')) == {"uds_mode": 0o660}


def test_snake_and_kebab_keys_are_the_same_setting(tmp_path):
    snake = write(tmp_path / "snake.toml", "timeout_graceful_shutdown = 12\nlimit_request_body = 1024\n")
    kebab = write(tmp_path / "kebab.toml", "timeout-graceful-shutdown = 12\nlimit-request-body = 1024\n")
    expected = {"timeout_graceful_shutdown": 12.0, "limit_request_body": 1024}
    assert kwargs_of("--config", snake) == kwargs_of("--config", kebab) == expected


def test_a_setting_given_in_both_spellings_is_an_error(tmp_path):
    path = write(tmp_path / "a.toml", "backlog = 10\nlimit_concurrency = 5\nlimit-concurrency = 6\n")
    with pytest.raises(ConfigError, match="limit_concurrency is given twice"):
        kwargs_of("--config", path)


# Precedence: command line > environment > file > default


@pytest.mark.parametrize(
    ("in_file", "in_env", "on_cli", "expected"),
    [
        (None, None, None, None),
        ("9001", None, None, 9001),
        ("9001", "9002", None, 9002),
        ("9001", None, "9003", 9003),
        (None, "9002", "9003", 9003),
        ("9001", "9002", "9003", 9003),
    ],
)
def test_each_layer_overrides_the_one_below(tmp_path, in_file, in_env, on_cli, expected):
    argv = ["--config", write(tmp_path / "a.toml", f"port = {in_file}\n" if in_file else "")]
    argv += ["--port", on_cli] if on_cli else []
    environ = {"ASGI_WORKER_PORT": in_env} if in_env else {}
    assert kwargs_of(*argv, environ=environ).get("port") == expected


def test_uvicorns_variables_override_the_file_too(tmp_path):
    path = write(tmp_path / "a.toml", 'workers = 2\nforwarded-allow-ips = "10.0.0.1"\nbacklog = 64\n')
    environ = {"WEB_CONCURRENCY": "5", "FORWARDED_ALLOW_IPS": "*"}
    kwargs = kwargs_of("--config", path, "--workers", "6", environ=environ)
    assert (kwargs["workers"], kwargs["forwarded_allow_ips"], kwargs["backlog"]) == (6, "*", 64)
    assert kwargs_of("--config", path, environ=environ)["workers"] == 5


def test_a_list_from_the_command_line_replaces_the_files(tmp_path):
    path = write(tmp_path / "a.toml", 'headers = ["X-A: 1", "X-B: 2"]\n')
    assert kwargs_of("--config", path, "--header", "X-C: 3")["headers"] == ["X-C: 3"]
    assert kwargs_of("--config", path, environ={"ASGI_WORKER_HEADERS": "X-D:4"})["headers"] == ["X-D:4"]


# pyproject.toml


PYPROJECT = """
[project]
name = "site"

[tool.ruff]
line-length = 99

[tool.asgi-worker]
port = 9100
log-level = "warning"
"""


def test_pyproject_table_is_read_from_the_current_directory(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml", PYPROJECT)
    monkeypatch.chdir(tmp_path)
    assert kwargs_of() == {"port": 9100, "log_level": "warning"}


def test_pyproject_table_is_read_from_app_dir(tmp_path):
    write(tmp_path / "pyproject.toml", PYPROJECT)
    assert kwargs_of("--app-dir", str(tmp_path)) == {
        "app_dir": str(tmp_path),
        "port": 9100,
        "log_level": "warning",
    }
    from_env = kwargs_of(environ={"ASGI_WORKER_APP_DIR": str(tmp_path)})
    assert (from_env["port"], from_env["log_level"]) == (9100, "warning")


def test_pyproject_is_ignored_when_a_config_file_is_given(tmp_path):
    write(tmp_path / "pyproject.toml", PYPROJECT)
    path = write(tmp_path / "asgi.toml", "backlog = 77\n")
    assert kwargs_of("--app-dir", str(tmp_path), "--config", path) == {
        "app_dir": str(tmp_path),
        "backlog": 77,
    }


def test_config_may_name_a_pyproject_and_then_reads_its_table(tmp_path):
    path = write(tmp_path / "pyproject.toml", PYPROJECT)
    assert kwargs_of("--config", path) == {"port": 9100, "log_level": "warning"}


def test_readme_example_is_accepted(tmp_path):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("### Config file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    write(tmp_path / "pyproject.toml", example)
    kwargs = kwargs_of("--app-dir", str(tmp_path))
    assert kwargs["workers"] == 4 and kwargs["uds_mode"] == 0o660
    kwargs.pop("workers")
    Config("app:app", **kwargs)


@pytest.mark.parametrize("text", ["", '[project]\nname = "site"\n', "[tool.black]\nline-length = 88\n"])
def test_pyproject_without_the_table_gives_nothing(tmp_path, text):
    write(tmp_path / "pyproject.toml", text)
    assert kwargs_of("--app-dir", str(tmp_path)) == {"app_dir": str(tmp_path)}


# What an operator sees: one line and exit 1 for every mistake in the file


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "timeout-keepalive = 3\n",
            "unknown setting 'timeout-keepalive'; did you mean 'timeout-keep-alive'?",
        ),
        (
            "timeout_keepalive = 3\n",
            "unknown setting 'timeout_keepalive'; did you mean 'timeout_keep_alive'?",
        ),
        ("header = ['X-A: 1']\n", "unknown setting 'header'; did you mean 'headers'?"),
        ("[server]\nport = 1\n", "unknown setting 'server'"),
    ],
)
def test_unknown_key_names_the_closest_setting(tmp_path, text, needle):
    result = run_cli("cliapps:hello", "--app-dir", APPS, "--config", write(tmp_path / "a.toml", text))
    assert result.returncode == 1
    assert needle in error_line(result)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('port = "9000"\n', 'port must be an integer, not string "9000"'),
        ("port = true\n", "port must be an integer, not boolean true"),
        ("timeout-keep-alive = '5s'\n", "timeout-keep-alive must be a number"),
        ('access-log = "no"\n', "access-log must be true or false"),
        ('headers = "X-A: 1"\n', "headers must be an array of strings"),
        ("loop = 'trio'\n", "loop must be one of auto, asyncio, uvloop"),
        ("root_path = 5\n", "root_path must be a string, not integer 5"),
    ],
)
def test_wrong_type_names_the_key(tmp_path, text, needle):
    result = run_cli("cliapps:hello", "--app-dir", APPS, "--config", write(tmp_path / "a.toml", text))
    assert result.returncode == 1
    assert needle in error_line(result)


def test_a_value_config_refuses_is_exit_1_naming_the_setting(tmp_path):
    path = write(tmp_path / "a.toml", "port = 70000\n")
    result = run_cli("cliapps:hello", "--app-dir", APPS, "--config", path, "--print-config")
    assert result.returncode == 1
    assert "port must be a whole number from 0 to 65535" in error_line(result)


def test_missing_file_is_one_line_and_exit_1(tmp_path):
    path = str(tmp_path / "nowhere.toml")
    result = run_cli("cliapps:hello", "--app-dir", APPS, "--config", path)
    assert result.returncode == 1
    assert error_line(result) == f"asgi_worker: error: config file {path}: no such file"


def test_toml_syntax_error_is_one_line_with_its_line_number(tmp_path):
    path = write(tmp_path / "a.toml", "port = 9000\nbacklog = 10\nroot-path = /api\n")
    result = run_cli("cliapps:hello", "--app-dir", APPS, "--config", path)
    assert result.returncode == 1
    line = error_line(result)
    assert path in line and "line 3" in line


def test_broken_pyproject_is_one_line_and_exit_1(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.asgi-worker\nport = 1\n")
    result = run_cli("cliapps:hello", "--app-dir", str(tmp_path))
    assert result.returncode == 1
    assert "pyproject.toml" in error_line(result) and "line 1" in error_line(result)


def test_supervisor_errors_are_its_own_one_line(tmp_path):
    path = write(tmp_path / "a.toml", "preload = true\nwrokers = 2\n")
    result = run_supervise("cliapps:hello", "--app-dir", APPS, "--config", path)
    assert result.returncode == 1
    assert "unknown setting 'wrokers'; did you mean 'workers'?" in error_line(result, "asgi-supervise")


# --print-config


def test_print_config_names_each_settings_layer(tmp_path):
    path = write(tmp_path / "a.toml", "port = 9001\nbacklog = 10\nws-ping-interval = 3\naccess-log = false\n")
    result = run_cli(
        "cliapps:hello",
        "--app-dir",
        APPS,
        "--config",
        path,
        "--backlog",
        "30",
        "--print-config",
        env={"ASGI_WORKER_PORT": "9002", "ASGI_WORKER_ROOT_PATH": "/api"},
    )
    assert result.stderr == ""
    rows = printed(result)
    assert rows["app"] == ('"cliapps:hello"', "command line")
    assert rows["port"] == ("9002", "environment ASGI_WORKER_PORT")
    assert rows["root_path"] == ('"/api"', "environment ASGI_WORKER_ROOT_PATH")
    assert rows["backlog"] == ("30", "command line")
    assert rows["ws_ping_interval"] == ("3.0", f"file {path}")
    assert rows["access_log"] == ("false", f"file {path}")
    assert rows["host"] == ('"127.0.0.1"', "default")
    assert rows["uds_mode"] == ("0o666", "default")
    assert rows["uds"] == ("unset", "default")
    assert set(rows) == {"app", *(option.name for option in OPTIONS)}


def test_print_config_of_the_supervisor_with_pyproject(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.asgi-worker]\nworkers = 4\nbinds = ['127.0.0.1:0']\n")
    result = run_supervise("cliapps:hello", "--app-dir", str(tmp_path), "--print-config", "--preload")
    where = f"file {tmp_path / 'pyproject.toml'}"
    rows = printed(result)
    assert rows["workers"] == ("4", where)
    assert rows["binds"] == ('["127.0.0.1:0"]', where)
    assert rows["preload"] == ("true", "command line")
    assert rows["app_dir"] == (f'"{tmp_path}"', "command line")
    assert rows["reload_delay"] == ("0.25", "default")
    assert set(rows) == {"app", *(option.name for option in BOTH)}


def test_print_config_defaults_to_one_supervised_worker():
    rows = printed(
        run_supervise("cliapps:hello", "--app-dir", APPS, "--print-config", env={"WEB_CONCURRENCY": ""})
    )
    assert rows["workers"] == ("1", "default")


def test_the_single_process_skips_the_supervisors_keys_it_knows():
    """One table serves both commands: asgi_worker skips asgi-supervise's own keys (the list it keeps,
    since it cannot import supervisor, must match the supervisor's settings)."""
    from asgi_worker.config import OPTIONS
    from asgi_worker.config_file import SUPERVISOR_KEYS, check_table
    from supervisor.config import SUPERVISOR_OPTIONS

    assert {option.name for option in SUPERVISOR_OPTIONS} == SUPERVISOR_KEYS
    assert check_table({"preload": True, "reload-delay": 1, "port": 9000}, OPTIONS, "t.toml") == {
        "port": 9000
    }
