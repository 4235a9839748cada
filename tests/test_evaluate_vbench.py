"""VBench metrics end to end with tiny random-initialised models saved in the --weights-dir layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evaluate_fixtures import moving_square_video, static_video, write_mp4

from sfpp.errors import SfppError
from sfpp.evaluate import EvaluateConfig, evaluate_runs
from sfpp.evaluate import vbench as vb
from sfpp.evaluate import viclip as vc

VOCAB_CHARS = [chr(c) for c in range(33, 127)]


@pytest.fixture(autouse=True)
def _sfpp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))


def _tiny_clip(image_size, patch_size, projection_dim, seed):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    n_vocab = 2 * len(VOCAB_CHARS) + 2
    cfg = CLIPConfig(
        text_config=dict(vocab_size=n_vocab, hidden_size=24, intermediate_size=40, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=n_vocab - 2,
                         eos_token_id=n_vocab - 1, pad_token_id=n_vocab - 1),
        vision_config=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    return CLIPModel(cfg).eval()


def _tiny_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(VOCAB_CHARS)}
    vocab.update({c + "</w>": len(VOCAB_CHARS) + i for i, c in enumerate(VOCAB_CHARS)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """The --weights-dir layout filled with tiny models of the same classes as the real ones."""
    from transformers import ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    dino = ViTModel(ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
                              image_size=224, patch_size=16), add_pooling_layer=False).eval()
    dino.save_pretrained(root / vb.DINO_DIR)
    b32 = _tiny_clip(64, 32, 16, seed=1)
    b32.save_pretrained(root / vb.CLIP_B32_DIR)
    _tiny_tokenizer().save_pretrained(root / vb.CLIP_B32_DIR)
    l14 = _tiny_clip(56, 14, 768, seed=2)  # the LAION head reads 768-d embeddings, like ViT-L/14's
    l14.save_pretrained(root / vb.CLIP_L14_DIR)
    head = torch.nn.Linear(768, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, 5] = 3.0
        head.bias.fill_(5.5)
    (root / vb.AESTHETIC_HEAD).parent.mkdir(parents=True)
    torch.save(head.state_dict(), root / vb.AESTHETIC_HEAD)
    _save_viclip(root, _seeded_viclip_state(vc.ViCLIP(TINY_VICLIP)))
    return root


def test_consistency_formula_on_known_features():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    # i=1: prev 0, first 0 -> 0 ; i=2: prev .7071, first .7071 -> .7071 ; i=3: prev -.7071->0, first -1->0 -> 0
    assert vb.consistency_score(f) == pytest.approx(np.sqrt(0.5) / 3, abs=1e-6)
    assert vb.consistency_score(f[:1]) != vb.consistency_score(f[:1])  # NaN for a single frame


def test_middle_frame_indices_match_vbench():
    assert vb.middle_frame_indices(8, 16) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert vb.middle_frame_indices(8, 20) == [0, 3, 5, 8, 10, 13, 15, 18]
    # fewer frames than samples: each frame once, then the last one repeated (VBench pads the same way)
    assert vb.middle_frame_indices(8, 5) == [0, 1, 2, 3, 4, 4, 4, 4]
    assert vb.middle_frame_indices(8, 1) == [0] * 8


def test_transforms_shapes_and_normalisation():
    frames = np.full((3, 75, 109, 3), 255, dtype=np.uint8)
    x = vb.clip_transform(frames, 224, uint8=False)
    assert x.shape == (3, 3, 224, 224)
    assert torch.allclose(x[:, :, 100, 100], (1 - torch.tensor(vb.CLIP_MEAN)) / torch.tensor(vb.CLIP_STD), atol=1e-4)
    d = vb.dino_transform(frames)
    assert d.shape == (3, 3, 224, int(224 * 109 / 75))  # short side 224, no crop, width follows the aspect


def test_dino_reads_vbench_file_or_hf_folder_as_the_same_network(tmp_path):
    """DINO ViT from a Hugging Face ViTModel folder is converted to DINO's names; on square 224 px
    frames (no position interpolation) it computes what transformers' ViT computes with eps 1e-6;
    saved as VBench's dino_vitbase16_pretrain.pth the same weights give the same features."""
    from transformers import ViTConfig, ViTModel

    from sfpp.evaluate.dino import checkpoint_state_dict

    torch.manual_seed(3)
    hf = ViTModel(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=1, intermediate_size=96,
                            image_size=224, patch_size=16, layer_norm_eps=1e-6), add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path / "a" / vb.DINO_DIR)
    frames = moving_square_video(h=224, w=224, n=2)
    got = vb.VBenchModels(tmp_path / "a").dino_features(frames)
    with torch.no_grad():
        want = hf(pixel_values=vb.dino_transform(frames)).last_hidden_state[:, 0]
    assert torch.allclose(got, want, atol=1e-5)
    dino = vb.VBenchModels(tmp_path / "a").dino()
    (tmp_path / "b" / vb.DINO_FILE).parent.mkdir(parents=True)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in dino.state_dict().items()}}, tmp_path / "b" / vb.DINO_FILE)
    assert checkpoint_state_dict(torch.load(tmp_path / "b" / vb.DINO_FILE)).keys() == dino.state_dict().keys()
    wide = moving_square_video(h=75, w=109, n=2)  # 224x325 after the resize: position grid 14x20
    b = vb.VBenchModels(tmp_path / "b")
    assert b.dino().config.heads == 1  # a DINO file has no config: heads = width / 64
    with torch.no_grad():
        assert torch.allclose(b.dino_features(wide[:1])[:, :8], dino(vb.dino_transform(wide[:1]))[:, :8])
    torch.save({"cls_token": torch.zeros(1, 1, 8)}, tmp_path / "b" / vb.DINO_FILE)
    with pytest.raises(SfppError, match="is not a DINO ViT checkpoint"):
        vb.VBenchModels(tmp_path / "b").dino()


