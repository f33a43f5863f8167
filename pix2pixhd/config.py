"""Typed training configuration with NVIDIA pix2pixHD's option names and defaults.

One dataclass is the single source: the command line is generated from its fields (types and
defaults shown in --help), it is printed at start, saved as ``config.json`` beside every
checkpoint, and read back by synthesis so a checkpoint never meets the wrong architecture flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from pix2pixhd.paths import run_dir

STAGES = ("global", "local", "finetune")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    # --- experiment -------------------------------------------------------------------------
    stage: str = field(default="global", metadata={"help": "global | local | finetune",
                                                   "choices": STAGES})
    model: str = field(default="pix2pixhd", metadata={"help": "pix2pixhd | pix2pix",
                                                      "choices": ("pix2pixhd", "pix2pix")})
    name: str = field(default="label2city", metadata={"help": "experiment name (a folder in checkpoints_dir)"})
    checkpoints_dir: str = "./checkpoints"
    load_pretrain: str = field(default="", metadata={
        "help": "checkpoint folder of the previous stage (global → local, local → finetune)"})
    resume: bool = field(default=False, metadata={"help": "continue this experiment exactly from its latest checkpoint (alias --continue_train)"})
    auto_resume: bool = field(default=False, metadata={"help": "resume if this experiment has latest.pt, else start fresh (for torchrun --max_restarts)"})
    which_epoch: str = field(default="latest", metadata={"help": "checkpoint to load: latest or an epoch number"})
    seed: int = 0
    deterministic: bool = field(default=False, metadata={"help": "torch.use_deterministic_algorithms (bit-exact resume)"})
    dry_run: bool = field(default=False, metadata={"help": "print the resolved config and exit"})
    max_steps: int = field(default=0, metadata={"help": "stop (after saving latest) once this many iterations of the run have been done; 0 = no limit"})

    # --- data -------------------------------------------------------------------------------
    dataroot: str = "./datasets/cityscapes/"
    dataset_mode: str = field(default="auto", metadata={"help": "auto | cityscapes | rgb_pairs | aligned | palette"})
    phase: str = "train"
    palette: str = field(default="", metadata={"help": "decode colour label maps: 'facades', a JSON file of [r,g,b] or empty"})
    validate: str = field(default="full", metadata={"help": "check the dataset before training: full | headers | off",
                                                    "choices": ("full", "headers", "off")})
    label_nc: int = field(default=35, metadata={"help": "number of label ids; 0 for RGB inputs"})
    input_nc: int = field(default=3, metadata={"help": "input image channels when label_nc is 0"})
    output_nc: int = 3
    no_instance: bool = field(default=False, metadata={"help": "do not add the instance boundary map"})
    resize_or_crop: str = field(default="scale_width", metadata={
        "help": "resize_and_crop | crop | scale_width | scale_width_and_crop | none"})
    loadSize: int = 1024
    fineSize: int = 512
    no_flip: bool = False
    direction: str = field(default="AtoB", metadata={"choices": ("AtoB", "BtoA")})
    nThreads: int = field(default=2, metadata={"help": "data loader worker processes"})
    batchSize: int = 1
    max_dataset_size: int = field(default=0, metadata={"help": "use at most this many samples; 0 = all"})

    # --- generator ----------------------------------------------------------------------------
    netG: str = field(default="", metadata={"help": "global | local (default: from --stage)"})
    ngf: int = 64
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    norm: str = field(default="instance", metadata={"choices": ("instance", "batch")})
    norm_impl: str = field(default="auto", metadata={"help": "fused instance norm: auto | triton | ref",
                                                     "choices": ("auto", "triton", "ref")})

    # --- pix2pix (--model pix2pix) ------------------------------------------------------------
    netG_pix2pix: str = field(default="unet_256", metadata={"help": "pix2pix generator: unet_256 | unet_128 | encoder_decoder_256 | ..."})
    netD_pix2pix: str = field(default="basic", metadata={"help": "pix2pix discriminator: basic | n_layers | pixel | image"})
    lambda_L1: float = field(default=100.0, metadata={"help": "pix2pix: weight of L1 (0 = GAN only)"})
    lambda_GAN: float = field(default=1.0, metadata={"help": "pix2pix: weight of the GAN loss (0 = L1 only, no D)"})
    no_cond_D: bool = field(default=False, metadata={"help": "pix2pix: unconditional D (sees the output only)"})
    no_dropout: bool = field(default=False, metadata={"help": "pix2pix: no dropout in the U-Net"})

    # --- feature encoder ----------------------------------------------------------------------
    instance_feat: bool = field(default=False, metadata={"help": "add encoded instance features to the input"})
    label_feat: bool = field(default=False, metadata={"help": "add encoded label features to the input"})
    feat_num: int = 3
    nef: int = 16
    n_downsample_E: int = 4
    load_features: bool = field(default=False, metadata={"help": "read precomputed feature maps ({phase}_feat)"})
    n_clusters: int = 10

    # --- discriminator and losses ---------------------------------------------------------------
    ndf: int = 64
    n_layers_D: int = 3
    num_D: int = field(default=0, metadata={"help": "discriminator scales (default: 2 global, 3 local/finetune)"})
    lambda_feat: float = 10.0
    no_ganFeat_loss: bool = False
    no_vgg_loss: bool = False
    vgg_path: str = field(default="", metadata={"help": "torchvision vgg19-dcbb9e9d.pth (default: the torch hub cache)"})
    gan_mode: str = field(default="lsgan", metadata={"choices": ("lsgan", "vanilla", "hinge")})
    no_lsgan: bool = field(default=False, metadata={"help": "reference flag: same as --gan_mode vanilla"})

    # --- optimisation ---------------------------------------------------------------------------
    lr: float = 0.0002
    beta1: float = 0.5
    niter: int = field(default=100, metadata={"help": "epochs at the starting learning rate"})
    niter_decay: int = field(default=100, metadata={"help": "epochs of linear decay to zero"})
    niter_fix_global: int = field(default=0, metadata={"help": "local stage: epochs that train only the enhancer"})
    precision: str = field(default="fp32", metadata={"choices": PRECISIONS})
    channels_last: bool = False
    compile: bool = field(default=False, metadata={"help": "torch.compile the networks"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    ddp_bf16_grads: bool = field(default=False, metadata={"help": "DDP: all-reduce gradients in bf16"})

    # --- logging and saving -------------------------------------------------------------------
    print_freq: int = field(default=100, metadata={"help": "iterations between log lines / scalars"})
    display_freq: int = field(default=100, metadata={"help": "iterations between image grids"})
    save_latest_freq: int = field(default=1000, metadata={"help": "iterations between 'latest' checkpoints"})
    save_epoch_freq: int = field(default=10, metadata={"help": "epochs between numbered checkpoints"})
    no_html: bool = False
    no_tensorboard: bool = False
    no_progress: bool = False

    # ------------------------------------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """Fill the stage-dependent defaults and check the combinations."""
        c = dataclasses.replace(self)
        run_dir(c.checkpoints_dir, c.name)   # a --name that would leave checkpoints_dir: refused early
        if c.no_lsgan:
            c.gan_mode = "vanilla"
        if not c.netG:
            c.netG = "global" if c.stage == "global" else "local"
        if c.netG not in ("global", "local"):
            raise ValueError(f"netG={c.netG!r}; expected 'global' or 'local'")
        if c.num_D <= 0:
            c.num_D = 2 if c.stage == "global" else 3
        if c.resize_or_crop not in ("resize_and_crop", "crop", "scale_width",
                                    "scale_width_and_crop", "none"):
            raise ValueError(f"resize_or_crop={c.resize_or_crop!r}; expected resize_and_crop, crop, "
                             "scale_width, scale_width_and_crop or none")
        if c.stage == "finetune" and c.netG != "local":
            raise ValueError("--stage finetune trains the local generator: drop --netG global")
        if c.stage in ("local", "finetune") and not c.load_pretrain and not c.resume:
            print(f"note: --stage {c.stage} without --load_pretrain starts from random weights")
        if c.model == "pix2pix" and c.stage != "global":
            raise ValueError("--model pix2pix has one stage: drop --stage local/finetune")
        if c.instance_feat and c.label_feat:
            raise ValueError("choose one of --instance_feat and --label_feat")
        return c

    @property
    def use_features(self) -> bool:
        return self.instance_feat or self.label_feat

    @property
    def required_multiple(self) -> int:
        if self.model == "pix2pix":
            from pix2pixhd.pix2pix_networks import NETG
            return 2 ** NETG[self.netG_pix2pix][0]
        m = 2 ** self.n_downsample_global
        m = m * 2 ** self.n_local_enhancers if self.netG == "local" else m
        if self.use_features and not self.load_features:
            m = max(m, 2 ** self.n_downsample_E)  # the encoder sees the same crop
        return m

    @property
    def experiment_dir(self) -> Path:
        return run_dir(self.checkpoints_dir, self.name)   # refuses a --name that leaves checkpoints_dir

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config has unknown option(s) {unknown}; written by a newer pix2pixhd?")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a checkpoint folder holds config.json "
                                    "beside its checkpoints (written by train_hd.py)")
        return cls.from_dict(json.loads(path.read_text()))

    def pretty(self) -> str:
        default = TrainConfig()
        lines = []
        for f in fields(self):
            v = getattr(self, f.name)
            mark = "" if v == getattr(default, f.name) else "   [changed]"
            lines.append(f"{f.name:>22}: {v}{mark}")
        return "\n".join(lines)


def build_parser(cls=TrainConfig, description: str = "") -> argparse.ArgumentParser:
    """An argparse parser generated from the dataclass's fields (types and defaults shown)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(cls):
        help_ = f.metadata.get("help", " ")
        kwargs = {"default": f.default, "help": help_}
        if f.type in ("bool", bool):
            p.add_argument(f"--{f.name}", action="store_true", **kwargs)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            p.add_argument(f"--{f.name}", type=typ, choices=f.metadata.get("choices"), **kwargs)
    p.add_argument("--continue_train", dest="resume", action="store_true",
                   help="reference name of --resume")
    return p


def parse_config(argv: Optional[list[str]] = None) -> TrainConfig:
    args = build_parser(description="Train pix2pixHD: --stage global | local | finetune").parse_args(argv)
    return TrainConfig(**vars(args)).resolved()
