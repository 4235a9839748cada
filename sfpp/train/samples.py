"""Sample videos during training: the student's rollout decoded to ``<stage>/samples/step_NNNNNN.mp4``."""

from __future__ import annotations

import torch

from sfpp.noise import SeededNoise
from sfpp.rollout import rollout
from sfpp.vae_stream import to_uint8_frames
from sfpp.video import Mp4Writer


@torch.no_grad()
def write_sample(tr, fps: int = 16) -> None:
    """Roll out `[run].sample_seconds` with the current student and write an MP4 (rank 0 only; under
    FSDP the other ranks run the same rollout, since every forward gathers weights collectively)."""
    cfg = tr.cfg
    s = tr.nets.student
    was_training = s.training
    s.eval()
    frames = max(1, round(cfg.run.sample_seconds * fps))
    codec = tr.nets.codec
    latent = -(-codec.latent_frames(frames) // tr.chunk) * tr.chunk
    if tr.rollout.rope == "absolute":
        latent = min(latent, s.rope_max_frames // tr.chunk * tr.chunk)
    h, w = tr.latent_hw
    text = s.encode_text(tr.sample_emb.to(tr.device, next(s.parameters()).dtype))
    # the sample runs exactly as `sfpp generate` would run the exported student (same rollout settings)
    cache_cfg = tr.rollout.cache(tr.rollout.resolve_rope(latent, s.rope_max_frames))
    cache = s.new_cache(cache_cfg, batch_size=1, latent_hw=tr.latent_hw)
    noise = SeededNoise(cfg.run.seed, channels=s.in_channels, height=h, width=w, device=tr.device)
    if not tr.acc.is_main_process:
        try:
            rollout(s, text, noise, cache, num_frames=latent, chunk_frames=tr.chunk, timesteps=tr.timesteps,
                    context_noise=tr.rollout.context_noise, keep=False)
        finally:
            s.train(was_training)
        return
    out = tr.dir / "samples" / f"step_{tr.step:06d}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    decoder = codec.stream()
    sf = codec.spatial_factor
    writer = Mp4Writer(out, fps=fps, width=w * sf, height=h * sf)

    def on_chunk(c):
        parts = [c.x0[:, :, :1], c.x0[:, :, 1:]] if c.index == 0 else [c.x0]
        for p in parts:
            if p.shape[2] and writer.frames < frames:
                writer.write(to_uint8_frames(decoder.decode(p)[0])[: frames - writer.frames])

    try:
        rollout(s, text, noise, cache, num_frames=latent, chunk_frames=tr.chunk, timesteps=tr.timesteps,
                context_noise=tr.rollout.context_noise, on_chunk=on_chunk, keep=False)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        s.train(was_training)