def test_missing_weights_are_listed(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(SfppError) as e:
        vb.check_weights(tmp_path / "w", ["subject_consistency", "aesthetic_quality"])
    msg = str(e.value)
    assert "dino_model/dino_vitbase16_pretrain.pth (or the Hugging Face folder dino_model/dino-vitb16/)" in msg
    assert "clip_model/clip-vit-large-patch14/model.safetensors" in msg
    assert "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth" in msg
    assert "dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth" in msg
    with pytest.raises(SfppError, match="--weights-dir"):
        vb.check_weights(None, ["clip_score"])


def test_vbench_metrics_end_to_end(tmp_path, weights_dir):
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "still.mp4", static_video(h=75, w=109, n=12), 8, sidecar={"prompt": "a quiet room"})
    write_mp4(run / "square.mp4", moving_square_video(h=91, w=167, n=20), 8, sidecar={"prompt": "a red square"})
    metrics = ("subject_consistency", "background_consistency", "clip_score", "aesthetic_quality")
    ev = evaluate_runs([run], EvaluateConfig(metrics=metrics, weights_dir=weights_dir, window_s=1.0))
    assert ev.errors == []
    videos = {vd["name"]: vd["metrics"] for vd in ev.runs[0]["videos"]}
    still, square = videos["still"], videos["square"]
    # identical frames -> identical features -> both consistencies exactly 1
    assert still["subject_consistency"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert still["background_consistency"]["value"] == pytest.approx(1.0, abs=1e-5)
    # a moving object changes the features; windows of 1 s = 8 frames (20 frames -> 0-8, 8-16, 12-20)
    assert 0.0 <= square["subject_consistency"]["value"] < 0.99999
    assert [(w["start_frame"], w["end_frame"]) for w in square["subject_consistency"]["windows"]] == [(0, 8), (8, 16), (12, 20)]
    # clip_score uses the 10 s text window: one window over the whole clip
    assert len(square["clip_score"]["windows"]) == 1
    assert -1.0 <= square["clip_score"]["value"] <= 1.0

    # clip_score = mean cosine(frame, text) over the 8 middle frames, recomputed from the saved model
    from transformers import AutoTokenizer, CLIPModel

    from sfpp.evaluate.video import read_video

    frames, _ = read_video(run / "square.mp4")
    model = CLIPModel.from_pretrained(weights_dir / vb.CLIP_B32_DIR).eval()
    tok = AutoTokenizer.from_pretrained(weights_dir / vb.CLIP_B32_DIR)
    with torch.no_grad():
        img = vb._features(model.get_image_features(pixel_values=vb.clip_transform(frames[vb.middle_frame_indices(8, 20)], 64, uint8=True)))
        enc = tok(["a red square"], return_tensors="pt")
        txt = vb._features(model.get_text_features(**enc))
    expected = torch.nn.functional.cosine_similarity(img, txt).mean().item()
    assert square["clip_score"]["value"] == pytest.approx(expected, abs=1e-5)
    other = evaluate_runs([run], EvaluateConfig(metrics=("clip_score",), weights_dir=weights_dir,
                                                prompts_file=None))  # cached: same value
    assert other.runs[0]["videos"][1]["metrics"]["clip_score"]["cached"] is True

    # aesthetic = mean over frames of (3 * e5 . normalised L/14 embedding + 5.5) / 10
    l14 = CLIPModel.from_pretrained(weights_dir / vb.CLIP_L14_DIR).eval()
    with torch.no_grad():
        emb = torch.nn.functional.normalize(vb._features(l14.get_image_features(pixel_values=vb.clip_transform(frames, 56, uint8=False))), dim=-1)
    per_window = [float(((3.0 * emb[s:e, 5] + 5.5) / 10).mean()) for s, e in [(0, 8), (8, 16), (12, 20)]]
    assert square["aesthetic_quality"]["value"] == pytest.approx(np.mean(per_window), abs=1e-5)
    assert 0.5 < square["aesthetic_quality"]["value"] < 0.6

    # aggregates never mix: framewise quality needs imaging_quality, which was not asked for
    assert ev.runs[0]["aggregates"]["framewise_quality"] is None


def test_raft_loads_vbench_file_and_refuses_others(tmp_path):
    """dynamic_degree reads VBench's raft_model/models/raft-things.pth (the RAFT authors' weights,
    DataParallel 'module.' names) with weights_only; torchvision's RAFT file is not read."""
    from sfpp.evaluate.raft import RAFT

    torch.manual_seed(0)
    ref = RAFT().eval()
    (tmp_path / vb.RAFT_FILE).parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, tmp_path / vb.RAFT_FILE)
    model = vb.VBenchModels(tmp_path).raft()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    # files saved without BatchNorm's batch counters load too
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / vb.RAFT_FILE)
    assert isinstance(vb.VBenchModels(tmp_path).raft(), RAFT)
    with pytest.raises(SfppError, match="at least 128x128"):
        vb.dynamic_degree(vb.VBenchModels(tmp_path), static_video(h=75, w=109, n=9), 8.0, iters=2)
    torch.save({"fnet.conv1.weight": torch.zeros(1)}, tmp_path / vb.RAFT_FILE)
    with pytest.raises(SfppError, match="is not RAFT's raft-things.pth"):
        vb.VBenchModels(tmp_path).raft()
    # only torchvision's file: named as not VBench's, and the fetch command given
    other = tmp_path / "tv"
    (other / vb.TORCHVISION_RAFT_FILE).parent.mkdir(parents=True)
    (other / vb.TORCHVISION_RAFT_FILE).write_bytes(b"x")
    with pytest.raises(SfppError) as e:
        vb.check_weights(other, ["dynamic_degree"])
    assert "raft_model/models/raft-things.pth" in str(e.value) and "models.zip" in str(e.value)
    assert "torchvision's RAFT" in str(e.value)


def test_raft_forward_on_small_frames_is_deterministic_and_padded(tmp_path, one_thread):
    """RAFT at its minimum size: a 123x131 pair is replicate-padded to 128x136 and gives per-pair values."""
    from sfpp.evaluate.raft import RAFT

    torch.manual_seed(0)
    (tmp_path / vb.RAFT_FILE).parent.mkdir(parents=True)
    torch.save(RAFT().state_dict(), tmp_path / vb.RAFT_FILE)
    models = vb.VBenchModels(tmp_path)
    frames = moving_square_video(h=123, w=131, n=2)
    a = vb.raft_motion(models, frames, 8.0, iters=2)
    assert len(a) == 1 and np.isfinite(a[0]) and a == vb.raft_motion(models, frames, 8.0, iters=2)


