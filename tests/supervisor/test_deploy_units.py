"""deploy/: the systemd units, the environment file and the nginx site say what deploy/README.md says.

The text checks always run; ``systemd-analyze verify`` and ``nginx -t`` run where they are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from asgi_worker.config import OPTIONS
from asgi_worker.options import env_name
from tests.timing import TIMEOUT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICE = DEPLOY / "asgi-supervise.service"
SOCKET = DEPLOY / "asgi-supervise.socket"
ENV_FILE = DEPLOY / "asgi-supervise.env"
NGINX = DEPLOY / "nginx.conf"
KILL_MARGIN = 2.0  # the supervisor's margin past the graceful timeout (supervisor/arbiter.py)


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists: keys may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        assert not value.endswith("\\"), f"{path.name}: keep settings on one line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def one(section: list[tuple[str, str]], key: str) -> str:
    values = [value for name, value in section if name == key]
    assert len(values) == 1, f"{key}: expected exactly one, found {values}"
    return values[0]


def parse_env(path: Path) -> dict[str, str]:
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"not KEY=VALUE: {line!r}"
            env[key] = value
    return env


def seconds(value: str) -> float:
    """A systemd time span as used here: a number of seconds, optionally with s/min."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", value)
    assert match, f"unsupported time span {value!r}"
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_service_settings():
    unit = parse_unit(SERVICE)
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "KillMode") == "mixed"
    assert one(service, "KillSignal") == "SIGTERM"
    assert re.fullmatch(r"/bin/kill -HUP \$MAINPID", one(service, "ExecReload"))
    assert one(service, "Restart") == "on-failure"
    assert set(one(service, "RestartPreventExitStatus").split()) == {"1", "3"}
    assert one(service, "RuntimeDirectory") == "asgi-supervise"
    exec_start = one(service, "ExecStart").split()
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/asgi-supervise")
    assert exec_start[1:] == ["--workers", "4", "myproject.asgi:app"]
    assert one(service, "EnvironmentFile").lstrip("-").endswith("/asgi-supervise.env")
    for key in ("User", "Group", "WorkingDirectory"):
        assert one(service, key)
    assert "WantedBy" in dict(unit["Install"])


def test_service_hardening():
    service = parse_unit(SERVICE)["Service"]
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
    ):
        assert one(service, key) == "yes", key
    assert one(service, "ProtectSystem") == "strict"
    writable = one(service, "ReadWritePaths").split()
    assert "/run/asgi-supervise" in writable


def test_watchdog_is_documented_but_optional():
    assert "WatchdogSec" not in dict(parse_unit(SERVICE)["Service"])
    assert re.search(r"^#\s*WatchdogSec=\d+", SERVICE.read_text(), re.MULTILINE)


def test_stop_timeout_outlasts_the_graceful_timeout():
    graceful = float(parse_env(ENV_FILE)["ASGI_WORKER_TIMEOUT_GRACEFUL_SHUTDOWN"])
    stop = seconds(one(parse_unit(SERVICE)["Service"], "TimeoutStopSec"))
    assert stop > graceful + KILL_MARGIN
    assert str(int(graceful)) in SERVICE.read_text()  # the comment says which timeout it covers


def test_socket_unit():
    unit = parse_unit(SOCKET)
    socket_section = unit["Socket"]
    assert one(socket_section, "ListenStream").endswith("8000")
    assert int(one(socket_section, "Backlog")) > 0
    assert one(socket_section, "Accept") == "no"
    service = dict(socket_section).get("Service", SERVICE.name)
    assert service == SERVICE.name and (DEPLOY / service).exists()
    assert re.search(r"^#\s*ListenStream=/", SOCKET.read_text(), re.MULTILINE)  # the UNIX alternative


def test_env_file_names_only_real_settings():
    known = {env_name(option) for option in OPTIONS}
    env = parse_env(ENV_FILE)
    assert set(env) <= known, f"not settings: {sorted(set(env) - known)}"
    for key in (
        "ASGI_WORKER_HOST",
        "ASGI_WORKER_PORT",
        "WEB_CONCURRENCY",
        "ASGI_WORKER_TIMEOUT_GRACEFUL_SHUTDOWN",
        "FORWARDED_ALLOW_IPS",
        "ASGI_WORKER_LOG_LEVEL",
    ):
        assert key in env, key
    assert env["WEB_CONCURRENCY"] == "4"  # the same as the unit's --workers 4


def test_nginx_site():
    text = NGINX.read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert code.count("{") == code.count("}")
    for directive in (
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header Forwarded ",
        "proxy_http_version 1.1;",
        "server 127.0.0.1:8000;",
        "client_max_body_size ",
        "proxy_read_timeout ",
    ):
        assert directive in code, directive
    assert "server unix:/run/asgi-supervise.sock;" in text  # the UNIX socket alternative


def test_readme_covers_the_operator_topics():
    text = (DEPLOY / "README.md").read_text()
    for needle in (
        "TTIN",
        "TTOU",
        "USR1",
        "QUIT",
        "HUP",
        "systemctl reload",
        "--preload",
        "copytruncate",
        "LISTEN_FDS",
        "ASGI_WORKER_SLOT",
        "ASGI_WORKER_GENERATION",
        "supervisord",
        "own virtualenv",
    ):
        assert needle in text, needle


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path):
    """Verify copies whose ExecStart= binary exists: verify rejects a missing one, and ours is a
    placeholder path. User=/Group= and paths are only checked when the unit starts, not here."""
    true = shutil.which("true")
    assert true
    service = SERVICE.read_text()
    service = re.sub(r"^ExecStart=\S+", f"ExecStart={true}", service, count=1, flags=re.MULTILINE)
    (tmp_path / SERVICE.name).write_text(service)
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / SERVICE.name), str(tmp_path / SOCKET.name)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(tmp_path) in line or "asgi-supervise" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_site(tmp_path):
    (tmp_path / "logs").mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        f"events {{}}\nhttp {{\n access_log off;\n include {NGINX};\n}}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
    )
    assert result.returncode == 0, result.stderr
