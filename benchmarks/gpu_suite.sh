#!/usr/bin/env bash
# The GPU suite on a machine without network: install the carried wheels (.whl/: hydra-core, omegaconf,
# antlr4) to /tmp/site when there are any, make src/ importable, and run benchmarks/gpu_suite.py with the
# arguments given (see benchmarks/README.md, "GPU suite"). PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/gpu_suite.py "$@"
