"""`ServeConfig`: the settings of `sfpp serve`, checked before anything is loaded (pure Python)."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sfpp.errors import SfppError
from sfpp.spec import MAX_SECONDS, VideoSpec

WHEN_SLOW = ("drop", "wait")
DEFAULT_PORT = 7860
TOY_PROMPT = "a red circle and a blue square bouncing on a black background"
DEFAULT_PROMPT = "a red kite flying over a sandy beach on a sunny day"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); any other name is not."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh access token (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """What `sfpp serve` runs with. `check` validates it (one `SfppError`)."""

    spec: VideoSpec = field(default_factory=VideoSpec)  # model, checkpoint, device, ... (seed: the first stream's)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None  # required (and checked on every request) when set; needed off loopback
    max_sessions: int = 1  # generations at a time (one model, one device: one)
    max_seconds: float = 1800.0  # stream length cap
    max_prompt_chars: int = 500
    when_slow: str = "drop"  # a page that cannot keep up: drop frames, or wait for it
    save_dir: Path = Path("outputs") / "serve"
    prompt: str | None = None  # the page's first prompt (default: one for the model)
    ahead: int = 1  # decoded chunks queued for playback before generation waits (a prompt switch shows ~2 chunks later)

    def check(self) -> "ServeConfig":
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise SfppError(f"--port must be between 1 and 65535, got {self.port}")
        if self.token is not None and len(self.token) < 8:
            raise SfppError("--token must be at least 8 characters long (or leave it out for a generated one)")
        if not is_loopback(self.host) and not self.token:
            raise SfppError(f"--host {self.host} is reachable from other machines, so it needs an access token: "
                            "give --token (sfpp serve generates and prints one when --token is left out)")
        if not isinstance(self.max_sessions, int) or self.max_sessions < 1:
            raise SfppError(f"--max-sessions must be at least 1, got {self.max_sessions}")
        if not (0 < self.max_seconds <= MAX_SECONDS):
            raise SfppError(f"--max-seconds must be between 0 and {MAX_SECONDS}, got {self.max_seconds:g}")
        if not isinstance(self.max_prompt_chars, int) or self.max_prompt_chars < 1:
            raise SfppError(f"--max-prompt-chars must be at least 1, got {self.max_prompt_chars}")
        if self.when_slow not in WHEN_SLOW:
            raise SfppError(f"--when-slow must be one of {', '.join(WHEN_SLOW)}, got {self.when_slow!r}")
        if self.ahead < 1:
            raise SfppError(f"ahead must be at least 1 chunk, got {self.ahead}")
        if self.prompt is not None and len(self.prompt) > self.max_prompt_chars:
            raise SfppError(f"--prompt is {len(self.prompt)} characters long; the limit is {self.max_prompt_chars} "
                            "(--max-prompt-chars)")
        return self

    def first_prompt(self, model: str) -> str:
        return self.prompt or (TOY_PROMPT if model.startswith("toy") else DEFAULT_PROMPT)

    def url(self) -> str:
        """The address to open (with the token, when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")
