"""Command-line entry points (train_hd.py, synthesize.py): argument handling only.

The scripts call ``pix2pixhd.errors.run(train_main)``: an error the user can act on prints as one
line (``--debug`` shows its traceback); called from Python, these functions raise.

The options, their defaults and how a run's options are decided live in ``pix2pixhd.config``:
here the command line is parsed (only the options given are set) and handed to
``TrainConfig.resolved()``. Both parsers refuse abbreviations (``--ng 8`` is an error, not
``--ngf 8``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pix2pixhd.config import MODELS, TrainConfig, build_parser
from pix2pixhd.errors import ConfigError, UserError, add_debug_option

TRAIN_DESCRIPTION = """Train pix2pixHD (--stage global | local | finetune) or pix2pix (--model pix2pix).

Every option's default is shown for the model given with --model (pix2pixhd if none); a later
stage (--load_pretrain) or a resumed run (--resume) takes the options not given from the run it
loads. `train_hd.py --model pix2pix --help` shows pix2pix's defaults."""


def train_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """train_hd.py's parser, its help showing the defaults of the --model in ``argv``."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--model")
    model = pre.parse_known_args(argv or [])[0].model
    # an unknown --model is reported by the full parser, with the choices
    p = build_parser(model if model in MODELS else "pix2pixhd", description=TRAIN_DESCRIPTION)
    add_debug_option(p)   # listed beside --help; errors.run takes it off the command line
    return p


def resolve_config(argv: list[str]) -> TrainConfig:
    """The command line's TrainConfig, resolved (inherited from --load_pretrain's stage or the
    run being resumed, the model's defaults, the stage's)."""
    args = vars(train_parser(argv).parse_args(argv))
    args.pop("debug", None)   # errors.run's flag, when train_main is called with it
    try:
        return TrainConfig(**args).resolved()
    except UserError:
        raise
    except ValueError as e:   # resolved()'s checks of option values and combinations
        raise ConfigError(str(e)) from e


def train_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = resolve_config(argv)
    from pix2pixhd import distributed
    info = distributed.setup(cfg.device)
    if info.is_master:
        print(f"pix2pixhd training, {info.world_size} process(es) on {info.device}\n{cfg.pretty()}", flush=True)
        for note in cfg.notes():
            print(f"note: {note}", flush=True)
    if cfg.dry_run:
        return 0
    from pix2pixhd.trainer import Trainer
    try:
        summary = Trainer(cfg, info).fit()
    finally:
        distributed.cleanup(info)
    if info.is_master:
        print(json.dumps({k: v for k, v in summary.items()}, indent=1))
    return 0


def synthesize_parser() -> argparse.ArgumentParser:
    """synthesize.py's parser (abbreviations refused)."""
    p = argparse.ArgumentParser(description="Inputs -> images with a trained generator (pix2pixHD or pix2pix)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    p.add_argument("--checkpoint", required=True,
                   help="training run folder (config.json + *.pt); the architecture comes from it")
    p.add_argument("--which_epoch", default="latest", help="checkpoint to load: 'latest' or an epoch number")
    p.add_argument("--input", required=True,
                   help="folder of inputs: label maps (single-channel id PNGs), or images for runs "
                        "trained with --label_nc 0 (pix2pix)")
    p.add_argument("--inst", default="", help="folder of instance maps matched by file stem")
    p.add_argument("--out", required=True, help="output folder; PNGs named after the inputs")
    p.add_argument("--real", default="", help="folder of real photos: adds an HTML page and L1/PSNR")
    p.add_argument("--batch_size", type=int, default=4, help="images per generator call (same-size inputs)")
    p.add_argument("--how_many", type=int, default=0, help="at most this many inputs; 0 = all")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="number format of the generator (autocast); auto = bf16 on CUDA, fp32 on CPU")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                   help="run the PyTorch generator or its ONNX export (onnxruntime)")
    p.add_argument("--onnx_path", default="", help="ONNX file for --backend onnx; empty = CHECKPOINT/generator.onnx")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--no_test_dropout", action="store_true",
                   help="pix2pix: switch the U-Net's dropout off (default on at test time, as the paper)")
    f = p.add_argument_group("feature encoder (runs trained with --instance_feat / --label_feat)")
    f.add_argument("--feature_mode", default="sample", choices=("sample", "cluster", "encoded"),
                   help="sample: a saved cluster per instance; cluster: the --cluster centre(s); "
                        "encoded: E's encoding of the --real photos")
    f.add_argument("--cluster", default="", help="--feature_mode cluster: K for every class, or class=K pairs "
                                                 "(26=3,24=1; other classes sampled)")
    f.add_argument("--use_encoded_image", action="store_true", help="reference name of --feature_mode encoded")
    f.add_argument("--seed", type=int, default=0, help="seed (integer) of the sampled clusters, per image by file name")
    return p


def synthesize_main(argv: list[str] | None = None) -> int:
    from pix2pixhd.synthesis import Synthesizer, load_generator, synthesize_folder
    p = synthesize_parser()
    a = p.parse_args(argv)
    if a.use_encoded_image:
        a.feature_mode = "encoded"
    if a.cluster and a.feature_mode == "sample":
        a.feature_mode = "cluster"
    from pix2pixhd.distributed import resolve_device
    device = resolve_device(a.device)
    g, cfg = load_generator(a.checkpoint, a.which_epoch, device, test_dropout=not a.no_test_dropout)
    if a.backend == "onnx":
        from pix2pixhd.export import OnnxGenerator
        g = OnnxGenerator(a.onnx_path or str(Path(a.checkpoint) / "generator.onnx"))
    if not cfg.no_instance and cfg.label_nc > 0 and not a.inst:
        print("note: no --inst folder: instance boundaries are taken from the label map")
    features = None
    if cfg.use_features:
        from pix2pixhd.features import FeatureSource
        if a.feature_mode == "encoded" and not a.real:
            raise SystemExit("--feature_mode encoded needs --real FOLDER: the photos E encodes")
        features = FeatureSource.from_checkpoint(a.checkpoint, cfg, a.feature_mode, which_epoch=a.which_epoch,
                                                 cluster=a.cluster or None, seed=a.seed, device=device)
    synth = Synthesizer(g, cfg, device, precision=a.precision, features=features)
    rep = synthesize_folder(synth, Path(a.input), Path(a.out), inst_dir=Path(a.inst) if a.inst else None,
                            batch_size=a.batch_size, how_many=a.how_many, progress=not a.no_progress,
                            image_dir=Path(a.real) if a.real else None)
    for path, why in rep.skipped:
        print(f"skipped {path}: {why}")
    print(f"wrote {len(rep.written)} images to {a.out} in {rep.seconds:.2f} s "
          f"({rep.images_per_s:.2f} images/s on {device}); skipped {len(rep.skipped)}")
    if a.real:
        from pix2pixhd.report import compare_folders, write_comparison_page
        stats = compare_folders(Path(a.out), Path(a.real))
        page = write_comparison_page(Path(a.out), Path(a.input), Path(a.real), cfg.label_nc, stats)
        print(f"vs {a.real}: L1 {stats['l1']:.4f}  pooled PSNR {stats['pooled_psnr']:.2f} dB over {stats['n']} images; page {page}")
    return 0 if rep.written or not rep.skipped else 1
