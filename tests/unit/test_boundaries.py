"""Import rules and public surfaces: what ARCHITECTURE.md ("Layers") writes down, enforced."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

import asgi_worker
from asgi_worker import Config
from asgi_worker.cli import build_parser
from asgi_worker.config import OPTIONS

PACKAGE = Path(asgi_worker.__file__).parent

# Sans-I/O modules: no event loop, no sockets, no clock, no OS.
PURE_MODULES = [
    "http/events.py",
    "http/chunks.py",
    "http/body.py",
    "http/head_scan.py",
    "http/keepalive.py",
    "http/headers.py",
    "http/limits.py",
    "http/response.py",
    "http/scope.py",
    "http/parse_h11.py",
    "http/parse_httptools.py",
    "http/proxy.py",
    "http/proxy_protocol.py",
    "errors.py",
    "exitcodes.py",
    "clock.py",
    "log/access_line.py",
    "ws/handshake.py",
    "ws/wire.py",
    "wsgi_environ.py",
    "metrics/counts.py",
    "metrics/families.py",
    "control/protocol.py",
    "http2/settings.py",
    "http2/budget.py",
    "http2/events.py",
    "http2/frames.py",
    "http2/request.py",
    "http2/response.py",
    "http2/session.py",
    "../supervisor/policy.py",
]
IMPURE = {"asyncio", "socket", "time", "os", "selectors", "threading"}

# Each foreign library is imported in exactly one module.
ONLY_IN = {
    "httptools": "http/parse_httptools.py",
    "h11": "http/parse_h11.py",
    "uvloop": "loops.py",
    "gunicorn": "gunicorn_worker.py",
    "prometheus_client": "metrics/exposition.py",
    "websockets": "ws",
    "h2": ("http2/session.py", "http2/tuned.py"),
    "hpack": ("http2/tuned.py",),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module):
    assert not imported_modules(PACKAGE / module) & IMPURE


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_foreign_library_imported_in_one_place(library):
    users = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if library in imported_modules(path)
    )
    allowed = ONLY_IN[library]
    places = (allowed,) if isinstance(allowed, str) else allowed
    assert users and all(user in places or user.startswith(tuple(p + "/" for p in places)) for user in users)


def test_layers_point_one_way():
    # asgi_worker never imports supervisor; http/ and http2/ reach ws/ only through
    # context.UpgradeHandler (HTTP/2: take_over_stream, RFC 8441).
    for path in PACKAGE.rglob("*.py"):
        assert "supervisor" not in imported_modules(path), path
    for path in [*(PACKAGE / "http").rglob("*.py"), *(PACKAGE / "http2").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(module.startswith("asgi_worker.ws") for module in modules), path


def test_public_api():
    assert sorted(asgi_worker.__all__) == ["Config", "H11Worker", "Server", "Worker", "__version__", "run"]
    for name in asgi_worker.__all__:
        assert hasattr(asgi_worker, name)


def test_option_table_is_configs_keywords():
    # One declaration per setting: every keyword of Config but the Python-only ones is a CLI row,
    # with Config's own default, and the table holds nothing Config does not take.
    parameters = inspect.signature(Config).parameters
    python_only = ("app", "ssl_context_factory", "secure_scheme_headers")
    table = {option.name: option for option in OPTIONS}
    assert sorted(name for name in parameters if name not in python_only) == sorted(table)
    fields = {field.name: field for field in dataclasses.fields(Config)}
    for name, option in table.items():
        field = fields[name]
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        assert default == option.default, name


def test_cli_flags_come_from_the_table():
    flags = {flag for action in build_parser()._actions for flag in action.option_strings}
    for option in OPTIONS:
        assert option.flag in flags
        if option.kind == "switch":
            assert "--no-" + option.flag[2:] in flags


def test_uvicorn_flag_names_kept():
    # Settings this project shares with uvicorn keep uvicorn's flag spelling.
    flags = {option.flag for option in OPTIONS}
    shared = [
        "--host", "--port", "--uds", "--fd", "--loop", "--http", "--lifespan", "--interface",
        "--log-config", "--log-level", "--access-log", "--server-header", "--date-header",
        "--root-path", "--limit-concurrency", "--backlog", "--limit-max-requests",
        "--limit-max-requests-jitter", "--timeout-keep-alive", "--timeout-graceful-shutdown",
        "--header", "--factory", "--app-dir", "--h11-max-incomplete-event-size", "--workers",
        "--proxy-headers", "--forwarded-allow-ips",
    ]  # fmt: skip
    for flag in shared:
        assert flag in flags


def test_importing_the_package_does_not_import_gunicorn_or_websockets():
    import subprocess
    import sys

    code = "import sys, asgi_worker; print('gunicorn' in sys.modules, 'websockets' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["False", "False"]


def test_supervisor_package_is_ours():
    import supervisor

    assert supervisor.IS_ASGI_WORKER_SUPERVISOR
    assert Path(supervisor.__file__).parent.parent == PACKAGE.parent
    assert sorted(supervisor.__all__) == ["IS_ASGI_WORKER_SUPERVISOR", "Supervisor", "main"]
