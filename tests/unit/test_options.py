"""Settings declared once (``asgi_worker/options.py``): what ``Config`` accepts and refuses."""

from __future__ import annotations

import pytest

from asgi_worker import Config
from asgi_worker.errors import ConfigError


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("http", None, "http must be one of auto, h11, httptools, not None"),
        ("loop", 1, "loop must be one of auto, asyncio, uvloop, not 1"),
        ("ws", True, "ws must be one of auto, websockets, none, not True"),
        ("lifespan", "yes", "lifespan must be one of auto, on, off, not 'yes'"),
        ("log_level", "loud", "log_level must be one of critical, error, warning, info, debug, trace"),
        ("port", None, "port must be a whole number from 0 to 65535, not None"),
        ("port", 65536, "port must be a whole number from 0 to 65535, not 65536"),
        ("backlog", 0, "backlog must be a whole number of at least 1, not 0"),
        ("wsgi_threads", True, "wsgi_threads must be a whole number of at least 1, not True"),
        ("timeout_keep_alive", -1, "timeout_keep_alive must be a number of seconds (0 or more), not -1"),
        ("timeout_keep_alive", None, "timeout_keep_alive must be a number of seconds (0 or more), not None"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(setting, value, message):
    with pytest.raises(ConfigError) as caught:
        Config("app:app", **{setting: value})
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("setting", "value", "stored"),
    [
        ("log_level", 10, 10),  # a logging level number, as uvicorn takes it
        ("log_level", None, None),
        ("limit_concurrency", None, None),
        ("timeout_keep_alive", 5, 5.0),  # seconds are stored as float
        ("ws_ping_interval", None, 0.0),  # None: no pings, as uvicorn reads it
        ("uds_mode", 0o600, 0o600),
    ],
)
def test_good_values_are_stored_as_declared(setting, value, stored):
    config = Config("app:app", **{setting: value})
    assert getattr(config, setting) == stored
    assert type(getattr(config, setting)) is type(stored)
