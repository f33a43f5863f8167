"""Typed configuration: every training option, its defaults for every model, and how a run's
options are decided. NVIDIA pix2pixHD's option names and defaults; pix2pix's where they differ.

``TrainConfig`` is the single source. Each field is declared with :func:`option`: its group,
its default (per model where models differ) and its help. A field's value is ``None`` until
:meth:`TrainConfig.resolved` fills it; ``None`` means "not given by the user", so the one
resolution step can decide, in this order, for every option the user did not give:

  1. a resumed run (``resume``, or ``auto_resume`` when ``latest.pt`` exists) takes it from the
     run's own config; a later stage (``load_pretrain``) takes the architecture options of the
     stage it loads (``INHERITED``, and per stage ``ngf`` etc.);
  2. otherwise the default of the run's model (``--model pix2pix`` and ``--model cyclegan``
     have their own);
  3. the stage decides ``netG`` and ``num_D`` when they are left at "from the stage" (and an
     explicit ``netG="local"`` decides a stage not given: NVIDIA's command lines have no --stage);
  4. then every number is checked against its range (``AT_LEAST``), and the combinations.

So ``TrainConfig(model="pix2pix").resolved()`` in Python is exactly what
``train_hd.py --model pix2pix`` resolves: the command line (``build_parser``) only collects the
options given. The resolved config is printed at start, saved as ``config.json`` beside every
checkpoint and read back by synthesis, so a checkpoint never meets the wrong architecture flags.
``DataConfig`` is the typed subset the dataset reads (``TrainConfig.data_config()``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from pix2pixhd.argparsing import RawDescriptionHelpFormatter
from pix2pixhd.errors import ConfigError, MissingInputError, UserError, env_flag, has_unprintable, loads_json, printable
from pix2pixhd.paths import run_dir


class NewerConfigError(UserError, ValueError):
    """A saved config with options this version does not know: written by a newer pix2pixhd."""


def _version() -> str:
    try:
        from pix2pixhd import __version__
        return f"pix2pixhd {__version__}"
    except ImportError:
        return "pix2pixhd"


STAGES = ("global", "local", "finetune")
MODELS = ("pix2pixhd", "pix2pix", "cyclegan")
# Other spellings of --model read as ours (names are read in lower case, so NVIDIA's pix2pixHD is
# pix2pixhd): the pix2pix/CycleGAN repo's cycle_gan. See model_name.
MODEL_ALIASES = {"cycle_gan": "cyclegan"}
# Version of the saved config's meaning (config.json, checkpoints): 2 = pix2pixHD reads lambda_L1
# (format 1 stored pix2pix's 100 there, unused by pix2pixHD; TrainConfig.from_dict reads it as 0);
# 3 = direction BtoA swaps the {phase}_A/{phase}_B folders (rgb_pairs), which formats 1-2 read as
# A to B whatever direction said (see DIRECTION_FOLDERS_FORMAT).
CONFIG_FORMAT = 3
DIRECTION_FOLDERS_FORMAT = 3
PRECISIONS = ("fp32", "bf16", "fp16")
UPSAMPLE_MODES = ("transpose", "resize")   # the generators' x2 upsampling (pix2pixhd.networks)
RESIZE_OR_CROP = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

# Option groups, in --help order: name -> the title argparse shows.
GROUPS = {
    "experiment": "experiment (what runs, where it is saved, how it continues)",
    "data": "data (dataset layout, preprocessing, loading)",
    "generator": "generator (and the instance feature encoder)",
    "discriminator": "discriminator",
    "losses": "losses",
    "optimisation": "optimisation (Adam, epochs, learning-rate schedule)",
    "precision/scale": "precision/scale (number format, memory layout, devices, kernels)",
    "logging": "logging and saving",
}

# Options a later stage takes from the stage it loads (--load_pretrain), unless given.
# palette with label_nc and dataset_mode: how a label map's pixels are read is part of what G was
# trained on (a later stage without it would read colour or P-mode maps as ids). load_features with
# instance_feat: a stage after a --load_features one has no E to load, so it reads the maps too.
# netG_pix2pix ... no_dropout: pix2pix's and CycleGAN's networks (a run of theirs loads one of theirs).
INHERITED = ("label_nc", "input_nc", "output_nc", "no_instance", "n_downsample_global",
             "n_blocks_global", "upsample", "norm", "ndf", "n_layers_D", "instance_feat", "label_feat",
             "feat_num", "nef", "n_downsample_E", "load_features", "dataset_mode", "palette", "direction",
             "model", "netG_pix2pix", "netD_pix2pix", "no_cond_D", "no_dropout")
# ... its loss recipe (a global stage trained with --no_vgg_loss, because no VGG19 file is at hand,
# gives a local stage without it too; the NVIDIA scripts repeat these flags, which still works;
# pix2pix's lambda_GAN 0 also means no D to load) ...
INHERITED_LOSSES = ("gan_mode", "no_lsgan", "lambda_feat", "no_ganFeat_loss", "no_vgg_loss", "vgg_path",
                    "lambda_L1", "lambda_GAN", "lambda_A", "lambda_B", "lambda_identity")
# ... and, where its networks load whole (every pair of stages but global -> local, whose G and D
# grow), the rest of their shapes.
LOADED_WHOLE = ("ngf", "n_local_enhancers", "n_blocks_local", "netG", "num_D")
# Options that shape the networks a checkpoint holds: a resumed run keeps its own (a different
# value given with --resume is refused by name, instead of a state_dict's shape mismatches).
ARCHITECTURE = ("model", "netG", "ngf", "n_downsample_global", "n_blocks_global",
                "n_local_enhancers", "n_blocks_local", "upsample", "norm", "netG_pix2pix",
                "instance_feat", "label_feat", "feat_num", "nef", "n_downsample_E", "netD_pix2pix",
                "ndf", "n_layers_D", "num_D", "no_cond_D", "label_nc", "input_nc", "output_nc",
                "no_instance")
# ... and the options that decide whether a network is there (pix2pix's D, the feature encoder):
# one given to a stage that the weights it loads do not fit is refused by name (_check_loads).
SHAPING = ARCHITECTURE + ("lambda_GAN", "load_features")
# Options only some models use (the others' steps never read them): a value given for another
# model, other than that model's default, is refused by name instead of being silently ignored
# (netD_pix2pix and netG_pix2pix at any value where --model was left out: _check_model_only).
MODEL_ONLY = {
    "num_D": ("pix2pixhd",), "lambda_feat": ("pix2pixhd",), "no_ganFeat_loss": ("pix2pixhd",),
    "no_vgg_loss": ("pix2pixhd",), "vgg_path": ("pix2pixhd",),
    "lambda_L1": ("pix2pixhd", "pix2pix"), "lambda_GAN": ("pix2pix",), "no_cond_D": ("pix2pix",),
    "netD_pix2pix": ("pix2pix", "cyclegan"), "netG_pix2pix": ("pix2pix", "cyclegan"),
    "no_dropout": ("pix2pix", "cyclegan"),
    "lambda_A": ("cyclegan",), "lambda_B": ("cyclegan",), "lambda_identity": ("cyclegan",),
    "pool_size": ("cyclegan",),
    # pix2pixHD's generator and feature encoder (pix2pix and CycleGAN build theirs from netG_pix2pix)
    **{k: ("pix2pixhd",) for k in ("n_downsample_global", "n_blocks_global", "n_local_enhancers",
                                  "n_blocks_local", "instance_feat", "label_feat", "feat_num", "nef",
                                  "n_downsample_E")},
}
# Options a resumed run keeps: a different value would train another task on the same weights.
KEPT_ON_RESUME = ("direction",)
# Options a resumed run does not take from the run it resumes: they say how to continue it.
NOT_RESUMED = ("resume", "which_epoch", "dry_run", "max_steps", "overwrite")
# Options a resumed run may be given with another value than its own and still train as it would
# have: which run and how this launch continues it (stage, load_pretrain, ARCHITECTURE and
# KEPT_ON_RESUME are checked apart); where files are, not what they hold (vgg_path); what
# is checked, logged and saved; where the same arithmetic runs (device, loader processes: the
# samples come from seed, epoch and index); n_clusters (read by features encode, after training);
# no_lsgan (gan_mode, compared, says it). niter and niter_decay are compared by the learning rate
# of each epoch already trained (a longer run keeps its past schedule). Any other option given
# with another value is named in a note (TrainConfig.notes): channels_last, norm_impl and compile
# among them (the memory layout, the norm kernels and inductor's fused code round otherwise), and
# ddp_bf16_grads under torchrun (in one process it changes nothing: not named). dataroot is named
# in a note of its own (the data may have moved: it is not refused).
SAME_TRAINING = ("name", "checkpoints_dir", "load_pretrain", "stage", "resume", "auto_resume", "overwrite",
                 "which_epoch", "dry_run", "max_steps", "dataroot", "vgg_path", "validate", "print_freq",
                 "display_freq", "save_latest_freq", "save_epoch_freq", "keep_epoch_checkpoints", "no_html",
                 "no_tensorboard", "no_progress", "device", "deterministic", "nThreads",
                 "n_clusters", "no_lsgan", "niter", "niter_decay")
# --seed's range: numpy's seeds are 32-bit, and the seeds derived from it (data order
# seed * 1_000_003 + epoch, the image pools', per-sample default_rng([seed, epoch, index]), which
# needs it non-negative) stay within torch's 64-bit seeds.
SEED_MAX = 2**32 - 1

# Ranges of the numeric options: name -> (lowest allowed, whether the lowest is excluded). A value
# outside is refused by resolved() with the option, the value and the range, before anything runs
# or is written (a --print_freq 0 used to divide by zero after config.json was saved).
AT_LEAST = {
    **{k: (1, False) for k in ("batchSize", "print_freq", "display_freq", "save_latest_freq",
                               "save_epoch_freq", "ngf", "ndf", "nef", "feat_num", "n_clusters",
                               "n_layers_D", "n_local_enhancers", "loadSize", "fineSize", "input_nc",
                               "output_nc")},
    **{k: (0, False) for k in ("nThreads", "niter", "niter_decay", "niter_fix_global", "max_steps",
                               "max_dataset_size", "label_nc", "num_D", "n_blocks_global",
                               "n_blocks_local", "n_downsample_global", "n_downsample_E", "pool_size",
                               "lambda_feat", "lambda_L1", "lambda_GAN", "lambda_A", "lambda_B",
                               "lambda_identity", "keep_epoch_checkpoints")},
    "lr": (0, True),
}

# The reference's options (NVIDIA pix2pixHD's, the pix2pix/CycleGAN repo's) train_hd.py has no
# option for: what to use instead. train_hd.py refuses each with this one line (not argparse's
# usage and "unrecognized arguments"). A callable takes the value given (None: none given).
REFERENCE_ONLY = {
    "gpu_ids": "the device is --device (auto | cpu | cuda | cuda:N); several GPUs: "
               "torchrun --nproc_per_node=N train_hd.py ... (DDP, one process per GPU)",
    "fp16": "use --precision fp16 (torch.amp with a GradScaler; --precision bf16 needs no scaler)",
    "data_type": lambda v: ("use --precision fp16" if v == "16" else
                            "fp32 is the default: drop --data_type" if v == "32" else
                            "--precision takes fp32, bf16 or fp16 (no 8-bit training)"),
    "tf_log": "TensorBoard event files are written by default (--no_tensorboard switches them off): "
              "drop --tf_log",
    "serial_batches": "no equivalent: the data order is shuffled from --seed, the same on every "
                      "run with that seed and restored on --resume",
    "display_winsize": "not needed: the HTML page and TensorBoard show the images at their size; "
                       "drop --display_winsize",
    "use_dropout": "pix2pix's and CycleGAN's G have dropout unless --no_dropout (pix2pix: on by "
                   "default; CycleGAN: --no_dropout false switches it on); pix2pixHD's G has none",
    "verbose": "not needed: the resolved options are printed at start (--dry_run prints them and "
               "exits); drop --verbose",
    "local_rank": "torchrun sets LOCAL_RANK in each process's environment, which is read from "
                  "there: drop --local_rank",
    # the pix2pix/CycleGAN repo's later names of options this project keeps under the first ones
    "preprocess": lambda v: (f"use --resize_or_crop {v}" if v in RESIZE_OR_CROP else
                             f"use --resize_or_crop, one of {', '.join(RESIZE_OR_CROP)}"),
    "load_size": "use --loadSize (the reference's first name for it)",
    "crop_size": "use --fineSize (the reference's first name for it)",
    "n_epochs": "use --niter (epochs at the initial learning rate)",
    "n_epochs_decay": "use --niter_decay (epochs of linear decay to 0)",
    "batch_size": "use --batchSize (images per step, per process)",
    "num_threads": "use --nThreads (data loader worker processes)",
    "init_type": lambda v: ("the weights are initialised as the reference's default (normal, std 0.02): "
                            "drop --init_type" if v in (None, "normal") else
                            f"no equivalent: weights are initialised normal (std 0.02) only, not {v}"),
    "init_gain": "no equivalent: the initial weights' std is 0.02, the reference's default",
    "lr_policy": lambda v: ("the learning rate decays linearly over --niter_decay epochs, the reference's "
                            "default: drop --lr_policy" if v in (None, "linear") else
                            f"no equivalent: the learning rate is constant for --niter epochs, then decays "
                            f"linearly to 0 over --niter_decay epochs (no {v} schedule)"),
    "lr_decay_iters": "no equivalent: only the linear decay (--niter, --niter_decay) is implemented",
    "epoch_count": "no equivalent: a run continues with --resume, which restores its epoch, learning "
                   "rate and optimizer",
    # NVIDIA's test.py options (its test options extend the training ones): synthesize.py's work, not
    # training's. Left to argparse, --ntest was "did you mean --netG?", --cluster_path "did you mean
    # --n_clusters?" (which sets how many clusters the features command makes, not a file to read).
    "ntest": "it is a test option: synthesize.py --checkpoint RUN --dataroot DATASET --phase test --out OUT "
             "--how_many N synthesizes the first N test inputs",
    "how_many": "it is a test option: synthesize.py --checkpoint RUN --dataroot DATASET --phase test --out OUT "
                "--how_many N synthesizes the first N test inputs",
    "results_dir": "it is a test option: synthesize.py --checkpoint RUN --dataroot DATASET --phase test --out OUT "
                   "writes the synthesized dataset to OUT (--out)",
    "cluster_path": "it is a test option: synthesize.py --checkpoint RUN --clusters FILE samples the features from "
                    "a clusters FILE (python -m pix2pixhd.features encode writes one); NVIDIA's "
                    "features_clustered_NNN.npy comes in with its run: python -m pix2pixhd.import_reference "
                    "NVIDIA_RUN --name NAME",
    "use_encoded_image": "it is a test option: synthesize.py --checkpoint RUN --feature_mode encoded (or "
                         "--use_encoded_image) encodes the real photos (--real, or the --dataroot's) with the "
                         "run's feature encoder",
    "aspect_ratio": "no equivalent: synthesize.py writes each output at its input's size and aspect ratio "
                    "(--scale_width resizes to a width, keeping it): drop --aspect_ratio",
    "export_onnx": "it is a test option: python -m pix2pixhd.export --checkpoint RUN (--out FILE) exports the "
                   "generator to ONNX, which synthesize.py --backend onnx runs",
    "onnx": "it is a test option: synthesize.py --checkpoint RUN --backend onnx --onnx_path FILE runs the "
            "generator's ONNX export (python -m pix2pixhd.export writes it) with onnxruntime, not TensorRT",
    "engine": "no equivalent: no TensorRT engine is run here; synthesize.py --backend onnx runs the generator's "
              "ONNX export (python -m pix2pixhd.export) with onnxruntime",
}

# The pix2pix/CycleGAN repo's options (junyanz/pytorch-CycleGAN-and-pix2pix) that NVIDIA's
# pix2pixHD has not either, and this project has no option for: what to use instead, refused as
# REFERENCE_ONLY's are but naming that repo. Left to argparse, their closest spelling here sent its
# users to another option (--display_id and --display_port -> --display_freq, --load_iter ->
# --loadSize, --num_test -> --num_D), or named none.
_NO_VISDOM = ("no visdom display here: every --display_freq steps the images go to TensorBoard "
              "(--no_tensorboard: off) and to the run's HTML page, web/index.html, which keeps one set per "
              "epoch (--no_html: off): drop --")
_NO_WANDB = ("no Weights & Biases logging here: the losses and images go to TensorBoard event files and the "
             "run's HTML page (web/index.html), the losses also to loss_log.txt and loss_history.jsonl: drop --")
REPO_ONLY = {
    **{k: _NO_VISDOM + k for k in ("display_id", "display_port", "display_server", "display_env",
                                   "display_ncols")},
    "update_html_freq": "the run's HTML page (web/index.html) is written when TensorBoard gets the images, "
                        "every --display_freq steps, and at each epoch's end: drop --update_html_freq (or "
                        "give --display_freq)",
    **{k: _NO_WANDB + k for k in ("use_wandb", "wandb_project_name")},
    "load_iter": "a run's checkpoints are latest.pt and one per --save_epoch_freq epochs, none by iteration: "
                 "load one with --which_epoch (latest, or an epoch number N: epoch_NNNN.pt)",
    "save_by_iter": "latest.pt is saved every --save_latest_freq steps, epoch_NNNN.pt every --save_epoch_freq "
                    "epochs; none is named by its iteration: drop --save_by_iter",
    "suffix": "the run's folder is --name as given, with no suffix made from other options: put what it "
              "would add in --name",
    "num_test": "it is a test option: synthesize.py --checkpoint RUN --dataroot DATASET --phase test --out "
                "OUT --how_many N synthesizes the first N test inputs",
}

# Values of the pix2pix/CycleGAN repo's options that the option of the same name here has not:
# {option: {value: what it is and what to use instead}}. resolved() refuses each in one line,
# before anything runs: left to argparse (--gan_mode) it was a bare "invalid choice", and a free-text
# --dataset_mode single went as far as the dataset, a traceback after the option listing.
REPO_VALUES = {
    "dataset_mode": {
        "single": ("the pix2pix/CycleGAN repo's loader of one folder of test inputs",
                   "that is synthesis with a trained run here: python synthesize.py --checkpoint RUN --input "
                   "FOLDER --out OUT (training reads pairs, or --model cyclegan's unpaired trainA/ + trainB/)"),
        "colorization": ("the pix2pix/CycleGAN repo's grey-to-colour loader (L in, Lab's ab out)",
                         "train it as pix2pix on photo pairs: --model pix2pix --dataset_mode rgb_pairs with the "
                         "colour photos in both train_A/ and train_B/ and --input_nc 1, which reads the input "
                         "as grey (G makes RGB)"),
        "template": ("the pix2pix/CycleGAN repo's skeleton for writing a dataset class",
                     "put the data in one of these layouts (docs/data.md)"),
    },
    "gan_mode": {
        "wgangp": ("the pix2pix/CycleGAN repo's WGAN-GP (Wasserstein loss with a gradient penalty)",
                   "WGAN-GP is not implemented here: give one of these"),
    },
}


def repo_value_error(name: str, value: Any, choices: tuple) -> str | None:
    """The one-line refusal of ``--name value`` when ``value`` is one of the pix2pix/CycleGAN
    repo's values this project has not (:data:`REPO_VALUES`), naming the option's ``choices``;
    None when it is not."""
    found = REPO_VALUES.get(name, {}).get(value) if isinstance(value, str) else None
    if found is None:
        return None
    what, fix = found
    takes = f"{', '.join(map(str, choices[:-1]))} or {choices[-1]}"
    return f"--{name} {value} is {what}, which --{name} here has not (it takes {takes}): {fix}"


class _ReferenceChoices(tuple):
    """An option's choices as argparse checks them, which also lets the pix2pix/CycleGAN repo's
    values of :data:`REPO_VALUES` through: resolved() then refuses them naming what to use (argparse's
    "invalid choice" named none). --help and argparse's refusal of any other value list the choices."""

    def __new__(cls, choices: tuple, also: tuple):
        self = super().__new__(cls, choices)
        self.also = also
        return self

    def __contains__(self, value) -> bool:
        return super().__contains__(value) or value in self.also


