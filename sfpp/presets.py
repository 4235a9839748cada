"""Model presets: the registry behind `--model`, and loading of their components.

A preset names the model classes, where their weights come from and the defaults that go with
them: resolution, fps, text length and the `RolloutConfig` (chunking, few-step schedule, KV
window, RoPE policy). A student checkpoint's own rollout settings take precedence over the
preset's (`sfpp.rollout_config.resolve_rollout`).

* ``wan2.1-t2v-1.3b`` / ``wan2.1-t2v-14b``: a local diffusers-layout folder
  (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``), e.g. a copy of
  Wan-AI/Wan2.1-T2V-1.3B-Diffusers, given by ``--weights DIR`` or ``SFPP_WEIGHTS``.
  Nothing is ever downloaded.
* ``toy``: the ToyWorld model trained by sfpp itself, shipped inside the package.
* ``debug``: tiny random-initialised instances of the same classes
  (`WanTransformer3DModel`, `AutoencoderKLWan`, `UMT5EncoderModel`) and a tokenizer
  built in code; deterministic (seeded), used by tests and dry runs.

Importing this module does not import torch (the CLI's ``--help`` reads the registry).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from sfpp.codec import WanVaeCodec
from sfpp.arch import DEBUG_TEXT, DEBUG_TRANSFORMER, DEBUG_VAE, WAN_TRANSFORMERS
from sfpp.errors import SfppError
from sfpp.rollout_config import RolloutConfig

WEIGHTS_ENV = "SFPP_WEIGHTS"
TOY_ASSETS = Path(__file__).resolve().parent / "assets" / "toy"
# toy architecture -> its student shipped in TOY_ASSETS (v4: the Self-Forcing++ student of issue #16)
TOY_BUNDLED_STUDENTS = {"v1": "student.safetensors", "v4": "student_v4.safetensors"}


@dataclass(frozen=True, kw_only=True)
class ModelPreset:
    """Everything `generate`/`rollout` need to know about a model family by default."""

    name: str
    description: str
    source: str  # "build" (constructed in code) or "diffusers" (local folder)
    height: int
    width: int
    fps: int = 16
    text_len: int = 512
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    threads: int | None = None  # torch CPU threads by default (None: torch's own default)
    expected: dict[str, Any] = field(default_factory=dict)  # transformer config fields to sanity-check
    build: Callable[[], "Components"] | None = None
    codec: Any = field(default_factory=WanVaeCodec)  # frame/pixel arithmetic (no weights needed)
    arch: dict[str, Any] = field(default_factory=dict)  # transformer config of presets built in code
    bundled_student: Path | None = None  # a student shipped with the package (its config is obeyed)
    # Built in code with no trained weights shipped: generating needs --checkpoint (random weights would
    # make noise that looks like a result). Benchmarks (need_weights=False) still run it.
    needs_checkpoint: bool = False


@dataclass
class Components:
    """Loaded modules of one model: plain torch modules, nothing wrapped."""

    transformer: Any  # diffusers WanTransformer3DModel
    vae: Any  # diffusers AutoencoderKLWan
    text_encoder: Any  # transformers UMT5EncoderModel
    tokenizer: Any
    source: str  # where the weights came from (a path, or "built in code")
    codec: Any = None  # pixels <-> latents; default: Wan's VAE (`vae`)

    def __post_init__(self) -> None:
        if self.codec is None:
            self.codec = WanVaeCodec(self.vae)

    def to(self, device, dtype=None) -> "Components":
        import torch

        self.transformer.to(device)
        if dtype is not None and dtype != torch.float32:
            _cast_keep_fp32(self.transformer, dtype)
        self.codec.to(device)
        if self.text_encoder is not None:
            self.text_encoder.to(device)
        return self


def _cast_keep_fp32(transformer, dtype) -> None:
    """Cast to `dtype` except the modules Wan keeps in float32 (and the RoPE tables)."""
    keep = tuple(getattr(transformer, "_keep_in_fp32_modules", None) or ())
    for name, module in transformer.named_modules():
        if any(part in keep for part in name.split(".")):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.is_floating_point():
                p.data = p.data.to(dtype)
    for pname, p in transformer.named_parameters():
        if pname.split(".")[-1] == "scale_shift_table":
            p.data = p.data.float()


# ---------------------------------------------------------------------- debug preset
def build_debug_components(seed: int = 0) -> Components:
    """Tiny random-initialised Wan-class modules (deterministic for a given seed)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    import torch

    from sfpp.text import build_debug_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**DEBUG_TRANSFORMER)
        vae = AutoencoderKLWan(**DEBUG_VAE)
        text_encoder = UMT5EncoderModel(UMT5Config(**DEBUG_TEXT))
    return Components(
        transformer=transformer.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=build_debug_tokenizer(),
        source="debug (random init, seed 0)",
    )


