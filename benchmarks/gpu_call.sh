#!/usr/bin/env bash
# One device call (docs/gpu.md): build, benchmarks/gpu_check.py, and a cats-vs-dogs listing on the GPU beside it.
#
#   FLOW=scratch bash benchmarks/gpu_call.sh SECONDS [--no-check]
#
# FLOW: scratch (listings 5.5-5.8, 30 epochs, the default), augmented (5.13-5.14, 100 epochs) or none.
# SECONDS: when to stop the listing (from the start of this script) if it has not finished.
# The split of listing 5.4 must be in .gpu_data/cats_and_dogs_small/{train,validation,test} (carried; never
# committed). The listing runs in the background while the tests and the sanitizer run, and is paused (SIGSTOP)
# while anything is timed. Its log and History go to $OUT. Its checkpoint (28 MB) does not come back: with the
# photos (32 MB) and the repository (22 MB) it would not fit in what a call carries (64 MiB), so a run on the GPU
# must finish within one call.
set -u
deadline=$(( $(date +%s) + ${1:?seconds} )); shift
check=1
for arg in "$@"; do
    case $arg in --no-check) check=0 ;; esac
done
FLOW=${FLOW:-scratch}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
FLOW_BACKEND=${FLOW_BACKEND:-cuda}   # cython and CHECK_ARGS="--backend cython --quick" rehearse this script on a CPU
CHECK_ARGS=${CHECK_ARGS:-}
export PYTHONUNBUFFERED=1
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.txt"; }

say "nvidia-smi:"; nvidia-smi 2>&1 | tee -a "$OUT/gpu_check.txt" | head -15
say "building the Cython kernels"
if ! python3 setup.py build_ext --inplace > "$OUT/build.txt" 2>&1; then
    say "build FAILED"; tail -40 "$OUT/build.txt" | tee -a "$OUT/gpu_check.txt"
fi
tail -2 "$OUT/build.txt" | tee -a "$OUT/gpu_check.txt"
export PYTHONPATH=$PWD

base=.gpu_data/cats_and_dogs_small
flow_pid=""
if [ -d "$base/train" ] && [ "$FLOW" != none ]; then
    augment=""; [ "$FLOW" = augmented ] && augment="--augment"
    say "cats vs dogs, $FLOW, on $FLOW_BACKEND in the background"
    python3 -m fastconv.examples.cats_dogs --original "$base" --base "$base" $augment --backend "$FLOW_BACKEND" \
        --workers 12 > "$OUT/flow.txt" 2>&1 &
    flow_pid=$!
fi
pause() { [ -n "$flow_pid" ] && kill -STOP "$flow_pid" 2>/dev/null; }
resume_flow() { [ -n "$flow_pid" ] && kill -CONT "$flow_pid" 2>/dev/null; }

if [ $check = 1 ]; then
    python3 benchmarks/gpu_check.py --out "$OUT" --skip mnist,timed $CHECK_ARGS   # tests and sanitizer, beside the listing
    pause; say "the listing paused for the timed sections"
    python3 benchmarks/gpu_check.py --out "$OUT" --skip tests,sanitizer $CHECK_ARGS
    resume_flow; say "the listing resumed"
fi

if [ -n "$flow_pid" ]; then
    while kill -0 "$flow_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
    if kill -0 "$flow_pid" 2>/dev/null; then
        say "deadline: stopping the listing (the last finished epoch's checkpoint is kept)"
        kill -TERM "$flow_pid"; sleep 5; kill -KILL "$flow_pid" 2>/dev/null
    fi
    wait "$flow_pid"; say "the listing exit $?"
    tail -5 "$OUT/flow.txt" | tee -a "$OUT/gpu_check.txt"
    for file in "$base"/checkpoint_*.json "$base"/history_*.json; do
        [ -f "$file" ] && cp "$file" "$OUT/"
    done
fi
logs=$(cd "$OUT" && ls build.txt tests.txt sanitizer.txt 2>/dev/null)
[ -n "$logs" ] && (cd "$OUT" && tar czf logs.tgz $logs && rm -f $logs)
ls -la "$OUT"
