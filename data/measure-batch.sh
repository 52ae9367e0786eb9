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
exec bash "$(dirname "$0")/measure-llms.sh" "$out" "$plan" \
  --batch-sizes 1,8,32,64,128 --points 12 --holdout 3 --max-input-tokens 2048 --max-output-tokens 512 \
  --repeats 1 --idle-seconds 3 --min-window-s 1.0 "$@"
