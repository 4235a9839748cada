"""ViCLIP video-text model and its BPE tokenizer, inference only, for VBench's overall_consistency.

ViCLIP (Wang et al., "InternVid", 2023) is CLIP ViT-L/14 turned into a video model: every frame
is cut into patches by a per-frame (temporal kernel 1) 3-D convolution, the patch tokens get a
learned per-frame embedding on top of the spatial one, and a single class token attends to the
patches of all frames at once; its final state, projected, is the video embedding. The text tower
is CLIP's causal text transformer (read at the end-of-text token) with a context of 32 tokens.
VBench scores a video by the cosine of the two embeddings.

This is sfpp's own implementation. Parameter names and shapes follow the released
`ViClip-InternVid-10M-FLT.pth` (the weights sit under its 'model' key), so the file loads with
`load_state_dict(strict=True)`. The weights are MIT-licensed (OpenGVLab/ViCLIP model card).
"""

from __future__ import annotations

import gzip
import html
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
NUM_MERGES = 49152 - 256 - 2  # merges CLIP's tokenizer reads from the vocab file (lines 1..48894)
HEAD_DIM = 64  # every released ViCLIP tower uses 64-wide attention heads


@dataclass(frozen=True)
class ViCLIPConfig:
    """Sizes of a ViCLIP model; the defaults are the released ViT-L/14 (InternVid-10M-FLT)."""

    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 8
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 32  # ViCLIP's text length (CLIP itself uses 77)
    vocab_size: int = 49408
    embed_dim: int = 768  # both projections end here

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor]) -> ViCLIPConfig:
        """Sizes read off a checkpoint's tensor shapes (heads = width / 64). KeyError if a key is absent."""

        def layers(prefix: str) -> int:
            ids = {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}
            return max(ids) + 1 if ids else 0

        conv = sd["vision_encoder.conv1.weight"]  # (width, 3, 1, patch, patch)
        patch = int(conv.shape[-1])
        n_pos = int(sd["vision_encoder.positional_embedding"].shape[0])
        grid = round((n_pos - 1) ** 0.5)
        vw = int(conv.shape[0])
        tw = int(sd["text_encoder.token_embedding.weight"].shape[1])
        return cls(
            image_size=grid * patch,
            patch_size=patch,
            num_frames=int(sd["vision_encoder.temporal_positional_embedding"].shape[1]),
            vision_width=vw,
            vision_layers=layers("vision_encoder.transformer.resblocks."),
            vision_heads=max(1, vw // HEAD_DIM),
            text_width=tw,
            text_layers=layers("text_encoder.transformer.resblocks."),
            text_heads=max(1, tw // HEAD_DIM),
            context_length=int(sd["text_encoder.positional_embedding"].shape[0]),
            vocab_size=int(sd["text_encoder.token_embedding.weight"].shape[0]),
            embed_dim=int(sd["vision_encoder.proj"].shape[1]),
        )


# ---- network ---------------------------------------------------------------------------------------
class _Attention(nn.Module):
    """Multi-head self-attention with the packed q/k/v projection layout of `nn.MultiheadAttention`."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        return self.c_proj(h * torch.sigmoid(1.702 * h))  # CLIP's "quick" GELU


class _Block(nn.Module):
    """Pre-norm transformer block (CLIP layout)."""

    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.ln_1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = _Mlp(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), self.causal)
        return x + self.mlp(self.ln_2(x))


class _Stack(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(_Block(width, heads, causal) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class _VisionTower(nn.Module):
    def __init__(self, c: ViCLIPConfig):
        super().__init__()
        w, p = c.vision_width, c.patch_size
        s = w**-0.5
        self.conv1 = nn.Conv3d(3, w, (1, p, p), (1, p, p), bias=False)
        self.class_embedding = nn.Parameter(s * torch.randn(w))
        self.positional_embedding = nn.Parameter(s * torch.randn(c.grid**2 + 1, w))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, c.num_frames, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = _Stack(w, c.vision_layers, c.vision_heads, causal=False)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(s * torch.randn(w, c.embed_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) normalised frames -> (B, embed_dim)."""
        b, t = video.shape[:2]
        n_frames = self.temporal_positional_embedding.shape[1]
        if t != n_frames and t != 1:
            raise ValueError(f"ViCLIP was built for {n_frames} frames (or 1), got {t}")
        x = self.conv1(video.transpose(1, 2))  # (B, W, T, gh, gw)
        x = x.flatten(3).permute(0, 3, 2, 1)  # (B, patches, T, W)
        pos = self.positional_embedding.to(x.dtype)
        if x.shape[1] != pos.shape[0] - 1:
            raise ValueError(f"ViCLIP expects {pos.shape[0] - 1} patches per frame, got {x.shape[1]}; resize frames first")
        temporal = self.temporal_positional_embedding[0]
        if t == 1:  # a single image gets the mean frame embedding
            temporal = temporal.mean(0, keepdim=True)
        x = x + pos[1:, None] + temporal.to(x.dtype)[None]
        x = x.reshape(b, -1, x.shape[-1])  # patch-major, frame-minor token order
        cls = (self.class_embedding + pos[0]).to(x.dtype).expand(b, 1, -1)
        x = self.transformer(self.ln_pre(torch.cat([cls, x], dim=1)))
        return self.ln_post(x[:, 0]) @ self.proj


class _TextTower(nn.Module):
    def __init__(self, c: ViCLIPConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(c.context_length, c.text_width))
        self.transformer = _Stack(c.text_width, c.text_layers, c.text_heads, causal=True)
        self.ln_final = nn.LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(c.text_width**-0.5 * torch.randn(c.text_width, c.embed_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids, end-of-text being the largest id of each row -> (B, embed_dim)."""
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        x = self.ln_final(self.transformer(x))
        return x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)] @ self.text_projection


class ViCLIP(nn.Module):
    """ViCLIP: `encode_vision` / `encode_text` give unnormalised embeddings; `similarity` their cosine."""

    def __init__(self, config: ViCLIPConfig = ViCLIPConfig()):
        super().__init__()
        self.config = config
        self.vision_encoder = _VisionTower(config)
        self.text_encoder = _TextTower(config)
        self.temp = nn.Parameter(torch.tensor(0.01))  # training temperature; unused for scoring

    def encode_vision(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) CLIP-normalised frames -> (B, embed_dim)."""
        return self.vision_encoder(video)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids from `ViCLIPTokenizer` -> (B, embed_dim)."""
        return self.text_encoder(ids)

    def similarity(self, video: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(B_video, B_text) cosine similarities: VBench's overall_consistency score."""
        v = F.normalize(self.encode_vision(video).float(), dim=-1)
        t = F.normalize(self.encode_text(ids).float(), dim=-1)
        return v @ t.T


def checkpoint_state_dict(obj) -> dict:
    """The weights inside a loaded ViCLIP checkpoint: the released file nests them under 'model';
    a bare state dict and a DataParallel 'module.' prefix also work."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


# ---- tokenizer ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """Byte -> printable character table of byte-level BPE (GPT-2 / CLIP): printable Latin-1 bytes
    stand for themselves, the other 68 bytes (controls, space, ...) take code points from 256 on.
    The insertion order (printable bytes first) is the order of the first 256 vocabulary ids."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_QUOTES = {**{c: "'" for c in (0x02BC, 0x2018, 0x2019, 0x201A, 0x201B)}, **{c: '"' for c in range(0x201C, 0x2020)}}
_LIGATURES = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "ſt", 0xFB06: "st",
              0x0132: "IJ", 0x0133: "ij"}


@lru_cache(maxsize=1)
def _width_table() -> dict[int, str]:
    table = {0x3000: " "}
    for i in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(i))
        if alt != chr(i):
            table[i] = alt
    return table


def text_cleanup_backend() -> str:
    """'ftfy' when ftfy is importable (as in VBench), else 'builtin' (see `fix_text`)."""
    try:
        import ftfy  # noqa: F401
    except ImportError:
        return "builtin"
    return "ftfy"


def fix_text(text: str) -> str:
    """`ftfy.fix_text` when ftfy is installed; otherwise the parts of it that matter for prompts:
    straight quotes for curly ones, Latin ligatures and full-width forms spelled out, NFC. (ftfy's
    mojibake repair is the one part left out.)"""
    try:
        import ftfy
    except ImportError:
        text = text.translate(_QUOTES).translate(_LIGATURES).translate(_width_table())
        return unicodedata.normalize("NFC", text)
    return ftfy.fix_text(text)


def clean_text(text: str) -> str:
    """CLIP's text cleanup before BPE: fix_text, HTML unescaped twice, whitespace runs to one space, lower case."""
    import regex

    text = html.unescape(html.unescape(fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """The BPE merges of a CLIP vocab file (`bpe_simple_vocab_16e6.txt.gz`): a header line, then
    one 'left right' pair per line; CLIP reads the first 48,894 pairs."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : NUM_MERGES + 1]
    merges = []
    for i, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"line {i} is not a BPE merge ('left right'): {line[:40]!r}")
        merges.append((parts[0], parts[1]))
    return merges


class ViCLIPTokenizer:
    """CLIP's byte-level BPE over a merges file, as ViCLIP uses it: `clean_text`, BPE, then
    <|startoftext|> ... <|endoftext|>, cut to `context_length` (the last kept token becomes
    <|endoftext|>) and zero-padded. The BPE itself runs in `transformers.CLIPTokenizer`, built from
    the same vocabulary CLIP derives from the merges (256 byte symbols, the same with '</w>',
    one token per merge, then the two specials)."""

    def __init__(self, merges_path: str | Path):
        from transformers import CLIPTokenizer

        merges = read_merges(merges_path)
        syms = list(byte_symbols().values())
        tokens = syms + [s + "</w>" for s in syms] + ["".join(m) for m in merges] + [SOT, EOT]
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.sot, self.eot = self.vocab[SOT], self.vocab[EOT]
        self._bpe = CLIPTokenizer(vocab=dict(self.vocab), merges=merges)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without the special tokens."""
        return list(self._bpe(clean_text(text), add_special_tokens=False)["input_ids"])

    def __call__(self, texts: str | list[str], context_length: int = 32) -> torch.Tensor:
        """(N, context_length) int64 ids."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot
            out[i, : len(ids)] = torch.tensor(ids)
        return out
