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

Several seeds per prompt (``seeds=N``): the k-th video of prompt i has seed
``base + i + 1_000_000 * k`` (`job_seed`) and folder ``NNNN-<slug>-s<k>`` (``NNNN-<slug>`` for k = 0,
so one seed is exactly the single-seed batch).

Under ``accelerate launch`` the sorted job list (prompt index, seed index) is split round robin by
rank (`sfpp.distributed_jobs`), each rank on its own device. A video depends only on its prompt,
seed and settings, never on the rank or the split, so it is bit for bit what one process makes.
Rank 0 writes ``OUT/index.json``: every job with its folder, prompt, seed, status, frames and key digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from sfpp._version import __version__
from sfpp.errors import OutputError, SfppError
from sfpp.generation import _generate_into, _sidecar, publish, sidecar_path, torch_threads, write_json_atomic
from sfpp.interrupts import interruptible
from sfpp.rollout import ChunkResult
from sfpp.spec import (
    ResolvedSpec,
    VideoSpec,
    emit_prompt_warnings,
    emit_warnings,
    load_model,
    resolve_spec,
    weights_sha256,
)

LATENT_KEY = "latents"
SEED_STRIDE = 1_000_000  # seed index k adds k * SEED_STRIDE to the seed (see `job_seed`)


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


@dataclass(frozen=True)
class RolloutJob:
    """One video of a batch: prompt `prompt_index` with its `seed_index`-th seed, in `folder`."""

    number: int  # position in the sorted job list (prompt index, then seed index); decides the rank
    prompt_index: int
    seed_index: int
    prompt: str
    seed: int
    folder: Path


def job_seed(base_seed: int, prompt_index: int, seed_index: int) -> int:
    """The seed of prompt `prompt_index`'s `seed_index`-th video: ``base + prompt_index + SEED_STRIDE * seed_index``.

    It depends on nothing else (not on the process that runs it or on how the jobs are split), so
    a video is the same whichever rank of however many processes makes it. Seed index 0 is the one
    seed per prompt of a single-seed batch (``base + prompt_index``).
    """
    return int(base_seed) + int(prompt_index) + SEED_STRIDE * int(seed_index)


def job_folder_name(prompt_index: int, prompt: str, seed_index: int) -> str:
    """``NNNN-<slug>`` for seed index 0 (as a single-seed batch), ``NNNN-<slug>-s<k>`` for the k-th seed."""
    name = f"{prompt_index:04d}-{_slug(prompt)}"
    return name if seed_index == 0 else f"{name}-s{seed_index}"


def plan_jobs(prompts: list[str], out: Path, base_seed: int, seeds: int = 1) -> list[RolloutJob]:
    """Every (prompt, seed) of a batch, sorted by prompt index then seed index."""
    return [RolloutJob(number=i * seeds + k, prompt_index=i, seed_index=k, prompt=prompt,
                       seed=job_seed(base_seed, i, k), folder=out / job_folder_name(i, prompt, k))
            for i, prompt in enumerate(prompts) for k in range(seeds)]


