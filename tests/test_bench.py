"""`sfpp bench` and the fast paths: recompute baseline, compiled blocks, fused QKV, overlapped decode."""

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sfpp.bench import (BenchConfig, build, drift, pixel_frames_per_chunk, receptive_first_chunk, recompute_rollout,
                        resolve_bench, run_bench, steady_chunks)
from sfpp.fastpath import check_fp8
from sfpp.causal import CausalWan, context_shapes
from sfpp.errors import SfppError
from sfpp.generation import DecodeWriter
from sfpp.kv_cache import CacheConfig, context_lengths
from sfpp.noise import SeededNoise
from sfpp.rollout import chunk_sizes, rollout
from sfpp.rollout_config import RolloutConfig
from sfpp.vae_stream import StreamingDecoder

TS = list(RolloutConfig().shifted_timesteps)  # Self-Forcing's 4-step list, shifted


def _student(debug_components):
    return CausalWan(debug_components.transformer)


def _text_noise(student, H=4, W=6, seed=5):
    g = torch.Generator().manual_seed(seed)
    return student.encode_text(torch.randn(1, 5, 32, generator=g)), SeededNoise(seed, channels=16, height=H, width=W)


def _cached(student, text, noise, *, window, frames, chunk, H=4, W=6):
    cache = student.new_cache(CacheConfig(window=window), batch_size=1, latent_hw=(H, W))
    return rollout(student, text, noise, cache, num_frames=frames, chunk_frames=chunk, timesteps=TS)


def test_receptive_field_reaches_back_one_window_per_layer():
    sizes = [2] * 8  # chunk i covers frames [2i, 2i + 2)
    assert receptive_first_chunk(sizes, 7, window=4, num_layers=2) == 5  # 16-4=12 -> chunk 6; 14-4=10 -> chunk 5
    assert receptive_first_chunk(sizes, 7, window=4, num_layers=1) == 6
    assert receptive_first_chunk(sizes, 1, window=4, num_layers=2) == 0
    assert receptive_first_chunk(sizes, 7, window=None, num_layers=2) == 0


@torch.no_grad()
@pytest.mark.parametrize("context", ["all", "receptive"])
def test_recompute_baseline_gives_the_cached_rollouts_latents(debug_components, context):
    student = _student(debug_components)
    text, noise = _text_noise(student)
    out = _cached(student, text, noise, window=4, frames=12, chunk=2)  # chunks 3.. crop in "receptive"
    ref = recompute_rollout(student, text, noise, chunks=[2] * 6, timesteps=TS, window=4, context=context)
    assert ref.shape == out.shape == (1, 16, 12, 4, 6)
    assert (out - ref).abs().max().item() <= 1e-4
    # and the comparison is not vacuous: a different window gives different latents
    other = recompute_rollout(student, text, noise, chunks=[2] * 6, timesteps=TS, window=6, context=context)
    assert (other - ref).abs().max().item() > 1e-3


def test_compiled_blocks_compile_once_per_context_shape_and_never_in_steady_state(debug_components):
    import torch._dynamo
    from torch._dynamo.utils import counters

    student = _student(debug_components)
    text, noise = _text_noise(student)
    cfg = CacheConfig(window=6)
    with torch.inference_mode():
        ref = _cached(student, text, noise, window=6, frames=12, chunk=3)
        student.compile_blocks(backend="eager")
        torch._dynamo.reset()
        counters.clear()
        out = _cached(student, text, noise, window=6, frames=12, chunk=3)
        graphs = counters["stats"]["unique_graphs"]
        again = _cached(student, text, noise, window=6, frames=24, chunk=3)  # a longer video: nothing new
    shapes = context_shapes(cfg, chunk_sizes(24, 3))
    assert shapes == [(0, 3), (3, 3)]
    assert graphs == len(shapes)  # one graph per shape, shared by both blocks
    assert counters["stats"]["unique_graphs"] == graphs
    assert student.compiled
    assert torch.equal(out, ref) and torch.equal(again[:, :, :12], ref)


