#!/usr/bin/env bash
# The report's networks, all at once on one lent GPU, in one shot: `hashtagger train` ten times, concurrently.
#
#   shallow, allconv, resnet, vgg16   --recipe seed       on cifar10 and cifar100 (the report ran VGG16
#                                                         on CIFAR-10 only; CIFAR-100 runs here too)
#   airbench                          --recipe airbench   on cifar10 and cifar100
#
# The lent machines have JAX and CUDA, no TensorFlow, no Keras, no internet, and a lease of minutes, so
# this script brings what they lack in .gpu/ (made here by benchmarks/gpu_prepare.sh: the two JPEG
# archives and the keras wheels), prepares both datasets once under one HASHTAGGER_HOME, then starts
# every training at once, each one the project's own `train` command (so the model's metadata records
# its exact command), each with a wall-clock budget (--budget-minutes) cut from what is left of
# DEADLINE_S once preparation is done, less OVERHEAD_S for start-up, evaluation and saving, and a hard
# stop before the deadline. Each JAX process may take MEM_FRACTION of the GPU's memory, allocated as
# needed (XLA_PYTHON_CLIENT_PREALLOCATE=false). The seed recipes plan hundreds of epochs (the report's):
# the budget stops them far earlier; airbench's ten epochs fit.
#
# Concurrent runs do not clash: each run has its own HASHTAGGER_HOME, whose datasets/ is a link to the
# one prepared (only read from then on), so that each registers its model in its own embedded SQLite
# registry, migrated on first use, rather than ten processes creating and migrating one database at
# the same moment (a separate HASHTAGGER_DB_URL would not do: only the embedded default is migrated on
# first use). Without sqlalchemy, as on the lent machines, registration fails with one ERROR line in
# the run's log and the model stays saved: `train` has no flag to skip it, and nothing here needs it.
#
# Results in $OUT (the device returns at most 8 files of 16 MiB, 64 MiB together):
#   table.md        the table (benchmarks/gpu_reproduce_table.py): network, dataset, recipe, epochs
#                   trained, test top-1 on the JPEG test set beside the report's figure, train seconds,
#                   the machine (nvidia-smi); also printed at the end of run.log
#   run.log         this script's output
#   runs.tar.gz     each run's stdout (train --json), stderr, exit status; machine line; GPU samples
#   models.tar.gz.partNN   the trained model folders, one tar.gz split into parts of 15 MiB; models that
#                   would take it over MODELS_MAX_MIB are left out, last run first (run.log says which)
#
#   device run: bash benchmarks/gpu_run.sh's way (carry .gpu; timeout_s a little over DEADLINE_S):
#     DEADLINE_S=480 bash benchmarks/gpu_reproduce.sh
#   here, a smoke run of the same script on CPU (TensorFlow backend, small archives of the same layout,
#   three at a time on 2 cores; about 15 minutes):
#     nice -n 10 env PYTHON=/work/main/.venv/bin/python BACKEND=tensorflow WHEELS=none DATA=/tmp/ht-small \
#         OUT=/tmp/gpu-reproduce-out MAX_PARALLEL=3 DEADLINE_S=1800 OVERHEAD_S=60 \
#         EXTRA="--train-limit 256 --epochs 1" bash benchmarks/gpu_reproduce.sh
#   (/tmp/ht-small/<dataset>-jpeg.tar.gz: 50 images a class and split of CIFAR-10, 20 of CIFAR-100,
#   taken from ../shared/data's archives; see benchmarks/README.md.) Run so on 2026-11-29: all ten
#   trained, saved and registered in 830 s; 45 MiB of models in three parts. Not yet run on a GPU.
set -uo pipefail

PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-out}
DEADLINE_S=${DEADLINE_S:-480}   # the whole script, packaging included; keep under the call's timeout
OVERHEAD_S=${OVERHEAD_S:-90}    # per run, outside its training budget: start-up, evaluation, saving
RESERVE_S=${RESERVE_S:-25}      # the table and packaging at the end
EXTRA=${EXTRA:-}                # more `train` arguments for every run (smoke runs: --train-limit 256 --epochs 1)
BACKEND=${BACKEND:-jax}         # KERAS_BACKEND of every run (smoke runs here: tensorflow)
MEM_FRACTION=${MEM_FRACTION:-0.08}  # of the GPU's memory, each JAX process at most (10 runs: 80%)
MAX_PARALLEL=${MAX_PARALLEL:-0}     # runs at a time; 0: all at once
RUNS=${RUNS:-}                  # a subset, e.g. "shallow-cifar10 airbench-cifar100" (default: all ten)
MODELS_MAX_MIB=${MODELS_MAX_MIB:-56}  # model parts in $OUT at most, so that all files come back
WHEELS=${WHEELS:-.gpu/whl}      # installed first, when there are any (smoke runs here: WHEELS=none)
DATA=${DATA:-.gpu/data}         # <dataset>-jpeg.tar.gz (smoke runs: small archives of the same layout)
WORK=$(mktemp -d /tmp/gpu-reproduce.XXXXXX)
mkdir -p "$OUT" "$WORK/runs"
exec > >(tee "$OUT/run.log") 2>&1

