"""`evaluate_runs`: every metric per time window, then per video, then per run, with caching."""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sfpp.errors import SfppError
from sfpp.evaluate import offline as off
from sfpp.evaluate.aggregate import aggregates
from sfpp.evaluate.cache import ResultCache
from sfpp.evaluate.long import LONG_METRICS
from sfpp.evaluate.metrics import METRICS, resolve_metrics
from sfpp.evaluate.video import (
    Run,
    VideoEntry,
    Window,
    content_hash,
    discover_run,
    load_prompts_file,
    make_windows,
    read_video,
    unique_run_names,
)


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """Everything `evaluate_runs` needs besides the run folders."""

    metrics: tuple[str, ...] = ()  # empty = the offline set; groups 'offline', 'vbench', 'all' allowed
    window_s: float = 2.0  # VBench-Long clip length
    text_window_s: float = 10.0  # VBench-Long length for text alignment (clip_score, overall_consistency)
    weights_dir: Path | None = None
    judge_model: str = "gemini-2.5-pro"
    judge_concurrency: int = 2
    judge_timeout_s: float = 300.0  # per HTTP request to Gemini
    max_videos: int | None = None  # send at most this many (uncached, distinct) videos to the judge
    dry_run: bool = False  # plan only: what would be computed and sent; no metric, no request
    prompts_file: Path | None = None
    cache_dir: Path | None = None  # default: $SFPP_HOME/cache/evaluate
    use_cache: bool = True
    device: str = "cpu"
    flow: off.FlowConfig = field(default_factory=off.FlowConfig)
    # 'windows': metrics on the decoded frames of each window. 'vbench-long': VBench-Long's protocol for
    # temporal_flickering and the VBench metrics (clips re-encoded, slow/fast fusion for subject and
    # background consistency; see sfpp.evaluate.long). Proxies and sfpp metrics are the same in both.
    protocol: str = "windows"
    long_encoder: str = "crf23"  # VBench-Long's x264 settings by PyAV generation: crf23 (>= 14.3), abr1024k (older)

    def __post_init__(self):
        from sfpp.evaluate.long import LongSettings, check_protocol

        object.__setattr__(self, "protocol", check_protocol(self.protocol))
        LongSettings(encoder=self.long_encoder)  # validates
        for opt, v in (("--window", self.window_s), ("--text-window", self.text_window_s),
                       ("--judge-timeout", self.judge_timeout_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise SfppError(f"{opt} must be a positive number of seconds, e.g. {opt} 2s; got {v!r}")
        if self.judge_concurrency < 1:
            raise SfppError("--judge-concurrency must be at least 1")
        if self.max_videos is not None and self.max_videos < 0:
            raise SfppError(f"--max-videos must be 0 or more, got {self.max_videos}")


@dataclass
class Evaluation:
    """The result of `evaluate_runs`: JSON-ready dicts plus the errors met on the way."""

    config: dict[str, Any]
    metrics: tuple[str, ...]
    runs: list[dict[str, Any]]
    errors: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)  # one line each: cache reuse, skipped videos
    plan: dict[str, Any] | None = None  # set by a dry run: what a real run would compute and send

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        d = {
            "sfpp_evaluate_format": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.config,
            "metrics": {m: {k: v for k, v in asdict(METRICS[m]).items() if k != "name"} for m in self.metrics},
            "runs": self.runs,
            "errors": self.errors,
            "notes": self.notes,
        }
        if self.plan is not None:
            d["plan"] = self.plan
        return d


def _clean(v: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, recursively (JSON-safe)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _window_rows(wins: list[Window], values: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "index": w.index,
            "start_frame": w.start,
            "end_frame": w.end,
            "start_s": round(w.start_s, 4),
            "end_s": round(w.end_s, 4),
            "value": v,
        }
        for w, v in zip(wins, values)
    ]


def _mean(values) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


# ---- offline --------------------------------------------------------------------------------------
_PER_WINDOW = {
    "temporal_flickering": off.temporal_flickering,
    "dynamic_degree_proxy": off.dynamic_degree_proxy,
    "motion_smoothness_proxy": off.motion_smoothness_proxy,
    "subject_consistency_proxy": off.subject_consistency_proxy,
    "background_consistency_proxy": off.background_consistency_proxy,
    "clipped_highlights": off.clipped_highlights,
    "clipped_shadows": off.clipped_shadows,
    "mean_luma": off.mean_luma,
    "luma_trend": off.luma_trend,
    "flow_magnitude": off.flow_magnitude,
    "stagnation": off.stagnation,
}
_RELATIVE_TO_FIRST = {
    "colour_drift": off.colour_drift,
    "sharpness_ratio": off.sharpness_ratio,
    "exposure_stability_proxy": off.exposure_stability_proxy,
}


def compute_offline(name: str, a: off.FrameAnalysis, wins: list[Window]) -> dict[str, Any]:
    """One offline metric over a video's windows: per-window values, the video value, details."""
    if name in _PER_WINDOW:
        values = [_PER_WINDOW[name](a, w) for w in wins]
    else:
        values = [_RELATIVE_TO_FIRST[name](a, w, wins[0]) for w in wins]
    value = _mean(values)
    details: dict[str, Any] = {}
    if name == "temporal_flickering":
        details["static_windows"] = [bool(off.static_window(a, w)) for w in wins]
    elif name == "luma_trend":
        value = off.luma_slope(a.mean_luma(), a.fps)  # over the whole video
    elif name == "stagnation":
        frozen = off.frozen_pairs(a)
        value = float(frozen.mean()) if frozen.size else float("nan")
        segs = off.stagnation_segments(a)
        details.update(
            segments=segs,
            stagnation_start_frame=segs[0]["start_frame"] if segs else None,
            stagnation_start_s=segs[0]["start_s"] if segs else None,
        )
    elif name == "flow_magnitude":
        top5 = a.pair_flow_top5()
        details.update(
            per_frame_top5=[round(float(x), 4) for x in top5],
            per_frame_mean=[round(float(x), 4) for x in a.pair_flow_mean()],
            variance_window8=[round(float(x), 4) for x in off.windowed_variance(top5, 8)],
            frame_times_s=[round((i + 1) / a.fps, 4) for i in range(len(top5))],
        )
    elif name == "exposure_stability_proxy":
        value = off.worst_quarter_mean(values)
        details["ratings_0_5"] = [v / 20.0 for v in values]
        details["video_value"] = "mean of the worst quarter of windows"
    return {"value": value, "windows": _window_rows(wins, values), "details": details}


# ---- VBench ---------------------------------------------------------------------------------------
def compute_vbench(name: str, models, frames: np.ndarray, fps: float, wins: list[Window], prompt: str | None) -> dict[str, Any]:
    from sfpp.evaluate import vbench as vb

    values = []
    for w in wins:
        clip = frames[w.start : w.end]
        values.append(vb.score_clip(name, models, clip, fps=fps, prompt=prompt))
    details: dict[str, Any] = {}
    if name == "overall_consistency":
        from sfpp.evaluate.viclip import text_cleanup_backend

        n_tokens = len(models.viclip_tokenizer().encode(prompt or ""))
        room = models.viclip().config.context_length - 2  # VBench keeps the prompt's first 30 BPE tokens
        details.update(prompt_tokens=n_tokens, prompt_tokens_used=min(n_tokens, room), text_cleanup=text_cleanup_backend())
    return {"value": _mean(values), "windows": _window_rows(wins, values), "details": details}


def _weights_fingerprint(weights_dir: Path, metric: str) -> str:
    from sfpp.evaluate.vbench import METRIC_FILES

    parts = []
    entries = []
    for entry in METRIC_FILES[metric]:  # a tuple lists alternatives (VBench's file, a Hugging Face folder)
        entries += list(entry) if isinstance(entry, tuple) else [entry]
    for entry in entries:
        p = Path(weights_dir) / entry
        files = [p] if p.is_file() else sorted(x for x in p.glob("*") if x.is_file())
        parts += [f"{f.relative_to(weights_dir)}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return ";".join(parts)


# ---- cache keys -----------------------------------------------------------------------------------
def cache_version(m: str, config: EvaluateConfig, *, prompt: str | None = None, judge_version: str | None = None) -> str:
    """The cache key of metric `m` on one video, besides the video's content hash.

    It holds everything else that determines the result: the metric's version; its window; the
    flow settings (proxies, sfpp metrics); the weight files (VBench); the text clean-up backend
    (overall_consistency); for metrics that read the prompt (clip_score, overall_consistency,
    visual_stability) a digest of the prompt; for the judge its model, rubric version and
    temperature (`judge_version`, see `sfpp.evaluate.judge.judge_version`).
    """
    from sfpp.evaluate.cache import text_digest

    spec = METRICS[m]
    if spec.family == "judge":
        if judge_version is None:
            from sfpp.evaluate.judge import judge_version as jv

            judge_version = jv(config.judge_model)
        v = f"{spec.version}|{judge_version}"
    else:
        ws = config.text_window_s if spec.text_window else config.window_s
        v = f"{spec.version}|window={ws:g}"
        if spec.family in ("proxy", "sfpp"):
            v += f"|flow={config.flow}"
        if spec.family == "vbench":
            v += f"|{_weights_fingerprint(Path(config.weights_dir), m)}"
        if config.protocol == "vbench-long" and m in LONG_METRICS:
            v += "|" + _long_settings(config).key(m)
            if m == "subject_consistency":
                v += f"|{_long_weights_fingerprint(Path(config.weights_dir))}"
        if m == "overall_consistency":  # prompts are cleaned by ftfy (as VBench) only where it is installed
            from sfpp.evaluate.viclip import text_cleanup_backend

            v += f"|text={text_cleanup_backend()}"
    if spec.needs_prompt:
        v += f"|prompt={text_digest(prompt or '')}"
    return v


def _long_settings(config: EvaluateConfig):
    from sfpp.evaluate.long import LongSettings

    return LongSettings(encoder=config.long_encoder)


def _long_weights_fingerprint(weights_dir: Path) -> str:
    from sfpp.evaluate.long import DINOV2_DIR

    files = sorted(x for x in (weights_dir / DINOV2_DIR).glob("*") if x.is_file())
    return ";".join(f"{f.relative_to(weights_dir)}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def _judge_version_of(judge, config: EvaluateConfig) -> str:
    from sfpp.evaluate.judge import judge_version

    v = getattr(judge, "cache_version", None) if judge is not None else None
    if isinstance(v, str):
        return v
    return judge_version(getattr(judge, "model", config.judge_model) if judge is not None else config.judge_model)


# ---- the run loop ---------------------------------------------------------------------------------
def evaluate_runs(
    run_paths: list[Path | str],
    config: EvaluateConfig = EvaluateConfig(),
    *,
    judge=None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate runs of MP4s side by side.

    A run is a folder written by 'sfpp generate' (NAME.mp4 + NAME.json), by 'sfpp rollout' (one
    sub-folder per prompt with preview.mp4 + preview.json), a mix of both, or one .mp4 file;
    see `sfpp.videos.find_videos` for how videos are found and named.

    Every metric is computed per window (`config.window_s`, or `text_window_s` for text alignment),
    averaged per video, then per run. Results are cached per (video hash, `cache_version`): a
    changed setting or prompt recomputes; how many results were reused is one line of
    `Evaluation.notes`. A video that cannot be decoded, or a metric that fails on one video, is
    recorded in `Evaluation.errors` and the rest is still evaluated. Setup problems (no API key,
    missing weights, unknown metric, a broken symlink or corrupt sidecar) raise `SfppError`
    before any work; so does a rejected API key, after the first video sent to the judge.

    The judge sees each distinct (video bytes, prompt) once per call, at most
    `config.max_videos` of them; `config.dry_run` computes and sends nothing and fills
    `Evaluation.plan` instead. On Ctrl-C the judge's uploads in flight are deleted and the
    `KeyboardInterrupt` is re-raised within a few seconds.

    Under ``accelerate launch`` (several processes, `sfpp.distributed_jobs`) the (run, video) list is
    split round robin by rank, each rank on its own device (``--device cuda`` is ``cuda:LOCAL_RANK``)
    and sharing the cache; the ranks exchange their results and every rank returns the Evaluation a
    single process makes (values, order, errors; only ``cached`` flags can differ, when two ranks
    computed the same bytes at once). The judge runs on rank 0 alone, over every rank's videos.
    """
    from sfpp.distributed_jobs import workers

    w = workers()
    say = progress or (lambda _msg: None)
    metrics = resolve_metrics(config.metrics)
    if not run_paths:
        raise SfppError("give at least one RUN folder of MP4s (from 'sfpp generate' or 'sfpp rollout')")
    prompts = load_prompts_file(Path(config.prompts_file)) if config.prompts_file else None
    names = unique_run_names([Path(p) for p in run_paths])
    runs: list[Run] = [discover_run(Path(p), prompts, name=n) for p, n in zip(run_paths, names)]

    vbench_metrics = [m for m in metrics if METRICS[m].family == "vbench"]
    models = None
    if vbench_metrics:
        from sfpp.evaluate import vbench as vb

        vb.check_weights(config.weights_dir, vbench_metrics)
        if config.protocol == "vbench-long":
            from sfpp.evaluate.long import missing_weights

            missing = missing_weights(config.weights_dir, vbench_metrics, _long_settings(config))
            if missing:
                raise SfppError(f"--protocol vbench-long: subject_consistency's clip-to-clip branch needs DINOv2; "
                                f"--weights-dir {config.weights_dir} is missing {', '.join(missing)}")
        if not config.dry_run:
            if "dynamic_degree" in vbench_metrics:
                vb._import_torchvision_raft()
            models = vb.VBenchModels(Path(config.weights_dir), device=w.device(config.device) or config.device)
    if "visual_stability" in metrics and judge is None and not config.dry_run:
        from sfpp.evaluate.judge import GeminiJudge

        judge = GeminiJudge(config.judge_model, timeout_s=config.judge_timeout_s)
    judge_model = getattr(judge, "model", config.judge_model) if judge is not None else config.judge_model
    jversion = _judge_version_of(judge, config) if "visual_stability" in metrics else None

    cache = ResultCache(config.cache_dir)
    notes: list[str] = []

    # Every (run, video) is one job; with several processes (accelerate launch) job j runs on rank
    # j % world, the others' results arrive through `_exchange`, and the merge below replays them in
    # job order, so the Evaluation is the one a single process makes (see `sfpp.distributed_jobs`).
    run_dicts = [{"name": run.name, "path": str(run.path), "videos": [_video_header(e) for e in run.videos]}
                 for run in runs]
    jobs = [(ri, vi) for ri, run in enumerate(runs) for vi in range(len(run.videos))]
    ctx = _VideoContext(config=config, metrics=metrics, cache=cache, models=models, jversion=jversion, say=say)
    done: dict[int, _JobResult] = {}
    failure: str | None = None
    try:
        for j, (ri, vi) in w.mine(jobs):
            done[j] = _evaluate_video(ctx, runs[ri].name, runs[ri].videos[vi], run_dicts[ri]["videos"][vi])
    except Exception as e:
        if not w.distributed:
            raise
        failure = f"{type(e).__name__}: {e}"  # told to the others, then every rank stops with an error
    if w.distributed:
        done = _exchange(w, done, failure)
        for j, (ri, vi) in enumerate(jobs):
            run_dicts[ri]["videos"][vi] = done[j].vd

    errors: list[dict[str, str]] = []
    judge_tasks: list[_JudgeTask] = []
    reused = 0
    planned = {"videos": 0, "results": 0}
    planned_keys: set[tuple[str, str, str]] = set()
    for j, (ri, vi) in enumerate(jobs):
        r = done[j]
        errors += r.errors
        reused += r.reused
        judge_tasks += [_JudgeTask(vd=r.vd, entry=runs[ri].videos[vi], run_name=runs[ri].name, version=v)
                        for v in r.judge_versions]
        if r.planned:  # a real run computes a duplicate video once, then reads it from the cache
            new = set(r.planned) - planned_keys
            planned_keys.update(new)
            planned["videos"] += bool(new)
            planned["results"] += len(new)

    if reused:
        notes.append(f"reused {reused} cached result{'s' if reused != 1 else ''} (same video bytes, metric version, "
                     "settings, prompt and judge); --no-cache recomputes")
    groups = _group_judge_tasks(judge_tasks)
    n_dupes = len(judge_tasks) - len(groups)
    if n_dupes:
        notes.append(f"visual_stability: {n_dupes} duplicate video{'s' if n_dupes != 1 else ''} (same bytes and prompt) "
                     "judged once")
    over: list[list[_JudgeTask]] = []
    if config.max_videos is not None and len(groups) > config.max_videos:
        groups, over = groups[: config.max_videos], groups[config.max_videos :]
        for g in over:
            for t in g:
                t.vd["metrics"]["visual_stability"] = {"value": None, "skipped": f"over --max-videos {config.max_videos}"}
        n_over = sum(len(g) for g in over)
        notes.append(f"visual_stability: {n_over} video{'s' if n_over != 1 else ''} not sent to the judge "
                     f"(--max-videos {config.max_videos}): "
                     + ", ".join(f"{g[0].run_name}/{g[0].entry.label}" for g in over[:5]) + (", ..." if len(over) > 5 else ""))

    plan = None
    if config.dry_run:
        plan = _plan(config, metrics, judge_model, groups, over, reused, planned)
    elif groups:
        if not w.distributed:
            _run_judge(judge, groups, cache, errors, config.judge_concurrency, say)
        else:  # rank 0 judges every video (one upload per distinct video, --max-videos over all), then tells the others
            run_dicts, errors = _judge_on_main(w, judge, groups, cache, errors, config.judge_concurrency, say,
                                               run_dicts)

    for rd in run_dicts:
        _summarise(rd, metrics)
    cfg = _clean({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()})
    cfg["metrics"] = list(metrics)
    cfg["judge_model"] = judge_model
    return Evaluation(config=cfg, metrics=metrics, runs=run_dicts, errors=errors, notes=notes, plan=plan)


# ---- one video ------------------------------------------------------------------------------------
@dataclass
class _VideoContext:
    config: EvaluateConfig
    metrics: tuple[str, ...]
    cache: ResultCache
    models: Any
    jversion: str | None
    say: Callable[[str], None]


@dataclass
class _JobResult:
    """What evaluating one video gave: its dict, its errors (in order), what the judge and a dry run need."""

    vd: dict[str, Any]
    errors: list[dict[str, str]] = field(default_factory=list)
    reused: int = 0
    judge_versions: list[str] = field(default_factory=list)  # cache versions of the judge work left (0 or 1)
    planned: list[tuple[str, str, str]] = field(default_factory=list)  # dry run: (hash, metric, version) to compute


def _video_header(entry: VideoEntry) -> dict[str, Any]:
    vd: dict[str, Any] = {"name": entry.name, "path": str(entry.path), "file": entry.label,
                          "sidecar": str(entry.sidecar_path) if entry.sidecar_path else None,
                          "prompt": entry.prompt, "metrics": {}, "error": None}
    for key in ("seed", "model"):
        if key in entry.sidecar:
            vd[key] = entry.sidecar[key]
    return vd


def _evaluate_video(ctx: _VideoContext, run_name: str, entry: VideoEntry, vd: dict[str, Any]) -> _JobResult:
    """Every metric of one video (cached or computed), recorded in `vd`; the judge's work is left to the caller."""
    config, metrics, cache, models = ctx.config, ctx.metrics, ctx.cache, ctx.models
    res = _JobResult(vd=vd)
    errors = res.errors
    ctx.say(f"{run_name}/{entry.label}")
    try:
        vhash = content_hash(entry.path)
    except OSError as e:
        vd["error"] = f"cannot read {entry.label}: {e.strerror}"
        errors.append({"run": run_name, "video": entry.name, "metric": "", "error": vd["error"]})
        return res
    vd["hash"] = vhash
    todo = []
    for m in metrics:
        if METRICS[m].needs_prompt and not entry.prompt:
            side = entry.label[:-4] + ".json" if entry.label.lower().endswith(".mp4") else f"{entry.name}.json"
            msg = (f"{entry.label}: no prompt for {m}; add {side} with a 'prompt' or pass --prompts FILE "
                   f"(name '{entry.name}')")
            vd["metrics"][m] = {"value": None, "error": msg}
            errors.append({"run": run_name, "video": entry.name, "metric": m, "error": msg})
            continue
        version = cache_version(m, config, prompt=entry.prompt, judge_version=ctx.jversion)
        hit = cache.get(vhash, m, version) if config.use_cache else None
        if hit is not None:
            vd["metrics"][m] = {**hit, "cached": True}
            res.reused += 1
        elif METRICS[m].family == "judge":
            res.judge_versions.append(version)
        else:
            todo.append((m, version))
    if not todo:
        return res
    if config.dry_run:
        res.planned = [(vhash, m, version) for m, version in todo]
        return res
    try:
        frames, fps = read_video(entry.path, fallback_fps=entry.sidecar.get("fps"), label=entry.label)
    except SfppError as e:
        vd["error"] = str(e)
        errors.append({"run": run_name, "video": entry.name, "metric": "", "error": str(e)})
        return res
    vd.update(fps=fps, num_frames=int(frames.shape[0]), height=int(frames.shape[1]), width=int(frames.shape[2]),
              duration_s=frames.shape[0] / fps)
    analysis = off.FrameAnalysis(frames, fps, config.flow)
    long_videos: dict[float, Any] = {}  # clip seconds -> LongVideo (clips re-encoded once per video)
    for m, version in todo:
        spec = METRICS[m]
        seconds = config.text_window_s if spec.text_window else config.window_s
        wins = make_windows(frames.shape[0], fps, seconds)
        try:
            if config.protocol == "vbench-long" and m in LONG_METRICS:
                from sfpp.evaluate.long import LongVideo, compute_long

                if seconds not in long_videos:
                    long_videos[seconds] = LongVideo(frames, fps, seconds, _long_settings(config))
                out = compute_long(m, long_videos[seconds], models, entry.prompt)
            elif spec.family == "vbench":
                out = compute_vbench(m, models, frames, fps, wins, entry.prompt)
            else:
                out = compute_offline(m, analysis, wins)
        except SfppError as e:
            msg = f"{entry.label}: {m}: {e}"
        except Exception as e:  # noqa: BLE001 - one failing metric must not lose the others
            msg = f"{entry.label}: {m} failed: {type(e).__name__}: {e}"
        else:
            out = _clean(out)
            cache.put(vhash, m, version, out)
            vd["metrics"][m] = {**out, "cached": False}
            continue
        vd["metrics"][m] = {"value": None, "error": msg}
        errors.append({"run": run_name, "video": entry.name, "metric": m, "error": msg})
    del analysis, frames, long_videos
    return res


# ---- several processes ----------------------------------------------------------------------------
def _exchange(w, done: dict[int, _JobResult], failure: str | None) -> dict[int, _JobResult]:
    """Every rank's job results on every rank (a rank that failed makes every rank stop with its error)."""
    parts = w.all_gather({"rank": w.rank, "done": done, "failure": failure})
    bad = [(p["rank"], p["failure"]) for p in parts if p["failure"]]
    if bad:
        r, msg = bad[0]
        raise SfppError(f"rank {r} of {w.world} stopped: {msg}; the results it cached are kept, run again to finish")
    merged: dict[int, _JobResult] = {}
    for p in parts:
        merged.update(p["done"])
    return merged


def _judge_on_main(w, judge, groups, cache, errors, concurrency, say, run_dicts):
    """Rank 0 runs the judge over all ranks' videos; every rank gets the judged run dicts and errors back."""
    failure = None
    if w.is_main:
        try:
            _run_judge(judge, groups, cache, errors, concurrency, say)
        except Exception as e:
            failure = e
    msg = None if failure is None else (type(failure).__name__, str(failure))
    run_dicts, errors, msg = w.broadcast((run_dicts, errors, msg))  # rank 0's
    if failure is not None:
        raise failure
    if msg is not None:
        raise SfppError(f"rank 0 stopped while judging: {msg[0]}: {msg[1]}")
    return run_dicts, errors


# ---- the judge ------------------------------------------------------------------------------------
@dataclass
class _JudgeTask:
    vd: dict[str, Any]
    entry: VideoEntry
    run_name: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.run_name}/{self.entry.label}"


def _group_judge_tasks(tasks: list[_JudgeTask]) -> list[list[_JudgeTask]]:
    """Tasks with the same video bytes and cache key (so the same prompt and judge): judged once."""
    groups: dict[tuple[str, str], list[_JudgeTask]] = {}
    for t in tasks:
        groups.setdefault((t.vd["hash"], t.version), []).append(t)
    return list(groups.values())


def _plan(config, metrics, judge_model, groups, over, reused, planned) -> dict[str, Any]:
    from sfpp.evaluate.judge import api_key_from_env

    plan: dict[str, Any] = {
        "compute": {"videos": planned["videos"], "results": planned["results"]},
        "cached_results": reused,
        "judge": None,
    }
    if "visual_stability" in metrics:
        videos = []
        for g in groups:
            t = g[0]
            try:
                size = t.entry.path.stat().st_size
            except OSError:
                size = None
            videos.append({"run": t.run_name, "video": t.entry.name, "file": t.entry.label, "bytes": size,
                           "prompt": t.entry.prompt, "same_video": [x.label for x in g[1:]]})
        n = len(videos)
        plan["judge"] = {
            "model": judge_model,
            "api_key": "set" if api_key_from_env() else "missing (set GOOGLE_API_KEY or GEMINI_API_KEY)",
            "videos": videos,
            "bytes": sum(v["bytes"] or 0 for v in videos),
            "uploads": n,
            "generate_calls": n,
            "deletes": n,
            "timeout_s": config.judge_timeout_s,
            "over_max_videos": [g[0].label for g in over],
        }
    return plan


def _accepts_progress(fn) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return any(p.name == "progress" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _run_judge(judge, groups: list[list[_JudgeTask]], cache: ResultCache, errors, concurrency: int, say) -> None:
    """Judge each group once, in worker threads; results are recorded (and cached) as they come.

    The first video is judged alone: a rejected key (`JudgeAuthError`) stops the run there. On
    any interruption (Ctrl-C) the judge is cancelled, which deletes its uploads in flight, and
    the exception is re-raised at once: the workers are daemon threads, never waited for.
    """
    from sfpp.evaluate.judge import JudgeAuthError, JudgeCancelled

    with_progress = _accepts_progress(judge.rate)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    lock = threading.Lock()
    pending: list[list[_JudgeTask]] = []
    total = sum(len(g) for g in groups)
    seen = [0]  # videos whose result has been recorded

    def one(group: list[_JudgeTask]):
        t = group[0]
        say(f"judge {judge.model}: {t.label}")
        kw = {"progress": lambda msg: say(f"judge {judge.model}: {t.label}: {msg}")} if with_progress else {}
        try:
            return group, judge.rate(t.entry.path, t.entry.prompt, **kw), None
        except (JudgeAuthError, JudgeCancelled) as e:
            return group, None, e
        except SfppError as e:
            return group, None, str(e)
        except Exception as e:  # noqa: BLE001 - one failing video must not lose the others
            return group, None, f"{type(e).__name__}: {e}"

    def worker():
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                g = pending.pop(0)
            results.put(one(g))

    def record(group, r, err) -> None:
        seen[0] += len(group)
        if isinstance(err, JudgeCancelled):
            return
        if isinstance(err, JudgeAuthError):
            stop.set()
            left = total - seen[0]
            raise JudgeAuthError(f"{group[0].label}: {err}; stopped the judge"
                                 + (f" ({left} more video{'s' if left != 1 else ''} not judged)" if left else ""))
        if err is not None:
            for t in group:
                msg = f"{t.entry.label}: visual_stability: {err}"
                t.vd["metrics"]["visual_stability"] = {"value": None, "error": msg}
                errors.append({"run": t.run_name, "video": t.entry.name, "metric": "visual_stability", "error": msg})
            return
        res = {
            "value": r.value,
            "windows": [],
            "details": {"score_0_5": r.score, "reasoning": r.reasoning, "judge_model": r.judge_model,
                        "prompt_version": r.prompt_version, "attempts": r.attempts},
        }
        cache.put(group[0].vd["hash"], "visual_stability", group[0].version, res)
        for t in group:
            t.vd["metrics"]["visual_stability"] = {**res, "cached": False}

    def run_batch(batch: list[list[_JudgeTask]], n_workers: int) -> None:
        with lock:
            pending[:] = batch
        threads = [threading.Thread(target=worker, daemon=True, name=f"sfpp-judge-{i}") for i in range(n_workers)]
        for th in threads:
            th.start()
        while True:
            try:
                item = results.get(timeout=0.2)  # a short wait: Ctrl-C is seen at once
            except queue.Empty:
                if not any(th.is_alive() for th in threads) and results.empty():
                    return
                continue
            record(*item)

    try:
        run_batch(groups[:1], 1)
        if len(groups) > 1:
            run_batch(groups[1:], min(concurrency, len(groups) - 1))
    except BaseException:  # Ctrl-C, SIGTERM, a rejected key: stop the others and delete their uploads
        stop.set()
        with lock:
            pending.clear()
        cancel = getattr(judge, "cancel", None)
        if callable(cancel):
            cancel()
        raise


def _summarise(rd: dict[str, Any], metrics: tuple[str, ...]) -> None:
    """Per-run means over videos, run curves (mean over the videos having each window), aggregates."""
    summary, curves = {}, {}
    for m in metrics:
        vals = [vd["metrics"].get(m, {}).get("value") for vd in rd["videos"]]
        vals = [v for v in vals if v is not None]
        summary[m] = {"value": float(np.mean(vals)) if vals else None, "n_videos": len(vals)}
        by_span: dict[tuple[float, float], list[dict]] = {}  # videos of other lengths split differently
        for vd in rd["videos"]:
            for w in vd["metrics"].get(m, {}).get("windows") or []:
                if w.get("value") is not None:
                    by_span.setdefault((w["start_s"], w["end_s"]), []).append(w)
        curves[m] = [
            {
                "start_s": s0,
                "end_s": s1,
                "mid_s": round(0.5 * (s0 + s1), 4),
                "value": float(np.mean([w["value"] for w in ws])),
                "n_videos": len(ws),
            }
            for (s0, s1), ws in sorted(by_span.items(), key=lambda kv: (kv[0][0] + kv[0][1], kv[0][0]))
        ]
    rd["summary"] = summary
    rd["curves"] = curves
    rd["aggregates"] = _clean(aggregates({m: s["value"] for m, s in summary.items()}))
