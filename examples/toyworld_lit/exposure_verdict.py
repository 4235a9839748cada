"""Issue #19's lit experiment: do Self-Forcing and Self-Forcing++ differ in exposure? Applies the rule fixed in
docs/toyworld.md (`sfpp.toyworld.exposure.exposure_verdict`) to `sfpp toyworld exposure --json` results.

    python examples/toyworld_lit/exposure_verdict.py runs/toylit/exposure_100x.json runs/toylit/exposure_300x.json \
        [--json OUT.json]

Exit status 0 either way (the answer is printed); 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys

from sfpp.errors import SfppError
from sfpp.toyworld.exposure import exposure_verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="sfpp toyworld exposure --json outputs, one per length")
    ap.add_argument("--json", dest="json_out", help="also write the verdicts here")
    args = ap.parse_args()
    verdicts = {}
    for path in args.results:
        try:
            with open(path) as f:
                res = json.load(f)
            lengths = {v.get("multiple") for k, v in res.items() if not k.startswith("world")}
            verdicts[path] = {"multiple": sorted(m for m in lengths if m is not None), **exposure_verdict(res)}
        except (OSError, SfppError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or not an exposure result
            print(f"error: {path} is not a 'sfpp toyworld exposure --json' result ({type(e).__name__}: {e}); "
                  "write it with that command", file=sys.stderr)
            return 2
    for path, v in verdicts.items():
        print(f"{path} ({', '.join(f'{m}x K' for m in v['multiple'])}; seeds {v['seeds']}; "
              f"seed check {'applied' if v['seed_check'] else 'not possible with one seed'})")
        for q, r in v["quantities"].items():
            per_seed = ", ".join(f"s{s}: sf {r['sf'][s]:.4f} sfpp {r['sfpp'][s]:.4f}" for s in v["seeds"])
            sd = "n/a" if r["seed_difference"] is None else f"{r['seed_difference']:.4f}"
            print(f"  {q}: {per_seed}; world spread {r['world_spread']:.4f}; seed difference {sd} -> "
                  f"{'DIFFER' if r['differ'] else 'no difference'}")
    both = all(v["differ"] for v in verdicts.values())
    print("differ in exposure at every length given" if both else "do not differ in exposure at every length given")
    if args.json_out:
        with open(args.json_out + ".tmp", "w") as f:
            json.dump({**verdicts, "differ_at_every_length": both}, f, indent=2)
        import os
        os.replace(args.json_out + ".tmp", args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
