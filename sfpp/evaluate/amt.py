"""AMT-S frame interpolation network, inference only, for VBench's motion_smoothness.

AMT ("All-Pairs Multi-Field Transforms for Efficient Frame Interpolation", Li et al., CVPR 2023)
predicts the frame at time t between two frames: a pyramid encoder and coarse-to-fine decoders
estimate bidirectional flows from t to both inputs, refined at three scales by lookups into an
all-pairs correlation volume; the finest decoder emits several flow fields per pixel with
blending masks and residuals, which a small convolution merges into one frame.

This is sfpp's own implementation. Module and parameter names follow the published `amt-s.pth`
checkpoint so it loads with `load_state_dict(strict=True)`; the weights are CC BY-NC-SA 4.0.
Inputs are RGB in [0, 1] with height and width divisible by 16 (VBench pads to that).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 84  # correlation features
PYRAMID = (20, 32, 44, 56)  # channels of the four encoder levels (1/2 ... 1/16 resolution)
SIDE = 20  # channels refined separately inside each decoder's residual block
NUM_FLOWS = 3  # flow fields per pixel at full resolution
CORR_LEVELS = 4
CORR_RADIUS = 3
DIVISOR = 16  # input sides must be multiples of this


def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `x` at (pixel + flow); flow channel 0 is horizontal. Border values outside."""
    _, _, h, w = flow.shape
    # normalised [-1, 1] sampling positions; one pixel of flow is 2 / (side - 1)
    gx = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, w) + flow[:, 0] / ((w - 1) / 2.0)
    gy = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, h, 1) + flow[:, 1] / ((h - 1) / 2.0)
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def _conv_prelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout))


