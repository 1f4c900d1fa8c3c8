"""An app that blocks a worker's event loop and says so first (tests/supervisor/test_control_supervisor.py).

``supapps.info``'s ``/block`` gives no sign that it has started blocking; here the in-flight line
(``$ASGI_WORKER_TEST_IN_FLIGHT``) is written first, so a test knows which worker is held, and when.
"""

import time

import supapps


async def blocking(scope, receive, send):
    """``/block?S``: note the arrival, hold the event loop ``S`` seconds; everything else is ``info``."""
    if scope["type"] == "http" and scope["path"] == "/block":
        supapps._note_in_flight()
        time.sleep(float(scope["query_string"].decode() or 5))
        scope = {**scope, "path": "/"}
    await supapps.info(scope, receive, send)
