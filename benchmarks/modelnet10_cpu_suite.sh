#!/usr/bin/env bash
# The real ModelNet10 leaderboard (docs/leaderboard-modelnet10.md): every method at its `cpu` preset,
# seeds 0 1 2, into leaderboards/modelnet10-cpu/. A maintainer's job, never CI's: about 8 hours on a 2-core CPU.
#
#   SSL3D_DATA=/path/to/cache bash benchmarks/modelnet10_cpu_suite.sh            # needs `bench prepare modelnet10`
#   COMMIT=1 nohup bash benchmarks/modelnet10_cpu_suite.sh > suite.log 2>&1 &     # commit as each method finishes
#
# Resumable at every level: rerun the same command after an interruption. Pretrainings resume from their last
# epoch (cache under $SSL3D_DATA/pretrain), finished curve points and leaderboard rows are skipped.
# Per family, the main method's 3-seed `cpu` pretrainings are made by `bench curve`, which keeps snapshot
# checkpoints at the listed epochs (the committed 3-seed curves, on the validation split carved from train);
# `bench suite` then reuses those same pretrainings (the snapshot list is not part of the cache key) for every
# task, the untrained network (`--set train.epochs=0`) and, for SwitchVAE's family, the paper's RBF SVM.
OUT=${OUT:-leaderboards/modelnet10-cpu}
SEEDS=(0 1 2)
TASKS='modelnet10-[sri]*'  # svm, retrieval, recon, ibsr (the issue's four protocols)

epochs_of() {  # the cpu preset's train.epochs of a method
  python -c "import sys; from ssl3d.methods import METHODS; print(METHODS.get(sys.argv[1]).from_preset('cpu').config.train.epochs)" "$1"
}

twin_of() {  # the method whose untrained network is bitwise this one's (Method.untrained_network_of), or nothing
  python -c "import sys; from ssl3d.methods import METHODS; print(METHODS.get(sys.argv[1]).untrained_network_of)" "$1"
}

snapshots_up_to() {  # 1 2 4 ... below the knee, then the knee itself
  local knee=$1 e=1 out=()
  while (( e < knee )); do out+=("$e"); e=$(( e * 2 )); done
  echo "${out[@]}" "$knee"
}

commit() {  # commit this leaderboard folder only (never the rest of the working tree)
  [[ "${COMMIT:-0}" == 1 ]] || return 0
  bench leaderboard --results-dir "$OUT" --plot > /dev/null
  python -m ssl3d.bench.cost "$OUT" > /dev/null  # cost.csv: pretraining and evaluation minutes per method
  git add -- "$OUT"
  flock /tmp/ssl3d-git.lock git commit --only -m "modelnet10-cpu leaderboard: $1 (seeds ${SEEDS[*]})" -- "$OUT" || true
}

STEP= STEP_START=
on_stop() {  # a step killed mid-way (a session's end) still logs the time it used, with exit 143
  [[ -n "$STEP" ]] && echo "$STEP (interrupted),$(( $(date +%s) - STEP_START )),143" >> "$OUT/timings.csv"
  STEP=
}
trap 'on_stop; exit 143' TERM INT HUP

timed() {  # run a command, appending its wall time to $OUT/timings.csv (what, seconds, exit)
  STEP=$1 STEP_START=$(date +%s); shift
  local rc=0; "$@" || rc=$?
  echo "$STEP,$(( $(date +%s) - STEP_START )),$rc" >> "$OUT/timings.csv"
  STEP=
  return 0
}

suite() {  # method [extra bench suite args]
  local method=$1; shift
  timed "suite $method $*" bench suite --preset cpu --methods "$method" --tasks "$TASKS" --seeds "${SEEDS[@]}" \
    --results-dir "$OUT" --no-progress "$@"
}

family() {  # main-method modalities(comma-separated) baseline(modality=random-method, or - for none) members...
  local main=$1 modalities=$2 baseline=$3; shift 3
  local knee; knee=$(epochs_of "$main")
  # the first modality's curve pretrains (with snapshots); the others only score the same snapshots
  for modality in ${modalities//,/ }; do
    local extra=(); [[ "$baseline" == "$modality="* ]] && extra=(--baseline "${baseline#*=}")
    timed "curve $main $modality" bench curve --preset cpu --method "$main" --task modelnet10-svm --modality "$modality" \
      --epochs $(snapshots_up_to "$knee") --seeds "${SEEDS[@]}" "${extra[@]}" --results-dir "$OUT" --no-progress
  done
  for method in "$main" "$@"; do
    suite "$method"
    # the untrained network on every task: its train features are the curve's epoch-0 ones (feature cache),
    # so this costs the test split's embedding and the decoder's reconstructions. An ablation whose untrained
    # network is bitwise the main method's (tested) is not evaluated again: the leaderboard's
    # pretrained-vs-untrained table uses the main method's runs for it (bench/untrained.py)
    [[ -n "$(twin_of "$method")" ]] || suite "$method" --set train.epochs=0
    commit "$method"
  done
}

main() {
  set -euo pipefail
  cd "$(dirname "$0")/.."
  bench --version > /dev/null || { echo "bench is not installed here: pip install -e '.[test]'" >&2; exit 2; }
  mkdir -p "$OUT"
  [[ -f "$OUT/timings.csv" ]] || echo "what,seconds,exit" > "$OUT/timings.csv"
  for baseline in random-pointnet random-dgcnn; do suite "$baseline"; done
  commit "random baselines"
  # cheapest families first, so that an interrupted run has checked as many claims as possible
  family voxel-vae voxels -
  family cmic views - cmic-noncat
  family parae-dgcnn points points=random-dgcnn
  family parae-pointnet points points=random-pointnet
  family switchvae voxels,views - switchvae-nocontrast image-vae
  for method in switchvae voxel-vae image-vae; do  # SwitchVAE Table 2's SVM: RBF, gamma = 1/D
    suite "$method" --tasks modelnet10-svm --set svm.kernel=rbf --set svm.gamma=auto
  done
  commit "SwitchVAE family, RBF SVM"
  family cmcv views,points points=random-dgcnn cm
  bench leaderboard --results-dir "$OUT" --plot
  commit "all methods"
}

# sourced (tests/test_suite_script.py) it only defines the functions
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
