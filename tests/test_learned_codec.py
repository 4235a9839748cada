"""The learned ToyWorld codec: layouts, training, normalisation, files, resume and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sfpp.toyworld.learned_codec import (
    CodecTrainConfig,
    LearnedCodec,
    LearnedCodecConfig,
    load_codec,
    new_autoencoder,
    save_codec,
    train_codec,
)

TINY = LearnedCodecConfig(channels=4, width=16)


def _cfg(**kw) -> CodecTrainConfig:
    return CodecTrainConfig(**{"steps": 120, "batch_size": 8, "pool_clips": 24, "save_every": 0, "log_every": 20, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("codec")
    torch.set_num_threads(1)
    path = train_codec(_cfg(steps=300), TINY, out)
    return path, out


def test_layouts_and_frame_arithmetic():
    codec = LearnedCodec(TINY, new_autoencoder(TINY))
    video = torch.rand(2, 3, 6, 32, 32) * 2 - 1  # (B, 3, F, H, W)
    with torch.no_grad():
        z = codec.encode(video)
        assert z.shape == (2, 4, 3, 8, 8)  # (B, C, F/2, H/4, W/4)
        assert codec.decode_native(z).shape == (2, 3, 6, 32, 32)
        assert codec.decode(z).shape == (2, 3, 6, 256, 256)
        # each latent frame codes its own 2 pixel frames: changing pixel frames 2-3 moves latent frame 1 only
        v2 = video.clone()
        v2[:, :, 2:4] = -v2[:, :, 2:4]
        dz = (codec.encode(v2) - z).abs().amax(dim=(0, 1, 3, 4))
        z2 = z.clone()
        z2[:, :, 2] += 1.0  # and latent frame 2 decodes to pixel frames 4-5 only
        dx = (codec.decode_native(z2) - codec.decode_native(z)).abs().amax(dim=(0, 1, 3, 4))
    assert dz[0] == 0 and dz[2] == 0 and dz[1] > 0
    assert (dx[:4] == 0).all() and (dx[4:] > 0).all()
    assert codec.latent_frames(7) == 4 and codec.pixel_frames(3) == 6 and codec.spatial_factor == 32
    with pytest.raises(ValueError, match="not divisible"):
        codec.encode(torch.zeros(1, 3, 5, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        codec.decode_native(torch.zeros(1, 5, 1, 8, 8))
    with pytest.raises(ValueError, match="positive integer"):
        LearnedCodecConfig(channels=0)
    shape_only = LearnedCodec(TINY)  # frame arithmetic without weights (presets)
    assert shape_only.latent_frames(7) == 4 and shape_only.spatial_factor == 32 and shape_only.to("cpu") is shape_only
    with pytest.raises(ValueError, match="no weights"):
        shape_only.encode(video)


def test_importing_the_codec_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, sfpp.toyworld.learned_codec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_training_learns_to_reconstruct_and_normalises(trained):
    path, out = trained
    rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 300
    assert rows[-1]["rmse_grey"] < 0.7 * rows[0]["rmse_grey"]  # first row: step 20
    codec = load_codec(path)
    from sfpp.toyworld.world import render_clip, random_scene

    rng = np.random.default_rng(7)
    clip = render_clip(random_scene(rng), 8, rng).frames  # (F, 32, 32, 3) uint8, a scene not in the pool
    video = torch.from_numpy(clip).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # (1, 3, F, H, W)
    untrained = LearnedCodec(TINY, new_autoencoder(TINY))
    with torch.no_grad():
        err = (codec.decode_native(codec.encode(video)) - video).pow(2).mean().sqrt() * 127.5
        err0 = (untrained.decode_native(untrained.encode(video)) - video).pow(2).mean().sqrt() * 127.5
    assert err < 0.5 * err0
    # latents of the training distribution are normalised per channel
    from sfpp.toyworld.learned_codec import _pool

    pool = _pool(_cfg(steps=300), 2)
    clips = torch.from_numpy(pool).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        z = codec.encode(clips)
    assert z.mean(dim=(0, 2, 3, 4)).abs().max() < 0.05
    assert (z.std(dim=(0, 2, 3, 4)) - 1).abs().max() < 0.05


def test_file_round_trip_and_bad_files(trained, tmp_path):
    path, _ = trained
    from sfpp.checkpoints import read_checkpoint_config
    from sfpp.errors import SfppError

    codec = load_codec(path)
    meta = read_checkpoint_config(path)
    assert meta["role"] == "toyworld-codec" and meta["codec"] == {"channels": 4, "frames": 2, "width": 16, "upscale": 8}
    again = load_codec(save_codec(tmp_path / "copy.safetensors", codec))
    z = torch.randn(1, 4, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(codec.decode_native(z), again.decode_native(z))
    with pytest.raises(SfppError, match="does not exist"):
        load_codec(tmp_path / "nope.safetensors")
    from sfpp.checkpoints import save_student

    other = save_student(tmp_path / "student.safetensors", {"w": torch.zeros(2)}, {"model": "toy"})
    with pytest.raises(SfppError, match="not a ToyWorld codec"):
        load_codec(other)


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    full = train_codec(_cfg(steps=40, save_every=20), TINY, tmp_path / "full")
    part = tmp_path / "part"
    train_codec(_cfg(steps=40, save_every=20), TINY, part)
    # simulate a kill after step 20: the state at 20 is there; the finished file and later log rows are not
    (part / "codec.safetensors").unlink()
    from sfpp.errors import SfppError

    with pytest.raises(SfppError, match="--resume"):
        train_codec(_cfg(steps=40, save_every=20), TINY, part)
    with pytest.raises(SfppError, match="other settings"):
        train_codec(_cfg(steps=40, save_every=20, lr=1e-3), TINY, part, resume=True)
    resumed = train_codec(_cfg(steps=40, save_every=20), TINY, part, resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(full)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(ln)["step"] for ln in (part / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 40


def test_cli_train_codec(tmp_path):
    from typer.testing import CliRunner

    from sfpp.cli.main import app

    r = CliRunner().invoke(app, ["toyworld", "train-codec", "--steps", "0", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--steps" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["toyworld", "train-codec", "--channels", "0", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--channels" in r.output
    (tmp_path / "file").write_text("keep me")
    for cmd in ("train-codec", "train-teacher"):
        r = CliRunner().invoke(app, ["toyworld", cmd, "--steps", "5", "--out", str(tmp_path / "file")])
        assert r.exit_code == 2 and "is a file; give a folder" in r.output, r.output
    assert (tmp_path / "file").read_text() == "keep me"
    for bad in ("0", "-3", "1000000"):
        r = CliRunner().invoke(app, ["toyworld", "train-teacher", "--pool-clips", bad, "--out", str(tmp_path / "t")])
        assert r.exit_code == 2 and "--pool-clips must be between" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "t").exists()
    r = CliRunner().invoke(app, ["toyworld", "train-teacher", "--arch", "v4", "--steps", "1", "--batch-size", "1",
                                 "--pool-clips", "3", "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    from sfpp.checkpoints import read_checkpoint_config

    train = read_checkpoint_config(tmp_path / "t" / "teacher.safetensors")["train"]
    assert (train["pool_clips"], train["arch"]) == (3, "v4")


def test_the_shipped_v3_codec_keeps_what_the_oracle_reads():
    """Its ceiling: on held-out scenes (never rendered for its training) the oracle reads from the codec's
    reconstructions what it reads from the frames themselves."""
    from sfpp.toyworld.model import TOY3_CODEC_CHANNELS, latent_size, toy_codec
    from sfpp.toyworld.oracle import score_video
    from sfpp.toyworld.teacher import held_out_prompts
    from sfpp.toyworld.world import parse_prompt, render_clip

    codec = toy_codec("v3")
    assert codec.channels == TOY3_CODEC_CHANNELS and latent_size(codec) == 8
    rng = np.random.default_rng(11)
    errs, shapes, shapes_gt, colours = [], [], [], []
    for p in held_out_prompts()[:10]:
        clip = render_clip(parse_prompt(p), 32, rng).frames  # (F, 32, 32, 3)
        video = torch.from_numpy(clip).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # (1, 3, F, H, W)
        with torch.no_grad():
            rec = codec.decode_native(codec.encode(video))
        errs.append(float((rec - video).pow(2).mean().sqrt()) * 127.5)
        frames = ((rec[0].permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        o, g = score_video(frames, p, fps=16)["overall"], score_video(clip, p, fps=16)["overall"]
        shapes.append(o["shape_ok"])
        shapes_gt.append(g["shape_ok"])
        colours.append(o["all_colours"])
    assert np.mean(errs) < 8.0, errs  # grey levels RMS
    assert np.mean(colours) > 0.97
    assert np.mean(shapes) > np.mean(shapes_gt) - 0.05, (shapes, shapes_gt)


def test_a_v3_teacher_trains_and_samples_through_the_learned_codec(tmp_path):
    from sfpp.toyworld.teacher import TeacherConfig, load_teacher, sample_teacher, train_teacher

    torch.set_num_threads(1)
    path = train_teacher(TeacherConfig(steps=2, batch_size=2, pool_clips=4, arch="v3", save_every=0, log_every=1),
                         tmp_path / "t")
    model, arch = load_teacher(path)
    assert arch == "v3" and model.config.patch_size == (1, 1, 1) and model.config.in_channels == 16
    clips = sample_teacher(model, ["a red circle moving on a black background"], steps=2, arch="v3")
    assert clips.shape == (1, 12, 32, 32, 3) and clips.dtype == np.uint8


def test_raw_weights_of_a_saved_state_start_another_run(tmp_path):
    """save_raw_weights writes the state's raw model (not the EMA) with the step it holds; --init takes it."""
    from safetensors.torch import load_file

    from sfpp.checkpoints import read_checkpoint_config
    from sfpp.errors import SfppError
    from sfpp.toyworld.teacher import STATE, TeacherConfig, save_raw_weights, train_teacher

    torch.set_num_threads(1)
    cfg = TeacherConfig(steps=3, batch_size=2, pool_clips=4, arch="v3", save_every=2, log_every=1, lr=1e-2)
    train_teacher(cfg, tmp_path / "t")
    raw = save_raw_weights(tmp_path / "t", tmp_path / "raw.safetensors")
    state = torch.load(tmp_path / "t" / STATE, map_location="cpu", weights_only=True)
    got = load_file(str(raw))
    assert set(got) == set(state["model"])
    assert all(torch.equal(got[k], state["model"][k]) for k in got)
    assert any(not torch.equal(got[k], state["ema"][k]) for k in got)  # the raw weights, not the EMA
    meta = read_checkpoint_config(raw)
    # a finished run's state is its last step's
    assert (meta["step"], meta["weights"], meta["model"], meta["role"]) == (3, "raw", "toy-v3", "teacher")
    assert read_checkpoint_config(tmp_path / "t" / "teacher.safetensors")["weights"] == "ema"
    train_teacher(TeacherConfig(steps=1, batch_size=2, pool_clips=4, arch="v3", save_every=0), tmp_path / "u",
                  init=raw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SfppError, match="no train_state.pt"):
        save_raw_weights(tmp_path / "empty", tmp_path / "x.safetensors")


