"""WSGI apps for tests that start a real ``python -m asgi_worker`` process."""

from __future__ import annotations


def app(environ, start_response):
    body = f"wsgi {environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
