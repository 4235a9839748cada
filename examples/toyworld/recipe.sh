#!/usr/bin/env bash
# The recipe behind the bundled ToyWorld model (sfpp/assets/toy/student.safetensors).
# CPU: about 2 hours for the teacher plus 1 hour for the rest on 2 cores; a GPU does it in minutes (add `device = "cuda"` under [run]).
# docs/toyworld.md lists exactly how the bundled teacher was made (it was trained in three
# continued stages across sessions); step 1 below is the single-run equivalent.
set -euo pipefail
cd "$(dirname "$0")/../.."

# 1. The short-horizon bidirectional teacher (flow matching on 0.75 s ToyWorld clips).
sfpp toyworld train-teacher --steps 9000 --lr 5e-4 --out runs/toy/teacher

# 2. ODE initialisation of the causal student from teacher trajectories (CFG 5).
sfpp distill --config examples/toyworld/ode.toml --out runs/toy/ode

# 3. From the same init and budget: the Self-Forcing baseline (N = K) and Self-Forcing++ (N >> K).
sfpp distill --config examples/toyworld/self_forcing.toml --out runs/toy/sf
sfpp distill --config examples/toyworld/self_forcing_pp.toml --out runs/toy/sfpp

# 4. Compare the ODE init and both students over 1x, 10x, 30x and 100x the teacher horizon on 12
#    held-out prompts; evaluate the 30x videos with `sfpp evaluate`.
sfpp toyworld compare --student ode=runs/toy/ode/ode/student_ema.safetensors \
    --student sf=runs/toy/sf/self-forcing/student_ema.safetensors \
    --student sfpp=runs/toy/sfpp/extended/student_ema.safetensors --n 12 --out runs/toy/compare
sfpp evaluate runs/toy/compare/sf/30x runs/toy/compare/sfpp/30x --out runs/toy/evaluate-30x-12

# 5. Ship the Self-Forcing++ student as the default model; score held-out prompts and a prompt switch.
cp runs/toy/sfpp/extended/student_ema.safetensors sfpp/assets/toy/student.safetensors
sfpp toyworld heldout --seconds 10
sfpp toyworld switch "a red circle moving on a black background" "a green square moving on a white background" \
    --at 2 --seconds 5 --seeds 4
