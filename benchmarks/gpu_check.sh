#!/usr/bin/env bash
# One-shot GPU check: every losstools number that needs a GPU, in one command, on a machine with CUDA.
#
#     bash benchmarks/gpu_check.sh            # from the repository root, in an environment with a CUDA build of torch
#
# Runs, each step timed and its output kept under results/gpu/:
#   1. the zoo tests (every curvature quantity on 20 models against float64 oracles) and the pruning study's
#      device test, on the CUDA device only (tests/test_zoo.py and tests/test_pruning.py add "cuda" to their
#      device list when torch.cuda.is_available());                                   -> zoo_tests.xml, zoo_tests.log
#   2. benchmarks/cnn_curvature.py --device cuda (wall-clock after synchronising)      -> cnn_curvature.json
#   3. benchmarks/hessian_diag.py --device cuda (BackPACK's DiagHessian needs ~12 GB)  -> hessian_diag.json
#   4. one MNIST grid seed, python -m losstools prune --data mnist5k --device cuda    -> mnist5k_mlp/ (records, tables)
# then writes results/gpu/summary.md (GPU, torch, each step's status and seconds). Meant to take under 8 minutes.
# It fails loudly (exit 1, nothing skipped) when CUDA is not available: never run on this project's 2-core CPU
# machine other than to see that refusal; no number in it has been measured yet.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/gpu
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

python - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
             "run this on a machine with an NVIDIA GPU and a CUDA build of PyTorch (see the README's install section)")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

mkdir -p "$out"
summary="$out/summary.md"
{
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    python -c "import torch; print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}')"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---|"
} > "$summary"

failed=0
step() {  # step NAME COMMAND...: run it, log it, add a row to the summary; a failure is counted, not hidden
    local name=$1 start=$SECONDS status=ok
    shift
    echo "gpu_check: $name"
    if ! "$@" > "$out/$name.log" 2>&1; then
        status=FAILED
        failed=$((failed + 1))
        tail -n 20 "$out/$name.log"
    fi
    echo "| $name | $status | $((SECONDS - start)) |" >> "$summary"
}

step zoo_tests python -m pytest tests/test_zoo.py tests/test_pruning.py -k cuda -o addopts="" -q \
    --junitxml "$out/zoo_tests.xml"
step cnn_curvature python benchmarks/cnn_curvature.py --device cuda --json "$out/cnn_curvature.json"
step hessian_diag python benchmarks/hessian_diag.py --device cuda --json "$out/hessian_diag.json"
rm -rf "$out/mnist5k_mlp"
step mnist5k_grid_seed python -m losstools prune --data mnist5k --device cuda --seeds 0 --no-progress \
    --out "$out/mnist5k_mlp"

# The zoo step must have run CUDA tests: with none selected pytest exits 5, counted above as a failure.
echo >> "$summary"
echo "Logs, JSON and the grid seed's records.jsonl / tables.md are beside this file." >> "$summary"
cat "$summary"
if [ "$failed" -ne 0 ]; then
    echo "gpu_check: $failed step(s) FAILED (see $out/*.log)" >&2
    exit 1
fi
