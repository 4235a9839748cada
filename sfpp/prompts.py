"""Prompt schedules: change the prompt mid-video.

Inline form (the CLI's PROMPT argument)::

    "a city street at dusk[0s] | the same street at night in heavy rain[20s]"

or a schedule file (TOML or JSON)::

    # schedule.toml                               // schedule.json
    [[prompt]]                                    [{"at": 0, "text": "a city street at dusk"},
    at = "0s"                                      {"at": 20, "text": "the same street at night"}]
    text = "a city street at dusk"
    [[prompt]]
    at = "20s"
    text = "the same street at night in heavy rain"

A plain prompt without ``[..s]`` markers is a one-entry schedule. A switch takes effect at the
first chunk that starts at or after its time; there the cached window is re-encoded under the
new prompt (`sfpp.rollout.recache`); optionally the text embedding is blended from the old to
the new prompt over a few chunks.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from sfpp.errors import SfppError
from sfpp.files import read_text_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MARK = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*s?\s*\]\s*$")
_ANY_MARK = re.compile(r"\[[^\[\]]*\]\s*$")  # a trailing [...] group: a switch time, or a mistyped one


@dataclass(frozen=True)
class PromptEntry:
    at: float  # seconds
    text: str


def _seconds(v, where: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not math.isfinite(v) or v < 0:
            raise SfppError(f"{where}: time must be a finite number of seconds >= 0, got {v!r}")
        return float(v)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", str(v))
    if not m:
        raise SfppError(f"{where}: time must look like '20s', got {v!r}")
    return float(m.group(1))


def _validate(entries: list[PromptEntry]) -> list[PromptEntry]:
    if not entries:
        raise SfppError("the prompt schedule is empty; give at least one prompt")
    for e in entries:
        if not e.text.strip():
            raise SfppError("the prompt is empty; pass a text prompt, e.g. sfpp generate \"a red kite over a beach\"")
    if entries[0].at != 0:
        raise SfppError(f"the first prompt must start at 0s, got {entries[0].at:g}s")
    times = [e.at for e in entries]
    if any(b <= a for a, b in zip(times, times[1:])):
        raise SfppError(f"prompt switch times must increase, got {', '.join(f'{t:g}s' for t in times)}")
    return entries


def parse_schedule(text: str) -> list[PromptEntry]:
    """Parse an inline prompt (``A[0s] | B[20s]``) into entries; a plain prompt is one entry at 0s."""
    if text is None or not str(text).strip():
        return _validate([PromptEntry(0.0, "")])
    parts = [p.strip() for p in str(text).split("|")]
    for p in parts:  # a trailing [...] is always read as a switch time: a mistyped one is an error, not prompt text
        bad = _ANY_MARK.search(p)
        if bad and not _MARK.search(p):
            raise SfppError(f"{bad.group(0).strip()!r} in {p!r} is not a switch time; write times like '[20s]' "
                            "(or end the prompt with something other than brackets)")
    if len(parts) == 1 and not _MARK.search(parts[0]):
        return _validate([PromptEntry(0.0, parts[0])])
    entries = []
    for p in parts:
        m = _MARK.search(p)
        if not m:
            raise SfppError(f"each part of a prompt schedule needs a time like '[20s]': {p!r}")
        entries.append(PromptEntry(float(m.group(1)), p[: m.start()].strip()))
    return _validate(entries)


def load_schedule_file(path: str | Path) -> list[PromptEntry]:
    p = Path(path)
    raw = read_text_file(p, what="prompt schedule file", hint="give a TOML or JSON schedule (see --help)")
    try:
        data = json.loads(raw) if p.suffix.lower() == ".json" else tomllib.loads(raw).get("prompt", [])
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise SfppError(f"prompt schedule file {p} is not valid {p.suffix[1:].upper() or 'TOML'}: {e}") from None
    if not isinstance(data, list):
        raise SfppError(f"prompt schedule file {p} must be a list of {{at, text}} entries")
    entries = []
    for i, d in enumerate(data):
        if not isinstance(d, dict) or "text" not in d or "at" not in d:
            raise SfppError(f"entry {i} of {p.name} needs 'at' and 'text'")
        entries.append(PromptEntry(_seconds(d["at"], f"entry {i} of {p.name}"), str(d["text"])))
    return _validate(entries)


def schedule_to_string(entries: list[PromptEntry]) -> str:
    if len(entries) == 1:
        return entries[0].text
    return " | ".join(f"{e.text}[{e.at:g}s]" for e in entries)


def check_schedule_fits(entries: list[PromptEntry], chunk_starts_s: list[float], seconds: float) -> None:
    """Every switch must take effect inside the video: some chunk must start at or after its time."""
    last = max(chunk_starts_s) if chunk_starts_s else 0.0
    for e in entries[1:]:
        if e.at > last + 1e-9:
            raise SfppError(f"the prompt switch at {e.at:g}s would never be used: the {seconds:g} s video's last "
                            f"chunk starts at {last:g}s; switch earlier or make the video longer")


def chunk_prompt_index(entries: list[PromptEntry], frame_start_seconds: float) -> int:
    """Index of the entry in force for a chunk starting at `frame_start_seconds`."""
    idx = 0
    for i, e in enumerate(entries):
        if frame_start_seconds + 1e-9 >= e.at:
            idx = i
    return idx


def read_prompt_lines(path: str | Path, *, hint: str = "give a text file with one prompt per line") -> list[str]:
    """Prompts from a text file: one per line; blank lines and ``#`` comments skipped."""
    p = Path(path)
    prompts = [ln.strip() for ln in read_text_file(p, what="prompts file", hint=hint).splitlines()]
    prompts = [ln for ln in prompts if ln and not ln.startswith("#")]
    if not prompts:
        raise SfppError(f"prompts file {p} is empty; write one prompt per line")
    return prompts


def epoch_indices(n: int, position: int, count: int, seed: int, salt: int) -> list[int]:
    """`count` indices into `n` items from global position `position`: a fresh permutation per epoch.

    Deterministic in (seed, salt, epoch), so a resumed run draws exactly what it would have.
    """
    import torch

    from sfpp.noise import mix_seed

    out = []
    for q in range(position, position + count):
        epoch, i = divmod(q, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, salt, epoch)))
        out.append(int(perm[i]))
    return out
