"""Import a run folder of NVIDIA's pix2pixHD as a run of ours:
``python -m pix2pixhd.import_reference NVIDIA_RUN [--name NAME] [train_hd.py options]``.

NVIDIA's code leaves in ``checkpoints/NAME``: ``{latest,N}_net_{G,D,E}.pth`` (plain state_dicts,
our keys: :func:`pix2pixhd.compat.load_reference_weights`), ``opt.txt`` (every option it ran
with), ``iter.txt`` (epoch, samples into it) and, after ``encode_features.py``,
``features_clustered_NNN.npy``. The run folder written here (config.json, latest.pt, and
``features_clustered.pt``) synthesizes, starts a later stage and resumes. The weights fix the
architecture: options that contradict them (opt.txt's, or the defaults without it) are refused
with the flags that fit. opt.txt's ``dataroot`` is stored absolute where the folder NVIDIA's
train.py ran in can be told (``THAT_FOLDER/checkpoints_dir/NAME``) or it is found from the
working directory; else as written, and ``train_hd.py --resume`` says to pass ``--dataroot``.

A run folder of the pix2pix/CycleGAN repo (junyanz/pytorch-CycleGAN-and-pix2pix: ``{latest,N}_net_G.pth``
and ``_D``, or CycleGAN's ``_net_G_A/_G_B/_D_A/_D_B``, with its options printout train_opt.txt or
opt.txt) imports the same way with ``--model pix2pix`` or ``--model cyclegan``
(:func:`import_repo_run`); without it, such a folder is refused naming the --model to add.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.errors import ConfigError, RunExistsError, has_unprintable, printable

# opt.txt options that say what the networks, the data and the recipe were; the rest (paths, GPUs,
# logging, display) belong to the machine that trained it.
IMPORTED_OPTIONS = (
    "label_nc", "input_nc", "output_nc", "norm", "batchSize", "loadSize", "fineSize", "resize_or_crop",
    "no_flip", "netG", "ngf", "n_downsample_global", "n_blocks_global", "n_blocks_local",
    "n_local_enhancers", "niter_fix_global", "no_instance", "instance_feat", "label_feat", "feat_num",
    "load_features", "n_downsample_E", "nef", "n_clusters", "niter", "niter_decay", "lr", "beta1",
    "num_D", "n_layers_D", "ndf", "lambda_feat", "no_ganFeat_loss", "no_vgg_loss", "no_lsgan")


def find_reference_clusters(src: Path, n_clusters: int) -> tuple[Path, int] | None:
    """The cluster file of NVIDIA's run folder ``src`` and its cluster count, or None when it has
    none. encode_features.py names the file after the --n_clusters it was run with, which need not
    be opt.txt's (training never reads it): one file is taken whatever its count; of several, the
    one for ``n_clusters`` (opt.txt's, or --n_clusters given), else a ConfigError naming them."""
    import re
    found = {}
    for f in sorted(src.glob("features_clustered_*.npy")):
        m = re.fullmatch(r"features_clustered_([0-9]+)\.npy", f.name)
        if m:
            found[f] = int(m.group(1))
    if len(found) <= 1:
        return next(iter(found.items()), None)
    for f, k in found.items():
        if k == n_clusters:
            return f, k
    raise ConfigError(f"{src} holds {len(found)} cluster files ({', '.join(f.name for f in found)}) and "
                      f"none for n_clusters {n_clusters} (opt.txt's, or --n_clusters): give --n_clusters N "
                      "to import features_clustered_N.npy")


def read_reference_options(path) -> dict[str, str]:
    """``opt.txt`` as NVIDIA's pix2pixHD writes it (``name: value`` lines between two rulers)
    → {option: value as written}. The pix2pix/CycleGAN repo's (``opt.txt``, later
    ``train_opt.txt``) pads the value and adds ``\t[default: x]`` where it differs from the
    default: that comment is not part of the value."""
    opts = {}
    for line in open(path, encoding="utf-8"):
        name, sep, value = line.strip().partition(": ")
        if sep and name.isidentifier():
            opts[name] = value.split("\t[default: ")[0].strip()
    return opts


def _printable_option(opt_file, name: str, text: str, flag: str | None = None) -> None:
    """Refuse an options file's value that holds control characters (:func:`printable`'s): the
    run's config would store it and every later start, resume and dry run print it, escape
    sequences and all (a window title set, a screen cleared). Letters of any script are kept."""
    if has_unprintable(text):
        raise ConfigError(f"{opt_file} says {name}: {printable(text)}, which holds control characters (shown "
                          f"escaped) that a terminal would act on when the run prints its config: pass "
                          f"--{flag or name} with the value to use to import_reference")


def _typed(name: str, text: str, default):
    """An opt.txt value as the type of our option's default (bool from True/False)."""
    if isinstance(default, bool):
        if text not in ("True", "False"):
            raise ValueError(text)
        return text == "True"
    return type(default)(text)


# The most elements the cluster file's unpickler builds, over all its arrays: the real file holds
# n_clusters x feat_num centres per class (10 x 3 by default), a few thousand at most. A pickle
# names an array's shape without holding its data (numpy's _reconstruct allocates it): a 210-byte
# file asked for 9.31 GiB, and float32 of it four times that.
REFERENCE_CLUSTERS_MAX_ELEMENTS = 2**24


def read_reference_clusters(path) -> dict[int, np.ndarray]:
    """The reference's ``features_clustered_NNN.npy`` (``np.save`` of a {class id: [k, feat_num]
    array} dict) → that dict, without running arbitrary pickled code: only numpy arrays of numbers
    (and the object array holding the dict), dtypes and plain containers are let through
    (``np.load(allow_pickle=True)`` would run anything), and no more than
    :data:`REFERENCE_CLUSTERS_MAX_ELEMENTS` elements in all are built."""
    import pickle
    reconstruct, scalar = np.zeros(1).__reduce__()[0], np.float64(1).__reduce__()[0]
    budget = [REFERENCE_CLUSTERS_MAX_ELEMENTS]

    def refuse(what: str):
        raise CheckpointMismatchError(f"{path} asks for {what}, more than a cluster file of [k, feat_num] centres "
                                      f"per class holds (at most {REFERENCE_CLUSTERS_MAX_ELEMENTS} elements): refusing "
                                      "to build it (it is not a file encode_features.py saves)")

    def take(shape, dtype) -> None:
        """Count an array of ``shape`` against the file's budget before anything is allocated."""
        dtype = np.dtype(dtype)
        if dtype.kind not in "biufO":   # numbers, and the object array np.save wraps the dict in
            raise CheckpointMismatchError(f"{path} holds an array of dtype {dtype}, not the numbers of "
                                          "cluster centres: refusing to load it")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = 1
        for d in shape:
            n *= max(int(d), 0)   # Python ints: a product that overflows int64 is still refused
            if n > budget[0]:
                refuse(f"an array of shape {shape}" if n > REFERENCE_CLUSTERS_MAX_ELEMENTS else
                       f"arrays of more than {REFERENCE_CLUSTERS_MAX_ELEMENTS} elements in all")
        budget[0] -= n

    class _Array(np.ndarray):
        """The unpickler's arrays: their state (shape and data) is checked before numpy sizes them."""
        def __setstate__(self, state):
            if not (isinstance(state, tuple) and len(state) in (4, 5)):
                raise CheckpointMismatchError(f"{path} holds an array state numpy does not write: refusing to load it")
            shape, dtype, data = state[-4], np.dtype(state[-3]), state[-1]
            take(shape, dtype)
            # the data must fill the shape exactly: numpy's __setstate__ reads an object array's list
            # without checking its length (a 336-byte file segfaulted the import)
            n = 1
            for d in ((shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)):
                n *= max(int(d), 0)
            fits = (isinstance(data, list) and len(data) == n if dtype.kind == "O" else
                    isinstance(data, (bytes, bytearray)) and len(data) == n * dtype.itemsize)
            if not fits:
                raise CheckpointMismatchError(f"{path} holds an array whose data does not fill its shape "
                                              f"{tuple(np.atleast_1d(shape)) if shape != () else ()}: refusing to load it "
                                              "(it is not a file encode_features.py saves)")
            super().__setstate__(state)

    def _reconstruct(subtype, shape, dtype):
        if subtype is not np.ndarray and subtype is not _new_array:
            raise CheckpointMismatchError(f"{path} holds an array of type {subtype!r}: refusing to load it")
        take(shape, np.dtype(dtype) if not isinstance(dtype, bytes) else np.dtype(dtype.decode("latin1")))
        return reconstruct(_Array, shape, dtype)

    def _new_array(shape, dtype=float, *args, **kwargs):   # ndarray(shape, dtype) called directly
        take(shape, dtype)
        return _Array(shape, dtype, *args, **kwargs)

    def _scalar(dtype, *data):
        take((), dtype)   # a numeric dtype: a few bytes
        return scalar(dtype, *data)

    def _dtype(*args):
        d = np.dtype(*args)
        take((), d)
        return d

    allowed = {(f.__module__, f.__name__): g for f, g in
               ((reconstruct, _reconstruct), (scalar, _scalar), (np.ndarray, _new_array), (np.dtype, _dtype))}
    aliases = {"numpy.core.multiarray": "numpy._core.multiarray", "numpy._core.multiarray": "numpy.core.multiarray"}

    class _Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            for m in (module, aliases.get(module, module)):
                if (m, name) in allowed:
                    return allowed[m, name]
            raise CheckpointMismatchError(f"{path} holds a pickled {module}.{name}, which a cluster file "
                                          "does not: refusing to load it (it could run code)")

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            if dtype == object and shape == ():
                obj = _Restricted(f, encoding="latin1").load()
    except (OSError, ValueError, EOFError, TypeError, MemoryError, pickle.UnpicklingError) as e:
        if isinstance(e, CheckpointMismatchError):   # the refusal of a pickled object: said already
            raise
        raise CheckpointMismatchError(f"{path} could not be read as a cluster file: "
                                      f"{str(e) or type(e).__name__}") from e   # MemoryError() says nothing
    if dtype != object or shape != ():
        raise CheckpointMismatchError(f"{path} holds a {dtype} array of shape {shape}, not the {{class id: "
                                      "[k, feat_num] array} dict that encode_features.py saves")
    centers = obj.item() if isinstance(obj, np.ndarray) else obj
    if not isinstance(centers, dict):
        raise CheckpointMismatchError(f"{path} holds a {type(centers).__name__}, not the {{class id: [k, feat_num] "
                                      "array}} dict that encode_features.py saves")
    for c, v in centers.items():
        if not isinstance(c, (int, np.integer)) or not isinstance(v, np.ndarray) or v.ndim != 2 \
                or v.dtype == object:
            what = (f"a {v.ndim}-d array of shape {v.shape}{' of objects' if v.dtype == object else ''}"
                    if isinstance(v, np.ndarray) else
                    f"a {type(v).__name__}")
            raise CheckpointMismatchError(f"{path}: class {c!r} holds {what}, not the [k, feat_num] array of "
                                          "cluster centres that encode_features.py saves")
    if not centers:
        raise CheckpointMismatchError(f"{path} holds no cluster centres (an empty dict), so synthesis would "
                                      "have no features to paint")
    try:
        return {int(k): np.array(v, dtype=np.float32) for k, v in centers.items()}   # plain ndarrays
    except MemoryError as e:
        raise CheckpointMismatchError(f"{path} could not be read as a cluster file: {type(e).__name__}") from e


def checked_reference_clusters(path: Path, feat_num: int, whose: str = "opt.txt's feat_num",
                               run: Path | str = "RUN", label_nc: int = 0) -> dict[int, np.ndarray]:
    """:func:`read_reference_clusters`, refused when a class's centres are not ``feat_num`` wide
    (``whose``: where that value came from; ``run``: the import's folder) or a class is not one of
    ``label_nc`` (0: not checked): they were not made by the run's encoder, and synthesis could
    not paint them. Each refusal says how to import the run without them."""
    fix = (f"Move {path.name} out of {path.parent} to import the run without clusters, then cluster its "
           f"encoder's features with `python -m pix2pixhd.features encode --checkpoint {run}`")
    try:
        centers = read_reference_clusters(path)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{e}. {fix}") from e
    widths = sorted({v.shape[1] for v in centers.values()})
    if any(w != feat_num for w in widths):
        shown = " and ".join(str(w) for w in widths)
        raise CheckpointMismatchError(
            f"{path} holds cluster centres {shown} wide, but {whose} is {feat_num}: they were not made by "
            f"this run's encoder. {fix}")
    beyond = sorted(c for c in centers if c < 0 or c >= label_nc) if label_nc else []
    if beyond:
        raise CheckpointMismatchError(
            f"{path} holds centres for class{'es' if len(beyond) > 1 else ''} {', '.join(map(str, beyond))}, but the "
            f"run has label_nc {label_nc} (classes 0 to {label_nc - 1}): they are another run's. {fix}")
    return centers


# Options only training sets, which the weights do not show. NVIDIA's encode_features.py and
# precompute_feature_maps.py rewrite opt.txt with their own command line's (NVIDIA's defaults unless
# given): importing a folder they rewrote needs these from the user (niter_fix_global: netG local).
TRAINING_ONLY = ("niter", "niter_decay", "niter_fix_global", "no_vgg_loss")
# taken from such an opt.txt with a note naming their values
REWRITE_NOTED = ("lr", "beta1", "batchSize", "loadSize", "fineSize", "resize_or_crop", "no_flip", "lambda_feat",
                 "no_lsgan", "n_clusters")
USAGE = ("python -m pix2pixhd.import_reference NVIDIA_RUN|REPO_RUN [--model pix2pix|cyclegan] [--name NAME] "
         "[--which_epoch N] [--dry_run] [train_hd.py options]")


def reference_epochs(src: Path) -> list[int]:
    """The epochs N of the ``N_net_G.pth`` files in NVIDIA's run folder ``src``, in order."""
    import re
    return sorted(int(m[1]) for f in src.glob("*_net_G.pth") if (m := re.fullmatch(r"([0-9]+)_net_G\.pth", f.name)))


def encode_features_telltales(src: Path, opts: dict[str, str]) -> list[str]:
    """The files in ``src`` that say its ``opt.txt`` (``opts``) was rewritten by NVIDIA's
    encode_features.py or precompute_feature_maps.py: both save the options of their own command
    line (TrainOptions().parse()) and only then set instance_feat, so the file says instance_feat
    False and label_feat False, while an encoder (``*_net_E.pth``), ``features_clustered_NNN.npy``
    or ``features.npy`` (encode_features.py's) only come from a run with one of them. [] if none."""
    if opts.get("instance_feat") != "False" or opts.get("label_feat") != "False" or opts.get("load_features") == "True":
        return []
    found = sorted(f.name for f in src.glob("*_net_E.pth"))[:2]
    found += sorted(f.name for f in src.glob("features_clustered_*.npy"))[:2]
    found += ["features.npy (encode_features.py's)"] if (src / "features.npy").is_file() else []
    return found


def _flag(name: str, v) -> str:
    """The command-line flag that sets option ``name`` to ``v``."""
    if isinstance(v, bool):
        return f"--{name}" if v else f"--{name} false"
    return f"--{name} {v}"


def _contradictions(cfg, states: dict, files: dict, said) -> tuple[list[str], list[str], list[list[str]]]:
    """Where the weights fix another value than ``cfg``'s: (statements "opt.txt says num_D 2, but
    latest_net_D.pth holds 3 scales", the flags that fix them, the alternative flag sets that make
    G's input channels add up). ``said(names, values)``: where cfg's values came from, in words."""
    from pix2pixhd.compat import reference_architecture
    from pix2pixhd.models import discriminator_input_nc, generator_input_nc
    arch = {k: reference_architecture(sd, k) for k, sd in states.items() if sd is not None}
    arch = {k: a for k, a in arch.items() if a is not None}
    compared = {"G": ("netG", "ngf", "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local",
                      "norm", "output_nc"),
                "D": ("num_D", "n_layers_D", "ndf", "no_ganFeat_loss", "norm", "output_nc"),
                "E": ("nef", "n_downsample_E", "feat_num", "output_nc", "norm")}
    if cfg.load_features:   # no encoder in such a run: a file there is not this run's
        arch.pop("E", None)
    statements, flags, seen = [], {}, set()
    for key, names in compared.items():
        a, f = arch.get(key), files.get(key)
        for name in names:
            if a is None or name not in a or name in seen or (key == "D" and name == "output_nc"):
                continue
            seen.add(name)
            v = a[name]
            if v == getattr(cfg, name):
                continue
            why = (f"{f} is a {'LocalEnhancer' if v == 'local' else 'GlobalGenerator'} (netG {v})" if name == "netG"
                   else f"{f} holds {v} scale{'s' if v != 1 else ''}" if name == "num_D"
                   else f"{f}'s keys are those of a discriminator trained {'with' if v else 'without'} "
                        "--no_ganFeat_loss" if name == "no_ganFeat_loss"
                   else f"{f} has " + ("BatchNorm parameters (norm batch)" if v == "batch" else
                                       "no norm parameters (norm instance)") if name == "norm"
                   else f"{f} implies {name} {v}")
            statements.append(f"{said([name], [getattr(cfg, name)])}, but {why}")
            flags[name] = _flag(name, v)
    g, d, e = arch.get("G"), arch.get("D"), arch.get("E")
    alternatives = []
    if g is not None:
        gin, din = g["in_channels"], d["in_channels"] if d is not None else None
        out_nc = g["output_nc"]
        if gin != generator_input_nc(cfg) or (din is not None and din != discriminator_input_nc(cfg)):
            img = "label_nc" if cfg.label_nc else "input_nc"
            L0, inst0, feats0 = cfg.label_nc or cfg.input_nc, 0 if cfg.no_instance else 1, cfg.use_features
            fw = e["feat_num"] if e is not None else cfg.feat_num
            feat_flag = (f"--{'label_feat' if cfg.label_feat else 'instance_feat'} false" if feats0 else
                         "--instance_feat (or --label_feat, as trained)")
            fits = []
            for inst in (inst0, 1 - inst0):
                for feats in (feats0, not feats0):
                    f = fw if feats else 0
                    L = gin - inst - f
                    if L < 1 or (img == "input_nc" and L not in (1, 3)) or (
                            din is not None and L + inst + out_nc != din):
                        continue
                    if e is not None and not feats and not cfg.load_features:
                        continue   # NVIDIA saves an encoder only for --instance_feat / --label_feat
                    change = ([f"--{img} {L}"] if L != L0 else []) + \
                             ([_flag("no_instance", inst == 0)] if inst != inst0 else []) + \
                             ([feat_flag] if feats != feats0 else []) + \
                             ([f"--feat_num {fw}"] if feats and fw != cfg.feat_num and "feat_num" not in flags else [])
                    fits.append((len(change), change, f"{L} {'label' if img == 'label_nc' else 'image'} + {inst} "
                                                      f"boundary + {f} feature channels"))
            fits.sort(key=lambda t: t[0])
            if fits and not fits[0][0]:   # they add up once the options named above are fixed
                return statements, list(flags.values()), []
            best = [t for t in fits if t[0] == fits[0][0]] if fits else []
            names = [img, "no_instance", "instance_feat", "label_feat"] + (["feat_num"] if feats0 else [])
            now = (f"{L0} {'label' if img == 'label_nc' else 'image'} + {inst0} boundary + "
                   f"{cfg.feat_num if feats0 else 0} feature channels")
            took = f"{files['G']} takes {gin}" + (": " + " or ".join(t[2] for t in best) if best else "")
            if din is not None:
                took += f" ({files['D']} takes {din}: G's condition without the features, + {out_nc} image channels)"
            statements.append(f"{said(names, [getattr(cfg, n) for n in names])}: G's input would be "
                              f"{generator_input_nc(cfg)} channels ({now}), but {took}")
            alternatives = [t[1] for t in best]
    return statements, list(flags.values()), alternatives


def _reference_dataroot(src: Path, opts: dict[str, str],
                        trainer: str = "NVIDIA's train.py") -> tuple[str, str | None]:
    """opt.txt's dataroot as config.json stores paths (absolute), and a note when it is not found
    as NVIDIA ran: a relative one is relative to the folder NVIDIA's train.py ran in, which
    ``src`` tells when it is ``THAT_FOLDER/checkpoints_dir/NAME`` (opt.txt's, relative), else is
    tried from the working directory; neither found: the first of them where it can be told, else
    kept as written (``train_hd.py --resume`` then says to pass --dataroot)."""
    import os
    given = opts["dataroot"]
    p = Path(given).expanduser()
    if p.is_absolute():
        return os.path.normpath(p), None
    # NAME may have been renamed since: the folder holding it is compared with checkpoints_dir
    from pix2pixhd.paths import folder_made_from
    trained_in = folder_made_from(Path(os.path.abspath(src)).parent, opts.get("checkpoints_dir", ""))
    here = Path(os.path.abspath(p))
    if trained_in is not None and (trained_in / p).is_dir():
        return os.path.normpath(trained_in / p), None
    if here.is_dir():
        return str(here), (f"opt.txt's dataroot {given} is relative to the folder {trainer} ran in"
                           + ("" if trained_in is not None else f", which {src}'s path does not tell")
                           + f"; stored as {here}, found from the working directory: pass --dataroot if "
                           "that is not the run's data")
    if trained_in is not None:
        return os.path.normpath(trained_in / p), None
    return given, (f"opt.txt's dataroot {given} is relative to the folder {trainer} ran in, which {src}'s "
                   "path does not tell, and is not found from here: kept as written; pass --dataroot DIR (to "
                   "this import, or to train_hd.py --resume)")


# --- runs of the pix2pix/CycleGAN repo (junyanz/pytorch-CycleGAN-and-pix2pix) ------------------
REPO = "the pix2pix/CycleGAN repo (junyanz/pytorch-CycleGAN-and-pix2pix)"
# its options printout: train_opt.txt ('{phase}_opt.txt') since 2019, opt.txt before
REPO_OPTION_FILES = ("train_opt.txt", "opt.txt")
# the repo's model names -> ours
REPO_MODELS = {"pix2pix": "pix2pix", "cycle_gan": "cyclegan"}
# the networks each model saves, {epoch}_net_{key}.pth: generators first (needed), then Ds
REPO_NETWORKS = {"pix2pix": ("G", "D"), "cyclegan": ("G_A", "G_B", "D_A", "D_B")}
# the repo's option names (with their older ones) -> ours (config.REFERENCE_ONLY refuses the later
# names typed on our command line; netG is read as netG_pix2pix with --model pix2pix/cyclegan)
REPO_OPTIONS = {
    "netG": "netG_pix2pix", "which_model_netG": "netG_pix2pix", "netD": "netD_pix2pix",
    "which_model_netD": "netD_pix2pix", "ngf": "ngf", "ndf": "ndf", "n_layers_D": "n_layers_D", "norm": "norm",
    "input_nc": "input_nc", "output_nc": "output_nc", "no_dropout": "no_dropout", "direction": "direction",
    "which_direction": "direction", "load_size": "loadSize", "loadSize": "loadSize", "crop_size": "fineSize",
    "fineSize": "fineSize", "preprocess": "resize_or_crop", "resize_or_crop": "resize_or_crop",
    "no_flip": "no_flip", "batch_size": "batchSize", "batchSize": "batchSize", "lr": "lr", "beta1": "beta1",
    "n_epochs": "niter", "niter": "niter", "n_epochs_decay": "niter_decay", "niter_decay": "niter_decay",
    "gan_mode": "gan_mode", "no_lsgan": "no_lsgan", "lambda_L1": "lambda_L1", "lambda_A": "lambda_A",
    "lambda_B": "lambda_B", "lambda_identity": "lambda_identity", "pool_size": "pool_size"}
# the generators the repo builds (define_G), and their flags on our command line (the repo's names)
REPO_NETG = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")
_REPO_FLAG = {"netG_pix2pix": "netG"}


def repo_option_file(folder: Path) -> Path | None:
    """The repo's options printout in ``folder`` (train_opt.txt, else opt.txt), or None."""
    return next((Path(folder) / n for n in REPO_OPTION_FILES if (Path(folder) / n).is_file()), None)


def repo_run_model(folder: Path, g_state: dict | None = None) -> tuple[str, str] | None:
    """(our --model, what says so) when ``folder`` is a run folder of the pix2pix/CycleGAN repo:
    CycleGAN's ``*_net_G_A.pth`` / ``_G_B``; an options printout saying ``model: pix2pix`` or
    ``cycle_gan`` (or, without ``model``, a netG of the repo's); a generator ``g_state`` whose keys
    are a U-Net's (``model.model.``). None otherwise (NVIDIA's run, or not a run)."""
    import re
    folder = Path(folder)
    if not folder.is_dir():
        return None
    cycle = sorted(p.name for p in folder.iterdir() if re.fullmatch(r"(latest|[0-9]+)_net_G_[AB]\.pth", p.name))
    if cycle:
        shown = [n for n in cycle if n.startswith("latest_")] or cycle
        return "cyclegan", ", ".join(shown[:2])
    opt_file = repo_option_file(folder)
    try:
        opts = read_reference_options(opt_file) if opt_file is not None else {}
    except (OSError, UnicodeDecodeError):
        opts = {}
    if opts.get("model") in REPO_MODELS:
        return REPO_MODELS[opts["model"]], f"{opt_file.name}: model {opts['model']}"
    netG = opts.get("netG", opts.get("which_model_netG"))
    if "model" not in opts and netG in REPO_NETG:
        return ("cyclegan" if netG.startswith("resnet") else "pix2pix"), f"{opt_file.name}: netG {netG}"
    if g_state is not None and any(k.startswith("model.model.") for k in g_state):
        return "pix2pix", "its generator's keys are a U-Net's (model.model.*)"
    return None


def _repo_generators(state: dict, cfg) -> list[dict]:
    """The generators of the repo (netG, ngf, norm, no_dropout, input and output channels) whose
    state_dict has ``state``'s keys and shapes, the one closest to ``cfg``'s options first; []
    when none has (the file's error then says what it looks like)."""
    from pix2pixhd.pix2pix_networks import RESNETS, define_G
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    found = []
    for netG in REPO_NETG:
        first, last = ("model.1.weight", None) if netG in RESNETS else ("model.model.0.weight", "model.model.3.weight")
        if len(shapes.get(first, ())) != 4 or (last is not None and len(shapes.get(last, ())) != 4):
            continue
        ngf, in_nc = shapes[first][:2]
        if last is not None:
            out_nc = shapes[last][1]
        else:   # the last conv of the ResNet generator
            convs = sorted((int(k.split(".")[1]), v) for k, v in shapes.items()
                           if k.count(".") == 2 and k.endswith(".weight") and len(v) == 4)
            out_nc = convs[-1][1][0] if convs else 0
        for norm in ("instance", "batch"):
            for no_dropout in (False, True):
                with torch.device("meta"):
                    g = define_G(in_nc, out_nc, ngf, netG, norm, use_dropout=not no_dropout)
                if {k: tuple(v.shape) for k, v in g.state_dict().items()} == shapes:
                    found.append({"netG_pix2pix": netG, "ngf": ngf, "norm": norm, "no_dropout": no_dropout,
                                  "input_nc": in_nc, "output_nc": out_nc})
    return sorted(found, key=lambda a: sum(getattr(cfg, k) != v for k, v in a.items()))


def import_repo_run(src, argv: list[str], model: str, *, which_epoch: str = "latest",
                    dry_run: bool = False) -> Path:
    """Turn a run folder of the pix2pix/CycleGAN repo (``{which_epoch}_net_G.pth`` and ``_D`` of
    pix2pix, ``_net_G_A/_G_B`` and ``_D_A/_D_B`` of CycleGAN; its options printout train_opt.txt or
    opt.txt) into a run of ours of ``--model model``; return its path. The repo's options
    (:data:`REPO_OPTIONS`, later names and older) become ours; options on ``argv`` (train_hd.py's)
    override them. The generators' weights fix netG, ngf, norm, no_dropout (a ResNet block's
    dropout shifts its keys) and the channels: options that contradict them are refused with the
    flags that fit. The checkpoint is written as :func:`import_reference_run` writes NVIDIA's
    (weights, config, ``imported_from``, no optimizer state), so it synthesizes, is a
    --load_pretrain and resumes; CycleGAN's image pools start empty (the repo saves none)."""
    import re
    from pix2pixhd import __version__
    from pix2pixhd.checkpoint import environment
    from pix2pixhd.cli import train_parser
    from pix2pixhd.compat import read_state_dict
    from pix2pixhd.config import AT_LEAST, MODEL_ONLY, TrainConfig, default_of
    from pix2pixhd.errors import MissingInputError, UserError
    from pix2pixhd.models import build_discriminator, build_generator
    from pix2pixhd.run_folder import check_new_run, move_aside
    src = Path(src)
    prefix = "latest" if which_epoch == "latest" else str(int(which_epoch))
    keys = REPO_NETWORKS[model]
    files = {k: f"{prefix}_net_{k}.pth" for k in keys}
    opt_file = repo_option_file(src)
    opts = read_reference_options(opt_file) if opt_file is not None else {}
    theirs = REPO_MODELS.get(opts.get("model", ""))
    if opts.get("model") == "pix2pixHD" or (not theirs and any(src.glob("*_net_E.pth"))):
        raise ConfigError(f"--model {model}: {src} is a run of NVIDIA's pix2pixHD, which imports as --model "
                          "pix2pixhd only (its networks are pix2pixHD's): drop --model")
    if theirs is not None and theirs != model or (model == "pix2pix" and any(src.glob("*_net_G_A.pth"))):
        other = theirs or "cyclegan"
        why = f"{opt_file.name} says model {opts['model']}" if theirs else "it holds CycleGAN's G_A/G_B"
        raise ConfigError(f"--model {model}: {src} is a {other} run of {REPO} ({why}): pass --model {other}")
    for k in keys[:2 if model == "cyclegan" else 1]:
        if not (src / files[k]).is_file():
            held = sorted(p.name for p in src.glob("*_net_G*.pth"))
            raise MissingInputError(f"{src / files[k]} not found: not a {model} run folder of {REPO}, or no "
                                    f"generator saved at --which_epoch {which_epoch} (it holds {held or 'none'})")
    states = {k: read_state_dict(src / f) if (src / f).is_file() else None for k, f in files.items()}

    parser = train_parser(argv)
    parser.prog, parser.usage = "python -m pix2pixhd.import_reference", USAGE
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    args.pop("debug", None)
    dry_run = bool(args.pop("dry_run", False)) or dry_run
    for flag in ("resume", "auto_resume"):
        if args.get(flag):
            raise ConfigError(f"--{flag}: an import writes a new run and continues none; to continue the imported "
                              "run, train it: python train_hd.py --resume --name NAME [--checkpoints_dir DIR]; to "
                              "import over a run, add --overwrite")
    if "netG" in args and "netG_pix2pix" not in args:   # the repo's --netG, as train_hd.py reads it
        args["netG_pix2pix"] = args.pop("netG")
    given = set(args)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    taken, notes = {}, []   # ours -> the repo's name it came from
    for theirs_name, name in REPO_OPTIONS.items():
        text = opts.get(theirs_name)
        if text in (None, "None") or name in given or name in taken.values():
            continue
        if model not in MODEL_ONLY.get(name, (model,)):
            continue   # what the repo's other model reads (pix2pix's pool_size 0, CycleGAN's lambda_L1)
        if name == "no_lsgan" and "gan_mode" in opts:
            continue
        _printable_option(opt_file, theirs_name, text, _REPO_FLAG.get(name, name))
        f = fields[name]
        try:
            v = _typed(name, text, default_of(f, model))
            lo = AT_LEAST.get(name)
            if (f.metadata["choices"] and v not in f.metadata["choices"]) or (
                    name == "netG_pix2pix" and v not in REPO_NETG) or (
                    lo is not None and (v < lo[0] or (lo[1] and v == lo[0]))):
                raise ValueError(text)
        except ValueError:
            allowed = (f" (one of {', '.join(map(str, f.metadata['choices']))})" if f.metadata["choices"] else
                       f" (one of {', '.join(REPO_NETG)})" if name == "netG_pix2pix" else "")
            from pix2pixhd.pix2pix_networks import NETG   # ours: the repo's and the ablations' encoder-decoders
            what = ("which the repo does not build" if name == "netG_pix2pix" and text in NETG
                    else "which this project has not")
            raise ConfigError(f"{opt_file} says {theirs_name}: {text!r}, {what}{allowed}: "
                              f"pass --{_REPO_FLAG.get(name, name)} with the value to use to import_reference"
                              ) from None
        args[name] = v
        taken[theirs_name] = name
    args["model"] = model
    args.setdefault("name", src.resolve().name)
    try:
        cfg = TrainConfig(**args).resolved()
    except (UserError, ValueError) as e:
        msg = str(e)
        named = next((t for t, n in taken.items() if re.search(rf"(--{n}\b|\b{n}=)", msg)), None)
        if named is None:
            raise
        raise ConfigError(f"{msg} ({named} {opts[named]} is {opt_file.name}'s: pass --{_REPO_FLAG.get(taken[named], taken[named])} "
                          "to import_reference to give another)") from e

    def said(name) -> str:
        if name in given:
            return f"--{_REPO_FLAG.get(name, name)} {getattr(cfg, name)} was given"
        t = next((t for t, n in taken.items() if n == name), None)
        return (f"{opt_file.name} says {t} {opts[t]}" if t else
                f"the default {_REPO_FLAG.get(name, name)} {getattr(cfg, name)} was assumed")

    arch = {}
    for k in keys[:2 if model == "cyclegan" else 1]:
        fits = _repo_generators(states[k], cfg)
        if not fits:
            continue   # load_reference_weights says what the file looks like
        a = dict(fits[0])
        if k == "G_B":   # it translates B to A
            a["input_nc"], a["output_nc"] = a["output_nc"], a["input_nc"]
        for name, v in a.items():
            arch.setdefault(name, (v, files[k]))
    wrong = {n: (v, f) for n, (v, f) in arch.items() if getattr(cfg, n) != v}
    if wrong:
        flags = " ".join(f"--{_REPO_FLAG.get(n, n)} {str(v).lower() if isinstance(v, bool) else v}"
                         for n, (v, _) in wrong.items())
        raise ConfigError(f"the weights in {src} do not fit the options: " + "; ".join(
            f"{said(n)}, but {f} is a {_REPO_FLAG.get(n, n)} {v} generator" for n, (v, f) in wrong.items())
            + f": pass {flags} to import_reference")

    if opts.get("dataroot", "None") not in ("", "None") and "dataroot" not in given:
        _printable_option(opt_file, "dataroot", opts["dataroot"])
        cfg.dataroot, note = _reference_dataroot(src, opts, trainer="the repo's train.py")
        notes += [note] if note else []
    out = cfg.experiment_dir
    _check_apart(src, out, given)
    try:
        check_new_run(cfg)
    except RunExistsError:
        from pix2pixhd.run_folder import run_files
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(run_files(out))}): to import into another folder, choose a "
            f"--name other than {cfg.name!r}; to replace that run, add --overwrite") from None

    state = {"config": cfg.to_dict(), "version": __version__, "imported_from": str(src.resolve()),
             "environment": environment(torch.device("cpu"))}
    for k in keys:
        net = (build_generator(cfg, "BtoA" if k == "G_B" else None) if k.startswith("G")
               else build_discriminator(cfg, k))
        if states[k] is None or net is None:
            state[k] = None   # the repo's released models hold the generators alone
            continue
        state[k] = load_reference_weights(net, states[k], source=str(src / files[k])).state_dict()
    # the repo records no epoch beside its weights: {N}_net_G.pth ends epoch N; latest_net_G.pth is
    # that of the last N whose weights it equals, else later than any (its epoch is not known)
    g_key = keys[0]
    numbered = sorted(int(m[1]) for p in src.glob(f"*_net_{g_key}.pth")
                      if (m := re.fullmatch(rf"([0-9]+)_net_{g_key}\.pth", p.name)))
    if prefix != "latest":
        epoch = int(prefix) + 1
    else:
        latest = (src / files[g_key]).read_bytes()
        same = [n for n in numbered if (src / f"{n}_net_{g_key}.pth").read_bytes() == latest]
        start = int(opts["epoch_count"]) if opts.get("epoch_count", "").isdigit() else 1
        epoch = same[-1] + 1 if same else max([start] + [n + 1 for n in numbered])
        if not same:
            notes.append(f"{src} records no epoch for {files[g_key]}: --resume continues it at epoch {epoch}"
                         + (f" (after {numbered[-1]}_net_{g_key}.pth)" if numbered else
                            f" ({opt_file.name}'s epoch_count)" if "epoch_count" in opts else "")
                         + "; import --which_epoch N for an epoch it saved")
    state.update(epoch=epoch, iter_in_epoch=0, samples_in_epoch=0, global_step=0)
    if model == "cyclegan":   # the trainer's pools of rank 0, empty (the repo saves none)
        from pix2pixhd.image_pool import ImagePool
        state["pools"] = [{k: ImagePool(cfg.pool_size, seed=cfg.seed * 1_000_003 * 2 + i).state_dict()
                           for i, k in enumerate(("fake_B", "fake_A"))}]
    missing_d = [files[k] for k in keys if k.startswith("D") and state[k] is None]
    if missing_d:
        notes.append(f"{src} holds no {' or '.join(missing_d)}: the run synthesizes; training it "
                     "(--resume, --load_pretrain) starts "
                     + ("that discriminator from its" if len(missing_d) == 1 else "those discriminators from their")
                     + " initialisation")
    others = [n for n in numbered if str(n) != prefix]
    if others:
        notes.append(f"{src} also holds epoch{'s' if len(others) > 1 else ''} "
                     f"{', '.join(map(str, others[:6]))}{', ...' if len(others) > 6 else ''} (N_net_{g_key}.pth), "
                     f"not imported: import one with --which_epoch N and another --name")
    shown = [f"{t} as {n}" if t != n else t for t, n in taken.items()]
    summary = (f"{src} ({REPO}, {model}) into {out}: " + ", ".join(k for k in keys if state[k] is not None)
               + f"; epoch {epoch}" + (f"; from {opt_file.name}: {', '.join(shown)}" if shown else
                                       "; no options printout (train_opt.txt, opt.txt): the defaults were "
                                       "assumed for every option not given"))
    if dry_run:
        print(printable(cfg.pretty()))
        print(printable(f"dry run: would import {summary}; would write {out / 'config.json'}, {out / 'latest.pt'}; "
                        "nothing written"))
        for note in notes:
            print(printable(f"note: {note}"))
        return out
    return _write_import(out, state, cfg, move_aside(out) if cfg.overwrite else None, summary, notes)