def test_musiq_without_pyiqa_is_a_clear_error(tmp_path):
    try:
        import pyiqa  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    else:
        pytest.skip("pyiqa is installed")
    (tmp_path / vb.MUSIQ_FILE).parent.mkdir(parents=True)
    (tmp_path / vb.MUSIQ_FILE).write_bytes(b"")
    with pytest.raises(SfppError, match=r"pip install 'sfpp\[musiq\]'"):
        vb.VBenchModels(tmp_path).musiq()


class _FlowStub(torch.nn.Module):
    """Stands in for RAFT: a flow of known magnitude on 10 % of the (padded) frame, zero elsewhere,
    so the top-5 % mean is exactly `speed`."""

    def __init__(self, speed: float = 0.0):
        super().__init__()
        self.speed = speed
        self.calls = []

    def forward(self, a, b, iters=20):
        self.calls.append((tuple(a.shape), float(a.min()), float(a.max()), iters))
        flow = torch.zeros(1, 2, a.shape[2], a.shape[3])
        flow[:, 0, : a.shape[2] // 10 + 1] = self.speed
        return flow


@pytest.mark.parametrize("speed,moving,calls", [(3.05, 0.0, 15), (3.10, 1.0, 4)])
def test_dynamic_degree_sampling_and_thresholds(tmp_path, monkeypatch, speed, moving, calls):
    stub = _FlowStub(speed)
    models = vb.VBenchModels(tmp_path)
    monkeypatch.setattr(models, "raft", lambda: stub)
    frames = moving_square_video(h=131, w=203, n=32, speed=2)
    # 16 fps -> every 2nd frame (16 sampled, count_num 4); threshold 6 * 131/256 = 3.07 px
    assert vb.dynamic_degree(models, frames, 16.0) == moving
    assert len(stub.calls) == calls  # stops once count_num pairs moved
    shape, lo, hi, iters = stub.calls[0]
    assert shape == (1, 3, 136, 208)  # padded to multiples of 8
    assert 0 <= lo < hi <= 255 and iters == 20  # 0-255 frames: RAFT scales them itself
    # two sampled frames: round(4 * 2/16) = 0 pairs needed, VBench calls any such clip moving
    assert vb.dynamic_degree(models, frames[:3], 16.0) == 1.0
    assert vb.dynamic_degree(models, frames[:1], 16.0) != vb.dynamic_degree(models, frames[:1], 16.0)  # NaN


def _pyiqa_available() -> bool:
    try:
        from pyiqa.archs.musiq_arch import MUSIQ  # noqa: F401
    except Exception:  # noqa: BLE001 - pyiqa needs torchvision and scipy
        return False
    return True


@pytest.mark.skipif(not _pyiqa_available(), reason="pyiqa (optional extra) is not installed")
def test_musiq_imaging_quality_loads_vbench_file_and_matches_vbench_transform(tmp_path):
    """A random-initialised MUSIQ saved under VBench's file name: loaded safely (weights_only), frames
    resized with VBench's 'longer' rule (torchvision Resize, antialias off) and scored /100."""
    from pyiqa.archs.musiq_arch import MUSIQ
    from torchvision import transforms

    torch.manual_seed(0)
    ref = MUSIQ(pretrained=False).eval()
    (tmp_path / vb.MUSIQ_FILE).parent.mkdir(parents=True)
    torch.save({"params": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / vb.MUSIQ_FILE)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 40, 600, 3)).astype(np.uint8)  # longer side 600 > 512: resized
    got = vb.imaging_quality(vb.VBenchModels(tmp_path), frames)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    scale = 512.0 / 600
    x = transforms.Resize(size=(int(scale * 40), int(scale * 600)), antialias=False)(x) / 255.0
    with torch.no_grad():
        want = float(np.mean([float(ref(x[i : i + 1])) for i in range(2)])) / 100.0
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    # other weights give another score: the file really is what is scored
    torch.manual_seed(1)
    other = MUSIQ(pretrained=False)
    torch.save(other.state_dict(), tmp_path / vb.MUSIQ_FILE)
    assert vb.imaging_quality(vb.VBenchModels(tmp_path), frames) != pytest.approx(got, rel=1e-6)
    # a wrong file is one clear error
    torch.save({"nope": torch.zeros(1)}, tmp_path / vb.MUSIQ_FILE)
    with pytest.raises(SfppError, match="not a MUSIQ checkpoint"):
        vb.VBenchModels(tmp_path).musiq()


