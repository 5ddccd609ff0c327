#!/usr/bin/env bash
# Regenerates the figures in plots/: the default `lcsim train` run and one `lcsim simulate`
# run of its trained network. Run from the repository root: bash plots/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
lcsim=target/release/lcsim

# The default run (the README's main command), into a scratch folder.
$lcsim train --quiet --set "output.dir=\"$work\"" --set 'output.name="default-run"'
# Free then controlled dynamics of three test digits under the trained weights.
$lcsim simulate --run "$work/default-run" --samples 0,1,2 --name default-run

rm -rf plots/default-run plots/simulate-default-run
mkdir -p plots/default-run
cp -r "$work/default-run/figures" "$work/default-run/config.toml" "$work/default-run/metrics.csv" \
   "$work/default-run/summary.json" plots/default-run/
mkdir -p plots/simulate-default-run
cp -r "$work/simulate-default-run/figures" "$work/simulate-default-run/simulate.json" plots/simulate-default-run/
echo "figures in plots/default-run/figures and plots/simulate-default-run/figures"
