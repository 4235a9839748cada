"""`sfpp evaluate`: VBench-style metrics over time and the Visual Stability judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from typer.core import TyperCommand

from sfpp.cli._common import console, parse_duration_seconds, print_table, user_errors

_HELP = """Score runs of MP4s per time window, per video and per run.

A RUN is a folder written by 'sfpp generate' (NAME.mp4 + NAME.json sidecars; video NAME), a folder
written by 'sfpp rollout' (one sub-folder per prompt with preview.mp4 + preview.json; the video is
named after its sub-folder, e.g. 0000-a-red-circle), a mix of both, or a single .mp4 file. Only the
folder's own MP4s and those of its direct sub-folders are read (no deeper search); unfinished
*.partial.mp4 files are skipped. A sub-folder with several MP4s gives videos named SUB/NAME.

Runs are compared side by side: a table, plus results.json, windows.csv, summary.csv and
plots/*.png under --out. Default metrics are the offline set (no downloads). VBench metrics
('--metric vbench') load local weights from --weights-dir laid out as:
dino_model/dino_vitbase16_pretrain.pth (or dino_model/dino-vitb16/), clip_model/clip-vit-base-patch32/, clip_model/clip-vit-large-patch14/
(Hugging Face folders), aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth,
raft_model/models/raft-things.pth, pyiqa_model/musiq_spaq_ckpt-358bb6af.pth,
amt_model/amt-s.pth, ViCLIP/ViClip-InternVid-10M-FLT.pth + ViCLIP/bpe_simple_vocab_16e6.txt.gz.
'--metric visual-stability' asks Gemini (GOOGLE_API_KEY or GEMINI_API_KEY): each distinct video
(same bytes and prompt) is uploaded once, rated, and its upload deleted; '--dry-run' shows what
would be sent and '--max-videos N' caps it. Results are cached by video bytes, metric version,
settings, prompt and judge (model, rubric); '--no-cache' recomputes.

Under 'accelerate launch' (any number of processes) the videos are split across the processes
(each on its own device: '--device cuda' is cuda:LOCAL_RANK), which share the cache; rank 0 merges
their results, runs the judge, and alone writes the outputs and prints the table, equal to what one
process gives.

Exit code 1 when some video or metric failed (the rest is still written), 2 for usage errors and a
rejected API key (the run stops after the first video), 130 on Ctrl-C.
"""


def evaluate_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Runs: folders from 'sfpp generate' (NAME.mp4 + NAME.json) or 'sfpp rollout' (SUB/preview.mp4 per "
            "prompt), mixed, or .mp4 files. Searched one sub-folder deep, no deeper.",
            show_default=False,
        ),
    ],
    metric: Annotated[
        Optional[list[str]],
        typer.Option("--metric", "-m", help="Metric or group (offline, vbench, all); repeat or comma-separate. Default: offline."),
    ] = None,
    window: Annotated[str, typer.Option(help="Window length for per-time metrics (VBench-Long: 2s).")] = "2s",
    text_window: Annotated[str, typer.Option(help="Window length for text alignment (clip_score, overall_consistency).")] = "10s",
    weights_dir: Annotated[
        Optional[Path], typer.Option(help="Folder of local VBench weights (needed by VBench metrics).")
    ] = None,
    judge_model: Annotated[str, typer.Option(help="Gemini model for visual-stability; recorded with every score.")] = "gemini-2.5-pro",
    judge_concurrency: Annotated[int, typer.Option(help="Videos judged at the same time.")] = 2,
    judge_timeout: Annotated[
        str, typer.Option(help="Timeout of each request to Gemini; a timed-out request is retried.")
    ] = "300s",
    max_videos: Annotated[
        Optional[int],
        typer.Option(help="Send at most N videos to the Gemini judge (cached results and duplicates are free); "
                     "the rest are listed as skipped."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be computed and sent to Gemini (videos, sizes, calls); "
                     "compute, send and write nothing."),
    ] = False,
    prompts: Annotated[
        Optional[Path],
        typer.Option(
            help="Prompts for MP4s without sidecars: JSON {name: prompt} or name<TAB>prompt lines. A name is the file "
            "stem for NAME.mp4, the sub-folder for a rollout's SUB/preview.mp4 (e.g. 0000-a-red-circle; "
            "'SUB/preview' works too), SUB/NAME in a sub-folder of several MP4s. Sidecar prompts win."
        ),
    ] = None,
    out: Annotated[str, typer.Option(help="Folder for results.json, windows.csv, summary.csv, plots/.")] = "sfpp-evaluate",
    as_json: Annotated[bool, typer.Option("--json", help="Print results JSON to stdout instead of the table.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute everything and refresh the cache.")] = False,
    device: Annotated[str, typer.Option(help="Torch device for VBench networks.")] = "cpu",
    protocol: Annotated[
        str,
        typer.Option(help="'windows' (default): each metric on the decoded frames of each --window. 'vbench-long': "
                     "VBench-Long's protocol for temporal_flickering and the VBench metrics: clips of int(fps)*int(window) "
                     "frames, each re-encoded as VBench-Long does (H.264 yuv420p) and decoded, subject/background "
                     "consistency fused with a clip-to-clip score (0.5/0.5; subject needs DINOv2 in --weights-dir "
                     "dinov2_model/dinov2-base/); per-clip and in-clip numbers stay in results.json. Proxies and sfpp "
                     "metrics are the same under both."),
    ] = "windows",
    long_encoder: Annotated[
        str, typer.Option(help="VBench-Long's x264 settings, which depend on its PyAV: crf23 (PyAV >= 14.3) or "
                          "abr1024k (older PyAV, 1024 kb/s).")
    ] = "crf23",
) -> None:
    """Score runs of generated videos over time (VBench-style metrics, proxies, Gemini judge)."""
    from sfpp.evaluate import EvaluateConfig, evaluate_runs, render_table, write_outputs
    from sfpp.evaluate.report import missing_aggregate_notes

    with user_errors():
        import importlib.util

        from sfpp.errors import SfppError

        if not out.strip():
            raise SfppError("--out is empty; give a folder for results.json, the CSVs and the plots")
        missing = [m for m in ("cv2", "matplotlib") if importlib.util.find_spec(m) is None]
        if missing:  # before any work: the offline metrics and the plots need them
            raise SfppError(f"sfpp evaluate needs {' and '.join(missing)}: pip install 'sfpp[eval]'")
        cfg = EvaluateConfig(
            metrics=tuple(metric or ()),
            window_s=parse_duration_seconds(window, what="--window"),
            text_window_s=parse_duration_seconds(text_window, what="--text-window"),
            weights_dir=weights_dir,
            judge_model=judge_model,
            judge_concurrency=judge_concurrency,
            judge_timeout_s=parse_duration_seconds(judge_timeout, what="--judge-timeout"),
            max_videos=max_videos,
            dry_run=dry_run,
            prompts_file=prompts,
            use_cache=not no_cache,
            device=device,
            protocol=protocol,
            long_encoder=long_encoder,
        )
        import contextlib

        from sfpp.distributed_jobs import workers

        w = workers()  # under 'accelerate launch': videos split across ranks, rank 0 alone writes and prints
        try:
            with (console.status("evaluating…") if w.is_main else contextlib.nullcontext()) as status:
                show = (lambda msg: status.update(f"evaluating {escape(msg)}")) if status is not None else None
                ev = evaluate_runs(runs, cfg, progress=show)
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]; nothing written (uploads to Gemini in flight, if any, were deleted)")
            raise typer.Exit(code=130) from None
        if not w.is_main:  # exit 0 whatever happened: rank 0 reports the merged errors and sets the exit code
            return  # (a rank exiting non-zero makes the launcher stop rank 0 before it wrote the outputs)
        if dry_run:
            _print_plan(ev, as_json)
            return
        written = write_outputs(ev, Path(out))

    if as_json:
        typer.echo(json.dumps(ev.to_dict(), indent=2))
    else:
        print_table(render_table(ev))  # stdout, never cut to '…'
        for note in missing_aggregate_notes(ev):
            console.print(f"[dim]{note}[/]")
        console.print(
            f"wrote {written['json']}, {written['windows_csv'].name}, {written['summary_csv'].name} "
            f"and {len(written['plots'])} plots in {Path(out) / 'plots'}"
        )
    for note in ev.notes:
        console.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
    if w.distributed:
        n = sum(len(rd["videos"]) for rd in ev.runs)
        console.print(f"[dim]{n} video{'s' if n != 1 else ''} split across {w.world} processes; merged by rank 0[/]")
    if ev.errors:
        for e in ev.errors:
            console.print(f"[bold red]error:[/] {escape(e['run'])}/{escape(e['error'])}", soft_wrap=True)
        console.print(f"[bold red]{len(ev.errors)} problem(s); results for everything else were written to {out}[/]")
        raise typer.Exit(code=1)


def _print_plan(ev, as_json: bool) -> None:
    """A dry run's plan on stdout: what would be computed, what would be sent to Gemini."""
    plan = ev.plan or {}
    if as_json:
        typer.echo(json.dumps({"plan": plan, "notes": ev.notes, "errors": ev.errors}, indent=2))
        return
    comp = plan.get("compute", {})
    lines = ["dry run: nothing computed, sent or written",
             (f"would compute {comp.get('results', 0)} metric result(s) on {comp.get('videos', 0)} video(s); "
             f"{plan.get('cached_results', 0)} cached result(s) reused")]
    judge = plan.get("judge")
    if judge is not None:
        n = len(judge["videos"])
        lines.append(f"would send {n} video(s) ({_size(judge['bytes'])}) to {judge['model']}: "
                     f"{judge['uploads']} upload(s), {judge['generate_calls']} generateContent call(s), "
                     f"{judge['deletes']} delete(s), plus status polls while Gemini processes each upload; "
                     f"timeout {judge['timeout_s']:g} s per request; API key {judge['api_key']}")
        for v in judge["videos"]:
            prompt = v["prompt"] if len(v["prompt"]) <= 70 else v["prompt"][:67] + "..."
            same = f" (also {', '.join(v['same_video'])})" if v["same_video"] else ""
            size = _size(v["bytes"]) if v["bytes"] is not None else "size unknown"
            lines.append(f"  {v['run']}/{v['file']} [{size}]{same}: {prompt!r}")
    for line in lines:
        typer.echo(line)
    for note in ev.notes:
        typer.echo(note)
    for e in ev.errors:
        typer.echo(f"would fail: {e['run']}/{e['error']}")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _paragraphs(text: str) -> str:
    """Typer keeps single line breaks inside a paragraph: join each paragraph's lines for the terminal to wrap."""
    return "\n\n".join(" ".join(par.split("\n")) for par in text.strip().split("\n\n"))


evaluate_cmd.__doc__ = _paragraphs(_HELP)


def _metrics_paragraph() -> str:
    from sfpp.evaluate.metrics import GROUPS, METRICS

    return f"Metrics: {', '.join(METRICS)}. Groups: {', '.join(GROUPS)}."


class EvaluateCommand(TyperCommand):
    """`sfpp evaluate`, whose help lists the metric registry.

    The registry lives in `sfpp.evaluate`, which imports numpy and the metric code: it is read
    only when this command's own help is shown, never for `sfpp --help` (whose command list uses
    the first paragraph, `short_help`) or for running another command.
    """

    def format_help(self, ctx, formatter) -> None:
        if self.help is not None and "Metrics: " not in self.help:
            self.help = f"{self.help}\n\n{_metrics_paragraph()}"
        super().format_help(ctx, formatter)


SHORT_HELP = _HELP.strip().split("\n\n")[0]
