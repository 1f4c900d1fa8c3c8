"""deploy/: the systemd units, the environment file, the nginx site, the Dockerfile and the Kubernetes
manifest say what deploy/README.md says, and every flag and variable they use is one ``asgi-supervise``
accepts.

The text checks always run; ``systemd-analyze verify`` and ``nginx -t`` run where they are installed.
Docker is not run: the Dockerfile is parsed as the builder reads it (instructions, JSON exec forms).
One test starts the supervisor with the environment file's settings and asks its control listener.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from asgi_worker.cli import parse_config_kwargs
from asgi_worker.config import OPTIONS, Config
from asgi_worker.options import env_name
from supervisor.arbiter import _KILL_MARGIN as KILL_MARGIN  # past the graceful timeout, then SIGKILL
from supervisor.cli import PROG
from supervisor.config import DEFAULT_GRACEFUL_TIMEOUT, SUPERVISOR_OPTIONS, SupervisorConfig
from supervisor.cpus import usable_cpus
from tests.supervisor.harness import supervise
from tests.supervisor.test_cpus import cpus, v2_pod
from tests.timing import TIMEOUT, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICE = DEPLOY / "asgi-supervise.service"
SOCKET = DEPLOY / "asgi-supervise.socket"
ENV_FILE = DEPLOY / "asgi-supervise.env"
NGINX = DEPLOY / "nginx.conf"
KUBERNETES = DEPLOY / "kubernetes.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
RUNTIME_DIRECTORY = "/run/asgi-supervise/"


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


def supervise_settings(argv: Sequence[str], environ: dict[str, str]) -> tuple[Config, SupervisorConfig]:
    """What ``asgi-supervise ARGV`` would run with in ``environ`` (alone, not ours): parsed by its own
    parser and validated by the same classes, as ``supervisor.cli.main`` does. A flag or value it
    does not accept fails the test here (argparse's exit 2, or ``ConfigError``)."""
    app, kwargs = parse_supervise(argv, environ)
    own = {option.name for option in SUPERVISOR_OPTIONS}
    settings = {name: kwargs.pop(name) for name in list(kwargs) if name in own}
    workers = kwargs.pop("workers", None)
    if workers == "auto":  # as main() does, on this machine: a figure of at least 1
        workers, _ = usable_cpus()
    return Config(app, **kwargs), SupervisorConfig(workers=workers or 1, **settings)


def parse_supervise(argv: Sequence[str], environ: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """``(app, settings given)`` of ``asgi-supervise ARGV``, before any is resolved (``"auto"`` stays)."""
    options = (*OPTIONS, *SUPERVISOR_OPTIONS)
    return parse_config_kwargs(list(argv), environ, prog=PROG, options=options)


def service_settings() -> tuple[Config, SupervisorConfig]:
    """The settings of the unit's ExecStart= with the environment file."""
    exec_start = one(parse_unit(SERVICE)["Service"], "ExecStart").split()
    return supervise_settings(exec_start[1:], parse_env(ENV_FILE))


def stop_bound(config: Config) -> float:
    """Longest a graceful stop may take before the supervisor has killed every worker (arbiter.py):
    the shutdown delay, then each worker's drain up to the graceful timeout, then the kill margin."""
    graceful = config.timeout_graceful_shutdown
    return config.shutdown_delay + (DEFAULT_GRACEFUL_TIMEOUT if graceful is None else graceful) + KILL_MARGIN


def says_the_sum(text: str, config: Config, total: float) -> bool:
    """Whether a comment spells the stop's sum out, "5 ... + 30 ... + 2 ... = 37 s ... = 45 s", with
    the settings' own numbers, so that changing one of them without the comment fails."""
    parts = (config.shutdown_delay, config.timeout_graceful_shutdown, KILL_MARGIN, stop_bound(config))
    delay, graceful, margin, bound = (f"{value:g}" for value in parts)
    pattern = rf"{delay}[^=]*\+[^=]*{graceful}[^=]*\+[^=]*{margin}[^=]*= {bound} s.*= {total:g} s"
    comments = " ".join(line.lstrip("# ") for line in text.splitlines())
    return re.search(pattern, comments) is not None


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


def test_service_flags_and_variables_are_real_settings():
    config, settings = service_settings()
    assert settings.workers == 4
    assert config.control_bind and config.control_bind.startswith("unix:" + RUNTIME_DIRECTORY)
    assert config.shutdown_delay > 0
    assert config.timeout_graceful_shutdown


def test_control_socket_is_in_the_writable_runtime_directory():
    """The supervisor (User=) creates the socket: the directory must exist and be writable for it."""
    config, _ = service_settings()
    service = parse_unit(SERVICE)["Service"]
    assert config.control_bind
    directory = str(Path(config.control_bind.removeprefix("unix:")).parent)
    assert directory == "/run/" + one(service, "RuntimeDirectory")
    assert directory in one(service, "ReadWritePaths").split()


def test_stop_timeout_covers_delay_drain_and_margin():
    config, _ = service_settings()
    stop = seconds(one(parse_unit(SERVICE)["Service"], "TimeoutStopSec"))
    assert stop > stop_bound(config)
    assert says_the_sum(SERVICE.read_text(), config, stop)  # the comment says what it covers


def test_socket_unit():
    unit = parse_unit(SOCKET)
    socket_section = unit["Socket"]
    assert one(socket_section, "ListenStream").endswith("8000")
    assert int(one(socket_section, "Backlog")) > 0
    assert one(socket_section, "Accept") == "no"
    service = dict(socket_section).get("Service", SERVICE.name)
    assert service == SERVICE.name and (DEPLOY / service).exists()
    assert re.search(r"^#\s*ListenStream=/", SOCKET.read_text(), re.MULTILINE)  # the UNIX alternative


def test_socket_unit_holds_the_app_socket_only():
    """Every socket systemd passes is served as the app: the control listener must not be one."""
    config, _ = service_settings()
    assert config.control_bind
    listens = [value for key, value in parse_unit(SOCKET)["Socket"] if key == "ListenStream"]
    assert len(listens) == 1
    assert config.control_bind.removeprefix("unix:") not in SOCKET.read_text()


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
        "ASGI_WORKER_CONTROL_BIND",
        "ASGI_WORKER_SHUTDOWN_DELAY",
    ):
        assert key in env, key
    assert env["WEB_CONCURRENCY"] == "4"  # the same as the unit's --workers 4


def nginx_code() -> str:
    """nginx.conf without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in NGINX.read_text().splitlines())


def test_nginx_site():
    text = NGINX.read_text()
    code = nginx_code()
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


def nginx_blocks(code: str, kind: str) -> dict[str, str]:
    """The top-level ``kind NAME { ... }`` blocks (kind: server, upstream) as {NAME: body}; server
    blocks have no name and are keyed by their position."""
    blocks = {}
    for number, match in enumerate(re.finditer(rf"^{kind}\b([^{{;]*)\{{", code, re.MULTILINE)):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            end += 1
        blocks[match[1].strip() or str(number)] = code[match.end() : end - 1]
    return blocks


def test_nginx_keeps_the_control_listener_private():
    """Only a server that denies everybody but the listed networks proxies to the control listener,
    and only its three paths; the public site (port 80) never does."""
    config, _ = service_settings()
    code = nginx_code()
    upstreams = nginx_blocks(code, "upstream")
    control = [name for name, body in upstreams.items() if f"server {config.control_bind};" in body]
    assert len(control) == 1, f"no upstream for ASGI_WORKER_CONTROL_BIND: {upstreams}"
    servers = nginx_blocks(code, "server").values()
    users = [body for body in servers if f"http://{control[0]};" in body]
    assert len(users) == 1
    private = users[0]
    assert re.search(r"^\s*deny all;", private, re.MULTILINE)
    assert re.search(r"^\s*allow 127\.0\.0\.1;", private, re.MULTILINE)
    assert not re.search(r"^\s*listen\s+(\S+:)?(80|443)\b", private, re.MULTILINE)
    forwarded = re.findall(r"location\s+=\s+(\S+)\s*\{\s*proxy_pass", private)
    assert sorted(forwarded) == ["/livez", "/metrics", "/readyz"]
    assert len(re.findall(r"proxy_pass", private)) == 3  # nothing else is forwarded
    public = [body for body in servers if re.search(r"^\s*listen 80;", body, re.MULTILINE)]
    assert len(public) == 1 and control[0] + ";" not in public[0]


Instruction = tuple[str, str]


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """Each build stage's instructions as (INSTRUCTION, arguments), as the builder reads them:
    comment lines dropped (also inside a continued instruction), ``\\`` continuations joined. A stage
    begins at its FROM; the last stage is the image that runs."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, arguments = (pending + line).partition(" ")
        pending = ""
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, f"{path.name}: {instruction} before the first FROM"
        stages[-1].append((instruction.upper(), arguments.strip()))
    assert not pending, f"{path.name}: ends inside a continued line"
    return stages


def final_stage() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)[-1]


