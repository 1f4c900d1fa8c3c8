"""HTTP/2 as a sans-I/O layer over h2 (the ``http2`` extra): ``session.Http2Session`` and its parts.

Nothing here is imported by ``import asgi_worker``; only ``session`` imports h2, so ``settings`` can
be read without the extra installed.
"""
