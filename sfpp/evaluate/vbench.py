"""VBench dimensions computed with VBench's networks, loaded only from local files.

`--weights-dir DIR` follows VBench's cache layout (`~/.cache/vbench`, VBench's own file names) for
every network except OpenAI CLIP, which sfpp reads as Hugging Face folders:

    DIR/dino_model/dino_vitbase16_pretrain.pth                  (DINO ViT-B/16, VBench's file;
        or the Hugging Face folder DIR/dino_model/dino-vitb16/  facebook/dino-vitb16, same network)
    DIR/clip_model/clip-vit-base-patch32/       openai/clip-vit-base-patch32    (CLIPModel + tokenizer)
    DIR/clip_model/clip-vit-large-patch14/      openai/clip-vit-large-patch14   (CLIPModel)
    DIR/aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth   (LAION head, VBench's file)
    DIR/raft_model/models/raft-things.pth                       (RAFT, VBench's file from the RAFT authors)
    DIR/pyiqa_model/musiq_spaq_ckpt-358bb6af.pth                (MUSIQ, VBench's file)
    DIR/amt_model/amt-s.pth                                     (AMT-S, VBench's file; CC BY-NC-SA 4.0)
    DIR/ViCLIP/ViClip-InternVid-10M-FLT.pth                     (ViCLIP ViT-L/14, VBench's file; MIT)
    DIR/ViCLIP/bpe_simple_vocab_16e6.txt.gz                     (CLIP's BPE vocabulary, for ViCLIP's text)

Frame sampling, thresholds, formulas and preprocessing follow VBench (`vbench/*.py`) metric by
metric, including the dtype VBench resizes in (float for the per-frame metrics, uint8 for the
8-frame text metrics); docs/evaluate_vbench.md tabulates it. Frames are `(F, H, W, 3)` uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sfpp.errors import SfppError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DINO_FILE = "dino_model/dino_vitbase16_pretrain.pth"
DINO_DIR = "dino_model/dino-vitb16"
CLIP_B32_DIR = "clip_model/clip-vit-base-patch32"
CLIP_L14_DIR = "clip_model/clip-vit-large-patch14"
AESTHETIC_HEAD = "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"
RAFT_FILE = "raft_model/models/raft-things.pth"
MUSIQ_FILE = "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth"
AMT_FILE = "amt_model/amt-s.pth"
VICLIP_FILE = "ViCLIP/ViClip-InternVid-10M-FLT.pth"
VICLIP_VOCAB = "ViCLIP/bpe_simple_vocab_16e6.txt.gz"
TORCHVISION_RAFT_FILE = "raft_model/raft_large_C_T_SKHT_V2-ff5fadd5.pth"  # not VBench's: refused with a hint

_HF_DOWNLOAD = {
    DINO_FILE: "wget -P DIR/dino_model https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    CLIP_B32_DIR: "hf download openai/clip-vit-base-patch32 --local-dir DIR/" + CLIP_B32_DIR,
    CLIP_L14_DIR: "hf download openai/clip-vit-large-patch14 --local-dir DIR/" + CLIP_L14_DIR,
    RAFT_FILE: "wget https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip && unzip models.zip -d DIR/raft_model",
    AMT_FILE: "hf download lalala125/AMT amt-s.pth --local-dir DIR/amt_model",
    VICLIP_FILE: "hf download OpenGVLab/VBench_Used_Models ViClip-InternVid-10M-FLT.pth --local-dir DIR/ViCLIP",
    VICLIP_VOCAB: "hf download OpenGVLab/ViCLIP-L-14-hf bpe_simple_vocab_16e6.txt.gz --local-dir DIR/ViCLIP",
}

# Which weight files each VBench metric needs; a tuple inside lists alternatives (the first is VBench's).
METRIC_FILES: dict[str, tuple] = {
    "subject_consistency": ((DINO_FILE, DINO_DIR),),
    "background_consistency": (CLIP_B32_DIR,),
    "overall_consistency": (VICLIP_FILE, VICLIP_VOCAB),
    "clip_score": (CLIP_B32_DIR,),
    "aesthetic_quality": (CLIP_L14_DIR, AESTHETIC_HEAD),
    "dynamic_degree": (RAFT_FILE,),
    "imaging_quality": (MUSIQ_FILE,),
    "motion_smoothness": (AMT_FILE,),
}


def _missing_entries(root: Path, entry) -> list[str]:
    if isinstance(entry, tuple):  # alternatives: fine if any one is complete
        found = [_missing_entries(root, e) for e in entry]
        if any(not m for m in found):
            return []
        return [f"{found[0][0]} (or the Hugging Face folder {entry[1]}/)"]
    p = root / entry
    if entry.endswith((".pth", ".pt", ".gz")):
        return [] if p.is_file() else [entry]
    missing = []
    if not (p / "config.json").is_file():
        missing.append(f"{entry}/config.json")
    if not any((p / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")) and not list(
        p.glob("model-*.safetensors")
    ):
        missing.append(f"{entry}/model.safetensors")
    if entry == CLIP_B32_DIR and not ((p / "tokenizer.json").is_file() or (p / "vocab.json").is_file()):
        missing.append(f"{entry}/tokenizer.json (or vocab.json + merges.txt)")
    return missing


def check_weights(weights_dir: Path | None, metrics: list[str]) -> None:
    """Raise one `SfppError` listing every file the requested VBench metrics lack."""
    if not metrics:
        return
    if weights_dir is None:
        raise SfppError(
            f"VBench metrics ({', '.join(metrics)}) need local weights: pass --weights-dir DIR "
            "(layout in 'sfpp evaluate --help'), or use the offline *_proxy metrics"
        )
    root = Path(weights_dir)
    if not root.is_dir():
        raise SfppError(f"--weights-dir {root} does not exist; point it at your VBench weights folder")
    missing: list[str] = []
    for m in metrics:
        for entry in METRIC_FILES[m]:
            for item in _missing_entries(root, entry):
                if item not in missing:
                    missing.append(item)
    if missing:
        hints = sorted({_HF_DOWNLOAD[e] for e in _HF_DOWNLOAD if any(x.startswith(e) for x in missing)})
        fix = f"; fetch with: {' ; '.join(hints)}" if hints else ""
        if RAFT_FILE in missing and (root / TORCHVISION_RAFT_FILE).is_file():
            fix += (f" ({TORCHVISION_RAFT_FILE} is torchvision's RAFT, trained differently from the "
                    "raft-things.pth VBench uses, so it is not read)")
        raise SfppError(f"--weights-dir {root} is missing: {', '.join(missing)}{fix}")


# ---- frame transforms (vbench/utils.py) --------------------------------------------------------
def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (F, 3, H, W), 0-255


def _resize_short(x: torch.Tensor, size: int, mode: str, *, uint8: bool) -> torch.Tensor:
    """torchvision `Resize(size, antialias=False)` on a (F, 3, H, W) tensor of 0-255 values: short
    side to `size`, long side `int(size * long / short)`.

    `uint8` says which tensor VBench resizes: torchvision resizes a uint8 tensor in float, then
    clamps (bicubic) and rounds it back to uint8; a float32 tensor (what VBench's `load_video`
    returns) is neither rounded nor clamped, so bicubic overshoot at sharp edges survives.
    """
    h, w = x.shape[-2:]
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    if (nh, nw) == (h, w):  # torchvision returns the input unchanged
        return x
    x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=False)
    return x.clamp(0, 255).round() if uint8 else x


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def clip_transform(frames: np.ndarray, size: int = 224, *, uint8: bool) -> torch.Tensor:
    """VBench `clip_transform(size)`: bicubic short side -> size (no antialias), centre crop, /255,
    CLIP mean/std. `uint8=True` where VBench feeds it uint8 frames (the decord reader of the 8-frame
    text metrics), `False` where it feeds `load_video`'s float32 frames (background, aesthetic)."""
    x = _center_crop(_resize_short(_to_tensor(frames), size, "bicubic", uint8=uint8), size)
    return _normalize(x / 255.0, CLIP_MEAN, CLIP_STD)


