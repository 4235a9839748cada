"""`sfpp.rollout_batch(...)`: long rollouts for a file of prompts, with raw latents and statistics.

For each prompt, a folder ``OUT/NNNN-<slug>/`` gets:

* ``latents.safetensors``: the raw latents, one tensor ``latents`` of shape ``(F, C, H, W)``
  (frame-major so that chunks are contiguous), written chunk by chunk into a file whose
  header is laid out up front; `load_latents` returns ``(1, C, F, H, W)``.
* ``preview.mp4`` + ``preview.json``: the decoded video and its sidecar.
* ``stats.jsonl``: one line per chunk (latent mean/std/abs-max, chunk time), appended as the
  rollout runs, so a user can see where a rollout starts to degrade.
* ``done.json``: written last, with the key of everything that determines the result (the
  resolved rollout settings, prompt, seed, length, size, dtype and the SHA-256 of every weight file).
  A re-run skips a prompt only when its key is unchanged; a prompt whose settings changed (or that
  never finished) is generated again, and the summary says which were skipped and why others ran.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from sfpp._version import __version__
from sfpp.errors import OutputError, SfppError
from sfpp.generation import _generate_into, _sidecar, publish, sidecar_path, torch_threads, write_json_atomic
from sfpp.interrupts import interruptible
from sfpp.rollout import ChunkResult
from sfpp.spec import ResolvedSpec, VideoSpec, emit_warnings, load_model, resolve_spec, weights_sha256

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

    def abort(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass


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


def rollout_key(prompt: str, rs: ResolvedSpec, weights: dict[str, str]) -> dict:
    """Everything that determines a rollout's result (what `done.json` is compared on)."""
    return {"prompt": prompt, "model": rs.model, "seed": rs.seed, "num_frames": rs.num_frames,
            "latent_frames": rs.latent_frames, "fps": rs.fps, "height": rs.height, "width": rs.width,
            "rollout": rs.rollout.to_dict(), "rope": rs.rope, "blend_chunks": rs.blend_chunks, "dtype": rs.dtype,
            "device_type": rs.device.split(":")[0], "weights_sha256": weights, "sfpp_version": __version__}


def _key_diff(old: dict, new: dict) -> str:
    """The first differing settings, for the summary line ('num_frames 16 -> 32')."""
    if not isinstance(old, dict):
        return "no key recorded"
    diffs = []
    for k in new:
        if old.get(k) != new[k]:
            a, b = old.get(k), new[k]
            diffs.append(f"{k} {a} -> {b}" if not isinstance(b, dict) else k)
    return ", ".join(diffs[:3]) or "unchanged"


@dataclass
class BatchResult:
    """Per-prompt folders, and what a re-run did with each (``generated``, ``skipped``, ``regenerated``)."""

    folders: list[Path]
    status: list[str]
    reasons: list[str]

    def summary(self) -> str:
        skipped = self.status.count("skipped")
        regen = [f"{f.name} ({r})" for f, s, r in zip(self.folders, self.status, self.reasons) if s == "regenerated"]
        parts = [f"{self.status.count('generated') + len(regen)} generated"]
        if skipped:
            parts.append(f"{skipped} skipped (finished earlier with the same settings)")
        if regen:
            parts.append("regenerated because settings changed: " + "; ".join(regen))
        return ", ".join(parts)


def rollout_batch(
    prompts: list[str] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spec: VideoSpec | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    details: bool = False,
    **overrides,
) -> list[Path] | BatchResult:
    """Run one long rollout per prompt; returns the per-prompt folders (``details``: a `BatchResult`).

    A prompt whose folder holds a ``done.json`` with the same key (`rollout_key`) is skipped; any other
    is generated (again). progress: called as (prompt index, frames written, frames total).
    """
    if not isinstance(prompts, list):
        prompts = read_prompts(prompts)
    spec = replace(spec or VideoSpec(), **overrides)
    rs = resolve_spec(spec)
    emit_warnings(rs)
    if not str(out_dir).strip():
        raise SfppError("--out is empty; give a folder for the rollouts")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SfppError(f"--out {out} is a file; give a folder for the rollouts")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SfppError(f"cannot create {out} ({e.strerror}); choose another --out") from None
    with torch_threads(rs.threads), interruptible():
        res = _rollout_all(prompts, out, rs, progress)
    return res if details else res.folders


