"""Training checkpoints: atomic directories, a `latest` pointer, pruning, self-describing exports.

Layout under a stage folder::

    checkpoints/step_000050/state.pt            everything needed to resume (torch.save, weights_only-loadable)
    checkpoints/step_000050/student.safetensors (and student_ema.safetensors): loadable by `sfpp generate --checkpoint`
    checkpoints/latest                          name of the newest complete checkpoint

A checkpoint is written into ``step_NNNNNN.tmp/``, every file is fsync'ed, the folder is renamed
into place and only then is ``latest`` replaced (write + fsync + rename). A process killed at
any point leaves either the previous or the new checkpoint complete and loadable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from sfpp.checkpoints import save_student
from sfpp.errors import SfppError


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointManager:
    def __init__(self, root: Path, keep: int = 3):
        self.root = Path(root)
        self.keep = keep

    def latest(self) -> Path | None:
        ptr = self.root / "latest"
        if not ptr.is_file():
            return None
        path = self.root / ptr.read_text().strip()
        return path if (path / "state.pt").is_file() else None

    def save(self, step: int, state: dict[str, Any], exports: dict[str, tuple[dict, dict]]) -> Path:
        """Write checkpoint `step`. exports: file stem -> (state dict, config) saved as safetensors."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:06d}"
        final = self.root / name
        tmp = self.root / (name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        with open(tmp / "state.pt", "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        for stem, (sd, cfg) in exports.items():
            save_student(tmp / f"{stem}.safetensors", sd, cfg)  # fsyncs
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        ptr_tmp = self.root / "latest.tmp"
        with open(ptr_tmp, "w") as f:
            f.write(name)
            f.flush()
            os.fsync(f.fileno())
        os.replace(ptr_tmp, self.root / "latest")
        _fsync_dir(self.root)
        self._prune(final)
        return final

    def _prune(self, newest: Path) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for p in done[: max(0, len(done) - self.keep)]:
            if p != newest:
                shutil.rmtree(p, ignore_errors=True)

    def load(self, path: Path | None = None) -> dict[str, Any]:
        path = path or self.latest()
        if path is None:
            raise SfppError(f"no checkpoint to resume from in {self.root}; start without --resume")
        try:
            return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # a foreign or damaged file
            raise SfppError(f"checkpoint {path} cannot be loaded ({type(e).__name__}); start a new --out") from None
