"""WebSockets: the ASGI ``websocket`` scope served over the websockets library's sans-I/O protocol.

``handshake`` checks the parsed upgrade request and builds the 101 response, ``session`` is the
ASGI state machine the app talks to, ``connection`` is the asyncio shell that owns the transport
once the HTTP side hands it over. Only this package imports ``websockets``.
"""
