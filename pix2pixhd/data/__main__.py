"""``python -m pix2pixhd.data scan DIR``: check every split of a dataset and print a summary.

For each split found (``*_label``, ``*_A``, CycleGAN's ``{phase}A`` + ``{phase}B`` or pix2pix
``{phase}/`` folders): the layout, the
number of samples, the image sizes, the ids present with their pixel frequencies, the instance
count, every problem validation would raise on (first few per kind, with counts) and every entry
of the split's folders that is not used as a sample (other files, sub-folders).
Exit status 1 when any split has problems (entries not used alone do not count).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pix2pixhd.argparsing import add_command, make_parser
from pix2pixhd.data.dataset import (DatasetError, create_dataset, fatal_problems, format_problems,
                                    scan)
from pix2pixhd.data.layouts import (LONE_DOMAIN_PHASES, _unaligned_phase, find_phases,  # noqa: F401
                                    read_classes)


def data_parser() -> argparse.ArgumentParser:
    """``python -m pix2pixhd.data``'s parser (its ``scan`` command: :func:`scan_parser`)."""
    p = make_parser("python -m pix2pixhd.data", __doc__.split("\n\n")[0])
    from pix2pixhd.errors import add_debug_option
    add_debug_option(p)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = add_command(sub, "scan", help="validate a dataset and print statistics")
    s.add_argument("dataroot", help="the dataset root: its splits' folders ({phase}_label/, {phase}_A/, "
                   "{phase}A/, {phase}/ ...) are found there")
    s.add_argument("--label_nc", type=int, default=None,
                   help="number of classes (not given: classes.json's, else 0 for RGB layouts, "
                        "else 256 to report the ids found)")
    s.add_argument("--no_instance", action="store_true",
                   help="do not read {phase}_inst/ even where it exists (as train_hd.py --no_instance)")
    s.add_argument("--load_features", action="store_true",
                   help="check the precomputed feature maps in {phase}_feat/ too")
    s.add_argument("--palette", default=None,
                   help="how colour label maps decode to ids: 'facades' (CMP Facades' 12 colours) or a "
                        "JSON file of [r, g, b] colours; not given: label maps are id maps")
    s.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                   help="which half of a pix2pix AB image (or which CycleGAN domain) is the input")
    from pix2pixhd.data.transforms import MODES
    s.add_argument("--resize_or_crop", default="none", choices=MODES,
                   help="the training resize, to check that every sample comes out a multiple of "
                        "--required_multiple")
    s.add_argument("--loadSize", type=int, default=1024, help="the training --loadSize (pixels)")
    s.add_argument("--fineSize", type=int, default=512, help="the training --fineSize (pixels)")
    s.add_argument("--required_multiple", type=int, default=1,
                   help="what the generator needs each side to divide by (pix2pixHD: 2^(downsamplings"
                        " + local enhancers); 1: no check)")
    s.add_argument("--level", default="full", choices=("full", "headers"),
                   help="full: decode every pixel (ids, truncated files); headers: sizes and modes only")
    s.add_argument("--max_listed", type=int, default=5,
                   help="files listed per kind of problem (the rest are counted)")
    return p


def scan_parser() -> argparse.ArgumentParser:
    """The ``scan`` command's own parser (its options)."""
    sub = next(a for a in data_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["scan"]


def main(argv=None) -> int:
    a = data_parser().parse_args(argv)

    root = Path(a.dataroot)
    if not root.is_dir():
        from pix2pixhd.errors import MissingInputError
        raise MissingInputError(f"{root} is not a folder{'' if root.exists() else ' (it does not exist)'}: "
                                "give the dataset root (the folder holding train_label/, train_A/, "
                                "trainA/ or train/)" + ("" if root.exists() else ", or make one with "
                                f"python -m pix2pixhd.datasets.synthetic_streets --out {root}"))
    label_nc = a.label_nc
    if label_nc is None:
        try:
            classes = read_classes(root)
        except DatasetError:
            classes = None   # each split's scan reports the unreadable file
        if classes is not None:
            label_nc = (classes.label_nc if classes.label_nc is not None else
                        max(classes.ids) + 1 if classes.ids else None)
    phases = find_phases(root)
    if not phases:
        print(f"{root}: no splits found (expected *_label/, *_A/ or pix2pix phase folders)")
        return 1
    bad = False
    for phase in phases:
        rgb = ((root / f"{phase}_A").is_dir() or (root / f"{phase}A").is_dir()
               or (root / f"{phase}B").is_dir() or ((root / phase).is_dir() and a.palette is None))
        nc = label_nc if label_nc is not None else (0 if rgb else 256)
        no_inst = a.no_instance or not (root / f"{phase}_inst").is_dir()
        # A split other than train may hold the generator's inputs alone: label maps without
        # photos, or one domain of CycleGAN's layout. Synthesis reads them; training could not.
        lone = [d for d in "AB" if (root / f"{phase}{d}").is_dir()]
        lone = lone[0] if len(lone) == 1 and not (root / f"{phase}_label").is_dir() \
            and not (root / f"{phase}_A").is_dir() else None
        photos = next((f"{phase}{out}" for inp, out in (("_label", "_img"), ("_A", "_B"))
                       if (root / f"{phase}{inp}").is_dir()), None)   # the photos' folder
        no_photos = photos is not None and not (root / photos).is_dir()
        inputs_only = phase != "train" and (lone is not None or no_photos)
        try:
            ds = create_dataset(root, phase, label_nc=nc, no_instance=no_inst,
                                load_features=a.load_features, resize_or_crop=a.resize_or_crop,
                                loadSize=a.loadSize, fineSize=a.fineSize, direction=a.direction,
                                palette=a.palette, required_multiple=a.required_multiple,
                                validate="off", inputs_only=inputs_only,
                                **(dict(dataset_mode="unaligned") if lone else {}))
        except DatasetError as e:
            print(f"[{phase}] {e}")
            bad = True
            continue
        problems, st = scan(ds, a.level)
        count = (f"{st['n']} A + {st['n_B']} B images (unpaired)" if "n_B" in st else
                 f"{st['n']} samples")
        print(f"[{phase}] {ds.mode} layout, {count}, label_nc={nc}"
              + ("" if no_inst else f", {st['instances']} instance ids over all images"))
        if inputs_only and lone:
            other = "B" if lone == "A" else "A"
            print(f"  only {phase}{lone}/: a CycleGAN translates it (synthesize.py --dataroot {root} "
                  f"--phase {phase} --direction {lone}to{other}); training needs {phase}{other}/ too")
        elif inputs_only:
            print(f"  no {photos}/: the inputs alone, which synthesize.py --dataroot {root} --phase "
                  f"{phase} reads; training and --real comparisons need {photos}/ too")
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in st["sizes"].most_common())
        print(f"  sizes: {sizes or '-'}")
        total = sum(st["ids"].values())
        if total:
            print(f"  ids present: {len(st['ids'])}; pixel frequency:")
            for i, n in sorted(st["ids"].items()):
                print(f"    {i:5d}  {n / total:8.4%}  ({n} px)")
        if problems:
            print("  " + format_problems(problems, ds.describe(), a.max_listed).replace("\n", "\n  "))
        if fatal_problems(problems):
            bad = True
        else:
            print("  no problems")
    return 1 if bad else 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    sys.exit(run(main))
