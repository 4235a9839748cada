"""The `toy` model family: the Wan classes at ToyWorld scale.

* transformer: `WanTransformer3DModel` (4 layers, 4 heads x 32, ffn 384) on `PixelCodec` latents
  (2x2 pixel patches of 2 frames -> 24 channels, 16x16 latents for a 32x32 frame; with the
  transformer's 2x2 patches that is 64 tokens per latent frame of 96 values each, below the
  model width, so the output projection is not a bottleneck);
* text: a 2-layer `UMT5EncoderModel` (d_model 64, frozen, its weights shipped with the package)
  and a word-level tokenizer built in code over ToyWorld's vocabulary.
"""

from __future__ import annotations

from sfpp.arch import DEBUG_TEXT
from sfpp.codec import PixelCodec, PixelCodecConfig
from sfpp.toyworld.learned_codec import LearnedCodecConfig
from sfpp.rollout_config import RolloutConfig

TOY_CODEC = PixelCodecConfig(patch=2, frames=2, upscale=8)
TOY_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=TOY_CODEC.channels,
    out_channels=TOY_CODEC.channels,
    text_dim=64,
    freq_dim=256,
    ffn_dim=384,
    num_layers=4,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=1024,
)
# ToyWorld v2 (issue #16): 5 layers of width 160 (5 heads x 32, ffn 640), about 1.8x v1's compute per
# token, for shapes that stay shapes (the bundled default, toy-v4, is this transformer on the learned codec).
TOY2_TRANSFORMER = {**TOY_TRANSFORMER, "num_attention_heads": 5, "ffn_dim": 640, "num_layers": 5}
# ToyWorld v3: v2's transformer on the latents of the learned codec (sfpp/toyworld/learned_codec.py,
# 8x8 latents of 16 channels per 2 frames, shipped in sfpp/assets/toy/codec_v3.safetensors) with patch 1:
# the same 64 tokens per latent frame. On the pixel codec no toy transformer learned shapes (docs/toyworld.md).
TOY3_CODEC_CHANNELS = LearnedCodecConfig().channels  # the shipped codec was trained with the defaults
TOY3_TRANSFORMER = {**TOY2_TRANSFORMER, "patch_size": (1, 1, 1), "in_channels": TOY3_CODEC_CHANNELS,
                    "out_channels": TOY3_CODEC_CHANNELS}
# ToyWorld v4: v3 with a text encoder whose outputs depend on word order. The frozen toy encoder's random
# weights give each word the same vector whatever surrounds it (cosine 0.999+), and Wan's cross-attention
# has no positions, so "a magenta circle and a white triangle" and "a white circle and a magenta
# triangle" condition a teacher identically (a v3 teacher draws them 0.7 grey levels apart; docs/toyworld.md).
# v4 scales the encoder's relative-position attention bias by TOY4_TEXT_BIAS_SCALE: attention then
# follows word order, and swapping two colours moves the prompt as far as changing a word does.
TOY4_TEXT_BIAS_SCALE = 30.0
# ToyWorld v4lit (issue #19's exposure experiment): v4 in the lit world, a slow global lighting cycle the
# prompt does not name (toy_lighting: the one its codec was trained on), on its own codec trained on lit
# clips (the v3 codec does not represent the light: docs/toyworld.md "Scaling", Exposure). No student ships.
TOY_ARCHS = {"v1": TOY_TRANSFORMER, "v2": TOY2_TRANSFORMER, "v3": TOY3_TRANSFORMER, "v4": TOY3_TRANSFORMER,
             "v4lit": TOY3_TRANSFORMER}
LEARNED_CODEC_ARCHS = ("v3", "v4", "v4lit")  # toy architectures on a shipped learned codec
TOY4_TEXT_ARCHS = ("v4", "v4lit")  # the word-order-aware text encoder
# the shipped learned codec of each learned-codec architecture (sfpp/assets/toy/)
TOY_CODEC_FILES = {"v3": "codec_v3.safetensors", "v4": "codec_v3.safetensors", "v4lit": "codec_lit.safetensors"}