# ---- motion_smoothness (AMT-S) -----------------------------------------------------------------
@pytest.fixture
def one_thread():
    """AMT-S on one 128x128 pair is ~0.1 s on one thread; a second thread only adds contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _seeded_amt_state(model: torch.nn.Module) -> dict:
    """Deterministic weights of a sensible scale (fan-in scaled convolutions, PReLU slopes near 0.25)."""
    import math

    g = torch.Generator().manual_seed(1234)
    sd = {}
    for k, v in model.state_dict().items():
        if v.ndim >= 2:
            fan_in = v[0].numel() if "convblock.2" not in k else v.shape[0] * v.shape[2] * v.shape[3] / 4
            sd[k] = 0.5 * torch.randn(v.shape, generator=g) / math.sqrt(fan_in)
        elif k.endswith("bias"):
            sd[k] = 0.05 * torch.randn(v.shape, generator=g)
        else:
            sd[k] = 0.25 + 0.05 * torch.randn(v.shape, generator=g)
    return sd


def _save_amt(root, state: dict, *, nest: bool = True):
    (root / vb.AMT_FILE).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 299, "state_dict": state} if nest else state, root / vb.AMT_FILE)
    return root


def test_amt_s_has_the_official_checkpoint_layout():
    import hashlib

    from sfpp.evaluate.amt import AMTS

    sd = AMTS().state_dict()
    # names and shapes of the 213 tensors in amt-s.pth (2,990,543 parameters, ~12 MB), as produced by
    # the official networks/AMT-S.py; the digest pins the whole list, the asserts show a few entries
    assert len(sd) == 213 and sum(v.numel() for v in sd.values()) == 2_990_543
    for name, shape in [
        ("feat_encoder.layer2.0.downsample.0.weight", (64, 32, 1, 1)),
        ("feat_encoder.conv2.weight", (84, 96, 1, 1)),
        ("encoder.pyramid4.0.0.weight", (56, 44, 3, 3)),
        ("encoder.pyramid1.1.1.weight", (20,)),
        ("decoder4.convblock.0.0.weight", (112, 113, 3, 3)),
        ("decoder1.convblock.2.weight", (60, 24, 4, 4)),
        ("update2.gru.0.weight", (76, 92, 3, 3)),
        ("update3.feat_head.2.weight", (32, 76, 3, 3)),
        ("comb_block.1.weight", (18,)),
    ]:
        assert tuple(sd[name].shape) == shape, name
    layout = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
    assert hashlib.sha256(layout.encode()).hexdigest() == "5c68373907b1b49375bfbd27b6d268777c74c8fee1847216a35ae4b9c450c510"


def test_amt_s_forward_matches_reference_values(one_thread):
    """Values produced by the official AMT-S code with the same seeded weights and inputs (computed
    once outside the repo, where sfpp's network matched it bit for bit)."""
    from sfpp.evaluate.amt import AMTS

    model = AMTS().eval()
    model.load_state_dict(_seeded_amt_state(model), strict=True)
    y, x = torch.meshgrid(torch.arange(128.0), torch.arange(144.0), indexing="ij")
    img0 = (0.5 + 0.4 * torch.sin(x / 9 + y / 13)).expand(1, 3, -1, -1).clone()
    img0[:, 1] = 0.5 + 0.4 * torch.cos(x / 7 - y / 11)
    img1 = torch.roll(img0, shifts=(2, 3), dims=(2, 3))
    with torch.no_grad():
        out = model(img0, img1, 0.5)
    assert out.shape == (1, 3, 128, 144)
    assert out.mean().item() == pytest.approx(0.5178141593933105, abs=1e-4)
    assert out.std().item() == pytest.approx(0.26828286051750183, abs=1e-4)
    for (c, i, j), want in [((0, 0, 0), 0.5767298340797424), ((1, 64, 72), 0.3906766176223755),
                            ((2, 127, 143), 0.5709123611450195), ((0, 31, 100), 0.7847933769226074),
                            ((0, 5, 9), 0.8923819661140442), ((2, 100, 120), 0.825654149055481)]:
        assert out[0, c, i, j].item() == pytest.approx(want, abs=1e-4), (c, i, j)


def test_amt_loads_vbench_file_pads_to_16_and_interpolates(tmp_path, one_thread):
    from sfpp.evaluate.amt import AMTS

    state = _seeded_amt_state(AMTS())
    models = vb.VBenchModels(_save_amt(tmp_path, state))
    model = models.amt()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # weights came from the file
    seen = []
    model.register_forward_hook(lambda mod, args, kwargs, out: seen.append((args, kwargs, out)), with_kwargs=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 115, 121, 3)).astype(np.uint8)
    mids = models.amt_midpoints(frames)
    assert mids.shape == (2, 115, 121, 3) and mids.dtype == np.uint8
    # one pair per call, replicate-padded to 128x128: 13 rows (6 above, 7 below), 7 columns (3 left, 4 right)
    assert len(seen) == 2
    (a, b, t), kw, pred = seen[1]
    assert a.shape == b.shape == (1, 3, 128, 128) and t == 0.5 and kw == {"scale_factor": 1.0}
    x = torch.from_numpy(frames[1:2]).permute(0, 3, 1, 2).float() / 255.0
    assert torch.equal(a, torch.nn.functional.pad(x, (3, 4, 6, 7), mode="replicate"))
    assert torch.equal(a[0, :, 6:121, 3:124], x[0])
    assert torch.equal(b[0, :, 6:121, 3:124], torch.from_numpy(frames[2]).permute(2, 0, 1).float() / 255.0)
    # the crop of the network output, x255, truncated (not rounded) to uint8
    crop = pred[0, :, 6:121, 3:124]
    assert np.array_equal(mids[1], (crop * 255).permute(1, 2, 0).numpy().clip(0, 255).astype(np.uint8))
    assert not np.array_equal(mids[1], (crop * 255).round().permute(1, 2, 0).numpy().clip(0, 255).astype(np.uint8))
    # batching pairs gives the same frames up to float rounding
    batched = vb.VBenchModels(tmp_path, amt_batch=2).amt_midpoints(frames)
    assert np.abs(batched.astype(int) - mids.astype(int)).max() <= 1


def test_amt_checkpoint_variants_and_errors(tmp_path):
    from sfpp.evaluate.amt import AMTS

    state = AMTS().state_dict()
    # a bare state dict with DataParallel's prefix also loads
    _save_amt(tmp_path, {f"module.{k}": v for k, v in state.items()}, nest=False)
    assert isinstance(vb.VBenchModels(tmp_path).amt(), AMTS)
    # a missing file is listed with where to get it, before any work
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SfppError) as e:
        vb.check_weights(empty, ["motion_smoothness"])
    assert "amt_model/amt-s.pth" in str(e.value) and "hf download lalala125/AMT amt-s.pth" in str(e.value)
    with pytest.raises(SfppError, match="amt-s.pth is missing; fetch it with: hf download lalala125/AMT"):
        vb.VBenchModels(empty).amt()
    # not a checkpoint, another network, a wrong shape: one clear line each
    (tmp_path / vb.AMT_FILE).write_bytes(b"not a torch file")
    with pytest.raises(SfppError, match=r"cannot read .*amt-s.pth \(.*\); re-download it"):
        vb.VBenchModels(tmp_path).amt()
    _save_amt(tmp_path, {"conv.weight": torch.zeros(3, 3)})
    with pytest.raises(SfppError, match=r"is not an AMT-S checkpoint \(213 tensors missing, 1 unexpected") as e:
        vb.VBenchModels(tmp_path).amt()
    assert "\n" not in str(e.value)
    bad = dict(state)
    bad["comb_block.2.weight"] = torch.zeros(3, 18, 5, 5)
    _save_amt(tmp_path, bad)
    with pytest.raises(SfppError, match=r"comb_block.2.weight has shape \(3, 18, 5, 5\), expected \(3, 18, 3, 3\)"):
        vb.VBenchModels(tmp_path).amt()