# ---------------------------------------------------------------------- toy preset (ToyWorld)

def build_toy_components(arch: str = "v1") -> Components:
    """The bundled ToyWorld model: trained student + frozen text encoder shipped in the package.

    Without the bundled student (a source checkout before training) the transformer is
    random-initialised, which is what training starts from.
    """
    from sfpp.checkpoints import load_into, read_checkpoint
    from sfpp.toyworld.model import new_toy_transformer, toy_codec, toy_text_encoder, toy_tokenizer

    transformer = new_toy_transformer(0, arch)
    name = "toy" if arch == "v1" else f"toy-{arch}"
    student = TOY_ASSETS / TOY_BUNDLED_STUDENTS[arch] if arch in TOY_BUNDLED_STUDENTS else None
    source = f"{name} (random init: no bundled student)"
    if student is not None and student.is_file():
        state, _ = read_checkpoint(student)
        load_into(transformer, {k: v.float() for k, v in state.items()}, source=str(student))
        source = f"{name} (bundled {student.name})"
    text_encoder = toy_text_encoder(arch)  # the exact frozen encoder the bundled model was trained with
    return Components(transformer.eval(), None, text_encoder.eval(), toy_tokenizer(), source=source,
                      codec=toy_codec(arch))  # v3, v4: the shipped learned codec


def bundled_files(preset: ModelPreset) -> dict[str, Path]:
    """Role -> weight file shipped in the package that a built-in preset loads (the toy model's)."""
    if not preset.name.startswith("toy"):
        return {}
    files = {"text_encoder": TOY_ASSETS / "text_encoder.safetensors"}
    from sfpp.toyworld.model import LEARNED_CODEC_ARCHS

    if _toy_arch(preset) in LEARNED_CODEC_ARCHS:
        from sfpp.toyworld.model import shipped_codec_path

        files["codec"] = shipped_codec_path(_toy_arch(preset))
    if preset.bundled_student is not None:
        files["student"] = preset.bundled_student
    return {k: v for k, v in files.items() if v.is_file()}


# ---------------------------------------------------------------------- diffusers folders
_WEIGHT_FILES = {
    "transformer": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                    "diffusion_pytorch_model.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
            "diffusion_pytorch_model.bin"),
    "text_encoder": ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"),
}
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")


def check_diffusers_folder(root: Path) -> None:
    """Raise one error listing every missing part of a diffusers-layout Wan folder."""
    if not root.exists():
        raise SfppError(f"weights folder {root} does not exist; pass --weights DIR or set {WEIGHTS_ENV}")
    if not root.is_dir():
        raise SfppError(f"weights path {root} is not a folder; pass a diffusers-layout folder with --weights")
    missing = []
    for sub, names in _WEIGHT_FILES.items():
        d = root / sub
        if not (d / "config.json").is_file():
            missing.append(f"{sub}/config.json")
        if not any((d / n).is_file() for n in names):
            missing.append(f"{sub}/{names[0]}")
    tok = root / "tokenizer"
    if not any((tok / n).is_file() for n in _TOKENIZER_FILES):
        missing.append("tokenizer/ (tokenizer.json or spiece.model)")
    if missing:
        raise SfppError(f"weights folder {root} is incomplete, missing: {', '.join(missing)}")