def model_name(text: str) -> str:
    """``--model`` as typed, as ours: lower case (NVIDIA's pix2pixHD), :data:`MODEL_ALIASES`
    applied; a name that is neither is returned as it is (refused with the choices)."""
    text = text.lower()
    return MODEL_ALIASES.get(text, text)


TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_bool(text: str) -> bool:
    """A true/false option's value (``--no_flip false``): one of TRUE_WORDS or FALSE_WORDS, any
    case; other words are refused so that a typo is not read as either."""
    t = text.strip().lower()
    if t in TRUE_WORDS or t in FALSE_WORDS:
        return t in TRUE_WORDS
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false (give one of "
                                     f"{'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}; the "
                                     "option alone means true)")


# The reference's test.py options synthesize.py has no option of that name for (NVIDIA's
# test.py takes the training options; ours reads the architecture from the checkpoint).
SYNTHESIZE_REFERENCE_ONLY = {
    "name": "give the run folder: --checkpoint CHECKPOINTS_DIR/NAME",
    "checkpoints_dir": "give the run folder: --checkpoint CHECKPOINTS_DIR/NAME",
    "results_dir": "the output dataset folder is --out",
    "gpu_ids": "the device is --device (auto | cpu | cuda | cuda:N); several GPUs: torchrun "
               "--nproc_per_node=N synthesize.py ... (one shard per GPU)",
    "fp16": "use --precision fp16 (or bf16)",
    "data_type": "use --precision fp16 (or bf16)",
    "batchSize": "use --batch_size (maps per generator call)",
    "nThreads": "use --workers (decoding processes)",
    "loadSize": "to resize the maps as training's scale_width did, use --scale_width trained (or "
                "--scale_width WIDTH)",
    "resize_or_crop": "maps keep their size; to resize them as training's scale_width did, use "
                      "--scale_width trained",
    "fineSize": "maps are synthesized whole at their size: drop --fineSize",
    "cluster_path": "import NVIDIA's run with its features_clustered_NNN.npy: python -m "
                    "pix2pixhd.import_reference NVIDIA_RUN --name NAME, then --checkpoint the imported run",
    "export_onnx": "export with python -m pix2pixhd.export --checkpoint RUN (then --backend onnx)",
    # NVIDIA's runs of an ONNX file or a TensorRT engine through TensorRT; left to argparse, --onnx was
    # "did you mean --onnx_path?", which alone does not switch to the ONNX backend
    "onnx": "use --backend onnx --onnx_path FILE (onnxruntime, not TensorRT; python -m pix2pixhd.export "
            "--checkpoint RUN writes the run's export)",
    "engine": "no equivalent: no TensorRT engine is run here; --backend onnx runs the generator's ONNX export "
              "(python -m pix2pixhd.export --checkpoint RUN) with onnxruntime",
    "ntest": "use --how_many (at most this many inputs)",
    "aspect_ratio": "outputs keep each map's size and aspect: drop --aspect_ratio",
    "display_winsize": "not needed: drop --display_winsize",
    "serial_batches": "not needed: maps are read in name order",
    "no_flip": "not needed: synthesis never flips",
    **{k: "the architecture and data options come from the checkpoint's config.json: drop --" + k
       for k in ("label_nc", "no_instance", "netG", "ngf", "n_downsample_global", "n_blocks_global",
                 "n_local_enhancers", "n_blocks_local", "instance_feat", "label_feat", "feat_num",
                 "model", "norm", "input_nc", "output_nc")},
}


# The pix2pix/CycleGAN repo's test.py options (REPO_ONLY's kind) synthesize.py has no option for
# (its --phase, --eval, --batch_size and --direction are synthesize.py's too).
SYNTHESIZE_REPO_ONLY = {
    "num_test": "use --how_many (at most this many inputs, the first by name; 0 = all)",
    "dataset_mode": lambda v: (
        "give a folder of inputs with --input FOLDER (the repo's single mode), or a dataset with "
        "--dataroot DATASET --phase test; its layout is found there (the run's --dataset_mode)"
        if v in (None, "single") else
        "the layout of a --dataroot dataset is found there (the run's --dataset_mode); a folder of "
        "inputs is --input FOLDER: drop --dataset_mode"),
    "load_iter": "checkpoints are saved by epoch: use --which_epoch (latest, or an epoch number N)",
    "model_suffix": "a CycleGAN run's generator is picked with --direction (AtoB: G_A, BtoA: G_B)",
    "preprocess": "maps keep their size; to resize them as training's scale_width did, use --scale_width trained",
    "load_size": "to resize the maps as training's scale_width did, use --scale_width trained (or --scale_width WIDTH)",
    "crop_size": "maps are synthesized whole at their size: drop --crop_size",
    "num_threads": "use --workers (decoding processes)",
    "no_dropout": "the generator comes from the checkpoint; to switch pix2pix's test-time dropout off, use "
                  "--no_test_dropout",
    "max_dataset_size": "use --how_many (at most this many inputs, the first by name; 0 = all)",
    **{k: "the architecture comes from the checkpoint's config.json: drop --" + k
       for k in ("netD", "ndf", "n_layers_D")},
    **{k: "no visdom display here: the images are written to --out: drop --" + k
       for k in ("display_id", "display_port")},
    **{k: "no Weights & Biases logging here: drop --" + k for k in ("use_wandb", "wandb_project_name")},
    "suffix": "give the run folder as it is named: --checkpoint CHECKPOINTS_DIR/NAME",
}


# Whose options each command's refusals name (reference_only_error): {command: the reference's
# scripts}. A name one command refuses may be another's option (the features command refuses
# train_hd.py's --name and --label_nc, train_hd.py synthesize.py's --how_many): each line names the
# command refusing it, not the project.
REFERENCE_SCRIPTS = {
    "train_hd.py": "the reference code (NVIDIA's pix2pixHD, the pix2pix/CycleGAN repo)",
    "synthesize.py": "the reference's test.py (NVIDIA's pix2pixHD, the pix2pix/CycleGAN repo)",
    "python -m pix2pixhd.features": "the reference's encode_features.py / precompute_feature_maps.py "
                                    "(NVIDIA's pix2pixHD)",
}


def reference_only_error(name: str, value: str | None, table: dict | None = None,
                         command: str | None = None) -> str | None:
    """The one-line refusal of the reference's option ``--name`` (see REFERENCE_ONLY, or
    ``table``; then the pix2pix/CycleGAN repo's own: REPO_ONLY, or SYNTHESIZE_REPO_ONLY with
    SYNTHESIZE_REFERENCE_ONLY), or None when ``name`` is not one of them. ``command``: the command
    refusing it, which the line names with the reference's scripts of :data:`REFERENCE_SCRIPTS`
    (default: synthesize.py for SYNTHESIZE_REFERENCE_ONLY, else train_hd.py)."""
    synthesize = table is SYNTHESIZE_REFERENCE_ONLY
    command = command or ("synthesize.py" if synthesize else "train_hd.py")
    fix = (REFERENCE_ONLY if table is None else table).get(name)
    repo = None
    if fix is None:
        repo = SYNTHESIZE_REPO_ONLY if synthesize else REPO_ONLY if table is None else {}
        fix = repo.get(name)
    if fix is None:
        return None
    fix = fix(value) if callable(fix) else fix
    given = f"--{name}" + (f" {value}" if value is not None else "")
    if repo is not None:   # the pix2pix/CycleGAN repo's alone: named as its, not NVIDIA's
        return (f"{given} is an option of the pix2pix/CycleGAN repo's {'test.py' if synthesize else 'code'} "
                f"(junyanz/pytorch-CycleGAN-and-pix2pix), not of {command}: {fix}")
    scripts = REFERENCE_SCRIPTS.get(command, REFERENCE_SCRIPTS["train_hd.py"])
    return f"{given} is an option of {scripts}, not of {command}: {fix}"


def _same_path(a: str, b: str) -> bool:
    """Whether two run folders given on command lines name the same folder (from this cwd)."""
    return bool(b) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _same_previous_stage(given: str, run_folder: Path, prev: "TrainConfig") -> bool:
    """Whether ``given`` names the stage run ``run_folder`` (config ``prev``) was started from,
    found as synthesis finds it (:func:`pix2pixhd.features.previous_stage`): an older config.json
    holds load_pretrain relative to the folder the run was trained from, not to this cwd."""
    if not prev.load_pretrain or Path(prev.load_pretrain).is_absolute():
        return False
    from pix2pixhd.features import previous_stage
    try:
        found = previous_stage(run_folder, prev)
    except Exception:   # not found anywhere: the refusal below names the path as saved
        return False
    return found is not None and _same_path(given, str(found))


