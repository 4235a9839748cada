"""`Mp4Writer` with its default preset: a playable MP4 close to its input, written as a stream."""

from __future__ import annotations

import numpy as np
import pytest

from sfpp.video import DEFAULT_PRESET, X264_PRESETS, Mp4Writer, read_mp4

# Decoded frames vs their source, over all RGB pixels. On the clip below (bundled ffmpeg, yuv420p):
# lossless H.264 (quality 10) 44.6 dB, the default superfast at quality 8 (CRF 10) 43.8 dB, medium
# 43.9 dB, ultrafast 43.4 dB; quality 7 (CRF 15) 42.9 dB and quality 6 (CRF 20) 41.3 dB fall below.
MIN_PSNR_DB = 43.0


def _clip(n: int = 40, h: int = 128, w: int = 192, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients drifting, a soft textured blob moving across, mild grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    tex = rng.random((h, w + 3 * n)).astype(np.float32) * 40  # fine luma texture, moving with the blob
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        img = np.stack([
            110 + 50 * np.sin((xx + 2 * t) / 47.0) + 20 * np.cos(yy / 33.0),
            110 + 40 * np.cos((yy + t) / 39.0) + 20 * np.sin((xx + 2 * t) / 47.0),
            120 + 40 * np.sin((xx - yy + 3 * t) / 61.0),
        ], axis=-1)
        cy, cx = 40 + t, 30 + 3 * t
        blob = np.exp(-(((yy - cy) / 22.0) ** 2 + ((xx - cx) / 22.0) ** 2) ** 2)[..., None]
        moving = tex[:, 3 * (n - t):3 * (n - t) + w, None] - 20
        img = img * (1 - blob) + blob * (np.array([160.0, 110, 90]) + moving)
        img += rng.normal(0, 1.5, (h, w, 1))
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _write(path, frames: np.ndarray, *, chunk: int = 12, **kw):
    w = Mp4Writer(path, fps=16, width=frames.shape[2], height=frames.shape[1], **kw)
    for i in range(0, len(frames), chunk):  # in chunks, as a generation hands them over
        w.write(frames[i:i + chunk])
    return w.close()


def test_default_preset_is_a_fast_x264_preset():
    assert DEFAULT_PRESET in X264_PRESETS
    assert X264_PRESETS.index(DEFAULT_PRESET) < X264_PRESETS.index("medium")


def test_default_writes_a_playable_mp4_close_to_its_input(tmp_path):
    frames = _clip()
    path = _write(tmp_path / "clip.mp4", frames)
    assert path == tmp_path / "clip.mp4" and path.is_file()
    assert not (tmp_path / "clip.partial.mp4").exists()
    decoded, fps = read_mp4(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert fps == pytest.approx(16)
    psnr = _psnr(decoded, frames)
    assert psnr >= MIN_PSNR_DB, f"PSNR {psnr:.2f} dB < {MIN_PSNR_DB} dB"
    # every frame, not just the average (no frame dropped, duplicated or garbled)
    assert min(_psnr(d, f) for d, f in zip(decoded, frames)) >= MIN_PSNR_DB - 1


def test_stream_settings_in_the_file(tmp_path):
    """The encoder ran with the default preset's speed settings and without anything that looks ahead."""
    path = _write(tmp_path / "clip.mp4", _clip(n=8))
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    info = data[start:data.index(b"\0", start)].decode("ascii", "replace")
    for opt in ("bframes=0", "mbtree=0"):  # -tune zerolatency: no B-frames, no macroblock-tree lookahead
        assert opt in info, (opt, info)
    if DEFAULT_PRESET in ("ultrafast", "superfast"):
        assert "subme=1" in info or "subme=0" in info, info  # the fast presets' motion search, not medium's subme=7


def test_same_prefix_gives_identical_decoded_prefix(tmp_path):
    """Frames already written never change with what comes after them (streaming; prompt switches)."""
    frames = _clip(n=40)
    other = _clip(n=40, seed=1)[::-1]  # different content after the switch
    cut = 20
    full = _write(tmp_path / "full.mp4", frames)
    alone = _write(tmp_path / "alone.mp4", frames[:cut])
    switched = _write(tmp_path / "switched.mp4", np.concatenate([frames[:cut], other[cut:]]), chunk=7)
    a, _ = read_mp4(full)
    b, _ = read_mp4(alone)
    c, _ = read_mp4(switched)
    assert len(b) == cut
    np.testing.assert_array_equal(a[:cut], b)
    np.testing.assert_array_equal(a[:cut], c[:cut])
    assert not np.array_equal(a[cut:], c[cut:])


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        Mp4Writer(tmp_path / "x.mp4", fps=16, width=64, height=64, preset="warp-speed")
    assert not list(tmp_path.iterdir())
