"""A results page and a sample-sheet PNG (label | synthesized | real), and the plain L1/PSNR of
a synthesized folder.

The full evaluation (SSIM, FID, KID, segmentation score) is ``pix2pixhd.evaluate``; this is the
quick check the main job prints, with no dependency beyond numpy. Files pair by stem with
Cityscapes' suffixes removed (``pix2pixhd.data.layouts.index_images``), as the data module pairs
them. Links on the page are URL-encoded, so file names with ``#``, ``?`` or ``%`` still show.
"""
from __future__ import annotations

import html
import io
import math
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from pix2pixhd.checkpoint import atomic_write_bytes
from pix2pixhd.data.layouts import index_images
from pix2pixhd.errors import InputError
from pix2pixhd.visualizer import label_colormap


def _href(path: str) -> str:
    """A relative file path as an HTML attribute value: URL-encoded (``#`` would start a fragment,
    ``?`` a query, ``%`` an escape), then HTML-escaped."""
    return html.escape(quote(path, safe="/"), quote=True)


def compare_folders(fake_dir: Path, real_dir: Path, *, resize_real: bool = False) -> dict:
    """Mean L1 (on [0, 1] pixels) and pooled PSNR over images matched by stem.

    Pooled PSNR is 10·log10(1 / mean MSE over all images) — not the mean of per-image PSNRs that
    ``pix2pixhd.evaluate`` reports; the keys say which. ``resize_real``: a real photo of another
    size is resized (bicubic) to its synthesized photo's (synthesis with --scale_width);
    otherwise sizes must agree.
    """
    fakes, reals = index_images(fake_dir), index_images(real_dir)
    common = sorted(set(fakes) & set(reals))
    if not common:
        raise InputError(f"no file stems in common between {fake_dir} and {real_dir}")
    l1, mse = [], []
    for stem in common:
        fake = Image.open(fakes[stem]).convert("RGB")
        real = Image.open(reals[stem]).convert("RGB")
        if resize_real and real.size != fake.size:
            real = real.resize(fake.size, Image.BICUBIC)
        a = np.asarray(fake, dtype=np.float64) / 255
        b = np.asarray(real, dtype=np.float64) / 255
        if a.shape != b.shape:
            raise InputError(f"{fakes[stem]} is {a.shape[:2]} but {reals[stem]} is {b.shape[:2]}")
        l1.append(np.abs(a - b).mean())
        mse.append(((a - b) ** 2).mean())
    m = float(np.mean(mse))
    return {"n": len(common), "l1": float(np.mean(l1)),
            "pooled_psnr": float("inf") if m == 0 else 10 * math.log10(1.0 / m)}


def write_comparison_page(fake_dir: Path, label_dir: Path, real_dir: Path, label_nc: int,
                          stats: dict | None = None, max_rows: int = 50,
                          page_dir: Path | None = None) -> Path:
    """``page_dir/index.html`` (default ``fake_dir``): one row per image, label (coloured) |
    synthesized | real. The coloured labels go to ``page_dir/index_files/`` (a folder name the
    data module's split detection skips, so a synthesized dataset stays scannable)."""
    from pix2pixhd.synthesis import png_bytes
    fake_dir = Path(fake_dir)
    page_dir = Path(page_dir) if page_dir is not None else fake_dir
    fakes, labels, reals = index_images(fake_dir), index_images(label_dir), index_images(real_dir)
    vis_dir = page_dir / "index_files"
    vis_dir.mkdir(parents=True, exist_ok=True)
    cmap = np.concatenate([label_colormap(max(label_nc, 1)), [[255, 255, 255]]]).astype(np.uint8)

    def rel(p: Path) -> str:
        return Path(os.path.relpath(Path(p).resolve(), page_dir.resolve())).as_posix()

    rows = []
    for i, stem in enumerate(sorted(fakes)[:max_rows]):
        cells = []
        if stem in labels:
            lab = np.asarray(Image.open(labels[stem]))
            vis = vis_dir / f"label_{i:04d}.png"   # a plain name: the stem may hold any character
            if label_nc > 0 and lab.ndim == 2:
                atomic_write_bytes(vis, png_bytes(cmap[np.clip(lab, 0, label_nc)]))
            else:
                atomic_write_bytes(vis, png_bytes(np.asarray(Image.open(labels[stem]).convert("RGB"))))
            cells.append(rel(vis))
        else:
            cells.append(None)   # an empty cell keeps the columns label | synthesized | real
        cells.append(rel(fakes[stem]))
        cells.append(rel(reals[stem]) if stem in reals else None)
        rows.append("<tr><td>" + html.escape(stem) + "</td>" + "".join(
            f'<td><img src="{_href(c)}" width="256"></td>' if c is not None else "<td></td>"
            for c in cells) + "</tr>")
    summary = ""
    if stats:
        summary = f"<p>{stats['n']} images: L1 {stats['l1']:.4f}, pooled PSNR {stats['pooled_psnr']:.2f} dB</p>"
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthesis</title></head><body>"
            f"<h1>{'label | synthesized | real' if label_nc > 0 else 'input | synthesized | target'}</h1>{summary}<table>{''.join(rows)}</table></body></html>")
    path = page_dir / "index.html"
    atomic_write_bytes(path, page.encode())
    return path



TITLE_HEIGHT = 14   # pixels of the line of column titles above a grid


def write_image_grid(rows: list[list], path: Path, *, titles: tuple[str, ...] = (), gap: int = 0,
                     colors: int | None = None, optimize: bool = False) -> Path:
    """A PNG of ``rows`` of equally sized RGB cells (PIL images or uint8 [H, W, 3] arrays): the
    cells of a row side by side, the rows one under the other, ``gap`` white pixels between
    columns and after every row; ``titles`` puts a line of column titles above. ``colors``
    reduces it to that many colours (median cut, no dithering), ``None`` keeps every pixel;
    ``optimize``: Pillow's slower, smaller PNG encoding.
    Written to a temporary file and renamed, so a reader never sees half a PNG."""
    cells = [[c if isinstance(c, Image.Image) else Image.fromarray(np.asarray(c)) for c in row]
             for row in rows]
    if not cells or not cells[0]:
        raise ValueError(f"{path}: no images to put in the grid")
    w, h = cells[0][0].size
    ncol = max(len(row) for row in cells)
    odd = [c.size for row in cells for c in row if c.size != (w, h)]
    if odd:
        raise ValueError(f"{path}: every cell must be {w}x{h} like the first, got {odd[0][0]}x{odd[0][1]}; "
                         f"resize them first")
    top = TITLE_HEIGHT if titles else 0
    sheet = Image.new("RGB", (ncol * w + (ncol - 1) * gap, top + len(cells) * (h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(titles):
        draw.text((j * (w + gap) + 2, 1), name, fill=(0, 0, 0))
    for i, row in enumerate(cells):
        for j, im in enumerate(row):
            sheet.paste(im, (j * (w + gap), top + i * (h + gap)))
    if colors is not None:
        sheet = sheet.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=optimize)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
