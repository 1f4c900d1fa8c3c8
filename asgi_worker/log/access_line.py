"""What an access line says, built in one place: the request target, the request line, the default line.

Every access output reads these functions rather than spelling a line again: the writer path's text
line (``log.access``), ``AccessFormatter``, the JSON ``message``, gunicorn's ``%(r)s`` atom and the
gunicorn worker's ``RAW_URI``. So a change to how a request is shown is made once and shows everywhere.

Rules:
- The request target is what the request line carried: the raw path and the query string, each
  decoded as latin-1 (a byte per character, never a decoding error), not the percent-decoded path.
- Text fields are escaped with ``escape_field`` (no log injection, no closing a quoted field);
  ``request_target`` itself is unescaped, as gunicorn's logger and uvicorn-style record args want it.
- Fields that name the target's parts (``%(U)s``, ``%(q)s``, JSON ``path`` and ``query``) read
  the scope's decoded ``path`` and its query string, as gunicorn's ``PATH_INFO``/``QUERY_STRING`` do.
- ``AccessEntry`` freezes a completed response for a formatter that runs later or in another thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from asgi_worker.log.json import iso_time, json_string
from asgi_worker.log.text import escape_field, peer_text, status_text

__all__ = [
    "ACCESS_MESSAGE",
    "AccessEntry",
    "CompletedCycle",
    "Render",
    "access_line",
    "client_field",
    "record_args",
    "request_line",
    "request_target",
]


class CompletedCycle(Protocol):
    """What an access line reads from a finished request (``HttpCycle`` has all of it)."""

    @property
    def scope(self) -> dict[str, Any]: ...
    @property
    def status(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def response_headers(self) -> Any: ...


Render = Callable[[CompletedCycle, float, float], str]
"""A compiled format: ``render(cycle, duration_seconds, wall_time) -> line`` (no newline)."""

# The message of a record on the logging path, for a plain "%(message)s" formatter:
# client - "request line" status bytes seconds (uvicorn-shaped args; see ``record_args``).
ACCESS_MESSAGE = '%s - "%s %s HTTP/%s" %d %d %.6f'


def request_target(scope: dict[str, Any]) -> str:
    """``/path?query`` as the request line showed it (raw path, latin-1), unescaped."""
    query = scope["query_string"]
    target: str = scope["raw_path"].decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def protocol_version(http_version: str) -> str:
    """The version as request lines show it: ASGI's "2" is written "2.0", as gunicorn and nginx log it."""
    return "2.0" if http_version == "2" else http_version


def request_line(scope: dict[str, Any]) -> str:
    """``GET /path?query HTTP/1.1``, escaped for a quoted field."""
    return escape_field(
        f"{scope['method']} {request_target(scope)} HTTP/{protocol_version(scope['http_version'])}"
    )


def client_field(scope: dict[str, Any]) -> str:
    """``host:port`` of the client, escaped, or ``-``."""
    return escape_field(peer_text(scope["client"]))


def access_line(scope: dict[str, Any], status: str) -> str:
    """The default access line without level prefix: ``127.0.0.1:5000 - "GET /?q HTTP/1.1" 200 OK``.

    ``status`` is ``status_text(code, colors)``: the caller decides colors, and caches nothing here.
    """
    return f'{client_field(scope)} - "{request_line(scope)}" {status}'


def record_args(entry: AccessEntry) -> tuple[str, str, str, str, int, int, float]:
    """The args of a default record on the logging path, for ``ACCESS_MESSAGE``, unescaped as uvicorn's
    are: ``(client, method, target, http_version, status, bytes, seconds)``."""
    scope = entry.scope
    return (
        peer_text(scope["client"]),
        scope["method"],
        request_target(scope),
        protocol_version(scope["http_version"]),
        entry.status,
        entry.bytes_sent,
        entry.duration,
    )


class AccessEntry:
    """One completed response, frozen for a formatter that runs later or in another thread.

    Records on the ``logging`` path carry one as ``record.asgi_access``; the JSON writer path builds
    one per line. Pickles as its message text (for socket and queue handlers in other processes).
    """

    __slots__ = ("_line", "bytes_sent", "duration", "render", "response_headers", "scope", "status", "wall")

    def __init__(self, cycle: CompletedCycle, duration: float, wall: float, render: Render | None) -> None:
        self.scope = cycle.scope
        self.status = cycle.status
        self.bytes_sent = cycle.bytes_sent
        self.response_headers = cycle.response_headers
        self.duration = duration
        self.wall = wall
        self.render = render
        self._line: str | None = None

    def message(self) -> str:
        """The line without level prefix: the ``--access-log-format`` line, or the default one."""
        line = self._line
        if line is None:
            if self.render is not None:
                line = self.render(self, self.duration, self.wall)
            else:
                line = access_line(self.scope, status_text(self.status))
            self._line = line
        return line

    __str__ = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (self.message(),))

    def json_line(self, pid: int) -> str:
        """The access line as one JSON object (no newline): the common keys, then the request's fields."""
        scope = self.scope
        client = scope["client"]
        headers = dict(scope["headers"])
        return (
            f'{{"time":"{iso_time(self.wall)}","level":"INFO","logger":"asgi_worker.access",'
            f'"message":{json_string(self.message())},"pid":{pid},'
            f'"client":{json_string(peer_text(client)) if client else "null"},'
            f'"method":{json_string(scope["method"])},"path":{json_string(scope["path"])},'
            f'"query":{json_string(scope["query_string"].decode("latin-1"))},'
            f'"http_version":{json_string(scope["http_version"])},"status":{self.status},'
            f'"bytes":{self.bytes_sent},"duration_ms":{self.duration * 1000:.3f},'
            f'"referer":{_json_header(headers.get(b"referer"))},'
            f'"user_agent":{_json_header(headers.get(b"user-agent"))}}}'
        )


def _json_header(value: bytes | None) -> str:
    return "null" if value is None else json_string(value.decode("latin-1"))
