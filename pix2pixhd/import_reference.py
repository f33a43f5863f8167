"""Import a run folder of NVIDIA's pix2pixHD as a run of ours:
``python -m pix2pixhd.import_reference NVIDIA_RUN --name NAME [train_hd.py options]``.

NVIDIA's code leaves in ``checkpoints/NAME``: ``{latest,N}_net_{G,D,E}.pth`` (plain state_dicts,
our keys: :func:`pix2pixhd.compat.load_reference_weights`), ``opt.txt`` (every option it ran
with), ``iter.txt`` (epoch, samples into it) and, after ``encode_features.py``,
``features_clustered_NNN.npy``. The run folder written here (config.json, latest.pt, and
``features_clustered.pt``) synthesizes, starts a later stage and resumes. opt.txt's ``dataroot`` is
kept as written (relative to where NVIDIA's train.py ran): ``train_hd.py --resume`` reads it, and
where it is not found says so and to pass ``--dataroot``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.errors import ConfigError, RunExistsError

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
    → {option: value as written}."""
    opts = {}
    for line in open(path, encoding="utf-8"):
        name, sep, value = line.strip().partition(": ")
        if sep and name.isidentifier():
            opts[name] = value
    return opts


def _typed(name: str, text: str, default):
    """An opt.txt value as the type of our option's default (bool from True/False)."""
    if isinstance(default, bool):
        if text not in ("True", "False"):
            raise ValueError(text)
        return text == "True"
    return type(default)(text)


def read_reference_clusters(path) -> dict[int, np.ndarray]:
    """The reference's ``features_clustered_NNN.npy`` (``np.save`` of a {class id: [k, feat_num]
    array} dict) → that dict, without running arbitrary pickled code: only numpy arrays, dtypes
    and plain containers are let through (``np.load(allow_pickle=True)`` would run anything)."""
    import pickle
    allowed = {np.zeros(1).__reduce__()[0], np.float64(1).__reduce__()[0], np.ndarray, np.dtype}
    allowed = {(f.__module__, f.__name__): f for f in allowed}
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
            if dtype != object or shape != ():
                raise CheckpointMismatchError(f"{path} holds a {dtype} array of shape {shape}, not the "
                                              "dict of cluster centres that encode_features.py saves")
            obj = _Restricted(f, encoding="latin1").load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise CheckpointMismatchError(f"{path} could not be read as a cluster file: {e}") from e
    centers = obj.item() if isinstance(obj, np.ndarray) else obj
    if not isinstance(centers, dict) or not all(
            isinstance(v, np.ndarray) and v.ndim == 2 for v in centers.values()):
        raise CheckpointMismatchError(f"{path} holds no {{class id: [k, feat_num] array}} dict")
    return {int(k): v.astype(np.float32) for k, v in centers.items()}


def checked_reference_clusters(path: Path, feat_num: int, whose: str = "opt.txt's feat_num",
                               run: Path | str = "RUN") -> dict[int, np.ndarray]:
    """:func:`read_reference_clusters`, refused when a class's centres are not ``feat_num`` wide
    (``whose``: where that value came from; ``run``: the import's folder): they were not made by
    the run's encoder, and synthesis could not paint them."""
    centers = read_reference_clusters(path)
    widths = sorted({v.shape[1] for v in centers.values()})
    if any(w != feat_num for w in widths):
        shown = " and ".join(str(w) for w in widths)
        raise CheckpointMismatchError(
            f"{path} holds cluster centres {shown} wide, but {whose} is {feat_num}: they were not made by "
            f"this run's encoder. Move {path.name} out of {path.parent} to import the run without clusters, "
            f"then cluster its encoder's features with `python -m pix2pixhd.features encode --checkpoint {run}`")
    return centers


