#!/usr/bin/env bash
# How the shipped batch-size measurements (data/h200-batch.csv) were made: run from the repository
# root on a GPU machine.
#
#   data/measure-batch.sh OUTDIR "LLM:BUDGET_S LLM:BUDGET_S ..." [more characterize options]
#
# Every LLM is measured at batch sizes 1, 8, 32, 64 and 128 on the same token points: a thinned
# design of 12 points (input 8-2048, output 8-512 tokens) and 3 held-back points, one repeat each,
# with the decode attention that reads each KV head once. Each LLM is time-boxed to its BUDGET_S
# (points are visited in coverage order, every batch size in turn, so a partial sweep spans the
# range at every batch size); re-running with the same OUTDIR resumes where it stopped. Points whose
# KV cache and weights do not fit in the GPU's memory are skipped and listed in the log. The
# GPU's clocks and power limit are left as they are.
set -u
out=${1:?OUTDIR}; plan=${2:?"LLM:BUDGET_S ..."}; shift 2
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv
  python3 -c 'import torch, transformers, platform; from importlib.metadata import version; print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "nvidia-ml-py", version("nvidia-ml-py"))'
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
  taskset -c 0-3 python3 -m energyopt.cli characterize --device cuda --llm "$llm" \
    --batch-sizes 1,8,32,64,128 --points 12 --holdout 3 --max-input-tokens 2048 --max-output-tokens 512 \
    --repeats 1 --idle-seconds 3 --min-window-s 1.0 --time-budget-s "$budget" "$@" \
    --out "$out/gpu.csv" || status=$?
done
nvidia-smi --query-gpu=name,power.draw,temperature.gpu,clocks.sm --format=csv >> "$out/env.txt" 2>&1
exit $status
