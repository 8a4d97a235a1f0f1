#!/usr/bin/env bash
# A real SLURM check of `bench suite --launcher slurm` (not part of CI; needs root and apt, a few minutes).
#
# Installs Debian's slurm-wlm + munge, starts a one-node cluster on this machine (slurmctld + slurmd, no
# accounting database), runs the tiny synth grid of tests/test_launch_sweep.py (2 methods x 2 tasks x 2 seeds)
# once in this process and once through SLURM, and compares the two leaderboards row by row.
# Exit status: 0 identical rows and metrics, 1 they differ, 3 apt could not install the packages.
#
#   sudo bash scripts/slurm_smoke.sh            # WORK=/tmp/ssl3d-slurm-smoke by default
#
# Without slurmdbd, `sacct` has no records: submitit then learns that a job finished from its result file,
# which every job that ran to its end writes (a job killed by the node would only be noticed through sacct),
# and warns at every poll that sacct failed.
set -euo pipefail

WORK=${WORK:-/tmp/ssl3d-slurm-smoke}
PY=${PYTHON:-python}
THREADS=$("$PY" -c "import torch; print(torch.get_num_threads())")  # jobs get as many: same float order
GRID=(--methods "[pr]a*-pointnet" --tasks "synth-[rs][ev][tm]*" --seeds 0 1 --no-progress
      --set data.n_classes=4 --set data.train_per_class=6 --set data.test_per_class=3 --set data.n_points=256
      --set data.workers=1 --set train.epochs=3)

echo "== installing slurm-wlm and munge"
if ! command -v slurmctld >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 900 apt-get install -y --no-install-recommends slurm-wlm munge >"$WORK.apt.log" 2>&1; then
    echo "apt-get could not install slurm-wlm/munge (see $WORK.apt.log)"; exit 3
  fi
fi

echo "== munge"
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
STARTED=()  # pid files of the daemons this script started: they are stopped on exit unless KEEP_SLURM=1
trap 'if [ "${KEEP_SLURM:-0}" != 1 ]; then for f in "${STARTED[@]}"; do [ -s "$f" ] && kill "$(cat "$f")"; done; fi; true' EXIT
pgrep -x munged >/dev/null || { runuser -u munge -- /usr/sbin/munged; STARTED+=(/run/munge/munged.pid); }
munge -n | unmunge >/dev/null && echo "munge works"

echo "== slurm (one node: $(hostname -s), $(nproc) CPUs)"
HOST=$(hostname -s)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=ssl3d-smoke
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
NodeName=$HOST CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=smoke Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
pgrep -x slurmctld >/dev/null || { slurmctld; STARTED+=(/run/slurmctld.pid); }
pgrep -x slurmd >/dev/null || { slurmd; STARTED+=(/run/slurmd.pid); }
for _ in $(seq 60); do
  sinfo -h -o "%t" 2>/dev/null | grep -qE "idle|mix" && break
  sleep 1
done
sinfo

rm -rf "$WORK" && mkdir -p "$WORK"
echo "== sequential suite"
SSL3D_DATA="$WORK/data-seq" bench suite "${GRID[@]}" --results-dir "$WORK/seq"
echo "== the same grid through SLURM"
t0=$(date +%s)
SSL3D_DATA="$WORK/data-slurm" bench suite "${GRID[@]}" --results-dir "$WORK/slurm" --launcher slurm \
  --partition smoke --gpus 0 --cpus "$THREADS" --mem-gb 2 --time-min 20 --parallel 8 --retries 1
echo "slurm sweep: $(( $(date +%s) - t0 ))s"
bench suite --results-dir "$WORK/slurm" --status
sacct -X 2>/dev/null | head -3 || true

echo "== comparison"
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

from ssl3d.bench.run.results import ResultStore

work = Path(sys.argv[1])
rows = {}
for name in ("seq", "slurm"):
    frame = ResultStore(work / name).read_leaderboard()
    rows[name] = {(r.task, r.method, r.modality, int(r.seed), r.metric): float(r.value) for r in frame.itertuples()}
seq, slurm = rows["seq"], rows["slurm"]
print(f"sequential: {len(seq)} rows, slurm: {len(slurm)} rows")
diff = sorted(k for k in seq.keys() | slurm.keys() if seq.get(k) != slurm.get(k))
for key in diff:
    print(f"  differs {key}: sequential {seq.get(key)}, slurm {slurm.get(key)}")
print("identical rows and metrics" if not diff and seq else "DIFFERENT")
sys.exit(1 if diff or not seq else 0)
EOF