def _imported_from(run_folder: Path, which_epoch: str) -> str | None:
    """The NVIDIA run folder the run in ``run_folder`` was imported from (pix2pixhd.import_reference),
    as its ``which_epoch`` checkpoint records it, or None (not imported, or not readable)."""
    from pix2pixhd.checkpoint import peek_checkpoint, checkpoint_path, imported_source
    try:
        return imported_source(peek_checkpoint(checkpoint_path(run_folder, which_epoch)))
    except Exception:
        return None


def option(group: str, default: Any, help: str, *, choices: tuple | None = None,
           **model_defaults: Any) -> Any:
    """A TrainConfig field: ``None`` (not given) until resolved, then ``default`` or the
    run's model's own default (``pix2pix=...``, ``cyclegan=...``). The argparse type is the
    default's type."""
    assert group in GROUPS, group
    assert set(model_defaults) <= set(MODELS), model_defaults
    return field(default=None, metadata={"group": group, "default": default, "help": help,
                                         "choices": choices, "models": model_defaults})


def default_of(f: dataclasses.Field, model: str) -> Any:
    """Field ``f``'s default for ``model``."""
    return f.metadata["models"].get(model, f.metadata["default"])


def generator_size_multiple(model: str, netG: str, n_downsample_global: int, n_local_enhancers: int,
                            netG_pix2pix: str) -> int:
    """What each side of the generator's input must divide by: pix2pixHD's 2^n_downsample_global,
    times 2^n_local_enhancers with netG 'local'; pix2pix's and CycleGAN's, netG_pix2pix's."""
    if model in ("pix2pix", "cyclegan"):
        from pix2pixhd.pix2pix_networks import generator_multiple
        return generator_multiple(netG_pix2pix)
    return 2 ** n_downsample_global * (2 ** n_local_enhancers if netG == "local" else 1)


def lr_at_epoch(cfg: "TrainConfig", epoch: int) -> float:
    """The reference schedule: constant for ``niter`` epochs, then linear decay over ``niter_decay``.

    (The reference subtracts lr/niter_decay after each epoch past niter; this is its closed form.)
    """
    decayed = max(0, epoch - 1 - cfg.niter)
    return cfg.lr * max(0.0, 1.0 - decayed / cfg.niter_decay) if cfg.niter_decay > 0 else cfg.lr


def global_frozen_at(cfg: "TrainConfig", epoch: int) -> bool:
    """Whether the global generator is frozen at ``epoch``: the local stage (a LocalEnhancer)
    trains only the enhancer for its first ``niter_fix_global`` epochs. What the Trainer does,
    and what flops counts."""
    return (cfg.model in (None, "pix2pixhd") and cfg.stage == "local" and cfg.netG == "local"
            and epoch <= (cfg.niter_fix_global or 0))


def default_config(model: str = "pix2pixhd") -> "TrainConfig":
    """A TrainConfig holding ``model``'s default of every option, not resolved (netG '': the
    global stage's generator)."""
    return TrainConfig(**{**{f.name: default_of(f, model) for f in fields(TrainConfig)}, "model": model})


def model_defaults(model: str) -> dict[str, Any]:
    """The options whose default ``model`` changes from pix2pixHD's, with its values."""
    return {f.name: f.metadata["models"][model] for f in fields(TrainConfig) if model in f.metadata["models"]}


def loads_whole(prev: "TrainConfig", cfg: "TrainConfig") -> bool:
    """Whether a stage ``cfg`` started from ``prev`` (--load_pretrain) loads its networks whole (the
    same networks: global -> global, local -> local, -> finetune); else it grows them (global ->
    local: G's global part, D's scales by name)."""
    return cfg.stage == "finetune" or prev.netG == cfg.netG


def _loaded_misfits(prev: "TrainConfig", cfg: "TrainConfig") -> list[str]:
    """What of run ``prev``'s networks would not load whole into run ``cfg``'s (both resolved): one
    "KEY name" per state_dict entry missing, extra or of another shape ("KEY none": no such network
    there), from networks built on the meta device (no memory, no init). [] where either cannot be
    built (the trainer says why)."""
    import torch
    from pix2pixhd.models import build_discriminator, build_encoder, build_generator

    def nets(c):   # D's key layout (no_ganFeat_loss) is renamed on loading: both built alike
        c = dataclasses.replace(c, no_ganFeat_loss=cfg.no_ganFeat_loss, norm_impl="ref")
        with torch.device("meta"):
            if c.model == "cyclegan":
                return {"G_A": build_generator(c, "AtoB"), "G_B": build_generator(c, "BtoA"),
                        "D_A": build_discriminator(c, "D_A"), "D_B": build_discriminator(c, "D_B")}
            return {"G": build_generator(c), "D": build_discriminator(c), "E": build_encoder(c)}
    try:
        theirs, ours = nets(prev), nets(cfg)
    except Exception:
        return []
    out = []
    for key, net in ours.items():
        if net is None:
            continue
        if theirs.get(key) is None:
            out.append(f"{key} none")
            continue
        own, saved = net.state_dict(), theirs[key].state_dict()
        out += [f"{key} {k}" for k in own.keys() ^ saved.keys()]
        out += [f"{key} {k}" for k in own.keys() & saved.keys() if own[k].shape != saved[k].shape]
    return out


