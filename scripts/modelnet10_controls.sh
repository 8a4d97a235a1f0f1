#!/usr/bin/env bash
# The real ModelNet10 leaderboard's controls and supervised upper bounds (issue 33), into results/modelnet10-cpu/.
# A maintainer's job, never CI's; resumable (finished leaderboard rows are skipped); commits as each step finishes
# with COMMIT=1. Uses scripts/modelnet10_cpu_suite.sh's helpers (suite, timed, commit), so its timings land in
# the same timings.csv.
#
#   COMMIT=1 nohup bash scripts/modelnet10_controls.sh controls > controls.log 2>&1 &
#   COMMIT=1 nohup bash scripts/modelnet10_controls.sh upper-bounds points voxels > upper.log 2>&1 &
#
# Controls (docs/methods.md#controls) have no pretext task: each runs every compatible task, seeds 0 1 2.
# Upper bounds: the `classification` protocol's scratch mode (docs/protocols.md), the same network as a family's
# encoder trained from random initialisation with labels, for as many epochs as that family's `cpu` preset
# pretrains (the same passes over the same training shapes; 20% of them are held out to choose the epoch).
source "$(dirname "${BASH_SOURCE[0]}")/modelnet10_cpu_suite.sh"

CONTROLS=(pooled-occupancy d2-shape-distribution random-voxel-cnn random-view-cnn)

# a control read with each family's data (leaderboard cells match on data_key, which hashes the whole data config):
# control family [extra --set ...]
FAMILY_CONTROLS=(
  "pooled-occupancy switchvae" "random-voxel-cnn switchvae"
  "d2-shape-distribution cmcv" "random-dgcnn cmcv"
  "random-view-cnn switchvae --set method.n_views=4"
  "random-view-cnn cmcv --set method.view_rig=random --set method.n_views=12"
)

family_data_sets() {  # control family: `--set data.K=V` for each data setting where the family's cpu data differ
  python - "$1" "$2" <<'PY'
import sys
from ssl3d.bench.run.runner import RunSpec, validate_run
from ssl3d.core.config import to_dict

def data(method):
    plan = validate_run(RunSpec(method=method, task="modelnet10-svm", preset="cpu", results_dir="/tmp/ssl3d-plan"))
    return {k: v for k, v in to_dict(plan.data_config).items() if k != "workers"}

control, family = data(sys.argv[1]), data(sys.argv[2])
print(" ".join(f"--set data.{k}={v}" for k, v in family.items() if control[k] != v))
PY
}

# network (a method whose encoder is the backbone), modality, the family whose cpu budget it gets
UPPER_points=("random-pointnet points parae-pointnet" "random-dgcnn points parae-dgcnn")
UPPER_voxels=("voxel-vae voxels voxel-vae")
UPPER_views=("switchvae views switchvae" "cmic views cmic")

controls() {
  for method in "${CONTROLS[@]}"; do
    suite "$method"
    commit "control $method"
  done
}

family_controls() {  # each control again on the data of the families whose data settings differ from its own
  local entry control family extra
  for entry in "${FAMILY_CONTROLS[@]}"; do
    read -r control family extra <<< "$entry"
    # shellcheck disable=SC2046,SC2086  # word lists
    suite "$control" $(family_data_sets "$control" "$family") $extra
    commit "control $control on $family's data"
  done
}

upper_bound() {  # network modality family
  local epochs; epochs=$(epochs_of "$3")
  timed "upper bound $1 $2" bench suite --preset cpu --methods "$1" --tasks modelnet10-cls --seeds "${SEEDS[@]}" \
    --results-dir "$OUT" --no-progress --set train.epochs=0 --set classification.mode=scratch \
    --set "classification.epochs=$epochs"
  commit "upper bound $1 ($2, scratch, $epochs epochs)"
}

upper_bounds() {  # modalities...
  local modality entry
  for modality in "$@"; do
    local -n entries="UPPER_$modality"
    for entry in "${entries[@]}"; do
      # shellcheck disable=SC2086  # entry is three words
      upper_bound $entry
    done
  done
}

run() {
  set -euo pipefail
  cd "$(dirname "$0")/.."
  export SSL3D_WRITE_REFERENCE=1
  mkdir -p "$OUT"
  [[ -f "$OUT/timings.csv" ]] || echo "what,seconds,exit" > "$OUT/timings.csv"
  case "${1:-}" in
    controls) controls; family_controls ;;
    upper-bounds) shift; [[ $# -gt 0 ]] || set -- points voxels views; upper_bounds "$@" ;;
    *) echo "usage: $0 controls | upper-bounds [points] [voxels] [views]" >&2; exit 2 ;;
  esac
}

[[ "${BASH_SOURCE[0]}" != "$0" ]] || run "$@"
