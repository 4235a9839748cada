"""Streaming Wan VAE decode: latent chunks in, pixel frames out, causal feature cache kept.

diffusers' `AutoencoderKLWan.decode()` clears its causal-conv feature cache at every call, so
decoding a video chunk by chunk through it would restart the temporal context each time.
`StreamingDecoder` keeps its own feature cache (one slot per causal conv) across calls and runs
the decoder one latent frame at a time, exactly as `decode()` does internally, so the
concatenated output equals one-shot decoding.

Latent frame 0 decodes to 1 pixel frame and every later latent frame to 4 (temporal factor 4).
"""

from __future__ import annotations

import torch


class StreamingDecoder:
    """Decode a video's latents chunk by chunk. One instance per video stream.

    Inputs are the *model's* normalised latents ``(B, z_dim, f, h, w)``; they are mapped to the
    VAE's space with ``z * std + mean`` (the per-channel config lists) as Wan's pipeline does.
    Outputs are ``(B, 3, frames, H, W)`` in [-1, 1].
    """

    def __init__(self, vae):
        self.vae = vae
        cfg = vae.config
        p = next(vae.parameters())
        self.dtype = p.dtype
        shape = (1, cfg.z_dim, 1, 1, 1)
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32, device=p.device).view(shape)
        self.std = torch.tensor(cfg.latents_std, dtype=torch.float32, device=p.device).view(shape)
        self.reset()

    def reset(self) -> None:
        """Start a new video: empty feature cache."""
        self._feat_map: list = [None] * self.vae._cached_conv_counts["decoder"]
        self._started = False
        self.frames_out = 0

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode the next latent chunk ``(B, z_dim, f, h, w)`` -> ``(B, 3, frames, H, W)``."""
        vae = self.vae
        z = (z.float() * self.std + self.mean).to(self.dtype)
        x = vae.post_quant_conv(z)  # 1x1x1 conv, per frame
        outs = []
        for i in range(x.shape[2]):
            idx = [0]  # cursor into the feature cache, advanced by every causal conv
            out = vae.decoder(x[:, :, i : i + 1], feat_cache=self._feat_map, feat_idx=idx,
                              first_chunk=not self._started)
            self._started = True
            outs.append(out)
        video = torch.cat(outs, dim=2)
        if vae.config.patch_size is not None:  # Wan 2.2 VAE
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            video = unpatchify(video, patch_size=vae.config.patch_size)
        video = video.clamp(-1.0, 1.0).float()
        self.frames_out += video.shape[2]
        return video


def pixel_frames_for_latents(num_latent: int) -> int:
    """Frames the Wan VAE produces from `num_latent` latent frames: 1 + 4 (n - 1)."""
    return 0 if num_latent <= 0 else 1 + 4 * (num_latent - 1)


def latents_for_pixel_frames(num_frames: int) -> int:
    """Smallest latent count whose decode has at least `num_frames` frames."""
    return 1 + -(-(num_frames - 1) // 4)


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """``(3, frames, H, W)`` in [-1, 1] -> ``(frames, H, W, 3)`` uint8 on CPU."""
    v = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).contiguous().cpu()  # (frames, H, W, 3)
