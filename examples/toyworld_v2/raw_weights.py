"""Raw (non-EMA) weights of a teacher run's last saved state, as a teacher checkpoint.

    python examples/toyworld_v2/raw_weights.py runs/toy3/teacher_b runs/toy3/b2000_raw.safetensors

The state (train_state.pt) is rewritten every --save-every steps; the output records which step it
holds (metadata "step"). docs/toyworld.md scores these files and starts curriculum runs from them.
"""

import sys

from sfpp.errors import SfppError
from sfpp.toyworld.teacher import save_raw_weights

if len(sys.argv) != 3:
    sys.exit(__doc__)
try:
    print(save_raw_weights(sys.argv[1], sys.argv[2]))
except SfppError as e:
    sys.exit(f"error: {e}")
