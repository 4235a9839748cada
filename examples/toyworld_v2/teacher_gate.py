"""The oracle-v2 gate a ToyWorld teacher must pass before students are distilled from it (fixed in issue #16):
on training and held-out prompts, every object has its asked shape in >= 90% of frames, every object moves
in >= 90% of windows, and <= 2% of frames show a band.

    python examples/toyworld_v2/teacher_gate.py SCORE.json     # from `sfpp toyworld teacher-score --out`

Exit 0 when it passes, 1 when it does not (the failing cells are printed)."""

import json
import sys

GATE = (("shapes_all", lambda v: v >= 0.9), ("all_moving", lambda v: v >= 0.9), ("band", lambda v: v <= 0.02))

r = json.load(open(sys.argv[1]))
bad = [f"{name} {k} {r[name]['mean'][k] or 0.0:.2f}" for name in ("training", "held-out")
       for k, ok in GATE if not ok(r[name]["mean"][k] or 0.0)]
print("teacher passes oracle v2" if not bad else "teacher does not pass oracle v2: " + ", ".join(bad))
sys.exit(1 if bad else 0)
