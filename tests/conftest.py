import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """User state (caches) goes to a per-test folder; no weights folder leaks in from the shell."""
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "sfpp_home"))
    monkeypatch.delenv("SFPP_WEIGHTS", raising=False)
    monkeypatch.setenv("SFPP_MODEL", "debug")  # tests default to the tiny random model


@pytest.fixture(scope="session")
def debug_components():
    from sfpp.presets import build_debug_components

    return build_debug_components()