def _swap_prompts():
    return ("a magenta circle and a white triangle bouncing on a black background",
            "a white circle and a magenta triangle bouncing on a black background",  # colours swapped
            "a magenta circle and a white square bouncing on a black background")    # one word changed


def test_v4_text_encoder_tells_swapped_colours_apart():
    """Cross-attention sees the prompt as a set of vectors. With the v1-v3 encoder the two prompts that
    swap colours are (nearly) the same set; v4's are as far apart as prompts that differ by a word, and
    every word keeps its identity."""
    from sfpp.text import encode_prompts
    from sfpp.toyworld.model import TOY_TEXT_LEN, toy_text_encoder, toy_tokenizer

    def set_gap(x, y):  # Hausdorff distance between two sets of token vectors
        d = torch.cdist(x, y)
        return float(torch.maximum(d.min(dim=1).values.max(), d.min(dim=0).values.max()))

    gaps = {}
    for arch in ("v3", "v4"):
        e = encode_prompts(toy_tokenizer(), toy_text_encoder(arch), list(_swap_prompts()), max_length=TOY_TEXT_LEN,
                           device="cpu")
        gaps[arch] = (set_gap(e[0], e[1]), set_gap(e[0], e[2]))
    assert gaps["v3"][0] < 0.1 * gaps["v3"][1]  # the defect v4 fixes: swapped colours encode alike
    assert gaps["v4"][0] > 0.4 * gaps["v4"][1]  # measured: v3 0.04, v4 0.56
    # the shipped weights, only the position bias scaled: v1's encoder is untouched
    a, b = toy_text_encoder("v1").state_dict(), toy_text_encoder("v4").state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all("relative_attention_bias" in k for k in changed)


