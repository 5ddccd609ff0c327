#!/usr/bin/env bash
# The principle at work: trains LCP-DI, LCP-KP, LCP-LF and LCP-EBD on the embedded digits for
# 25 epochs (experiments/principle-digits.toml) and draws H and the test loss of all four
# (lcsim compare) into plots/principle-at-work/. Run from the repository root:
#   bash experiments/principle-study.sh
# Finished runs in runs/principle-digits/ are kept; remove that folder to train anew.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
lcsim=target/release/lcsim
runs=runs/principle-digits
for method in lcp-di lcp-kp lcp-lf lcp-ebd; do
    if [ -f "$runs/$method/summary.json" ]; then
        echo "$runs/$method is done"
        continue
    fi
    extra=()
    # LCP-EBD as the reference runs it on the RNN: Adam on the state, lr 0.001, 200 steps
    # from the free equilibrium ([ebd] defaults besides the descent).
    [ "$method" = lcp-ebd ] && extra=(--set 'ebd.descent="adam"')
    $lcsim train --quiet --config experiments/principle-digits.toml \
        --set "method.name=\"$method\"" --set "output.name=\"$method\"" "${extra[@]}"
done
# Extra: LCP-DI with the reference's discretisation (forward Euler, dt = 1, at most 800 steps),
# which follows the controlled flow from the free equilibrium instead of Anderson's jumps.
if [ ! -f "$runs/lcp-di-euler/summary.json" ]; then
    $lcsim train --quiet --config experiments/principle-digits.toml --set 'solver.method="euler"' \
        --set solver.dt=1.0 --set solver.max_steps=800 --set 'output.name="lcp-di-euler"'
fi
$lcsim compare "$runs/lcp-di" "$runs/lcp-kp" "$runs/lcp-lf" "$runs/lcp-ebd" \
    --out plots/principle-at-work \
    --title "Control magnitude H and test loss over training: digits RNN 64-64-10, α = 0.1"
$lcsim compare "$runs/lcp-di" "$runs/lcp-di-euler" --out plots/principle-at-work/lcp-di-solvers \
    --title "LCP-DI on digits: Anderson (lcsim's default) against Euler dt = 1 (reference)"
