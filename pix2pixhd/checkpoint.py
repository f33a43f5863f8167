"""Full-state checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is one file holding everything a run needs to continue exactly: G, D, E, both
optimizers, the GradScaler, epoch and iteration, the learning rate, every RNG state, the config
and the package version. ``config.json`` is written beside it. A crash mid-write leaves the
previous file intact: we write ``NAME.tmp`` in the same folder, fsync, then ``os.replace``.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) RNG states, in types weights_only accepts."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(experiment_dir: Path, which: str | int) -> Path:
    which = str(which)
    return Path(experiment_dir) / ("latest.pt" if which == "latest" else f"epoch_{int(which):04d}.pt")


def save_checkpoint(state: dict, experiment_dir: Path, which: str | int, config_json: str) -> Path:
    path = checkpoint_path(experiment_dir, which)
    atomic_torch_save(state, path)
    atomic_write_bytes(Path(experiment_dir) / "config.json", config_json.encode())
    return path


def load_checkpoint(experiment_dir: str | os.PathLike, which: str | int = "latest",
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``experiment_dir`` may be the file)."""
    p = Path(experiment_dir)
    path = p if p.is_file() else checkpoint_path(p, which)
    if not path.is_file():
        have = sorted(x.name for x in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"no checkpoint {path}; that folder holds {have or 'no checkpoints'}"
                                " (pass --which_epoch latest or one of those epochs)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"{path} could not be read ({e}); it may be truncated — use an older "
                           "epoch_*.pt with --which_epoch") from e


def read_config_json(experiment_dir: str | os.PathLike) -> dict:
    return json.loads((Path(experiment_dir) / "config.json").read_text())