def test_a_v4_teacher_is_conditioned_on_word_order(tmp_path):
    """Even untrained, a v4 teacher's output moves when two colours swap; a v3 one's barely does."""
    from sfpp.text import encode_prompts
    from sfpp.toyworld.model import TOY_TEXT_LEN, new_toy_transformer, toy_text_encoder, toy_tokenizer

    torch.manual_seed(0)
    x = torch.randn(1, 16, 2, 8, 8)  # (B, C, F, h, w) latents of the learned codec
    ratio = {}
    for arch in ("v3", "v4"):
        model = new_toy_transformer(0, arch)
        e = encode_prompts(toy_tokenizer(), toy_text_encoder(arch), list(_swap_prompts()), max_length=TOY_TEXT_LEN,
                           device="cpu")
        with torch.no_grad():
            out = [model(x, torch.tensor([500.0]), e[i : i + 1], return_dict=False)[0] for i in range(3)]
        ratio[arch] = float((out[0] - out[1]).abs().mean() / (out[0] - out[2]).abs().mean())
    assert ratio["v3"] < 0.1 and ratio["v4"] > 0.3, ratio


def test_a_lit_pool_is_the_unlit_pool_times_each_clips_gain():
    """--light-amplitude trains the codec on the lit world (issue #19): the same scenes and motion, every
    frame scaled by its clip's lighting cycle, so the codec sees exposures the prompt does not pin."""
    from sfpp.toyworld.learned_codec import _pool
    from sfpp.toyworld.world import FPS

    plain = _pool(_cfg(pool_clips=6), 2 * FPS).astype(np.float64)  # (6, 12 * FPS, 32, 32, 3): 12 s clips
    lit = _pool(_cfg(pool_clips=6, light_amplitude=0.15, light_period_s=12.0), 2 * FPS).astype(np.float64)
    assert plain.shape == lit.shape == (6, 12 * FPS, 32, 32, 3)
    # the first clip is the same scene and motion (the phase is drawn after them): frame by frame, the gain
    ratio = lit[0].sum(axis=(1, 2, 3)) / plain[0].sum(axis=(1, 2, 3))  # (frames,)
    assert ratio.min() == pytest.approx(0.85, abs=0.01)  # darkest point of the cycle
    assert 1.03 < ratio.max() < 1.151  # brightest (less than 1.15 overall: saturated pixels clip at 255)
    # every lit clip swings through one 12 s cycle of brightness, from its own phase
    luma = lit.mean(axis=(2, 3, 4))  # (clips, frames)
    assert ((luma.max(axis=1) - luma.min(axis=1)) / luma.mean(axis=1)).min() > 0.2
    spectrum = np.abs(np.fft.rfft(luma - luma.mean(axis=1, keepdims=True), axis=1))
    assert (spectrum.argmax(axis=1) == 1).all()
    assert (luma[:, 0] / luma.mean(axis=1)).std() > 0.02
    assert np.array_equal(_pool(_cfg(pool_clips=6, light_amplitude=0.0), 2 * FPS), plain.astype(np.uint8))


