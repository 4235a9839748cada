import torch

from sfpp.vae_stream import StreamingDecoder, latents_for_pixel_frames, pixel_frames_for_latents


def test_streaming_decode_equals_one_shot(debug_components):
    vae = debug_components.vae
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 7, 5, 6, generator=g)  # model-normalised latents (B, C, F, h, w)
    dec = StreamingDecoder(vae)
    parts = [dec.decode(z[:, :, :1]), dec.decode(z[:, :, 1:3]), dec.decode(z[:, :, 3:6]), dec.decode(z[:, :, 6:])]
    streamed = torch.cat(parts, dim=2)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        ref = vae.decode(z * std + mean).sample
    assert [p.shape[2] for p in parts] == [1, 8, 12, 4]
    assert streamed.shape == ref.shape == (1, 3, 25, 40, 48)
    assert (streamed - ref).abs().max().item() <= 1e-5
    # the cache matters: restarting the stream mid-video gives different frames
    fresh = StreamingDecoder(vae)
    fresh.decode(z[:, :, 3:4])
    assert (fresh.decode(z[:, :, 4:6]) - parts[2][:, :, 4:]).abs().max().item() > 1e-4


def test_frame_arithmetic():
    assert pixel_frames_for_latents(21) == 81
    assert latents_for_pixel_frames(81) == 21
    assert latents_for_pixel_frames(82) == 22
    assert pixel_frames_for_latents(latents_for_pixel_frames(960)) >= 960