def test_amt_rejects_frames_too_small_for_its_correlation_pyramid(tmp_path, one_thread):
    from sfpp.evaluate.amt import AMTS

    models = vb.VBenchModels(_save_amt(tmp_path, AMTS().state_dict()))
    with pytest.raises(SfppError, match="at least 113x113 pixels, got 112x300"):
        models.amt_midpoints(np.zeros((3, 112, 300, 3), np.uint8))


class _FakeMidpoints:
    """Stands in for AMT-S: returns the real odd frames of `video` plus a known offset per midpoint."""

    def __init__(self, video: np.ndarray, offsets):
        self.video, self.offsets, self.inputs = video, offsets, []

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        self.inputs.append(inputs.copy())
        n = len(inputs) - 1
        odd = self.video[1::2][:n].astype(np.int16)
        return (odd + np.asarray(self.offsets[:n], np.int16)[:, None, None, None]).astype(np.uint8)


@pytest.mark.parametrize("n_frames", [9, 8])
def test_motion_smoothness_formula_and_sampling(tmp_path, n_frames):
    rng = np.random.default_rng(n_frames)
    video = rng.integers(10, 200, (n_frames, 6, 7, 3)).astype(np.uint8)
    models = vb.VBenchModels(tmp_path)
    # perfect interpolation of the odd frames scores exactly 1; the inputs are frames 0, 2, 4, ...
    models.amt_midpoints = fake = _FakeMidpoints(video, [0] * 4)
    assert vb.motion_smoothness(models, video) == 1.0
    assert np.array_equal(fake.inputs[0], video[0::2])
    # an error of k grey levels everywhere scores exactly 1 - k/255
    models.amt_midpoints = _FakeMidpoints(video, [7] * 4)
    assert vb.motion_smoothness(models, video) == (255.0 - 7) / 255.0
    # per-midpoint errors are averaged over the midpoints: 9 frames -> 4 midpoints, 8 frames -> 3
    # (frame 7 of 8 has no even frame after it and is not scored, as in VBench)
    offsets = [1, 2, 6, 11]
    models.amt_midpoints = _FakeMidpoints(video, offsets)
    n_mid = (n_frames - 1) // 2
    assert vb.motion_smoothness(models, video) == pytest.approx(1 - np.mean(offsets[:n_mid]) / 255.0, abs=1e-12)
    # a midpoint compared with the wrong real frame would not score 1
    models.amt_midpoints = lambda inputs: video[0::2][: len(inputs) - 1]
    assert vb.motion_smoothness(models, video) < 0.9
    # too short to interpolate anything
    assert np.isnan(vb.motion_smoothness(models, video[:2]))


def test_motion_smoothness_end_to_end_with_random_amt(tmp_path, one_thread):
    from sfpp.evaluate.amt import AMTS
    from sfpp.evaluate.video import read_video

    weights = _save_amt(tmp_path / "w", _seeded_amt_state(AMTS()))
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "square.mp4", moving_square_video(h=114, w=130, n=6, speed=2), 3)
    # 1 s windows of 3 frames: each interpolates frame 1 of its window from frames 0 and 2
    ev = evaluate_runs([run], EvaluateConfig(metrics=("motion_smoothness",), weights_dir=weights, window_s=1.0))
    assert ev.errors == []
    ms = ev.runs[0]["videos"][0]["metrics"]["motion_smoothness"]
    assert [(w["start_frame"], w["end_frame"]) for w in ms["windows"]] == [(0, 3), (3, 6)]
    frames, _ = read_video(run / "square.mp4")
    models = vb.VBenchModels(weights)
    want = [vb.motion_smoothness(models, frames[s:e]) for s, e in [(0, 3), (3, 6)]]
    assert [w["value"] for w in ms["windows"]] == pytest.approx(want, abs=1e-12)
    assert 0.0 < ms["value"] < 1.0 and ms["value"] == pytest.approx(np.mean(want))
    assert ev.metrics == ("motion_smoothness",)


def test_amt_scale_follows_vbench_vram_rule(monkeypatch):
    from types import SimpleNamespace

    assert vb.amt_scale(2160, 3840, "cpu") == 1.0  # VBench never shrinks on CPU
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=4 * 1024**3))
    # 4 GiB: 512*1024/(720*1280) * sqrt((4096-2500)/1500) = 0.587 -> 16 / floor(16 / sqrt(0.587)) = 16/20
    assert vb.amt_scale(720, 1280, "cuda") == pytest.approx(0.8)
    assert vb.amt_scale(480, 832, "cuda") == 1.0


# ---- overall_consistency (ViCLIP) ---------------------------------------------------------------
# A tiny CLIP BPE vocabulary: header line, then merges by rank. The vocabulary built from it has
# the 256 byte symbols, the same with '</w>', one token per merge, then the two specials (522).
TINY_MERGES = ["t h", "th e</w>", "r e", "re d</w>", "q u", "s qu", "r e</w>", "a re</w>"]
TINY_VICLIP = vc.ViCLIPConfig(image_size=28, patch_size=14, num_frames=8, vision_width=64, vision_layers=2,
                              vision_heads=1, text_width=64, text_layers=2, text_heads=1, context_length=32,
                              vocab_size=512 + len(TINY_MERGES) + 2, embed_dim=16)


def _write_bpe(path, merges=TINY_MERGES):
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(["#version: 0.2", *merges]))
    return path


def _seeded_viclip_state(model: torch.nn.Module) -> dict:
    """Deterministic weights of a sensible scale (layer-norm gains near 1)."""
    g = torch.Generator().manual_seed(1234)
    sd = {}
    for k, v in model.state_dict().items():
        noise = torch.randn(v.shape, generator=g)
        if k.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
            sd[k] = 1.0 + 0.1 * noise
        else:
            sd[k] = 0.1 * noise if v.ndim >= 2 else 0.05 * noise
    return sd


