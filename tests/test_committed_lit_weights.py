"""The committed lit teacher (examples/toyworld_lit/weights) is what its README says it is."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

WEIGHTS = Path(__file__).resolve().parents[1] / "examples" / "toyworld_lit" / "weights"


def _readme_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([^`]+\.safetensors)` \| `([0-9a-f]{64})` \|", (WEIGHTS / "README.md").read_text(),
                      flags=re.M)
    return dict(rows)


def test_readme_lists_every_committed_file_with_its_sha256():
    table = _readme_table()
    files = sorted(p.name for p in WEIGHTS.glob("*.safetensors"))
    assert files and sorted(table) == files
    for name, sha in table.items():
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == sha, name


@pytest.mark.parametrize("name", ["teacher.safetensors", "teacher_4000_ema.safetensors", "ode_init_ema.safetensors"])
def test_committed_lit_weights_load_as_v4lit(name):
    from sfpp.toyworld.teacher import load_teacher

    model, arch = load_teacher(WEIGHTS / name)
    assert arch == "v4lit"
    assert sum(p.numel() for p in model.parameters()) > 0