def last(stage: list[Instruction], instruction: str) -> str:
    """The arguments of the stage's last ``instruction`` (the one that counts for USER, CMD, ...)."""
    values = [arguments for name, arguments in stage if name == instruction]
    assert values, f"no {instruction} in the final stage"
    return values[-1]


def exec_form(arguments: str) -> list[str]:
    """A JSON array of strings (exec form), or the test fails: shell form runs ``/bin/sh -c``."""
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), (
        f"not exec form: {arguments!r}"
    )
    return value


def dockerfile_env(stage: list[Instruction]) -> dict[str, str]:
    """The stage's ENV settings (``KEY=VALUE`` pairs; references like ``$PATH`` left as written)."""
    env = {}
    for name, arguments in stage:
        if name == "ENV":
            for pair in shlex.split(arguments):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV KEY VALUE (legacy form): use KEY=VALUE: {arguments!r}"
                env[key] = value
    return env


def image_argv() -> list[str]:
    """What the container runs by default: ENTRYPOINT then CMD, both in exec form."""
    stage = final_stage()
    return exec_form(last(stage, "ENTRYPOINT")) + exec_form(last(stage, "CMD"))


def image_settings() -> tuple[Config, SupervisorConfig]:
    """The settings of the image's default command, with the image's own environment."""
    argv = image_argv()
    assert argv[0] == "asgi-supervise"
    return supervise_settings(argv[1:], dockerfile_env(final_stage()))