def _save_viclip(root, state: dict, *, nest: bool = True, merges=TINY_MERGES):
    (root / vb.VICLIP_FILE).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state} if nest else state, root / vb.VICLIP_FILE)
    _write_bpe(root / vb.VICLIP_VOCAB, merges)
    return root


def _reference_video() -> torch.Tensor:
    t, c = torch.arange(8.0).view(8, 1, 1, 1), torch.arange(3.0).view(1, 3, 1, 1)
    y, x = torch.arange(28.0).view(1, 1, 28, 1), torch.arange(28.0).view(1, 1, 1, 28)
    return torch.sin(0.3 * x + 0.2 * y + 0.5 * c + 0.4 * t).unsqueeze(0)  # (1, 8, 3, 28, 28)


def _reference_ids() -> torch.Tensor:
    ids = torch.zeros(2, 32, dtype=torch.long)
    ids[0, :7] = torch.tensor([520, 513, 515, 517, 519, 256, 521])  # "the red square!"
    ids[1, :10] = torch.tensor([520, 518, 519, 3, 4, 5, 6, 7, 8, 521])
    return ids


def test_viclip_has_the_released_checkpoint_layout():
    import hashlib

    with torch.device("meta"):
        sd = vc.ViCLIP().state_dict()
    # names and shapes of the 447 tensors of ViClip-InternVid-10M-FLT.pth's 'model' (427,590,145
    # parameters, 1.71 GB in fp32) as the official ViCLIP code builds them; the digest pins the list
    assert len(sd) == 447 and sum(v.numel() for v in sd.values()) == 427_590_145
    for name, shape in [
        ("temp", ()),
        ("vision_encoder.conv1.weight", (1024, 3, 1, 14, 14)),
        ("vision_encoder.positional_embedding", (257, 1024)),
        ("vision_encoder.temporal_positional_embedding", (1, 8, 1024)),
        ("vision_encoder.transformer.resblocks.23.attn.in_proj_weight", (3072, 1024)),
        ("vision_encoder.transformer.resblocks.0.mlp.c_fc.weight", (4096, 1024)),
        ("vision_encoder.proj", (1024, 768)),
        ("text_encoder.token_embedding.weight", (49408, 768)),
        ("text_encoder.positional_embedding", (32, 768)),  # ViCLIP reads 32 tokens, not CLIP's 77
        ("text_encoder.transformer.resblocks.11.attn.out_proj.weight", (768, 768)),
        ("text_encoder.text_projection", (768, 768)),
    ]:
        assert tuple(sd[name].shape) == shape, name
    assert vc.ViCLIPConfig.from_state_dict(sd) == vc.ViCLIPConfig()
    layout = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(sd.items()))
    assert hashlib.sha256(layout.encode()).hexdigest() == "dd352987f58d29714d9e99214394b4b0d1584d2318e6d31c7a04e15d35e19f04"


REF_VIDEO = [0.415603, -0.0366524, -0.0168741, 0.4721121, -1.1511087, 0.0595705, 0.4002401, 0.4674884, -0.3703103,
             0.4292611, -0.1427514, -0.712109, 1.3644713, -0.8923349, 1.7665968, 0.888922]
REF_TEXT0 = [0.6378813, -0.4447105, -2.1034181, -1.2792099, 0.5134116, 0.6972304, 0.578379, -0.4208206, 0.0520531,
             -0.9627951, -0.067114, -0.6335292, -0.9433236, 0.9145982, -0.2987709, 0.5129596]
REF_TEXT1 = [0.1043572, 0.1372372, -2.2135317, -1.1806312, 0.6369632, 0.0209367, 1.0259163, -1.0497272, 0.4404325,
             -0.6678447, 0.8294956, -0.0472475, -1.1355978, 0.4609566, -0.7319995, -0.2801601]
REF_SIM = [-0.28374141, -0.49200276]  # cosine(video, text 0), cosine(video, text 1)


def test_viclip_forward_matches_reference_values(one_thread):
    """Values produced by the official ViCLIP code (VBench's third_party/ViCLIP) with the same seeded
    weights and inputs (computed once outside the repo, where sfpp's network matched it exactly)."""
    model = vc.ViCLIP(TINY_VICLIP).eval()
    model.load_state_dict(_seeded_viclip_state(model), strict=True)
    with torch.no_grad():
        video = model.encode_vision(_reference_video())
        text = model.encode_text(_reference_ids())
        sim = model.similarity(_reference_video(), _reference_ids())
    assert video.shape == (1, 16) and text.shape == (2, 16)
    assert video[0].tolist() == pytest.approx(REF_VIDEO, abs=1e-5)
    assert text[0].tolist() == pytest.approx(REF_TEXT0, abs=1e-5)
    assert text[1].tolist() == pytest.approx(REF_TEXT1, abs=1e-5)
    assert sim[0].tolist() == pytest.approx(REF_SIM, abs=1e-6)
    # a single image (T=1) takes the mean of the frame embeddings, as in ViCLIP (reference values too)
    with torch.no_grad():
        image = model.encode_vision(_reference_video()[:, 2:3])
    assert image[0, :6].tolist() == pytest.approx([0.5269981, -0.0488675, 0.1090558, 0.5892894, -1.188242, -0.0118874],
                                                  abs=1e-5)
    with pytest.raises(ValueError, match="built for 8 frames"):
        model.encode_vision(_reference_video()[:, :5])