if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" KERAS_BACKEND=$BACKEND HASHTAGGER_HOME="$WORK/home"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset HASHTAGGER_DB_URL HASHTAGGER_ARTIFACTS  # the runs' own registries and datasets, not a shared store
export XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_PYTHON_CLIENT_MEM_FRACTION=$MEM_FRACTION
export XLA_CLIENT_MEM_FRACTION=$MEM_FRACTION  # the variable's newer name

# The machine and the software, for the table.
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null |
        sed 's/^/machine: /' ||
        echo "machine: no GPU; $(nproc) CPU cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    "$PYTHON" -c "import keras, numpy, PIL; import tasks.train.train, tasks.cli.main  # noqa
import importlib; backend = keras.backend.backend()
devices = ''
if backend == 'jax':
    import jax; devices = f' {jax.devices()}'
version = importlib.import_module(backend).__version__
print(f'software: KERAS_BACKEND={backend} {version}{devices}, keras {keras.__version__}, numpy {numpy.__version__}')"
} > "$WORK/machine.txt"
cat "$WORK/machine.txt"
grep -q "^software:" "$WORK/machine.txt" || { echo "Python, Keras or the project does not import"; exit 1; }

# Both datasets at once (one CPU process each), versioned exactly as here.
preparing=()
for name in cifar10 cifar100; do
    "$PYTHON" -c "import sys; from tasks.cli.main import main; sys.exit(main(sys.argv[1:]))" \
        data prepare "$name" --source "$DATA/$name-jpeg.tar.gz" --quiet &
    preparing+=($!)
done
for pid in "${preparing[@]}"; do  # by PID: a bare wait would also wait for the tee above, which never ends
    wait "$pid" || { echo "preparing a dataset failed"; exit 1; }
done
echo "prepared after ${SECONDS} s"

ALL=()
for dataset in cifar10 cifar100; do
    for arch in shallow allconv resnet vgg16; do ALL+=("$arch-$dataset-seed"); done
done
ALL+=(airbench-cifar10-airbench airbench-cifar100-airbench)
SELECTED=()
for run in "${ALL[@]}"; do
    if [[ -z "$RUNS" || " $RUNS " == *" ${run%-*} "* ]]; then SELECTED+=("$run"); fi
