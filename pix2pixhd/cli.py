"""Command-line entry points (train_hd.py, synthesize.py): argument handling only."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from pix2pixhd.checkpoint import load_run_config
from pix2pixhd.config import TrainConfig, build_parser

# Fields a later stage takes from the stage it loads, unless given on the command line.
INHERITED = ("label_nc", "input_nc", "output_nc", "no_instance", "n_downsample_global",
             "n_blocks_global", "norm", "ndf", "n_layers_D", "instance_feat", "label_feat",
             "feat_num", "nef", "n_downsample_E", "dataset_mode", "direction", "model")


# pix2pix (Isola et al. 2017) defaults that differ from pix2pixHD's, applied unless given.
PIX2PIX_DEFAULTS = dict(norm="batch", gan_mode="vanilla", no_instance=True, label_nc=0,
                        resize_or_crop="resize_and_crop", loadSize=286, fineSize=256,
                        dataset_mode="aligned", no_vgg_loss=True, no_ganFeat_loss=True, num_D=1)


def _given(argv: list[str]) -> set[str]:
    return {a[2:].split("=")[0] for a in argv if a.startswith("--")}


def resolve_config(argv: list[str]) -> TrainConfig:
    """Parse, inherit the architecture of --load_pretrain's stage (or of the run being resumed)."""
    args = build_parser(description=__doc__).parse_args(argv)
    cfg = TrainConfig(**vars(args))
    given = _given(argv)
    if cfg.model == "pix2pix":
        cfg = dataclasses.replace(cfg, **{k: v for k, v in PIX2PIX_DEFAULTS.items() if k not in given})
    if cfg.auto_resume and not cfg.resume and (cfg.experiment_dir / "latest.pt").is_file():
        # An elastic restart (torchrun --max_restarts) reruns the same command line: every rank
        # sees the same latest.pt (the agent restarts all workers, so no rank is writing it).
        cfg = dataclasses.replace(cfg, resume=True, which_epoch="latest")
    src = None
    if cfg.resume:
        src = cfg.experiment_dir
    elif cfg.load_pretrain:
        src = Path(cfg.load_pretrain)
    if src is not None:
        # config.json, or the copy in the checkpoint when config.json is missing or damaged
        prev = load_run_config(src, cfg.which_epoch)
        updates = {k: getattr(prev, k) for k in INHERITED if k not in given}
        if cfg.resume:
            # a resumed run is the same run: every option not given again comes from it
            updates = {f.name: getattr(prev, f.name) for f in dataclasses.fields(TrainConfig)
                       if f.name not in given and f.name not in ("resume", "which_epoch", "dry_run", "max_steps")}
        elif cfg.stage == "local" and prev.netG == "global" and "ngf" not in given:
            updates["ngf"] = prev.ngf // 2 ** cfg.n_local_enhancers
        elif cfg.stage == "finetune":
            for k in ("ngf", "n_local_enhancers", "n_blocks_local", "netG", "num_D"):
                if k not in given:
                    updates[k] = getattr(prev, k)
        cfg = dataclasses.replace(cfg, **updates)
    return cfg.resolved()


def train_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = resolve_config(argv)
    from pix2pixhd import distributed
    info = distributed.setup(cfg.device)
    if info.is_master:
        print(f"pix2pixhd training, {info.world_size} process(es) on {info.device}\n{cfg.pretty()}", flush=True)
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


def synthesize_main(argv: list[str] | None = None) -> int:
    import argparse


    from pix2pixhd.synthesis import Synthesizer, load_generator, synthesize_folder
    p = argparse.ArgumentParser(description="Label maps → photos with a trained pix2pixHD generator",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training run folder (config.json + *.pt)")
    p.add_argument("--which_epoch", default="latest")
    p.add_argument("--input", required=True, help="folder of label maps (single-channel id PNGs)")
    p.add_argument("--inst", default="", help="folder of instance maps matched by file stem")
    p.add_argument("--out", required=True, help="output folder; PNGs named after the inputs")
    p.add_argument("--real", default="", help="folder of real photos: adds an HTML page and L1/PSNR")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--how_many", type=int, default=0, help="at most this many inputs; 0 = all")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    p.add_argument("--onnx_path", default="", help="with --backend onnx (default: CHECKPOINT/generator.onnx)")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--no_test_dropout", action="store_true",
                   help="pix2pix: switch the U-Net's dropout off (default on at test time, as the paper)")
    f = p.add_argument_group("feature encoder (runs trained with --instance_feat / --label_feat)")
    f.add_argument("--feature_mode", default="sample", choices=("sample", "cluster", "encoded"),
                   help="sample: a saved cluster per instance; cluster: the --cluster centre(s); "
                        "encoded: E's encoding of the --real photos")
    f.add_argument("--cluster", default="", help="--feature_mode cluster: K for every class, or class=K pairs "
                                                 "(26=3,24=1; other classes sampled)")
    f.add_argument("--use_encoded_image", action="store_true", help="reference name of --feature_mode encoded")
    f.add_argument("--seed", type=int, default=0, help="seed of the sampled clusters (per image, by file name)")
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
