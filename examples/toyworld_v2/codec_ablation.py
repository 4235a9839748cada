"""Image-level ablation, second half: the same shape test as shape_ablation.py on a learned codec.

A small convolutional autoencoder (32x32x3 -> 8x8xC, trained first on the same single-object frames,
latents with a little noise and an L2 penalty so the code is smooth) replaces the pixel codec; the
toy-v2 transformer (patch 1, so 64 tokens per frame as with the pixel codec) is trained on its
normalised latents with the teacher's flow-matching loss, and every 500 steps 24-step Euler samples
(CFG 5, shift 5) are decoded and read by the oracle: ``diag`` is the mean of the shape confusion's
diagonal (chance 1/3). Also printed: the codec's reconstruction error and the oracle's shape reading
of reconstructed ground truth (the codec's own ceiling).

    OMP_NUM_THREADS=1 python examples/toyworld_v2/codec_ablation.py --sheet docs/toyworld/ablation/samples_learned_codec.png
"""
import time, json, argparse
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from diffusers import WanTransformer3DModel
from sfpp.schedule import add_noise, shift_sigma
from sfpp.text import encode_prompts
from sfpp.toyworld.model import TOY_TEXT_LEN, TOY_ARCHS, toy_text_encoder, toy_tokenizer
from sfpp.toyworld.world import SHAPES, COLOURS, _mask
from sfpp.toyworld.teacher import confusion_of_clips
from sfpp.train.ode import euler_grid
ap = argparse.ArgumentParser(); ap.add_argument("--C", type=int, default=8); ap.add_argument("--ae-steps", type=int, default=1500)
ap.add_argument("--steps", type=int, default=2000); ap.add_argument("--name", default="ae")
ap.add_argument("--sheet", default=None, help="PNG of the last samples: rows circle/square/triangle")
a = ap.parse_args()
torch.manual_seed(0); rng = np.random.default_rng(0)
cols = [c for c in COLOURS if c != "white"]
def render(r, colour, shape):
    rad = r.uniform(4.5, 7.0); cx, cy = r.uniform(rad * 0.8, 32 - rad * 0.8, 2)
    m = _mask(shape, cx, cy, rad, 32)[..., None]
    img = np.full((32, 32, 3), 10.0, np.float32) * (1 - m) + m * np.array(COLOURS[colour], np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)
def prompt(c, s): return f"a {c} {s} moving on a black background"
items = [(str(rng.choice(cols)), str(rng.choice(SHAPES))) for _ in range(4000)]
imgs = torch.from_numpy(np.stack([render(rng, c, s) for c, s in items])).float().div(127.5).sub(1).permute(0, 3, 1, 2)  # (N,3,32,32)
prompts = [prompt(c, s) for c, s in items]
C = a.C
enc_ = nn.Sequential(nn.Conv2d(3, 48, 3, 1, 1), nn.GELU(), nn.Conv2d(48, 64, 4, 2, 1), nn.GELU(), nn.Conv2d(64, 96, 4, 2, 1), nn.GELU(), nn.Conv2d(96, C, 1))
dec_ = nn.Sequential(nn.Conv2d(C, 96, 3, 1, 1), nn.GELU(), nn.ConvTranspose2d(96, 64, 4, 2, 1), nn.GELU(), nn.ConvTranspose2d(64, 48, 4, 2, 1), nn.GELU(), nn.Conv2d(48, 3, 3, 1, 1))
aopt = torch.optim.Adam(list(enc_.parameters()) + list(dec_.parameters()), lr=2e-3)
t0 = time.time()
for st in range(1, a.ae_steps + 1):
    x = imgs[torch.randint(0, len(imgs), (64,))]
    z = enc_(x); zn = z + 0.1 * torch.randn_like(z)  # noisy latents: a smooth code
    rec = dec_(zn)
    loss = F.mse_loss(rec, x) + 1e-3 * (z ** 2).mean()
    aopt.zero_grad(); loss.backward(); aopt.step()
    if st % 250 == 0: print("AE", st, round(loss.item(), 5), round(time.time() - t0, 1), flush=True)
