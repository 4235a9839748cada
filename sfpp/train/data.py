"""Data-free training data: prompts, their embeddings (computed once, cached), and a resumable sampler."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from sfpp.prompts import epoch_indices, read_prompt_lines


def read_prompt_file(path: Path) -> list[str]:
    return read_prompt_lines(path, hint="set [data].prompts to a text file with one prompt per line")


class PromptEmbeddings:
    """Embeddings of every training prompt plus the negative prompt, ``(N, L, D)`` on CPU.

    Computed once with the text encoder and cached in ``cache_dir`` (keyed by the prompts,
    the negative prompt and the encoder identity), so the encoder can be freed for training.
    """

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor, prompts: list[str]):
        self.cond, self.uncond, self.prompts = cond, uncond, prompts

    def __len__(self) -> int:
        return self.cond.shape[0]

    @classmethod
    def build(cls, prompts: list[str], negative: str, *, cache_dir: Path, encoder_id: str, text_len: int,
              encode_fn) -> "PromptEmbeddings":
        """`encode_fn(list_of_prompts) -> (N, text_len, D)` is called only on a cache miss."""
        from safetensors.torch import load_file, save_file

        key = hashlib.sha256(json.dumps([prompts, negative, encoder_id, text_len]).encode()).hexdigest()[:16]
        path = cache_dir / f"prompt_embeds-{key}.safetensors"
        if path.is_file():
            d = load_file(str(path))
            return cls(d["cond"], d["uncond"], prompts)
        cache_dir.mkdir(parents=True, exist_ok=True)
        chunks = [encode_fn(prompts[i : i + 32]).float().cpu() for i in range(0, len(prompts), 32)]
        cond = torch.cat(chunks)
        uncond = encode_fn([negative]).float().cpu()
        tmp = path.with_name(path.name + ".tmp")
        save_file({"cond": cond.contiguous(), "uncond": uncond.contiguous()}, str(tmp))
        tmp.replace(path)
        return cls(cond, uncond, prompts)

    def indices(self, position: int, count: int, seed: int) -> list[int]:
        """`count` sample indices starting at global sample `position`: a fresh permutation per epoch."""
        return epoch_indices(len(self), position, count, seed, salt=77)
