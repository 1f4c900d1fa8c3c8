"""Apps for the PID 1 tests (tests/supervisor/test_pid1.py).

``orphaning`` leaves an orphan behind on every request: a shell that starts a background subshell and
exits at once, so the subshell is re-parented to the PID namespace's init (the supervisor) and exits
later with code 7, a process the supervisor must reap without taking it for a worker.

Importing this module sleeps ``$ASGI_TEST_IMPORT_DELAY`` seconds when set, after appending a line to
``$ASGI_TEST_IMPORT_MARKER`` (when set): a test sends its signal once the import has begun, not after
a guessed sleep. Without the variables the import is instant, so no other test is slowed.
"""

import json
import os
import subprocess
import time

ORPHAN_EXIT_CODE = 7
ORPHAN_LIFETIME = 0.3  # seconds the orphan outlives the shell that started it


def _slow_import():
    marker = os.environ.get("ASGI_TEST_IMPORT_MARKER")
    if marker:
        with open(marker, "a") as file:
            file.write(f"{os.getpid()}\n")
    delay = os.environ.get("ASGI_TEST_IMPORT_DELAY")
    if delay:
        time.sleep(float(delay))


_slow_import()


def _leave_an_orphan():
    """Start a subshell that outlives its parent; its pid (as this PID namespace numbers it)."""
    script = f"(sleep {ORPHAN_LIFETIME}; exit {ORPHAN_EXIT_CODE}) >/dev/null 2>&1 </dev/null & echo $!"
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=5, check=True)
    return int(done.stdout.strip())


async def orphaning(scope, receive, send):
    """Answers its worker's pid and the pid of the orphan it just left behind."""
    if scope["type"] != "http":
        return
    body = json.dumps({"pid": os.getpid(), "orphan": _leave_an_orphan()}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})