def dino_transform(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench `dino_transform(size)` on `load_video`'s float32 frames: bilinear short side -> size
    (no antialias, no crop, no rounding), /255, ImageNet mean/std."""
    x = _resize_short(_to_tensor(frames), size, "bilinear", uint8=False)
    return _normalize(x / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def middle_frame_indices(num_frames: int, vlen: int) -> list[int]:
    """VBench `get_frame_indices(..., sample="middle")`: middle frame of `num_frames` equal intervals;
    a clip of fewer frames takes each frame once and repeats its last one up to `num_frames`."""
    if vlen < 1:
        raise ValueError("no frames to sample from")
    n = min(num_frames, vlen)
    edges = np.linspace(0, vlen, n + 1).astype(int)
    idx = [int((edges[i] + edges[i + 1] - 1) // 2) for i in range(n)]
    return idx + [idx[-1]] * (num_frames - n)


def consistency_score(feats: torch.Tensor) -> float:
    """VBench subject/background: mean over i>=1 of (max(0,cos(f_{i-1},f_i)) + max(0,cos(f_0,f_i)))/2."""
    if feats.shape[0] < 2:
        return float("nan")
    f = F.normalize(feats.float(), dim=-1)
    prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0)
    first = (f[1:] * f[0:1]).sum(-1).clamp(min=0)
    return float(((prev + first) / 2).mean())


def _features(out) -> torch.Tensor:
    """`get_image_features` returns a tensor (transformers 4) or an output with pooler_output (5)."""
    return out if torch.is_tensor(out) else out.pooler_output


@dataclass
class VBenchModels:
    """Lazily loaded VBench networks from a local weights folder."""

    weights_dir: Path
    device: str = "cpu"
    batch_size: int = 32
    amt_batch: int = 1  # frame pairs per AMT-S call; 1 = VBench's calls, bit for bit on CPU

    def __post_init__(self):
        self.weights_dir = Path(self.weights_dir)
        self._loaded: dict[str, object] = {}
        self._viclip_text: dict[str, torch.Tensor] = {}  # prompt -> text embedding (VBench caches them too)

    def _get(self, key: str, loader):
        if key not in self._loaded:
            self._loaded[key] = loader()
        return self._loaded[key]

    def _hf(self, cls, sub: str, **kw):
        try:
            m = cls.from_pretrained(str(self.weights_dir / sub), local_files_only=True, **kw)
        except (OSError, ValueError) as e:
            raise SfppError(f"cannot load {self.weights_dir / sub}: {str(e).splitlines()[0]}; re-download that folder") from None
        return m.to(self.device).eval()

    def dino(self):
        """DINO ViT from VBench's `dino_vitbase16_pretrain.pth`, else from the Hugging Face folder."""

        def load():
            from sfpp.evaluate.dino import DinoConfig, DinoViT, checkpoint_state_dict, state_dict_from_hf

            if (self.weights_dir / DINO_FILE).is_file():
                path, obj, fetch = self._safe_load(DINO_FILE)
                heads, what = None, f"{path} is not a DINO ViT checkpoint"
                try:
                    sd = checkpoint_state_dict(obj)
                except TypeError as e:
                    raise SfppError(f"{what} ({e}); {fetch}") from None
            else:
                from transformers import ViTModel

                hf = self._hf(ViTModel, DINO_DIR, add_pooling_layer=False)
                heads, what = int(hf.config.num_attention_heads), f"{self.weights_dir / DINO_DIR} is not a DINO ViT"
                try:
                    sd = state_dict_from_hf(hf.state_dict())
                except KeyError as e:
                    raise SfppError(f"{what} (no {e.args[0]})") from None
            try:
                model = DinoViT(DinoConfig.from_state_dict(sd, heads=heads))
            except (KeyError, IndexError, ValueError) as e:
                raise SfppError(f"{what} ({f'no {e.args[0]}' if isinstance(e, KeyError) else e})") from None
            problem = _state_dict_mismatch(model, sd, extract=lambda o: o)
            if problem:
                raise SfppError(f"{what} ({problem})")
            model.load_state_dict(sd, strict=True)
            return model.to(self.device).eval()

        return self._get("dino", load)

    def clip_b32(self):
        from transformers import CLIPModel

        return self._get("clip_b32", lambda: self._hf(CLIPModel, CLIP_B32_DIR))

    def clip_b32_tokenizer(self):
        from transformers import AutoTokenizer

        return self._get(
            "clip_b32_tok", lambda: AutoTokenizer.from_pretrained(str(self.weights_dir / CLIP_B32_DIR), local_files_only=True)
        )

    def clip_l14(self):
        from transformers import CLIPModel

        return self._get("clip_l14", lambda: self._hf(CLIPModel, CLIP_L14_DIR))

    def aesthetic_head(self) -> torch.nn.Linear:
        def load():
            sd = torch.load(self.weights_dir / AESTHETIC_HEAD, map_location="cpu", weights_only=True)
            if not isinstance(sd, dict) or "weight" not in sd or "bias" not in sd:
                raise SfppError(f"{AESTHETIC_HEAD} is not an nn.Linear state dict; re-download it from LAION-AI/aesthetic-predictor")
            out_f, in_f = sd["weight"].shape
            head = torch.nn.Linear(in_f, out_f)
            head.load_state_dict(sd)
            return head.to(self.device).eval()

        return self._get("aesthetic_head", load)

    def raft(self):
        """RAFT-large from VBench's `raft_model/models/raft-things.pth` (the RAFT authors' weights)."""

        def load():
            from sfpp.evaluate.raft import RAFT, checkpoint_state_dict

            path, obj, fetch = self._safe_load(RAFT_FILE)
            model = RAFT()
            # files saved before BatchNorm counted its batches lack these counters (unused in eval)
            counters = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}

            def extract(o):
                return {**counters, **checkpoint_state_dict(o)}

            problem = _state_dict_mismatch(model, obj, extract=extract)
            if problem:
                raise SfppError(f"{path} is not RAFT's raft-things.pth ({problem}); {fetch}")
            model.load_state_dict(extract(obj), strict=True)
            return model.to(self.device).eval()

        return self._get("raft", load)

    def musiq(self):
        def load():
            try:
                from pyiqa.archs.musiq_arch import MUSIQ
            except Exception as e:  # noqa: BLE001 - pyiqa pulls torchvision, which may fail to import
                raise SfppError(
                    f"imaging_quality needs pyiqa (MUSIQ; PolyForm Noncommercial licence), which failed to import "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); run: pip install 'sfpp[musiq]' "
                    "with a torchvision that matches your torch"
                ) from None
            # Built without pyiqa's own loader (which unpickles with weights_only=False): the
            # SPAQ checkpoint is a plain state dict, read here with weights_only=True.
            model = MUSIQ(pretrained=False)  # SPAQ: one MOS output (num_class=1), pyiqa's default shape
            path = self.weights_dir / MUSIQ_FILE
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - pickle errors vary
                raise SfppError(f"cannot read {path} ({type(e).__name__}); re-download VBench's MUSIQ file") from None
            if isinstance(sd, dict) and isinstance(sd.get("params"), dict):
                sd = sd["params"]
            sd = {k.removeprefix("module."): v for k, v in sd.items()}
            try:
                model.load_state_dict(sd)
            except RuntimeError as e:
                raise SfppError(f"{path} is not a MUSIQ checkpoint: {str(e).splitlines()[0]}") from None
            return model.to(self.device).eval()

        return self._get("musiq", load)

    def _safe_load(self, rel: str, *, tensors_key: str | None = None):
        """``(path, object, fetch hint)`` of a VBench weight file read with ``weights_only=True``;
        a missing or unreadable file is one clear error naming how to fetch it."""
        path = self.weights_dir / rel
        fetch = f"fetch it with: {_HF_DOWNLOAD[rel].replace('DIR', str(self.weights_dir))}"
        if rel == RAFT_FILE and (self.weights_dir / TORCHVISION_RAFT_FILE).is_file():
            fetch += f" ({TORCHVISION_RAFT_FILE} is torchvision's RAFT, not the weights VBench uses)"
        if not path.is_file():
            raise SfppError(f"{path} is missing; {fetch}")
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True), fetch
        except Exception as e:  # noqa: BLE001 - pickle errors vary
            reason = _load_error(e)
            what = f"just its '{tensors_key}' tensors" if tensors_key else "just its tensors"
            fix = (f"re-save {what} with torch.save, from a copy you trust"
                   if "weights_only=True refuses" in reason else f"re-download it ({fetch})")
            raise SfppError(f"cannot read {path} ({reason}); {fix}") from None

    def amt(self):
        def load():
            from sfpp.evaluate.amt import AMTS, checkpoint_state_dict

            path, obj, fetch = self._safe_load(AMT_FILE)
            model = AMTS()
            problem = _state_dict_mismatch(model, obj)
            if problem:
                raise SfppError(f"{path} is not an AMT-S checkpoint ({problem}); {fetch}")
            model.load_state_dict(checkpoint_state_dict(obj), strict=True)
            return model.to(self.device).eval()

        return self._get("amt", load)

    def viclip(self):
        def load():
            from sfpp.evaluate.viclip import ViCLIP, ViCLIPConfig, checkpoint_state_dict

            path, obj, fetch = self._safe_load(VICLIP_FILE, tensors_key="model")
            try:
                sd = checkpoint_state_dict(obj)
                config = ViCLIPConfig.from_state_dict(sd)
                with torch.device("meta"):  # no random init of 430 M parameters: the file fills them
                    model = ViCLIP(config)
            except (TypeError, KeyError, IndexError, ValueError, AttributeError) as e:
                what = f"no {e.args[0]}" if isinstance(e, KeyError) else str(e).splitlines()[0]
                raise SfppError(f"{path} is not a ViCLIP checkpoint ({what}); {fetch}") from None
            problem = _state_dict_mismatch(model, sd, extract=lambda o: o)
            if problem:
                raise SfppError(f"{path} is not a ViCLIP checkpoint ({problem}); {fetch}")
            model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
            return model.to(self.device).eval()

        return self._get("viclip", load)

    def viclip_tokenizer(self):
        def load():
            from sfpp.evaluate.viclip import ViCLIPTokenizer

            path = self.weights_dir / VICLIP_VOCAB
            fetch = f"fetch it with: {_HF_DOWNLOAD[VICLIP_VOCAB].replace('DIR', str(self.weights_dir))}"
            if not path.is_file():
                raise SfppError(f"{path} is missing; {fetch}")
            try:
                return ViCLIPTokenizer(path)
            except (OSError, EOFError, UnicodeDecodeError, ValueError) as e:
                raise SfppError(f"{path} is not CLIP's BPE vocabulary ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); {fetch}") from None

        return self._get("viclip_tok", load)

    def viclip_token_ids(self, prompt: str) -> torch.Tensor:
        """(1, context_length) ids of `prompt` as ViCLIP reads it (truncated like VBench)."""
        model, tok = self.viclip(), self.viclip_tokenizer()
        if len(tok) != model.config.vocab_size:
            raise SfppError(
                f"{VICLIP_VOCAB} has {len(tok)} tokens but {VICLIP_FILE} embeds {model.config.vocab_size}; "
                "use CLIP's bpe_simple_vocab_16e6.txt.gz"
            )
        return tok(prompt, model.config.context_length)

    @torch.no_grad()
    def viclip_text_features(self, prompt: str) -> torch.Tensor:
        """(1, D) ViCLIP text embedding (not normalised), cached per prompt."""
        if prompt not in self._viclip_text:
            ids = self.viclip_token_ids(prompt).to(self.device)
            self._viclip_text[prompt] = self.viclip().encode_text(ids).float().cpu()
        return self._viclip_text[prompt]

    @torch.no_grad()
    def viclip_video_features(self, frames: np.ndarray) -> torch.Tensor:
        """(1, D) ViCLIP embedding (not normalised) of the sampled frames (T, H, W, 3), CLIP-transformed."""
        model = self.viclip()
        # VBench reads these frames with decord as uint8 (read_frames_decord_by_fps): resized in uint8
        x = clip_transform(frames, model.config.image_size, uint8=True).unsqueeze(0).to(self.device)
        return model.encode_vision(x).float().cpu()

    @torch.no_grad()
    def amt_midpoints(self, frames: np.ndarray) -> np.ndarray:
        """AMT-S frame at t=0.5 between each pair of consecutive frames: (N, H, W, 3) -> (N-1, H, W, 3) uint8.

        As VBench's motion_smoothness: frames /255, replicate-padded (centred) to a multiple of
        16, interpolated, cropped back, x255 and truncated to uint8. On CUDA, VBench shrinks the
        network's input by a factor that depends on the frame size and the GPU memory (1 for
        video-sized frames on large GPUs), padding to int(16/scale); that rule is kept.
        """
        model = self.amt()
        n, h, w = frames.shape[:3]
        scale = amt_scale(h, w, self.device)
        div = int(16 / scale)
        ph, pw = (-h) % div, (-w) % div
        if min(h + ph, w + pw) * scale < 128:
            raise SfppError(f"motion_smoothness (AMT-S) needs frames of at least 113x113 pixels, got {h}x{w} "
                            "(smaller ones give NaN in VBench too); use motion_smoothness_proxy for small videos")
        x = _to_tensor(frames) / 255.0
        # contiguous NCHW, like VBench's per-frame tensors (channels-last convolutions round differently)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate").contiguous()
        out = []
        for i in range(0, n - 1, self.amt_batch):
            j = min(i + self.amt_batch, n - 1)
            a, b = x[i:j].to(self.device), x[i + 1 : j + 1].to(self.device)
            out.append(model(a, b, 0.5, scale_factor=scale).float().cpu())
        pred = torch.cat(out)[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        return (pred * 255.0).permute(0, 2, 3, 1).numpy().clip(0, 255).astype(np.uint8)

    # ---- batched encoders ----------------------------------------------------------------------
    @torch.no_grad()
    def _batched(self, fn, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(x[i : i + self.batch_size].to(self.device)).float().cpu() for i in range(0, len(x), self.batch_size)])

    def dino_features(self, frames: np.ndarray) -> torch.Tensor:
        """(F, D) DINO class tokens of `dino_transform`ed frames (float resize, DINO's own
        position-embedding interpolation for non-square frames)."""
        m = self.dino()
        return self._batched(m, dino_transform(frames))

    def clip_image_features(self, model, frames: np.ndarray, *, uint8: bool) -> torch.Tensor:
        """(F, D) CLIP image embeddings (not normalised); `uint8` as in `clip_transform`."""
        size = int(model.config.vision_config.image_size)
        return self._batched(lambda b: _features(model.get_image_features(pixel_values=b)),
                             clip_transform(frames, size, uint8=uint8))

    @torch.no_grad()
    def clip_text_features(self, text: str) -> torch.Tensor:
        tok = self.clip_b32_tokenizer()
        model = self.clip_b32()
        max_len = int(model.config.text_config.max_position_embeddings)
        enc = tok([text], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        out = model.get_text_features(input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device))
        return _features(out).float().cpu()


