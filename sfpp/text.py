"""Prompt encoding with UMT5, as Wan does it, and the in-code tokenizer of the `debug` preset."""

from __future__ import annotations

import html
import re

import torch

# A small English vocabulary for the debug tokenizer: enough that different prompts give
# different token ids (and so different videos), with no files and no network.
_DEBUG_WORDS = (
    "a an the and or of in on over under with at to from by into through across near "
    "red green blue yellow orange purple pink white black gray grey brown cyan magenta gold silver "
    "circle square triangle ball box star car plane bird dog cat fish boat tree house city street "
    "mountain mountains snowy snow sea ocean river lake forest sky cloud clouds sun moon night day "
    "dusk dawn rain heavy light dark bright slow fast moving bouncing flying running walking "
    "background foreground camera pan zoom two three several many small large big tiny "
    "is are it its this that same video scene view close wide shot"
).split()


def build_word_tokenizer(words, model_max_length: int = 512):
    """A word-level tokenizer built in code (T5-style: lower-cased, ``</s>`` appended); no files."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def build_debug_tokenizer(model_max_length: int = 512):
    """The `debug` preset's tokenizer over a small English vocabulary."""
    return build_word_tokenizer(_DEBUG_WORDS, model_max_length)


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning: html-unescape twice and collapse whitespace."""
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], *, max_length: int, device=None) -> torch.Tensor:
    """UMT5 embeddings ``(B, max_length, d_model)``, each row cut to its real length and zero-padded.

    This is what Wan's pipeline feeds the transformer: padded positions are zero vectors and
    cross-attention has no mask.
    """
    device = device or next(text_encoder.parameters()).device
    batch = tokenizer(
        [clean_prompt(p) for p in prompts],
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids = batch.input_ids.to(device)
    mask = batch.attention_mask.to(device)
    hidden = text_encoder(ids, mask).last_hidden_state  # (B, max_length, d_model)
    lengths = mask.gt(0).sum(dim=1)
    keep = torch.arange(max_length, device=device)[None, :] < lengths[:, None]  # (B, max_length)
    return hidden * keep[..., None].to(hidden.dtype)