class _SideResBlock(nn.Module):
    """Residual block whose last `side` channels get an extra convolution after each stage."""

    def __init__(self, ch: int, side: int):
        super().__init__()
        self.side = side
        self.conv1 = _conv_prelu(ch, ch)
        self.conv2 = _conv_prelu(side, side)
        self.conv3 = _conv_prelu(ch, ch)
        self.conv4 = _conv_prelu(side, side)
        self.conv5 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.prelu = nn.PReLU(ch)

    def _side(self, y: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        keep, side = y.split([y.shape[1] - self.side, self.side], dim=1)
        return torch.cat([keep, conv(side)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._side(self.conv1(x), self.conv2)
        y = self._side(self.conv3(y), self.conv4)
        return self.prelu(x + self.conv5(y))


class _Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with parameter-free instance norm; 1x1 shortcut when strided."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid = cout // 4
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride)) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in (self.conv1, self.conv2, self.conv3):
            y = F.relu(F.instance_norm(conv(y)))
        if self.downsample is not None:
            x = F.instance_norm(self.downsample(x))
        return F.relu(x + y)


class _CorrFeatures(nn.Module):
    """Features for the correlation volume, at 1/8 resolution."""

    def __init__(self, out_dim: int = FEATURE_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3)
        self.layer1 = nn.Sequential(_Bottleneck(32, 32, 1), _Bottleneck(32, 32, 1))
        self.layer2 = nn.Sequential(_Bottleneck(32, 64, 2), _Bottleneck(64, 64, 1))
        self.layer3 = nn.Sequential(_Bottleneck(64, 96, 2), _Bottleneck(96, 96, 1))
        self.conv2 = nn.Conv2d(96, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.instance_norm(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class _Pyramid(nn.Module):
    """Four stride-2 stages; returns features at 1/2, 1/4, 1/8 and 1/16 resolution."""

    def __init__(self, channels=PYRAMID):
        super().__init__()
        self.depth = len(channels)
        prev = 3
        for i, ch in enumerate(channels, start=1):
            setattr(self, f"pyramid{i}", nn.Sequential(_conv_prelu(prev, ch, 2), _conv_prelu(ch, ch)))
            prev = ch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i in range(1, self.depth + 1):
            x = getattr(self, f"pyramid{i}")(x)
            out.append(x)
        return out


def _decoder_body(cin: int, width: int, cout: int, side: int) -> nn.Sequential:
    return nn.Sequential(_conv_prelu(cin, width), _SideResBlock(width, side), nn.ConvTranspose2d(width, cout, 4, 2, 1))


class _FirstDecoder(nn.Module):
    """From the 1/16 features of both frames and t: flows t->0, t->1 and features at 1/8."""

    def __init__(self, ch: int, out_ch: int, side: int):
        super().__init__()
        self.convblock = _decoder_body(2 * ch + 1, 2 * ch, out_ch + 4, side)

    def forward(self, f0, f1, t_map):
        out = self.convblock(torch.cat([f0, f1, t_map.expand(-1, -1, *f0.shape[2:])], dim=1))
        return out[:, 0:2], out[:, 2:4], out[:, 4:]


class _NextDecoder(nn.Module):
    """One level finer: warp both frames' features with the current flows, predict residual flows."""

    def __init__(self, ch: int, out_ch: int, side: int):
        super().__init__()
        self.convblock = _decoder_body(3 * ch + 4, 3 * ch, out_ch + 4, side)

    def forward(self, feat, f0, f1, flow0, flow1):
        x = torch.cat([feat, backward_warp(f0, flow0), backward_warp(f1, flow1), flow0, flow1], dim=1)
        out = self.convblock(x)
        return (out[:, 0:2] + 2.0 * _scale(flow0, 2.0), out[:, 2:4] + 2.0 * _scale(flow1, 2.0), out[:, 4:])


class _MultiFieldDecoder(nn.Module):
    """Full resolution: `n` flow pairs per pixel, their blending masks and RGB residuals."""

    def __init__(self, ch: int, side: int, n: int = NUM_FLOWS):
        super().__init__()
        self.n = n
        self.convblock = _decoder_body(3 * ch + 4, 3 * ch, 8 * n, side)

    def forward(self, feat, f0, f1, flow0, flow1):
        n = self.n
        x = torch.cat([feat, backward_warp(f0, flow0), backward_warp(f1, flow1), flow0, flow1], dim=1)
        d0, d1, mask, res = self.convblock(x).split([2 * n, 2 * n, n, 3 * n], dim=1)
        flow0 = d0 + 2.0 * _scale(flow0, 2.0).repeat(1, n, 1, 1)
        flow1 = d1 + 2.0 * _scale(flow1, 2.0).repeat(1, n, 1, 1)
        return flow0, flow1, torch.sigmoid(mask), res


class _Update(nn.Module):
    """Correlation-guided residual update of the flows (at 1/8) and the decoder features."""

    def __init__(self, feat_ch: int, up: int | None, hidden: int = 76, flow_dim: int = 20, corr_dim: int = 64,
                 mix_dim: int = 68, levels: int = CORR_LEVELS, radius: int = CORR_RADIUS):
        super().__init__()
        self.up = up
        corr_ch = 2 * levels * (2 * radius + 1) ** 2
        self.convc1 = nn.Conv2d(corr_ch, corr_dim, 1)
        self.convf1 = nn.Conv2d(4, 2 * flow_dim, 7, padding=3)
        self.convf2 = nn.Conv2d(2 * flow_dim, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, mix_dim, 3, padding=1)

        def two_convs(cin, cout):  # conv, leaky ReLU, conv (indices 0 and 2 hold the weights)
            return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, cout, 3, padding=1))

        self.gru = two_convs(mix_dim + 4 + feat_ch, hidden)
        self.feat_head = two_convs(hidden, feat_ch)
        self.flow_head = two_convs(hidden, 4)

    def forward(self, feat, flows, corr):
        act = _leaky
        if self.up is not None:
            feat = _scale(feat, 1.0 / self.up)
        c = act(self.convc1(corr))
        f = act(self.convf2(act(self.convf1(flows))))
        x = torch.cat([act(self.conv(torch.cat([c, f], dim=1))), flows, feat], dim=1)
        h = self.gru(x)
        d_feat, d_flow = self.feat_head(h), self.flow_head(h)
        if self.up is not None:
            d_feat = _scale(d_feat, float(self.up))
            d_flow = self.up * _scale(d_flow, float(self.up))
        return d_feat, d_flow


class _Correlation:
    """All-pairs correlation of two feature maps, in both directions, average-pooled into levels.

    `lookup(c0, c1)` samples a (2r+1)^2 window around pixel coordinates `c0` (into frame 1's
    positions, for each frame-0 pixel) and `c1` (into frame 0's positions, for each frame-1
    pixel) at every level. The window's first axis is the x offset, as in the checkpoint's
    training code, so the channel order matches the trained weights.
    """

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor, levels: int = CORR_LEVELS, radius: int = CORR_RADIUS):
        b, c, h, w = fmap0.shape
        vol = torch.bmm(fmap0.flatten(2).transpose(1, 2), fmap1.flatten(2)) / math.sqrt(c)  # (b, h*w [0], h*w [1])
        fwd = vol.reshape(b * h * w, 1, h, w)
        bwd = vol.transpose(1, 2).reshape(b * h * w, 1, h, w)
        self.fwd, self.bwd = [fwd], [bwd]
        for _ in range(levels - 1):
            self.fwd.append(F.avg_pool2d(self.fwd[-1], 2, stride=2))
            self.bwd.append(F.avg_pool2d(self.bwd[-1], 2, stride=2))
        self.radius = radius
        offs = torch.linspace(-radius, radius, 2 * radius + 1, device=fmap0.device)
        ox, oy = torch.meshgrid(offs, offs, indexing="ij")
        self.window = torch.stack([ox, oy], dim=-1).view(1, 2 * radius + 1, 2 * radius + 1, 2)

    @staticmethod
    def _sample(vol: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        h, w = vol.shape[-2:]
        gx = 2 * pts[..., 0:1] / (w - 1) - 1
        gy = 2 * pts[..., 1:2] / (h - 1) - 1
        return F.grid_sample(vol, torch.cat([gx, gy], dim=-1), align_corners=True)

    def _lookup(self, pyramid: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        b, _, h, w = coords.shape
        centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        levels = [self._sample(vol, centre / 2**i + self.window).view(b, h, w, -1) for i, vol in enumerate(pyramid)]
        return torch.cat(levels, dim=-1).permute(0, 3, 1, 2).contiguous().float()

    def lookup(self, c0: torch.Tensor, c1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._lookup(self.fwd, c0), self._lookup(self.bwd, c1)


class AMTS(nn.Module):
    """AMT-S: `model(img0, img1, t)` -> the frame at time t (RGB in [0, 1], same shape as the inputs)."""

    def __init__(self):
        super().__init__()
        c1, c2, c3, c4 = PYRAMID
        self.feat_encoder = _CorrFeatures(FEATURE_DIM)
        self.encoder = _Pyramid(PYRAMID)
        self.decoder4 = _FirstDecoder(c4, c3, SIDE)
        self.decoder3 = _NextDecoder(c3, c2, SIDE)
        self.decoder2 = _NextDecoder(c2, c1, SIDE)
        self.decoder1 = _MultiFieldDecoder(c1, SIDE, NUM_FLOWS)
        self.update4 = _Update(c3, None)
        self.update3 = _Update(c2, 2)
        self.update2 = _Update(c1, 4)
        self.comb_block = nn.Sequential(
            nn.Conv2d(3 * NUM_FLOWS, 6 * NUM_FLOWS, 3, 1, 1), nn.PReLU(6 * NUM_FLOWS), nn.Conv2d(6 * NUM_FLOWS, 3, 3, 1, 1)
        )

    @staticmethod
    def _pixel_grid(b: int, h: int, w: int, device) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return torch.stack([xs, ys]).float().unsqueeze(0).expand(b, -1, -1, -1)

    def _refine(self, update, corr, grid, flow0, flow1, feat, t, down):
        """Look up the correlation where the flows (rescaled to 1/8 and to 0->1, 1->0) point; add the update."""
        f0 = flow0 if down == 1 else _scale(flow0, 1.0 / down) * (1.0 / down)
        f1 = flow1 if down == 1 else _scale(flow1, 1.0 / down) * (1.0 / down)
        c0, c1 = corr.lookup(grid + f1 * (1.0 / t), grid + f0 * (1.0 / (1.0 - t)))
        d_feat, d_flow = update(feat, torch.cat([f0, f1], dim=1), torch.cat([c0, c1], dim=1))
        return flow0 + d_flow[:, 0:2], flow1 + d_flow[:, 2:4], feat + d_feat

    def _merge(self, x0, x1, flow0, flow1, mask, res, mean):
        b, _, h, w = flow0.shape
        n = flow0.shape[1] // 2

        def per_field(v, ch):
            return v.reshape(b * n, ch, h, w)

        def repeat(v):
            return v.unsqueeze(1).expand(b, n, *v.shape[1:]).reshape(b * n, *v.shape[1:])

        m = per_field(mask, 1)
        cand = m * backward_warp(repeat(x0), per_field(flow0, 2)) + (1 - m) * backward_warp(repeat(x1), per_field(flow1, 2))
        cand = (cand + repeat(mean) + per_field(res, 3)).view(b, n, 3, h, w)
        return cand.mean(1) + self.comb_block(cand.view(b, 3 * n, h, w))

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: float | torch.Tensor = 0.5,
                scale_factor: float = 1.0) -> torch.Tensor:
        b = img0.shape[0]
        # one mean per sample over both frames, reduced channel, row, column in turn (the order the
        # checkpoint's reference code uses, so results agree to the last bit)
        both = torch.cat([img0, img1], dim=2)
        mean = both.mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        x0, x1 = img0 - mean, img1 - mean
        s0, s1 = (x0, x1) if scale_factor == 1.0 else (_scale(x0, scale_factor), _scale(x1, scale_factor))
        h, w = s0.shape[-2:]
        t_map = torch.as_tensor(t, dtype=img0.dtype, device=img0.device).reshape(-1, 1, 1, 1).expand(b, 1, 1, 1)

        fmap0, fmap1 = self.feat_encoder(torch.cat([s0, s1])).chunk(2)
        corr = _Correlation(fmap0, fmap1)
        grid = self._pixel_grid(b, h // 8, w // 8, img0.device)
        p0, p1 = self.encoder(s0), self.encoder(s1)

        flow0, flow1, feat = self.decoder4(p0[3], p1[3], t_map)
        flow0, flow1, feat = self._refine(self.update4, corr, grid, flow0, flow1, feat, t_map, 1)
        flow0, flow1, feat = self.decoder3(feat, p0[2], p1[2], flow0, flow1)
        flow0, flow1, feat = self._refine(self.update3, corr, grid, flow0, flow1, feat, t_map, 2)
        flow0, flow1, feat = self.decoder2(feat, p0[1], p1[1], flow0, flow1)
        flow0, flow1, feat = self._refine(self.update2, corr, grid, flow0, flow1, feat, t_map, 4)
        flow0, flow1, mask, res = self.decoder1(feat, p0[0], p1[0], flow0, flow1)

        if scale_factor != 1.0:
            back = 1.0 / scale_factor
            flow0, flow1 = _scale(flow0, back) * back, _scale(flow1, back) * back
            mask, res = _scale(mask, back), _scale(res, back)
        return self._merge(x0, x1, flow0, flow1, mask, res, mean).clamp(0, 1)


def checkpoint_state_dict(obj) -> dict:
    """The model weights inside a loaded AMT checkpoint: the official files nest them under
    'state_dict' (beside 'epoch'); a bare state dict and a DataParallel 'module.' prefix also work."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}
