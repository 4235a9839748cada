"""A learned codec for ToyWorld: a small convolutional autoencoder between frames and latents.

Why (issue #16, docs/toyworld.md "Image-level ablations"): on the pixel codec (space-to-depth, each
transformer token a 4x4-pixel patch) the toy transformers learn colours and motion but not shapes;
on the latents of a small conv autoencoder the same transformer draws the asked shape in every
sample after 2000 image-level steps (pixel codec: near chance). The decoder's convolutions draw the
edges; the transformer only has to place a compact code.

Layouts: pixels ``(B, 3, F, H, W)`` in [-1, 1] with ``F`` a multiple of ``frames``; latents
``(B, C, F / frames, H / 4, W / 4)``, normalised per channel (zero mean, unit variance over the
training clips). Each latent frame codes ``frames`` consecutive pixel frames on its own (no
temporal context), so streaming decode is stateless like `PixelCodec`'s.

    sfpp toyworld train-codec --out runs/toy3/codec
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from collections.abc import Callable

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing this module (presets do, for frame arithmetic) does not import torch
    import numpy as np
    import torch

DOWN = 4  # spatial reduction of the encoder (two stride-2 convolutions)


@dataclass(frozen=True, kw_only=True)
class LearnedCodecConfig:
    channels: int = 16  # latent channels per latent frame
    frames: int = 2  # pixel frames per latent frame
    width: int = 64  # feature width of the middle convolutions
    upscale: int = 8  # output upscaling (nearest) from the native resolution, as PixelCodecConfig

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"LearnedCodecConfig.{f.name} must be a positive integer, got {v!r}")


def new_autoencoder(cfg: LearnedCodecConfig):
    """A randomly initialised conv autoencoder: ``encoder`` (``(N, 3T, H, W)`` stacked frames ->
    ``(N, C, H/4, W/4)`` raw codes), ``decoder`` (back) and the buffers ``mean``/``std`` (per-channel
    statistics of the codes, set after training; identity until then)."""
    import torch
    from torch import nn

    c_in, w = 3 * cfg.frames, cfg.width
    net = nn.Module()
    net.encoder = nn.Sequential(
        nn.Conv2d(c_in, w * 3 // 4, 3, 1, 1), nn.GELU(),
        nn.Conv2d(w * 3 // 4, w, 4, 2, 1), nn.GELU(),  # H/2
        nn.Conv2d(w, w * 3 // 2, 4, 2, 1), nn.GELU(),  # H/4
        nn.Conv2d(w * 3 // 2, cfg.channels, 1),
    )
    net.decoder = nn.Sequential(
        nn.Conv2d(cfg.channels, w * 3 // 2, 3, 1, 1), nn.GELU(),
        nn.ConvTranspose2d(w * 3 // 2, w, 4, 2, 1), nn.GELU(),  # H/2
        nn.ConvTranspose2d(w, w * 3 // 4, 4, 2, 1), nn.GELU(),  # H
        nn.Conv2d(w * 3 // 4, c_in, 3, 1, 1),
    )
    net.register_buffer("mean", torch.zeros(cfg.channels))
    net.register_buffer("std", torch.ones(cfg.channels))
    return net


class LearnedCodec:
    """The `PixelCodec` interface (`encode`, `decode_native`, `decode`, `stream`, frame arithmetic)
    over a conv autoencoder (`new_autoencoder`; trained: `load_codec`). Without `net` it only does the
    frame arithmetic (what presets and request validation need), like `WanVaeCodec` without a VAE."""

    def __init__(self, config: LearnedCodecConfig, net=None):
        self.config = config
        self._net = net.eval() if net is not None else None

    @property
    def net(self):
        if self._net is None:
            raise ValueError("this codec has no weights (frame arithmetic only); load one with "
                             "sfpp.toyworld.learned_codec.load_codec(PATH)")
        return self._net

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def spatial_factor(self) -> int:
        """Output pixels per latent cell along H and W."""
        return DOWN * self.config.upscale

    def pixel_frames(self, num_latent: int) -> int:
        return num_latent * self.config.frames

    def latent_frames(self, num_pixel: int) -> int:
        return -(-num_pixel // self.config.frames)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.net.mean.to(like).view(1, -1, 1, 1, 1), self.net.std.to(like).view(1, -1, 1, 1, 1))

    def encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, 3, F, H, W)`` -> unnormalised codes ``(B, C, F/T, H/4, W/4)``."""
        T = self.config.frames
        B, _, Fr, H, W = video.shape
        if Fr % T or H % DOWN or W % DOWN:
            raise ValueError(f"video {tuple(video.shape)} is not divisible by frames={T}, spatial factor={DOWN}")
        x = video.reshape(B, 3, Fr // T, T, H, W).permute(0, 2, 3, 1, 4, 5)  # (B, F', T, 3, H, W)
        z = self.net.encoder(x.reshape(B * (Fr // T), T * 3, H, W).to(self.net.mean.dtype))  # (B*F', C, h, w)
        return z.reshape(B, Fr // T, self.channels, H // DOWN, W // DOWN).permute(0, 2, 1, 3, 4)  # (B, C, F', h, w)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Native pixels ``(B, 3, F, H, W)`` in [-1, 1] -> normalised latents ``(B, C, F/T, H/4, W/4)``."""
        z = self.encode_raw(video)
        mean, std = self._stats(z)
        return (z - mean) / std

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalised codes ``(B, C, F', h, w)`` -> pixels ``(B, 3, F'*T, 4h, 4w)`` (not clamped)."""
        T = self.config.frames
        B, C, Fl, h, w = z.shape
        x = self.net.decoder(z.permute(0, 2, 1, 3, 4).reshape(B * Fl, C, h, w).to(self.net.mean.dtype))  # (B*F', 3T, H, W)
        x = x.reshape(B, Fl, T, 3, h * DOWN, w * DOWN).permute(0, 3, 1, 2, 4, 5)  # (B, 3, F', T, H, W)
        return x.reshape(B, 3, Fl * T, h * DOWN, w * DOWN)

    def decode_native(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, C, F', h, w)`` -> native pixels ``(B, 3, F'*T, 4h, 4w)`` in [-1, 1]."""
        if z.shape[1] != self.channels:
            raise ValueError(f"latents {tuple(z.shape)} have {z.shape[1]} channels; this codec has {self.channels}")
        mean, std = self._stats(z.float())
        return self.decode_raw(z.float() * std + mean).float().clamp(-1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> output pixels (upscaled), ``(B, 3, F, H, W)`` in [-1, 1]."""
        from sfpp.codec import upscale_nearest

        return upscale_nearest(self.decode_native(z), self.config.upscale)

    def stream(self):
        from sfpp.codec import PixelStream

        return PixelStream(self)  # stateless: each latent frame decodes on its own

    def to(self, device) -> LearnedCodec:
        if self._net is not None:
            self._net.to(device)
        return self


# ---------------------------------------------------------------------------------------------- files
ROLE = "toyworld-codec"


def save_codec(path: str | os.PathLike, codec: LearnedCodec, extra: dict | None = None) -> Path:
    """Weights + config in one safetensors file, written atomically."""
    from sfpp.checkpoints import save_student

    meta = {"role": ROLE, "codec": asdict(codec.config), **(extra or {})}
    return save_student(path, codec.net.state_dict(), meta)


def load_codec(path: str | os.PathLike, device: str = "cpu") -> LearnedCodec:
    from sfpp.checkpoints import read_checkpoint_config
    from sfpp.errors import SfppError

    path = Path(path)
    if not path.is_file():
        raise SfppError(f"codec {path} does not exist; train one with 'sfpp toyworld train-codec --out DIR'")
    meta = read_checkpoint_config(path)
    if meta.get("role") != ROLE or not isinstance(meta.get("codec"), dict):
        raise SfppError(f"{path} is not a ToyWorld codec (no codec config in it); give the codec.safetensors "
                        "written by 'sfpp toyworld train-codec'")
    try:
        cfg = LearnedCodecConfig(**meta["codec"])
    except (TypeError, ValueError) as e:
        raise SfppError(f"{path}: unreadable codec config ({e})") from None
    from safetensors.torch import load_file

    net = new_autoencoder(cfg)
    state = load_file(str(path))
    missing = set(net.state_dict()) ^ set(state)
    if missing:
        raise SfppError(f"{path}: codec weights do not match its config ({len(missing)} tensors differ)")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise SfppError(f"{path}: codec weights do not match its config ({str(e).splitlines()[0]})") from None
    return LearnedCodec(cfg, net).to(device)


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True, kw_only=True)
class CodecTrainConfig:
    steps: int = 3000
    batch_size: int = 32  # latent frames (each `frames` pixel frames) per step
    lr: float = 2e-3
    lr_min_ratio: float = 0.1  # cosine decay to lr * lr_min_ratio
    latent_noise: float = 0.1  # Gaussian noise on the codes while training: nearby codes decode alike
    latent_l2: float = 1e-3  # keeps the codes' scale bounded
    pool_clips: int = 1500  # rendered clips (12 frames each) to draw from
    max_objects: int = 3
    # the lit world (issue #19): clips lit by a slow global cycle, gain 1 + A sin(2 pi t / P + phase)
    # (sfpp.toyworld.world.Lighting); 0: the unlit world
    light_amplitude: float = 0.0
    light_period_s: float = 12.0
    seed: int = 0
    save_every: int = 500  # resume state every this many steps (0: only at the end)
    log_every: int = 100


STATE = "codec_state.pt"


def _pool(cfg: CodecTrainConfig, frames: int) -> np.ndarray:
    """``(n, 6 * frames, 32, 32, 3)`` uint8 clips of the training distribution (held-out prompts excluded),
    lit by ``cfg``'s lighting cycle when its amplitude is above 0."""
    import numpy as np

    from sfpp.toyworld.world import Lighting, held_out_prompts, random_scene, render_clip

    rng = np.random.default_rng(cfg.seed)
    held = set(held_out_prompts())
    light = Lighting(cfg.light_amplitude, cfg.light_period_s)
    return np.stack([render_clip(random_scene(rng, exclude=held, max_objects=cfg.max_objects), 6 * frames, rng,
                                 lighting=light).frames
                     for _ in range(cfg.pool_clips)])


def _batch(pool: np.ndarray, rng: np.random.Generator, n: int, frames: int) -> torch.Tensor:
    """``(n, 3, frames, 32, 32)`` in [-1, 1]: random `frames`-frame windows."""
    import numpy as np
    import torch

    idx = rng.integers(0, len(pool), n)
    start = rng.integers(0, pool.shape[1] - frames + 1, n)
    clips = np.stack([pool[i, s: s + frames] for i, s in zip(idx, start)])  # (n, T, 32, 32, 3)
    return torch.from_numpy(clips).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)


def train_codec(cfg: CodecTrainConfig, codec_cfg: LearnedCodecConfig, out: Path, *, resume: bool = False,
                on_log: Callable[[dict], None] | None = None) -> Path:
    """Train a `LearnedCodec` and write ``out/codec.safetensors`` (+ ``out/log.jsonl``).

    The latent statistics are measured on the pool at the end (so `encode` gives zero mean, unit
    variance per channel). ``resume`` continues an interrupted run in `out` from its last state.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sfpp.errors import SfppError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = json.dumps({"train": asdict(cfg), "codec": asdict(codec_cfg)}, sort_keys=True)
    saved = None
    if resume:
        if not (out / STATE).is_file():
            raise SfppError(f"no {STATE} in {out} to resume from; start without --resume")
        saved = torch.load(out / STATE, map_location="cpu", weights_only=True)
        if _with_defaults(saved["settings"]) != settings:
            raise SfppError(f"cannot resume: {out} was trained with other settings; give the same options or a new --out")
    elif (out / STATE).is_file():
        raise SfppError(f"{out} already holds a codec run; pass --resume to continue it or choose another --out")
    torch.manual_seed(cfg.seed)
    T = codec_cfg.frames
    pool = _pool(cfg, T)
    net = new_autoencoder(codec_cfg).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def factor(step: int) -> float:
        frac = min(1.0, step / max(1, cfg.steps))
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = np.random.default_rng(cfg.seed + 1)
    first = 1
    if saved is not None:
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        rng.bit_generator.state = json.loads(saved["np_rng"])
        torch.set_rng_state(saved["torch_rng"])
        first = int(saved["step"]) + 1
    codec = LearnedCodec(codec_cfg, net)
    net.train()  # LearnedCodec puts its net in eval mode; no layer here differs, but say what is meant
    log_path = out / "log.jsonl"
    if saved is not None and log_path.is_file():
        keep = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= saved["step"]]
        log_path.write_text("".join(ln + "\n" for ln in keep))
    log = open(log_path, "a" if saved is not None else "w")
    t0 = time.perf_counter()
    for step in range(first, cfg.steps + 1):
        x = _batch(pool, rng, cfg.batch_size, T)  # (B, 3, T, 32, 32)
        z = codec.encode_raw(x)  # (B, C, 1, 8, 8)
        rec = codec.decode_raw(z + cfg.latent_noise * torch.randn_like(z))
        mse = F.mse_loss(rec, x)
        loss = mse + cfg.latent_l2 * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            # rmse in grey levels (0-255) of the noisy-code reconstruction
            row = {"step": step, "loss": loss.item(), "rmse_grey": mse.item() ** 0.5 * 127.5,
                   "lr": sched.get_last_lr()[0], "elapsed_s": time.perf_counter() - t0}
            log.write(json.dumps(row) + "\n")
            log.flush()
            if on_log:
                on_log(row)
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            _save_state(out, step, net, opt, sched, rng, settings)
    log.close()
    net.eval()
    with torch.no_grad():  # per-channel statistics of the codes over the pool (all windows of T frames)
        clips = torch.from_numpy(pool[:, : (pool.shape[1] // T) * T]).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
        zs = torch.cat([codec.encode_raw(clips[i: i + 64]) for i in range(0, len(clips), 64)])  # (n, C, F', h, w)
        net.mean.copy_(zs.mean(dim=(0, 2, 3, 4)))
        net.std.copy_(zs.std(dim=(0, 2, 3, 4)).clamp(min=1e-4))
    return save_codec(out / "codec.safetensors", codec, {"train": asdict(cfg), "step": cfg.steps})


def _with_defaults(settings: str) -> str:
    """A saved run's settings with the options added since it started at their defaults (what it trained with)."""
    try:
        old = json.loads(settings)
        return json.dumps({"train": {**asdict(CodecTrainConfig()), **old["train"]},
                           "codec": {**asdict(LearnedCodecConfig()), **old["codec"]}}, sort_keys=True)
    except (ValueError, KeyError, TypeError):
        return settings


def _save_state(out: Path, step: int, net, opt, sched, rng, settings: str) -> None:
    import torch

    from sfpp.files import save_torch_atomic

    state = {"step": step, "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "np_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(), "settings": settings}
    save_torch_atomic(state, out / STATE)
