#!/usr/bin/env python3
"""Train pix2pixHD: ``python train_hd.py --stage global|local|finetune [options]``.

  global    GlobalGenerator at the lower resolution, 2-scale discriminator
  local     LocalEnhancer at full resolution; --load_pretrain DIR takes the global stage's G (its
            final conv dropped) and D scales; only the enhancer trains for --niter_fix_global epochs
  finetune  everything jointly from a local-stage checkpoint (--load_pretrain DIR)

Single process: ``python train_hd.py ...``; many GPUs or nodes: ``torchrun --nproc_per_node=N
train_hd.py ...`` (DDP; rank 0 logs and saves). ``--resume`` continues a run exactly.
"""
import sys

# The start (a SIGTERM or SIGINT before training ends it in one line, status 75 or 130) is
# pix2pixhd.launch's, shared with the installed pix2pixhd-train and `python -m pix2pixhd train`.
from pix2pixhd.launch import train

if __name__ == "__main__":
    sys.exit(train())
