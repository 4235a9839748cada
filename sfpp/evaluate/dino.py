"""DINO ViT backbone, inference only, for VBench's subject_consistency.

A plain pre-norm Vision Transformer (patch convolution, class token, learned position embeddings,
blocks of multi-head self-attention and a GELU MLP, final LayerNorm with eps 1e-6) whose output is
the normalised class token. VBench loads DINO ViT-B/16 through `torch.hub` from DINO's own code.

This is sfpp's own implementation of what DINO's `vision_transformer.py` computes. Two details
decide the numbers and are reproduced exactly:

* frames whose patch grid is not the training grid (every non-square frame; VBench resizes the
  short side to 224 and keeps the aspect) get position embeddings resized by bicubic
  interpolation with `scale_factor = (grid_side + 0.1) / sqrt(N)` per axis, the scale factor
  itself (not the target size) driving the sampling positions, as DINO's `interpolate_pos_encoding`
  does; resizing to an exact size (as Hugging Face's ViT does) gives different embeddings;
* attention is computed as softmax(q k^T * d^-0.5) v in that order.

Weights: DINO's own `dino_vitbase16_pretrain.pth` (VBench's `dino_model/` file; parameter names
as in DINO's code), or a Hugging Face `ViTModel` folder of the same network, converted on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEAD_DIM = 64  # every released DINO ViT (tiny/small/base) uses 64-wide heads
LN_EPS = 1e-6  # DINO's norm_layer = partial(nn.LayerNorm, eps=1e-6)


@dataclass(frozen=True)
class DinoConfig:
    dim: int = 768
    depth: int = 12
    heads: int = 12
    patch: int = 16
    grid: int = 14  # side of the position-embedding grid (224 / 16)
    mlp: int = 3072

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], heads: int | None = None) -> DinoConfig:
        """Sizes read off DINO-named tensors; heads = dim / 64 unless given. KeyError if a key is absent."""
        dim = int(sd["cls_token"].shape[-1])
        n = int(sd["pos_embed"].shape[1]) - 1
        grid = math.isqrt(n)
        if grid * grid != n:
            raise ValueError(f"pos_embed holds {n} patch positions, not a square grid")
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        return cls(dim=dim, depth=depth, heads=heads or max(1, dim // HEAD_DIM),
                   patch=int(sd["patch_embed.proj.weight"].shape[-1]), grid=grid,
                   mlp=int(sd["blocks.0.mlp.fc1.weight"].shape[0]))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.attn = _Attention(cfg.dim, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.mlp = _Mlp(cfg.dim, cfg.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.dim, cfg.patch, stride=cfg.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    """`forward(x)` on ImageNet-normalised (B, 3, H, W) -> (B, dim) final-norm class token."""

    def __init__(self, cfg: DinoConfig = DinoConfig()):
        super().__init__()
        self.config = cfg
        self.patch_embed = _PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid + 1, cfg.dim))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)

    def position_embeddings(self, num_patches: int, h: int, w: int) -> torch.Tensor:
        """(1, 1 + num_patches, dim) position embeddings for an h x w input, as DINO resizes them."""
        n = self.pos_embed.shape[1] - 1
        if num_patches == n and h == w:
            return self.pos_embed
        dim, side = self.pos_embed.shape[-1], math.sqrt(n)
        gh, gw = h // self.config.patch + 0.1, w // self.config.patch + 0.1  # +0.1 as DINO: no rounding down
        grid = self.pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(gh / side, gw / side), mode="bicubic")
        if grid.shape[-2:] != (int(gh), int(gw)):
            raise ValueError(f"position grid {tuple(grid.shape[-2:])} does not fit {h}x{w} frames")
        grid = grid.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((self.pos_embed[:, 0].unsqueeze(0), grid), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.position_embeddings(x.shape[1] - 1, h, w)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


def checkpoint_state_dict(obj) -> dict[str, torch.Tensor]:
    """DINO-named backbone tensors from a loaded DINO checkpoint: a plain state dict, or one nested
    under 'teacher'/'student'/'state_dict'/'model' with an optional 'module.'/'backbone.' prefix
    (DINO's training checkpoints); projection-head tensors are dropped."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    for key in ("teacher", "state_dict", "model"):
        if "cls_token" not in obj and isinstance(obj.get(key), dict):
            obj = obj[key]
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "backbone."):
            k = k.removeprefix(prefix)
        if not k.startswith("head."):
            out[k] = v
    return out


# Hugging Face ViT parameter names per DINO name, transformers 4.x first, then 5.x.
_HF_LAYER_NAMES = {
    "attn.q": ("attention.attention.query", "attention.q_proj"),
    "attn.k": ("attention.attention.key", "attention.k_proj"),
    "attn.v": ("attention.attention.value", "attention.v_proj"),
    "attn.proj": ("attention.output.dense", "attention.o_proj"),
    "norm1": ("layernorm_before",),
    "norm2": ("layernorm_after",),
    "mlp.fc1": ("intermediate.dense", "mlp.fc1"),
    "mlp.fc2": ("output.dense", "mlp.fc2"),
}


def state_dict_from_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINO-named tensors from a Hugging Face `ViTModel` state dict (query/key/value fused into
    qkv), with the layer names of transformers 4 (`encoder.layer.N....`) or 5 (`layers.N....`)."""
    sd = {k.removeprefix("vit."): v for k, v in sd.items() if not k.startswith(("pooler.", "classifier."))}
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    prefix = "encoder.layer." if any(k.startswith("encoder.layer.") for k in sd) else "layers."
    layers = sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})

    def get(i: int, name: str, p: str) -> torch.Tensor:
        for hf in _HF_LAYER_NAMES[name]:
            if f"{prefix}{i}.{hf}.{p}" in sd:
                return sd[f"{prefix}{i}.{hf}.{p}"]
        raise KeyError(f"{prefix}{i}.{_HF_LAYER_NAMES[name][0]}.{p}")

    for i in layers:
        for p in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{p}"] = torch.cat([get(i, f"attn.{n}", p) for n in "qkv"])
            for name in ("attn.proj", "norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[f"blocks.{i}.{name}.{p}"] = get(i, name, p)
    return out