def test_a_run_started_before_the_lighting_options_resumes(tmp_path):
    """A resume state written before `light_amplitude` existed trained the unlit world: it resumes with the
    defaults, and is refused with a lit setting."""
    import torch as _torch

    from sfpp.errors import SfppError
    from sfpp.toyworld.learned_codec import STATE

    out = tmp_path / "run"
    train_codec(_cfg(steps=20, save_every=10), TINY, out)
    (out / "codec.safetensors").unlink()
    state = _torch.load(out / STATE, weights_only=True)
    old = json.loads(state["settings"])
    for k in ("light_amplitude", "light_period_s"):
        del old["train"][k]
    state["settings"] = json.dumps(old, sort_keys=True)
    _torch.save(state, out / STATE)
    with pytest.raises(SfppError, match="other settings"):
        train_codec(_cfg(steps=20, save_every=10, light_amplitude=0.1), TINY, out, resume=True)
    assert train_codec(_cfg(steps=20, save_every=10), TINY, out, resume=True).is_file()


def test_cli_train_codec_on_the_lit_world(tmp_path):
    from typer.testing import CliRunner

    from sfpp.checkpoints import read_checkpoint_config
    from sfpp.cli.main import app

    for flag, bad in (("--light-amplitude", "1.0"), ("--light-amplitude", "-0.1"), ("--light-amplitude", "nan"),
                      ("--light-period", "0"), ("--light-period", "inf")):
        r = CliRunner().invoke(app, ["toyworld", "train-codec", flag, bad, "--out", str(tmp_path / "c")])
        assert r.exit_code == 2 and flag in r.output and "Traceback" not in r.output, (flag, bad, r.output)
    assert not (tmp_path / "c").exists()
    r = CliRunner().invoke(app, ["toyworld", "train-codec", "--steps", "2", "--batch-size", "2", "--channels", "16",
                                 "--light-amplitude", "0.15", "--light-period", "8", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    train = read_checkpoint_config(tmp_path / "c" / "codec.safetensors")["train"]
    assert (train["light_amplitude"], train["light_period_s"]) == (0.15, 8.0)
