"""VBench-Long's protocol (`vbench2_beta_long/`, VBench commit 45e79ec): clips, re-encoding, slow/fast fusion.

What VBench-Long does to one long video, and what this module reproduces:

1. Split (`utils.split_video_into_clips`): clips of `int(fps) * int(seconds)` frames (the video's
   fps truncated to an integer, as decord's `get_avg_fps` is cast), 2 s for every dimension in
   'long_custom_input' mode. A remainder becomes one more full-length clip that borrows frames
   from the clip before it (it ends on the last frame); a video shorter than one clip is kept whole.
2. Re-encode: each clip is written with `torchvision.io.write_video(path, frames, fps=int(fps))`,
   i.e. PyAV + libx264, yuv420p, one encoder thread, RGB->YUV by swscale with bilinear filtering,
   and x264's defaults otherwise. PyAV >= 14.3 leaves the bit rate unset (x264 CRF 23); older PyAV
   set 1024 kb/s (x264 ABR). sfpp runs its bundled ffmpeg with the same settings
   (`ENCODERS`): the H.264 bitstream is byte-identical (checked against PyAV 18.1 and 12.3, x264
   core 165/164), so the decoded pixels are the same. Clips are then decoded again (decord for
   subject/background, OpenCV for temporal flickering; both give the same RGB as ffmpeg's for
   yuv420p H.264).
3. Score every clip with the short-video formula (the in-clip or 'slow' score).
4. Subject/background consistency only ('slow-fast', README examples with `--dev_flag`): the
   first frame of every decoded clip is put in a new video, re-encoded the same way, decoded,
   and scored with the same first/previous formula on other features ('fast', clip-to-clip):
   DINOv2 ViT-B/14 for subject (VBench-Long's default), CLIP ViT-B/32 or DreamSim for
   background (DreamSim is VBench-Long's default and is not available in sfpp: background uses
   CLIP, VBench-Long's `--bg_clip2clip_feat_extractor clip`). The clip-to-clip score is mapped
   onto the in-clip scale by a fixed quantile table (`configs/*_mapping_table.yaml`, linear
   between its 0.01 steps) and fused per clip: `0.5 * inclip + 0.5 * mapped`
   (`configs/slow_fast_params.yaml`); a mapped score of 0 (or a video of one clip) keeps the
   in-clip score. The video's score is the mean over its clips.

Without `--dev_flag` VBench-Long reports the in-clip mean only (weights 1/0); sfpp keeps that
number in `details["inclip"]`, with every clip's scores, so both readings are in results.json.
"""

from __future__ import annotations

import bisect
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfpp.errors import SfppError
from sfpp.evaluate.video import Window

PROTOCOLS = ("windows", "vbench-long")

# Metrics whose value the vbench-long protocol changes (the others are computed as usual).
LONG_METRICS = ("temporal_flickering", "subject_consistency", "background_consistency", "overall_consistency",
                "clip_score", "aesthetic_quality", "dynamic_degree", "imaging_quality", "motion_smoothness")
FUSED_METRICS = ("subject_consistency", "background_consistency")

# x264 settings of torchvision's write_video, by PyAV generation (see the module docstring).
ENCODERS = {
    "crf23": ("-crf", "23"),  # PyAV >= 14.3: no bit rate set, x264's default CRF 23
    "abr1024k": ("-b:v", "1024k"),  # PyAV <= 14.2: bit_rate 1024000 set by add_stream
}
DEFAULT_ENCODER = "crf23"

DINOV2_DIR = "dinov2_model/dinov2-base"  # facebook/dinov2-base (Hugging Face folder) = torch.hub dinov2_vitb14
SUBJECT_CLIP2CLIP = ("dinov2", "dino")
BACKGROUND_CLIP2CLIP = ("clip",)

# configs/slow_fast_params.yaml (used with --dev_flag): in-clip and clip-to-clip weights.
SLOW_FAST_WEIGHTS = {"subject_consistency": (0.5, 0.5), "background_consistency": (0.5, 0.5)}

