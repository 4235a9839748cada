"""Codecs between pixels and the latents the transformer works on.

Two kinds, one interface (`encode`, `stream().decode`, frame arithmetic):

* `WanVaeCodec`: Wan's causal 3-D VAE (`AutoencoderKLWan`): x8 spatial, x4 temporal with the
  first latent frame decoding to a single pixel frame; streaming decode keeps the causal cache.
* `PixelCodec`: no weights. Packs ``p x p`` pixel patches of ``T`` consecutive frames into
  channels ("space-to-depth" in space and time) and upscales on output. Used by the ToyWorld
  preset, whose native resolution is tiny.

Layouts: pixels ``(B, 3, F, H, W)`` in [-1, 1]; latents ``(B, C, F', h, w)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module does not import torch
    import torch

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PixelCodecConfig:
    patch: int = 4  # spatial packing: p x p pixels -> channels
    frames: int = 2  # temporal packing: T pixel frames per latent frame
    upscale: int = 8  # output upscaling (nearest) from the native resolution
    scale: float = 1.0  # latent = scale * pixel

    @property
    def channels(self) -> int:
        return 3 * self.patch * self.patch * self.frames


class PixelCodec:
    """Space-to-depth codec: ``(B, 3, T*F', p*h, p*w)`` <-> ``(B, 3*T*p*p, F', h, w)``."""

    def __init__(self, config: PixelCodecConfig = PixelCodecConfig()):
        self.config = config

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def spatial_factor(self) -> int:
        """Output pixels per latent cell along H and W."""
        return self.config.patch * self.config.upscale

    def pixel_frames(self, num_latent: int) -> int:
        return num_latent * self.config.frames

    def latent_frames(self, num_pixel: int) -> int:
        return -(-num_pixel // self.config.frames)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Native-resolution pixels ``(B, 3, F, H, W)`` in [-1, 1] -> latents ``(B, C, F/T, H/p, W/p)``."""
        c = self.config
        B, _, Fr, H, W = video.shape
        if Fr % c.frames or H % c.patch or W % c.patch:
            raise ValueError(f"video {tuple(video.shape)} is not divisible by frames={c.frames}, patch={c.patch}")
        x = video.reshape(B, 3, Fr // c.frames, c.frames, H // c.patch, c.patch, W // c.patch, c.patch)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # (B, 3, T, p, p, F', h, w)
        return x.reshape(B, self.channels, Fr // c.frames, H // c.patch, W // c.patch) * c.scale

    def decode_native(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, F', h, w)`` -> native pixels ``(B, 3, F'*T, h*p, w*p)`` in [-1, 1]."""
        c = self.config
        B, _, Fl, h, w = z.shape
        x = (z.float() / c.scale).reshape(B, 3, c.frames, c.patch, c.patch, Fl, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, 3, F', T, h, p, w, p)
        return x.reshape(B, 3, Fl * c.frames, h * c.patch, w * c.patch).clamp(-1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> output pixels (upscaled), ``(B, 3, F, H, W)`` in [-1, 1]."""
        return upscale_nearest(self.decode_native(z), self.config.upscale)

    def stream(self) -> "PixelStream":
        return PixelStream(self)

    def to(self, device) -> "PixelCodec":  # no weights
        return self


def upscale_nearest(x: torch.Tensor, u: int) -> torch.Tensor:
    """Pixels ``(B, C, F, H, W)`` -> ``(B, C, F, u*H, u*W)``, nearest neighbour."""
    if u == 1:
        return x
    import torch.nn.functional as F

    B, C, Fr, H, W = x.shape
    x = F.interpolate(x.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W), scale_factor=u, mode="nearest")  # (B*F, C, uH, uW)
    return x.reshape(B, Fr, C, H * u, W * u).permute(0, 2, 1, 3, 4)


class PixelStream:
    """Stateless streaming decoder with the `StreamingDecoder` interface."""

    def __init__(self, codec: PixelCodec):
        self.codec = codec
        self.frames_out = 0

    def reset(self) -> None:
        self.frames_out = 0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            out = self.codec.decode(z)
        self.frames_out += out.shape[2]
        return out


class WanVaeCodec:
    """Wan's causal VAE as a codec: x8 spatial, x4 temporal, first latent frame -> 1 pixel frame.

    Without a `vae` it only does the frame arithmetic (what request validation needs).
    """

    spatial_factor = 8

    def __init__(self, vae=None):
        self.vae = vae

    @property
    def channels(self) -> int:
        return int(self.vae.config.z_dim) if self.vae is not None else 16

    @staticmethod
    def pixel_frames(num_latent: int) -> int:
        from sfpp.vae_stream import pixel_frames_for_latents

        return pixel_frames_for_latents(num_latent)

    @staticmethod
    def latent_frames(num_pixel: int) -> int:
        from sfpp.vae_stream import latents_for_pixel_frames

        return latents_for_pixel_frames(num_pixel)

    def stream(self):
        from sfpp.vae_stream import StreamingDecoder

        if self.vae is None:
            raise RuntimeError("this codec has no VAE weights")
        return StreamingDecoder(self.vae)

    def to(self, device):
        if self.vae is not None:
            self.vae.to(device)
        return self
