"""What a synthesis job is (:class:`SynthesisJob`), in a module that imports no torch: synthesize.py's
parser takes its options' defaults from the dataclass's fields, and ``--help`` or a mistyped option
should not wait seconds for torch. :mod:`pix2pixhd.engine` runs the job (and re-exports the class)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SynthesisJob:
    """What to synthesize and where. Exactly one of ``input`` (a folder of maps) and
    ``dataroot`` (a dataset root, with ``phase``) is set.

    inst / real: folders matched by stem to ``input``'s maps (instance maps; real photos, which
    ``--feature_mode encoded`` encodes and the results page compares against).
    out_phase: the split name of the output dataset (default: ``phase``).
    workers: decoding processes (0: in the main thread); writers: encoding/writing threads.
    validate: how a dataset root is checked before any work ('full', 'headers', 'off').
    direction: for an unaligned (CycleGAN) dataset root, 'BtoA' reads domain B's images.
    overwrite: replace another job's outputs in ``out`` instead of refusing.
    scale_width: resize every input to this width first (height by its aspect ratio), as
    training's ``resize_or_crop scale_width`` does: label and instance maps nearest, photos
    bicubic; the output dataset holds the resized maps. 0: maps keep their size.
    command: the command line that resumes the job, recorded in synthesis.json for the message
    on an incomplete folder; None: sys.argv when it is synthesize.py's (else none is recorded).
    strict: an input skipped (unreadable, ids out of range...) makes the job raise
    ``pix2pixhd.engine.InputsSkippedError`` (synthesize.py --strict: exit status 65) once it has
    gone through every input; the outputs written are kept and synthesis.json marks the job
    complete, as without it. Not part of the job's identity: a rerun with or without it resumes.
    """
    out: Path
    input: Path | None = None
    inst: Path | None = None
    real: Path | None = None
    dataroot: Path | None = None
    phase: str = "test"
    out_phase: str | None = None
    num_samples: int = 1
    seed: int = 0
    batch_size: int = 4
    how_many: int = 0
    workers: int = 2
    writers: int = 2
    validate: str = "headers"
    direction: str | None = None
    overwrite: bool = False
    progress: bool = True
    scale_width: int = 0
    command: str | None = None
    strict: bool = False

    def __post_init__(self):   # '~' in a path (--out=~/x, quoted or from a script) is the home folder
        for name in ("out", "input", "inst", "real", "dataroot"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)) and os.fspath(value).startswith("~"):
                setattr(self, name, Path(os.path.expanduser(value)))

    @property
    def split(self) -> str:
        return self.out_phase or self.phase
