"""`sfpp.rollout_batch(...)`: long rollouts for a file of prompts, with raw latents and statistics.

For each prompt, a folder ``OUT/NNNN-<slug>/`` gets:

* ``latents.safetensors``: the raw latents, one tensor ``latents`` of shape ``(F, C, H, W)``
  (frame-major so that chunks are contiguous), written chunk by chunk into a file whose
  header is laid out up front; `load_latents` returns ``(1, C, F, H, W)``.
* ``preview.mp4`` + ``preview.json``: the decoded video and its sidecar.
* ``stats.jsonl``: one line per chunk (latent mean/std/abs-max, chunk time), appended as the
  rollout runs, so a user can see where a rollout starts to degrade.
* ``done.json``: written last; a prompt whose folder has it is skipped on a re-run (resume).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from sfpp.errors import SfppError
from sfpp.generation import _generate_into, _sidecar, sidecar_path, torch_threads, write_json_atomic
from sfpp.rollout import ChunkResult
from sfpp.spec import VideoSpec, emit_warnings, load_model, resolve_spec

LATENT_KEY = "latents"


class StreamingSafetensors:
    """Write one float32 tensor of known shape ``(F, ...)`` to safetensors, F-slices at a time."""

    def __init__(self, path: Path, shape: tuple[int, ...], metadata: dict[str, str] | None = None):
        self.path, self.shape = Path(path), tuple(shape)
        self.frame_bytes = 4 * int(torch.Size(shape[1:]).numel())
        nbytes = self.frame_bytes * shape[0]
        header = {LATENT_KEY: {"dtype": "F32", "shape": list(shape), "data_offsets": [0, nbytes]}}
        if metadata:
            header["__metadata__"] = metadata
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
        self._f = open(self.path, "wb")
        self._f.write(struct.pack("<Q", len(raw)) + raw)
        self.frames = 0

    def append(self, frames: torch.Tensor) -> None:
        """Append ``(f, ...)`` frames."""
        if tuple(frames.shape[1:]) != self.shape[1:]:
            raise ValueError(f"frames {tuple(frames.shape)} do not match {self.shape}")
        self._f.write(frames.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        self.frames += frames.shape[0]

    def close(self) -> None:
        if self.frames != self.shape[0]:
            raise RuntimeError(f"wrote {self.frames} of {self.shape[0]} frames")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


def load_latents(path: str | os.PathLike) -> torch.Tensor:
    """Read a rollout's latents back as ``(1, C, F, H, W)``."""
    from safetensors.torch import load_file

    z = load_file(str(path))[LATENT_KEY]  # (F, C, H, W)
    return z.permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, F, H, W)


def read_prompts(path: str | os.PathLike) -> list[str]:
    from sfpp.prompts import read_prompt_lines

    return read_prompt_lines(path)


def _slug(text: str) -> str:
    s = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in s.split("-") if p)[:40] or "prompt"


def rollout_batch(
    prompts: list[str] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spec: VideoSpec | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    **overrides,
) -> list[Path]:
    """Run one long rollout per prompt; returns the per-prompt folders. Completed prompts are skipped.

    progress: called as (prompt index, frames written, frames total).
    """
    if not isinstance(prompts, list):
        prompts = read_prompts(prompts)
    spec = replace(spec or VideoSpec(), **overrides)
    rs = resolve_spec(spec)
    emit_warnings(rs)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SfppError(f"--out {out} is a file; give a folder for the rollouts")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SfppError(f"cannot create {out} ({e.strerror}); choose another --out") from None
    with torch_threads(rs.threads):
        return _rollout_all(prompts, out, rs, progress)


def _rollout_all(prompts: list[str], out: Path, rs, progress) -> list[Path]:
    lm = None
    folders = []
    for i, prompt in enumerate(prompts):
        folder = out / f"{i:04d}-{_slug(prompt)}"
        folders.append(folder)
        if (folder / "done.json").is_file():
            continue  # resume: finished earlier
        folder.mkdir(exist_ok=True)
        lm = lm or load_model(rs)
        prs = replace(rs, seed=rs.seed + i)  # one seed per prompt, recorded in its sidecar
        shape = (prs.latent_frames, lm.student.in_channels, prs.latent_height, prs.latent_width)
        lat = StreamingSafetensors(folder / "latents.safetensors.partial", shape,
                                   metadata={"prompt": prompt, "layout": "F,C,H,W", "seed": str(prs.seed)})
        stats_path = folder / "stats.jsonl"
        stats_path.write_text("")

        def hook(c: ChunkResult, _lat=lat, _stats=stats_path) -> None:
            z = c.x0[0].float()  # (C, f, H, W)
            _lat.append(z.permute(1, 0, 2, 3))  # (f, C, H, W)
            row = {"chunk": c.index, "frame_start": c.frame_start, "frames": z.shape[1],
                   "mean": z.mean().item(), "std": z.std().item(), "abs_max": z.abs().max().item(),
                   "seconds": c.seconds}
            with open(_stats, "a") as f:
                f.write(json.dumps(row) + "\n")

        def prog(done: int, total: int, _i=i) -> None:
            if progress is not None:
                progress(_i, done, total)

        timings = _generate_into(prompt, prs, lm, folder / "preview.mp4", prog, hook=hook)
        lat.close()
        os.replace(folder / "latents.safetensors.partial", folder / "latents.safetensors")
        write_json_atomic(sidecar_path(folder / "preview.mp4"), _sidecar(prompt, prs, lm, timings, timings["generate_s"]))
        write_json_atomic(folder / "done.json", {"prompt": prompt, "latent_frames": prs.latent_frames})
    return folders


def summarize_stats(folder: Path) -> dict:
    """First/last chunk statistics of one rollout (for the CLI's summary table)."""
    rows = [json.loads(ln) for ln in (folder / "stats.jsonl").read_text().splitlines() if ln.strip()]
    if not rows:
        return {}
    return {"chunks": len(rows), "std_first": rows[0]["std"], "std_last": rows[-1]["std"],
            "mean_first": rows[0]["mean"], "mean_last": rows[-1]["mean"]}