def control_port(config: Config) -> int:
    assert config.control_bind
    return int(config.control_bind.rpartition(":")[2])


def test_dockerfile_uses_exec_form_throughout():
    """RUN, CMD, ENTRYPOINT (and HEALTHCHECK CMD) are JSON arrays; no SHELL changes that."""
    for stage in parse_dockerfile(DOCKERFILE):
        for name, arguments in stage:
            assert name != "SHELL"
            if name in ("RUN", "CMD", "ENTRYPOINT"):
                exec_form(arguments)
            if name == "HEALTHCHECK" and arguments != "NONE":
                exec_form(arguments.partition("CMD")[2].strip())


def test_dockerfile_runs_the_supervisor_as_pid_1():
    """The supervisor itself is PID 1 (no shell, no init wrapper before it) and SIGTERM stops it."""
    stage = final_stage()
    assert exec_form(last(stage, "ENTRYPOINT")) == ["asgi-supervise"]
    assert last(stage, "STOPSIGNAL") == "SIGTERM"
    assert re.fullmatch(r"python:3\.\d+-slim", last(stage, "FROM"))
    text = DOCKERFILE.read_text()
    for why in ("PID 1", "reaps orphans", "cgroup"):  # the comments say why
        assert why in text, why


def test_dockerfile_installs_the_project_with_its_extras_in_a_venv():
    runs = [" ".join(exec_form(a)) for stage in parse_dockerfile(DOCKERFILE) for n, a in stage if n == "RUN"]
    assert any(re.search(r"pip install \S*\[standard,metrics\]", run) for run in runs), runs
    assert any(re.search(r"-m venv /opt/venv", run) for run in runs), runs
    assert dockerfile_env(final_stage())["PATH"].startswith("/opt/venv/bin:")
    assert re.search(r"^#\s*RUN .*pip.*install.*-r.*requirements\.txt", DOCKERFILE.read_text(), re.MULTILINE)


def test_dockerfile_user_is_not_root():
    """A numeric USER, so that the kubelet's runAsNonRoot can check it without /etc/passwd."""
    user, _, group = last(final_stage(), "USER").partition(":")
    assert user.isdecimal() and int(user) != 0, user
    assert not group or (group.isdecimal() and int(group) != 0), group


def test_dockerfile_command_is_real_flags():
    config, _ = image_settings()
    _, given = parse_supervise(image_argv()[1:], dockerfile_env(final_stage()))
    assert given["workers"] == "auto"
    assert config.host == "0.0.0.0" and config.port == 8000
    assert config.control_bind == "0.0.0.0:9100"
    assert config.shutdown_delay == 5
    assert config.timeout_graceful_shutdown == 30


