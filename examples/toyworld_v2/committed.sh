# Sourced by recipe.sh and scaling.sh: put the committed teacher and ODE init (examples/toyworld_v2/weights/,
# see its README) where the configs read them (runs/toy4/), when runs/ has no ODE init of its own and its
# teacher, if any, is the committed one. Each file is copied under a temporary name and renamed, so a full
# disk or Ctrl-C never leaves a truncated file that a later run would take for the real one.
use_committed_weights() {
    local w=examples/toyworld_v2/weights ode=runs/toy4/ode/ode/student_ema.safetensors
    [ -f "$w/ode_student_ema.safetensors" ] && [ ! -e runs/toy4/ode ] || return 0
    if [ -f runs/toy4/teacher.safetensors ]; then
        cmp -s "$w/teacher.safetensors" runs/toy4/teacher.safetensors || return 0
    else
        mkdir -p runs/toy4
        cp "$w/teacher.safetensors" runs/toy4/teacher.safetensors.tmp
        mv runs/toy4/teacher.safetensors.tmp runs/toy4/teacher.safetensors
    fi
    rm -rf runs/toy4/ode.tmp
    mkdir -p runs/toy4/ode.tmp/ode
    cp "$w/ode_student_ema.safetensors" runs/toy4/ode.tmp/ode/student_ema.safetensors
    echo "ODE init: committed copy from $w (made from d1b, the committed teacher's starting point; see its README)" > runs/toy4/ode.tmp/FROM_COMMITTED
    mv runs/toy4/ode.tmp runs/toy4/ode
    cat runs/toy4/ode/FROM_COMMITTED
}