def _import_torchvision_raft():
    """Kept for callers of earlier versions: dynamic_degree runs sfpp's own RAFT (sfpp/evaluate/raft.py)
    on VBench's raft-things.pth and no longer needs torchvision. Does nothing."""


# ---- metrics: each takes the frames of one window ----------------------------------------------
def subject_consistency(models: VBenchModels, frames: np.ndarray) -> float:
    """VBench subject_consistency: DINO ViT-B/16 CLS features of every frame, first/previous formula."""
    return consistency_score(models.dino_features(frames))


def background_consistency(models: VBenchModels, frames: np.ndarray) -> float:
    """VBench background_consistency: CLIP ViT-B/32 image embeddings of every frame, same formula."""
    return consistency_score(models.clip_image_features(models.clip_b32(), frames, uint8=False))


def overall_consistency(models: VBenchModels, frames: np.ndarray, prompt: str) -> float:
    """VBench overall_consistency: ViCLIP embedding of 8 "middle" frames (`clip_transform(224)`) and
    of the prompt (cut to ViCLIP's 32 tokens); score = their raw cosine (VBench neither scales nor
    softmaxes it)."""
    idx = middle_frame_indices(models.viclip().config.num_frames, len(frames))
    video = F.normalize(models.viclip_video_features(frames[idx]), dim=-1)
    text = F.normalize(models.viclip_text_features(prompt), dim=-1)
    return float((video @ text.T)[0, 0])