def test_viclip_tokenizer_known_answers(tmp_path):
    tok = vc.ViCLIPTokenizer(_write_bpe(tmp_path / "bpe.txt.gz"))
    v = tok.vocab
    assert len(tok) == 522 and (tok.sot, tok.eot) == (520, 521)
    # the byte-symbol table: printable Latin-1 bytes first, then the rest from U+0100 on (space is 'Ġ')
    sym = vc.byte_symbols()
    assert (v["!"], v["~"], v["!</w>"], v[sym[0]], v[sym[32]], v[sym[255]]) == (0, 93, 256, 188, 220, 187)
    assert sym[32] == "\u0120" and sym[0] == "\u0100" and sym[173] == chr(256 + 67)
    assert [v[t] for t in ("th", "the</w>", "re", "red</w>", "qu", "squ", "re</w>", "are</w>")] == list(range(512, 520))
    ids = tok("The RED square!", 32)
    assert ids.shape == (1, 32) and ids.dtype == torch.long
    assert ids[0, :7].tolist() == [520, v["the</w>"], v["red</w>"], v["squ"], v["are</w>"], v["!</w>"], 521]
    assert ids[0, 7:].eq(0).all()  # zero-padded, as ViCLIP's tokenize
    # CLIP's cleanup: whitespace runs, case, HTML entities, curly quotes (ftfy, or sfpp's fallback)
    assert tok.encode("  the\n\tRED   square! ") == tok.encode("the red square!")
    assert tok.encode("Don\u2019t &amp; \u201cit\u201d") == tok.encode("don't & \"it\"")
    assert tok.encode("don't") == [v["d"], v["o"], v["n</w>"], v["'"], v["t</w>"]]  # 's 't ... split off
    assert tok.encode("é1") == [v[sym[0xC3]], v[sym[0xA9] + "</w>"], v["1</w>"]]  # UTF-8 bytes, digits alone
    # too long: cut to the context, the last kept token becomes <|endoftext|>
    long = tok(" ".join(["the"] * 40), 32)[0]
    assert long[0] == 520 and long[31] == 521 and long[1:31].eq(v["the</w>"]).all()
    assert tok(["the", "red red"], 8).tolist() == [[520, 513, 521, 0, 0, 0, 0, 0], [520, 515, 515, 521, 0, 0, 0, 0]]


def _naive_bpe(word: str, ranks: dict) -> list[str]:
    """BPE as defined by CLIP: repeatedly merge (every occurrence, left to right) the best-ranked pair."""
    import itertools

    parts = [*word[:-1], word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get(p, float("inf")), p) for p in itertools.pairwise(parts)]
        rank, best = min(pairs)
        if rank == float("inf"):
            break
        out, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                out.append(parts[i] + parts[i + 1])
                i += 2
            else:
                out.append(parts[i])
                i += 1
        parts = out
    return parts


def test_viclip_tokenizer_bpe_matches_the_reference_algorithm(tmp_path):
    import random

    rng = random.Random(0)
    mids, ends, merges = ["a", "b", "c"], ["a</w>", "b</w>", "c</w>"], []
    while len(merges) < 60:  # random merges built from earlier tokens, like a trained BPE table
        left, right = rng.choice(mids), rng.choice(mids + ends)
        if left + right in mids + ends:
            continue
        merges.append(f"{left} {right}")
        (ends if right.endswith("</w>") else mids).append(left + right)
    tok = vc.ViCLIPTokenizer(_write_bpe(tmp_path / "bpe.txt.gz", merges))
    ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
    names = {i: t for t, i in tok.vocab.items()}
    for _ in range(300):
        words = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 14))) for _ in range(rng.randint(1, 3))]
        want = [t for w in words for t in _naive_bpe(w, ranks)]
        assert [names[i] for i in tok.encode(" ".join(words))] == want, words


def test_overall_consistency_formula_and_frame_sampling(tmp_path):
    from types import SimpleNamespace

    models = vb.VBenchModels(tmp_path)
    models._loaded["viclip"] = SimpleNamespace(config=TINY_VICLIP)
    seen = []

    def fake_video(frames):
        seen.append(frames.copy())
        return torch.tensor([[3.0, 4.0]]) * 7  # not unit length: the score must normalise
    models.viclip_video_features = fake_video
    models.viclip_text_features = lambda prompt: torch.tensor([[4.0, 3.0]]) * (0.5 if prompt == "a" else -2)
    video = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 3, 3), np.uint8)
    # raw cosine, neither x100 nor softmax: (3*4 + 4*3) / 25
    assert vb.overall_consistency(models, video, "a") == pytest.approx(0.96, abs=1e-7)
    assert vb.overall_consistency(models, video, "b") == pytest.approx(-0.96, abs=1e-7)
    # the 8 "middle" frames of 8 equal intervals; a 5-frame clip repeats its last frame
    assert seen[0][:, 0, 0, 0].tolist() == [0, 3, 5, 8, 10, 13, 15, 18]
    vb.overall_consistency(models, video[:5], "a")
    assert seen[-1][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_overall_consistency_end_to_end_with_tiny_viclip(tmp_path, weights_dir, one_thread):
    from sfpp.evaluate.video import read_video

    models = vb.VBenchModels(weights_dir)
    model = models.viclip()
    assert model.config == TINY_VICLIP  # sizes read off the file
    want_state = _seeded_viclip_state(vc.ViCLIP(TINY_VICLIP))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in want_state.items())  # weights came from the file
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "square.mp4", moving_square_video(h=91, w=167, n=20), 8, sidecar={"prompt": "The red square"})
    write_mp4(run / "still.mp4", static_video(h=75, w=109, n=12), 8, sidecar={"prompt": "squares " * 40})
    ev = evaluate_runs([run], EvaluateConfig(metrics=("overall_consistency",), weights_dir=weights_dir, window_s=1.0))
    assert ev.errors == []
    videos = {vd["name"]: vd["metrics"]["overall_consistency"] for vd in ev.runs[0]["videos"]}
    oc = videos["square"]
    assert len(oc["windows"]) == 1 and (oc["windows"][0]["start_frame"], oc["windows"][0]["end_frame"]) == (0, 20)
    # recomputed by hand: 8 middle frames of 20, clip_transform at the model's 28 px, cosine with the prompt
    frames, _ = read_video(run / "square.mp4")
    tok = vc.ViCLIPTokenizer(weights_dir / vb.VICLIP_VOCAB)
    x = vb.clip_transform(frames[[0, 3, 5, 8, 10, 13, 15, 18]], 28, uint8=True).unsqueeze(0)
    with torch.no_grad():
        want = model.similarity(x, tok("the red square", 32))[0, 0].item()
        other = model.similarity(x, tok("a blue circle", 32))[0, 0].item()
    assert oc["value"] == pytest.approx(want, abs=1e-6) and abs(want - other) > 1e-3  # the prompt matters
    assert oc["details"] == {"prompt_tokens": 4, "prompt_tokens_used": 4, "text_cleanup": vc.text_cleanup_backend()}
    assert videos["still"]["details"]["prompt_tokens_used"] == 30 < videos["still"]["details"]["prompt_tokens"]
    assert ev.runs[0]["summary"]["overall_consistency"]["n_videos"] == 2