# configs/subject_mapping_table.yaml and background_mapping_table.yaml: value at 0.00, 0.01, ..., 1.00.
MAPPING_TABLES = {
    "subject_consistency": (
        0.0, 0.655812085783768, 0.706856949045235, 0.731659342416906, 0.73660992057736, 0.749101188592094,
        0.761032814753647, 0.774597183768173, 0.784555729997569, 0.792953568694271, 0.802689699298385,
        0.808076071440993, 0.816204790771909, 0.824219815909538, 0.830472157111834, 0.835419531889346,
        0.83907681617532, 0.841978081155746, 0.84679192068861, 0.850625540675788, 0.852853044011848,
        0.854691139482507, 0.858132224563246, 0.863729405870906, 0.866102417035313, 0.870585293424396,
        0.872331870277398, 0.874960548804337, 0.878698116066965, 0.88170792606262, 0.885683841036798,
        0.887194775904732, 0.890181215752347, 0.8940085858716, 0.896727529739295, 0.899204109394038,
        0.901872688917701, 0.902930005754908, 0.904255123199727, 0.906709500890894, 0.909197403281584,
        0.911998758637682, 0.914120648767612, 0.917820970919085, 0.920037992613574, 0.922367310037017,
        0.923878218312373, 0.92612833568708, 0.928554265517505, 0.931094522914667, 0.932674917380015,
        0.933938855974875, 0.935219359871336, 0.93807406531488, 0.939675705126034, 0.941552521922844,
        0.944195698642471, 0.946289318094669, 0.947781123820032, 0.949137334918494, 0.951897174598649,
        0.953055388977942, 0.954985032256127, 0.956199606401013, 0.957250230848176, 0.958689000129844,
        0.960455895301363, 0.961342514244196, 0.962936044827203, 0.964827439510959, 0.966785529778715,
        0.968174134640714, 0.969813944137392, 0.971409261937727, 0.972530004578652, 0.973668488824432,
        0.974642341870362, 0.976008729176383, 0.977155875644753, 0.978418810979857, 0.979501010595634,
        0.980594016861641, 0.981990506802626, 0.983434155927019, 0.98433502683478, 0.985466305825542,
        0.986316598986252, 0.987193187882002, 0.98770020514925, 0.988262855586541, 0.988710454351168,
        0.989251092021853, 0.989782759199991, 0.990371501103215, 0.991172390892083, 0.992180427851925,
        0.992921150016265, 0.99326859591264, 0.994591460602974, 0.995516073547993, 1.0,
    ),
    "background_consistency": (
        0.0, 0.873691544930448, 0.88392356992722, 0.888340769126807, 0.894395017892299, 0.899626435216563,
        0.903145754159405, 0.905965662216789, 0.907634139293668, 0.909681980518171, 0.912059260929028,
        0.914872300522044, 0.916864571230313, 0.91899572410357, 0.920360080000968, 0.921301105005809,
        0.922499725160567, 0.923335310160083, 0.924364064416312, 0.925033502674768, 0.926479836367157,
        0.927276633706106, 0.927840039415505, 0.928488115842048, 0.929855989179899, 0.93043699722034,
        0.930961847243739, 0.931837518457107, 0.932535174404531, 0.933476108636716, 0.934152037140137,
        0.934940306892267, 0.935567840962271, 0.936222006721211, 0.936694266597276, 0.937215165488639,
        0.937728512599245, 0.938159241463336, 0.938786767968952, 0.939348915468468, 0.939684244791667,
        0.940032821879841, 0.940740896511102, 0.941350394558482, 0.941967580545604, 0.942834956146721,
        0.943218163003486, 0.944092961790763, 0.944922112017493, 0.945415133617351, 0.946057962880035,
        0.946612672064614, 0.947050138277014, 0.947583230961948, 0.948510612332171, 0.949047688928156,
        0.94972291646495, 0.950246513321392, 0.950660608096114, 0.951255542174994, 0.951911455307578,
        0.952366960064065, 0.952950734149077, 0.953568790040828, 0.954187246845146, 0.954717288560225,
        0.955338935014846, 0.95590276685144, 0.956451298452427, 0.957104193394171, 0.957455075099245,
        0.957910428567971, 0.958549581538052, 0.959168784695327, 0.959610176825136, 0.960120447751259,
        0.960917058501969, 0.961979166666667, 0.962551626948586, 0.963566142505003, 0.964157551579041,
        0.964602080408437, 0.964906362961529, 0.965452531951975, 0.966266180226084, 0.967015800998096,
        0.968036075575297, 0.969119242996385, 0.969973438912019, 0.970532389196844, 0.971717108527789,
        0.972427724793442, 0.973225634097437, 0.974180063197941, 0.975258326374096, 0.976684089973857,
        0.978594319850568, 0.980095581086206, 0.981866938883779, 0.985895411744772, 1.0,
    ),
}
_TABLE_KEYS = tuple(i / 100 for i in range(101))


