#!/usr/bin/env bash
# Install what the benchmark needs outside our own package: wrk (a system tool, so apt) and the
# uvicorn baseline (pip, into the interpreter the benchmark will run). Safe to run again: each step
# is skipped or a no-op when its result is already there.
set -euo pipefail

PYTHON="${PYTHON:-python3}"

if ! command -v wrk >/dev/null 2>&1; then
    # Runs as root in our CI and dev containers, so no sudo.
    apt-get update
    apt-get install -y wrk
fi

if ! command -v taskset >/dev/null 2>&1; then
    echo "setup.sh: taskset is missing (package util-linux); run.py pins CPUs with it" >&2
    exit 1
fi

# The servers run with --loop uvloop --http httptools, so those two are named explicitly rather
# than through uvicorn[standard], which also drags in watchfiles, dotenv and yaml we never use.
# granian is the second baseline; starlette and fastapi serve the framework rows; psutil reads
# the servers' CPU time; websockets is our own WebSocket implementation (and uvicorn's).
"$PYTHON" -m pip install --quiet uvicorn uvloop httptools gunicorn uvicorn-worker granian \
    starlette fastapi psutil websockets

echo "setup.sh: wrk $(wrk --version 2>&1 | head -n1 | cut -d' ' -f2), $("$PYTHON" -m uvicorn --version)," \
    "$("$PYTHON" -m granian --version)"
