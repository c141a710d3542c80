#!/usr/bin/env bash
# On the device (an H100): issue 5's measurements in one call, each stage's log and JSON under $OUT.
#
#   run(command="bash tools/device/issue5.sh", carry=[".whl", ".data"], timeout_s=600)
#   STAGES="short throughput" bash tools/device/issue5.sh      # a subset
#
# Stages: short (10 runs, vs airbench94_muon 90.76% in 2.31 s), short-sgd (10 runs, vs airbench94
# 90.72% in 2.63 s), throughput (wrn-16-4 bf16 batch 512: pipeline vs on-device, target >= 0.95),
# long (3 runs, vs airbench96 93.41% in 16.5 s). Locally, `SKIP_INSTALL=1 PYTHON=.venv/bin/python
# SMOKE=1` runs every stage seconds-long on the CPU (how this script is tested).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/layerkit-out}
mkdir -p "$OUT"
python=${PYTHON:-python3}
if [ -z "${SKIP_INSTALL:-}" ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true) > "$OUT/machine.txt"
"$python" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" \
  2>&1 | tee -a "$OUT/machine.txt"

data=(--data-dir .data)
smoke=()
if [ -n "${SMOKE:-}" ]; then
  data=(--data sample)
  smoke=(--smoke)
fi
status=0
for stage in ${STAGES:-short short-sgd throughput long}; do
  echo "=== $stage $(date -u +%FT%TZ)" | tee -a "$OUT/stages.log"
  case $stage in
    short|short-sgd|long)
      runs=10; [ "$stage" = long ] && runs=3
      [ -n "${SMOKE:-}" ] && runs=2
      "$python" -m layerkit.cli speedrun cifar10 --preset "$stage" "${data[@]}" "${smoke[@]}" --runs "$runs" \
        --out "$OUT/speedrun-$stage.json" 2>&1 | tee "$OUT/speedrun-$stage.log" ;;
    throughput)
      if [ -n "${SMOKE:-}" ]; then args=(sample --model wrn-10-1 --batch-size 32 --steps 2 --warmup 1 --repeats 1)
      else args=(cifar10 --data-dir .data --repeats 5); fi
      "$python" -m layerkit.cli bench throughput "${args[@]}" 2>&1 | tee "$OUT/throughput.log" ;;
    *) echo "unknown stage $stage" >&2; status=2; continue ;;
  esac
  rc=${PIPESTATUS[0]}
  echo "=== $stage exit $rc $(date -u +%FT%TZ)" | tee -a "$OUT/stages.log"
  [ "$rc" -ne 0 ] && status=$rc
done
exit $status