@dataclass(frozen=True, kw_only=True)
class LongSettings:
    """The choices VBench-Long leaves to its environment and flags, recorded in results and cache keys."""

    encoder: str = DEFAULT_ENCODER
    subject_clip2clip: str = "dinov2"
    background_clip2clip: str = "clip"

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise SfppError(f"unknown VBench-Long encoder {self.encoder!r}; choose from: {', '.join(ENCODERS)}")
        if self.subject_clip2clip not in SUBJECT_CLIP2CLIP:
            raise SfppError(f"subject clip-to-clip features must be one of {', '.join(SUBJECT_CLIP2CLIP)}")
        if self.background_clip2clip not in BACKGROUND_CLIP2CLIP:
            raise SfppError("background clip-to-clip features: only 'clip' is available in sfpp "
                            "(VBench-Long's default, DreamSim, is not)")

    def key(self, metric: str) -> str:
        k = f"protocol=vbench-long|enc={self.encoder}"
        if metric == "subject_consistency":
            k += f"|c2c={self.subject_clip2clip}"
        elif metric == "background_consistency":
            k += f"|c2c={self.background_clip2clip}"
        return k


def check_protocol(protocol: str) -> str:
    p = str(protocol).strip().lower().replace("_", "-")
    if p not in PROTOCOLS:
        raise SfppError(f"unknown --protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}")
    return p


def clip_length(fps: float, seconds: float) -> int:
    """Frames per clip: VBench-Long's `int(fps) * int(duration)` (decord's fps cast to int)."""
    n = int(fps) * int(seconds)
    if n < 1:
        raise SfppError(f"VBench-Long clips need at least 1 s and 1 fps (got {seconds:g} s at {fps:g} fps)")
    return n


def split_clips(num_frames: int, fps: float, seconds: float) -> list[Window]:
    """VBench-Long's clips of a video of `num_frames` frames (see the module docstring)."""
    seg = clip_length(fps, seconds)
    if num_frames < seg:  # kept whole ('NAME_full.mp4')
        return [Window(index=0, start=0, end=num_frames, fps=fps)]
    n_full = num_frames // seg
    wins = [Window(index=i, start=i * seg, end=(i + 1) * seg, fps=fps) for i in range(n_full)]
    if num_frames % seg:
        wins.append(Window(index=n_full, start=max(0, num_frames - seg), end=num_frames, fps=fps))
    return wins


def reencode(frames: np.ndarray, fps: int, encoder: str = DEFAULT_ENCODER, *, workdir: Path | None = None) -> np.ndarray:
    """Encode `(F, H, W, 3)` uint8 RGB as torchvision's `write_video` does and decode it back."""
    import imageio_ffmpeg

    from sfpp.evaluate.video import read_video

    f, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise SfppError(f"VBench-Long re-encodes clips as yuv420p H.264, which needs an even width and height; got {w}x{h}")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="sfpp-vbl-") as tmp:
        out = Path(tmp) / "clip.mp4"
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(int(fps)), "-i", "pipe:0", "-an",
               "-sws_flags", "bilinear", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1",
               *ENCODERS[encoder], str(out)]
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames, dtype=np.uint8).tobytes(), capture_output=True)
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SfppError(f"re-encoding a VBench-Long clip failed: {msg[-1] if msg else proc.returncode}")
        decoded, _ = read_video(out, fallback_fps=fps, label="re-encoded clip")
    return decoded


