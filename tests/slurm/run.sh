#!/usr/bin/env bash
# A real Slurm test of `lcsim sweep`: starts a single-node Slurm cluster on localhost (munged,
# slurmctld, slurmd from Debian's packages, installed when missing), plans a tiny sweep (4 runs
# on XOR, 1 epoch each), submits it with `lcsim sweep slurm DIR --submit --wait`, checks that
# EVERY run wrote a valid summary.json (Slurm can report a failed task as COMPLETED) and that
# `lcsim sweep collect` lists all runs as done, then stops the daemons it started.
# Needs root (CI: a fresh Debian machine). Recipe: ../shared/notes/slurm-local.md.
#   bash tests/slurm/run.sh            (LCSIM=path/to/lcsim to skip the cargo build)
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
say() { echo "[slurm test $(($(date +%s) - start)) s] $*"; }
[ "$(id -u)" = 0 ] || { echo "tests/slurm/run.sh: needs root (it starts munged, slurmctld and slurmd)"; exit 1; }

# 1. Packages.
missing=0
for c in munged slurmctld slurmd sbatch sinfo; do command -v "$c" >/dev/null 2>&1 || missing=1; done
if [ "$missing" = 1 ]; then
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 300 apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile=/etc/munge/munge.key --force; else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi

# 2. The lcsim binary.
if [ -z "${LCSIM:-}" ]; then
    say "building lcsim (cargo build --release)"
    cargo build --release --quiet
    LCSIM="${CARGO_TARGET_DIR:-target}/release/lcsim"
fi
LCSIM=$(realpath "$LCSIM")

# 3. Daemons, with every file in a temp dir; each one stopped by its recorded PID on exit.
tmp=$(mktemp -d /tmp/lcsim-slurm.XXXXXX)
pids=()
ok=0
stop_daemons() {
    local i pid
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[$i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
finish() {
    local code=$?
    if [ "$ok" != 1 ]; then
        echo "--- slurm test FAILED (exit $code); logs in $tmp ---"
        for f in "$tmp"/munged.log "$tmp"/slurmctld.log "$tmp"/slurmd.log "$tmp"/sweep/slurm/logs/* "$tmp"/sweep/runs/*/error.txt; do
            [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
        done
    fi
    stop_daemons
    [ "$ok" = 1 ] && rm -rf "$tmp"
    say "daemons stopped"
    exit "$code"
}
trap finish EXIT
trap 'exit 130' INT TERM

if [ -S /run/munge/munge.socket.2 ] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "using the munged already running"
else
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 755 /run/munge
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F >"$tmp/munged.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
    [ -S /run/munge/munge.socket.2 ] || { echo "munged did not start"; exit 1; }
fi

mkdir -p "$tmp/state" "$tmp/spool"
cat > "$tmp/slurm.conf" <<CONF
ClusterName=lcsimtest
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
MinJobAge=4
NodeName=localhost CPUs=8 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$tmp/slurm.conf"
slurmctld -D >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    [ "$(sinfo -h -o %T 2>/dev/null | head -n 1)" = idle ] && break
    sleep 0.1
done
[ "$(sinfo -h -o %T 2>/dev/null | head -n 1)" = idle ] || { echo "the node did not become idle: $(sinfo 2>&1)"; exit 1; }
say "slurm up: $(sinfo -h -o '%P %D %T %c' | head -n 1)"

# 4. A tiny sweep through sbatch.
work="$tmp/work"
mkdir -p "$work"
cd "$work"
"$LCSIM" sweep plan --set 'data.source="xor"' --set training.epochs=1 --set data.train_limit=64 \
    --set output.figures=false --grid controller.alpha=0.1,1 --grid model.hidden=4,8 --out "$tmp/sweep"
timeout 300 "$LCSIM" sweep slurm "$tmp/sweep" --cpus-per-task 1 --max-parallel 4 --time 10 --submit --wait

# 5. Check the outputs, not the exit codes: every run's summary.json, then collect.
n=0
for config in "$tmp"/sweep/configs/*.toml; do
    id=$(basename "$config" .toml)
    summary="$tmp/sweep/runs/$id/summary.json"
    [ -s "$summary" ] || { echo "run $id: no summary.json"; exit 1; }
    grep -Eq '"final_test_accuracy": [0-9.]+' "$summary" || { echo "run $id: summary.json without a test accuracy: $(cat "$summary")"; exit 1; }
    n=$((n + 1))
done
[ "$n" = 4 ] || { echo "expected 4 runs, found $n"; exit 1; }
[ "$(ls "$tmp"/sweep/slurm/logs/*.out | wc -l)" = 4 ] || { echo "expected 4 Slurm task logs"; exit 1; }
"$LCSIM" sweep collect "$tmp/sweep" | tee "$tmp/collect.txt"
grep -q "^4 of 4 runs done" "$tmp/collect.txt" || { echo "collect does not report 4 of 4 runs done"; exit 1; }
[ "$(grep -c ',done,' "$tmp/sweep/results.csv")" = 4 ] || { echo "results.csv: not 4 done rows"; exit 1; }
# A second submission has nothing left to do.
"$LCSIM" sweep slurm "$tmp/sweep" --submit | grep -q "nothing to submit" || { echo "resubmission did not skip the done runs"; exit 1; }
ok=1
say "passed: 4 of 4 runs done through Slurm job array $(cat "$tmp/sweep/slurm/jobs.txt")"
