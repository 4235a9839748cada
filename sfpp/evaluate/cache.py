"""Results cache: one small JSON file per (video content hash, metric, version key).

The version key (built by `sfpp.evaluate.runner.cache_version`) holds everything besides the
video bytes that determines a result: the metric's version, its window, flow settings, weight
files, and for the text metrics (clip_score, overall_consistency, visual_stability) a digest of
the prompt; for the judge also the model, rubric version and temperature. A changed setting is a
different key, so it is recomputed; the stored key is compared in full on every read.

Each metric result is written as soon as it is computed (atomically), so a re-run is cheap and
a crash loses nothing. The cache lives under `$SFPP_HOME/cache/evaluate` (default
`~/.cache/sfpp/cache/evaluate`) unless a folder is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def sfpp_home() -> Path:
    """`$SFPP_HOME`, or `~/.cache/sfpp`: where sfpp keeps user state."""
    env = os.environ.get("SFPP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sfpp"


def default_cache_dir() -> Path:
    return sfpp_home() / "cache" / "evaluate"


def text_digest(text: str) -> str:
    """SHA-256 of a prompt (the cache key holds the digest, not the text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultCache:
    """Maps (video hash, metric, version) to a JSON-serialisable metric result."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def _path(self, video_hash: str, metric: str, version: str) -> Path:
        vkey = hashlib.sha256(version.encode()).hexdigest()[:16]
        return self.root / video_hash[:2] / video_hash / f"{metric}-{vkey}.json"

    def get(self, video_hash: str, metric: str, version: str) -> dict[str, Any] | None:
        p = self._path(video_hash, metric, version)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("metric") != metric or data.get("version") != version:
            return None
        return data.get("result")

    def put(self, video_hash: str, metric: str, version: str, result: dict[str, Any]) -> None:
        p = self._path(video_hash, metric, version)
        p.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"metric": metric, "version": version, "result": result}, allow_nan=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
