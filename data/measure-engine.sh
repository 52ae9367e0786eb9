#!/usr/bin/env bash
# How the shipped replay-engine measurements (data/h200-engine.csv) were made: run from the
# repository root on a GPU machine.
#
#   data/measure-engine.sh OUTDIR "LLM:BUDGET_S LLM:BUDGET_S ..." [more characterize options]
#
# Every LLM is measured through the engine that `energyopt replay` runs (--decode-attention
# ragged: a prefill per query, then CUDA-graph decode steps whose attention reads each query's own
# tokens) at batch sizes 1, 8 and 32, on a thinned design of 12 points (input 8-4096, output
# 8-1024 tokens: the range of examples/replay/workload.csv) and 3 held-back points, one repeat
# each. Each LLM is time-boxed to its BUDGET_S (points are visited in coverage order, every batch
# size in turn); re-running with the same OUTDIR resumes where it stopped. The GPU's clocks and
# power limit are left as they are.
set -u
out=${1:?OUTDIR}; plan=${2:?"LLM:BUDGET_S ..."}; shift 2
exec bash "$(dirname "$0")/measure-llms.sh" "$out" "$plan" \
  --decode-attention ragged --batch-sizes 1,8,32 --points 12 --holdout 3 \
  --max-input-tokens 4096 --max-output-tokens 1024 \
  --repeats 1 --idle-seconds 3 --min-window-s 1.0 "$@"
