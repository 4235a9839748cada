"""Property test: every subcommand, fed random edge values for its numeric, path and string options.

For each command there is a cheap valid invocation (tiny `debug` sizes, one step, one prompt); each
example replaces one or two of its options with values drawn from edge cases (non-finite, huge,
negative, zero, empty, garbage text, non-UTF-8 files, folders, missing paths, broken links). The
property: the command ends with exit code 0, 1 or 2, raises nothing (no traceback), and creates or
changes nothing outside its output folder (`$SFPP_HOME` caches excepted).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sfpp.cli.main import app

NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", "99999999999999999999", "1e-300", "abc", "",
           " ", "0x10", "1,5", "--", "-0"]
STRINGS = ["", " ", "é" * 300, "[[", "a|b", "[0s]", "a red circle[xs]", "a red circle[0s] | a blue square[1e9s]",
           "\t", "#", "a" * 5000]
PATHS = ["missing", "folder", "nonutf8", "empty", "garbage", "broken_link", "valid"]


def _inputs(root: Path) -> dict[str, Path]:
    """Input files every example may point at (never changed by a command)."""
    d = root / "inputs"
    d.mkdir()
    (d / "folder").mkdir()
    (d / "nonutf8").write_bytes(b"a red circle \xff\xfe\x00 caf\xe9\n")
    (d / "empty").write_bytes(b"")
    (d / "garbage").write_bytes(os.urandom(3000))
    (d / "broken_link").symlink_to(d / "nowhere")
    return {k: d / k for k in ("folder", "nonutf8", "empty", "garbage", "broken_link")} | {"missing": d / "missing"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs built once: a prompts file, a schedule, a debug video run, a student file, a distill config."""
    from tests.train_helpers import write_config

    root = tmp_path_factory.mktemp("fuzz")
    paths = _inputs(root)
    valid = root / "valid"
    valid.mkdir()
    (valid / "prompts.txt").write_text("a red circle\n")
    (valid / "schedule.json").write_text('[{"at": 0, "text": "a red circle"}, {"at": 0.2, "text": "a blue square"}]')
    runner = CliRunner()
    run_dir = valid / "run"
    r = runner.invoke(app, ["generate", "a red circle on a black background", "--frames", "9", "--model", "debug",
                            "--height", "32", "--width", "32", "--window", "6", "--out", str(run_dir / "v.mp4")])
    assert r.exit_code == 0, r.output
    shutil.copy(Path(__file__).parent / "golden" / "debug_distill" / "ode.student.safetensors", valid / "student.safetensors")
    cfg = write_config(valid / "cfg", run={"stages": ["self-forcing"]}, self_forcing={"base_steps": 1},
                       dmd={"critic_ratio": 1})
    return {"root": root, "paths": paths, "valid": valid, "run": run_dir, "cfg": cfg}


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple]:
    out = {}
    for p in root.rglob("*"):
        if any(p == s or s in p.parents for s in skip):
            continue
        try:
            st_ = p.lstat()
        except OSError:
            continue
        out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns, p.is_dir())
    return out


