"""``python -m pix2pixhd.data scan DIR``: check every split of a dataset and print a summary.

For each split found (``*_label``, ``*_A``, CycleGAN's ``{phase}A`` + ``{phase}B`` or pix2pix
``{phase}/`` folders): the layout, the
number of samples, the image sizes, the ids present with their pixel frequencies, the instance
count, every problem validation would raise on (first few per kind, with counts), every entry
of the split's folders that is not used as a sample (other files, sub-folders), and a line when
the split is a synthesize.py job that has not finished (a problem).
Sizes are checked as train_hd.py reads them, with the size options given (``--resize_or_crop``,
``--loadSize``, ``--fineSize``, ``--batchSize``, the generator's multiple), else train_hd.py's
defaults (``--model``'s; not given: cyclegan's for the unaligned layout, pix2pix's for the aligned
one, else pix2pixhd's); a split whose name lacks 'train', with no size option given, as
synthesize.py reads it (whole, any size). Each split's output says which. Read as training
reads it, a split of label maps needs ``{phase}_inst/`` unless ``--no_instance`` (or
``--model``'s default) says otherwise, and a ``--model`` given must be able to train on the
split's layout (pix2pix and pix2pixhd on pairs, cyclegan on the unaligned layout). ``--direction BtoA`` makes ``{phase}_B/`` the input of the
rgb_pairs layout (and ``{phase}B/`` domain A of the unaligned one).
Exit status 1 when any split has problems (entries not used alone do not count).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pix2pixhd.argparsing import add_command, make_parser
from pix2pixhd.config import DataConfig
from pix2pixhd.data.dataset import (DatasetError, check_batch_sizes, create_dataset, fatal_problems,
                                    format_problems, incomplete_synthesis, scan)
from pix2pixhd.data.layouts import (LONE_DOMAIN_PHASES, _unaligned_phase, detect_mode,  # noqa: F401
                                    find_phases, read_classes, rename_hint)


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
                   help="do not read {phase}_inst/ even where it exists (as train_hd.py --no_instance); "
                        "without it a split of label maps read as training reads it needs "
                        "{phase}_inst/ (pix2pixhd's default)")
    s.add_argument("--load_features", action="store_true",
                   help="check the precomputed feature maps in {phase}_feat/ too")
    s.add_argument("--palette", default=None,
                   help="how colour label maps decode to ids: 'facades' (CMP Facades' 12 colours) or a "
                        "JSON file of [r, g, b] colours; not given: label maps are id maps")
    s.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                   help="which half of a pix2pix AB image (or of {phase}_A/ + {phase}_B/, or which "
                        "CycleGAN domain) is the input")
    from pix2pixhd.config import MODELS, default_config, model_name
    from pix2pixhd.data.transforms import MODES
    hd = default_config("pix2pixhd")   # the defaults below are train_hd.py's
    # read as train_hd.py reads it: NVIDIA's pix2pixHD, the pix2pix/CycleGAN repo's cycle_gan
    s.add_argument("--model", default=None, type=model_name, choices=MODELS,
                   help="the train_hd.py --model whose defaults the options below (and "
                        "--no_instance) take, and whose layout the splits must be (default: "
                        "cyclegan for the unaligned layout, pix2pix for the aligned one, else pix2pixhd)")
    s.add_argument("--resize_or_crop", default=None, choices=MODES,
                   help="the training resize, to check that every sample comes out a multiple of "
                        f"the generator's (default: train_hd.py's, {_default_help('resize_or_crop')})")
    s.add_argument("--loadSize", type=int, default=None,
                   help=f"the training --loadSize (pixels; default: train_hd.py's, {_default_help('loadSize')})")
    s.add_argument("--fineSize", type=int, default=None,
                   help=f"the training --fineSize (pixels; default: train_hd.py's, {_default_help('fineSize')})")
    s.add_argument("--batchSize", type=int, default=None,
                   help="the training --batchSize: above 1, every sample must come out one size "
                        f"(default: train_hd.py's, {_default_help('batchSize')})")
    s.add_argument("--n_downsample_global", type=int, default=None,
                   help=f"pix2pixHD: the generator's downsamplings (default {hd.n_downsample_global}: "
                        f"sides a multiple of {hd.generator_multiple})")
    s.add_argument("--netG", default=None, choices=("global", "local"),
                   help="pix2pixHD: the stage's generator (local: x 2^n_local_enhancers more)")
    s.add_argument("--n_local_enhancers", type=int, default=None,
                   help=f"pix2pixHD: local enhancers (default {hd.n_local_enhancers})")
    s.add_argument("--required_multiple", type=int, default=None,
                   help="what each output side must divide by, in place of the generator's above "
                        "(1: no check)")
    s.add_argument("--level", default="full", choices=("full", "headers"),
                   help="full: decode every pixel (ids, truncated files); headers: sizes and modes only")
    s.add_argument("--max_listed", type=int, default=5,
                   help="files listed per kind of problem (the rest are counted)")
    return p


def scan_parser() -> argparse.ArgumentParser:
    """The ``scan`` command's own parser (its options)."""
    sub = next(a for a in data_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["scan"]


# scan's options that change the size checks (their defaults: train_hd.py's)
SIZE_OPTIONS = ("model", "resize_or_crop", "loadSize", "fineSize", "batchSize", "n_downsample_global",
                "netG", "n_local_enhancers", "required_multiple")


def read_as_training(a: argparse.Namespace, phase: str) -> bool:
    """Whether split ``phase`` is checked as train_hd.py reads it: its name holds 'train', or a
    size option is given; else as synthesize.py reads it."""
    return "train" in phase.lower() or any(getattr(a, k) is not None for k in SIZE_OPTIONS)


def layout_model(a: argparse.Namespace, unaligned: bool, aligned: bool = False) -> str:
    """The train_hd.py --model whose defaults a split is checked with: ``a.model``, else the model
    of the split's layout: cyclegan for the ``unaligned`` one, pix2pix for the ``aligned`` one
    (pix2pix's A|B images, which were checked at pix2pixhd's scale_width 1024/512, sizes no
    pix2pix run reads them at), else pix2pixhd."""
    return a.model or ("cyclegan" if unaligned else "pix2pix" if aligned else "pix2pixhd")


def training_sizes(a: argparse.Namespace, phase: str, unaligned: bool,
                   aligned: bool = False) -> tuple[dict, str]:
    """The size options split ``phase`` is checked with, and the line that says them: ``a``'s,
    else train_hd.py's defaults for :func:`layout_model`'s model; for a split whose name lacks
    'train', with no size option given, synthesize.py's reading (whole, any size). Dict of
    resize_or_crop, loadSize, fineSize, batchSize, required_multiple."""
    if not read_as_training(a, phase):
        return ({"resize_or_crop": "none", "loadSize": 1024, "fineSize": 512, "batchSize": 1,
                 "required_multiple": 1},
                "sizes as synthesize.py reads the split (whole, any size), not as training would: pass "
                "--resize_or_crop/--loadSize/--fineSize/--batchSize (or --model) to check them so")
    from pix2pixhd.config import generator_size_multiple
    model = layout_model(a, unaligned, aligned)
    opt = {k: getattr(a, k) if getattr(a, k) is not None else _model_default(k, model)
           for k in ("resize_or_crop", "loadSize", "fineSize", "batchSize", "n_downsample_global",
                     "n_local_enhancers")}
    g = _model_default("netG_pix2pix", model)
    if a.required_multiple is not None:
        m, why = a.required_multiple, "--required_multiple"
    else:
        m = generator_size_multiple(model, a.netG or "global", opt["n_downsample_global"],
                                    opt["n_local_enhancers"], g)
        why = (f"--netG_pix2pix {g}" if model != "pix2pixhd" else
               f"--n_downsample_global {opt['n_downsample_global']}"
               + (f", --netG local --n_local_enhancers {opt['n_local_enhancers']}" if a.netG == "local"
                  else ", global generator"))
    sizes = {k: opt[k] for k in ("resize_or_crop", "loadSize", "fineSize", "batchSize")}
    line = (f"sizes as train_hd.py --model {model} reads them: "
            + " ".join(f"--{k} {v}" for k, v in sizes.items())
            + f", each side a multiple of {m} ({why}); pass your run's options if they differ")
    return {**sizes, "required_multiple": m}, line


def _model_default(name: str, model: str):
    """train_hd.py's default of option ``name`` for ``--model model``."""
    from pix2pixhd.config import default_config
    return getattr(default_config(model), name)


def _default_help(name: str) -> str:
    """train_hd.py's default of option ``name`` for the help: pix2pixhd's, then '; pix2pix/cyclegan:
    V' for the models whose default differs."""
    from pix2pixhd.config import MODELS
    base, others = _model_default(name, "pix2pixhd"), {}
    for m in MODELS:
        if _model_default(name, m) != base:
            others.setdefault(_model_default(name, m), []).append(m)
    return f"{base}" + "".join(f"; {'/'.join(ms)}: {v}" for v, ms in others.items())


def too_small_for_the_generator(a: argparse.Namespace, ds, source_sizes: dict, unaligned: bool,
                                 aligned: bool = False) -> list:
    """("too small", file, training's own line) for the first file of each source size that comes
    out too small for the generator train_hd.py would build from ``a``'s options
    (models.check_generator_input, as the trainer checks it before the run starts)."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.data.transforms import output_size, size_options
    from pix2pixhd.errors import ConfigError
    from pix2pixhd.models import check_generator_input
    model = layout_model(a, unaligned, aligned)
    given = {k: getattr(a, k) for k in ("n_downsample_global", "n_local_enhancers", "netG")
             if getattr(a, k, None) is not None}
    cfg = TrainConfig(model=model, resize_or_crop=ds.resize_or_crop, loadSize=ds.loadSize,
                      fineSize=ds.fineSize, **given)._filled()
    out, seen = [], set()
    for path, src in source_sizes.items():
        if src in seen:
            continue
        seen.add(src)
        w, h = output_size(*src, ds.resize_or_crop, ds.loadSize, ds.fineSize, ds.required_multiple)
        what = f"{path} ({src[0]}x{src[1]}) with " + " ".join(
            f"--{k} {v}" for k, v in size_options(ds.resize_or_crop, ds.loadSize, ds.fineSize).items())
        try:
            check_generator_input(cfg, w, h, what, output_size(*src, ds.resize_or_crop, ds.loadSize,
                                                                 ds.fineSize, 1))
        except ConfigError as e:
            out.append(("too small", path, str(e)))
    return out


def check_ranges(a: argparse.Namespace) -> None:
    """Refuse (ConfigError, one line) a value train_hd.py refuses for the options scan shares with
    it (TrainConfig's own range checks), and a --required_multiple or --max_listed below range."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.errors import ConfigError
    given = {k: getattr(a, k) for k in ("label_nc", "loadSize", "fineSize", "batchSize",
                                        "n_downsample_global", "n_local_enhancers")
             if getattr(a, k) is not None}
    TrainConfig.check_values(a.model, **given)
    if a.required_multiple is not None and a.required_multiple < 1:
        raise ConfigError(f"--required_multiple {a.required_multiple}: must be >= 1 (what each output "
                          "side must divide by; 1: no check)")
    if a.max_listed < 0:
        raise ConfigError(f"--max_listed {a.max_listed}: must be >= 0 (files listed per kind of problem)")


def main(argv=None) -> int:
    a = data_parser().parse_args(argv)
    check_ranges(a)   # before any folder is read
    a.dataroot = os.path.expanduser(a.dataroot)   # a quoted '~/streets': the shell left the ~
    if a.palette is not None:
        a.palette = os.path.expanduser(a.palette)

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
    if not phases:   # one error line on stderr (errors.run), as the other commands' refusals
        from pix2pixhd.errors import InputError
        hint = rename_hint(root, "train")
        parent = root.parent if root.name not in ("", "..") else root.resolve().parent
        try:   # a split's folder given (D/train_img, D/train_label): the root is its parent
            above = find_phases(parent) if hint is None else []
        except OSError:
            above = []
        fix = (hint if hint else
               f"this looks like a folder of the dataset {parent} (its splits: {', '.join(above)}): pass the "
               f"dataset root, python -m pix2pixhd.data scan {parent}" if above else
               "pass the dataset root (the folder holding train_label/, train_A/, trainA/ or train/)")
        raise InputError(f"{root}: no splits found (expected *_label/, *_A/, CycleGAN's *A/ + *B/ or "
                         f"pix2pix phase folders); {fix}")
    bad = False
    for phase in phases:
        rgb = ((root / f"{phase}_A").is_dir() or (root / f"{phase}A").is_dir()
               or (root / f"{phase}B").is_dir() or ((root / phase).is_dir() and a.palette is None))
        nc = label_nc if label_nc is not None else (0 if rgb else 256)
        # Label maps as train_hd.py reads them: pix2pixHD (no --no_instance) needs {phase}_inst/
        # too; read as synthesize.py reads them, the instance maps are used where there are any.
        needs_inst = ((root / f"{phase}_label").is_dir() and read_as_training(a, phase)
                      and not _model_default("no_instance", a.model or "pix2pixhd"))
        no_inst = a.no_instance or not (needs_inst or (root / f"{phase}_inst").is_dir())
        # A split other than train may hold the generator's inputs alone: label maps without
        # photos, or one domain of CycleGAN's layout. Synthesis reads them; training could not.
        lone = [d for d in "AB" if (root / f"{phase}{d}").is_dir()]
        lone = lone[0] if len(lone) == 1 and not (root / f"{phase}_label").is_dir() \
            and not (root / f"{phase}_A").is_dir() else None
        src, tgt = ("_A", "_B") if a.direction == "AtoB" else ("_B", "_A")   # rgb_pairs: the input's
        photos = next((f"{phase}{out}" for inp, out in (("_label", "_img"), (src, tgt))
                       if (root / f"{phase}{inp}").is_dir()), None)   # the photos' folder
        no_photos = photos is not None and not (root / photos).is_dir()
        inputs_only = phase != "train" and (lone is not None or no_photos)
        unaligned = lone is not None or not any((root / f"{phase}{d}").is_dir() for d in ("_label", "_A")) \
            and (root / f"{phase}A").is_dir() and (root / f"{phase}B").is_dir()
        # pix2pix's A|B images ({phase}/ is there, so detect_mode names a layout, never raises)
        aligned = (not unaligned and (root / phase).is_dir()
                   and detect_mode(root, phase, a.palette) == "aligned")
        opts, sizes_line = training_sizes(a, phase, unaligned, aligned)
        try:
            ds = create_dataset(root, phase, DataConfig(model=a.model), label_nc=nc, no_instance=no_inst,
                                load_features=a.load_features, resize_or_crop=opts["resize_or_crop"],
                                loadSize=opts["loadSize"], fineSize=opts["fineSize"],
                                direction=a.direction, palette=a.palette,
                                required_multiple=opts["required_multiple"], is_train=False,
                                validate="off", report_listing=False, inputs_only=inputs_only, model=a.model,
                                **(dict(dataset_mode="unaligned") if lone else {}))
        except DatasetError as e:
            print(f"[{phase}] {e}")
            bad = True
            continue
        problems, st = scan(ds, a.level)
        if read_as_training(a, phase) and not fatal_problems(problems):
            problems += too_small_for_the_generator(a, ds, st["source_sizes"], unaligned, aligned)
        if opts["batchSize"] > 1 and not inputs_only and not fatal_problems(problems):
            ds.source_sizes = st["source_sizes"]
            try:   # what training checks next: one output size per batch
                check_batch_sizes(ds, opts["batchSize"])
            except DatasetError as e:
                problems.append(("mixed sizes", str(root), str(e)))
        count = (f"{st['n']} A + {st['n_B']} B images (unpaired)" if "n_B" in st else
                 f"{st['n']} samples")
        print(f"[{phase}] {ds.mode} layout, {count}, label_nc={nc}"
              + ("" if no_inst else f", {st['instances']} instance ids over all images"))
        print(f"  {sizes_line}")
        if ds.mode == "rgb_pairs":   # which folder is the input: --direction swaps them
            print(f"  input photos {phase}{src}/, targets {phase}{tgt}/ (--direction {a.direction})")
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
        short = incomplete_synthesis(root, phase)   # a stopped or killed synthesize.py job
        if short:
            print(f"  {short}")
        if fatal_problems(problems) or short:
            bad = True
        else:
            print("  no problems")
    return 1 if bad else 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    sys.exit(run(main))