def _check_apart(src: Path, out: Path, given) -> None:
    """ConfigError when the run folder ``out`` the import writes is the source run ``src``, holds it
    or lies in it: --overwrite moves ``out`` aside and deletes it once the import is written, and
    with it a source inside it (the user's original run, gone without a word)."""
    o, s = out.resolve(), src.resolve()
    if o == s or s.is_relative_to(o) or o.is_relative_to(s):
        where = "itself" if o == s else "a folder holding it" if s.is_relative_to(o) else "a folder inside it"
        raise ConfigError(f"the import of {src} would be written into {where} ({out})"
                          + ("" if "name" in given else " (--name defaults to the source folder's name)")
                          + ": choose a --name (or --checkpoints_dir) whose folder is apart from it (--overwrite "
                          "would move that folder aside and delete it, the source run with it)")


def _write_import(out: Path, state: dict, cfg, aside: Path | None, summary: str, notes: list[str]) -> Path:
    """The imported run's checkpoint ``state`` (and config.json) written into ``out``; the run
    --overwrite moved ``aside`` deleted once it is; the summary and notes said. Returns ``out``."""
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.run_folder import drop_replaced
    save_checkpoint(state, out, "latest", cfg.to_json())
    if aside is not None:
        drop_replaced(aside)
    print(printable(f"imported {summary}"))
    for note in notes:
        print(printable(f"note: {note}"))
    return out


