#!/usr/bin/env bash
# The recipe that produces the bundled ToyWorld model (sfpp/assets/toy/student.safetensors).
# CPU: roughly 1-2 hours on 2 cores; a GPU does it in minutes (add `device = "cuda"` under [run]).
set -euo pipefail
cd "$(dirname "$0")/../.."

# 1. The short-horizon bidirectional teacher (flow matching on 0.75 s ToyWorld clips).
sfpp toyworld train-teacher --steps 2500 --out runs/toy/teacher

# 2. ODE initialisation of the causal student from teacher trajectories.
sfpp distill --config examples/toyworld/ode.toml --out runs/toy/ode

# 3. From the same init and budget: the Self-Forcing baseline (N = K) and Self-Forcing++ (N >> K).
sfpp distill --config examples/toyworld/self_forcing.toml --out runs/toy/sf
sfpp distill --config examples/toyworld/self_forcing_pp.toml --out runs/toy/sfpp

# 4. Compare them over 1x, 10x, 30x and 100x the teacher horizon; score the held-out prompts.
sfpp toyworld compare --student sf=runs/toy/sf/self-forcing/student_ema.safetensors \
    --student sfpp=runs/toy/sfpp/extended/student_ema.safetensors --out runs/toy/compare
sfpp evaluate runs/toy/compare/sf/30x runs/toy/compare/sfpp/30x --out runs/toy/compare/evaluate-30x

# 5. Ship the Self-Forcing++ student as the default model.
cp runs/toy/sfpp/extended/student_ema.safetensors sfpp/assets/toy/student.safetensors
sfpp toyworld heldout --seconds 10