def key_digest(key: dict) -> str:
    """SHA-256 of a rollout key (canonical JSON): equal digests, equal settings."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class BatchResult:
    """Per-job folders, and what a re-run did with each (``generated``, ``skipped``, ``regenerated``;
    under several processes also ``failed`` and ``not run`` when a rank stopped on an error)."""

    folders: list[Path]
    status: list[str]
    reasons: list[str]
    jobs: list[RolloutJob] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)  # the rank that ran each job (0 with one process)
    world: int = 1
    index: Path | None = None  # OUT/index.json when it was written

    def summary(self) -> str:
        skipped = self.status.count("skipped")
        regen = [f"{f.name} ({r})" for f, s, r in zip(self.folders, self.status, self.reasons) if s == "regenerated"]
        parts = [f"{self.status.count('generated') + len(regen)} generated"]
        if skipped:
            parts.append(f"{skipped} skipped (finished earlier with the same settings)")
        if regen:
            parts.append("regenerated because settings changed: " + "; ".join(regen))
        failed = self.status.count("failed") + self.status.count("not run")
        if failed:
            parts.append(f"{failed} not finished (a rank stopped on an error; run again to finish them)")
        if self.world > 1:
            parts.append(f"on {self.world} processes")
        return ", ".join(parts)


def rollout_batch(
    prompts: list[str] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spec: VideoSpec | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    details: bool = False,
    seeds: int = 1,
    index: bool | None = None,
    **overrides,
) -> list[Path] | BatchResult:
    """Run one long rollout per prompt and seed; returns the job folders (``details``: a `BatchResult`).

    seeds: videos per prompt; the k-th has seed `job_seed` (base + prompt index + 1,000,000 k) and
    folder `job_folder_name` (``NNNN-<slug>`` for k = 0, ``NNNN-<slug>-s<k>`` after), so ``seeds=1``
    is the single-seed batch. A job whose folder holds a ``done.json`` with the same key
    (`rollout_key`) is skipped; any other is generated (again). progress: called as (job number,
    frames written, frames total); job ``j`` is prompt ``j // seeds``, seed index ``j % seeds``.

    Under ``accelerate launch`` (several processes, see `sfpp.distributed_jobs`) the jobs are split
    round robin by rank, each rank on its own device; every rank returns the result of all jobs, and
    rank 0 writes ``OUT/index.json`` (every job: folder, prompt, seed, status, frames, key digest).
    index: write the index with one process too (None: with several processes, or when OUT already
    has one, which is kept up to date).
    """
    from sfpp.distributed_jobs import workers

    if not isinstance(prompts, list):
        prompts = read_prompts(prompts)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SfppError(f"--seeds must be a whole number of at least 1, got {seeds!r}")
    w = workers()
    spec = replace(spec or VideoSpec(), **overrides)
    spec = replace(spec, device=w.device(spec.device))
    rs = resolve_spec(spec)
    if w.is_main:
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
    if index is None:
        index = w.distributed or (out / INDEX_NAME).is_file()
    with torch_threads(rs.threads), interruptible():
        res = _rollout_all(prompts, out, rs, progress, seeds, w, index)
    return res if details else res.folders


INDEX_NAME = "index.json"


def _rollout_all(prompts: list[str], out: Path, rs: ResolvedSpec, progress, seeds: int, w, index: bool) -> BatchResult:
    lm = None
    weights = weights_sha256(rs)
    jobs = plan_jobs(prompts, out, rs.seed, seeds)
    records: dict[int, dict] = {}
    error: Exception | None = None
    mine = w.mine(jobs)
    todo = iter(mine)
    try:
        for j, job in todo:
            prs = replace(rs, seed=job.seed)  # recorded in the job's sidecar and key
            key = rollout_key(job.prompt, prs, weights)
            rec = {"rank": w.rank, "key_sha256": key_digest(key), "num_frames": prs.num_frames,
                   "latent_frames": prs.latent_frames, "status": "generated", "reason": ""}
            records[j] = rec
            done = job.folder / "done.json"
            if done.is_file():
                try:
                    old = json.loads(done.read_text(encoding="utf-8")).get("key")
                except (OSError, ValueError, AttributeError):
                    old = None
                if old == key:
                    rec["status"] = "skipped"
                    continue
                rec["status"], rec["reason"] = "regenerated", _key_diff(old, key)
                done.unlink()  # an interrupted regeneration must not look finished
            rec["finished"] = False
            job.folder.mkdir(exist_ok=True)
            if lm is None:
                lm = load_model(prs)
                if w.is_main:  # once: the prompts this model cannot read (a ToyWorld model)
                    emit_prompt_warnings(lm, prompts)
            _one_rollout(job.prompt, j, job.folder, prs, lm, key, progress)
            rec.pop("finished")
    except Exception as e:
        if not w.distributed:
            raise
        error = e  # the others are told, the index records it, then every rank stops with an error
        for j, rec in records.items():
            if rec.pop("finished", True) is False:
                rec["status"], rec["reason"] = "failed", f"{type(e).__name__}: {e}"
        for j, _job in todo:
            records[j] = {"rank": w.rank, "status": "not run", "reason": "an earlier job of this rank failed"}
    parts = w.all_gather({"rank": w.rank, "records": records, "error": None if error is None else f"{type(error).__name__}: {error}"})
    merged: dict[int, dict] = {}
    for part in parts:
        merged.update(part["records"])
    res = BatchResult([], [], [], world=w.world)
    for job in jobs:
        rec = merged.get(job.number, {"rank": w.owner(job.number), "status": "not run", "reason": "no record"})
        res.jobs.append(job)
        res.folders.append(job.folder)
        res.status.append(rec["status"])
        res.reasons.append(rec["reason"])
        res.ranks.append(rec["rank"])
    if index:
        res.index = out / INDEX_NAME
        if w.is_main:
            _write_index(res.index, res, merged, rs, seeds)
    w.barrier()  # the index exists when any rank returns
    if error is not None:
        raise error
    failed = [(p["rank"], p["error"]) for p in parts if p["error"]]
    if failed:
        r, msg = failed[0]
        raise SfppError(f"rank {r} of {w.world} stopped: {msg}; the finished videos are kept, run again to finish the rest")
    return res


def _write_index(path: Path, res: BatchResult, records: dict[int, dict], rs: ResolvedSpec, seeds: int) -> None:
    rows = []
    for job, status, reason, rank in zip(res.jobs, res.status, res.reasons, res.ranks):
        rec = records.get(job.number, {})
        rows.append({"job": job.number, "folder": job.folder.name, "prompt_index": job.prompt_index,
                     "seed_index": job.seed_index, "prompt": job.prompt, "seed": job.seed, "status": status,
                     "reason": reason, "rank": rank, "num_frames": rec.get("num_frames"),
                     "latent_frames": rec.get("latent_frames"), "key_sha256": rec.get("key_sha256"),
                     "finished": (job.folder / "done.json").is_file()})
    counts: dict[str, int] = {}
    for s in res.status:
        counts[s] = counts.get(s, 0) + 1
    write_json_atomic(path, {
        "sfpp_rollout_index": 1,
        "sfpp_version": __version__,
        "created_unix": time.time(),
        "processes": res.world,
        "seeds_per_prompt": seeds,
        "base_seed": rs.seed,
        "seed_formula": f"seed = base_seed + prompt_index + {SEED_STRIDE} * seed_index",
        "split": "job j (sorted by prompt_index, then seed_index) runs on rank j % processes",
        "counts": counts,
        "jobs": rows,
    })


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