def _model_given(argv: list[str]) -> str | None:
    """The --model on ``argv``, as ours (NVIDIA's pix2pixHD, the pix2pix/CycleGAN repo's cycle_gan:
    ``config.model_name``), or None."""
    import argparse
    from pix2pixhd.config import model_name
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--model")
    model = pre.parse_known_args(argv)[0].model
    return model_name(model) if model else None


def import_reference_run(src, argv: list[str] | None = None, *, which_epoch: str = "latest",
                         dry_run: bool = False) -> Path:
    """Turn NVIDIA's run folder ``src`` (``{which_epoch}_net_G.pth``, ``_D``, ``_E``, ``opt.txt``,
    ``iter.txt``, ``features_clustered_NNN.npy``) into a run folder of ours; return its path.

    ``argv``: train_hd.py options (``--name``, default ``src``'s folder name, and
    ``--checkpoints_dir`` say where); options not given come from ``src/opt.txt``
    (:data:`IMPORTED_OPTIONS`), else our defaults, which are the reference's. The weights fix the
    architecture: where they contradict those options (opt.txt's, the defaults without it, or the
    command line's), the import is refused naming the value, what the weights imply and the flag
    to pass; a folder whose opt.txt NVIDIA's encode_features.py rewrote
    (:func:`encode_features_telltales`) also needs the training-only options
    (:data:`TRAINING_ONLY`) given as trained. ``dry_run``: check everything and print what would
    be written, writing nothing.

    The checkpoint written holds G (and D, E when present), the config and the epoch and
    iteration of ``iter.txt``; no optimizer state, which the reference never saved. So the run
    synthesizes (``synthesize.py --checkpoint``), starts a later stage (``--load_pretrain``), and
    continues with ``--resume``: the same weights and epoch, fresh Adam moments, and the learning
    rate our schedule gives that epoch. That fixes a bug of the reference: its --continue_train
    restarted at --lr whatever the epoch (pix2pixHD_model.py sets old_lr = opt.lr), so a run
    continued in its decay epochs trained at the initial rate again.
    """
    from pix2pixhd import __version__
    from pix2pixhd.cli import refuse_reference_only, refuse_unknown_options, train_parser
    from pix2pixhd.compat import read_state_dict, reference_architecture
    from pix2pixhd.config import AT_LEAST, TrainConfig, default_of
    from pix2pixhd.errors import MissingInputError, UserError
    from pix2pixhd.models import build_discriminator, build_encoder, build_generator
    from pix2pixhd.run_folder import check_new_run, move_aside
    src = Path(src)
    if not (which_epoch == "latest" or str(which_epoch).isdigit()):
        raise ConfigError(f"--which_epoch {which_epoch!r}: expected 'latest' or an epoch number N "
                          f"(the file N_net_G.pth in {src})")
    prefix = "latest" if which_epoch == "latest" else str(int(which_epoch))
    if not src.is_dir():   # else "SRC/latest_net_G.pth not found ... (it holds none)"
        raise MissingInputError(f"{src} " + ("is not a folder" if src.exists() else "does not exist")
                                + ": give the reference's checkpoints/NAME folder (latest_net_G.pth, opt.txt...)")
    g_file = src / f"{prefix}_net_G.pth"
    argv = list(argv or [])
    model = _model_given(argv)
    g_state = read_state_dict(g_file) if g_file.is_file() else None
    repo = repo_run_model(src, g_state)
    if model in REPO_NETWORKS:
        nvidia = read_reference_options(src / "opt.txt").get("model") if (src / "opt.txt").is_file() else None
        if repo is not None or nvidia != "pix2pixHD":   # NVIDIA's run: refused below (drop --model)
            return import_repo_run(src, argv, model, which_epoch=which_epoch, dry_run=dry_run)
    elif repo is not None:
        raise ConfigError(f"{src} is a {repo[0]} run folder of {REPO} ({repo[1]}), not NVIDIA's pix2pixHD: add "
                          f"--model {repo[0]}: python -m pix2pixhd.import_reference {src} --model {repo[0]} "
                          "--name NAME")
    if not g_file.is_file():
        held = sorted(p.name for p in src.glob("*_net_G.pth")) if src.is_dir() else []
        raise MissingInputError(f"{g_file} not found: not a pix2pixHD run folder, or no generator saved at "
                                f"--which_epoch {which_epoch} (it holds {held or 'none'})")
    refuse_reference_only(argv)   # NVIDIA's --gpu_ids, --fp16...: train_hd.py's one-line explanation
    parser = train_parser(argv)
    parser.prog, parser.usage = "python -m pix2pixhd.import_reference", USAGE
    refuse_unknown_options(parser, argv)
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    args.pop("debug", None)
    dry_run = bool(args.pop("dry_run", False)) or dry_run   # never stored in the run's config
    given = set(args)
    if args.get("model", "pix2pixhd") != "pix2pixhd":
        # first: opt.txt's pix2pixHD options would otherwise be refused as unused by that model,
        # each blamed on opt.txt, when no option makes the folder's networks another model's
        raise ConfigError(f"--model {args['model']}: {src} is a run of NVIDIA's pix2pixHD, which imports as "
                          "--model pix2pixhd only (its networks are pix2pixHD's): drop --model")
    for flag in ("resume", "auto_resume"):
        if args.get(flag):   # it would write the import over the run there, not continue it
            typed = next((a.split("=")[0] for a in argv if a.split("=")[0] in
                          (("--resume", "--continue_train") if flag == "resume" else ("--auto_resume",))), f"--{flag}")
            raise ConfigError(f"{typed}: an import writes a new run and continues none; to continue the "
                              f"imported run, train it: python train_hd.py --resume --name NAME "
                              "[--checkpoints_dir DIR]; to import over a run, add --overwrite")
    # the weights, read first: they are the truth about the architecture
    files = {k: f"{prefix}_net_{k}.pth" for k in ("G", "D", "E")}
    states = {k: read_state_dict(src / f) if (src / f).is_file() else None for k, f in files.items() if k != "G"}
    states["G"] = g_state
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    opt_file, taken, opts, shown = src / "opt.txt", [], {}, []
    if opt_file.is_file():
        opts = read_reference_options(opt_file)
        if opts.get("model", "pix2pixHD") != "pix2pixHD":
            raise ConfigError(f"{opt_file}: model {opts['model']!r}; only pix2pixHD runs are imported")
        for name in IMPORTED_OPTIONS:
            if name in args or name not in opts or opts[name] == "None":
                continue
            _printable_option(opt_file, name, opts[name])
            f = fields[name]
            try:
                v = _typed(name, opts[name], default_of(f, "pix2pixhd"))
                choices = f.metadata["choices"]
                lo = AT_LEAST.get(name)
                if (choices and v not in choices) or (lo is not None and (v < lo[0] or (lo[1] and v == lo[0]))):
                    raise ValueError(opts[name])
            except ValueError:
                allowed = (f" (one of {', '.join(map(str, f.metadata['choices']))})" if f.metadata["choices"] else
                           f" (at least {AT_LEAST[name][0]})" if name in AT_LEAST else "")
                raise ConfigError(f"{opt_file} says {name}: {opts[name]!r}, which is not a valid value{allowed}: "
                                  f"pass --{name} with the value the run was trained with to import_reference"
                                  ) from None
            args[name] = v
            taken.append(name)
        shown = list(taken)
        if opts.get("fp16") == "True" and "precision" not in args:
            args["precision"] = "fp16"
            shown.append("fp16 (as --precision fp16)")
        if "dataroot" not in args and opts.get("dataroot", "None") not in ("", "None"):
            _printable_option(opt_file, "dataroot", opts["dataroot"])
            shown.append("dataroot")
    telltales = encode_features_telltales(src, opts) if opts else []
    if args.get("netG") != "local" and "niter_fix_global" in taken:
        # NVIDIA's global runs record it too (it only acts with netG local): not ours to refuse
        del args["niter_fix_global"]
        taken.remove("niter_fix_global")
        shown.remove("niter_fix_global")
    elif "niter_fix_global" in taken and args["niter_fix_global"] and args.get("stage", "local") != "local":
        raise ConfigError(f"{opt_file} says niter_fix_global {args['niter_fix_global']}, which only the local stage "
                          f"reads (it fixes the global generator for that many epochs), and --stage {args['stage']} "
                          f"was given: pass --niter_fix_global 0 to import it as a {args['stage']} stage, or leave "
                          f"out --stage {args['stage']}")
    if "lambda_feat" in taken and args.get("no_ganFeat_loss") and args.get("no_vgg_loss"):
        # it weighs the feature-matching and VGG losses, and this run trained neither: nothing reads
        # it (given here, a value other than the default would be refused as an unused option)
        del args["lambda_feat"]
        taken.remove("lambda_feat")
        shown.remove("lambda_feat")
    # E's options without an encoder, the photo channels with label maps: NVIDIA's opt.txt records
    # them all, and resolved() refuses them as given and unread. They are set after it: what opt.txt
    # says, checked against the weights (an opt.txt rewritten by encode_features.py says instance_feat
    # False, and its E's nef and n_downsample_E are then compared with the E there)
    unread = ([k for k in ("feat_num", "nef", "n_downsample_E")
               if not (args.get("instance_feat") or args.get("label_feat"))]
              + (["input_nc"] if args.get("label_nc", default_of(fields["label_nc"], "pix2pixhd")) else []))
    recorded = {k: args.pop(k) for k in unread if k in taken}
    args.setdefault("stage", "local" if args.get("netG") == "local" else "global")
    args.setdefault("name", src.resolve().name)   # NVIDIA's --name: its run folder's name
    try:
        cfg = TrainConfig(**args).resolved()
        for k, v in recorded.items():
            setattr(cfg, k, v)
    except (UserError, ValueError) as e:
        import re
        msg = str(e)
        named = next((n for n in taken if re.search(rf"(--{n}\b|\b{n}=)", msg)), None)
        if named is None:
            if isinstance(e, UserError):
                raise
            raise ConfigError(msg) from e
        # a value the user did not type: say where it came from
        msg += f" ({named} {opts[named]} is {opt_file}'s: pass --{named} to import_reference to give another)"
        raise (type(e) if isinstance(e, UserError) else ConfigError)(msg) from e

    def said(names: list[str], values: list) -> str:
        """Where these values of ``cfg`` came from: the command line, opt.txt or the defaults."""
        by = {"given": [], "opt": [], "default": []}
        for n, v in zip(names, values):
            by["given" if n in given else "opt" if n in taken else "default"].append((n, v))
        parts = []
        if by["given"]:
            parts.append(" ".join(_flag(n, v) for n, v in by["given"]) + (" were" if len(by["given"]) > 1 else " was")
                         + " given")
        if by["opt"]:
            parts.append("opt.txt says " + ", ".join(f"{n} {opts[n]}" for n, _ in by["opt"]))
        if by["default"]:
            shown_defaults = ", ".join(f"{n} {str(v)}" for n, v in by["default"])
            several = len(by["default"]) > 1
            parts.append(f"the default{'s' if several else ''} {shown_defaults} {'were' if several else 'was'} assumed"
                         + ("" if not opts else " (not in opt.txt)"))
        return "; ".join(parts)

    statements, flags, alternatives = _contradictions(cfg, states, files, said)
    netG = (reference_architecture(states["G"], "G") or {"netG": cfg.netG})["netG"]
    missing = [n for n in TRAINING_ONLY if n not in given and (n != "niter_fix_global" or netG == "local")]
    if statements or (telltales and missing):
        fix = " ".join(flags + (alternatives[0] if len(alternatives) == 1 else []))
        if len(alternatives) > 1:
            fix += (" and " if fix else "") + "one of: " + " | ".join(" ".join(a) for a in alternatives)
        elif statements and not fix:   # input channels that no label_nc/boundary/features make up
            fix = "the options it was trained with"
        if telltales:
            fix += "".join(f" --{n} true|false" if isinstance(getattr(cfg, n), bool) else f" --{n} N" for n in missing)
            head = (f"{opt_file} was probably rewritten by NVIDIA's encode_features.py (or "
                    "precompute_feature_maps.py), which save the options of their own command line over the "
                    f"training's, instance_feat False among them: {src} holds {', '.join(telltales)}, which only a "
                    "run trained with --instance_feat or --label_feat leaves")
            script = ", ".join(f"{n} {opts[n]}" for n in missing if n in opts)
            tail = (f": pass the training's options to import_reference as trained: {fix.strip()}"
                    + (f" (opt.txt's {script} are the script's; the weights do not show them)" if script else ""))
            raise ConfigError(head + "".join(f"; {s}" for s in statements) + tail)
        head = (f"the weights in {src} do not fit the options" if opts else
                f"{src} has no opt.txt, so our defaults were assumed, and its weights do not fit them")
        raise ConfigError(f"{head}: " + "; ".join(statements) + f": pass {fix} to import_reference"
                          + (" (its options override opt.txt's)" if opts else
                             "; the training options (niter, niter_decay, lr...) are the defaults too: pass "
                             "them as trained"))
    notes = []
    if "dataroot" in shown:
        cfg.dataroot, note = _reference_dataroot(src, opts)
        notes += [note] if note else []
    out = cfg.experiment_dir
    _check_apart(src, out, given)
    # chosen and read before anything is written: several files without one for n_clusters, or
    # centres of another width than the run's feat_num, are refused
    clusters = find_reference_clusters(src, cfg.n_clusters) if cfg.use_features else None
    if clusters is not None:
        whose = ("opt.txt's feat_num" if "feat_num" in taken else "--feat_num" if "feat_num" in args
                 else "the default feat_num")
        centers = checked_reference_clusters(clusters[0], cfg.feat_num, whose, out, label_nc=cfg.label_nc)
    try:
        check_new_run(cfg)
    except RunExistsError:   # its advice (--resume) is train_hd.py's: give the import's own
        from pix2pixhd.run_folder import reference_files, run_files
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(run_files(out) or reference_files(out))}): to import into another folder, "
            f"choose a --name other than {cfg.name!r}; to replace that run, add --overwrite (it is kept as "
            f"{out.name}.replaced-TIME until the import is written, then deleted); to continue it instead, "
            f"train it: python train_hd.py --resume --name {cfg.name} --checkpoints_dir "
            f"{cfg.checkpoints_dir}") from None

    from pix2pixhd.checkpoint import environment
    state = {"config": cfg.to_dict(), "version": __version__, "imported_from": str(src.resolve()),
             "environment": environment(torch.device("cpu"))}   # provenance of the import, as a save records
    for key, net in (("G", build_generator(cfg)), ("D", build_discriminator(cfg)), ("E", build_encoder(cfg))):
        f = src / files[key]
        if net is None:
            continue
        if states[key] is None:
            if key == "E":
                raise MissingInputError(f"{f} not found, and the run uses instance features "
                                        "(instance_feat or label_feat): the encoder is needed")
            state[key] = None   # the reference's released models hold G alone
            continue
        state[key] = load_reference_weights(net, states[key], source=str(f)).state_dict()
    epoch, epoch_iter = 1, 0
    iter_file = src / "iter.txt"
    if iter_file.is_file() and which_epoch == "latest":
        try:
            # np.savetxt(path, (epoch, epoch_iter), delimiter=',', fmt='%d') writes one number a
            # line ("2\n4\n"); "2,4" (a hand edit) is read too
            epoch, epoch_iter = (int(v) for v in iter_file.read_text().replace(",", " ").split())
        except ValueError:
            raise ConfigError(f"{iter_file}: {iter_file.read_text()[:40]!r} is not 'epoch,iteration' "
                              "as the reference writes it") from None
        # the reference trains epochs 1..niter+niter_decay and writes (epoch + 1, 0) after the last;
        # epoch_iter counts the samples of that epoch trained (an epoch past these would also
        # overflow the 64-bit seeds a resume derives from it)
        last = cfg.niter + cfg.niter_decay + 1
        if not 1 <= epoch <= last or not 0 <= epoch_iter < 2**31:
            raise ConfigError(f"{iter_file}: epoch {epoch}, iteration {epoch_iter} is not a position of this run "
                              f"(epochs 1 to {last}: niter {cfg.niter} + niter_decay {cfg.niter_decay} + 1; "
                              "samples into the epoch 0 or more): the file was edited or damaged; write the "
                              "epoch and the samples into it that the run reached (e.g. '1,0' to start at its "
                              "first epoch), or give --niter/--niter_decay that cover that epoch")
    elif which_epoch != "latest":
        epoch = int(which_epoch) + 1   # {N}_net_G.pth: saved at the end of epoch N
    # the reference's epoch_iter counts samples; a step trained batchSize of them
    state.update(epoch=epoch, iter_in_epoch=epoch_iter // cfg.batchSize, samples_in_epoch=epoch_iter,
                 global_step=0)
    said_clusters, encoder = "", None
    if clusters is not None:
        from pix2pixhd.features import encoder_identity
        file, k = clusters
        # the E they belong to: a note at synthesis once the imported run trains E on
        encoder = ({"sha256": encoder_identity(state["E"]), "checkpoint": str((out / "latest.pt").resolve())}
                   if state.get("E") is not None else {})   # --load_features: no encoder of its own
        if prefix != "latest" and encoder:
            # encode_features.py records no epoch; it loads latest_net_E.pth unless given --which_epoch
            latest_e = src / "latest_net_E.pth"
            theirs = None
            if latest_e.is_file():
                try:
                    theirs = encoder_identity(load_reference_weights(build_encoder(cfg), read_state_dict(latest_e),
                                                                     source=str(latest_e)).state_dict())
                except UserError:   # not this run's encoder: not the one the clusters are kept as
                    theirs = None
            if theirs is not None and theirs != encoder["sha256"]:
                encoder = {"sha256": theirs, "checkpoint": str(latest_e.resolve())}
                notes.append(f"{file.name} records no epoch; NVIDIA's encode_features.py clusters the features of "
                             f"latest_net_E.pth unless given --which_epoch, so it is kept as latest_net_E.pth's, whose "
                             f"weights differ from {files['E']}'s: synthesis says its features may not match; to "
                             f"cluster epoch {prefix}'s encoder: python -m pix2pixhd.features encode --checkpoint "
                             f"{out}")
            elif theirs is None:
                notes.append(f"{file.name} records no epoch: it is taken as {files['E']}'s; if encode_features.py "
                             f"ran with another epoch's encoder, cluster this one's: python -m pix2pixhd.features "
                             f"encode --checkpoint {out}")
        held = sorted({v.shape[0] for v in centers.values()})
        per = (f"{held[0]}" if len(held) == 1 else f"{held[0]} to {held[-1]}") if held else "none"
        said_clusters = (f"; clusters from {file.name} ({per} per class"
                         + (f", made with n_clusters {k}" if held != [k] else "")
                         + (f"; the run's n_clusters is {cfg.n_clusters}" if k != cfg.n_clusters else "") + ")")
    elif cfg.use_features:
        said_clusters = (f"; no features_clustered_NNN.npy in {src}: cluster E's features with python -m "
                         f"pix2pixhd.features encode --checkpoint {out}")
    others = [n for n in reference_epochs(src) if str(n) != prefix]
    if others:
        shown_epochs = ", ".join(map(str, others[:6])) + (", ..." if len(others) > 6 else "")
        notes.append(f"{src} also holds epoch{'s' if len(others) > 1 else ''} {shown_epochs} (N_net_G.pth), not "
                     f"imported (a run of ours holds one of them): import one as a run of its own with python -m "
                     f"pix2pixhd.import_reference {src} --which_epoch {others[-1]} --name "
                     f"{src.resolve().name}_{others[-1]}")
    if telltales:
        rest = [f"{n} {str(getattr(cfg, n))}" for n in REWRITE_NOTED if n in taken]
        if rest:
            notes.append(f"{opt_file} looks rewritten by NVIDIA's encode_features.py: {', '.join(rest)} were taken "
                         "from it; if the training's differed, import again with them (and --overwrite)")
    summary = (f"{src} into {out}: " + ", ".join(k for k in ("G", "D", "E") if state.get(k) is not None)
               + f"; epoch {epoch}, {epoch_iter} samples into it"
               + (f"; from opt.txt: {', '.join(shown)}" if shown else
                  f"; no opt.txt: the defaults were assumed for every option not given" if not opts else "")
               + said_clusters)
    if dry_run:
        print(printable(cfg.pretty()))
        print(printable(f"dry run: would import {summary}; would write {out / 'config.json'}, {out / 'latest.pt'}"
                        + (f", {out / 'features_clustered.pt'}" if clusters is not None else "") + "; nothing written"))
        for note in notes:
            print(printable(f"note: {note}"))
        return out
    aside = move_aside(out) if cfg.overwrite else None
    if clusters is not None:
        from pix2pixhd.features import CLUSTERS_FILE, FeatureClusters
        FeatureClusters(centers={c: torch.from_numpy(v) for c, v in centers.items()},
                        # a renamed file may hold more centres than its name says: FeatureClusters.load
                        # refuses a class with more than n_clusters
                        feat_num=cfg.feat_num, n_clusters=max([clusters[1]] + [len(v) for v in centers.values()]),
                        encoder=encoder).save(out / CLUSTERS_FILE)
    return _write_import(out, state, cfg, aside, summary, notes)