class LongVideo:
    """One video cut into VBench-Long clips, each re-encoded and decoded; first-frame video on demand."""

    def __init__(self, frames: np.ndarray, fps: float, seconds: float, settings: LongSettings = LongSettings()):
        self.frames, self.fps, self.seconds, self.settings = frames, float(fps), seconds, settings
        self.fps_int = int(fps)
        self.wins = split_clips(len(frames), fps, seconds)
        self._clips: list[np.ndarray] | None = None
        self._firsts: np.ndarray | None = None

    def clips(self) -> list[np.ndarray]:
        if self._clips is None:
            self._clips = [reencode(self.frames[w.start : w.end], self.fps_int, self.settings.encoder) for w in self.wins]
        return self._clips

    def first_frames(self) -> np.ndarray | None:
        """The 'fast' video: the first decoded frame of every clip, re-encoded; None for one clip."""
        if len(self.wins) < 2:
            return None
        if self._firsts is None:
            self._firsts = reencode(np.stack([c[0] for c in self.clips()]), self.fps_int, self.settings.encoder)
        return self._firsts


# ---- formulas --------------------------------------------------------------------------------
def flickering_score(frames: np.ndarray) -> float:
    """VBench temporal_flickering on decoded frames: (255 - mean of per-pair mean abs diff) / 255."""
    if len(frames) < 2:
        return float("nan")
    maes = [float(np.mean(np.abs(frames[i + 1].astype(np.float32) - frames[i].astype(np.float32))))
            for i in range(len(frames) - 1)]
    return (255.0 - float(np.mean(maes))) / 255.0


def map_clip2clip(score: float, metric: str) -> float:
    """VBench-Long's mapping-table lookup: linear between the two table keys around `score`."""
    table = MAPPING_TABLES[metric]
    i = bisect.bisect_left(_TABLE_KEYS, score)
    if i == 0:
        return table[0]
    if i == len(_TABLE_KEYS):
        return table[-1]
    k0, k1 = _TABLE_KEYS[i - 1], _TABLE_KEYS[i]
    return table[i - 1] + (table[i] - table[i - 1]) * (score - k0) / (k1 - k0)


def fuse(inclip: float, mapped: float, metric: str) -> float:
    """`w_inclip * inclip + w_clip2clip * mapped`, or the in-clip score where mapped is 0."""
    w_in, w_cc = SLOW_FAST_WEIGHTS[metric]
    return inclip * w_in + mapped * w_cc if mapped != 0.0 else inclip


# ---- feature extractors for the clip-to-clip branch --------------------------------------------
def dinov2_transform(frames: np.ndarray):
    """VBench-Long `dinov2_transform(224)` on a float tensor: bicubic short side -> 256 (torchvision's
    default antialias, on since torchvision 0.17), centre crop 224, /255, ImageNet mean/std."""
    import torch
    import torch.nn.functional as F

    from sfpp.evaluate.vbench import IMAGENET_MEAN, IMAGENET_STD

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    nh, nw = (256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    x = x[..., top : top + 224, left : left + 224] / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _dinov2_pos_embed(model, rows: int, cols: int):
    """DINOv2's own (torch.hub) position-embedding resize: bicubic, no antialias, scale factors
    (n + 0.1) / M given to `interpolate` (not the output size, as transformers' Dinov2 does)."""
    import math

    import torch
    import torch.nn.functional as F

    pos = model.embeddings.position_embeddings
    n = pos.shape[1] - 1
    if rows * cols == n and rows == cols:
        return pos
    m = int(math.sqrt(n))
    dim = pos.shape[-1]
    grid = pos[:, 1:].float().reshape(1, m, m, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / m, (cols + 0.1) / m), mode="bicubic", antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat([pos[:, :1].float(), grid], dim=1).to(pos.dtype)


def dinov2_cls(model, x):
    """CLS token after the final norm (torch.hub `dinov2_vitb14(x)`) from a transformers Dinov2Model."""
    import torch

    with torch.no_grad():
        emb = model.embeddings
        patches = emb.patch_embeddings(x.to(emb.cls_token.dtype))
        rows, cols = x.shape[-2] // emb.patch_size, x.shape[-1] // emb.patch_size
        tokens = torch.cat([emb.cls_token.expand(x.shape[0], -1, -1), patches], dim=1)
        tokens = tokens + _dinov2_pos_embed(model, rows, cols)
        hidden = model.encoder(tokens).last_hidden_state
        return model.layernorm(hidden)[:, 0].float()


class Clip2ClipModels:
    """The networks of the clip-to-clip branch; the VBench ones come from `sfpp.evaluate.vbench`."""

    def __init__(self, models):
        self.models = models  # sfpp.evaluate.vbench.VBenchModels
        self._dinov2 = None

    def dinov2(self):
        if self._dinov2 is None:
            from transformers import Dinov2Model

            path = Path(self.models.weights_dir) / DINOV2_DIR
            try:
                m = Dinov2Model.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError) as e:
                raise SfppError(f"cannot load {path}: {str(e).splitlines()[0]}; "
                                f"fetch it with: hf download facebook/dinov2-base --local-dir DIR/{DINOV2_DIR}") from None
            self._dinov2 = m.to(self.models.device).eval()
        return self._dinov2

    def subject_features(self, frames: np.ndarray):
        """(F, D) DINOv2 class tokens of `dinov2_transform`ed frames, one frame per call as VBench-Long."""
        import torch

        model = self.dinov2()
        x = dinov2_transform(frames)
        return torch.cat([dinov2_cls(model, x[i : i + 1].to(self.models.device)).cpu() for i in range(len(x))])