def clip_score(models: VBenchModels, frames: np.ndarray, prompt: str) -> float:
    """VBench competition clip_score: 8 "middle" frames, mean cosine(frame, text) with CLIP B/32."""
    idx = middle_frame_indices(8, len(frames))
    img = F.normalize(models.clip_image_features(models.clip_b32(), frames[idx], uint8=True), dim=-1)
    txt = F.normalize(models.clip_text_features(prompt), dim=-1)
    return float((img @ txt.T).mean())


def aesthetic_quality(models: VBenchModels, frames: np.ndarray) -> float:
    """VBench aesthetic_quality: L2-normalised CLIP ViT-L/14 embeddings -> LAION linear head -> /10, mean."""
    model, head = models.clip_l14(), models.aesthetic_head()
    emb = F.normalize(models.clip_image_features(model, frames, uint8=False), dim=-1)
    if emb.shape[-1] != head.in_features:
        raise SfppError(
            f"{AESTHETIC_HEAD} expects {head.in_features}-d embeddings but {CLIP_L14_DIR} gives {emb.shape[-1]}; "
            "use the ViT-L/14 CLIP folder"
        )
    with torch.no_grad():
        scores = head(emb.to(models.device)).float().cpu().squeeze(-1) / 10.0
    return float(scores.mean())


