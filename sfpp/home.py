"""Where sfpp keeps user state (`$SFPP_HOME`, default ``~/.cache/sfpp``) and cached file hashes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sfpp_home() -> Path:
    """`$SFPP_HOME`, or `~/.cache/sfpp`: where sfpp keeps user state."""
    env = os.environ.get("SFPP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sfpp"


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, remembered in ``$SFPP_HOME/cache/sha256.json`` by (path, size, mtime).

    Large weight files are hashed once; a changed file (other size or mtime) is hashed again.
    The cache is best effort: if it cannot be read or written, the hash is simply computed.
    """
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    db = sfpp_home() / "cache" / "sha256.json"
    try:
        known = json.loads(db.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), str):
        return known[key]
    digest = file_sha256(p)
    if st.st_size < (1 << 20):  # small files: hashing is cheaper than the cache
        return digest
    known[key] = digest
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        tmp = db.with_name(f"{db.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, db)
    except OSError:
        pass
    return digest
