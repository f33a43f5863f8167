#!/usr/bin/env python3
"""Train pix2pixHD: ``python train_hd.py --stage global|local|finetune [options]``.

  global    GlobalGenerator at the lower resolution, 2-scale discriminator
  local     LocalEnhancer at full resolution; --load_pretrain DIR takes the global stage's G (its
            final conv dropped) and D scales; only the enhancer trains for --niter_fix_global epochs
  finetune  everything jointly from a local-stage checkpoint (--load_pretrain DIR)

Single process: ``python train_hd.py ...``; many GPUs or nodes: ``torchrun --nproc_per_node=N
train_hd.py ...`` (DDP; rank 0 logs and saves). ``--resume`` continues a run exactly.
"""
import signal
import sys

# A SIGTERM or SIGINT while torch imports (a second or more) is held, then ends the start-up as
# one that arrives later does (exit status 75 or 130, one line), not with 143 or a traceback.
_held: list[int] = []
_previous = {s: signal.signal(s, lambda signum, frame: _held.append(signum))
             for s in (signal.SIGTERM, signal.SIGINT)
             if signal.getsignal(s) is not signal.SIG_IGN}   # one ignored (nohup, `&`) stays ignored

from pix2pixhd.cli import train_main  # noqa: E402
from pix2pixhd.errors import run  # noqa: E402

if __name__ == "__main__":
    for s, handler in _previous.items():
        signal.signal(s, handler)
    sys.exit(run(lambda argv: train_main(argv, held=_held)))