def test_dockerfile_exposes_the_app_and_control_ports():
    config, _ = image_settings()
    exposed = {int(port.partition("/")[0]) for port in last(final_stage(), "EXPOSE").split()}
    assert exposed == {config.port, control_port(config)}


def dockerignored(path: str) -> bool:
    """Whether a pattern of the Dockerfile's ignore file keeps ``path`` (or a parent) out."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not handled here"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(Path(prefix).match(p.removeprefix("**/")) for p in patterns for prefix in prefixes)


def test_dockerignore_keeps_the_venvs_out_and_the_package_in():
    for path in (".venv/bin/python", ".ci/venv/bin/python", ".git/HEAD", "asgi_worker/__pycache__/x.pyc"):
        assert dockerignored(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "asgi_supervise.py",
        "asgi_worker/cli.py",
        "supervisor/cli.py",
    ):
        assert not dockerignored(path), path


def kubernetes() -> dict[str, dict[str, Any]]:
    """The manifest's objects by kind (one of each)."""
    objects = [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc]
    kinds = [doc["kind"] for doc in objects]
    assert sorted(kinds) == ["Deployment", "PodDisruptionBudget", "Service"], kinds
    return {doc["kind"]: doc for doc in objects}


def app_container() -> dict[str, Any]:
    containers = kubernetes()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_argv() -> list[str]:
    """What the container runs: its command (else the image's ENTRYPOINT), then its args."""
    container = app_container()
    command = container.get("command") or exec_form(last(final_stage(), "ENTRYPOINT"))
    return [str(arg) for arg in command + container.get("args", [])]


def container_env() -> dict[str, str]:
    """The image's ENV overlaid with the container's env, as the container sees them."""
    env = {item["name"]: str(item["value"]) for item in app_container().get("env", [])}
    return {**dockerfile_env(final_stage()), **env}


def container_settings() -> tuple[Config, SupervisorConfig]:
    """The settings of the container's command with its environment (and nothing of ours)."""
    command = container_argv()
    assert command[0] == "asgi-supervise"
    return supervise_settings(command[1:], container_env())


def port_number(ports: list[dict[str, Any]], port: int | str) -> int:
    """A probe's or Service's port (a number, or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in ports if p.get("name") == port]
    assert len(numbers) == 1, f"no container port named {port!r}"
    return int(numbers[0])


def test_kubernetes_command_is_real_flags():
    config, settings = container_settings()
    assert config.control_bind == "0.0.0.0:9100"
    assert config.shutdown_delay == 5
    assert config.host == "0.0.0.0" and config.port
    assert config.timeout_graceful_shutdown
    assert settings.workers >= 1
    assert parse_supervise(container_argv()[1:], container_env())[1]["workers"] == "auto"


def test_kubernetes_runs_the_images_entrypoint_as_its_user():
    """args, not command: the image's ENTRYPOINT stays PID 1. The args are the image's CMD, the image
    is the one the Dockerfile's build line tags, and runAsUser is the Dockerfile's USER."""
    container = app_container()
    assert "command" not in container
    assert [str(arg) for arg in container["args"]] == exec_form(last(final_stage(), "CMD"))
    assert f"-t {container['image']} " in DOCKERFILE.read_text()
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == last(final_stage(), "USER").partition(":")[0]


def cpu_quantity(value: str | int | float) -> float:
    """A Kubernetes CPU quantity ("2", 1.5, "1500m") in CPUs."""
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_kubernetes_workers_auto_follow_the_cpu_limit(tmp_path):
    """The kubelet writes the CPU limit as the cgroup quota (100 ms periods); auto's count from that
    tree is the limit rounded up, whatever the node's CPU count (8 here)."""
    resources = app_container()["resources"]
    limit = cpu_quantity(resources["limits"]["cpu"])
    assert cpu_quantity(resources["requests"]["cpu"]) <= limit
    quota = f"{round(limit * 100_000)} 100000\n"
    v2_pod(tmp_path, leaf=quota, pod=quota)
    assert cpus(tmp_path)[0] == math.ceil(limit)
    assert re.search(r"#.*--workers auto follows the CPU limit", KUBERNETES.read_text())


