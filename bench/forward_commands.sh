#!/usr/bin/env bash
# Issue 24's end-to-end figures (docs/benchmarks.md, "`layerkit evaluate` and `predict`" and
# "`make demo`'s end-of-training phase"): whole commands timed on the default recipe, the forward
# passes on JAX (the former path) and on `auto` (ONNX Runtime where converting pays).
# Usage: bench/forward_commands.sh [WORKDIR]   (from the repository root, .venv made by `make test`)
# Run it on a quiet machine: every figure is wall time.
set -u
W=${1:-/tmp/layerkit-forward-commands}
L=.venv/bin/layerkit
export LAYERKIT_CACHE_DIR=off  # no JAX compilation cache: every command compiles what it runs
rm -rf "$W"; mkdir -p "$W"
stamp() { python3 -u -c 'import sys, time
t0 = time.monotonic()
for line in sys.stdin: print(f"{time.monotonic() - t0:9.2f} {line}", end="")'; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
echo "== $(date -u) $(git log --oneline -1 | cut -c1-12) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in jax auto; do  # the default job, stdout stamped: the end-of-training phase is read off it
  LAYERKIT_FORWARD=$mode LAYERKIT_PROGRESS_SECONDS=0.5 $L train --out "$W/sample-$mode" 2>&1 | stamp > "$W/train-$mode.log"
  echo "train ($mode): last epoch line at $(grep -E '^ *[0-9.]+ [0-9]+/[0-9]+ - ' "$W/train-$mode.log" | tail -1 | awk '{print $1}') s," \
       "report starts at $(grep -m1 'writing the report' "$W/train-$mode.log" | awk '{print $1}') s," \
       "ends at $(tail -1 "$W/train-$mode.log" | awk '{print $1}') s; $(grep -m1 'forward passes' "$W/train-$mode.log" | cut -c11-160)"
done
RUN=$W/sample-auto
python3 - "$W" <<'PY'  # two test photos from the embedded sample, as a user's JPEG files
import sys, numpy as np
z = np.load("src/layerkit/data/embedded/cifar10-test.npz", allow_pickle=False)
for i in range(2):
    open(f"{sys.argv[1]}/photo{i}.jpg", "wb").write(z["jpeg"][z["offsets"][i]:z["offsets"][i + 1]].tobytes())
PY
timed() { local s e; s=$(date +%s.%N); "$@" > "$W/cmd.log" 2>&1; local rc=$?; e=$(date +%s.%N)
          echo "$(secs "$s" "$e") s (exit $rc): $(grep -m1 'forward passes' "$W/cmd.log" | cut -c1-150)"; }
echo "evaluate, jax:                   $(LAYERKIT_FORWARD=jax timed $L evaluate "$RUN")"
rm -rf "$RUN/onnx-cache"
echo "evaluate, auto, nothing cached:  $(LAYERKIT_FORWARD=auto timed $L evaluate "$RUN")"
echo "evaluate, onnxruntime, converts: $(LAYERKIT_FORWARD=onnxruntime timed $L evaluate "$RUN")"
echo "evaluate, auto, graph cached:    $(LAYERKIT_FORWARD=auto timed $L evaluate "$RUN")"
echo "predict 2, jax:                  $(LAYERKIT_FORWARD=jax timed $L predict "$RUN" "$W/photo0.jpg" "$W/photo1.jpg")"
echo "predict 2, auto, graph cached:   $(LAYERKIT_FORWARD=auto timed $L predict "$RUN" "$W/photo0.jpg" "$W/photo1.jpg")"
echo "== end $(date -u) load: $(cut -d' ' -f1-3 /proc/loadavg)"