def _rollout_all(prompts: list[str], out: Path, rs: ResolvedSpec, progress) -> BatchResult:
    lm = None
    weights = weights_sha256(rs)
    res = BatchResult([], [], [])
    for i, prompt in enumerate(prompts):
        folder = out / f"{i:04d}-{_slug(prompt)}"
        res.folders.append(folder)
        prs = replace(rs, seed=rs.seed + i)  # one seed per prompt, recorded in its sidecar
        key = rollout_key(prompt, prs, weights)
        status, reason = "generated", ""
        done = folder / "done.json"
        if done.is_file():
            try:
                old = json.loads(done.read_text(encoding="utf-8")).get("key")
            except (OSError, ValueError, AttributeError):
                old = None
            if old == key:
                res.status.append("skipped")
                res.reasons.append("")
                continue
            status, reason = "regenerated", _key_diff(old, key)
            done.unlink()  # an interrupted regeneration must not look finished
        folder.mkdir(exist_ok=True)
        lm = lm or load_model(prs)
        _one_rollout(prompt, i, folder, prs, lm, key, progress)
        res.status.append(status)
        res.reasons.append(reason)
    return res


def _one_rollout(prompt: str, i: int, folder: Path, prs: ResolvedSpec, lm, key: dict, progress) -> None:
    shape = (prs.latent_frames, lm.student.in_channels, prs.latent_height, prs.latent_width)
    partial = folder / "latents.safetensors.partial"
    lat = StreamingSafetensors(partial, shape, metadata={"prompt": prompt, "layout": "F,C,H,W", "seed": str(prs.seed)})
    stats_path = folder / "stats.jsonl"
    stats_path.write_text("")

    def hook(c: ChunkResult) -> None:
        z = c.x0[0].float()  # (C, f, H, W)
        lat.append(z.permute(1, 0, 2, 3))  # (f, C, H, W)
        row = {"chunk": c.index, "frame_start": c.frame_start, "frames": z.shape[1],
               "mean": z.mean().item(), "std": z.std().item(), "abs_max": z.abs().max().item(),
               "seconds": c.seconds}
        with open(stats_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def prog(done: int, total: int) -> None:
        if progress is not None:
            progress(i, done, total)

    try:
        timings, writer = _generate_into(prompt, prs, lm, folder / "preview.mp4", prog, hook=hook)
    except BaseException:
        lat.abort()  # the partial latents stay for inspection; the prompt has no done.json, so it runs again
        raise
    try:
        lat.close()
        os.replace(partial, folder / "latents.safetensors")
    except OSError as e:
        writer.abort()
        raise OutputError(f"writing {folder / 'latents.safetensors'} failed ({e.strerror or e})") from None
    publish(writer, sidecar_path(folder / "preview.mp4"), _sidecar(prompt, prs, lm, timings, timings["generate_s"]))
    write_json_atomic(folder / "done.json", {"prompt": prompt, "latent_frames": prs.latent_frames, "key": key})


def summarize_stats(folder: Path) -> dict:
    """First/last chunk statistics of one rollout (for the CLI's summary table)."""
    rows = [json.loads(ln) for ln in (folder / "stats.jsonl").read_text().splitlines() if ln.strip()]
    if not rows:
        return {}
    return {"chunks": len(rows), "std_first": rows[0]["std"], "std_last": rows[-1]["std"],
            "mean_first": rows[0]["mean"], "mean_last": rows[-1]["mean"]}