enc_.eval(); dec_.eval()
with torch.no_grad():
    Z = torch.cat([enc_(imgs[i:i+500]) for i in range(0, len(imgs), 500)])
    mu, sd = Z.mean(dim=(0, 2, 3), keepdim=True), Z.std(dim=(0, 2, 3), keepdim=True)
    Zn = (Z - mu) / sd  # (N, C, 8, 8)
    rec = dec_(Z[:200]); print("AE rec rmse (grey levels)", float(((rec - imgs[:200]) ** 2).mean().sqrt() * 127.5), flush=True)
def decode(zn):  # (B, C, 8, 8) normalised -> uint8 (B, 32, 32, 3)
    with torch.no_grad(): x = dec_(zn * sd + mu)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
# oracle on AE reconstructions of GT (the codec's own ceiling)
ps0 = [(s, prompt(c, s)) for (c, s) in items[:120]]
res0 = confusion_of_clips([(s, p, np.stack([f, f])) for (s, p), f in zip(ps0, decode(Zn[:120]))])
print("AE-GT diag", round(float(np.mean([res0["confusion"][w].get(w, 0) for w in SHAPES])), 3), flush=True)
tok, enc = toy_tokenizer(), toy_text_encoder()
uniq = sorted({prompt(c, s) for c in COLOURS for s in SHAPES}) + [""]
emb = encode_prompts(tok, enc, uniq, max_length=TOY_TEXT_LEN, device="cpu"); emb_of = {p: i for i, p in enumerate(uniq)}
arch = {**TOY_ARCHS["v2"], "patch_size": (1, 1, 1), "in_channels": C, "out_channels": C}
with torch.random.fork_rng(): torch.manual_seed(0); model = WanTransformer3DModel(**arch).train()
opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, betas=(0.9, 0.99))
def sample_eval():
    model.eval()
    with torch.no_grad():
        ps = [(w, prompt(c, w)) for w in SHAPES for c in cols[:6]] * 2
        cond, unc = emb[[emb_of[p] for _, p in ps]], emb[[emb_of[""]] * len(ps)]
        x = torch.randn(len(ps), C, 1, 8, 8, generator=torch.Generator().manual_seed(0)); grid = euler_grid(24, 5.0)
        for i in range(24):
            tt = torch.full((len(ps),), float(grid[i] * 1000))
            vc = model(x, tt, cond, return_dict=False)[0]; vu = model(x, tt, unc, return_dict=False)[0]
            x = x + float(grid[i+1] - grid[i]) * (vu + 5.0 * (vc - vu))
        fr = decode(x[:, :, 0])
    model.train()
    res = confusion_of_clips([(w, p, np.stack([f, f])) for (w, p), f in zip(ps, fr)])
    return round(float(np.mean([res["confusion"][w].get(w, 0) for w in SHAPES])), 3), {w: {k: round(v, 2) for k, v in res["confusion"][w].items()} for w in SHAPES}, fr
t0 = time.time()
for step in range(1, a.steps + 1):
    idx = rng.integers(0, len(items), 16)
    x0 = Zn[idx].unsqueeze(2)  # (B, C, 1, 8, 8)
    drop = rng.random(16) < 0.1
    e = emb[[emb_of[""] if d else emb_of[prompts[i]] for i, d in zip(idx, drop)]]
    for gp in opt.param_groups: gp["lr"] = 5e-4 * min(1, step / 200)
    t = shift_sigma(torch.rand(16), 3.0) * 1000
    eps = torch.randn_like(x0); x_t = add_noise(x0, eps, t)
    loss = F.mse_loss(model(x_t, t, e, return_dict=False)[0], eps - x0)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    if step % 100 == 0: print(step, round(loss.item(), 4), round(time.time() - t0, 1), flush=True)
    if step % 500 == 0 or step == a.steps:
        d, conf, fr = sample_eval(); print("EVAL", step, a.name, "diag", d, json.dumps(conf), flush=True)
from PIL import Image
rows = [np.concatenate([np.pad(v, ((1, 1), (1, 1), (0, 0)), constant_values=128) for v in fr[r*6:(r+1)*6]], 1) for r in range(3)]
if a.sheet:
    Image.fromarray(np.concatenate(rows, 0)).resize((34*6*4, 34*3*4), Image.NEAREST).save(a.sheet)
