"""Convert pix2pix-layout CMP Facades into the project's Cityscapes layout.

Input: ``SRC/{train,val,test}/*.jpg``, each the photo | colour label map side by side (the label
is the B half, so label->photo is pix2pix's ``BtoA``). Output: ``OUT/{split}_label/N.png`` (uint8
ids 0..11, the nearest colour of the 12-colour palette in ``../shared/data/facades/README.md``),
``OUT/{split}_img/N.png`` (the photo half, lossless) and ``OUT/classes.json``. No instance maps:
train with ``no_instance``. A label half that is not a facades colour map (the photo half: the
wrong ``--direction``) is refused, naming the file. ``--holdout K`` moves K training images into a
split of their own, since the shared copy ships ``train/`` only: the last K in numeric order, or with
``--holdout_seed S`` K images drawn by a permutation seeded with S (the same K for the same S,
whatever order the folder lists them in). ``classes.json`` records which stems went where.
A rerun into the same OUT replaces the split folders it wrote before (none of the earlier run's
images stays behind); a non-empty OUT that this tool did not write is refused, untouched.

    python -m pix2pixhd.datasets.convert_facades --src ../shared/data/facades --out data/facades \
        --holdout 40
The images stay wherever OUT is; never commit them (the data has no redistribution licence).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from pix2pixhd.data.layouts import FACADES_PALETTE, PALETTE_MIN_NEAR, decode_palette, list_images, palette_fit
from pix2pixhd.datasets.synthetic_streets import foreign_entries, prepare_output, writing
from pix2pixhd.errors import ConfigError, InputError, MissingInputError
from pix2pixhd.paths import check_name

TOOL = "pix2pixhd.datasets.convert_facades"   # classes.json's "written_by": the folder is ours
FACADES_CLASS_NAMES = ("facade", "molding", "cornice", "pillar", "window", "door", "sill",
                       "blind", "balcony", "shop", "deco", "background")


def _numeric_key(p: Path):
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def _written_here(meta: dict) -> bool:
    """classes.json written by this tool (``written_by``, or earlier versions' name + stems)."""
    return meta.get("written_by") == TOOL or ("written_by" not in meta and
                                              meta.get("name") == "facades" and "stems" in meta)


def _split_folders(splits) -> list[str]:
    return [f"{s}_{k}" for s in splits for k in ("label", "img")]


def _foreign(out: Path, meta: dict) -> list[str]:
    """What in ``out`` (whose classes.json names this tool) this tool did not write
    (:func:`~pix2pixhd.datasets.synthetic_streets.foreign_entries`): the recorded splits' folders
    hold only the recorded stems' PNGs (a conversion stopped halfway wrote a subset of them)."""
    stems = meta.get("stems") if isinstance(meta.get("stems"), dict) else {}
    names = {split: {f"{stem}.png" for stem in v} for split, v in stems.items()}
    return foreign_entries(out, meta, _split_folders(stems),
                           lambda folder, f: f.name in names[folder.name.rsplit("_", 1)[0]])


def holdout_stems(files: list[Path], k: int, seed: int | None) -> set[str]:
    """The stems of the ``k`` files held out: the last k (numeric order), or k drawn by a
    permutation seeded with ``seed`` over the numerically sorted list."""
    files = sorted(files, key=_numeric_key)
    if seed is None:
        return {p.stem for p in files[len(files) - k:]}
    order = np.random.default_rng(seed).permutation(len(files))
    return {files[i].stem for i in order[:k]}


def _halves(path: Path, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(photo, colour label map) halves of the AB image ``path``. A label half that is not a
    facades colour map (see ``layouts.PALETTE_MIN_NEAR``: a photo, the other --direction's half)
    is refused: nearest-colour decoding would turn it into a label map of a few ids."""
    try:
        with Image.open(path) as im:
            ab = np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:   # empty, truncated, not an image
        raise InputError(f"{path} cannot be read as an image ({type(e).__name__}: {e}); remove it or "
                         "replace it with the pix2pix facades file (photo | colour label map)") from e
    w2 = ab.shape[1] // 2
    a, b = ab[:, :w2], ab[:, w2:2 * w2]
    photo, colours = (a, b) if direction == "BtoA" else (b, a)
    fit = palette_fit(colours, np.asarray(FACADES_PALETTE, np.int32))
    if fit < PALETTE_MIN_NEAR:
        half, other = ("right", "AtoB") if direction == "BtoA" else ("left", "BtoA")
        raise InputError(f"{path}: only {fit:.0%} of the pixels of its {half} half (the label map with "
                         f"--direction {direction}) are near a facades palette colour (a colour label "
                         f"map has {PALETTE_MIN_NEAR:.0%} at least): it is not a label map; is it the "
                         f"photo? pass --direction {other}")
    return photo, colours


def convert(src, out, *, holdout: int = 0, holdout_split: str = "test",
            holdout_seed: int | None = None, direction: str = "BtoA",
            limit: int | None = None) -> dict:
    """Convert every split found under ``src``; returns {split: n_images}. The split folders of
    an earlier conversion into ``out`` are replaced; a non-empty ``out`` this tool did not write
    is refused (see :func:`~pix2pixhd.datasets.synthetic_streets.prepare_output`)."""
    src, out = Path(src), Path(out)
    if direction not in ("AtoB", "BtoA"):
        raise ConfigError(f"direction={direction!r}; expected 'AtoB' or 'BtoA'")
    if holdout < 0:
        raise ConfigError(f"--holdout {holdout}: must be 0 or more (how many training images to hold "
                          "out; 0: none)")
    if holdout_seed is not None and holdout_seed < 0:
        raise ConfigError(f"--holdout_seed {holdout_seed}: must be 0 or more (a permutation seed)")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be 1 or more (images per split); leave it out to "
                          "convert all")
    splits = {s: sorted(list_images(src / s), key=_numeric_key)
              for s in ("train", "val", "test") if (src / s).is_dir()}
    if not splits:
        raise MissingInputError(f"{src} has none of train/ val/ test/ with AB images; point --src "
                                f"at the pix2pix facades folder (e.g. ../shared/data/facades)")
    if holdout:
        check_name(holdout_split, "--holdout_split", out)   # {split}_label must stay inside out
        if holdout_split in splits:
            raise ConfigError(f"--holdout would add to the existing split {holdout_split!r} of "
                             f"{src}; pick another --holdout_split")
        if holdout >= len(splits.get("train", [])):
            raise ConfigError(f"--holdout {holdout} leaves no training images "
                             f"({len(splits.get('train', []))} in {src / 'train'})")
        held = holdout_stems(splits["train"], holdout, holdout_seed)
        splits[holdout_split] = [p for p in splits["train"] if p.stem in held]
        splits["train"] = [p for p in splits["train"] if p.stem not in held]
    palette = np.asarray(FACADES_PALETTE, np.int32)
    splits = {s: files[:limit] if limit is not None else files for s, files in splits.items()}
    counts = {s: len(files) for s, files in splits.items()}
    stems = {s: [p.stem for p in files] for s, files in splits.items()}
    for files in splits.values():   # a wrong --direction, or one file whose label half is not a
        for p in files:              # label map, is refused before anything (an earlier conversion) goes
            _halves(p, direction)
    meta = {"name": "facades", "written_by": TOOL, "folder": str(out.resolve()), "label_nc": len(FACADES_PALETTE),
            "palette": [list(c) for c in FACADES_PALETTE],
            "classes": [{"id": i, "colour": list(c)} for i, c in enumerate(FACADES_PALETTE)],
            "class_names_unordered": list(FACADES_CLASS_NAMES),
            "note": "ids follow the README's colour order; the README does not say which colour "
                    "is which class", "source": str(src), "splits": counts,
            "holdout": {"split": holdout_split, "n": holdout, "seed": holdout_seed} if holdout else None,
            "stems": stems}
    with writing("convert_facades", out):
        # this run's splits and every split the earlier conversion recorded (another --holdout_split)
        prepare_output(out, "convert_facades", _written_here,
                       lambda old: _split_folders(dict.fromkeys([*splits, *old.get("splits", {}),
                                                                 *old.get("stems", {})])), _foreign)
        # marked ours before any image is written, so a run stopped halfway is replaced, not refused
        out.mkdir(parents=True, exist_ok=True)
        (out / "classes.json").write_text(json.dumps({**meta, "complete": False}, indent=1) + "\n")
        for split, files in splits.items():
            (out / f"{split}_label").mkdir(parents=True, exist_ok=True)
            (out / f"{split}_img").mkdir(parents=True, exist_ok=True)
            for p in files:
                photo, colours = _halves(p, direction)
                ids = decode_palette(colours, palette)
                Image.fromarray(ids, "L").save(out / f"{split}_label" / f"{p.stem}.png")
                Image.fromarray(np.ascontiguousarray(photo), "RGB").save(out / f"{split}_img" /
                                                                          f"{p.stem}.png")
        meta["complete"] = True
        (out / "classes.json").write_text(json.dumps(meta, indent=1) + "\n")
    return counts


def build_parser() -> argparse.ArgumentParser:
    """``python -m pix2pixhd.datasets.convert_facades``'s parser."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser("python -m pix2pixhd.datasets.convert_facades", __doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="pix2pix facades folder with train/ (val/ test/)")
    from pix2pixhd.errors import add_debug_option
    add_debug_option(p)
    p.add_argument("--out", required=True, help="output folder (Cityscapes layout)")
    p.add_argument("--holdout", type=int, default=0, help="last K train images form a new split")
    p.add_argument("--holdout_split", default="test", help="name of the split the held-out images form")
    p.add_argument("--holdout_seed", type=int, default=None,
                   help="draw the held-out images by a permutation seeded with this (default: the last K)")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="BtoA",
                   help="BtoA: the label map is the right half (pix2pix facades)")
    p.add_argument("--limit", type=int, default=None, help="convert at most N images per split (default: all)")
    return p


def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    counts = convert(a.src, a.out, holdout=a.holdout, holdout_split=a.holdout_split,
                     holdout_seed=a.holdout_seed, direction=a.direction, limit=a.limit)
    print(f"wrote {counts} to {a.out} (label_nc={len(FACADES_PALETTE)}, no instance maps)")


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))
