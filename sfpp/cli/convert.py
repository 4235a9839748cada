"""`sfpp convert SRC --out DST`: foreign checkpoints to sfpp students, students to diffusers folders."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sfpp.cli._common import console, user_errors


def convert_cmd(
    src: Annotated[str, typer.Argument(help="Checkpoint to convert: .pt/.pth/.bin or .safetensors, original Wan or "
                                       "diffusers naming; FILE#ENTRY picks an entry (generator, generator_ema, "
                                       "critic, model).", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output .safetensors file (--to sfpp) or folder "
                                     "(--to diffusers).", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="sfpp (student .safetensors with its config) or diffusers "
                                    "(folder with transformer/config.json + weights).")] = "sfpp",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model preset the weights are for "
                                                 "(default: from the checkpoint's config or its shapes).",
                                                 show_default=False)] = None,
    entry: Annotated[Optional[str], typer.Option("--entry", help="Entry of a .pt dict to read (same as SRC#ENTRY; "
                                                 "default: generator, then generator_ema, then model).",
                                                 show_default=False)] = None,
    lora: Annotated[Optional[list[str]], typer.Option("--lora", help="LoRA adapter to merge into SRC (repeatable; "
                                                      "FILE#ENTRY, default entry generator_lora).",
                                                      show_default=False)] = None,
    lora_base: Annotated[Optional[str], typer.Option("--lora-base", help="SRC is a LoRA adapter: merge it onto this "
                                                     "base checkpoint (e.g. LongLive's longlive_base.pt).",
                                                     show_default=False)] = None,
    lora_alpha: Annotated[Optional[float], typer.Option("--lora-alpha", help="LoRA alpha when the file does not store "
                                                        "it (default: the rank, i.e. scale 1).",
                                                        show_default=False)] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="Cast weights to float32, bfloat16 or float16 "
                                                 "(default: keep).", show_default=False)] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Diffusers-layout folder of the base model: its "
                                                   "transformer/config.json is used, and --to diffusers copies its "
                                                   "vae/text_encoder/tokenizer/scheduler.", show_default=False)] = None,
) -> None:
    """Convert a Self-Forcing/CausVid/LongLive/Wan checkpoint into an sfpp student, or export a diffusers folder."""
    from pathlib import Path

    from sfpp.convert import split_entry
    from sfpp.export import convert_checkpoint, export_diffusers
    from sfpp.errors import SfppError
    from sfpp.spec import check_output_path

    with user_errors():
        if to not in ("sfpp", "diffusers"):
            raise SfppError(f"--to must be sfpp or diffusers, got {to!r}")
        if entry is not None:
            if split_entry(src)[1] is not None:
                raise SfppError("give the entry either as SRC#ENTRY or with --entry, not both")
            src = f"{src}#{entry}"
        adapters = list(lora or [])
        if lora_base is not None:
            adapters = [src] + adapters
            src = lora_base
        if not split_entry(src)[0].is_file():
            raise SfppError(f"checkpoint {split_entry(src)[0]} does not exist")
        for a in adapters:
            if not split_entry(a)[0].is_file():
                raise SfppError(f"LoRA file {split_entry(a)[0]} does not exist")
        kw = dict(model=model, lora=adapters, lora_alpha=lora_alpha, dtype=dtype)
        if to == "sfpp":
            dst = check_output_path(Path(out), suffix=".safetensors")
            with console.status("converting"):
                res = convert_checkpoint(src, dst, weights=weights, **kw)
        else:
            dst = Path(out).expanduser()
            if dst.exists() and not dst.is_dir():
                raise SfppError(f"--out {dst} is a file; give a folder for --to diffusers")
            with console.status("exporting"):
                res = export_diffusers(src, dst, weights=weights, **kw)
        ck = res.source
        how = f"{ck.layout} layout" + (f", entry {ck.entry}" if ck.entry else "")
        if ck.removed:
            how += f", stripped {' '.join(ck.removed)}"
        if adapters:
            how += f", merged {len(adapters)} LoRA"
        n = sum(v.numel() for v in res.state.values())
        console.print(f"[green]wrote[/] {dst} ({res.preset}, {len(res.state)} tensors, {n:,} parameters; {how})")
