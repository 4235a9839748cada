"""A prompt the ToyWorld model cannot read gets one warning line that lists what it can read."""

from types import SimpleNamespace

from sfpp.spec import prompt_warnings
from sfpp.text import build_debug_tokenizer
from sfpp.toyworld.model import toy_tokenizer
from sfpp.toyworld.world import BACKGROUNDS, COLOURS, SHAPES, prompt_warning
from tests.train_helpers import run


def test_prompt_warning_only_when_no_drawable_object():
    w = prompt_warning("a plane over snowy mountains")
    assert w is not None and "\n" not in w
    for word in [*COLOURS, *SHAPES, *BACKGROUNDS]:
        assert word in w  # the vocabulary is listed
    assert "'plane'" in w and "'snowy'" in w and "'mountains'" in w  # the words it did not know
    assert prompt_warning("a red circle and a blue square bouncing on a black background") is None
    assert prompt_warning("A RED triangle, somewhere nice") is None  # one drawable object is enough
    assert prompt_warning("a red thing on a gray background") is not None  # colour without a shape
    assert prompt_warning("a circle") is not None  # shape without a colour


def test_only_toy_models_warn():
    toy = SimpleNamespace(tokenizer=toy_tokenizer())
    debug = SimpleNamespace(tokenizer=build_debug_tokenizer())
    texts = ["a plane over snowy mountains", "a plane over snowy mountains", "a blue square on a navy background"]
    assert len(prompt_warnings(toy, texts)) == 1  # once per distinct prompt, none for the drawable one
    assert prompt_warnings(debug, texts) == []  # the debug model's vocabulary is not ToyWorld's


def test_generate_warns_once_and_still_writes(tmp_path):
    out = tmp_path / "plane.mp4"
    r = run("generate", "a plane over snowy mountains", "--model", "toy", "--frames", "9", "--out", out)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "knows nothing" in ln]
    assert len(lines) == 1 and lines[0].lstrip().startswith("warning:"), r.output
    assert out.exists()
    r = run("generate", "a red circle moving on a black background", "--model", "toy", "--frames", "9",
            "--out", tmp_path / "ok.mp4")
    assert r.exit_code == 0 and "knows nothing" not in r.output, r.output


def test_debug_model_does_not_warn(tmp_path):
    r = run("generate", "a plane over snowy mountains", "--model", "debug", "--frames", "9", "--out", tmp_path / "d.mp4")
    assert r.exit_code == 0 and "knows nothing" not in r.output, r.output


def test_rollout_warns_for_unreadable_toy_prompts(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a plane over snowy mountains\na red circle moving on a black background\n")
    r = run("rollout", "--prompts", prompts, "--model", "toy", "--frames", "9", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "knows nothing" in ln]
    assert len(lines) == 1 and "plane" in lines[0], r.output