def test_fused_qkv_matches_separate_projections_and_drops_them(debug_components):
    import copy

    student = CausalWan(copy.deepcopy(debug_components.transformer))
    text, noise = _text_noise(student)
    with torch.no_grad():
        ref = _cached(student, text, noise, window=6, frames=9, chunk=3)
        student.fuse_qkv()
        text2 = student.encode_text(torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(5)))
        out = _cached(student, text2, noise, window=6, frames=9, chunk=3)
    a1, a2 = student.transformer.blocks[0].attn1, student.transformer.blocks[0].attn2
    assert a1.fused_projections and hasattr(a1, "to_qkv") and not hasattr(a1, "to_q")
    assert hasattr(a2, "to_kv") and hasattr(a2, "to_q") and not hasattr(a2, "to_k")
    assert (out - ref).abs().max().item() <= 1e-5


def test_cached_path_calls_sdpa_without_a_mask(debug_components, monkeypatch):
    import sfpp.causal as causal

    masks = []
    real = causal.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        masks.append(attn_mask)
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(causal.F, "scaled_dot_product_attention", spy)
    student = _student(debug_components)
    text, noise = _text_noise(student)
    with torch.no_grad():
        _cached(student, text, noise, window=6, frames=9, chunk=3)
    assert masks and all(m is None for m in masks)  # fused (flash / efficient) kernels are eligible


