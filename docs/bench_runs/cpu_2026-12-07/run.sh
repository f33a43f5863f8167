#!/bin/bash
cd /work/main
for i in 1 2 3; do
  .venv/bin/python benchmarks/train.py --steps 7 --json /tmp/bench_dec07/train_r$i.json > /tmp/bench_dec07/train_r$i.txt 2>&1
  .venv/bin/python benchmarks/train.py --stage global --res 256x128 --ngf 64 --ndf 64 --precision fp32,bf16 --json /tmp/bench_dec07/widths_r$i.json > /tmp/bench_dec07/widths_r$i.txt 2>&1
  .venv/bin/python benchmarks/synthesis.py --json /tmp/bench_dec07/synthesis_r$i.json > /tmp/bench_dec07/synthesis_r$i.txt 2>&1
  echo "round $i done $(date +%T)" >> /tmp/bench_dec07/progress.txt
done
