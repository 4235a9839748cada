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
