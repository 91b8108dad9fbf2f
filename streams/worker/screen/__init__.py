"""The live screen: ``/`` (all rooms) and ``/screen/{room_id}`` (one room), served by the worker.

The pages are static HTML, CSS and JavaScript shipped in ``static/`` (no build step, no CDN);
they read ``/screen/api/rooms`` (every worker's ``/rooms`` merged, :mod:`.peers`) and
``/rooms/{room_id}`` (forwarded to the room's owner) once a second. :func:`web_options` gives
the Faust app its TLS and middlewares (credentials first, then the room router).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

from streams.settings import Settings
from streams.worker import web_auth
from streams.worker.screen.peers import Peers, room_router

if TYPE_CHECKING:
    import faust

    from streams.worker.app import LivePulse

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Scripts and styles from this worker only; no inline script, no other origin.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _static() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` by name, read once: the only files the pages can name."""
    folder = resources.files(__package__).joinpath("static")
    return {
        item.name: (item.read_bytes(), _TYPES[item.name[item.name.rfind(".") :]])
        for item in folder.iterdir()
        if item.is_file() and item.name[item.name.rfind(".") :] in _TYPES
    }


def web_options(pulse: LivePulse, settings: Settings) -> dict[str, Any]:
    """Faust app settings of the web server: TLS, its canonical URL, and the middlewares."""
    config = settings.web_config
    web_auth.warn_if_exposed(settings.web_host, settings.web_port, config)
    if config is not None:
        web_auth.warn_if_example_password(config)
    pulse.peers = Peers(pulse, None if config is None else config.client_context)
    middlewares = [room_router(pulse, pulse.peers)]
    options: dict[str, Any] = {}
    if config is not None:
        if config.users:
            middlewares.insert(0, web_auth.middleware(config))
        if config.tls:
            options["web_ssl_context"] = config.server_context()
            options["canonical_url"] = f"https://{settings.advertised_host}:{settings.web_port}"
    options["web_application_options"] = {"middlewares": middlewares}
    return options


def install(pulse: LivePulse) -> None:
    """Register the pages on the Faust app (the worker's web server serves them)."""
    app = pulse.app
    files = _static()
    peers: Peers = pulse.peers
    # Faust's own "/" ({"status": "OK"}) makes way for the all-rooms page.
    blueprints = app.web.blueprints
    blueprints._enabled = [
        (prefix, bp) for prefix, bp in blueprints._enabled if "production_index" not in str(bp)
    ]
    app.web.web_app.on_cleanup.append(peers.close)

    def page(web: faust.web.View, name: str) -> Any:
        body, content_type = files[name]
        headers = {**_HEADERS, "Content-Type": content_type}  # aiohttp refuses a charset in
        return web.bytes(body, headers=headers)  # its content_type argument

    @app.page("/")
    async def all_rooms(web: faust.web.View, request: faust.web.Request) -> Any:
        return page(web, "rooms.html")

    @app.page("/screen/{room_id}")
    async def room_screen(web: faust.web.View, request: faust.web.Request, room_id: str) -> Any:
        return page(web, "room.html")

    @app.page("/screen/static/{name}")
    async def static(web: faust.web.View, request: faust.web.Request, name: str) -> Any:
        if name not in files:
            return web.bytes(b"not found", content_type="text/plain", status=404)
        return page(web, name)

    @app.page("/screen/api/rooms")
    async def merged(web: faust.web.View, request: faust.web.Request) -> Any:
        """Every worker's rooms (``/rooms`` rows, each with its ``worker``), and how each
        worker answered (``workers``: url, rooms, error, truncated)."""
        body = await peers.all_rooms(request)
        return web.bytes(orjson.dumps(body), content_type="application/json")
