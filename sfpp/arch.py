"""Architecture facts of the model families, written once: transformer, VAE and text-encoder configs.

Plain data (diffusers / transformers config field names), no imports beyond the standard library,
so presets, converters, benchmarks and the toy model family all read the same numbers.
"""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------- Wan2.1 T2V (released checkpoints)
_WAN_COMMON = dict(patch_size=(1, 2, 2), in_channels=16, out_channels=16, freq_dim=256, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024, text_dim=4096,
                   attention_head_dim=128)
WAN_TRANSFORMERS: dict[str, dict[str, Any]] = {
    "wan2.1-t2v-1.3b": dict(_WAN_COMMON, num_attention_heads=12, ffn_dim=8960, num_layers=30),
    "wan2.1-t2v-14b": dict(_WAN_COMMON, num_attention_heads=40, ffn_dim=13824, num_layers=40),
}

# ---------------------------------------------------------------------- debug: tiny random-initialised modules
DEBUG_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=3,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=40,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=1024,
)
DEBUG_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
DEBUG_TEXT = dict(
    vocab_size=256,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)


def inner_dim(cfg: dict[str, Any]) -> int:
    return int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
