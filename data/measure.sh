#!/usr/bin/env bash
# How the shipped measurements in data/ were made (run from the repository root on a GPU machine).
#
#   data/measure.sh OUTDIR GPU_BUDGET_S "LLM LLM ..." [CPU_BUDGET_S "LLM ..."]
#
# Runs the GPU sweep pinned to cores 0-3 and, if CPU LLMs are named, a CPU sweep pinned to cores
# 8-15 at the same time (8 torch threads). Each LLM is time-boxed (the design is visited in
# coverage order, so a partial sweep spans the range); re-running with the same OUTDIR resumes.
set -u
out=${1:?OUTDIR}; gpu_budget=${2:?GPU_BUDGET_S}; gpu_llms=${3:?GPU LLMs}
cpu_budget=${4:-}; cpu_llms=${5:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv
  python3 -c 'import torch, transformers, pynvml, platform; print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "nvidia-ml-py", getattr(pynvml, "__version__", "?"))'
  nproc; grep -m1 "model name" /proc/cpuinfo
  ls /sys/class/powercap 2>&1 | head -5
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
gpu_args=(); for l in $gpu_llms; do gpu_args+=(--llm "$l"); done
cpu_pid=
if [ -n "$cpu_llms" ]; then
  cpu_args=(); for l in $cpu_llms; do cpu_args+=(--llm "$l"); done
  # RAPL is used where readable; otherwise 8 busy cores x 5 W (a server CPU's TDP per core)
  taskset -c 8-15 python3 -m energyopt.cli characterize --device cpu "${cpu_args[@]}" --threads 8 \
    --cpu-power-w 40 --cpu-idle-w 0 --device-name cpu-8c --repeats 1 --max-input-tokens 2048 \
    --max-output-tokens 512 --time-budget-s "$cpu_budget" --out "$out/cpu.csv" > "$out/cpu.log" 2>&1 &
  cpu_pid=$!
fi
taskset -c 0-3 python3 -m energyopt.cli characterize --device cuda "${gpu_args[@]}" --repeats 1 --idle-seconds 3 --min-window-s 0.5 \
  --time-budget-s "$gpu_budget" --out "$out/gpu.csv" 2>&1 | tee "$out/gpu.log"
[ -n "$cpu_pid" ] && wait "$cpu_pid"
tail -3 "$out/cpu.log" 2>/dev/null
