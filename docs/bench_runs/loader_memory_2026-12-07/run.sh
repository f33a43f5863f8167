#!/bin/bash
cd /work/main
for rep in 1 2; do
for args in "--n 10000 --batches 200" "--n 10000 --batches 2500" "--n 100000 --batches 200" "--n 100000 --batches 25000"; do
  echo "\$ OMP_NUM_THREADS=1 python3 benchmarks/loader_memory.py $args --data /tmp/loader_memory   # rep $rep, $(date -u +%H:%M:%S)"
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/loader_memory.py $args --data /tmp/loader_memory
  echo "rc=$? end $(date -u +%H:%M:%S)"
done; done