# command -> (base argv with {OUT} / {valid ...} placeholders, {option: kind}); kind: num, str, path, or a list
COMMANDS = {
    "generate": (["generate", "a red circle", "--frames", "5", "--model", "debug", "--height", "32", "--width", "32",
                  "--window", "6", "--out", "{OUT}/v.mp4"],
                 {"--seconds": "num", "--frames": "num", "--fps": "num", "--height": "num", "--width": "num",
                  "--steps": "num", "--window": "num", "--sink": "num", "--chunk-frames": "num", "--shift": "num",
                  "--context-noise": "num", "--timesteps": "str", "--threads": "num", "--seed": "num",
                  "--blend-chunks": "num", "--rope": "str", "--device": "str", "--dtype": "str",
                  "--checkpoint": "path", "--lora": "path", "--prompt-file": "path", "--out": "out"}),
    "rollout": (["rollout", "--prompts", "{valid}/prompts.txt", "--out", "{OUT}/r", "--frames", "5", "--model",
                 "debug", "--height", "32", "--width", "32", "--window", "6"],
                {"--prompts": "path", "--frames": "num", "--seconds": "num", "--seed": "num", "--steps": "num",
                 "--window": "num", "--threads": "num", "--checkpoint": "path", "--out": "outdir"}),
    "distill": (["distill", "--config", "{cfg}", "--out", "{OUT}/d"],
                {"--config": "path", "--budget": ["", "8", "x", "-1x", "0x", "nanx", "1e308x", "0.001x", "abc",
                                                  "2000x"], "--seed": "num", "--stage": "str", "--out": "outdir"}),
    "evaluate": (["evaluate", "{run}", "-m", "temporal_flickering", "--out", "{OUT}/e"],
                 {"--window": "num", "--text-window": "num", "--prompts": "path", "-m": "str", "--out": "outdir",
                  "RUN": "path"}),
    "convert": (["convert", "{valid}/student.safetensors", "--out", "{OUT}/c.safetensors", "--model", "debug"],
                {"SRC": "path", "--lora": "path", "--lora-alpha": "num", "--dtype": "str", "--model": "str",
                 "--out": "out"}),
    "bench": (["bench", "--model", "debug", "--seconds", "0.3", "--height", "32", "--width", "32", "--window", "6",
               "--json"],
              {"--seconds": "num", "--height": "num", "--steps": "num", "--window": "num",
               "--compare-multiple": "num", "--threads": "num", "--seed": "num"}),
    "toyworld-clip": (["toyworld", "clip", "a red circle on a black background", "--seconds", "0.25", "--out",
                       "{OUT}/c.mp4"], {"--seconds": "num", "--seed": "num", "PROMPT": "str", "--out": "out"}),
    "toyworld-oracle": (["toyworld", "oracle", "{run}", "--prompt", "a red circle"],
                        {"--window": "num", "--prompt": "str", "VIDEOS": "path"}),
    "toyworld-switch": (["toyworld", "switch", "a red circle on a black background",
                         "a blue square on a white background", "--at", "0.5", "--seconds", "1", "--out", "{OUT}/s"],
                        {"--at": "num", "--seconds": "num", "--seeds": "num", "--blend-chunks": "num"}),
    "toyworld-train-teacher": (["toyworld", "train-teacher", "--steps", "1", "--batch-size", "1", "--out", "{OUT}/t"],
                               {"--steps": ["0", "-3", "abc", "1e308", "99999999999999999999"], "--lr": "num",
                                "--batch-size": ["0", "-1", "nan", "99999999999999999999"], "--init": "path"}),
}
POSITIONAL = {"RUN": 1, "SRC": 1, "PROMPT": 2, "VIDEOS": 2}


def _value(draw, kind, world, out: Path):
    if isinstance(kind, list):
        return draw(st.sampled_from(kind))
    if kind == "num":
        return draw(st.sampled_from(NUMBERS) | st.integers(-3, 3).map(str))
    if kind == "str":
        return draw(st.sampled_from(STRINGS))
    if kind in ("out", "outdir"):  # inside the output folder, or paths that cannot be written (an input file)
        return draw(st.sampled_from([str(out), str(out / "deeper" / "x.mp4"), str(world["paths"]["nonutf8"]),
                                     str(world["paths"]["nonutf8"] / "sub" / "x.mp4"), "", str(out / "ok.bin")]))
    name = draw(st.sampled_from(PATHS))
    if name == "valid":
        return str(world["valid"] / draw(st.sampled_from(["prompts.txt", "schedule.json", "student.safetensors"])))
    return str(world["paths"][name])


def _check(world, argv: list[str]) -> None:
    root = world["root"]
    home = Path(os.environ["SFPP_HOME"])
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    before = _snapshot(root, (out, home))
    r = CliRunner().invoke(app, argv, catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), (argv, repr(r.exception), r.output[-2000:])
    assert r.exit_code in (0, 1, 2), (argv, r.exit_code, r.output[-2000:])
    assert "Traceback" not in r.output, (argv, r.output[-2000:])
    assert _snapshot(root, (out, home)) == before, (argv, "changed files outside the output folder")


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_survives_edge_values(world, command, monkeypatch, tmp_path):
    (world["root"] / "cwd").mkdir(exist_ok=True)
    monkeypatch.chdir(world["root"] / "cwd")  # checked too: nothing may appear in the working folder
    base, options = COMMANDS[command]
    examples = {"distill": 12, "toyworld-train-teacher": 8, "toyworld-switch": 10, "bench": 12}.get(command, 25)

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data())
    def prop(data):
        out = world["root"] / "out"
        subst = {"{OUT}": str(out), "{valid}": str(world["valid"]), "{cfg}": str(world["cfg"]),
                 "{run}": str(world["run"])}
        argv = []
        for a in base:
            for k, v in subst.items():
                a = a.replace(k, v)
            argv.append(a)
        chosen = data.draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=2, unique=True))
        for opt in chosen:
            value = _value(data.draw, options[opt], world, out)
            if opt in POSITIONAL:
                argv[POSITIONAL[opt]] = value
            elif opt in argv:
                argv[argv.index(opt) + 1] = value
            else:
                argv += [opt, value]
        _check(world, argv)

    prop()
