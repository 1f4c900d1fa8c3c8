#!/usr/bin/env bash
# Install what the benchmark needs outside our own package: wrk and h2load (system tools, so apt)
# and the baselines (pip, into the interpreter the benchmark will run). Safe to run again: each step
# is skipped or a no-op when its result is already there.
set -euo pipefail

PYTHON="${PYTHON:-python3}"

# wrk drives run.py's HTTP/1.1 rows; h2load (Debian's nghttp2-client) drives h2_run.py's HTTP/2 rows.
APT_PACKAGES=()
command -v wrk >/dev/null 2>&1 || APT_PACKAGES+=(wrk)
command -v h2load >/dev/null 2>&1 || APT_PACKAGES+=(nghttp2-client)
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    # Runs as root in our CI and dev containers, so no sudo.
    apt-get update
    apt-get install -y "${APT_PACKAGES[@]}"
fi

if ! command -v taskset >/dev/null 2>&1; then
    echo "setup.sh: taskset is missing (package util-linux); run.py pins CPUs with it" >&2
    exit 1
fi

# The servers run with --loop uvloop --http httptools, so those two are named explicitly rather
# than through uvicorn[standard], which also drags in watchfiles, dotenv and yaml we never use.
# granian is the second baseline; starlette and fastapi serve the framework rows; psutil reads
# the servers' CPU time; websockets is our own WebSocket implementation (and uvicorn's); hypercorn is
# the HTTP/2 baseline (h2_run.py) and h2 our own --http2.
"$PYTHON" -m pip install --quiet uvicorn uvloop httptools gunicorn uvicorn-worker granian \
    starlette fastapi psutil websockets hypercorn h2

echo "setup.sh: wrk $(wrk --version 2>&1 | head -n1 | cut -d' ' -f2), $("$PYTHON" -m uvicorn --version)," \
    "$("$PYTHON" -m granian --version), $(h2load --version | head -n1)," \
    "hypercorn $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("hypercorn"))')"
