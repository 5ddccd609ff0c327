#!/usr/bin/env bash
# The convergence and stability map of experiments/README.md: two 4 x 4 sweeps of the LCP-DI RNN
# on the embedded digits (experiments/sweep-digits.toml, 2 epochs per run), one run at a time,
# collected into plots/sweep-alpha-tau/ and plots/sweep-alpha-ki/. About 35 minutes on one core.
# Run from the repository root: bash experiments/sweep-study.sh (rerun it to finish an interrupted study).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
lcsim=target/release/lcsim
base=experiments/sweep-digits.toml
plan() {
    [ -f "runs/sweeps/$1/manifest.json" ] || $lcsim sweep plan --config "$base" "${@:2}" --out "runs/sweeps/$1"
}
plan alpha-tau --grid controller.alpha=0.01,0.1,1,10 --grid dynamics.tau_e=0.3,3,30,300
plan alpha-ki --grid controller.alpha=0.01,0.1,1,10 --grid controller.k_i=0.1,1,10,100
for s in alpha-tau alpha-ki; do
    $lcsim sweep run "runs/sweeps/$s" --jobs 1
    $lcsim sweep collect "runs/sweeps/$s" --title "LCP-DI RNN, digits, 2 epochs" \
        --metric fraction_converged --metric final_test_accuracy --metric mean_steps
    rm -rf "plots/sweep-$s"
    mkdir -p "plots/sweep-$s"
    cp -r "runs/sweeps/$s/figures" "runs/sweeps/$s/results.csv" "runs/sweeps/$s/manifest.json" \
        "runs/sweeps/$s/base.toml" "plots/sweep-$s/"
done
echo "figures in plots/sweep-alpha-tau/figures and plots/sweep-alpha-ki/figures"