def raft_motion(models: VBenchModels, frames: np.ndarray, fps: float, *, iters: int = 20,
                stop_at: int | None = None) -> list[float]:
    """Per sampled pair, VBench's motion value: the mean of the largest 5 % RAFT flow magnitudes.

    As VBench's DynamicDegree: frames every max(1, round(fps/8)); each pair replicate-padded
    (centred) to multiples of 8 by RAFT's InputPadder, flow from RAFT with `iters` updates at full
    resolution; the top 5 % (`int(h*w*0.05)` values, h and w padded) of sqrt(u^2+v^2), averaged in
    float32 by numpy as VBench does. With `stop_at`, pairs stop once that many values exceed
    VBench's threshold 6*min(H,W)/256 (the verdict cannot change); None computes every pair.
    """
    idx = list(range(0, len(frames), max(1, round(fps / 8))))
    h, w = frames.shape[1:3]
    ph, pw = (-h) % 8, (-w) % 8
    if min(h + ph, w + pw) < 128:
        raise SfppError(f"dynamic_degree (RAFT) needs frames of at least 128x128 pixels, got {h}x{w} (RAFT's "
                        "coarsest correlation level would be one pixel); use dynamic_degree_proxy for small videos")
    model = models.raft()
    thres = 6.0 * min(h, w) / 256.0
    values: list[float] = []
    with torch.no_grad():
        for a in range(len(idx) - 1):
            pair = _to_tensor(frames[[idx[a], idx[a + 1]]])  # (2, 3, H, W) float 0-255, as VBench's frames
            pair = F.pad(pair, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
            flow = model(pair[0:1].to(models.device), pair[1:2].to(models.device), iters=iters)
            flo = flow[0].permute(1, 2, 0).cpu().numpy()
            rad = np.sqrt(np.square(flo[:, :, 0]) + np.square(flo[:, :, 1])).flatten()
            cut = int(rad.size * 0.05)
            values.append(float(np.mean(np.abs(np.sort(-rad))[:cut])))
            if stop_at is not None and sum(v > thres for v in values) >= stop_at:
                break
    return values


def dynamic_degree(models: VBenchModels, frames: np.ndarray, fps: float, *, iters: int = 20) -> float:
    """VBench dynamic_degree on one clip: 1.0 if moving else 0.0.

    Motion values from `raft_motion` (frames every max(1, round(fps/8)), RAFT on raft-things.pth,
    top-5 % mean flow magnitude per pair); moving once round(4*N/16) pairs (N sampled frames)
    exceed 6*min(H,W)/256 px, the threshold on the unpadded size. Fewer than 2 sampled frames: NaN.
    """
    n = len(range(0, len(frames), max(1, round(fps / 8))))
    if n < 2:
        return float("nan")
    h, w = frames.shape[1:3]
    thres = 6.0 * min(h, w) / 256.0
    count_num = round(4 * n / 16.0)
    if count_num <= 0:  # 2 sampled frames: round(0.5) = 0, VBench's check_move is True after any pair
        return 1.0
    values = raft_motion(models, frames, fps, iters=iters, stop_at=count_num)
    return 1.0 if sum(v > thres for v in values) >= count_num else 0.0


def imaging_quality(models: VBenchModels, frames: np.ndarray) -> float:
    """VBench imaging_quality: MUSIQ (SPAQ) per frame after 'longer' resize to <=512, mean, /100."""
    model = models.musiq()
    x = _to_tensor(frames)
    h, w = x.shape[-2:]
    if max(h, w) > 512:
        s = 512.0 / max(h, w)
        x = F.interpolate(x, size=(int(h * s), int(w * s)), mode="bilinear", align_corners=False, antialias=False)
    x = x / 255.0
    with torch.no_grad():
        scores = [float(model(x[i : i + 1].to(models.device))) for i in range(len(x))]
    return float(np.mean(scores)) / 100.0


def _load_error(e: Exception) -> str:
    """A one-line reason for a failed `torch.load`."""
    import re

    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"it pickles {m.group(1)}, which loading with weights_only=True refuses"
    if "WeightsUnpickler error:" in text:  # torch's long advice first, the actual problem after it
        text = text.split("WeightsUnpickler error:", 1)[1]
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {first[:200]}" if first else type(e).__name__


def _state_dict_mismatch(model: torch.nn.Module, obj, extract=None) -> str:
    """'' if the loaded checkpoint `obj` fits `model` exactly, else a short description of the first
    problem. `extract` pulls the state dict out of `obj` (default: AMT's checkpoint layout)."""
    if extract is None:
        from sfpp.evaluate.amt import checkpoint_state_dict as extract

    try:
        sd = extract(obj)
    except TypeError as e:
        return str(e)
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        first = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        return f"{len(missing)} tensors missing, {len(extra)} unexpected, first {first}"
    for k, v in want.items():
        got = getattr(sd[k], "shape", None)
        if got != v.shape:
            return f"{k} has shape {tuple(got) if got is not None else type(sd[k]).__name__}, expected {tuple(v.shape)}"
    return ""


def amt_scale(h: int, w: int, device: str) -> float:
    """VBench's AMT input scale: 1 on CPU; on CUDA it shrinks frames that would not fit the GPU."""
    if not str(device).startswith("cuda"):
        return 1.0
    vram = torch.cuda.get_device_properties(torch.device(device)).total_memory
    s = 1024 * 512 / (h * w) * np.sqrt(max(vram - 2500 * 1024**2, 0) / (1500 * 1024**2))
    s = min(1.0, s)
    # VBench: scale = 1 / floor(16 / sqrt(s)) * 16, evaluated in that order (padding is int(16 / scale))
    return 1.0 if s >= 1.0 else float(1.0 / np.floor(1.0 / np.sqrt(max(s, 1e-12)) * 16) * 16)


def motion_smoothness(models: VBenchModels, frames: np.ndarray) -> float:
    """VBench motion_smoothness on one clip.

    AMT-S interpolates the midpoint of each pair of consecutive even frames (0,2,4,...); midpoint
    k is compared with the real frame 2k+1 by the mean absolute difference of uint8 RGB, averaged
    over midpoints; score = (255 - mean) / 255. A trailing odd frame with no even frame after it
    is not scored (as VBench). Fewer than 3 frames: NaN.
    """
    if len(frames) < 3:
        return float("nan")
    mids = models.amt_midpoints(frames[0::2])
    real = frames[1::2][: len(mids)]
    diffs = [np.abs(m.astype(np.int16) - r.astype(np.int16)).mean() for m, r in zip(mids, real)]
    return float((255.0 - np.mean(diffs)) / 255.0)


def score_clip(name: str, models: VBenchModels, frames: np.ndarray, *, fps: float, prompt: str | None) -> float:
    """VBench metric `name` of one clip `(F, H, W, 3)` uint8: the one dispatcher every protocol uses."""
    if name in ("overall_consistency", "clip_score"):
        return METRIC_FNS[name](models, frames, prompt or "")
    if name == "dynamic_degree":
        return dynamic_degree(models, frames, fps)
    if name not in METRIC_FNS:
        raise KeyError(f"no VBench metric named {name!r}")
    return METRIC_FNS[name](models, frames)


METRIC_FNS = {
    "subject_consistency": subject_consistency,
    "background_consistency": background_consistency,
    "overall_consistency": overall_consistency,
    "clip_score": clip_score,
    "aesthetic_quality": aesthetic_quality,
    "dynamic_degree": dynamic_degree,
    "imaging_quality": imaging_quality,
    "motion_smoothness": motion_smoothness,
}

