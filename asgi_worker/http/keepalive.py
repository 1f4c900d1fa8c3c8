"""Whether an HTTP/1.1 connection outlives a response: the one keep-alive rule, pure.

Three moments ask, and each asks this module with the facts it has:
- the request head is parsed: does the client want the connection kept (``request_keep_alive``,
  RFC 9112 9.3: HTTP/1.1 persists unless ``Connection: close``; HTTP/1.0 only with
  ``Connection: keep-alive``)?
- the response head is written: do we announce keep-alive or ``connection: close``
  (``head_keep_alive``)? Not when the client does not want it, the server is draining, the request
  body cannot be read to its end before the response ends (a whole response sent while body bytes
  are still unread: reading on would mean parsing the rest of an unwanted body), the app said
  ``connection: close``, or the body is delimited by closing (HTTP/1.0 streaming, an unknown coding);
- the response's last byte is written: what does the connection do next (``after_response``)?
  It closes if the head announced close, the request body was not read to its end, or the client
  has shut its side. A draining server closes too, except that under a supervisor
  (``drain_grace``) a connection whose response promised keep-alive before the drain began waits
  briefly for the client's next request (or serves the one already waiting) and answers it with
  ``connection: close``: closing under a client that is already sending fails its request.
"""

from __future__ import annotations

import enum

__all__ = ["Next", "after_response", "head_keep_alive", "request_keep_alive"]


class Next(enum.Enum):
    """What a connection does once a response is complete."""

    SERVE = "serve the next request"
    LINGER = "wait briefly for the client's next request, to answer it with connection: close"
    CLOSE = "close the connection"


def request_keep_alive(http_version: str, close: bool, keep_alive: bool) -> bool:
    """The client's wish: ``close``/``keep_alive`` say whether its Connection header held those tokens."""
    return not close and (keep_alive or http_version == "1.1")


def head_keep_alive(
    request_keeps: bool, draining: bool, body_complete: bool, app_close: bool, close_delimited: bool
) -> bool:
    """Whether the response head announces keep-alive.

    ``body_complete``: the request body has been received to its end, or the response is streamed
    (it cannot end before the app has had the chance to read the rest).
    """
    return request_keeps and not draining and body_complete and not app_close and not close_delimited


def after_response(
    announced: bool, body_done: bool, peer_closed: bool, draining: bool, drain_grace: bool, next_waiting: bool
) -> Next:
    """What the connection does after a complete response whose head ``announced`` keep-alive or not.

    ``next_waiting``: a pipelined request, or the start of one, has already arrived.
    """
    if not announced or not body_done or peer_closed:
        return Next.CLOSE
    if draining:
        if not drain_grace:
            return Next.CLOSE
        if not next_waiting:
            return Next.LINGER
    return Next.SERVE
