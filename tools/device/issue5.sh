#!/usr/bin/env bash
# On the device (an H100): issue 5's measurements in one call.
#
#   run(command="bash tools/device/issue5.sh", carry=[".whl", ".data"], timeout_s=600)
#   STAGES="short throughput" bash tools/device/issue5.sh                 # a subset
#   STAGES="recipe-resnet-32-cifar10" bash tools/device/issue5.sh         # a recipe's accuracy run
#
# Stages: short (`layerkit train --recipe speedrun-94 --runs 10`, vs airbench94_muon 90.76% in
# 2.31 s), short-sgd (speedrun-94-sgd, 10 runs, vs airbench94 90.72% in 2.63 s), throughput
# (wrn-16-4 bf16 batch 512: pipeline vs on-device, target >= 0.95), long (speedrun-96, 3 runs, vs
# airbench96 93.41% in 16.5 s), recipe-NAME (`layerkit train --recipe NAME` on the shared data;
# not in the default list). Each speed-run stage leaves a run record per seed and summary.json.
#
# A call brings back at most 8 files, so $OUT holds three: summary.txt (machine, each stage's
# exit status and its result lines), issue5.tar.gz (every log, JSON and run record, repacked
# after each stage, so a call cut short still returns what finished; checkpoints left out) and
# stages.log.
# Locally, `SKIP_INSTALL=1 PYTHON=.venv/bin/python SMOKE=1` runs every stage seconds-long on
# the CPU (how this script is tested).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/layerkit-out}
WORK=${WORK:-$(mktemp -d /tmp/issue5.XXXXXX)}
mkdir -p "$OUT" "$WORK"
python=${PYTHON:-python3}
if [ -z "${SKIP_INSTALL:-}" ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
summary=$OUT/summary.txt
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
  "$python" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1
} > "$summary"

status=0
for stage in ${STAGES:-short short-sgd throughput long}; do
  echo "=== $stage $(date -u +%FT%TZ)" | tee -a "$OUT/stages.log"
  log=$WORK/$stage.log
  case $stage in
    short|short-sgd|long)
      runs=10; [ "$stage" = long ] && runs=3
      recipe=speedrun-94; [ "$stage" = short-sgd ] && recipe=speedrun-94-sgd; [ "$stage" = long ] && recipe=speedrun-96
      if [ -n "${SMOKE:-}" ]; then runs=2; args=(--smoke model_options.widths=[8,16,16]); else args=(--data cifar10 data_dir=.data); fi
      "$python" -m layerkit.cli train --recipe "$recipe" --runs "$runs" --out "$WORK/speedrun-$stage" \
        "${args[@]}" report=false 2>&1 | tee "$log"
      rc=${PIPESTATUS[0]}; pattern='(runs of|^run [0-9]|^layerkit)' ;;
    throughput)
      if [ -n "${SMOKE:-}" ]; then args=(sample --model wrn-10-1 --batch-size 32 --steps 2 --warmup 1 --repeats 1)
      else args=(cifar10 --data-dir .data --repeats 5); fi
      "$python" -m layerkit.cli bench throughput "${args[@]}" 2>&1 | tee "$log"
      rc=${PIPESTATUS[0]}; pattern='^(\(|ratio|throughput)' ;;
    recipe-*)
      recipe=${stage#recipe-}
      if [ -n "${SMOKE:-}" ]; then args=(--smoke); else args=(--data cifar10 data_dir=.data); fi
      "$python" -m layerkit.cli train --recipe "$recipe" "${args[@]}" --out "$WORK/$stage" 2>&1 | tee "$log"
      rc=${PIPESTATUS[0]}; pattern='(test accuracy|^layerkit)' ;;
    *) echo "unknown stage $stage" | tee "$log" >&2; rc=2; pattern='^unknown' ;;
  esac
  { echo "=== $stage: exit $rc"; grep -E "$pattern" "$log" | tail -15; } >> "$summary"
  echo "=== $stage exit $rc $(date -u +%FT%TZ)" | tee -a "$OUT/stages.log"
  [ "$rc" -ne 0 ] && status=$rc
  tar czf "$OUT/issue5.tar.gz.part" --exclude="*.keras" -C "$WORK" . && mv "$OUT/issue5.tar.gz.part" "$OUT/issue5.tar.gz"
done
cat "$summary"
exit $status