def test_kubernetes_disruption_budget_selects_the_pods_and_lets_a_drain_proceed():
    """One pod at a time may be evicted: never zero (a drain would wait forever), never all."""
    objects = kubernetes()
    budget = objects["PodDisruptionBudget"]
    assert budget["apiVersion"] == "policy/v1"
    template_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    assert (
        budget["spec"]["selector"]["matchLabels"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    )
    limits = {key: budget["spec"][key] for key in ("minAvailable", "maxUnavailable") if key in budget["spec"]}
    assert len(limits) == 1, limits
    replicas = objects["Deployment"]["spec"]["replicas"]
    evictable = limits.get("maxUnavailable", replicas - limits.get("minAvailable", 0))
    assert 0 < evictable < replicas


def test_kubernetes_probes_ask_the_control_port():
    config, _ = container_settings()
    container = app_container()
    ports = container["ports"]
    assert config.control_bind
    control = int(config.control_bind.rpartition(":")[2])
    assert control != config.port
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(ports, get["port"]) == control, probe
    assert port_number(ports, "http") == config.port
    assert "preStop" not in container.get("lifecycle", {})  # --shutdown-delay replaces the sleep


def test_kubernetes_readiness_fails_within_the_shutdown_delay():
    """Whatever follows the pod's readiness has seen the 503 before the drain begins."""
    config, _ = container_settings()
    readiness = app_container()["readinessProbe"]
    assert readiness["periodSeconds"] * readiness.get("failureThreshold", 3) < config.shutdown_delay


def test_kubernetes_metrics_port_is_named_and_annotated():
    config, _ = container_settings()
    assert config.control_bind
    control = int(config.control_bind.rpartition(":")[2])
    assert port_number(app_container()["ports"], "metrics") == control
    annotations = kubernetes()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(control)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_kubernetes_service_publishes_the_app_port_only():
    config, _ = container_settings()
    objects = kubernetes()
    ports = app_container()["ports"]
    targets = [port_number(ports, p["targetPort"]) for p in objects["Service"]["spec"]["ports"]]
    assert targets == [config.port]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kubernetes_grace_period_covers_delay_drain_and_margin():
    config, _ = container_settings()
    grace = kubernetes()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > stop_bound(config)
    assert says_the_sum(KUBERNETES.read_text(), config, grace)  # the comment says what it covers


def control_status(path: Path, target: str) -> int:
    """One GET to a control listener on a UNIX socket; its status code."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_env_file_control_listener_answers_and_delays_the_stop(tmp_path):
    """The environment file's settings, run for real: the probes answer on the UNIX socket; SIGTERM
    turns /readyz 503 while the app still serves (the shutdown delay); a second SIGTERM drains at
    once. Changed: the socket's place (tmp_path), one worker, and a delay longer than every step
    below can take (the file's 5 s would not be on a slow machine); the second SIGTERM ends it."""
    control = tmp_path / "control.sock"
    env = {
        **parse_env(ENV_FILE),
        "ASGI_WORKER_CONTROL_BIND": f"unix:{control}",
        "WEB_CONCURRENCY": "1",
        "ASGI_WORKER_SHUTDOWN_DELAY": str(TIMEOUT * 6),
    }
    with supervise("supapps:info", env=env) as running:
        assert control_status(control, "/livez") == 200
        assert wait_until(lambda: control_status(control, "/readyz") == 200)
        running.signal(signal.SIGTERM)
        assert wait_until(lambda: control_status(control, "/readyz") == 503)
        assert control_status(control, "/livez") == 200
        running.get("/")  # still serving, during the delay
        running.signal(signal.SIGTERM)
        assert running.proc.wait(TIMEOUT * 2) == 0


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
        "--control-bind",
        "--shutdown-delay",
        "/livez",
        "/readyz",
        "/metrics",
        "asgi-worker[metrics]",
        "kubernetes.yaml",
        "preStop",
        "terminationGracePeriodSeconds",
        "Dockerfile",
        "PID 1",
        "STOPSIGNAL",
        "--workers auto",
        "PodDisruptionBudget",
        "maxUnavailable",
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
    # In tmp_path, not the compiled-in /var/lib/nginx: -t creates them, and they may be missing or not ours.
    temp_paths = "\n".join(
        f" {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        f"events {{}}\nhttp {{\n access_log off;\n{temp_paths}\n include {NGINX};\n}}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
    )
    assert result.returncode == 0, result.stderr
