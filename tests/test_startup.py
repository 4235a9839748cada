"""`import sfpp`, `sfpp --help` and `sfpp <cmd> --help` do no heavy imports.

torch alone takes over a second to import; numpy, diffusers, transformers, matplotlib, OpenCV and
the Gemini client add more. The CLI modules import them inside the command functions, where they
are used, so that help (and a mistyped command) answer at once. Each check runs in a fresh
interpreter: the test process itself has long imported all of them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "sfpp" / "cli"

# Top-level packages none of `import sfpp`, `import sfpp.cli.main` or any `--help` may import.
HEAVY = ("torch", "numpy", "diffusers", "transformers", "safetensors", "matplotlib", "cv2", "scipy", "PIL",
         "httpx", "google.genai", "imageio_ffmpeg")

HELP_ARGS = [[], ["generate"], ["distill"], ["rollout"], ["convert"], ["bench"], ["toyworld"],
             ["toyworld", "train-teacher"], ["toyworld", "clip"], ["toyworld", "oracle"], ["toyworld", "compare"],
             ["toyworld", "heldout"], ["toyworld", "switch"]]
# `sfpp evaluate --help` lists the metric registry, sfpp.evaluate.metrics; importing it runs
# sfpp/evaluate/__init__.py, which imports the evaluation code and with it numpy (about 0.1 s).
# numpy is tolerated there until that package imports lazily; torch and the rest are not.
EVALUATE_ALLOWED = ()  # the metric registry is read for the help text, and it imports nothing heavy


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def _loaded_after(statement: str) -> list[str]:
    return json.loads(_run(
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    ))


def test_import_sfpp_does_not_import_torch():
    assert _run("import sfpp, sys; print('torch' in sys.modules)") == "False"


def test_import_cli_does_not_import_torch():
    assert _run("import sfpp.cli.main, sys; print('torch' in sys.modules)") == "False"


def test_import_sfpp_and_cli_import_nothing_heavy():
    assert _loaded_after("import sfpp") == []
    assert _loaded_after("import sfpp.cli.main") == []


def _help(args_list: list[list[str]]) -> tuple[list[str], dict[str, str]]:
    """Build the whole command tree and print each help, as `sfpp X --help` does, in one fresh interpreter."""
    code = (
        "import contextlib, io, json, sys\n"
        "from sfpp.cli.main import app\n"
        "texts = {}\n"
        f"for args in {args_list!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            app(args + ['--help'], prog_name='sfpp')\n"
        "        except SystemExit as e:\n"
        "            assert e.code in (0, None), (args, e.code)\n"
        "    texts[' '.join(args)] = out.getvalue()\n"
        f"print(json.dumps([sorted(m for m in {HEAVY!r} if m in sys.modules), texts]))"
    )
    loaded, texts = json.loads(_run(code))
    assert all(texts.values()), [k for k, v in texts.items() if not v]
    return loaded, texts


def test_help_of_every_command_imports_nothing_heavy():
    loaded, texts = _help(HELP_ARGS)
    assert loaded == [], f"--help imported {loaded}; import them inside the command functions instead"
    assert "generate" in texts[""] and "evaluate" in texts[""]


def test_evaluate_help_imports_no_torch():
    loaded, texts = _help([["evaluate"]])
    assert "torch" not in loaded
    assert set(loaded) <= set(EVALUATE_ALLOWED), f"evaluate --help imported {loaded}"
    # the metric list is read from the registry when this help is shown
    assert "temporal_flickering" in texts["evaluate"] and "Groups:" in texts["evaluate"]


def _top_level_imports(path: Path):
    """(module, line) of imports that run when the module is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), str(path))

    def walk(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                yield from ((a.name, node.lineno) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                yield node.module or "", node.lineno
            yield from walk(ast.iter_child_nodes(node))

    yield from walk(tree.body)


def test_cli_modules_have_no_top_level_heavy_imports():
    """A readable pointer to the offending line (the subprocess tests above say only *that* it happens)."""
    bad = []
    for path in sorted(CLI.glob("*.py")):
        for mod, line in _top_level_imports(path):
            if any(mod == h or mod.startswith(h + ".") for h in HEAVY):
                bad.append(f"{path.relative_to(ROOT)}:{line}: import {mod}")
    assert not bad, "heavy imports at module level of CLI modules:\n" + "\n".join(bad)
