#!/usr/bin/env bash
# ToyWorld scaling sweep (issue #19): Self-Forcing++ and Self-Forcing at 1x, 2x, 4x, 8x the toy config's
# generator-update budget, all from the same ODE initialisation (recipe.sh step 1), then the stable length
# of every student from stored videos.
#
#   bash examples/toyworld_v2/scaling.sh            # every run below, resuming whatever exists
#   ONLY="sfpp_4x_s0" bash examples/toyworld_v2/scaling.sh   # one run (name as in the list)
#
# Each run compares into its own folder (runs/toy4/scale/videos_<name>/), so two ONLY= runs can go side by
# side (one torch thread each: OMP_NUM_THREADS=1).
#
# What scales with --budget Nx: the generator updates ([extended] / [self_forcing] base_steps x N) and, for
# Self-Forcing++, the rollout-length ramp ([extended] ramp_steps x N: N_max = 48 latent frames = 8K is reached
# after the same share of the run at every budget). n_max, batch, learning rates, critic ratio, EMA start
# and checkpoint cadence are those of the configs.
#
# The measure and its threshold were fixed before any run (sfpp/toyworld/compare.py: STABLE_FRACTION = 0.8
# of the 1x K object and motion persistence, in the last 10% of the video, lengths tried in order).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/toy4}
# the configs' student_checkpoint: the ODE init of recipe.sh step 1
ODE=runs/toy4/ode/ode/student_ema.safetensors
. examples/toyworld_v2/committed.sh   # the committed teacher + ODE init, used when runs/ has none
use_committed_weights
[ -f "$ODE" ] || { echo "no ODE init at $ODE: run recipe.sh (step 1) first" >&2; exit 1; }
N_PROMPTS=${N_PROMPTS:-6}
MULTIPLES=${MULTIPLES:-1,3,10,30,100,300}

RUNS=(sfpp_1x_s0 sfpp_1x_s1 sf_1x_s0 sf_1x_s1 sfpp_2x_s0 sf_2x_s0 sf_2x_s1 sfpp_4x_s0 sfpp_4x_s1 sf_4x_s0 sf_4x_s1
      sfpp_8x_s0 sf_8x_s0)

mkdir -p "$OUT/scale"
for name in "${RUNS[@]}"; do
    [ -n "${ONLY:-}" ] && [ "$name" != "$ONLY" ] && continue
    IFS=_ read -r algo budget seed <<<"$name"
    seed=${seed#s}
    if [ "$algo" = sfpp ]; then config=examples/toyworld_v2/self_forcing_pp.toml; stage=extended
    else config=examples/toyworld_v2/self_forcing.toml; stage=self-forcing; fi
    dir="$OUT/scale/$name"
    resume=(); [ -d "$dir" ] && resume=(--resume)
    t0=$SECONDS
    sfpp distill --config "$config" --budget "$budget" --seed "$seed" --out "$dir" "${resume[@]}"
    echo "$name: $((SECONDS - t0)) s wall (this sitting)" | tee -a "$OUT/scale/wall_times.txt"
    sfpp toyworld compare --student "$name=$dir/$stage/student_ema.safetensors" --n "$N_PROMPTS" \
        --multiples "$MULTIPLES" --out "$OUT/scale/videos_$name" --reuse
done
sfpp toyworld stable-length "$OUT"/scale/videos_*/*/ --json > "$OUT/scale/stable_length.json"
sfpp toyworld stable-length "$OUT"/scale/videos_*/*/
