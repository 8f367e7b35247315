#!/usr/bin/env bash
# ResNet-9 with the fast recipe under KERAS_BACKEND=jax on one lent GPU, prepared to run once.
#
# The lent machines have JAX, no TensorFlow, no Keras and no internet; this script brings what they
# lack in .gpu/ (made here by benchmarks/gpu_prepare.sh: the two JPEG archives and the keras wheels)
# and runs benchmarks/accuracy.py three times, each with a wall-clock budget cut from what is left of
# DEADLINE_S, in the order of what the runs are for:
#
#   cifar10-half   ResNet-9 at half width (1.6 M parameters, 6.6 MB): the bundled CIFAR-10 candidate
#   cifar100-half  the same on CIFAR-100: the bundled CIFAR-100 candidate
#   cifar10-full   ResNet-9 at full width (6.6 M parameters): time to 94% validation accuracy
#
# On an H200 one epoch takes 0.37 s at half width and 0.75 s at full width, so the budget planner
# alone plans about 200 epochs; EXTRA="--max-epochs 30" caps them (reports/gpu-resnet9.md has both).
#
# Results go to $OUT: run.log, reports.tar.gz (tables, plots, per-run logs) and one tar per trained
# model artifact, split into 15 MiB parts where larger (the device returns files of at most 16 MiB).
#
#   device run: bash benchmarks/gpu_run.sh      (carry .gpu; about DEADLINE_S seconds)
#   here, a smoke run of the same script on CPU:
#     PYTHON=/path/to/python-with-jax-and-keras WHEELS=none DATA=/tmp/small-archives OUT=/tmp/gpu-out \
#         DEADLINE_S=400 OVERHEAD_S=30 EXTRA="--probe-steps 2" bash benchmarks/gpu_run.sh
set -uo pipefail

PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-out}
DEADLINE_S=${DEADLINE_S:-500}   # the whole script, packaging included; keep under the call's timeout
OVERHEAD_S=${OVERHEAD_S:-75}    # per run, outside its training budget: probe, compiles, evaluation, save
RESERVE_S=20                    # packaging at the end
EXTRA=${EXTRA:-}                # more accuracy.py arguments for every run (smoke runs: --train-limit N)
WHEELS=${WHEELS:-.gpu/whl}      # installed first, when there are any (smoke runs here: WHEELS=none)
DATA=${DATA:-.gpu/data}         # <dataset>-jpeg.tar.gz (smoke runs: small archives of the same layout)
WORK=$(mktemp -d /tmp/gpu-run.XXXXXX)
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1

if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" KERAS_BACKEND=jax HASHTAGGER_HOME="$WORK/home"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PYTHON" -c "import jax, keras, numpy, PIL; import tasks.train.train, benchmarks.accuracy  # noqa
print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, '| numpy', numpy.__version__)" \
    || exit 1

# Both datasets at once (one CPU process each), versioned exactly as here.
preparing=()
for name in cifar10 cifar100; do
    "$PYTHON" -c "import sys; from tasks.data import prepare
m = prepare.prepare(sys.argv[1], sys.argv[2], progress=False)
print(m.name, m.version, m.counts)" "$name" "$DATA/$name-jpeg.tar.gz" &
    preparing+=($!)
done
wait "${preparing[@]}"  # by PID: a bare wait would also wait for the tee above, which never ends
echo "prepared after ${SECONDS} s"

# run NAME WEIGHT WEIGHTS_LEFT DATASET ARGS...: a budget of WEIGHT/WEIGHTS_LEFT of the time left,
# less the overhead
run() {
    local name=$1 weight=$2 weights_left=$3 dataset=$4
    shift 4
    local left=$((DEADLINE_S - SECONDS - RESERVE_S))
    local budget=$((left * weight / weights_left - OVERHEAD_S))
    if ((budget < 20)); then
        echo "$name: skipped, ${left} s left"
        return
    fi
    local minutes
    minutes=$(awk "BEGIN {print $budget / 60}")
    echo "== $name: ${budget} s of training (${left} s left at $(date -u +%T))"
    # a hard stop a little before the deadline, so that what earlier runs made still gets packed
    timeout --signal=INT --kill-after=10 $((left - 15)) "$PYTHON" benchmarks/accuracy.py --budget-minutes "$minutes" \
        --archs resnet9 --recipe fast --probe-steps 30 --no-register --output-dir "$WORK/$name" \
        --dataset "$dataset" --source "$DATA/$dataset-jpeg.tar.gz" "$@" $EXTRA 2>&1 | tee "$WORK/$name.log" | grep --line-buffered -v "^Epoch"
    echo "== $name: exit ${PIPESTATUS[0]} after ${SECONDS} s"
}
GPU=(--recipe-set batch_size=512 --recipe-set learning_rate=0.4)
HALF=(--model-set "widths=[32,64,128,256]")
run cifar10-half 12 32 cifar10 "${GPU[@]}" "${HALF[@]}" --target 0.9
run cifar100-half 10 20 cifar100 "${GPU[@]}" "${HALF[@]}"
run cifar10-full 10 10 cifar10 "${GPU[@]}" --target 0.94

# Pack: tables, plots and logs in one file; each model artifact in its own tar (parts of 15 MiB).
tar -czf "$OUT/reports.tar.gz" -C "$WORK" --exclude=home --exclude=site .
for json in "$WORK"/*/accuracy-*.json; do
    run_name=$(basename "$(dirname "$json")")
    model_dir=$("$PYTHON" -c "import json, sys; print(json.load(open(sys.argv[1]))[0].get('path', ''))" "$json")
    [[ -n "$model_dir" ]] || continue  # skipped: not even one epoch fitted its budget
    tar -cf "$WORK/$run_name.tar" -C "$(dirname "$model_dir")" "$(basename "$model_dir")"
    if (($(stat -c %s "$WORK/$run_name.tar") > 15 * 1024 * 1024)); then
        split -b 15M -d "$WORK/$run_name.tar" "$OUT/$run_name.tar.part"
    else
        mv "$WORK/$run_name.tar" "$OUT/"
    fi
done
ls -l "$OUT"
echo "done after ${SECONDS} s"
