#!/usr/bin/env bash
# The loop behind data/measure-batch.sh and data/measure-engine.sh: run from the repository root
# on a GPU machine.
#
#   data/measure-llms.sh OUTDIR "LLM:BUDGET_S LLM:BUDGET_S ..." CHARACTERIZE_OPTIONS...
#
# Writes the machine's provenance (date, GPU, driver, library versions, CPU, RAPL domains, commit)
# to OUTDIR/env.txt, then measures each LLM on the GPU with `energyopt characterize --device cuda`
# and the given options, time-boxed to its BUDGET_S, into OUTDIR/gpu.csv (a re-run with the same
# OUTDIR resumes), logging to OUTDIR/gpu.log. The GPU's clocks and power limit are left as they are.
set -u
out=${1:?OUTDIR}; plan=${2:?"LLM:BUDGET_S ..."}; shift 2
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv
  python3 -c 'import torch, transformers, platform
from importlib.metadata import version
try:
    import triton
    tri = ("triton", triton.__version__)
except ImportError:
    tri = ()
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, *tri, "nvidia-ml-py", version("nvidia-ml-py"))'
  nproc; grep -m1 "model name" /proc/cpuinfo
  ls /sys/class/powercap 2>&1 | head -5
  git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -20
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
exec > >(tee -a "$out/gpu.log") 2>&1
status=0
for item in $plan; do
  llm=${item%%:*}; budget=${item#*:}
  echo "== $llm (budget ${budget} s) $(date -u +%H:%M:%S)"
  taskset -c 0-3 python3 -m energyopt.cli characterize --device cuda --llm "$llm" --time-budget-s "$budget" "$@" \
    --out "$out/gpu.csv" || status=$?
done
nvidia-smi --query-gpu=name,power.draw,temperature.gpu,clocks.sm --format=csv >> "$out/env.txt" 2>&1
exit $status