def load_diffusers_components(root: Path, *, dtype=None) -> Components:
    """Load the four Wan components from a local diffusers-layout folder (never the Hub)."""
    import torch

    dtype = dtype or torch.float32
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check_diffusers_folder(root)
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    try:
        transformer = WanTransformer3DModel.from_pretrained(root, subfolder="transformer", torch_dtype=dtype)
        vae = AutoencoderKLWan.from_pretrained(root, subfolder="vae", torch_dtype=torch.float32)
        text_encoder = UMT5EncoderModel.from_pretrained(root / "text_encoder", torch_dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SfppError(f"could not load weights from {root}: {first}") from None
    return Components(transformer.eval(), vae.eval(), text_encoder.eval(), tokenizer, source=str(root))


def diffusers_weight_files(root: Path) -> dict[str, Path]:
    """``sub/name`` -> weight file of a diffusers-layout folder (transformer, VAE, text encoder)."""
    files = {}
    for sub, names in _WEIGHT_FILES.items():
        found = sorted((root / sub).glob("*.safetensors")) or [root / sub / n for n in names
                                                               if (root / sub / n).is_file()]
        for f in found:
            files[f"{sub}/{f.name}"] = f
    return files


# ---------------------------------------------------------------------- registry
def _toy_preset() -> ModelPreset:
    from sfpp.toyworld.model import TOY_ROLLOUT, TOY_TEXT_LEN, TOY_TRANSFORMER, toy_codec

    return ModelPreset(
        name="toy",
        description="the first ToyWorld model (bundled; pixel codec; 32x32 native, upscaled to 256x256; "
                    "blobs rather than shapes: the default is toy-v4)",
        source="build",
        height=256,
        width=256,
        fps=16,
        rollout=TOY_ROLLOUT,
        threads=1,  # a tiny model: one torch thread is fastest (and several times faster on a busy machine)
        text_len=TOY_TEXT_LEN,
        build=build_toy_components,
        codec=toy_codec(),
        arch=dict(TOY_TRANSFORMER),
        bundled_student=TOY_ASSETS / TOY_BUNDLED_STUDENTS["v1"],
    )


def _toy_arch(preset: ModelPreset) -> str:
    """Toy architecture of a toy preset: "toy" -> v1, "toy-v2" -> v2, ..."""
    return "v1" if preset.name == "toy" else preset.name.removeprefix("toy-")


def _toy_v3_preset() -> ModelPreset:
    from sfpp.toyworld.learned_codec import LearnedCodec, LearnedCodecConfig
    from sfpp.toyworld.model import TOY3_CODEC_CHANNELS, TOY3_TRANSFORMER

    return replace(_toy_preset(), name="toy-v3", arch=dict(TOY3_TRANSFORMER), bundled_student=None,
                   needs_checkpoint=True,
                   codec=LearnedCodec(LearnedCodecConfig(channels=TOY3_CODEC_CHANNELS)),  # frame arithmetic only
                   description="ToyWorld v3: the v2 transformer on a learned codec (no trained student shipped yet; "
                               "generate with --checkpoint)",
                   build=lambda: build_toy_components("v3"))


def _toy_v4_preset() -> ModelPreset:
    student = TOY_ASSETS / TOY_BUNDLED_STUDENTS["v4"]
    return replace(_toy_v3_preset(), name="toy-v4", bundled_student=student, needs_checkpoint=not student.is_file(),
                   description="ToyWorld v4, the default model (bundled): a Self-Forcing++ student on a learned codec "
                               "with a word-order-aware text encoder; 32x32 native, upscaled to 256x256",
                   build=lambda: build_toy_components("v4"))


def _toy_v4lit_preset() -> ModelPreset:
    return replace(_toy_v3_preset(), name="toy-v4lit",
                   description="ToyWorld v4 in the lit world (a slow global lighting cycle; its own codec): for "
                               "the exposure experiment (no trained student shipped; generate with --checkpoint)",
                   build=lambda: build_toy_components("v4lit"))


def _toy_v2_preset() -> ModelPreset:
    from sfpp.toyworld.model import TOY2_TRANSFORMER

    return replace(_toy_preset(), name="toy-v2", arch=dict(TOY2_TRANSFORMER), bundled_student=None,
                   needs_checkpoint=True,
                   description="ToyWorld v2 architecture (no trained weights shipped yet; generate with --checkpoint)",
                   build=lambda: build_toy_components("v2"))


PRESETS: dict[str, ModelPreset] = {
    "toy": _toy_preset(),
    "toy-v2": _toy_v2_preset(),
    "toy-v3": _toy_v3_preset(),
    "toy-v4": _toy_v4_preset(),
    "toy-v4lit": _toy_v4lit_preset(),
    "debug": ModelPreset(
        name="debug",
        description="tiny random-initialised Wan-class model for tests and dry runs",
        source="build",
        height=64,
        width=64,
        fps=16,
        rollout=RolloutConfig(window=9),
        threads=1,
        text_len=24,
        build=build_debug_components,
        arch=dict(DEBUG_TRANSFORMER),
    ),
    "wan2.1-t2v-1.3b": ModelPreset(
        name="wan2.1-t2v-1.3b",
        description="Wan2.1-T2V-1.3B (diffusers layout, local folder)",
        source="diffusers",
        height=480,
        width=832,
        expected={"num_layers": 30, "num_attention_heads": 12},
    ),
    "wan2.1-t2v-14b": ModelPreset(
        name="wan2.1-t2v-14b",
        description="Wan2.1-T2V-14B (diffusers layout, local folder)",
        source="diffusers",
        height=480,
        width=832,
        expected={"num_layers": 40, "num_attention_heads": 40},
    ),
}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise SfppError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_weights_dir(weights: str | os.PathLike | None) -> Path:
    w = weights or os.environ.get(WEIGHTS_ENV)
    if not w:
        raise SfppError(f"this model needs its weights: pass --weights DIR (a diffusers-layout folder) or set {WEIGHTS_ENV}")
    return Path(w).expanduser()


def size_multiples(preset: str | ModelPreset, tcfg: dict[str, Any] | None = None) -> tuple[int, int]:
    """Pixel (height, width) multiples a video of `preset` must have: the codec's spatial factor times
    the transformer's spatial patch (`tcfg`, default the preset's own config; Wan's patch is 2)."""
    p = preset if isinstance(preset, ModelPreset) else get_preset(preset)
    patch = tuple((tcfg if tcfg is not None else transformer_config(p)).get("patch_size", (1, 2, 2)))
    return p.codec.spatial_factor * int(patch[1]), p.codec.spatial_factor * int(patch[2])


def transformer_config(preset: str | ModelPreset, weights: str | os.PathLike | None = None, *,
                       need_weights: bool = False) -> dict[str, Any]:
    """The preset's `WanTransformer3DModel` config, without loading weights.

    Presets built in code: their architecture. Diffusers presets: ``weights/transformer/config.json``
    when a weights folder is given (``--weights`` or ``SFPP_WEIGHTS``; with ``need_weights`` the folder
    is required and checked), else the released checkpoint's config (`sfpp.arch.WAN_TRANSFORMERS`).
    """
    p = preset if isinstance(preset, ModelPreset) else get_preset(preset)
    if p.source == "build":
        return dict(p.arch)
    if need_weights or weights is not None:
        root = resolve_weights_dir(weights)
        if need_weights:
            check_diffusers_folder(root)
        cfg_file = root / "transformer" / "config.json"
        try:
            data = json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError):
            raise SfppError(f"{cfg_file} is missing or not valid JSON; give a diffusers-layout --weights folder") from None
        return {k: v for k, v in data.items() if not k.startswith("_")}
    return dict(WAN_TRANSFORMERS[p.name])


