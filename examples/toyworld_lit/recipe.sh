#!/usr/bin/env bash
# The lit experiment of issue #19: do Self-Forcing and Self-Forcing++ differ in exposure when the world has a
# slow global lighting cycle that the prompt does not name (toy-v4lit; docs/toyworld.md "Scaling")?
#
#   bash examples/toyworld_lit/recipe.sh TEACHER.safetensors
#
# TEACHER comes from `sfpp toyworld train-teacher --arch v4lit ...` and must pass the same oracle-v2 gate as
# the toy-v4 teacher (SKIP_GATE=1 runs the chain anyway, e.g. to test the recipe). Then, as in the scaling
# sweep's 1x point: one ODE init, Self-Forcing and Self-Forcing++ at the toy config's budget, seeds 0 and 1
# (SEEDS="0" for one), stored videos at 1, 10, 100, 300x K on 6 held-out prompts, and the exposure measure
# fixed before any lit student ran (`sfpp toyworld exposure`). Re-running continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
TEACHER=${1:?usage: recipe.sh TEACHER.safetensors}
OUT=runs/toylit   # the configs read runs/toylit/teacher.safetensors and runs/toylit/ode/
SEEDS=${SEEDS:-0 1}
mkdir -p "$OUT"
if ! cmp -s "$TEACHER" "$OUT/teacher.safetensors" 2>/dev/null; then
    cp "$TEACHER" "$OUT/teacher.safetensors.tmp" && mv "$OUT/teacher.safetensors.tmp" "$OUT/teacher.safetensors"
fi
sha256sum "$OUT/teacher.safetensors" | tee "$OUT/teacher.sha256"

# 0. The gate (examples/toyworld_v2/teacher_gate.py).
[ -f "$OUT/teacher_score.json" ] && [ "$OUT/teacher_score.json" -nt "$OUT/teacher.safetensors" ] ||
    sfpp toyworld teacher-score "$OUT/teacher.safetensors" --confusion --out "$OUT/teacher_score.json"
python examples/toyworld_v2/teacher_gate.py "$OUT/teacher_score.json" || [ "${SKIP_GATE:-0}" = 1 ]

run() {  # sfpp distill, resuming a run folder that already exists
    local out=$1; shift
    if [ -d "$out" ]; then sfpp distill "$@" --out "$out" --resume; else sfpp distill "$@" --out "$out"; fi
}
# 1. ODE init; 2. both students from it, same budget.
run "$OUT/ode" --config examples/toyworld_lit/ode.toml
students=()
for seed in $SEEDS; do
    run "$OUT/sf_s$seed" --config examples/toyworld_lit/self_forcing.toml --seed "$seed"
    run "$OUT/sfpp_s$seed" --config examples/toyworld_lit/self_forcing_pp.toml --seed "$seed"
    students+=(--student "sf_s$seed=$OUT/sf_s$seed/self-forcing/student_ema.safetensors"
               --student "sfpp_s$seed=$OUT/sfpp_s$seed/extended/student_ema.safetensors")
done
# 3. Long videos, oracle v2 scores and stable length (as in the sweep); 4. exposure at 100x and 300x K.
sfpp toyworld compare "${students[@]}" --n 6 --multiples 1,10,100,300 --out "$OUT/videos" --reuse
for m in 100 300; do
    sfpp toyworld exposure "$OUT"/videos/*/ --multiple "$m" --json > "$OUT/exposure_${m}x.json.tmp.$$"
    mv "$OUT/exposure_${m}x.json.tmp.$$" "$OUT/exposure_${m}x.json"  # no half-written result on a fault; $$: two
    # recipe runs at once (SEEDS=0 and SEEDS=1 side by side) do not share the temporary file
    sfpp toyworld exposure "$OUT"/videos/*/ --multiple "$m"
done
# 5. The rule fixed beforehand (docs/toyworld.md): do the two algorithms differ in exposure?
python examples/toyworld_lit/exposure_verdict.py "$OUT/exposure_100x.json" "$OUT/exposure_300x.json" \
    --json "$OUT/exposure_verdict.json"
