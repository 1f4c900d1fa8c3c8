"""A one-module Django project for the framework tests: settings, two views, a Channels consumer.

Django's settings can be configured once per process, and both the HTTP test (plain Django) and the
WebSocket test (Django Channels) need them: ``configure`` here is the one place that does it, with
this module as the URLconf.
"""

from __future__ import annotations

from typing import Any


def configure() -> None:
    """Configure Django's settings for this process (once; later calls do nothing)."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            SECRET_KEY="test-only",
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        )


def http_application() -> Any:
    """Django's own ASGI application, serving ``/hello/`` and ``/post/``."""
    configure()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _hello(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(f"hello {request.GET.get('name', 'django')}")


def _post(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"method": request.method, "size": len(request.body)})


def __getattr__(name: str) -> Any:  # Django reads ROOT_URLCONF's urlpatterns lazily
    if name == "urlpatterns":
        from django.urls import path
        from django.views.decorators.csrf import csrf_exempt

        return [path("hello/", _hello), path("post/", csrf_exempt(_post))]
    raise AttributeError(name)


def channels_application(disconnects: Any) -> Any:
    """A Django Channels app: ``/ws/room/<name>/`` greets, upper-cases text, reverses bytes, and
    closes with 4004 on "bye"; each disconnect code goes to ``disconnects.add``. Needs ``channels``."""
    configure()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class Room(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            self.room = self.scope["url_route"]["kwargs"]["name"]
            await self.accept(subprotocol=(self.scope["subprotocols"] or [None])[0])
            await self.send(text_data=f"welcome to {self.room}")

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            if text_data == "bye":
                await self.close(code=4004)
            elif bytes_data is not None:
                await self.send(bytes_data=bytes_data[::-1])
            else:
                await self.send(text_data=f"{self.room}: {text_data.upper()}")

        async def disconnect(self, code: int) -> None:
            disconnects.add(code)

    return ProtocolTypeRouter({"websocket": URLRouter([path("ws/room/<str:name>/", Room.as_asgi())])})