def load_components(preset: ModelPreset, *, weights: str | os.PathLike | None = None, dtype=None) -> Components:
    """Build or load the preset's modules on CPU (the caller moves them to a device)."""
    if preset.source == "build":
        assert preset.build is not None
        return preset.build()
    return load_diffusers_components(resolve_weights_dir(weights), dtype=dtype)


# ---------------------------------------------------------------------- random full-size models (benchmarks)
def build_random_components(name: str, *, device="cpu", dtype=None, seed: int = 0) -> Components:
    """A random-initialised transformer and codec of a preset's full size, built on `device`.

    Costs the same to run as the real weights, so speed can be measured without them. There is
    no text encoder (``text_encoder``/``tokenizer`` are None): callers feed random text
    embeddings of shape ``(B, text_len, text_dim)``. ``dtype`` other than float32 casts the
    transformer except the modules Wan keeps in float32 (`_keep_in_fp32_modules`, as
    ``from_pretrained(torch_dtype=...)`` does); the VAE stays float32, as in `load_model`.
    """
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    preset = get_preset(name)
    cfg = transformer_config(preset)
    vae, codec = None, None
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**cfg)
        if preset.name.startswith("toy"):
            from sfpp.toyworld.model import toy_codec

            codec = toy_codec(_toy_arch(preset))  # the pixel codec, or the shipped learned codec (v3, v4)
        elif not isinstance(preset.codec, WanVaeCodec):
            codec = preset.codec  # a codec without weights
        else:  # Wan's VAE: the debug preset's tiny one, diffusers' defaults (= Wan2.1's VAE) for Wan
            vae = AutoencoderKLWan(**(DEBUG_VAE if preset.source == "build" else {}))
    if dtype is not None and dtype != torch.float32:
        _cast_keep_fp32(transformer, dtype)
    return Components(transformer.eval(), None if vae is None else vae.eval(), None, None,
                      source=f"{preset.name} config, random init (seed {seed}), no weights", codec=codec)