done
((${#SELECTED[@]})) || { echo "RUNS=$RUNS names none of: ${ALL[*]%-*}"; exit 1; }
PARALLEL=$((MAX_PARALLEL > 0 ? MAX_PARALLEL : ${#SELECTED[@]}))

if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 3 \
        > "$WORK/gpu-usage.csv" 2>/dev/null &
    SAMPLER=$!
fi

# Every run the same training budget: the time left over the waves of runs (one wave when all run at
# once), less the overhead; a run that starts late gets no more than what is left then.
WAVES=$(((${#SELECTED[@]} + PARALLEL - 1) / PARALLEL))
BUDGET=$(((DEADLINE_S - SECONDS - RESERVE_S) / WAVES - OVERHEAD_S))
echo "${#SELECTED[@]} runs, ${PARALLEL} at a time: ${BUDGET} s of training each"

# start NAME ARCH DATASET RECIPE: one `train` in the background
declare -A PIDS=()
start() {
    local name=$1 arch=$2 dataset=$3 recipe=$4
    local dir="$WORK/runs/$name"
    local left=$((DEADLINE_S - SECONDS - RESERVE_S))
    local budget=$((left - OVERHEAD_S < BUDGET ? left - OVERHEAD_S : BUDGET))
    mkdir -p "$dir/home"
    ln -s "$HASHTAGGER_HOME/datasets" "$dir/home/datasets"
    printf '{"arch": "%s", "dataset": "%s", "recipe": "%s", "budget_s": %d}\n' \
        "$arch" "$dataset" "$recipe" "$budget" > "$dir/spec.json"
    if ((budget < 20)); then
        echo "$name: skipped, ${left} s left" | tee "$dir/train.log"
        echo "0 0" > "$dir/exit"
        return
    fi
    local minutes
    minutes=$(awk "BEGIN {printf \"%.3f\", $budget / 60}")
    echo "== $name: started at ${SECONDS} s, ${budget} s of training, hard stop in $((left - 10)) s"
    (
        began=$SECONDS
        # its own home (see the header); a hard stop that leaves time to pack the rest (SIGTERM: a
        # background job of a script ignores SIGINT; a stopped run saves nothing either way)
        HASHTAGGER_HOME="$dir/home" timeout --kill-after=5 $((left - 10)) \
            "$PYTHON" -c "import sys; from tasks.cli.main import main; sys.exit(main(sys.argv[1:]))" \
            train --arch "$arch" --dataset "$dataset" --recipe "$recipe" --budget-minutes "$minutes" \
            --json --quiet $EXTRA > "$dir/train.json" 2> "$dir/train.log"
        echo "$? $((SECONDS - began))" > "$dir/exit"
    ) &
    PIDS[$name]=$!
}

finished() {  # reap the runs that ended; say how each went
    local name
    for name in "${!PIDS[@]}"; do
        if [[ -s "$WORK/runs/$name/exit" ]] || ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            wait "${PIDS[$name]}"
            unset "PIDS[$name]"
            local dir="$WORK/runs/$name" outcome
            outcome=$(tr -d '\n ' < "$dir/train.json" | grep -o '"test_top1":[0-9.]*' || tail -n1 "$dir/train.log")
            echo "== $name: exit $(cut -d' ' -f1 "$dir/exit") after $(cut -d' ' -f2 "$dir/exit") s (at ${SECONDS} s): $outcome"
        fi
    done
}

for run in "${SELECTED[@]}"; do
    while ((${#PIDS[@]} >= PARALLEL)); do sleep 2; finished; done
    IFS=- read -r arch dataset recipe <<< "$run"
    start "${run%-*}" "$arch" "$dataset" "$recipe"
done
while ((${#PIDS[@]})); do sleep 2; finished; done
[[ -n "${SAMPLER:-}" ]] && kill "$SAMPLER" 2>/dev/null
echo "all runs ended after ${SECONDS} s"

# The table, then the packing: logs in one file, model folders in one tar.gz split into 15 MiB parts.
ORDER=$(IFS=,; echo "${SELECTED[*]%-*}")
"$PYTHON" benchmarks/gpu_reproduce_table.py --runs "$WORK/runs" --machine "$WORK/machine.txt" \
    --usage "$WORK/gpu-usage.csv" --order "$ORDER" --output "$OUT/table.md"
table_status=$?
cp "$OUT/table.md" "$WORK/"
tar -czf "$OUT/runs.tar.gz" -C "$WORK" --exclude=home --exclude=site .

models=()  # each saved model's folder, in the runs' order
for run in "${SELECTED[@]}"; do
    path=$("$PYTHON" -c "import json, sys
try:
    text = open(sys.argv[1]).read(); print(json.loads(text[text.index('{'):])['path'])
except Exception:
    pass" "$WORK/runs/${run%-*}/train.json")
    [[ -n "$path" && -d "$path" ]] && models+=("$path")
done
while ((${#models[@]})); do
    members=()
    for path in "${models[@]}"; do members+=(-C "$(dirname "$path")" "$(basename "$path")"); done
    tar -czf "$WORK/models.tar.gz" "${members[@]}"
    size=$(stat -c %s "$WORK/models.tar.gz")
    ((size <= MODELS_MAX_MIB * 1024 * 1024)) && break
    echo "models: $((size / 1024 / 1024)) MiB is over MODELS_MAX_MIB=$MODELS_MAX_MIB;" \
        "leaving out $(basename "${models[-1]}")"
    unset "models[-1]"
done
if ((${#models[@]})); then
    split -b 15M -d "$WORK/models.tar.gz" "$OUT/models.tar.gz.part"
    echo "models packed ($(($(stat -c %s "$WORK/models.tar.gz") / 1024)) KiB):" \
        "$(for path in "${models[@]}"; do basename "$path"; done | xargs)"
    echo "unpack: cat models.tar.gz.part* | tar -xz"
fi
ls -l "$OUT"
echo "done after ${SECONDS} s (deadline ${DEADLINE_S} s)"
exit $table_status
