"""A local fake of the Gemini API endpoints the judge uses, for tests with the real google-genai client.

Runs `http.server.ThreadingHTTPServer` on 127.0.0.1 in a daemon thread; point the SDK at it with
`HttpOptions(base_url=server.url)` or the SDK's `GOOGLE_GEMINI_BASE_URL` environment variable.
Implements the resumable upload (start, then upload+finalize), files.get, files.delete and
models.generateContent. Every request is recorded (`server.requests`: method, path, headers,
body, arrival time). Behaviours are scripted per endpoint with lists that are consumed one item
per request (the default applies once a list is empty):

* `Reply(status, body, headers)`: an HTTP reply;
* `Hang(seconds)`: accept the request and answer nothing for `seconds`, then drop the connection;
* `Drop()`: read the request, then close the connection without a reply.

`file_states` is the sequence of states each uploaded file shows, in the upload's reply and then
in each files.get (the last one repeats): e.g. ["PROCESSING", "ACTIVE"] (one poll), ["ACTIVE"]
(no poll), ["PROCESSING", "FAILED"], or ["PROCESSING"] for a file stuck in processing.
A request whose ``x-goog-api-key`` is not `api_key` gets Gemini's 400 API_KEY_INVALID reply;
`reject_key=True` answers every request 401 UNAUTHENTICATED. Both echo the key they were sent in
the error message (Gemini does not; the judge must redact it anyway).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    seconds: float


@dataclass
class Drop:
    pass


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    t: float  # time.monotonic() at arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def ok_reply(score: int = 4, reasoning: str = "Highlights stay detailed; no clipping.") -> Reply:
    text = json.dumps({"reasoning": reasoning, "score": score})
    return Reply(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}]})


def error_reply(code: int, status: str, message: str = "", *, headers: dict | None = None, details: list | None = None) -> Reply:
    err: dict[str, Any] = {"code": code, "message": message or status, "status": status}
    if details is not None:
        err["details"] = details
    return Reply(code, {"error": err}, headers or {})


class FakeGemini:
    def __init__(self, *, api_key: str = "test-key"):
        self.api_key = api_key
        self.reject_key = False
        self.requests: list[Request] = []
        self.generate: list[Any] = []  # scripted behaviours of models.generateContent
        self.upload_start: list[Any] = []  # scripted behaviours of the upload's start request
        self.file_states: list[str] = ["PROCESSING", "ACTIVE"]
        self._polls: dict[str, int] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                server._dispatch(self)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---- what was seen ---------------------------------------------------------------------
    def calls(self, kind: str) -> list[Request]:
        """Requests of one kind: 'upload_start', 'upload_data', 'get', 'delete', 'generate'."""
        return [r for r in list(self.requests) if _kind(r) == kind]

    def deleted(self) -> list[str]:
        return [r.path.split("/files/", 1)[1] for r in self.calls("delete")]

    def uploaded(self) -> list[str]:
        return [f"files/f{i}" for i in range(1, self._next_id + 1)]

    # ---- the endpoints ----------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        req = Request(h.command, parts.path, parts.query, {k.lower(): v for k, v in h.headers.items()}, body, time.monotonic())
        with self._lock:
            self.requests.append(req)
        kind = _kind(req)
        key = req.headers.get("x-goog-api-key", "")
        if self.reject_key:
            return self._send(h, error_reply(401, "UNAUTHENTICATED", f"Request had invalid authentication credentials: {key}"))
        if kind != "upload_data" and key != self.api_key:
            return self._send(h, error_reply(400, "INVALID_ARGUMENT", f"API key not valid ({key}). Please pass a valid API key.",
                                             details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                       "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]))
        if kind == "upload_start":
            b = self._next(self.upload_start)
            if b is not None:
                return self._behave(h, b)
            with self._lock:
                self._next_id += 1
                fid = self._next_id
            ver = parts.path.split("/")[2]
            return self._send(h, Reply(200, {}, {"X-Goog-Upload-URL": f"{self.url}/upload/{ver}/files?upload_id={fid}",
                                                 "X-Goog-Upload-Status": "active"}))
        if kind == "upload_data":
            fid = int(re.search(r"upload_id=(\d+)", parts.query).group(1))
            return self._send(h, Reply(200, {"file": self._file(f"files/f{fid}")}, {"X-Goog-Upload-Status": "final"}))
        if kind == "get":
            return self._send(h, Reply(200, self._file("files/" + parts.path.split("/files/", 1)[1])))
        if kind == "delete":
            return self._send(h, Reply(200, {}))
        if kind == "generate":
            b = self._next(self.generate)
            return self._behave(h, b if b is not None else ok_reply(4))
        return self._send(h, error_reply(404, "NOT_FOUND", f"unexpected {req.method} {h.path}"))

    def _next(self, script: list) -> Any:
        with self._lock:
            return script.pop(0) if script else None

    def _file(self, name: str) -> dict:
        """The file as the upload's reply (the first state) or the n-th files.get (the n+1-th) shows it."""
        with self._lock:
            i = self._polls.get(name, 0)
            self._polls[name] = i + 1
        state = self.file_states[min(i, len(self.file_states) - 1)]
        f = {"name": name, "uri": f"{self.url}/v1beta/{name}", "mimeType": "video/mp4", "state": state}
        if state == "FAILED":
            f["error"] = {"code": 3, "message": "the video could not be decoded"}
        return f

    def _behave(self, h: BaseHTTPRequestHandler, b: Any) -> None:
        if isinstance(b, Reply):
            return self._send(h, b)
        if isinstance(b, Hang):
            self._stop.wait(b.seconds)
        self._drop(h)

    def _drop(self, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, h: BaseHTTPRequestHandler, r: Reply) -> None:
        data = json.dumps(r.body).encode()
        try:
            h.send_response(r.status)
            h.send_header("Content-Type", "application/json; charset=UTF-8")
            h.send_header("Content-Length", str(len(data)))
            for k, v in r.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the client gave up (timed out, cancelled)
            h.close_connection = True


def _kind(r: Request) -> str:
    if r.path.startswith("/upload/"):
        return "upload_data" if "upload_id=" in r.query else "upload_start"
    if r.method == "POST" and r.path.endswith(":generateContent"):
        return "generate"
    if "/files/" in r.path and r.method == "GET":
        return "get"
    if "/files/" in r.path and r.method == "DELETE":
        return "delete"
    return "other"