def toy_lighting(arch: str):
    """The `Lighting` of an architecture's world (None: the unlit world): the lighting its shipped codec was
    trained on, as that codec's file records it (`train-codec --light-amplitude`), so the teacher's clips
    and the codec's never disagree. Pixel-codec architectures are unlit."""
    if toy_codec_kind(arch) == "pixel":
        return None
    from sfpp.checkpoints import read_checkpoint_config

    train = read_checkpoint_config(shipped_codec_path(arch)).get("train") or {}
    amplitude = float(train.get("light_amplitude", 0.0))  # codecs from before the option: unlit
    if amplitude <= 0:
        return None
    from sfpp.toyworld.world import Lighting

    return Lighting(amplitude, float(train["light_period_s"]))


# The debug preset's UMT5 shape, wider (the shipped text encoder weights were made with exactly this).
TOY_TEXT = {**DEBUG_TEXT, "vocab_size": 64, "d_model": 64, "d_kv": 16, "d_ff": 128}
TOY_TEXT_LEN = 24
TOY_WINDOW = 6  # latent frames = 12 pixel frames = 0.75 s: the teacher horizon K
TOY_ROLLOUT = RolloutConfig(window=TOY_WINDOW)  # otherwise Self-Forcing's settings (chunks of 3, 4 steps, shift 5)


def toy_tokenizer():
    """Word-level tokenizer over ToyWorld's vocabulary."""
    from sfpp.text import build_word_tokenizer
    from sfpp.toyworld.world import toy_vocabulary

    return build_word_tokenizer(toy_vocabulary(), TOY_TEXT_LEN)


def new_toy_transformer(seed: int = 0, arch: str = "v1"):
    import torch
    from diffusers import WanTransformer3DModel

    if arch not in TOY_ARCHS:
        from sfpp.errors import SfppError

        raise SfppError(f"unknown toy architecture {arch!r}; choose one of {', '.join(TOY_ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return WanTransformer3DModel(**TOY_ARCHS[arch])


def new_toy_text_encoder(seed: int = 0):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UMT5EncoderModel(UMT5Config(**TOY_TEXT)).eval()


def shipped_codec_path(arch: str = "v3"):
    """The shipped learned codec of a learned-codec architecture (v3 and v4 share one)."""
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "assets" / "toy" / TOY_CODEC_FILES[arch]


def toy_codec_kind(arch: str) -> str:
    """"learned" (the shipped learned codec) or "pixel", without loading anything."""
    return "learned" if arch in LEARNED_CODEC_ARCHS else "pixel"


def toy_codec(arch: str = "v1"):
    """The codec of a toy architecture: the pixel codec (v1, v2) or its shipped learned codec (v3, v4, v4lit)."""
    if toy_codec_kind(arch) == "pixel":
        return PixelCodec(TOY_CODEC)
    from sfpp.toyworld.learned_codec import load_codec

    codec = load_codec(shipped_codec_path(arch))
    if codec.channels != TOY3_CODEC_CHANNELS:
        from sfpp.errors import SfppError

        raise SfppError(f"the shipped toy-{arch} codec has {codec.channels} latent channels, the transformer "
                        f"{TOY3_CODEC_CHANNELS}; retrain it with 'sfpp toyworld train-codec --channels {TOY3_CODEC_CHANNELS}'")
    return codec


def latent_size(codec, native: int = 32) -> int:
    """Latent cells along H and W of a `native`-pixel frame."""
    return native * codec.config.upscale // codec.spatial_factor


def toy_text_encoder(arch: str = "v1"):
    """The frozen text encoder of a toy architecture: the weights shipped with the package (exactly the
    ones the bundled model was trained with), else the seeded initialisation they were made from; for v4
    with every layer's relative-position attention bias scaled by `TOY4_TEXT_BIAS_SCALE`."""
    from pathlib import Path

    import torch

    enc = new_toy_text_encoder(0)
    shipped = Path(__file__).resolve().parents[1] / "assets" / "toy" / "text_encoder.safetensors"
    if shipped.is_file():
        from safetensors.torch import load_file

        enc.load_state_dict(load_file(str(shipped)))
    if arch in TOY4_TEXT_ARCHS:
        with torch.no_grad():
            for block in enc.encoder.block:
                block.layer[0].SelfAttention.relative_attention_bias.weight.mul_(TOY4_TEXT_BIAS_SCALE)
    return enc.eval()