def test_random_full_size_config_and_fp32_islands():
    from sfpp.presets import build_random_components

    comps = build_random_components("wan2.1-t2v-1.3b", device="meta", dtype=torch.bfloat16)
    tr = comps.transformer
    assert sum(p.numel() for p in tr.parameters()) == 1_418_996_800
    cfg = tr.config
    assert (cfg.num_layers, cfg.num_attention_heads, cfg.attention_head_dim, cfg.ffn_dim, cfg.text_dim) == \
        (30, 12, 128, 8960, 4096)
    for name, p in tr.named_parameters():
        island = any(k in name for k in ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"))
        assert p.dtype == (torch.float32 if island else torch.bfloat16), name
    assert tr.rope.freqs_cos.dtype == torch.float32
    assert comps.vae.config.base_dim == 96 and comps.vae.config.z_dim == 16


def test_bf16_student_runs_with_fp32_islands_on_cpu():
    bm = build(BenchConfig(model="debug", seconds=1, height=32, width=32, dtype="bfloat16"))
    p = bm.student.transformer.blocks[0]
    assert p.attn1.to_qkv.weight.dtype == torch.bfloat16 and p.scale_shift_table.dtype == torch.float32
    text, _ = bm.text, None
    noise = SeededNoise(0, channels=16, height=4, width=4)
    with torch.inference_mode():
        out = rollout(bm.student, text, noise, bm.student.new_cache(bm.rs.cache, batch_size=1, latent_hw=(4, 4)),
                      num_frames=6, chunk_frames=3, timesteps=TS)
    assert torch.isfinite(out).all()


class _Frames:
    def __init__(self):
        self.frames, self.chunks = 0, []

    def write(self, frames):
        self.chunks.append(np.asarray(frames).copy())
        self.frames += len(frames)


def _decode_all(vae, latents, overlap, num_frames):
    w = _Frames()
    sink = DecodeWriter(StreamingDecoder(vae), w, num_frames=num_frames, overlap=overlap, max_pending=1)
    for z in latents.split(3, dim=2):
        sink.submit(z)
    sink.close()
    return np.concatenate(w.chunks), sink


def test_overlapped_decode_writes_the_same_frames_as_serial(debug_components):
    z = torch.randn(1, 16, 9, 4, 4, generator=torch.Generator().manual_seed(1))
    serial, s1 = _decode_all(debug_components.vae, z, False, num_frames=30)
    threaded, s2 = _decode_all(debug_components.vae, z, True, num_frames=30)
    assert serial.shape == (30, 32, 32, 3)  # 1 + 4*8 = 33 decoded, cut to 30
    assert np.array_equal(serial, threaded)
    assert s2.overlap and not s1.overlap and len(s2.done_at) == 3 and s2.first_frame_at is not None


def test_overlapped_decode_reraises_worker_errors(debug_components):
    class Broken(_Frames):
        def write(self, frames):
            raise OSError("disk full")

    sink = DecodeWriter(StreamingDecoder(debug_components.vae), Broken(), num_frames=30, overlap=True, max_pending=1)
    with pytest.raises(OSError, match="disk full"):
        for z in torch.zeros(1, 16, 15, 4, 4).split(3, dim=2):
            sink.submit(z)
        sink.close()
    sink.close(raise_errors=False)


def test_generate_output_is_identical_with_and_without_overlap(tmp_path):
    from sfpp.generation import _generate_into
    from sfpp.spec import VideoSpec, load_model, resolve_spec
    from sfpp.video import read_mp4

    from dataclasses import replace

    rs = resolve_spec(VideoSpec(model="debug", frames=21, height=32, width=48, device="cpu"))
    lm = load_model(rs)
    vids = []
    for overlap in (False, True):
        path = tmp_path / f"o{int(overlap)}.mp4"
        t, writer = _generate_into("a red ball", replace(rs, fast=replace(rs.fast, overlap=overlap)), lm, path, None)
        writer.publish()
        assert t["decode_overlapped"] is overlap and t["time_to_first_frame_s"] > 0
        vids.append(read_mp4(path)[0])
    assert vids[0].shape == (21, 32, 48, 3) and np.array_equal(vids[0], vids[1])


def test_fp8_errors_name_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(SfppError, match="pip install torchao"):
        check_fp8(torch.device("cpu"))
    fake = type(sys)("torchao.quantization")
    monkeypatch.setitem(sys.modules, "torchao", type(sys)("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", fake)
    with pytest.raises(SfppError, match="compute capability 8.9"):
        check_fp8(torch.device("cpu"))
    with pytest.raises(SfppError, match="drop --fp8"):
        resolve_bench(BenchConfig(model="debug", fp8=True, device="cpu"))


def test_steady_chunks_frames_and_drift():
    cfg = CacheConfig(window=9)
    sizes = [3] * 6
    assert context_lengths(cfg, sizes) == [0, 3, 6, 6, 6, 6]
    assert steady_chunks(cfg, sizes) == [2, 3, 4, 5]
    assert pixel_frames_per_chunk(sizes, 60) == [9, 12, 12, 12, 12, 3]
    d = drift([1, 1, 1, 1, 2, 2], [2, 3, 4, 5], [12] * 6, fps=1)
    assert d["ratio"] == pytest.approx(2.0) and d["segment_s"] == pytest.approx(24.0)
    assert drift([1, 1], [1], [12, 12], fps=1)["ratio"] is None


def test_run_bench_reports_every_figure_and_no_recompiles():
    r = run_bench(BenchConfig(model="debug", seconds=3, height=32, width=32, window=6, compile=True,
                              compile_backend="eager"))
    s = r["setup"]
    assert s["frames"] == 48 and s["chunks"] == 5 and s["steady_chunks"] == 4 and s["compile"]
    assert "random prompt embeddings" in s["text_encoder"]
    assert r["warmup"]["graphs_compiled"] == len(s["context_shapes"]) == 2
    assert r["graphs_compiled_in_timed_runs"] == 0
    assert len(r["dit"]["chunk_s"]) == 5 and r["dit"]["fps_steady"] > 0
    assert r["end_to_end"]["time_to_first_frame_s"] > 0 and r["end_to_end"]["fps_overall"] > 0
    assert r["memory"]["peak_host_rss_mb"] > 0 and r["machine"]["torch"] == torch.__version__


def test_bench_cli_json_and_errors(tmp_path):
    from sfpp.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["bench", "--seconds", "1", "--height", "32", "--width", "32", "--json",
                              "--compare-recompute", "--compare-multiple", "2", "--out", str(tmp_path / "b.mp4")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout[res.stdout.index("{"):])
    assert rep["setup"]["model"] == "debug" and (tmp_path / "b.mp4").is_file()
    c = rep["compare_recompute"]
    assert c["latent_frames"] == 18 and set(c["recompute"]) == {"all", "receptive"}
    assert all(v["max_abs_diff"] <= 1e-4 for v in c["recompute"].values())
    bad = runner.invoke(app, ["bench", "--height", "30"])
    assert bad.exit_code == 2 and "multiple of 16" in bad.output
    human = runner.invoke(app, ["bench", "--seconds", "1", "--height", "32", "--width", "32"])
    assert human.exit_code == 0 and "time to first frame" in human.output
