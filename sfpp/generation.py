"""`sfpp.generate(...)`: prompt -> streaming rollout -> streaming VAE decode -> MP4 + JSON sidecar.

Memory does not grow with video length: latents are decoded and written chunk by chunk and
nothing per-chunk is kept (the rolling KV cache and the VAE feature cache have fixed size).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from sfpp.errors import SfppError
from sfpp.noise import SeededNoise
from sfpp.rollout import ChunkResult, rollout
from sfpp.spec import LoadedModel, ResolvedSpec, VideoSpec, check_output_path, load_model, resolve_spec
from sfpp.text import encode_prompts
from sfpp.vae_stream import StreamingDecoder, to_uint8_frames
from sfpp.video import Mp4Writer

ProgressFn = Callable[[int, int], None]  # (frames written, frames total)


@dataclass
class GenerateResult:
    path: Path
    sidecar: Path
    num_frames: int
    fps: int
    seconds_total: float
    frames_per_second: float


def sidecar_path(video: Path) -> Path:
    """``NAME.mp4`` -> ``NAME.json``."""
    return video.with_suffix(".json")


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def default_out_path(prompt: str, seed: int) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in prompt.lower()).strip("-")
    slug = "-".join(p for p in slug.split("-") if p)[:48] or "video"
    return Path("outputs") / f"{slug}-s{seed}.mp4"


def generate(
    prompt: str,
    *,
    out: str | os.PathLike | None = None,
    spec: VideoSpec | None = None,
    progress: ProgressFn | None = None,
    loaded: LoadedModel | None = None,
    **overrides,
) -> GenerateResult:
    """Generate one video and write it as an MP4 with a JSON sidecar.

    Args:
        prompt: the text prompt.
        out: output ``.mp4`` path (default ``outputs/<prompt-slug>-s<seed>.mp4``).
        spec: a `VideoSpec`; keyword overrides (``seconds=60, seed=3, model="debug"``, ...)
            are applied on top of it.
        progress: called with (frames written, frames total) after each chunk.
        loaded: an already loaded model (`sfpp.spec.load_model`), to make several videos without reloading.

    Returns:
        `GenerateResult` with the paths and timings.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise SfppError("the prompt is empty; pass a text prompt, e.g. sfpp generate \"a red kite over a beach\"")
    spec = replace(spec or VideoSpec(), **overrides)
    rs = resolve_spec(spec)
    out_path = check_output_path(Path(out) if out else default_out_path(prompt, rs.seed), suffix=".mp4")
    t0 = time.perf_counter()
    lm = loaded or load_model(rs)
    t_load = time.perf_counter() - t0
    timings = _generate_into(prompt, rs, lm, out_path, progress)
    timings["load_s"] = t_load
    total = time.perf_counter() - t0
    side = sidecar_path(out_path)
    write_json_atomic(side, _sidecar(prompt, rs, lm, timings, total))
    return GenerateResult(out_path, side, rs.num_frames, rs.fps, total, rs.num_frames / max(timings["generate_s"], 1e-9))


def _generate_into(prompt: str, rs: ResolvedSpec, lm: LoadedModel, out_path: Path, progress: ProgressFn | None,
                   hook: Callable[[ChunkResult], None] | None = None) -> dict:
    """Run the rollout, decoding and writing each chunk; `hook` sees every finished chunk too."""
    device = torch.device(rs.device)
    student = lm.student
    with torch.no_grad():
        emb = encode_prompts(lm.tokenizer, lm.text_encoder, [prompt], max_length=rs.text_len, device=device)
        text = student.encode_text(emb.to(next(student.parameters()).dtype))
    cache = student.new_cache(rs.cache, batch_size=1, latent_hw=(rs.latent_height, rs.latent_width))
    noise = SeededNoise(rs.seed, channels=student.in_channels, height=rs.latent_height, width=rs.latent_width,
                        device=device)
    decoder = StreamingDecoder(lm.vae)
    writer = Mp4Writer(out_path, fps=rs.fps, width=rs.width, height=rs.height)
    chunk_times: list[float] = []
    decode_times: list[float] = []
    t_first: list[float] = []
    t_start = time.perf_counter()

    def on_chunk(c: ChunkResult) -> None:
        t = time.perf_counter()
        z = c.x0
        # The VAE's first call must be exactly one latent frame (it decodes to one pixel frame).
        parts = [z[:, :, :1], z[:, :, 1:]] if c.index == 0 else [z]
        for part in parts:
            if part.shape[2] == 0:
                continue
            video = decoder.decode(part)  # (1, 3, frames, H, W)
            remaining = rs.num_frames - writer.frames
            if remaining > 0:
                frames = to_uint8_frames(video[0])[:remaining]
                writer.write(frames)
        if hook is not None:
            hook(c)
        decode_times.append(time.perf_counter() - t)
        chunk_times.append(c.seconds)
        if not t_first:
            t_first.append(time.perf_counter() - t_start)
        if progress is not None:
            progress(writer.frames, rs.num_frames)

    try:
        with torch.inference_mode():
            rollout(student, text, noise, cache, num_frames=rs.latent_frames, chunk_frames=rs.chunk_frames,
                    timesteps=rs.timesteps, on_chunk=on_chunk, keep=False)
        if writer.frames != rs.num_frames:  # pragma: no cover - guarded by resolve_spec's arithmetic
            raise RuntimeError(f"wrote {writer.frames} frames, expected {rs.num_frames}")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    gen_s = time.perf_counter() - t_start
    return {
        "generate_s": gen_s,
        "time_to_first_frame_s": t_first[0] if t_first else None,
        "frames_per_second": rs.num_frames / max(gen_s, 1e-9),
        "chunk_denoise_s": chunk_times,
        "chunk_decode_write_s": decode_times,
    }


def _sidecar(prompt: str, rs: ResolvedSpec, lm: LoadedModel, timings: dict, total: float) -> dict:
    import sfpp

    return {
        "prompt": prompt,
        "seed": rs.seed,
        "model": rs.model,
        "fps": rs.fps,
        "num_frames": rs.num_frames,
        "seconds": rs.seconds,
        "height": rs.height,
        "width": rs.width,
        "weights": lm.source,
        "checkpoint": rs.checkpoint,
        "checkpoint_sha256": lm.checkpoint_sha256,
        "config": rs.to_dict(),
        "timings": {**timings, "total_s": total},
        "sfpp_version": sfpp.__version__,
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "created_unix": time.time(),
    }
