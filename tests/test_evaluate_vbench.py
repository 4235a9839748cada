"""VBench metrics end to end with tiny random-initialised models saved in the --weights-dir layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evaluate_fixtures import moving_square_video, static_video, write_mp4

from sfpp.errors import SfppError
from sfpp.evaluate import EvaluateConfig, evaluate_runs
from sfpp.evaluate import vbench as vb

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
    return root


def test_consistency_formula_on_known_features():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    # i=1: prev 0, first 0 -> 0 ; i=2: prev .7071, first .7071 -> .7071 ; i=3: prev -.7071->0, first -1->0 -> 0
    assert vb.consistency_score(f) == pytest.approx(np.sqrt(0.5) / 3, abs=1e-6)
    assert vb.consistency_score(f[:1]) != vb.consistency_score(f[:1])  # NaN for a single frame


def test_middle_frame_indices_match_vbench():
    assert vb.middle_frame_indices(8, 16) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert vb.middle_frame_indices(8, 20) == [0, 3, 5, 8, 10, 13, 15, 18]


def test_transforms_shapes_and_normalisation():
    frames = np.full((3, 75, 109, 3), 255, dtype=np.uint8)
    x = vb.clip_transform(frames, 224)
    assert x.shape == (3, 3, 224, 224)
    assert torch.allclose(x[:, :, 100, 100], (1 - torch.tensor(vb.CLIP_MEAN)) / torch.tensor(vb.CLIP_STD), atol=1e-4)
    d = vb.dino_transform(frames)
    assert d.shape == (3, 3, 224, int(224 * 109 / 75))  # short side 224, no crop, width follows the aspect


def test_missing_weights_are_listed(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(SfppError) as e:
        vb.check_weights(tmp_path / "w", ["subject_consistency", "aesthetic_quality"])
    msg = str(e.value)
    assert "dino_model/dino-vitb16/config.json" in msg
    assert "clip_model/clip-vit-large-patch14/model.safetensors" in msg
    assert "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth" in msg
    assert "hf download facebook/dino-vitb16" in msg
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
        img = vb._features(model.get_image_features(pixel_values=vb.clip_transform(frames[vb.middle_frame_indices(8, 20)], 64)))
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
        emb = torch.nn.functional.normalize(vb._features(l14.get_image_features(pixel_values=vb.clip_transform(frames, 56))), dim=-1)
    per_window = [float(((3.0 * emb[s:e, 5] + 5.5) / 10).mean()) for s, e in [(0, 8), (8, 16), (12, 20)]]
    assert square["aesthetic_quality"]["value"] == pytest.approx(np.mean(per_window), abs=1e-5)
    assert 0.5 < square["aesthetic_quality"]["value"] < 0.6

    # aggregates never mix: framewise quality needs imaging_quality, which was not asked for
    assert ev.runs[0]["aggregates"]["framewise_quality"] is None


def test_raft_dynamic_degree_needs_torchvision(tmp_path, weights_dir):
    if vb.torchvision_available():
        pytest.skip("torchvision imports here; covered by test_raft_dynamic_degree_with_torchvision")
    with pytest.raises(SfppError, match="torchvision") as e:
        vb._import_torchvision_raft()
    assert "dynamic_degree_proxy" in str(e.value)


@pytest.mark.skipif(not vb.torchvision_available(), reason="torchvision does not import beside this torch build")
def test_raft_dynamic_degree_with_torchvision(tmp_path):
    from torchvision.models.optical_flow import raft_large

    root = tmp_path / "w"
    (root / vb.RAFT_FILE).parent.mkdir(parents=True)
    torch.save(raft_large(weights=None).state_dict(), root / vb.RAFT_FILE)
    models = vb.VBenchModels(root)
    frames = static_video(h=123, w=131, n=9)  # padded to 128x136, RAFT's minimum
    assert vb.dynamic_degree(models, frames, 8.0, iters=2) == 0.0  # identical frames: zero flow
    with pytest.raises(SfppError, match="at least 128x128"):
        vb.dynamic_degree(models, static_video(h=75, w=109, n=9), 8.0, iters=2)


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
    """Stands in for torchvision's RAFT where torchvision cannot import: a flow of known magnitude
    on 10 % of the (padded) frame, zero elsewhere, so the top-5 % mean is exactly `speed`."""

    def __init__(self):
        super().__init__()
        self.speed = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, a, b, num_flow_updates=12):
        self.calls.append((tuple(a.shape), float(a.min()), float(a.max()), num_flow_updates))
        flow = torch.zeros(1, 2, a.shape[2], a.shape[3])
        flow[:, 0, : a.shape[2] // 10 + 1] = self.speed
        return [flow]


@pytest.mark.parametrize("speed,moving,calls", [(1.70, 0.0, 15), (1.80, 1.0, 4)])
def test_dynamic_degree_sampling_and_thresholds(tmp_path, monkeypatch, speed, moving, calls):
    stub = _FlowStub()
    with torch.no_grad():
        stub.speed.fill_(speed)
    (tmp_path / vb.RAFT_FILE).parent.mkdir(parents=True)
    torch.save(stub.state_dict(), tmp_path / vb.RAFT_FILE)
    built = []

    def fake_raft_large(weights=None, progress=True):
        built.append(_FlowStub())
        return built[-1]

    monkeypatch.setattr(vb, "_import_torchvision_raft", lambda: fake_raft_large)
    frames = moving_square_video(h=75, w=109, n=32, speed=2)
    # 16 fps -> every 2nd frame (16 sampled, count_num 4); threshold 6 * 75/256 = 1.758 px
    score = vb.dynamic_degree(vb.VBenchModels(tmp_path), frames, 16.0)
    assert score == moving
    model = built[0]
    assert model.speed.item() == pytest.approx(speed)  # weights came from the file
    assert len(model.calls) == calls  # stops once count_num pairs moved
    shape, lo, hi, iters = model.calls[0]
    assert shape == (1, 3, 80, 112)  # padded to multiples of 8
    assert -1.0 <= lo < 0 < hi <= 1.0 and iters == 20


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