def build_parser():
    """``python -m pix2pixhd.import_reference``'s parser (other arguments go to train_hd.py's)."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser(
        "python -m pix2pixhd.import_reference",
        "Import a run folder of NVIDIA's pix2pixHD (latest_net_G.pth, _D, _E, opt.txt, "
                    "iter.txt, features_clustered_NNN.npy), or with --model pix2pix|cyclegan one of the "
                    "pix2pix/CycleGAN repo (latest_net_G.pth, _D, or _G_A, _G_B, _D_A, _D_B; train_opt.txt "
                    "or opt.txt), as a run of ours. Other arguments are "
                    "train_hd.py options (--name, default NVIDIA_RUN's folder name; --checkpoints_dir; any "
                    "option overrides opt.txt's). Options the weights contradict are refused with the flags "
                    "that fit them.", usage=USAGE)
    p.add_argument("src", help="the reference's checkpoints/NAME folder (NVIDIA's, or the pix2pix/CycleGAN repo's)")
    p.add_argument("--which_epoch", default="latest", help="latest, or N for N_net_G.pth")
    p.add_argument("--dry_run", action="store_true",
                   help="check everything, print the resolved options and what would be written; write nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    import sys
    from pix2pixhd.cli import refuse_reference_only, refuse_unknown_options, train_parser
    argv = sys.argv[1:] if argv is None else list(argv)
    refuse_reference_only(argv)   # before parsing: NVIDIA's --gpu_ids 0 would take 0 as NVIDIA_RUN
    a, rest = build_parser().parse_known_args(argv)
    parser = train_parser(rest)   # a mistyped option: a usage error (status 2) before NVIDIA_RUN is read
    parser.prog, parser.usage = "python -m pix2pixhd.import_reference", USAGE
    refuse_unknown_options(parser, rest)
    import_reference_run(a.src, rest, which_epoch=a.which_epoch, dry_run=a.dry_run)
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))