def test_vbench_group_gives_text_alignment(tmp_path, weights_dir, monkeypatch, one_thread):
    """`-m vbench` now includes overall_consistency, so the SF++ Text Alignment aggregate is formed."""
    import shutil

    from sfpp.evaluate.amt import AMTS
    from sfpp.evaluate.metrics import resolve_metrics

    assert {"overall_consistency", "clip_score"} <= set(resolve_metrics(["vbench"]))
    root = tmp_path / "w"
    shutil.copytree(weights_dir, root)
    (root / vb.RAFT_FILE).parent.mkdir(parents=True)
    (root / vb.RAFT_FILE).write_bytes(b"")  # never read: RAFT is stubbed
    monkeypatch.setattr(vb.VBenchModels, "raft", lambda self: _FlowStub(10.0))
    _save_amt(root, AMTS().state_dict())
    (root / vb.MUSIQ_FILE).parent.mkdir(parents=True)
    (root / vb.MUSIQ_FILE).write_bytes(b"")  # imaging_quality fails on it: recorded, the rest goes on
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "still.mp4", static_video(h=128, w=131, n=10), 8, sidecar={"prompt": "a quiet room"})
    ev = evaluate_runs([run], EvaluateConfig(metrics=("vbench",), weights_dir=root, window_s=10.0))
    assert {e["metric"] for e in ev.errors} <= {"imaging_quality", "motion_smoothness"}  # pyiqa / frames < 113 px
    s = ev.runs[0]["summary"]
    oc, cs = s["overall_consistency"]["value"], s["clip_score"]["value"]
    assert oc is not None and cs is not None
    assert ev.runs[0]["aggregates"]["text_alignment"] == pytest.approx(100 * (oc + cs) / 2, abs=1e-9)


def test_viclip_checkpoint_variants_and_errors(tmp_path):
    state = _seeded_viclip_state(vc.ViCLIP(TINY_VICLIP))
    # a bare state dict with DataParallel's prefix also loads
    _save_viclip(tmp_path, {f"module.{k}": v for k, v in state.items()}, nest=False)
    assert vb.VBenchModels(tmp_path).viclip().config == TINY_VICLIP
    # missing files are listed with where to get them, before any work
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SfppError) as e:
        vb.check_weights(empty, ["overall_consistency"])
    msg = str(e.value)
    assert "ViCLIP/ViClip-InternVid-10M-FLT.pth" in msg and "ViCLIP/bpe_simple_vocab_16e6.txt.gz" in msg
    assert "hf download OpenGVLab/VBench_Used_Models ViClip-InternVid-10M-FLT.pth" in msg
    assert "hf download OpenGVLab/ViCLIP-L-14-hf bpe_simple_vocab_16e6.txt.gz" in msg
    with pytest.raises(SfppError, match="ViClip-InternVid-10M-FLT.pth is missing; fetch it with: hf download"):
        vb.VBenchModels(empty).viclip()
    with pytest.raises(SfppError, match="bpe_simple_vocab_16e6.txt.gz is missing; fetch it with: hf download"):
        vb.VBenchModels(empty).viclip_tokenizer()

    def load_error(**kw) -> str:
        with pytest.raises(SfppError) as e:
            vb.VBenchModels(tmp_path).viclip()
        assert "\n" not in str(e.value)
        return str(e.value)

    (tmp_path / vb.VICLIP_FILE).write_bytes(b"not a torch file")
    assert "cannot read" in load_error() and "re-download it" in load_error()
    # a pickled object besides tensors is refused (weights_only=True), named in one line
    torch.save({"model": state, "args": _PickledConfig()}, tmp_path / vb.VICLIP_FILE)
    msg = load_error()
    assert "_PickledConfig, which loading with weights_only=True refuses" in msg and "re-save just its 'model'" in msg
    # another network, a wrong shape, an extra tensor
    torch.save({"model": {"conv.weight": torch.zeros(3, 3)}}, tmp_path / vb.VICLIP_FILE)
    assert "is not a ViCLIP checkpoint (no vision_encoder.conv1.weight)" in load_error()
    bad = dict(state)
    bad["vision_encoder.ln_post.weight"] = torch.ones(65)
    torch.save({"model": bad}, tmp_path / vb.VICLIP_FILE)
    assert "vision_encoder.ln_post.weight has shape (65,), expected (64,)" in load_error()
    torch.save({"model": {**state, "extra.weight": torch.zeros(1)}}, tmp_path / vb.VICLIP_FILE)
    assert "0 tensors missing, 1 unexpected, first unexpected extra.weight" in load_error()
    # the vocabulary: not gzip, not merges, or not the vocabulary the checkpoint embeds
    torch.save({"model": state}, tmp_path / vb.VICLIP_FILE)
    (tmp_path / vb.VICLIP_VOCAB).write_bytes(b"plain text")
    with pytest.raises(SfppError, match="is not CLIP's BPE vocabulary"):
        vb.VBenchModels(tmp_path).viclip_tokenizer()
    _write_bpe(tmp_path / vb.VICLIP_VOCAB, ["t h", "one two three"])
    with pytest.raises(SfppError, match="is not CLIP's BPE vocabulary .*line 3"):
        vb.VBenchModels(tmp_path).viclip_tokenizer()
    _write_bpe(tmp_path / vb.VICLIP_VOCAB, TINY_MERGES[:5])
    with pytest.raises(SfppError, match="has 519 tokens but ViCLIP/ViClip-InternVid-10M-FLT.pth embeds 522"):
        vb.overall_consistency(vb.VBenchModels(tmp_path), np.zeros((8, 28, 28, 3), np.uint8), "the red square")


class _PickledConfig:
    """Stands in for a training config pickled beside the weights."""
