"""Image-level ablation: how fast does a toy-v2 transformer learn to draw the shape it is asked for?

One object (random colour and shape, radius 4.5-7 px times ``--rscale``) on black, one latent frame
(2 identical pixel frames), trained from scratch with flow matching like the teacher. Every
``--eval-every`` steps it reports

* ``gap``: on a fixed probe set (12 objects per shape), the relative increase of the denoising loss
  when the prompt names a wrong shape, at sigma 0.3 / 0.5 / 0.7, in percent: 0 means the model ignores
  the shape word, larger is more use of it;
* ``diag``: the oracle's shape confusion of 24-step Euler samples (CFG 5, shift 5), mean of the diagonal
  (chance: 1/3), 24 frames per shape word.

Settings compared in docs/toyworld.md: transformer patch (2: 4x4-pixel tokens, 1: 2x2-pixel tokens),
object size, the prediction target (``v``: flow, as the teacher; ``x``: the clean frame, turned into
a flow as (x_t - x0) / max(sigma, 0.05)) and the learning rate.

    OMP_NUM_THREADS=1 python examples/toyworld_v2/shape_ablation.py --name base --out docs/toyworld/ablation
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

from sfpp.schedule import add_noise, shift_sigma
from sfpp.text import encode_prompts
from sfpp.toyworld.model import TOY_ARCHS, TOY_TEXT_LEN, toy_codec, toy_text_encoder, toy_tokenizer
from sfpp.toyworld.teacher import confusion_of_clips
from sfpp.toyworld.world import COLOURS, SHAPES, _mask
from sfpp.train.ode import euler_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--patch", type=int, default=2, help="transformer spatial patch (2: 4x4-pixel tokens)")
    ap.add_argument("--rscale", type=float, default=1.0, help="object radius multiplier")
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--pred", choices=("v", "x"), default="v")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--name", default="base")
    ap.add_argument("--out", type=Path, default=None, help="folder for NAME.json")
    a = ap.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    codec = toy_codec()
    cols = [c for c in COLOURS if c != "white"]

    def render(r, colour, shape):  # (2, 32, 32, 3) uint8: one latent frame of a still object
        rad = r.uniform(4.5, 7.0) * a.rscale
        cx, cy = r.uniform(rad * 0.8, 32 - rad * 0.8, 2)
        m = _mask(shape, cx, cy, rad, 32)[..., None]
        img = np.full((32, 32, 3), 10.0, np.float32) * (1 - m) + m * np.array(COLOURS[colour], np.float32)
        f = np.clip(img, 0, 255).round().astype(np.uint8)
        return np.stack([f, f])

    def prompt(c, s):
        return f"a {c} {s} moving on a black background"

    def encode(frames):  # (N, 2, 32, 32, 3) uint8 -> (N, C, 1, 16, 16)
        return codec.encode(torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3))

    items = [(str(rng.choice(cols)), str(rng.choice(SHAPES))) for _ in range(4000)]
    frames = np.stack([render(rng, c, s) for c, s in items])
    prompts = [prompt(c, s) for c, s in items]
    tok, enc = toy_tokenizer(), toy_text_encoder()
    uniq = sorted({prompt(c, s) for c in COLOURS for s in SHAPES}) + [""]
    emb = encode_prompts(tok, enc, uniq, max_length=TOY_TEXT_LEN, device="cpu")
    emb_of = {p: i for i, p in enumerate(uniq)}
    arch = {**TOY_ARCHS["v2"], "patch_size": (1, a.patch, a.patch)}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = WanTransformer3DModel(**arch).train()

    def flow(x, t, e):
        out = model(x, t, e, return_dict=False)[0]
        if a.pred == "v":
            return out
        return (x - out) / (t / 1000).clamp(min=0.05).view(-1, 1, 1, 1, 1)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.99))
    prng = np.random.default_rng(99)
    probe = [(c, s) for s in SHAPES for c in cols[:6]] * 2
    px0 = encode(np.stack([render(prng, c, s) for c, s in probe]))
    peps = torch.randn(px0.shape, generator=torch.Generator().manual_seed(5))

    @torch.no_grad()
    def gap() -> dict:
        out = {}
        for sigma in (0.3, 0.5, 0.7):
            t = torch.full((len(probe),), sigma * 1000)
            xt = add_noise(px0, peps, t)
            losses = []
            for k in range(3):  # k = 0: the right shape word; 1, 2: the two wrong ones
                e = emb[[emb_of[prompt(c, SHAPES[(SHAPES.index(s) + k) % 3])] for c, s in probe]]
                losses.append(((flow(xt, t, e) - (peps - px0)) ** 2).mean().item())
            out[str(sigma)] = round((0.5 * (losses[1] + losses[2]) / losses[0] - 1) * 100, 2)
        return out

    @torch.no_grad()
    def confusion() -> tuple[float, dict]:
        ps = [(w, prompt(c, w)) for w in SHAPES for c in cols[:6]] * 2
        cond, unc = emb[[emb_of[p] for _, p in ps]], emb[[emb_of[""]] * len(ps)]
        x = torch.randn(len(ps), codec.channels, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        grid = euler_grid(24, 5.0)
        for i in range(24):
            t = torch.full((len(ps),), float(grid[i] * 1000))
            vc, vu = flow(x, t, cond), flow(x, t, unc)
            x = x + float(grid[i + 1] - grid[i]) * (vu + 5.0 * (vc - vu))
        clips = ((codec.decode_native(x).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        res = confusion_of_clips([(w, p, c) for (w, p), c in zip(ps, clips.permute(0, 2, 3, 4, 1).numpy())])
        return float(np.mean([res["confusion"][w].get(w, 0.0) for w in SHAPES])), res["confusion"]

    rows, t0 = [], time.process_time()
    for step in range(1, a.steps + 1):
        idx = rng.integers(0, len(items), a.bs)
        x0 = encode(frames[idx])
        drop = rng.random(a.bs) < 0.1
        e = emb[[emb_of[""] if d else emb_of[prompts[i]] for i, d in zip(idx, drop)]]
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, step / 200)
        t = shift_sigma(torch.rand(a.bs), 3.0) * 1000
        eps = torch.randn_like(x0)
        loss = F.mse_loss(flow(add_noise(x0, eps, t), t, e), eps - x0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            d, conf = confusion()
            row = {"step": step, "cpu_s": round(time.process_time() - t0, 1), "loss": loss.item(), "gap": gap(),
                   "diag": d, "confusion": conf}
            model.train()
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"{a.name}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
