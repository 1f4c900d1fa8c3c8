from __future__ import annotations

import httpx

from tests.conftest import read_response


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hi"})


def test_get(serve):
    with serve(hello) as srv:
        response = httpx.get(srv.url)
        assert response.status_code == 200
        assert response.text == "hi"
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = read_response(sock)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b"content-length: 2\r\nconnection: close\r\n\r\nhi")