def missing_weights(weights_dir: Path | None, metrics, settings: LongSettings) -> list[str]:
    """Weight folders the protocol needs beyond `sfpp.evaluate.vbench.METRIC_FILES`."""
    if weights_dir is None or "subject_consistency" not in metrics or settings.subject_clip2clip != "dinov2":
        return []
    p = Path(weights_dir) / DINOV2_DIR
    ok = (p / "config.json").is_file() and any((p / n).is_file() for n in ("model.safetensors", "pytorch_model.bin"))
    return [] if ok else [f"{DINOV2_DIR} (hf download facebook/dinov2-base --local-dir DIR/{DINOV2_DIR})"]


# ---- per-metric results ------------------------------------------------------------------------
def _rows(wins: list[Window], values: list[float]) -> list[dict]:
    return [{"index": w.index, "start_frame": w.start, "end_frame": w.end, "start_s": round(w.start_s, 4),
             "end_s": round(w.end_s, 4), "value": v} for w, v in zip(wins, values)]


def compute_long(name: str, lv: LongVideo, models=None, prompt: str | None = None) -> dict:
    """One metric under VBench-Long's protocol: per-clip values (`windows`), the video value, details."""
    from sfpp.evaluate import vbench as vb

    clips = lv.clips()
    details: dict = {"protocol": "vbench-long", "encoder": lv.settings.encoder, "clip_frames": clip_length(lv.fps, lv.seconds),
                     "clips": len(clips)}
    if name == "temporal_flickering":
        values = [flickering_score(c) for c in clips]
        details["static_filter"] = False  # VBench-Long scores every clip unless --static_filter_flag (RAFT)
        return {"value": float(np.mean(values)), "windows": _rows(lv.wins, values), "details": details}
    if name in FUSED_METRICS:
        fn = vb.subject_consistency if name == "subject_consistency" else vb.background_consistency
        inclip = [fn(models, c) for c in clips]
        firsts = lv.first_frames()
        if firsts is None:
            raw, mapped = None, 0.0
        else:
            kind = lv.settings.subject_clip2clip if name == "subject_consistency" else lv.settings.background_clip2clip
            if kind == "dinov2":
                raw = vb.consistency_score(Clip2ClipModels(models).subject_features(firsts))
            else:  # 'dino' / 'clip': VBench-Long calls the short-video function on the first-frame video
                raw = fn(models, firsts)
            mapped = map_clip2clip(raw, name)
            details["clip2clip_features"] = kind
        fused = [fuse(s, mapped, name) for s in inclip]
        w_in, w_cc = SLOW_FAST_WEIGHTS[name]
        details.update(inclip=float(np.mean(inclip)), inclip_per_clip=inclip, clip2clip=raw,
                       clip2clip_mapped=mapped, weights={"inclip": w_in, "clip2clip": w_cc})
        return {"value": float(np.mean(fused)), "windows": _rows(lv.wins, fused), "details": details}
    values = []
    for c in clips:
        values.append(vb.score_clip(name, models, c, fps=lv.fps_int, prompt=prompt))
    vals = [v for v in values if v == v]
    return {"value": float(np.mean(vals)) if vals else float("nan"), "windows": _rows(lv.wins, values), "details": details}