@dataclass
class TrainConfig:
    """Every option of a training run, by its train_hd.py name (``TrainConfig(model="pix2pix",
    name="facades")``).

    A field left None is not given: :meth:`resolved` decides it (inherited from the run resumed
    or --load_pretrain's, else the model's default, then the stage's) and checks the values and
    their combinations (ConfigError naming the fix). A config must be resolved before it is
    passed to ``Trainer`` or ``build_generator`` (they refuse an undecided one). Types are
    checked strictly, as on the command line: an int option refuses 2.0 or True, a float one '0.1'.
    What each field means, its unit, choices and default: ``python train_hd.py --help`` (grouped;
    README.md, "Training"), or ``dataclasses.fields(TrainConfig)[i].metadata["help"]``.
    """
    # --- experiment -------------------------------------------------------------------------
    stage: Optional[str] = option(
        "experiment", "global", "global: G1 at the lower resolution with a 2-scale D; local: the "
        "local enhancer at full resolution (from --load_pretrain's global stage); finetune: all of "
        "G jointly (from a local stage); not given: global, or local with --netG local (NVIDIA's "
        "command lines have no --stage)", choices=STAGES)
    model: Optional[str] = option(
        "experiment", "pix2pixhd", "pix2pixhd (Wang et al. 2018), pix2pix (Isola et al. 2017: "
        "U-Net, PatchGAN, L1 + cGAN) or cyclegan (Zhu et al. 2017: unpaired, two ResNet generators, "
        "two PatchGANs, cycle loss); each has its own defaults (see --model cyclegan --help)",
        choices=MODELS)
    name: Optional[str] = option("experiment", "label2city",
                                 "experiment name: the run's folder inside --checkpoints_dir")
    checkpoints_dir: Optional[str] = option(
        "experiment", "./checkpoints", "folder holding one folder per run (checkpoints, config.json, logs)")
    load_pretrain: Optional[str] = option(
        "experiment", "", "run folder of the previous stage (global -> local, local -> finetune); "
        "its architecture, data and loss options are inherited unless given")
    resume: Optional[bool] = option(
        "experiment", False, "continue this run exactly from its checkpoint; every option not given "
        "again comes from its config.json (alias --continue_train)")
    auto_resume: Optional[bool] = option(
        "experiment", False, "resume if this run has latest.pt, else start fresh (for torchrun "
        "--max_restarts)")
    overwrite: Optional[bool] = option(
        "experiment", False, "start a new run in the folder of an existing one (without it that is "
        "refused): the old run is moved to NAME.replaced-TIME beside it and deleted once the new "
        "run has saved its first checkpoint")
    which_epoch: Optional[str] = option(
        "experiment", "latest", "checkpoint to load: 'latest' or an epoch number")
    seed: Optional[int] = option(
        "experiment", 0, f"random seed (integer 0..{SEED_MAX}) of the weights, crops, flips and data order")
    deterministic: Optional[bool] = option(
        "experiment", False, "torch.use_deterministic_algorithms, and on GPU cuDNN without benchmark "
        "and a fixed cuBLAS workspace: repeatable GPU runs, slower, except ReflectionPad2d's backward "
        "(no deterministic CUDA kernel); --norm_impl auto then takes PyTorch's native norm wherever no "
        "choice is recorded (the run folder's norm_autotune.json, or PIX2PIXHD_NORM_AUTOTUNE_FILE). "
        "CPU runs repeat without it at a fixed thread count; a resume "
        "is bit-exact only with the thread count the run saved with (OMP_NUM_THREADS)")
    dry_run: Optional[bool] = option("experiment", False, "print the resolved options, check what the run reads "
                                                 "first (its folder, VGG weights, the dataset's layout, file "
                                                 "list and classes.json) and exit")
    max_steps: Optional[int] = option(
        "experiment", 0, "iterations of this launch: stop (after saving latest) once this process has "
        "trained this many, counted from 0 again on every --resume (the run's length is --niter + "
        "--niter_decay); 0 = no limit")

    # --- data -------------------------------------------------------------------------------
    dataroot: Optional[str] = option("data", "./datasets/cityscapes/",
                                     "dataset folder (layouts: docs/data.md)")
    dataset_mode: Optional[str] = option(
        "data", "auto", "dataset layout: auto | cityscapes | rgb_pairs | aligned | palette | "
        "unaligned (CycleGAN: {phase}A/, {phase}B/, not paired)", pix2pix="aligned",
        cyclegan="unaligned")
    phase: Optional[str] = option("data", "train",
                                  "split to read: {phase}_label, {phase}_img... (a folder name)")
    palette: Optional[str] = option(
        "data", "", "decode colour label maps: 'facades', a JSON file of [r, g, b] colours, or "
        "empty for id maps")
    validate: Optional[str] = option(
        "data", "full", "check the dataset before training: full (decode every file), headers "
        "(sizes and modes) or off", choices=("full", "headers", "off"))
    label_nc: Optional[int] = option(
        "data", 35, "number of label classes (ids 0..label_nc-1); 0 = the input is an image",
        pix2pix=0, cyclegan=0)
    input_nc: Optional[int] = option("data", 3, "input image channels when --label_nc is 0 "
                                     "(cyclegan: domain A's)")
    output_nc: Optional[int] = option("data", 3, "output image channels: 3 (RGB) or 1 (photos read as grey) "
                                      "(cyclegan: domain B's)")
    no_instance: Optional[bool] = option(
        "data", False, "no instance maps (no instance boundary channel in G's input)", pix2pix=True,
        cyclegan=True)
    resize_or_crop: Optional[str] = option(
        "data", "scale_width", "preprocessing of every image", choices=RESIZE_OR_CROP,
        pix2pix="resize_and_crop", cyclegan="resize_and_crop")
    loadSize: Optional[int] = option(
        "data", 1024, "pixels: the width (scale_width*) or side (resize_and_crop) images are "
        "scaled to before cropping", pix2pix=286, cyclegan=286)
    fineSize: Optional[int] = option("data", 512, "pixels: the side of the random crop",
                                     pix2pix=256, cyclegan=256)
    no_flip: Optional[bool] = option("data", False, "no random horizontal flips")
    direction: Optional[str] = option(
        "data", "AtoB", "which half of an AB image (or of A/B folders) is the input; cyclegan: "
        "BtoA swaps the domains (A is read from {phase}B/)", choices=("AtoB", "BtoA"))
    nThreads: Optional[int] = option("data", 2, "data loader worker processes (0 = load in the "
                                                "training process)")
    batchSize: Optional[int] = option("data", 1, "images per step, per process")
    max_dataset_size: Optional[int] = option("data", 0, "images: use at most this many; 0 = all")

    # --- generator (and the feature encoder) ------------------------------------------------
    netG: Optional[str] = option(
        "generator", "", "pix2pixHD generator: global | local; empty = from --stage (global "
        "stage: global, else local)")
    ngf: Optional[int] = option(
        "generator", 64, "filters of G's first conv (local stage: the enhancer's; its global part "
        "has ngf x 2^n_local_enhancers)")
    n_downsample_global: Optional[int] = option("generator", 4,
                                                "stride-2 downsamplings of the global generator")
    n_blocks_global: Optional[int] = option("generator", 9,
                                            "ResNet blocks of the global generator")
    n_local_enhancers: Optional[int] = option(
        "generator", 1, "local enhancers (each doubles the resolution)")
    n_blocks_local: Optional[int] = option("generator", 3, "ResNet blocks per local enhancer")
    upsample: Optional[str] = option(
        "generator", "transpose", "pix2pixHD's x2 upsamplings (global generator and local "
        "enhancers): transpose (the reference's stride-2 transposed 3x3 conv) or resize (nearest "
        "x2 then a 3x3 conv with reflection padding, Odena et al. 2016: no checkerboard overlap; "
        "same state_dict keys, weights [out, in, 3, 3], so reference checkpoints do not load); "
        "pix2pix/cyclegan: refused", choices=UPSAMPLE_MODES)
    norm: Optional[str] = option("generator", "instance", "normalisation of G, D and E",
                                 choices=("instance", "batch"), pix2pix="batch")
    netG_pix2pix: Optional[str] = option(
        "generator", "unet_256", "pix2pix/CycleGAN generator (the pix2pix repo's --netG, which is "
        "read as this option with --model pix2pix/cyclegan): unet_256 | "
        "unet_128 (U-Nets for 256 and 128 px) | encoder_decoder_256 | encoder_decoder_128 (the "
        "same without skips) | resnet_9blocks | resnet_6blocks (CycleGAN's ResNet generators)",
        cyclegan="resnet_9blocks")
    no_dropout: Optional[bool] = option("generator", False, "pix2pix/CycleGAN: no dropout in G "
                                        "(U-Net levels, ResNet blocks)", cyclegan=True)
    instance_feat: Optional[bool] = option(
        "generator", False, "feature encoder: add encoded instance features to G's input")
    label_feat: Optional[bool] = option(
        "generator", False, "feature encoder: add encoded label (class) features to G's input")
    feat_num: Optional[int] = option("generator", 3, "channels of the encoded feature map")
    nef: Optional[int] = option("generator", 16, "filters of the encoder's first conv")
    n_downsample_E: Optional[int] = option("generator", 4,
                                           "stride-2 downsamplings of the encoder")
    load_features: Optional[bool] = option(
        "generator", False, "read precomputed feature maps ({phase}_feat) instead of running E")
    n_clusters: Optional[int] = option(
        "generator", 10, "k-means clusters per class of the encoded features")

    # --- discriminator ----------------------------------------------------------------------
    netD_pix2pix: Optional[str] = option(
        "discriminator", "basic", "pix2pix/CycleGAN discriminator: basic (70x70 PatchGAN) | "
        "n_layers (PatchGAN with --n_layers_D) | pixel (1x1) | image (286x286)")
    ndf: Optional[int] = option("discriminator", 64, "filters of D's first conv")
    n_layers_D: Optional[int] = option("discriminator", 3,
                                       "stride-2 conv layers of each PatchGAN")
    num_D: Optional[int] = option(
        "discriminator", 0, "discriminator scales; 0 = from --stage (2 global, 3 local/finetune)",
        pix2pix=1, cyclegan=1)
    no_cond_D: Optional[bool] = option(
        "discriminator", False, "pix2pix: unconditional D (sees the output only)")
    pool_size: Optional[int] = option(
        "discriminator", 0, "cyclegan: generated images each D's history pool holds (each D "
        "sees a random half of its batch from the history); 0 = no pool (pix2pixhd, pix2pix: "
        "their Ds see the current fakes only)", cyclegan=50)
    diffaug: Optional[str] = option(
        "discriminator", "", "differentiable augmentation of D's inputs (DiffAugment, Zhao et al. "
        "2020), for small datasets: a comma list of color, translation, cutout (e.g. "
        "color,translation,cutout); the real and the fake pair of a step get the same random "
        "transform, label and image alike (color touches the image channels only), in D's and in "
        "G's losses; L1/VGG compare the unaugmented images. pix2pixhd and pix2pix only (cyclegan: "
        "refused); empty = off, the reference's recipe")

    # --- losses -----------------------------------------------------------------------------
    gan_mode: Optional[str] = option("losses", "lsgan", "GAN objective",
                                     choices=("lsgan", "vanilla", "hinge"), pix2pix="vanilla")
    no_lsgan: Optional[bool] = option("losses", False, "reference flag: same as --gan_mode vanilla")
    lambda_feat: Optional[float] = option(
        "losses", 10.0, "weight of the feature-matching and VGG losses")
    no_ganFeat_loss: Optional[bool] = option(
        "losses", False, "no discriminator feature-matching loss", pix2pix=True, cyclegan=True)
    no_vgg_loss: Optional[bool] = option("losses", False, "no VGG19 perceptual loss", pix2pix=True,
                                         cyclegan=True)
    vgg_path: Optional[str] = option(
        "losses", "", "file of torchvision's vgg19-dcbb9e9d.pth weights (empty: the torch hub cache)")
    lambda_L1: Optional[float] = option(
        "losses", 0.0, "weight of an L1 loss between the synthesized and the real photo (pix2pix: "
        "100, 0 = GAN only; pix2pixHD: 0 = the reference's recipe, off; try 100 on small datasets, "
        "see docs/quality.md)", pix2pix=100.0)
    lambda_GAN: Optional[float] = option(
        "losses", 1.0, "pix2pix: weight of the GAN loss (0 = L1 only, no D)")
    lambda_A: Optional[float] = option("losses", 10.0,
                                       "cyclegan: weight of the cycle loss L1(G_B(G_A(A)), A)")
    lambda_B: Optional[float] = option("losses", 10.0,
                                       "cyclegan: weight of the cycle loss L1(G_A(G_B(B)), B)")
    lambda_identity: Optional[float] = option(
        "losses", 0.5, "cyclegan: weight of the identity losses L1(G_A(B), B) and L1(G_B(A), A), "
        "as a fraction of lambda_B and lambda_A (the reference's); 0 = none")

    # --- optimisation -----------------------------------------------------------------------
    lr: Optional[float] = option("optimisation", 0.0002, "Adam's initial learning rate")
    beta1: Optional[float] = option("optimisation", 0.5, "Adam's beta1 (beta2 is 0.999)")
    niter: Optional[int] = option("optimisation", 100, "epochs at the initial learning rate")
    niter_decay: Optional[int] = option("optimisation", 100,
                                        "epochs of linear decay of the learning rate to zero")
    niter_fix_global: Optional[int] = option(
        "optimisation", 0, "epochs: the local stage trains only the enhancer for this many")

    # --- precision / scale ------------------------------------------------------------------
    precision: Optional[str] = option(
        "precision/scale", "fp32", "number format of the forward and backward (autocast; "
        "fp16 adds a gradient scaler)", choices=PRECISIONS)
    channels_last: Optional[bool] = option("precision/scale", False,
                                           "channels-last memory layout (faster on tensor cores)")
    compile: Optional[bool] = option("precision/scale", False, "torch.compile the networks")
    device: Optional[str] = option("precision/scale", "auto", "auto | cpu | cuda | cuda:N")
    ddp_bf16_grads: Optional[bool] = option("precision/scale", False,
                                            "DDP: all-reduce gradients in bf16")
    norm_impl: Optional[str] = option(
        "precision/scale", "auto", "fused instance norm: auto (on CUDA the faster of the Triton "
        "kernel and PyTorch's native norm, timed per shape/dtype/layout on first use; else PyTorch), "
        "triton or ref (the PyTorch reference)", choices=("auto", "triton", "ref"))

    # --- logging and saving -----------------------------------------------------------------
    # steps, where NVIDIA's counted images (total_steps += batchSize): the same at its --batchSize 1
    print_freq: Optional[int] = option("logging", 100,
                                       "steps between loss log lines and scalars (NVIDIA's counted "
                                       "images: the same at --batchSize 1)")
    display_freq: Optional[int] = option("logging", 100, "steps between image grids (NVIDIA's: images)")
    save_latest_freq: Optional[int] = option("logging", 1000,
                                             "steps between 'latest' checkpoints, which every epoch's end "
                                             "also writes (NVIDIA's: images)")
    save_epoch_freq: Optional[int] = option("logging", 10,
                                            "epochs between numbered checkpoints (the run's last epoch "
                                            "writes one too: --which_epoch can name where a stage ended)")
    # each epoch_N.pt holds G, D, E and both Adam states (most of its size) and nothing removed
    # them: a long run's folder grew by one every save_epoch_freq epochs. 0 keeps all, as NVIDIA's.
    keep_epoch_checkpoints: Optional[int] = option(
        "logging", 0, "how many numbered checkpoints to keep: each new epoch_N.pt removes the "
        "older ones beyond this many (never latest.pt nor a resume's epoch_N_stepS.pt); 0 keeps all")
    no_html: Optional[bool] = option("logging", False, "no HTML page (web/index.html)")
    no_tensorboard: Optional[bool] = option("logging", False, "no tensorboard event files")
    no_progress: Optional[bool] = option("logging", False, "no progress bar (nor progress lines without a terminal)")

    # ---- resolution ----------------------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """Every option decided: inherited (resume, --load_pretrain), else the model's default,
        then the stage's; values and combinations checked (ValueError naming the fix). Reads the
        config of the run resumed or loaded; prints nothing (see :meth:`notes`)."""
        coerced = self._coerced()
        if coerced is not self:   # the given options compared below (resume, notes) are of its types too
            return coerced.resolved()
        c = dataclasses.replace(self)
        if isinstance(c.model, str):
            c.model = model_name(c.model)   # NVIDIA's --model pix2pixHD, the pix2pix/CycleGAN repo's cycle_gan
        c._check_repo_values()   # before anything is read: the pix2pix/CycleGAN repo's values this has not
        if isinstance(c.which_epoch, int) and not isinstance(c.which_epoch, bool):
            c.which_epoch = str(c.which_epoch)   # Python callers: which_epoch=5
        alias = c._netG_alias()   # the pix2pix repo's --netG unet_256: read as --netG_pix2pix, first,
        # so that a resume repeating it compares it with the run's netG_pix2pix, not with its netG
        # Where the run lives and whether it continues: decided first, they say what to inherit.
        run = c._filled(("name", "checkpoints_dir", "resume", "auto_resume", "load_pretrain",
                         "which_epoch", "stage", "n_local_enhancers"), model="pix2pixhd")
        if run.load_pretrain:   # stored absolute: config.json is read from other working directories
            c.load_pretrain = run.load_pretrain = _absolute(run.load_pretrain)
        if c.checkpoints_dir:   # '--checkpoints_dir=~/ck' (the shell leaves that ~): the home's, not ./~
            c.checkpoints_dir = run.checkpoints_dir = os.path.expanduser(c.checkpoints_dir)
        if isinstance(run.name, str) and (has_unprintable(run.name) or any(c in run.name for c in "\n\t")):
            # printed on every start and resume, and a folder name that ls and the shell echo: its
            # escape sequences would clear the screen or retitle the terminal each time, and a
            # newline or tab would split the one-line messages that name it (a fake 'note:' line)
            from pix2pixhd.paths import UnsafeNameError
            kept = "".join(ch for ch in run.name if not has_unprintable(ch) and ch not in "\n\t")
            plain = re.sub(r"[^A-Za-z0-9._-]+", "_", kept).strip("._") or "run1"
            shown = printable(run.name).replace("\n", "\\n").replace("\t", "\\t")
            raise UnsafeNameError(f"--name {shown} holds control characters (shown escaped) that a "
                                  f"terminal would act on when the run's folder or config is printed: use a plain "
                                  f"name such as --name {plain}")
        run_dir(run.checkpoints_dir, run.name)   # a --name that would leave checkpoints_dir: refused early
        resume_note = None
        which = c.which_epoch if c.which_epoch not in (None, "latest") else None
        if run.resume and which is not None and self.load_pretrain:
            from pix2pixhd.checkpoint import checkpoint_path
            raise ConfigError(
                f"--resume --load_pretrain {self.load_pretrain} --which_epoch {which}: --resume loads nothing "
                "from --load_pretrain, so which checkpoint --which_epoch names is ambiguous: drop "
                f"--load_pretrain to resume from {checkpoint_path(run.experiment_dir, which)}, or drop "
                f"--which_epoch to continue from {run.experiment_dir / 'latest.pt'}")
        if run.auto_resume and not run.resume:
            # An elastic restart (torchrun --max_restarts) reruns the same command line: every rank
            # sees the same files (the agent restarts all workers, so no rank is writing them).
            # With --load_pretrain, --which_epoch is the epoch of the stage loaded (at the first
            # start): a restart continues from this run's latest.pt as without it.
            loaded_epoch, which = (which, None) if run.load_pretrain else (None, which)
            if which is not None:   # given: honoured (resumed when it, or latest.pt, is there)
                from pix2pixhd.checkpoint import checkpoint_path
                latest = run.experiment_dir / "latest.pt"
                if checkpoint_path(run.experiment_dir, which).is_file() or latest.is_file():
                    c.resume = run.resume = True
                    if latest.is_file():
                        resume_note = (f"--auto_resume --which_epoch {which}: resuming from "
                                       f"{checkpoint_path(run.experiment_dir, which).name} as given, "
                                       f"not from {latest}; a restart of this same command resumes "
                                       "from it again (drop --which_epoch to continue from latest.pt)")
            elif (run.experiment_dir / "latest.pt").is_file():
                # latest.pt, or the newest epoch_N.pt that reads when it does not (with a note)
                from pix2pixhd.checkpoint import auto_resume_checkpoint
                which, resume_note = auto_resume_checkpoint(run.experiment_dir)
                c.resume = run.resume = True
                c.which_epoch = run.which_epoch = which
                if loaded_epoch is not None:
                    from pix2pixhd.checkpoint import checkpoint_path
                    said = (f"--auto_resume --which_epoch {loaded_epoch}: the epoch of --load_pretrain's stage, "
                            f"loaded at this run's first start; {run.experiment_dir} has checkpoints of its own, "
                            f"so it continues from {checkpoint_path(run.experiment_dir, which).name}")
                    resume_note = said if resume_note is None else f"{said}. {resume_note}"
        restart = False
        if run.resume and self.which_epoch in (None, "latest"):
            from pix2pixhd.run_folder import run_files
            found = run_files(run.experiment_dir)
            # A run that stopped before its first checkpoint (config.json alone): --resume starts
            # it again from step 0 with its own options; there is nothing else to continue from.
            restart = found == ["config.json"]
            if restart:
                resume_note = (f"--resume: {run.experiment_dir} saved no checkpoint (its earlier start "
                               "stopped before the first), so it starts again from step 0 with the "
                               "options of its config.json")
        src = run.experiment_dir if run.resume else Path(run.load_pretrain) if run.load_pretrain else None
        prev, inherited = None, []
        if src is not None:
            from pix2pixhd.checkpoint import load_run_config
            # config.json, or the copy in the checkpoint when config.json is missing or damaged
            prev = load_run_config(src, run.which_epoch)
        if (c.stage is None and c.netG == "local" and not run.resume
                and (c.model or (prev.model if prev is not None else "pix2pixhd")) == "pix2pixhd"):
            # NVIDIA's command lines have no --stage: their local stage is --netG local (with
            # --load_pretrain of the global run), and its --niter_fix_global must freeze G1 here too
            c.stage = run.stage = "local"
        if prev is not None:
            if run.resume and self.load_pretrain and not _same_path(self.load_pretrain, prev.load_pretrain) \
                    and not _same_previous_stage(self.load_pretrain, run.experiment_dir, prev):
                imported = None if prev.load_pretrain else _imported_from(run.experiment_dir, run.which_epoch)
                began = (f"it was imported from {imported}" if imported else
                         f"it started from {prev.load_pretrain or 'random weights'}")
                raise ConfigError(
                    f"--load_pretrain {self.load_pretrain}: --resume continues {run.experiment_dir} from "
                    f"its own checkpoint and loads nothing else ({began}): drop --load_pretrain, or give a "
                    "new --name to start a run from it")
            given = c
            c = c._inherit(prev, run)
            inherited = [f.name for f in fields(c) if getattr(given, f.name) is None
                         and getattr(c, f.name) is not None]
        c = c._filled()
        # Paths typed now are stored absolute, as load_pretrain is: config.json is read from other
        # working directories (features encode, a later stage's vgg_path, --resume elsewhere). One
        # inherited from an older config.json stays as it was saved.
        if self.dataroot is not None or not run.resume:
            c.dataroot = _absolute(c.dataroot)
        if self.vgg_path:
            c.vgg_path = _absolute(c.vgg_path)
        if isinstance(c.palette, str) and c.palette.startswith("~"):   # a JSON file in the home folder
            c.palette = os.path.expanduser(c.palette)
        c._check_values()
        # a resume's own seed passes (versions before SEED_MAX took larger ones): only one given anew
        c._check_ranges(seed=not run.resume or (self.seed is not None and self.seed != prev.seed))
        c._check_model_only(self, prev if run.resume else None)
        c._check_g_loss()
        c._check_unused(self, prev if run.resume else None)
        if c.niter + c.niter_decay == 0:
            raise ConfigError(f"--niter {c.niter} --niter_decay {c.niter_decay}: a run trains niter + "
                              "niter_decay epochs, and these make none: give at least one epoch (e.g. --niter 1)")
        if self.niter_fix_global and c.stage != "local":   # (0, the default, fixes nothing anywhere)
            why = (f"--model {c.model} has no global generator" if c.model != "pix2pixhd" else
                   "--stage finetune trains all of G from its first step" if c.stage == "finetune" else
                   "--stage global trains the global generator itself")
            raise ConfigError(f"--niter_fix_global {self.niter_fix_global}: only the local stage fixes the global "
                              f"generator (for its first N epochs), and {why}: drop --niter_fix_global")
        if prev is not None and not run.resume and run.stage == "local" and prev.netG == "global":
            # the sizes this run's resize_or_crop reads that were derived from the global stage's
            mode = c.resize_or_crop
            derived = [k for k, read in (("loadSize", mode not in ("crop", "none")), ("fineSize", "crop" in mode))
                       if read and getattr(self, k) is None]
            if derived:
                was = ", ".join(f"{k} {getattr(prev, k)}" for k in derived)
                now = ", ".join(f"{k} {getattr(c, k)}" for k in derived)
                resume_note = (f"--stage local: images read as the global stage's ({prev.resize_or_crop}, "
                               f"{was}) at {2 ** c.n_local_enhancers}x its size: {now} (give "
                               f"{'/'.join('--' + k for k in derived)} for others)")
        if prev is not None and not run.resume and run.stage == "global" and prev.netG == "global":
            # a global stage from a global stage takes no sizes: say so where its model's defaults
            # read the images otherwise than the stage loaded did
            sizes = ("resize_or_crop", "loadSize", "fineSize")
            if any(getattr(self, k) is None and getattr(c, k) != getattr(prev, k) for k in sizes):
                said = lambda r: f"{r.resize_or_crop}, loadSize {r.loadSize}, fineSize {r.fineSize}"  # noqa: E731
                resume_note = (f"--load_pretrain {run.load_pretrain} trained on images read as {said(prev)}; "
                               f"this run reads them as {said(c)} (a global stage takes no sizes from the "
                               f"stage it loads: give --resize_or_crop {prev.resize_or_crop} --loadSize "
                               f"{prev.loadSize} --fineSize {prev.fineSize} to train at its size)")

        given_gan = self.gan_mode is not None and self.gan_mode != "vanilla"
        if given_gan and self.no_lsgan:
            raise ConfigError(f"--no_lsgan means --gan_mode vanilla, and --gan_mode {self.gan_mode} was "
                              "given too: give one of them")
        if self.gan_mode is None and c.no_lsgan:   # the reference's flag (given or inherited)
            c.gan_mode = "vanilla"
        elif c.gan_mode != "vanilla":
            c.no_lsgan = False   # an inherited --no_lsgan gives way to the --gan_mode given
        if alias and c.model == "pix2pixhd":
            raise ConfigError(f"--netG {alias} is a pix2pix/CycleGAN generator, and --model pix2pixhd's "
                              "is global or local: add --model pix2pix (or cyclegan) to train it")
        if not c.netG:
            c.netG = "global" if c.stage == "global" or c.model != "pix2pixhd" else "local"
        if c.num_D <= 0:
            c.num_D = 2 if c.stage == "global" else 3
        if c.stage == "finetune" and c.netG != "local":
            if self.netG is None and prev is not None and run.resume:   # netG: the run's own
                raise ConfigError(f"--stage finetune: --resume continues {run.experiment_dir}, a global-stage "
                                  "run (netG global), which cannot become a finetune stage: drop --stage "
                                  "finetune (to finetune, train a local stage from it first)")
            if self.netG is None and prev is not None:   # netG came from the stage loaded
                raise ConfigError(f"--stage finetune: --load_pretrain {run.load_pretrain} holds a global stage "
                                  "(netG global), and finetune trains all of a local generator from a "
                                  "local stage: train the local stage first (--stage local --load_pretrain "
                                  f"{run.load_pretrain}), then finetune with --load_pretrain THAT_LOCAL_RUN")
            raise ConfigError("--stage finetune trains the local generator: drop --netG global")
        if c.model == "cyclegan":
            c._check_cyclegan()
        if c.model == "pix2pix" and c.stage != "global":
            raise ConfigError(("--model pix2pix has one stage" if self.model is not None else
                               f"--load_pretrain {run.load_pretrain} is a --model pix2pix run, which has one "
                               "stage") + ": drop --stage local/finetune")
        if c.instance_feat and c.label_feat:
            raise ConfigError("choose one of --instance_feat and --label_feat")
        # E's features are averaged within regions of the input's maps: photo inputs have none (the
        # photo layouts hold no {phase}_inst either), and the first step failed on the shapes
        if c.model == "pix2pixhd" and c.label_nc == 0 and c.label_feat:
            raise ConfigError("--label_feat averages E's features within label regions; --label_nc 0 inputs "
                              "are photos, which have none: drop --label_feat")
        if c.model == "pix2pixhd" and c.instance_feat and (c.label_nc == 0 or c.dataset_mode in ("rgb_pairs",
                                                                                                "aligned")):
            photos = ("--label_nc 0 inputs are photos" if c.label_nc == 0 else
                      f"--dataset_mode {c.dataset_mode} reads A/B pairs")
            raise ConfigError(f"--instance_feat averages E's features within the instances of {{phase}}_inst maps; "
                              f"{photos}, whose layouts have no instance maps: drop --instance_feat"
                              + (" (--no_instance does not change that: it leaves out G's boundary channel only)"
                                 if c.no_instance else ""))
        if self.load_features and not c.use_features:
            raise ConfigError(
                "--load_features: the precomputed maps it reads are the feature encoder's, which only "
                + (f"pix2pixHD's --instance_feat and --label_feat have (--model {c.model} has none): drop "
                   "--load_features" if c.model != "pix2pixhd" else
                   "--instance_feat and --label_feat use, and this run has neither"
                   + (" (nor has the stage it loads)" if run.load_pretrain else "")
                   + ", so nothing would read them: drop --load_features, or add the --instance_feat (or "
                   "--label_feat) of the stage whose encoder made the maps"))
        for k in ("output_nc",) + (("input_nc",) if c.label_nc == 0 else ()):
            if getattr(c, k) not in (1, 3):
                raise ConfigError(f"--{k} {getattr(c, k)}: photos are read as grey (1) or RGB (3) images; "
                                  f"pass --{k} 1 or 3")
        if prev is not None and not run.resume and c.model == "pix2pixhd":
            c._check_encoder_loads(self, prev, run)
        if c.diffaug:
            c._check_diffaug()
        if c.upsample != "transpose" and c.model != "pix2pixhd":
            raise ConfigError(f"--upsample {c.upsample} changes pix2pixHD's generators; --model {c.model}'s "
                             "generator ignores it: drop --upsample")
        if c.compile and c.norm_impl == "triton" and c.norm == "instance" and \
                env_flag("TRITON_INTERPRET"):   # read as Triton reads it
            raise ConfigError(f"--compile --norm_impl triton under TRITON_INTERPRET={os.environ['TRITON_INTERPRET']}: "
                              "torch.compile cannot trace "
                              "the Triton interpreter's kernel launches; drop --compile (the interpreter is for "
                              "tests), or --norm_impl triton, or unset TRITON_INTERPRET on a GPU")
        if self.norm_impl == "triton" and c.norm != "instance":   # (ref: PyTorch's norms, what runs)
            raise ConfigError(f"--norm_impl triton fuses instance norms; with --norm {c.norm} the networks have "
                              "none, so no kernel would run: drop --norm_impl")
        if prev is not None and not run.resume:
            c._check_loads(given, prev, run)   # (given: as typed, the pix2pix repo's --netG read)
        if c.resize_or_crop == "resize_and_crop":   # every sample a fineSize square
            c._check_square_side()
        if c.overwrite and (c.resume or c.auto_resume):
            raise ConfigError("--overwrite starts the run anew, --resume/--auto_resume continue it: "
                              "give one of them")
        if restart:   # its options taken from config.json as a resume's are; no checkpoint to load
            c.resume = False
        c._resume_note = resume_note   # said by notes(); not an option (not saved)
        c._stage_note = c._not_inherited_note(self, prev) if prev is not None and not run.resume else None
        c._changed_note = c._resumed_changes(prev, run) if run.resume and not restart else None
        c._data_note = (f"resuming {run.experiment_dir} from data at another path: --dataroot "
                        f"{prev.dataroot} -> {c.dataroot} (config.json names only the new one from here on; "
                        "the same data there trains as an uninterrupted run would, other data does not)"
                        if run.resume and not restart and not _same_path(c.dataroot, prev.dataroot) else None)
        c._inherited = (("the run resumed" if run.resume else str(src)), inherited) if inherited else None
        c._restart = restart           # check_new_run: the folder is this run's own
        # the epoch of --load_pretrain's stage this run loaded at its first start: saved beside the
        # options (to_dict), since a resume replaces which_epoch (what the resume itself read)
        if c.load_pretrain and not run.resume:
            c._pretrain_epoch = c.which_epoch
        elif c.load_pretrain and prev is not None:
            c._pretrain_epoch = prev.pretrain_epoch
            # which file that was (path, step, epoch, sha256): the trainer records it when it loads
            c._pretrain_checkpoint = getattr(prev, "_pretrain_checkpoint", None)
        return c

    @property
    def pretrain_epoch(self) -> str | None:
        """The checkpoint of ``load_pretrain``'s run this run loaded at its first start ('latest' or
        an epoch number), or None without ``load_pretrain``. A config saved before it was recorded
        says ``which_epoch``, which is that epoch until a resume rewrote it."""
        if not self.load_pretrain:
            return None
        return getattr(self, "_pretrain_epoch", None) or self.which_epoch

    @property
    def pretrain_checkpoint(self) -> dict | None:
        """The checkpoint file of ``load_pretrain``'s run this run loaded at its first start:
        {path, global_step, epoch, sha256}, recorded by the trainer when it loads it (None before,
        without ``load_pretrain``, or in a config saved before it was recorded)."""
        return getattr(self, "_pretrain_checkpoint", None) if self.load_pretrain else None

    def _resumed_changes(self, prev: "TrainConfig", run: "TrainConfig") -> str | None:
        """The note naming the options of this resumed run (resolved) given with another value than
        the run's own (``prev``), which make it train otherwise than had it not stopped; None if none
        (:data:`SAME_TRAINING`: those that do not)."""
        one_process = int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1   # (torchrun sets WORLD_SIZE)
        changed = [f.name for f in fields(self) if f.name not in SAME_TRAINING
                   and not (f.name == "ddp_bf16_grads" and one_process)
                   and getattr(self, f.name) != getattr(prev, f.name)]
        if (self.niter, self.niter_decay) != (prev.niter, prev.niter_decay):
            # a longer (or shorter) schedule that gives every epoch trained its learning rate again
            # is the schedule of an uninterrupted run with these values
            from pix2pixhd.checkpoint import peek_checkpoint, checkpoint_path
            try:
                ckpt = peek_checkpoint(checkpoint_path(run.experiment_dir, run.which_epoch))
                trained = int(ckpt["epoch"]) - (0 if int(ckpt["iter_in_epoch"]) > 0 else 1)
            except Exception:   # unreadable: loading it says so, before any step
                trained = 0
            now = dataclasses.replace(prev, niter=self.niter, niter_decay=self.niter_decay)
            if any(lr_at_epoch(now, e) != lr_at_epoch(prev, e) for e in range(1, trained + 1)):
                changed += [k for k in ("niter", "niter_decay") if getattr(self, k) != getattr(prev, k)]
        if not changed:
            return None
        return (f"resuming {run.experiment_dir} with options other than its own: "
                + ", ".join(f"--{k} {_shown(getattr(prev, k))} -> {_shown(getattr(self, k))}" for k in changed)
                + ": the resumed run differs from an uninterrupted one from here on")

    def _not_inherited_note(self, given: "TrainConfig", prev: "TrainConfig") -> str | None:
        """A stage started from another (--load_pretrain) takes its architecture, data and losses
        (INHERITED...), not how it ran: the note naming the number format and memory layout the
        stage loaded trained with where this one (resolved), not given them, runs otherwise."""
        differ = [k for k in ("precision", "channels_last") if getattr(given, k) is None
                  and getattr(self, k) != getattr(prev, k)]
        if not differ:
            return None
        return (f"--load_pretrain {self.load_pretrain} trained with "
                + " ".join(f"--{k} {_shown(getattr(prev, k))}" for k in differ) + "; this stage runs "
                + " ".join(f"--{k} {_shown(getattr(self, k))}" for k in differ)
                + " (a later stage takes the architecture, data and losses of the stage it loads, not how "
                "it ran: give " + " ".join(f"--{k} {_shown(getattr(prev, k))}" for k in differ) + " to keep them)")

    def _check_encoder_loads(self, given: "TrainConfig", prev: "TrainConfig", run: "TrainConfig") -> None:
        """A stage that loads the feature encoder of the stage before (``prev``) builds it the same:
        an encoder option given (``given``) with another value is refused by name, before the
        checkpoint's weights meet an encoder of other shapes."""
        if not (self.use_features and not self.load_features and prev.use_features and not prev.load_features):
            return   # no encoder here, or none in the stage loaded: nothing is loaded into it
        differ = [k for k in ("nef", "n_downsample_E", "feat_num")
                  if getattr(given, k) is not None and getattr(given, k) != getattr(prev, k)]
        if not differ:
            return
        from pix2pixhd.checkpoint import checkpoint_path
        src = Path(run.load_pretrain)
        file = src if src.is_file() else checkpoint_path(src, run.which_epoch)
        ours = " ".join(f"--{k} {getattr(given, k)}" for k in differ)
        raise ConfigError(
            f"{ours}: this stage loads the feature encoder of {run.load_pretrain} (E in {file}), built with "
            f"{', '.join(f'{k} {getattr(prev, k)}' for k in differ)}, and its weights cannot change shape: "
            f"drop {' '.join('--' + k for k in differ)} (the stage loaded gives its own), or train the "
            f"{prev.stage} stage again with {ours}")

    def _check_loads(self, given: "TrainConfig", prev: "TrainConfig", run: "TrainConfig") -> None:
        """This stage (resolved) loads the networks of ``prev`` (--load_pretrain). Where they load
        whole (:func:`loads_whole`), an option ``given`` that makes a network the weights do not fit
        is refused by name, with the file, before anything is built. global -> local (G's global
        part, D's scales by name) is checked by the trainer as it loads them."""
        from pix2pixhd.checkpoint import checkpoint_path
        src = Path(run.load_pretrain)
        file = src if src.is_file() else checkpoint_path(src, run.which_epoch)
        if not loads_whole(prev, self):
            if not (prev.netG == "global" and self.netG == "local"):
                raise ConfigError(f"--netG {self.netG}: {file} holds a {prev.netG} generator, which does not "
                                  f"load into a {self.netG} one: drop --netG (the stage loaded gives its own)")
            return
        misfits = _loaded_misfits(prev, self)
        if not misfits:
            return
        differ = [k for k in SHAPING if getattr(given, k) is not None and getattr(self, k) != getattr(prev, k)]
        # those whose value alone makes a misfit (others given too, e.g. a new enhancer's, are not named)
        named = [k for k in differ
                 if len(_loaded_misfits(prev, dataclasses.replace(self, **{k: getattr(prev, k)}))) < len(misfits)]
        named = named or differ
        if not named:   # not an option given here: the trainer's error names the file
            return
        nets = list(dict.fromkeys(m.split()[0] for m in misfits))
        nets = " and ".join(filter(None, (", ".join(nets[:-1]), nets[-1])))
        raise ConfigError(
            f"{' '.join(f'--{k} {_shown(getattr(self, k))}' for k in named)}: this stage loads {nets} of {file}, "
            f"built with {', '.join(f'{k} {_shown(getattr(prev, k))}' for k in named)}, and loaded weights "
            f"cannot change shape: drop {' '.join('--' + k for k in named)} (the stage loaded gives its own), "
            "or leave out --load_pretrain to train these networks from random weights")

    def _netG_alias(self) -> str | None:
        """The pix2pix/CycleGAN repo's ``--netG`` (unet_256, resnet_9blocks...) moved to
        netG_pix2pix (netG then decided as for any pix2pix run); the name, or None."""
        if self.netG in (None, "", "global", "local"):
            return None
        from pix2pixhd.pix2pix_networks import NETG
        if self.netG not in NETG:
            raise ConfigError(f"--netG {self.netG}: pix2pixHD's generator is global or local (pix2pix/"
                              f"CycleGAN's: --netG_pix2pix, one of {', '.join(NETG)})")
        if self.netG_pix2pix is not None and self.netG_pix2pix != self.netG:
            raise ConfigError(f"--netG {self.netG} and --netG_pix2pix {self.netG_pix2pix} name two "
                              "generators (--netG is the pix2pix repo's name of --netG_pix2pix): give one")
        alias, self.netG_pix2pix, self.netG = self.netG, self.netG, None
        return alias

    def _check_model_only(self, given: "TrainConfig", resumed: "TrainConfig | None" = None) -> None:
        """Refuse an option ``given`` (the options as typed) that this model's step never reads
        (:data:`MODEL_ONLY`), unless it is the model's own default or the value of the run
        ``resumed`` (its command line repeated: versions before this check recorded such values)."""
        fs = {f.name: f for f in fields(self)}
        # pix2pixHD's local generator (global is the value every run's config records, so it passes)
        if self.model != "pix2pixhd" and given.netG == "local" and getattr(resumed, "netG", None) != "local":
            raise ConfigError(f"--netG {given.netG}: --model {self.model} does not use it (pix2pixHD's "
                              f"generator; {self.model}'s is --netG_pix2pix): drop --netG")
        # --model left out (not inherited either): pix2pixHD's, where the pix2pix/CycleGAN repo's was
        # cycle_gan; its users' options of those models are named with the --model that uses them,
        # and its network choices are refused even at pix2pixHD's recorded default (--netD basic was
        # taken silently: what was typed says which model was meant)
        forgot = given.model is None and resumed is None and not self.load_pretrain
        for name, models in MODEL_ONLY.items():
            v = getattr(given, name)
            typed_network = forgot and name in ("netD_pix2pix", "netG_pix2pix")
            if (self.model in models or v is None or (v == default_of(fs[name], self.model) and not typed_network)
                    or (resumed is not None and getattr(resumed, name) == v)):
                continue
            add = (f"add --model {models[0]}" + (f" (or {' or '.join(models[1:])})" if models[1:] else "")
                   + " to train with it, or " if forgot else "")
            raise ConfigError(f"--{name} {_shown(v)}: --model {self.model} does not use it (it is "
                              f"{' and '.join(models)}'s: {fs[name].metadata['help']}): {add}drop --{name}")

    def _check_g_loss(self) -> None:
        """Refuse a loss recipe that leaves G no loss. pix2pix's G trains on lambda_GAN * cGAN +
        lambda_L1 * L1; pix2pixHD's and CycleGAN's always keep their GAN terms (weight 1)."""
        if self.model == "pix2pix" and self.lambda_GAN == 0 and self.lambda_L1 == 0:
            raise ConfigError("--lambda_GAN 0 --lambda_L1 0: pix2pix's G trains on lambda_GAN x cGAN + "
                              "lambda_L1 x L1, and these leave it no loss: give --lambda_L1 > 0 (L1 only, "
                              "no discriminator) or --lambda_GAN > 0 (e.g. 1, the cGAN)")

    def _check_unused(self, given: "TrainConfig", resumed: "TrainConfig | None" = None) -> None:
        """Refuse an option ``given`` (the options as typed) that this run's networks or losses never
        read, by the rule of :meth:`_check_model_only`: a value other than the model's default;
        values inherited or defaulted pass, and so do those of the run ``resumed`` (a restart
        repeats its command line, which older versions took with these options). pix2pix without a D (--lambda_GAN 0): D's options; a
        pix2pix/CycleGAN PatchGAN other than n_layers: --n_layers_D; pix2pixHD without the VGG loss:
        --vgg_path; without feature matching and VGG: --lambda_feat; CycleGAN without cycle losses: --lambda_identity (a
        fraction of them); pix2pixHD without a feature encoder (no --instance_feat, --label_feat): E's options; label
        maps (--label_nc > 0): --input_nc, the channels of input photos; a {phase}_label layout (given, or found in
        dataroot): --direction, which picks the input of A/B pairs (such a run trained bit-identical without them)."""
        fs = {f.name: f for f in fields(self)}

        def typed(k: str) -> bool:
            v = getattr(given, k)
            return (v is not None and v != default_of(fs[k], self.model)
                    and (resumed is None or v != getattr(resumed, k)))

        if self.model == "pix2pix" and self.lambda_GAN == 0:
            ks = [k for k in ("netD_pix2pix", "ndf", "n_layers_D", "no_cond_D", "gan_mode", "no_lsgan")
                  if typed(k)]
            if ks:
                these = "these options are" if len(ks) > 1 else "this option is"
                raise ConfigError(f"{' '.join(f'--{k} {_shown(getattr(given, k))}' for k in ks)}: --lambda_GAN "
                                  f"0 trains no discriminator (L1 only), and {these} D's: drop "
                                  f"{' '.join('--' + k for k in ks)}, or give --lambda_GAN > 0 to train a D")
        if self.model in ("pix2pix", "cyclegan") and self.netD_pix2pix != "n_layers" and typed("n_layers_D"):
            from pix2pixhd.pix2pix_networks import IMAGEGAN_N_LAYERS
            what = {"basic": "basic is the 70x70 PatchGAN, n_layers 3",
                    "image": f"image is the 286x286 ImageGAN, n_layers {IMAGEGAN_N_LAYERS}",
                    "pixel": "pixel is the 1x1 PixelGAN, without stride-2 convs"}[self.netD_pix2pix]
            raise ConfigError(f"--n_layers_D {given.n_layers_D}: --n_layers_D applies to --netD_pix2pix n_layers; "
                              f"{what}: drop --n_layers_D, or add --netD_pix2pix n_layers")
        if self.model == "pix2pixhd" and self.no_vgg_loss and typed("vgg_path"):
            whence = (f", taken from --load_pretrain {self.load_pretrain}" if given.no_vgg_loss is None
                      and self.load_pretrain else "")
            raise ConfigError(f"--vgg_path {given.vgg_path}: the VGG loss is off (--no_vgg_loss{whence}), so "
                              "nothing reads the file: add --no_vgg_loss false to train with it, or drop --vgg_path")
        if self.model == "pix2pixhd" and self.no_ganFeat_loss and self.no_vgg_loss and typed("lambda_feat"):
            raise ConfigError(f"--lambda_feat {given.lambda_feat}: it weighs the feature-matching and VGG losses, "
                              "and --no_ganFeat_loss --no_vgg_loss leave neither: drop --lambda_feat (or one of "
                              "--no_ganFeat_loss, --no_vgg_loss)")
        if self.model == "pix2pixhd" and not self.use_features:
            ks = [k for k in ("feat_num", "nef", "n_downsample_E") if typed(k)]
            if ks:
                these = "these options are" if len(ks) > 1 else "this option is"
                raise ConfigError(f"{' '.join(f'--{k} {getattr(given, k)}' for k in ks)}: {these} the feature "
                                  "encoder's, which only --instance_feat and --label_feat build, and this run has "
                                  f"neither: drop {' '.join('--' + k for k in ks)}, or add --instance_feat (or "
                                  "--label_feat)")
        if self.model != "cyclegan" and self.label_nc > 0 and typed("input_nc"):
            raise ConfigError(f"--input_nc {given.input_nc}: it is the channels of input photos (--label_nc 0), and "
                              f"--label_nc {self.label_nc} reads label maps (G's input is their one-hot "
                              "encoding): drop --input_nc, or give --label_nc 0 for photo inputs")
        if self.model != "cyclegan" and self.label_nc > 0 and typed("direction"):
            mode = self.dataset_mode
            if mode == "auto" and (Path(self.dataroot) / f"{self.phase}_label").is_dir():
                mode = "cityscapes"   # (palette too: the same folders)
            if mode in ("cityscapes", "palette"):
                where = (f"--dataset_mode {self.dataset_mode}" if self.dataset_mode != "auto" else
                         f"{Path(self.dataroot) / (self.phase + '_label')}")
                raise ConfigError(f"--direction {given.direction}: it picks the input of A/B pairs (AB images, "
                                  f"{{phase}}_A/{{phase}}_B folders), and this run reads label maps from "
                                  f"{{phase}}_label folders ({where}), whose input is always the label map: drop "
                                  "--direction")
        if (self.model == "cyclegan" and self.lambda_A == 0 and self.lambda_B == 0 and typed("lambda_identity")
                and given.lambda_identity > 0):
            raise ConfigError(f"--lambda_identity {given.lambda_identity}: the identity losses weigh "
                              "lambda_identity x lambda_B and x lambda_A, and --lambda_A 0 --lambda_B 0 make "
                              "both 0: drop --lambda_identity (or give --lambda_A / --lambda_B > 0)")

    def _check_repo_values(self) -> None:
        """Refuse a value of the pix2pix/CycleGAN repo's this project's option of the same name has
        not (:data:`REPO_VALUES`: --dataset_mode single, --gan_mode wgangp), naming what to use."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in REPO_VALUES and isinstance(v, str) and v in REPO_VALUES[f.name]:
                choices = f.metadata["choices"]
                if f.name == "dataset_mode":   # (free text on the command line: _check_values checks it)
                    from pix2pixhd.data.layouts import MODES as choices
                raise ConfigError(repo_value_error(f.name, v, choices))

    def _coerced(self) -> "TrainConfig":
        """A copy whose options given from Python as other number types (numpy's ``np.int64(1)``
        from an array or a sweep, ``np.float32``: ``numbers.Integral`` / ``numbers.Real``) or as a
        ``torch.device`` hold int, float and str, the types :meth:`_check_values` requires and
        config.json stores; ``self`` where none is. A bool stays refused where a number is meant,
        as before (``niter=True`` is no epoch count)."""
        torch = sys.modules.get("torch")   # not imported here: a torch.device exists only once it is
        changes = {}
        for f in fields(self):
            v, kind = getattr(self, f.name), type(f.metadata["default"])
            if v is None or isinstance(v, bool) or type(v) in (kind, int):
                continue   # (an int where a float is meant was accepted, and kept, before)
            if kind is int and isinstance(v, numbers.Integral):
                changes[f.name] = int(v)
            elif kind is float and isinstance(v, numbers.Real):
                changes[f.name] = float(v)
            elif kind is str and torch is not None and isinstance(v, torch.device):
                changes[f.name] = str(v)   # device=torch.device("cuda", 1): "cuda:1", as load_generator takes it
        return dataclasses.replace(self, **changes) if changes else self

    def _check_values(self) -> None:
        """Each option of its default's type and, where it has choices, one of them: what
        argparse checks on the command line, for configs built in Python (``precision='BF16'``
        trained in fp32, ``stage='Local'`` skipped the global freeze, ``model='nope'`` trained
        pix2pixHD)."""
        from pix2pixhd.data.layouts import MODES
        from pix2pixhd.pix2pix_networks import NETD, NETG
        extra = {"netG_pix2pix": NETG, "netD_pix2pix": NETD, "dataset_mode": MODES}
        for f in fields(self):
            v, md = getattr(self, f.name), f.metadata
            kind = type(md["default"])
            ok = (isinstance(v, bool) if kind is bool else
                  isinstance(v, int) and not isinstance(v, bool) if kind is int else
                  isinstance(v, (int, float)) and not isinstance(v, bool) if kind is float else
                  isinstance(v, str))
            if not ok:
                raise ConfigError(f"--{f.name} {v!r}: must be {kind.__name__} ({md['help']})")
            choices = md["choices"] or extra.get(f.name)
            if choices and v not in choices:
                raise ConfigError(f"--{f.name} {v!r}: expected one of {', '.join(map(str, choices))}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", self.device):
            raise ConfigError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N (or mps)")
        if not re.fullmatch(r"latest|[0-9]+", self.which_epoch):
            raise ConfigError(f"--which_epoch {self.which_epoch!r}: expected 'latest' or an epoch number N (the "
                              "file epoch_NNNN.pt in the run folder)")

    @classmethod
    def check_values(cls, model: str, **options) -> None:
        """ConfigError (one line, train_hd.py's) for a value of ``options`` (TrainConfig field
        names) out of its range for ``--model model``; for tools that share some of training's
        options (``python -m pix2pixhd.data scan``) and must refuse what training refuses."""
        cls(model=model, **options)._filled()._check_ranges(seed=False)

    def _check_ranges(self, seed: bool = True) -> None:
        """Each numeric option within its range (:data:`AT_LEAST`, beta1 in [0, 1); ``seed``:
        also --seed in 0..SEED_MAX)."""
        fs = {f.name: f for f in fields(self)}
        for name in fs:   # nan passes every comparison below, inf every lower bound
            v = getattr(self, name)
            if isinstance(v, float) and not math.isfinite(v):
                what = fs[name].metadata.get("help")
                raise ConfigError(f"--{name} {v}: must be a finite number" + (f" ({what})" if what else ""))
        for name, (lo, excluded) in AT_LEAST.items():
            v = getattr(self, name)
            if v < lo or (excluded and v == lo):
                raise ConfigError(f"--{name} {v}: must be {'>' if excluded else '>='} {lo} "
                                  f"({fs[name].metadata['help']})")
        from pix2pixhd.data.layouts import LABEL_NC_MAX
        if self.label_nc > LABEL_NC_MAX:   # one one-hot input channel per class: past any usable generator
            raise ConfigError(f"--label_nc {self.label_nc}: must be <= {LABEL_NC_MAX} (every id of a 16-bit "
                              "label map; the generator takes one input channel per class): give the number of "
                              "classes the label maps hold, remapping sparse ids to 0..N-1")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"--beta1 {self.beta1}: must be >= 0 and < 1 (Adam's beta1)")
        if seed and not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(f"--seed {self.seed}: must be >= 0 and <= {SEED_MAX} (2**32 - 1, the range "
                              "of NumPy's seeds); give a seed in that range")

    def _check_square_side(self) -> None:
        """resize_and_crop makes every sample a fineSize square (of a loadSize one): a side the
        generator cannot take is refused here, with the sizes and generators that fit, instead
        of by the dataset's validation, once per image."""
        if self.fineSize > self.loadSize:
            raise ConfigError(f"--fineSize {self.fineSize}: --resize_or_crop resize_and_crop scales every image "
                              f"to {self.loadSize}x{self.loadSize} (--loadSize) and crops {self.fineSize}x"
                              f"{self.fineSize} from it: give --fineSize {self.loadSize} or less, or --loadSize "
                              f"{self.fineSize} or more")
        side, m, which = self.fineSize, self.required_multiple, "--fineSize"
        if side % m == 0:
            return
        if self.model == "pix2pixhd":
            fits = (f"fewer downsamplings (--n_downsample_global"
                    f"{', --n_local_enhancers' if self.netG == 'local' else ''})")
        else:
            from pix2pixhd.pix2pix_networks import NETG, generator_multiple
            ok = [g for g in NETG if side % generator_multiple(g) == 0]
            fits = f"--netG_pix2pix {' or '.join(ok)}" if ok else "no generator of this model"
        up = -(-side // m) * m
        raise ConfigError(f"{which} {side}: --resize_or_crop resize_and_crop makes every sample {side}x{side}, "
                          f"and this generator needs sides that divide by {m}: give {which} {up}"
                          f"{'' if side < m else f' or {side // m * m}'}, or a generator that takes "
                          f"{side}: {fits}")

    def _check_diffaug(self) -> None:
        from pix2pixhd.diffaug import parse_policy
        try:
            parse_policy(self.diffaug)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.model == "cyclegan":
            raise ConfigError(f"--diffaug {self.diffaug}: only the pix2pixhd and pix2pix steps augment D's "
                             "inputs; --model cyclegan ignores it: drop --diffaug")
        if self.model == "pix2pix" and self.lambda_GAN == 0:
            raise ConfigError(f"--diffaug {self.diffaug} augments D's inputs, but --lambda_GAN 0 trains "
                             "no D: drop --diffaug or set --lambda_GAN > 0")

    def _check_cyclegan(self) -> None:
        if self.stage != "global":
            raise ConfigError("--model cyclegan has one stage: drop --stage local/finetune")
        if self.label_nc != 0:
            raise ConfigError(f"--model cyclegan translates images to images: --label_nc {self.label_nc} "
                             "must be 0 (colour label maps are read as images)")
        if self.use_features:
            raise ConfigError("--model cyclegan has no feature encoder: drop --instance_feat/--label_feat")
        if self.lambda_identity > 0 and self.input_nc != self.output_nc:
            raise ConfigError(f"the identity loss feeds domain B ({self.output_nc} channels) to G_A, "
                             f"which takes {self.input_nc}: set --lambda_identity 0 or equal "
                             "--input_nc/--output_nc")
        if min(self.lambda_A, self.lambda_B, self.lambda_identity) < 0 or self.pool_size < 0:
            raise ConfigError(f"--lambda_A {self.lambda_A}, --lambda_B {self.lambda_B}, --lambda_identity "
                             f"{self.lambda_identity} and --pool_size {self.pool_size} must be >= 0")
        if self.input_nc not in (1, 3) or self.output_nc not in (1, 3):
            raise ConfigError(f"--input_nc {self.input_nc} / --output_nc {self.output_nc}: the unaligned "
                             "loader reads grey (1) or RGB (3) images")

    def _inherit(self, prev: "TrainConfig", run: "TrainConfig") -> "TrainConfig":
        """The options not given taken from ``prev``: all of them when resuming the run, the
        architecture of the previous stage when loading it (``run``: this run's decided basics)."""
        if run.resume:  # a resumed run is the same run
            names = [f.name for f in fields(self) if f.name not in NOT_RESUMED]
            changed = [k for k in ARCHITECTURE if getattr(self, k) is not None   # (model: lowercased)
                       and getattr(self, k) != getattr(prev, k)]
            if (self.stage is not None and self.stage != prev.stage
                    and not (self.stage == "finetune" and prev.netG == "global")):   # said below
                raise ConfigError(
                    f"--stage {self.stage}: --resume continues {run.experiment_dir}, a {prev.stage}-stage "
                    f"run, and a run keeps its stage: drop --stage {self.stage} (the next stage is a new "
                    f"run: --name NEW --stage {self.stage} --load_pretrain {run.experiment_dir})")
            kept = [k for k in KEPT_ON_RESUME if getattr(self, k) is not None and getattr(self, k) != getattr(prev, k)]
            if kept:
                raise ConfigError(
                    f"{' '.join(f'--{k} {getattr(self, k)}' for k in kept)}: --resume continues "
                    f"{run.experiment_dir}, trained with {', '.join(f'{k} {getattr(prev, k)}' for k in kept)}, "
                    "and another value would go on training the opposite task on its weights: drop "
                    f"{' '.join('--' + k for k in kept)}, or start a new run (another --name)")
            if changed:
                given = " ".join(f"--{k} {getattr(self, k)}" for k in changed)
                theirs = ", ".join(f"{k} {getattr(prev, k)}" for k in changed)
                raise ConfigError(
                    f"{given}: --resume continues {run.experiment_dir}, whose networks were built with "
                    f"{theirs}, and a checkpoint's networks cannot change shape: drop "
                    f"{' '.join('--' + k for k in changed)}, or start a new run from it (another --name "
                    "with --load_pretrain)")
            self._check_resumed_networks(prev, run)
        else:
            names = list(INHERITED) + list(INHERITED_LOSSES)
            if run.stage == "local" and prev.netG == "global":
                # the local enhancer works at 2^n_local_enhancers x the global stage's resolution:
                # its images are that much larger, read the same way, unless sizes are given
                # its enhancers are those the global stage records, unless given (a global stage's
                # --n_local_enhancers/--n_blocks_local are read here: they used to be recorded and left)
                n = self.n_local_enhancers if self.n_local_enhancers is not None else prev.n_local_enhancers
                up = 2 ** n
                if prev.model in (None, "pix2pixhd") and prev.ngf % up:
                    self._refuse_local_ngf(prev, run, n)
                c = self._taking(prev, names + ["resize_or_crop", "n_local_enhancers", "n_blocks_local"])
                c = dataclasses.replace(c, **{k: getattr(prev, k) * up for k in ("loadSize", "fineSize")
                                              if getattr(self, k) is None})
                if self.ngf is None:
                    # the global stage's G becomes the local G's global part: ngf x 2^n_local_enhancers
                    c.ngf = prev.ngf // up
                if self.num_D is None and prev.num_D > 3:
                    # D's scales load by name (new ones start fresh): at least the global stage's
                    c.num_D = prev.num_D
                return c
            names += list(LOADED_WHOLE)
            if run.stage == "finetune" or (prev.model in (None, "pix2pixhd") and prev.netG == "local"):
                # the same networks at the same resolution: the local stage's images too
                names += ["resize_or_crop", "loadSize", "fineSize"]
        return self._taking(prev, names)

    def _check_resumed_networks(self, prev: "TrainConfig", run: "TrainConfig") -> None:
        """A resumed run (``prev``: its config) keeps the networks it has: an option given (``self``)
        that adds or removes one is refused by name (:data:`SHAPING` beyond ARCHITECTURE). With
        --load_features the feature encoder E is not built (its weights and Adam state in the
        checkpoint failed to load; the reverse found no E); pix2pix's --lambda_GAN 0 builds no D (it
        was dropped from the next checkpoint, silently; the reverse found no D)."""
        folder = run.experiment_dir
        if (self.load_features is not None and self.load_features != prev.load_features
                and prev.model in (None, "pix2pixhd") and prev.use_features):
            if prev.load_features:
                raise ConfigError(
                    f"--load_features false: --resume continues {folder}, which reads precomputed feature maps "
                    "({phase}_feat, load_features on) and has no feature encoder E to train: drop --load_features "
                    "false (the run keeps its own), or train a new run with an E (another --name)")
            raise ConfigError(
                f"--load_features: --resume continues {folder}, which trains its feature encoder E (load_features "
                "off), and with --load_features it would have none (the checkpoint's E and its Adam state would "
                f"not load): drop --load_features (the run keeps its own), or start a new run that reads the maps: "
                f"--name NEW --load_pretrain {folder} --load_features")
        if (self.lambda_GAN is not None and prev.model == "pix2pix"
                and (self.lambda_GAN == 0) != (prev.lambda_GAN == 0)):
            if prev.lambda_GAN == 0:
                raise ConfigError(
                    f"--lambda_GAN {self.lambda_GAN}: --resume continues {folder}, trained with lambda_GAN 0 (L1 "
                    "only), which has no discriminator to continue: drop --lambda_GAN (the run keeps its 0), or "
                    "train a new run with a D (another --name)")
            raise ConfigError(
                f"--lambda_GAN 0: --resume continues {folder}, which trains a discriminator (lambda_GAN "
                f"{prev.lambda_GAN}), and with 0 it has none (its D and D's Adam state would be left out of the next "
                f"checkpoints): drop --lambda_GAN 0 (the run keeps its {prev.lambda_GAN}; a value > 0 is taken), "
                f"or start an L1-only run from its G: --name NEW --load_pretrain {folder} --lambda_GAN 0")

    def _refuse_local_ngf(self, prev: "TrainConfig", run: "TrainConfig", n: int) -> None:
        """A local stage from global stage ``prev``: its global part is ``prev``'s G, with ngf x 2^n
        (``n``: n_local_enhancers) filters, which ``prev.ngf`` does not divide into. No --ngf fits
        (it was refused as --ngf 0, or the trainer advised --ngf prev.ngf // 2^n, which it refused again)."""
        up = 2 ** n
        said = (f"--n_local_enhancers {n}" if self.n_local_enhancers is not None else
                f"--stage local (n_local_enhancers {n}, as {run.load_pretrain} records it)")
        fewer = [k for k in range(1, n) if prev.ngf % 2 ** k == 0]
        fix = ((f"give --n_local_enhancers {fewer[-1]}" + (" or fewer" if fewer[-1] > 1 else "") + ", or ")
               if fewer else "")
        raise ConfigError(
            f"{said}: the local generator's global part is the global stage's G, whose ngf is this stage's x "
            f"2^n_local_enhancers, and {run.load_pretrain} has ngf {prev.ngf}, which does not divide by 2^{n} = {up}, "
            f"so no --ngf fits: {fix}train the global stage with an --ngf that divides by {up} "
            f"(e.g. {max(up, prev.ngf // up * up)})")

    def _taking(self, prev: "TrainConfig", names) -> "TrainConfig":
        return dataclasses.replace(self, **{k: getattr(prev, k) for k in names if getattr(self, k) is None})

    def _filled(self, names=None, model: str | None = None) -> "TrainConfig":
        """A copy with the options ``names`` (default: all) that are not given set to the
        default of ``model`` (default: this config's model, itself defaulted first)."""
        fs = {f.name: f for f in fields(self)}
        model = model or self.model or fs["model"].metadata["default"]
        return dataclasses.replace(self, **{k: default_of(fs[k], model) for k in (names or fs)
                                            if getattr(self, k) is None})

    def check_resolved(self) -> None:
        """Raise unless every option is decided (a config from resolved(), config.json or a checkpoint)."""
        missing = [f.name for f in fields(self) if getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"TrainConfig options {missing[:6]}{' ...' if len(missing) > 6 else ''} are not "
                             "decided: build the config with TrainConfig(...).resolved()")

    def notes(self) -> list[str]:
        """What a user should know about a resolved config (the CLI prints these)."""
        out = [n for n in (getattr(self, "_resume_note", None), getattr(self, "_changed_note", None),
                           getattr(self, "_data_note", None), getattr(self, "_stage_note", None)) if n]
        if self.stage in ("local", "finetune") and not self.load_pretrain and not self.resume:
            out.append(f"--stage {self.stage} without --load_pretrain starts from random weights")
        return out

    def check_new_training(self) -> None:
        """Raise where a run that trains from its first step (not a resume) cannot: the local stage's
        --niter_fix_global without --load_pretrain would fix a randomly initialised global
        generator. The trainer checks it, not resolved(): an import (pix2pixhd.import_reference)
        resolves NVIDIA's local run, which has no --load_pretrain, with its niter_fix_global."""
        if self.resume or self.stage != "local" or not self.niter_fix_global or self.load_pretrain:
            return
        raise ConfigError(f"--niter_fix_global {self.niter_fix_global}: the local stage fixes its global generator "
                          f"for the first {self.niter_fix_global} epoch(s), and without --load_pretrain that "
                          "generator has random weights: give --load_pretrain GLOBAL_RUN (the global stage's run "
                          "folder), or drop --niter_fix_global")

    def check_layout(self) -> None:
        """Raise DatasetError where create_dataset would refuse the layout split ``phase`` of
        ``dataroot`` holds (or ``--dataset_mode`` reads), with its line: ``--model`` cannot train
        on it, the aligned layout's folder holds no AB images, or ``--dataset_mode``'s folders are
        not there but another layout's are. Both call :func:`pix2pixhd.data.dataset.layout_of`, from
        the folder listing alone (no file is read, not the palette's). The Trainer and --dry_run call
        it before the VGG19 weights are looked for: CycleGAN's trainA/ + trainB/ given to the default
        pix2pixhd was refused as missing VGG19 weights, which the run could never use. Anything else
        wrong with the data (no dataset there, a missing partner...) is left to create_dataset."""
        from pix2pixhd.data.dataset import layout_of
        # palette: only whether there is one (label maps are then the palette layout); not read here
        layout_of(self.dataroot, self.phase, self.dataset_mode, self.palette or None, self.model, missing_ok=True)

    # ---- derived values ------------------------------------------------------------------------
    @property
    def use_features(self) -> bool:
        return self.instance_feat or self.label_feat

    @property
    def generator_multiple(self) -> int:
        """What each side of the generator's input must divide by (:func:`generator_size_multiple`)."""
        return generator_size_multiple(self.model, self.netG, self.n_downsample_global,
                                       self.n_local_enhancers, self.netG_pix2pix)

    @property
    def required_multiple(self) -> int:
        m = self.generator_multiple
        if self.model == "pix2pixhd" and self.use_features and not self.load_features:
            m = max(m, 2 ** self.n_downsample_E)  # the encoder sees the same crop
        return m

    @property
    def multiple_reason(self) -> str:
        """Who needs :attr:`required_multiple`, for the data errors that name it."""
        g = self.generator_multiple
        if (self.model == "pix2pixhd" and self.use_features and not self.load_features
                and 2 ** self.n_downsample_E > g):
            return (f"the feature encoder needs (--n_downsample_E {self.n_downsample_E}; the generator "
                    f"alone needs {g}: fewer E downsamplings also fit)")
        return "the generator needs"

    @property
    def experiment_dir(self) -> Path:
        return run_dir(self.checkpoints_dir, self.name)   # refuses a --name that leaves checkpoints_dir

    def data_config(self, **overrides: Any) -> "DataConfig":
        """The dataset options of this (resolved) run, with ``overrides`` (DataConfig fields)."""
        self.check_resolved()
        d = DataConfig(dataset_mode=self.dataset_mode, label_nc=self.label_nc,
                       no_instance=self.no_instance and not self.instance_feat,
                       instance_feat=self.instance_feat,
                       load_features=self.load_features and self.use_features,   # read only with E's input
                       resize_or_crop=self.resize_or_crop,
                       loadSize=self.loadSize, fineSize=self.fineSize, no_flip=self.no_flip,
                       direction=self.direction, palette=self.palette or None,
                       required_multiple=self.required_multiple, multiple_reason=self.multiple_reason,
                       input_nc=self.input_nc,
                       output_nc=self.output_nc,
                       seed=self.seed, validate=self.validate, model=self.model)
        return dataclasses.replace(d, **overrides)

    # ---- files -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The options, plus ``config_format`` (:data:`CONFIG_FORMAT`) so that a later version can
        read what an older one meant."""
        return {**dataclasses.asdict(self), "config_format": CONFIG_FORMAT,
                **({"pretrain_epoch": self.pretrain_epoch} if self.load_pretrain else {}),
                **({"pretrain_checkpoint": self.pretrain_checkpoint}
                   if self.load_pretrain and self.pretrain_checkpoint else {})}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config's options (``to_dict()``, or ``dataclasses.asdict``); options it lacks take
        the defaults of its model. Read as this version's options unless it says its
        ``config_format``: a file saved by another version goes through :meth:`from_saved`."""
        return cls.from_saved({"config_format": CONFIG_FORMAT, **d})

    def folders_direction(self, saved_format: int | None = None) -> str:
        """The direction this config's run learned on {phase}_A/{phase}_B folders (rgb_pairs): its
        own, except in a config saved before DIRECTION_FOLDERS_FORMAT (``saved_format``, default
        the format it was read from), where BtoA left the folders A to B."""
        fmt = getattr(self, "_saved_format", CONFIG_FORMAT) if saved_format is None else saved_format
        return "AtoB" if fmt < DIRECTION_FOLDERS_FORMAT else self.direction

    def learned_direction_there(self, root: str | os.PathLike, phase: str,
                                saved_format: int | None = None) -> str | None:
        """The direction the run learned on split ``phase`` of ``root`` where it is not this
        config's own (:meth:`folders_direction`: a config saved before BtoA applied to
        {phase}_A/{phase}_B folders, and that split is of those folders); None where it is, or where
        no dataset is found there (reading it says why)."""
        learned = self.folders_direction(saved_format)
        if learned == self.direction:
            return None
        from pix2pixhd.data.layouts import detect_mode
        try:
            mode = self.dataset_mode if self.dataset_mode != "auto" else detect_mode(Path(root), phase, None)
        except Exception:
            return None
        return learned if mode == "rgb_pairs" else None

    @classmethod
    def from_saved(cls, d: dict) -> "TrainConfig":
        """A config saved in a file or checkpoint (config.json): one without ``config_format``
        was written by format 1, and means what format 1 meant; options it lacks (saved by an
        older version) take the defaults of its model. Each option is checked as a command line's
        is (type, choices, range: ``ngf: "8"``, ``no_instance: "false"``, ``niter: -1`` are
        refused), a ConfigError naming it; a resume's own seed is not range-checked (older
        versions took larger ones). Whether the sizes fit the checkpoint's weights is
        :func:`pix2pixhd.models.check_weights_fit`'s."""
        if not isinstance(d, dict):
            raise ConfigError(f"a saved config is a JSON object of options, not {type(d).__name__}")
        d = dict(d)
        fmt = d.pop("config_format", 1)
        pretrain_epoch = d.pop("pretrain_epoch", None)   # not an option: what the first start loaded
        pretrain_checkpoint = d.pop("pretrain_checkpoint", None)   # nor this: the file it loaded
        if fmt < 2 and d.get("model", "pix2pixhd") == "pix2pixhd":
            # format 1 saved pix2pix's lambda_L1 default (100) in pix2pixHD runs, whose step had
            # no L1 term: what ran was lambda_L1 0
            d["lambda_L1"] = 0.0
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NewerConfigError(f"config has unknown option(s) {unknown}: written by a newer pix2pixhd "
                                   f"than this one ({_version()}); read it with that version (pip install "
                                   "-U pix2pixhd, or its checkout)")
        c = cls(**d)._filled()._coerced()
        c._check_values()
        c._check_ranges(seed=False)
        if c.netG not in ("", "global", "local"):
            raise ConfigError(f"netG={c.netG!r}: expected global or local (or empty: from the stage)")
        if pretrain_epoch is not None:
            c._pretrain_epoch = str(pretrain_epoch)
        if isinstance(pretrain_checkpoint, dict):
            c._pretrain_checkpoint = pretrain_checkpoint
        c._saved_format = fmt   # what the file's direction meant for A/B folders (folders_direction)
        return c

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise MissingInputError(f"{path} not found: a run folder holds config.json beside its "
                                    "checkpoints (written by train_hd.py); pass the run folder or its config.json")
        try:
            saved = loads_json(path.read_text())
        except ValueError as e:   # not UTF-8, not JSON, nested too deeply
            raise ConfigError(f"{path} is not a run's config.json ({e}); restore it from a copy, or read "
                              "the configuration from a checkpoint: pix2pixhd.checkpoint.load_run_config") from e
        if not isinstance(saved, dict):
            raise ConfigError(f"{path} holds {type(saved).__name__}, not a run's configuration (a JSON "
                              "object of options); restore it from a copy")
        try:
            return cls.from_saved(saved)
        except NewerConfigError as e:
            raise NewerConfigError(f"{path}: {e}") from e
        except (TypeError, ValueError) as e:   # an option of the wrong type, choice or range
            raise ConfigError(f"{path} cannot be used ({e}): it was edited or damaged; restore it from a copy, "
                              "or read the configuration from a checkpoint: "
                              "pix2pixhd.checkpoint.load_run_config") from e

    def pretty(self) -> str:
        """One line per option; '[changed]' marks values that differ from the model's and
        stage's defaults, '[changed: from RUN]' those taken from the stage loaded or the run
        resumed. The options this model does not use (those :meth:`_check_model_only` refuses
        for it: :data:`MODEL_ONLY`'s of other models, and pix2pixHD's netG) are left out, named
        on one last line: a CycleGAN run listed pix2pixHD's ``netG: global``, ``num_D`` and
        ``no_cond_D: False`` (read as a conditional D), values its networks never had."""
        default = TrainConfig(model=self.model, stage=self.stage).resolved()
        source, inherited = getattr(self, "_inherited", None) or ("", ())
        unused = {k for k, models in MODEL_ONLY.items() if self.model not in models}
        if self.model != "pix2pixhd":
            unused.add("netG")
        lines, left_out = [], []
        for f in fields(self):
            if f.name in unused:
                left_out.append(f.name)
                continue
            v = getattr(self, f.name)
            mark = "" if v == getattr(default, f.name) else "   [changed]"
            if mark and f.name in inherited:
                mark = f"   [changed: from {source}]"
            lines.append(f"{f.name:>22}: {v}{mark}")
        if left_out:
            lines.append(f"  not listed (--model {self.model} does not use them): {', '.join(left_out)}")
        return "\n".join(lines)


# DataConfig's defaults: a pix2pixhd run's (as TrainConfig.data_config gives them)
_PIX2PIXHD = default_config("pix2pixhd")


@dataclass
class DataConfig:
    """How ``pix2pixhd.data.create_dataset`` reads one split: the reference's data options.

    A training run's comes from ``TrainConfig.data_config()``. ``palette``: None, 'facades', a
    JSON file or a list of [r, g, b]. ``required_multiple``: what the generator needs the sizes to
    divide by (``multiple_reason``: who needs it, in messages). ``input_nc``/``output_nc``: channels of the unaligned layout's A and B images.
    ``instance_feat``: the instance maps are read for the feature encoder (which needs them also
    with ``no_instance``); None: not known (a missing ``{phase}_inst`` is then explained both ways).
    ``is_train`` (None: phase == 'train') enables random flips, as the reference's
    isTrain. ``validate``: 'full' (decode every file), 'headers' (sizes and modes) or 'off'.
    ``inputs_only`` (synthesis): the generator's inputs are all that must be there; a split with
    no photo folder (``{phase}_img``, ``{phase}_B``), or an unaligned split with only the input
    domain's folder, is read without them (samples then have no ``image``; an unaligned split
    has no B images). A photo folder that is there is still paired and checked.
    ``model``: the train_hd.py --model of the run that reads the split (None: not known); the scan
    command in the loader's errors checks the sizes against its defaults. Other defaults: a
    pix2pixhd run's (:func:`default_config`).
    """
    dataset_mode: str = _PIX2PIXHD.dataset_mode
    label_nc: int = _PIX2PIXHD.label_nc
    no_instance: bool = _PIX2PIXHD.no_instance
    instance_feat: Optional[bool] = None
    load_features: bool = _PIX2PIXHD.load_features
    resize_or_crop: str = _PIX2PIXHD.resize_or_crop
    loadSize: int = _PIX2PIXHD.loadSize
    fineSize: int = _PIX2PIXHD.fineSize
    no_flip: bool = _PIX2PIXHD.no_flip
    direction: str = _PIX2PIXHD.direction
    palette: Any = _PIX2PIXHD.palette or None
    required_multiple: int = _PIX2PIXHD.required_multiple
    multiple_reason: str = _PIX2PIXHD.multiple_reason
    input_nc: int = _PIX2PIXHD.input_nc
    output_nc: int = _PIX2PIXHD.output_nc
    seed: int = _PIX2PIXHD.seed
    is_train: Optional[bool] = None
    validate: str = _PIX2PIXHD.validate
    inputs_only: bool = False
    model: Optional[str] = None


# ---- the command line ------------------------------------------------------------------------
def _shown(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return repr(v) if v == "" else str(v)


# A true/false option: alone it means true (``--no_flip``, as the reference's store_true flags),
# or it takes a value, so that an option the model, the run resumed or the stage loaded switches
# on can be switched off: ``--no_flip false``, ``--compile 0``, ``--no_dropout=false``.
BOOL_ARGUMENT = dict(nargs="?", const=True, type=parse_bool, default=None, metavar="true|false")


def build_parser(model: str = "pix2pixhd", description: str = "") -> argparse.ArgumentParser:
    """``train_hd.py``'s parser, generated from TrainConfig's fields in their groups. Every
    option defaults to None (not given), so the parsed namespace is a TrainConfig to resolve;
    the help shows each option's default for ``model``. Abbreviations are refused; true/false
    options take an optional value (:data:`BOOL_ARGUMENT`)."""
    p = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                formatter_class=RawDescriptionHelpFormatter,
                                usage="%(prog)s [--model M] [--stage S] --dataroot DIR --name NAME [OPTIONS]")
    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()}
    for f in fields(TrainConfig):
        md = f.metadata
        shown = f"default: {_shown(default_of(f, model))}"
        others = [f"--model {m}: {_shown(default_of(f, m))}" for m in MODELS
                  if m != model and default_of(f, m) != default_of(f, model)]
        help_ = f"{md['help']} ({'; '.join([shown] + others)})".replace("%", "%%")
        g = groups[md["group"]]
        if isinstance(md["default"], bool):
            g.add_argument(f"--{f.name}", **BOOL_ARGUMENT, help=help_)
        else:
            choices = md["choices"]
            if choices and f.name in REPO_VALUES:   # the repo's values: resolved() says what to use
                choices = _ReferenceChoices(choices, tuple(REPO_VALUES[f.name]))
            g.add_argument(f"--{f.name}", type=model_name if f.name == "model" else type(md["default"]),
                           choices=choices, default=None, help=help_)
        if f.name == "resume":
            g.add_argument("--continue_train", dest="resume", **BOOL_ARGUMENT,
                           help="the reference's name of --resume")
        if f.name == "netD_pix2pix":   # (the pix2pix repo's --netG is read by resolved())
            g.add_argument("--netD", dest="netD_pix2pix", default=None,
                           help="the pix2pix/CycleGAN repo's name of --netD_pix2pix")
    return p
