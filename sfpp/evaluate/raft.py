"""RAFT optical flow (the "large" model), inference only, for VBench's dynamic_degree.

RAFT ("Recurrent All-Pairs Field Transforms for Optical Flow", Teed and Deng, ECCV 2020) encodes
both frames at 1/8 resolution, correlates every feature of the first frame with every feature of
the second (a 4-level pyramid of the all-pairs volume), and refines a flow field from zero with a
convolutional GRU that looks up the volume around the current estimate at every iteration; a
learned convex combination of 3x3 neighbours upsamples the last estimate to full resolution.

This is sfpp's own implementation of the network VBench runs (`vbench/third_party/RAFT`, the RAFT
authors' code): the same layers with the same parameter names, so the authors' `raft-things.pth`
(VBench's `raft_model/models/raft-things.pth`) loads with `load_state_dict(strict=True)`, and the
same operations in the same order, so the flow equals VBench's on the same machine. Inputs are
RGB in 0-255 with height and width divisible by 8 (VBench pads to that).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN = 128  # GRU state channels
CONTEXT = 128  # context feature channels
CORR_LEVELS = 4
CORR_RADIUS = 4
MIN_SIDE = 128  # padded frame side below which the coarsest correlation level is a single pixel


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with normalisation; a strided block gets a 1x1 strided shortcut."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        make = nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d
        self.norm1, self.norm2 = make(cout), make(cout)
        if stride == 1:
            self.downsample = None
        else:
            # registered twice (as in the checkpoint): 'norm3' and 'downsample.1' name the same module
            self.norm3 = make(cout)
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class _Encoder(nn.Module):
    """7x7/2 stem, three stages of two residual blocks (64, 96/2, 128/2), 1x1 output: 1/8 resolution."""

    def __init__(self, out_dim: int, norm: str):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(64) if norm == "batch" else nn.InstanceNorm2d(64)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (96, 2), (128, 2)):
            stages.append(nn.Sequential(_ResidualBlock(cin, cout, norm, stride), _ResidualBlock(cout, cout, norm, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(128, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def _sample(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of `img` at pixel coordinates (x, y) in the last dim of `coords`; zeros outside."""
    h, w = img.shape[-2:]
    x, y = coords.split([1, 1], dim=-1)
    grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


def _pixel_grid(n: int, h: int, w: int, device) -> torch.Tensor:
    """(n, 2, h, w) float pixel coordinates, channel 0 = x (column), channel 1 = y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=0).float()[None].repeat(n, 1, 1, 1)


class _CorrPyramid:
    """All-pairs correlation of two (N, C, H, W) feature maps, divided by sqrt(C), average-pooled
    into `levels` levels; `lookup` reads a (2r+1)^2 window around each coordinate at each level."""

    def __init__(self, f1: torch.Tensor, f2: torch.Tensor, levels: int = CORR_LEVELS, radius: int = CORR_RADIUS):
        n, c, h, w = f1.shape
        corr = torch.matmul(f1.view(n, c, h * w).transpose(1, 2), f2.view(n, c, h * w))
        corr = corr.view(n, h, w, 1, h, w) / torch.sqrt(torch.tensor(c).float())
        corr = corr.reshape(n * h * w, 1, h, w)
        self.levels, self.radius = [corr], radius
        for _ in range(levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.levels.append(corr)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        n, h, w, _ = coords.shape
        steps = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
        # the window's first axis offsets x and its second offsets y (RAFT's own layout, kept as is)
        a, b = torch.meshgrid(steps, steps, indexing="ij")
        window = torch.stack([a, b], dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        out = []
        for i, corr in enumerate(self.levels):
            centre = coords.reshape(n * h * w, 1, 1, 2) / 2**i
            out.append(_sample(corr, centre + window).view(n, h, w, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()


class _MotionEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        planes = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(planes, 256, 1, padding=0)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([c, f], dim=1))), flow], dim=1)


class _SepConvGRU(nn.Module):
    """GRU with a horizontal (1x5) then a vertical (5x1) pass."""

    def __init__(self, hidden: int, inp: int):
        super().__init__()
        for axis, (k, p) in (("1", ((1, 5), (0, 2))), ("2", ((5, 1), (2, 0)))):
            for gate in ("z", "r", "q"):
                setattr(self, f"conv{gate}{axis}", nn.Conv2d(hidden + inp, hidden, k, padding=p))

    def _step(self, h: torch.Tensor, x: torch.Tensor, axis: str) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(getattr(self, f"convz{axis}")(hx))
        r = torch.sigmoid(getattr(self, f"convr{axis}")(hx))
        q = torch.tanh(getattr(self, f"convq{axis}")(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._step(self._step(h, x, "1"), x, "2")


class _FlowHead(nn.Module):
    def __init__(self, cin: int = HIDDEN, hidden: int = 256):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class _UpdateBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = _MotionEncoder()
        self.gru = _SepConvGRU(HIDDEN, 128 + HIDDEN)
        self.flow_head = _FlowHead()
        self.mask = nn.Sequential(nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], dim=1))
        return net, 0.25 * self.mask(net), self.flow_head(net)


class RAFT(nn.Module):
    """RAFT-large; `forward(a, b, iters)` -> full-resolution flow (N, 2, H, W) from a to b, in pixels."""

    def __init__(self):
        super().__init__()
        self.fnet = _Encoder(256, "instance")
        self.cnet = _Encoder(HIDDEN + CONTEXT, "batch")
        self.update_block = _UpdateBlock()

    @staticmethod
    def _upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x8 upsampling: each fine pixel is a softmax-weighted mix of the 3x3 coarse neighbours."""
        n, _, h, w = flow.shape
        mask = torch.softmax(mask.view(n, 1, 9, 8, 8, h, w), dim=2)
        up = F.unfold(8 * flow, [3, 3], padding=1).view(n, 2, 9, 1, 1, h, w)
        up = torch.sum(mask * up, dim=2).permute(0, 1, 4, 2, 5, 3)
        return up.reshape(n, 2, 8 * h, 8 * w)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 20) -> torch.Tensor:
        image1 = (2 * (image1 / 255.0) - 1.0).contiguous()
        image2 = (2 * (image2 / 255.0) - 1.0).contiguous()
        n = image1.shape[0]
        fmap1, fmap2 = torch.split(self.fnet(torch.cat([image1, image2], dim=0)), [n, n], dim=0)
        corr = _CorrPyramid(fmap1.float(), fmap2.float())
        net, inp = torch.split(self.cnet(image1), [HIDDEN, CONTEXT], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        h, w = image1.shape[-2] // 8, image1.shape[-1] // 8
        coords0 = _pixel_grid(n, h, w, image1.device)
        coords1 = _pixel_grid(n, h, w, image1.device)
        flow_up = None
        for _ in range(iters):
            coords1 = coords1.detach()
            net, mask, delta = self.update_block(net, inp, corr.lookup(coords1), coords1 - coords0)
            coords1 = coords1 + delta
            flow_up = self._upsample(coords1 - coords0, mask)
        return flow_up


def checkpoint_state_dict(obj) -> dict[str, torch.Tensor]:
    """The RAFT state dict inside a loaded checkpoint: the authors' files were saved from
    `nn.DataParallel`, so their keys start with 'module.' (dropped here, as VBench does)."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in obj.items()}