def import_reference_run(src, argv: list[str] | None = None, *, which_epoch: str = "latest") -> Path:
    """Turn NVIDIA's run folder ``src`` (``{which_epoch}_net_G.pth``, ``_D``, ``_E``, ``opt.txt``,
    ``iter.txt``, ``features_clustered_NNN.npy``) into a run folder of ours; return its path.

    ``argv``: train_hd.py options (``--name`` and ``--checkpoints_dir`` say where); options not
    given come from ``src/opt.txt`` (:data:`IMPORTED_OPTIONS`), else our defaults, which are the
    reference's. The checkpoint written holds G (and D, E when present), the config and the epoch
    and iteration of ``iter.txt``; no optimizer state, which the reference never saved. So the run
    synthesizes (``synthesize.py --checkpoint``), starts a later stage (``--load_pretrain``), and
    continues with ``--resume`` as the reference's ``--continue_train`` did: the same weights and
    epoch, fresh Adam moments, the learning rate of that epoch.
    """
    from pix2pixhd import __version__
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.cli import train_parser
    from pix2pixhd.config import TrainConfig, default_of
    from pix2pixhd.errors import MissingInputError
    from pix2pixhd.models import build_discriminator, build_encoder, build_generator
    from pix2pixhd.run_folder import check_new_run, drop_replaced, move_aside
    src = Path(src)
    if not (which_epoch == "latest" or str(which_epoch).isdigit()):
        raise ConfigError(f"--which_epoch {which_epoch!r}: expected 'latest' or an epoch number N "
                          f"(the file N_net_G.pth in {src})")
    prefix = "latest" if which_epoch == "latest" else str(int(which_epoch))
    g_file = src / f"{prefix}_net_G.pth"
    if not g_file.is_file():
        held = sorted(p.name for p in src.glob("*_net_G.pth")) if src.is_dir() else []
        raise MissingInputError(f"{g_file} not found: not a pix2pixHD run folder, or no generator saved at "
                                f"--which_epoch {which_epoch} (it holds {held or 'none'})")
    argv = list(argv or [])
    args = {k: v for k, v in vars(train_parser(argv).parse_args(argv)).items() if v is not None}
    args.pop("debug", None)
    for flag in ("resume", "auto_resume"):
        if args.get(flag):   # it would write the import over the run there, not continue it
            raise ConfigError(f"--{flag}: an import writes a new run and continues none; to continue the "
                              f"imported run, train it: python train_hd.py --resume --name NAME "
                              "[--checkpoints_dir DIR]; to import over a run, add --overwrite")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    opt_file, taken, dataroot = src / "opt.txt", [], None
    if opt_file.is_file():
        opts = read_reference_options(opt_file)
        if opts.get("model", "pix2pixHD") != "pix2pixHD":
            raise ConfigError(f"{opt_file}: model {opts['model']!r}; only pix2pixHD runs are imported")
        for name in IMPORTED_OPTIONS:
            if name in args or name not in opts or opts[name] == "None":
                continue
            try:
                args[name] = _typed(name, opts[name], default_of(fields[name], "pix2pixhd"))
            except ValueError:
                raise ConfigError(f"{opt_file}: {name}: {opts[name]!r} is not a valid value; give "
                                  f"--{name} on the command line") from None
            taken.append(name)
        if opts.get("fp16") == "True" and "precision" not in args:
            args["precision"] = "fp16"
        if "dataroot" not in args and opts.get("dataroot", "None") not in ("", "None"):
            # relative to the folder NVIDIA's train.py ran in, which is not recorded: kept as
            # written (not made absolute here), so that train_hd.py --resume run from that folder
            # finds it, and elsewhere says it was not found and to pass --dataroot
            dataroot = opts["dataroot"]
            taken.append("dataroot")
    if args.get("netG") != "local" and "niter_fix_global" in taken:
        # NVIDIA's global runs record it too (it only acts with netG local): not ours to refuse
        del args["niter_fix_global"]
        taken.remove("niter_fix_global")
    args.setdefault("stage", "local" if args.get("netG") == "local" else "global")
    try:
        cfg = TrainConfig(**args).resolved()
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if dataroot is not None:
        cfg.dataroot = dataroot
    out = cfg.experiment_dir
    if out.resolve() == src.resolve():   # --overwrite would move the source aside, then read it
        raise ConfigError(f"the import of {src} would be written into {src} itself: choose a --name (or "
                          "--checkpoints_dir) whose folder is another")
    # chosen and read before anything is written: several files without one for n_clusters, or
    # centres of another width than the run's feat_num, are refused
    clusters = find_reference_clusters(src, cfg.n_clusters) if cfg.use_features else None
    if clusters is not None:
        whose = ("opt.txt's feat_num" if "feat_num" in taken else "--feat_num" if "feat_num" in args
                 else "the default feat_num")
        centers = checked_reference_clusters(clusters[0], cfg.feat_num, whose, out)
    try:
        check_new_run(cfg)
    except RunExistsError:   # its advice (--resume) is train_hd.py's: give the import's own
        from pix2pixhd.run_folder import reference_files, run_files
        out = cfg.experiment_dir
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(run_files(out) or reference_files(out))}): to import into another folder, "
            f"choose a --name other than {cfg.name!r}; to replace that run, add --overwrite (it is kept as "
            f"{out.name}.replaced-TIME until the import is written, then deleted); to continue it instead, "
            f"train it: python train_hd.py --resume --name {cfg.name} --checkpoints_dir "
            f"{cfg.checkpoints_dir}") from None
    out = cfg.experiment_dir
    aside = move_aside(out) if cfg.overwrite else None

    state = {"config": cfg.to_dict(), "version": __version__, "imported_from": str(src.resolve())}
    for key, net in (("G", build_generator(cfg)), ("D", build_discriminator(cfg)), ("E", build_encoder(cfg))):
        f = src / f"{prefix}_net_{key}.pth"
        if net is None:
            continue
        if not f.is_file():
            if key == "E":
                raise MissingInputError(f"{f} not found, and the run uses instance features "
                                        "(instance_feat or label_feat): the encoder is needed")
            state[key] = None   # the reference's released models hold G alone
            continue
        state[key] = load_reference_weights(net, f).state_dict()
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
    elif which_epoch != "latest":
        epoch = int(which_epoch) + 1   # {N}_net_G.pth: saved at the end of epoch N
    # the reference's epoch_iter counts samples; a step trained batchSize of them
    state.update(epoch=epoch, iter_in_epoch=epoch_iter // cfg.batchSize, samples_in_epoch=epoch_iter,
                 global_step=0)
    said = ""
    if clusters is not None:
        from pix2pixhd.features import CLUSTERS_FILE, FeatureClusters, encoder_identity
        file, k = clusters
        # the E they belong to: a note at synthesis once the imported run trains E on
        encoder = {"sha256": encoder_identity(state["E"]), "checkpoint": str((out / "latest.pt").resolve())}
        FeatureClusters(centers={c: torch.from_numpy(v) for c, v in centers.items()},
                        feat_num=cfg.feat_num, n_clusters=k, encoder=encoder).save(out / CLUSTERS_FILE)
        held = sorted({v.shape[0] for v in centers.values()})
        per = (f"{held[0]}" if len(held) == 1 else f"{held[0]} to {held[-1]}") if held else "none"
        said = (f"; clusters from {file.name} ({per} per class"
                + (f", made with n_clusters {k}" if held != [k] else "")
                + (f"; the run's n_clusters is {cfg.n_clusters}" if k != cfg.n_clusters else "") + ")")
    elif cfg.use_features:
        said = (f"; no features_clustered_NNN.npy in {src}: cluster E's features with python -m "
                f"pix2pixhd.features encode --checkpoint {out}")
    save_checkpoint(state, out, "latest", cfg.to_json())
    if aside is not None:
        drop_replaced(aside)
    print(f"imported {src} into {out}: " + ", ".join(k for k in ("G", "D", "E") if state.get(k) is not None)
          + f"; epoch {epoch}, {epoch_iter} samples into it"
          + (f"; from opt.txt: {', '.join(taken)}" if taken else "; no opt.txt: options from the command line "
             "and the defaults") + said)
    return out


def build_parser():
    """``python -m pix2pixhd.import_reference``'s parser (other arguments go to train_hd.py's)."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser(
        "python -m pix2pixhd.import_reference",
        "Import a run folder of NVIDIA's pix2pixHD (latest_net_G.pth, _D, _E, opt.txt, "
                    "iter.txt, features_clustered_NNN.npy) as a run of ours. Other arguments are "
                    "train_hd.py options (--name, --checkpoints_dir; any option overrides opt.txt's).")
    p.add_argument("src", help="the reference's checkpoints/NAME folder")
    p.add_argument("--which_epoch", default="latest", help="latest, or N for N_net_G.pth")
    return p


def main(argv: list[str] | None = None) -> int:
    a, rest = build_parser().parse_known_args(argv)
    import_reference_run(a.src, rest, which_epoch=a.which_epoch)
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))
