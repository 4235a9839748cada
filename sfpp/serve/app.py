"""The `sfpp serve` web app: Starlette routes and a WebSocket per page, run by uvicorn.

Routes: ``/`` (the page), ``/app.js``, ``/app.css``, ``/status`` (JSON: sessions in use),
``/saved/NAME`` (a video or sidecar this server saved) and the ``/ws`` WebSocket.

Every request passes `Guard` first:

* with a token (required off loopback): the token must come as ``?token=`` (the printed URL),
  the ``sfpp_token_PORT`` cookie the page request sets (HttpOnly, SameSite=Strict), or an
  ``Authorization: Bearer`` header; anything else gets 403 (a WebSocket is refused before it opens);
* without a token (loopback only): the Host header must name a loopback address, so a web page
  elsewhere cannot reach the server through DNS rebinding;
* a WebSocket whose Origin is another site is refused (no cross-site WebSocket hijacking).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sfpp.serve.config import ServeConfig, is_loopback
from sfpp.spec import LoadedModel

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _static(name: str) -> bytes:
    return resources.files("sfpp.serve").joinpath("static", name).read_bytes()


class AppState:
    """What every session shares: the settings, the loaded model, the session count, the saved files."""

    def __init__(self, config: ServeConfig, loaded: LoadedModel | None = None):
        from sfpp.generation import torch_threads
        from sfpp.presets import get_preset
        from sfpp.spec import emit_warnings, load_model
        from sfpp.stream import resolve_stream_spec

        self.config = config.check()
        self.first_seed = int(config.spec.seed)
        self.spec = resolve_stream_spec(config.spec, config.max_seconds)
        emit_warnings(self.spec)
        if loaded is None:
            with torch_threads(self.spec.threads):
                loaded = load_model(self.spec)
        self.loaded = loaded
        codec, c = get_preset(self.spec.model).codec, self.spec.chunk_frames
        self.chunk_seconds = (codec.pixel_frames(2 * c) - codec.pixel_frames(c)) / self.spec.fps  # a chunk's length
        self.sessions: set = set()
        self.saved: dict[str, Path] = {}

    def stream_spec(self, seed: int):
        return replace(self.spec, seed=int(seed))

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.sessions)), return_exceptions=True)


def _cookie_name(port: int) -> str:
    return f"sfpp_token_{port}"


class Guard:
    """ASGI middleware: the token, Host and Origin checks of the module docstring."""

    def __init__(self, app, config: ServeConfig):
        self.app, self.config = app, config
        self.cookie = _cookie_name(config.port)

    def _headers(self, scope) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

    def _token_ok(self, scope, headers) -> bool:
        want = self.config.token
        if not want:
            return True
        given = []
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given += query.get("token", [])
        if "cookie" in headers:
            c = SimpleCookie()
            try:
                c.load(headers["cookie"])
            except Exception:  # noqa: BLE001 - a malformed cookie header is no token
                pass
            if self.cookie in c:
                given.append(c[self.cookie].value)
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        return any(secrets.compare_digest(g.encode(), want.encode()) for g in given)

    @staticmethod
    def _host_of(value: str) -> str:
        return urlsplit("//" + value).hostname or ""

    def _why_refused(self, scope, headers) -> str | None:
        if not self._token_ok(scope, headers):
            return ("forbidden: this server needs its access token; open the address sfpp serve printed "
                    "(.../?token=...)")
        if not self.config.token and not is_loopback(self._host_of(headers.get("host", ""))):
            return "forbidden: this server answers only to 127.0.0.1 / localhost"
        if scope["type"] == "websocket" and "origin" in headers:
            origin = urlsplit(headers["origin"])
            if origin.netloc.lower() != headers.get("host", "").lower():
                return "forbidden: a WebSocket from another site"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = self._headers(scope)
        why = self._why_refused(scope, headers)
        if why is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            return
        body = (why + "\n").encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(config: ServeConfig, *, loaded: LoadedModel | None = None):
    """The ASGI app (`Guard` around a Starlette app). Loads the model unless `loaded` is given."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from sfpp.serve.session import Session

    state = AppState(config, loaded)
    page, js, css = _static("index.html"), _static("app.js"), _static("app.css")

    async def index(request):
        resp = Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
        if config.token and request.query_params.get("token"):
            resp.set_cookie(_cookie_name(config.port), config.token, httponly=True, samesite="strict", path="/")
        return resp

    async def app_js(request):
        return Response(js, media_type="text/javascript; charset=utf-8", headers=PAGE_HEADERS)

    async def app_css(request):
        return Response(css, media_type="text/css; charset=utf-8", headers=PAGE_HEADERS)

    async def status(request):
        return JSONResponse({"sessions": len(state.sessions), "max_sessions": config.max_sessions,
                             "model": state.spec.model, "fps": state.spec.fps})

    async def saved(request):
        name = request.path_params["name"]
        path = state.saved.get(name)
        if path is None or not path.is_file():
            return PlainTextResponse("not found\n", status_code=404)
        media = "video/mp4" if name.endswith(".mp4") else "application/json"
        return FileResponse(path, media_type=media, filename=name, headers={"Cache-Control": "no-store"})

    async def ws_endpoint(websocket: WebSocket):
        await websocket.accept()
        if len(state.sessions) >= config.max_sessions:
            n = config.max_sessions
            await websocket.send_json({"type": "busy", "message": (
                f"the server is busy: it runs {n} generation{'s' if n > 1 else ''} at a time (--max-sessions {n}) "
                "and all are in use; try again when one ends")})
            await websocket.close(code=1013, reason="busy")
            return
        session = Session(state, websocket)
        state.sessions.add(session)
        try:
            await session.run()
        except (WebSocketDisconnect, ConnectionError, RuntimeError):
            pass  # the page went away (or stopped reading)
        finally:
            # the slot is freed when the stream is closed, also when this handler is cancelled and can
            # no longer await the close
            session.close_soon().add_done_callback(lambda _: state.sessions.discard(session))
            await session.close()

    @asynccontextmanager
    async def lifespan(app):
        yield
        await state.close_all()

    star = Starlette(routes=[
        Route("/", index), Route("/app.js", app_js), Route("/app.css", app_css), Route("/status", status),
        Route("/saved/{name}", saved), WebSocketRoute("/ws", ws_endpoint),
    ], lifespan=lifespan)
    star.state.sfpp = state
    guarded = Guard(star, config)
    guarded.state = state  # for tests and the CLI
    return guarded


def run_server(app, config: ServeConfig, *, log_level: str = "warning") -> None:
    """Run an app from `create_app` with uvicorn until Ctrl-C (no access log: URLs may carry the token)."""
    import uvicorn

    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                ws_max_size=64 * 1024, ws_per_message_deflate=False, timeout_graceful_shutdown=5, lifespan="on")
