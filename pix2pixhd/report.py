"""A results page (label | synthesized | real) and the plain L1/PSNR of a synthesized folder.

The full evaluation (SSIM, FID, KID, segmentation score) is ``pix2pixhd.evaluate``; this is the
quick check the main job prints, with no dependency beyond numpy.
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from pix2pixhd.checkpoint import atomic_write_bytes
from pix2pixhd.errors import InputError
from pix2pixhd.visualizer import label_colormap

_EXTS = (".png", ".jpg", ".jpeg")


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in _EXTS}


def compare_folders(fake_dir: Path, real_dir: Path) -> dict:
    """Mean L1 (on [0, 1] pixels) and pooled PSNR over images matched by stem.

    Pooled PSNR is 10·log10(1 / mean MSE over all images) — not the mean of per-image PSNRs that
    ``pix2pixhd.evaluate`` reports; the keys say which.
    """
    fakes, reals = _index(fake_dir), _index(real_dir)
    common = sorted(set(fakes) & set(reals))
    if not common:
        raise InputError(f"no file stems in common between {fake_dir} and {real_dir}")
    l1, mse = [], []
    for stem in common:
        a = np.asarray(Image.open(fakes[stem]).convert("RGB"), dtype=np.float64) / 255
        b = np.asarray(Image.open(reals[stem]).convert("RGB"), dtype=np.float64) / 255
        if a.shape != b.shape:
            raise InputError(f"{fakes[stem]} is {a.shape[:2]} but {reals[stem]} is {b.shape[:2]}")
        l1.append(np.abs(a - b).mean())
        mse.append(((a - b) ** 2).mean())
    m = float(np.mean(mse))
    return {"n": len(common), "l1": float(np.mean(l1)),
            "pooled_psnr": float("inf") if m == 0 else 10 * math.log10(1.0 / m)}


def write_comparison_page(fake_dir: Path, label_dir: Path, real_dir: Path, label_nc: int,
                          stats: dict | None = None, max_rows: int = 50) -> Path:
    """``fake_dir/index.html``: one row per image, label (coloured) | synthesized | real."""
    fake_dir = Path(fake_dir)
    fakes, labels, reals = _index(fake_dir), _index(label_dir), _index(real_dir)
    vis_dir = fake_dir / "labels_vis"
    vis_dir.mkdir(exist_ok=True)
    cmap = np.concatenate([label_colormap(max(label_nc, 1)), [[255, 255, 255]]]).astype(np.uint8)
    rows = []
    for stem in sorted(fakes)[:max_rows]:
        cells = []
        if stem in labels:
            lab = np.asarray(Image.open(labels[stem]))
            if label_nc > 0 and lab.ndim == 2:
                Image.fromarray(cmap[np.clip(lab, 0, label_nc)]).save(vis_dir / f"{stem}.png")
            else:
                Image.open(labels[stem]).convert("RGB").save(vis_dir / f"{stem}.png")
            cells.append(f"labels_vis/{stem}.png")
        cells.append(fakes[stem].name)
        if stem in reals:
            cells.append(Path(os.path.relpath(reals[stem].resolve(), fake_dir.resolve())).as_posix())
        rows.append("<tr><td>" + html.escape(stem) + "</td>" + "".join(
            f'<td><img src="{html.escape(c)}" width="256"></td>' for c in cells) + "</tr>")
    summary = ""
    if stats:
        summary = f"<p>{stats['n']} images: L1 {stats['l1']:.4f}, pooled PSNR {stats['pooled_psnr']:.2f} dB</p>"
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthesis</title></head><body>"
            f"<h1>label | synthesized | real</h1>{summary}<table>{''.join(rows)}</table></body></html>")
    path = fake_dir / "index.html"
    atomic_write_bytes(path, page.encode())
    return path
