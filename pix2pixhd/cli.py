"""Command-line entry points (train_hd.py, synthesize.py; installed: pix2pixhd-train,
pix2pixhd-synthesize, ``python -m pix2pixhd train|synthesize``): argument handling only.

The commands (``pix2pixhd.launch``) call ``pix2pixhd.errors.run(train_main)``: an error the user can act on prints as one
line (``--debug`` shows its traceback); called from Python, these functions raise.

The options, their defaults and how a run's options are decided live in ``pix2pixhd.config``:
here the command line is parsed (only the options given are set) and handed to
``TrainConfig.resolved()``. Both parsers refuse abbreviations (``--ng 8`` is an error, not
``--ngf 8``). The reference's options this project replaces (``--gpu_ids``, ``--fp16``...) are
refused before parsing as one ``error:`` line naming the replacement (``config.REFERENCE_ONLY``):
argparse's own errors print the whole usage and exit with 2, past ``errors.run``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from functools import partial
from pathlib import Path

from pix2pixhd.argparsing import HelpFormatter
from pix2pixhd.config import (MODELS, SYNTHESIZE_REFERENCE_ONLY, TrainConfig, build_parser, model_name,
                              reference_only_error)
from pix2pixhd import errors
from pix2pixhd.errors import ConfigError, UserError, add_debug_option, debug_enabled, say, stdout_closed
from pix2pixhd.paths import check_name

TRAIN_DESCRIPTION = """Train pix2pixHD (--stage global | local | finetune), pix2pix (--model pix2pix) or CycleGAN
(--model cyclegan, unpaired trainA/ and trainB/).

Every option's default is shown for the model given with --model (pix2pixhd if none); a later
stage (--load_pretrain) or a resumed run (--resume) takes the options not given from the run it
loads. `%(prog)s --model pix2pix --help` shows pix2pix's defaults.

A true/false option alone means true (--no_flip); it also takes a value, so that one switched on by
the model's defaults, the run resumed or the stage loaded can be switched off: --no_flip false (or
0/no/off; true/1/yes/on). The reference's --gpu_ids, --fp16, --data_type, --tf_log,
--serial_batches, --display_winsize, --use_dropout, --verbose and --local_rank are refused with
what to use instead."""


def train_parser(argv: list[str] | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """train_hd.py's parser, its help showing the defaults of the --model in ``argv``; ``prog``:
    the command's name in the help (default: the script's file name)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--model")
    # NVIDIA's pix2pixHD and the pix2pix/CycleGAN repo's cycle_gan show their model's defaults too
    model = model_name(pre.parse_known_args(argv or [])[0].model or "")
    # an unknown --model is reported by the full parser, with the choices
    p = build_parser(model if model in MODELS else "pix2pixhd", description=TRAIN_DESCRIPTION)
    add_debug_option(p)   # listed beside --help; errors.run takes it off the command line
    if prog:
        p.prog = prog
    return p


# A negative number, which argparse reads as the value of the option before it (--display_id -1),
# not as an option (its parsers have no option that looks like one): argparse's own pattern.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def refuse_reference_only(argv: list[str], table: dict | None = None, command: str | None = None) -> None:
    """ConfigError (one line through ``errors.run``, status 1) for the first of the reference's
    options this project replaces (``--fp16`` -> ``--precision fp16``...; ``table``: another
    command's, as synthesize.py's; ``command``: the command named in the line, see
    config.reference_only_error), instead of argparse's usage and "unrecognized arguments"
    (status 2)."""
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(argv) and (not argv[i + 1].startswith("-")
                                             or _NEGATIVE_NUMBER.match(argv[i + 1])):
            value = argv[i + 1]
        message = reference_only_error(name, value if (eq or value) else None, table, command)
        if message:
            raise ConfigError(message)


def refuse_unknown_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """argparse's "unrecognized arguments" (usage, status 2) for an option ``parser`` does not
    have, naming the closest one, before argparse's own checks: a mistyped --checkpoint
    (``--check``) was reported as "the following arguments are required: --checkpoint". For a
    parser not made by ``pix2pixhd.argparsing.make_parser`` (whose parse_args does this itself),
    or one whose parse_known_args leaves the rest to another (import_reference)."""
    from pix2pixhd.argparsing import unknown_option
    found = unknown_option(parser, argv)
    if found:
        found[0].error(found[1])


def resolve_config(argv: list[str], prog: str | None = None) -> TrainConfig:
    """The command line's TrainConfig, resolved (inherited from --load_pretrain's stage or the
    run being resumed, the model's defaults, the stage's). ``prog``: as for train_parser."""
    refuse_reference_only(argv)
    parser = train_parser(argv, prog)
    refuse_unknown_options(parser, argv)   # a misspelt option names the closest one
    args = vars(parser.parse_args(argv))
    args.pop("debug", None)   # errors.run's flag, when train_main is called with it
    try:
        return TrainConfig(**args).resolved()
    except UserError:
        raise
    except ValueError as e:   # resolved()'s checks of option values and combinations
        raise ConfigError(str(e)) from e


# Exit statuses of a stop by SIGTERM (errors.STOPPED_EXIT_STATUS) and SIGINT (128 + SIGINT).
_STARTUP_STOPS = {signal.SIGTERM: 75, signal.SIGINT: 130}


@contextlib.contextmanager
def _startup_signals(held: list[int] | None = None):
    """While training starts (options, data validation, model build, checkpoint load), SIGTERM
    and SIGINT end the process at once with the status a stop in training has (75, 130) and one
    line: nothing has been trained, so there is nothing to save. The training loop installs its
    own handlers (stop at a step boundary, saving) and puts these back when it ends; the previous
    ones are restored when the block ends. A signal ignored on entry (SIGINT of a job started with
    `&` by a script) stays ignored. Main thread only (Python's rule). ``held``: signals that
    arrived before (pix2pixhd.launch holds them while this module imports); the first ends the start.
    Yields a dict whose "trainer" the caller sets: once that Trainer's fit() has ended (an error
    under way, e.g. a peer rank that died and the SIGTERM torchrun then sends, or the summary), or
    an error is under way before it (its "ended"), a signal is ignored, so that the process ends as
    it was ending, not with a start-up line."""
    state: dict = {"trainer": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def on_signal(signum, frame):
        if state.get("ended") or getattr(state["trainer"], "_fit_ended", False):
            return
        name, status = signal.Signals(signum).name, _STARTUP_STOPS[signum]
        msg = (f"stopped by {name} during start-up, before the first step: nothing to save; rerun the "
               "same command" + (f"; exit status {status}" if status != 75 else ""))
        for s in _STARTUP_STOPS:   # a second signal while this one unwinds: ignored
            signal.signal(s, signal.SIG_IGN)
        if os.environ.get("RANK", "0") == "0":
            try:
                os.write(2, f"{msg}\n".encode())
            except OSError:
                pass
        raise SystemExit(status)

    previous = errors.install_signal_handlers({s: on_signal for s in _STARTUP_STOPS})
    failed = False
    try:
        if held:
            on_signal(held[0], None)
        yield state
    except BaseException:
        failed = state["ended"] = True   # an error before the Trainer (options, setup) is one under way too
        raise
    finally:
        if failed and os.environ.get("WORLD_SIZE", "1") != "1":
            # under torchrun, an error on its way out: its line is written after this block
            # (errors.run), and torchrun SIGTERMs the ranks still running once the first has
            # exited; SIGTERM's default action would end this rank before its line. on_signal
            # stays (it ignores a signal once an error is under way) until the process ends.
            previous.pop(signal.SIGTERM, None)
        errors.restore_signal_handlers(previous)


def train_main(argv: list[str] | None = None, held: list[int] | None = None,
               prog: str | None = None) -> int:
    """``train_hd.py``; ``held``: SIGTERM/SIGINT numbers that arrived before this call; ``prog``:
    the command's name in its help (default: the script's file name). Under torchrun
    (WORLD_SIZE > 1) a run that fails leaves SIGTERM handled by a handler that ignores it (so
    torchrun's SIGTERM cannot end the rank before its error line): a Python caller that catches
    the error and goes on puts its own handler back."""
    argv = sys.argv[1:] if argv is None else argv
    with _startup_signals(held) as state:
        return _train(argv, prog, state)


# Packages the commands import only once they are under way (the progress bars, the images):
# checked before any work or write, so that one missing is one line, not a traceback midway.
# {module: the package that provides it}
REQUIRED = {"tqdm": "tqdm", "numpy": "numpy", "PIL": "pillow"}


def check_required_imports(command: str, required: dict[str, str] | None = None) -> None:
    """errors.check_required_imports of ``required`` (default :data:`REQUIRED`)."""
    errors.check_required_imports(command, REQUIRED if required is None else required)


def _train(argv: list[str], prog: str | None = None, state: dict | None = None) -> int:
    """train_main's work; ``state``: _startup_signals', which is told the Trainer."""
    cfg = resolve_config(argv) if prog is None else resolve_config(argv, prog)   # one argument for wrappers
    check_required_imports("training")   # before the run folder is made, on every rank
    from pix2pixhd import distributed
    info = distributed.setup(cfg.device)
    if info.is_master:
        say(f"pix2pixhd training, {info.world_size} process(es) on {info.device}\n{cfg.pretty()}")
        for note in cfg.notes():
            say(f"note: {note}")
        if cfg.ddp_bf16_grads and info.world_size == 1:
            say("note: --ddp_bf16_grads rounds the gradients DDP all-reduces between processes; this run "
                "has one process, so it changes nothing")
        if cfg.precision == "fp16" and info.device.type == "cpu":
            say("note: --precision fp16 on the CPU: autocast to fp16 there is usually slower than fp32 "
                "(CPUs have no fast fp16 arithmetic, and the loss scaler adds work); fp32 is the CPU's "
                "default")
        if debug_enabled():   # NVIDIA's --debug was a short run; a user may expect one
            say("note: --debug shows the traceback of an error; NVIDIA's --debug (a run of 1 epoch on 10 "
                "images) is --niter 1 --niter_decay 0 --max_dataset_size 10")
    if cfg.dry_run:   # the files the run reads first and its dataset's layout: there, or the run's own error now
        from pix2pixhd.run_folder import _file_in_the_way, check_new_run
        check_new_run(cfg)   # a folder holding another run: refused, as the launch would be
        why = _file_in_the_way(cfg.experiment_dir)   # a file where the run folder (or one above it) goes
        if why:   # the launch's lock_run refuses it, after the dataset's validation
            raise ConfigError(why)
        cfg.check_new_training()   # what the Trainer refuses before it builds anything
        cfg.check_layout()   # a layout --model cannot train on: said before the VGG19 weights, as the Trainer does
        if not cfg.no_vgg_loss:
            from pix2pixhd.losses import vgg19_file
            vgg19_file(cfg.vgg_path)
        if info.is_master:   # the layout and the file list; the files themselves are read at the start
            from pix2pixhd import data
            from pix2pixhd.data.dataset import (DatasetError, classes_problems, fatal_problems,
                                                format_problems, report_listing_problems)
            ds = data.create_dataset(cfg.dataroot, cfg.phase, cfg.data_config(validate="off", is_train=True),
                                     model=cfg.model, report_listing=False,
                                     max_dataset_size=cfg.max_dataset_size or 0)
            found = fatal_problems(classes_problems(ds)[1]) if cfg.validate != "off" else []
            if found:   # classes.json (one small file) unreadable, or a larger label_nc: as the run's validation says
                raise DatasetError(format_problems(found, ds.describe()), found)
            fatal = fatal_problems(ds.layout.problems)
            if fatal and cfg.validate != "off" and ds.all_records():   # what the run's validation refuses
                raise DatasetError(format_problems(ds.layout.problems, ds.describe()) + "\n(found by the "
                                   f"folder listing; the run's validation, --validate {cfg.validate}, refuses "
                                   "them: fix them, or pass --validate off to train on the complete samples)",
                                   fatal)
            report_listing_problems(ds)   # --validate off: a note (no complete sample: an error)
            print(f"dataset: {len(ds)} sample{'' if len(ds) == 1 else 's'} in {cfg.dataroot} (--phase {cfg.phase}); their files are "
                  f"checked when the run starts (--validate {cfg.validate})", flush=True)
        return 0
    from pix2pixhd.trainer import Trainer, TrainingAborted, TrainingInterrupted, TrainingStopped
    try:
        trainer = Trainer(cfg, info)
        trainer.from_command = True   # the notes were printed above; its Ctrl-C lines name the exit status
        if state is not None:
            state["trainer"] = trainer
        try:
            summary = trainer.fit()
        finally:
            # The Trainer (its DDP modules) is freed here, before distributed.cleanup ends the
            # group: freed after it, the last reference to a gloo group would end it inside a
            # destructor that holds the interpreter lock while joining gloo's threads, which may
            # need that lock to free a tensor (a hang at exit, seen on torch 2.13). An error's
            # traceback keeps the Trainer alive past this line (fit()'s frames keep their nested
            # functions, which close over it), so its DDP wrappers are dropped first.
            if state is not None:
                state["trainer"], state["ended"] = None, True
            trainer.release_distributed()
            del trainer
    except (TrainingStopped, TrainingInterrupted) as e:   # SIGTERM/SIGINT: the summary too, then status 75/130
        if info.is_master and e.summary is not None:
            _print_summary(e.summary)
        if isinstance(e, TrainingInterrupted):   # the API's KeyboardInterrupt: the command's SystemExit, as before
            raise TrainingStopped(e.line, e.status, e.summary) from None
        raise
    except TrainingAborted as e:   # a second Ctrl-C: its line said, exit status 130 without a traceback
        raise SystemExit(e.status) from None
    except BaseException:
        # An error under way (one the ranks agreed on at the start, say): torchrun SIGTERMs this
        # rank once a faster peer has exited on the same error, often while the group is ended
        # below; that signal must not turn this rank's error into a start-up stop line.
        if state is not None:
            state["ended"] = True
        raise
    finally:
        distributed.cleanup(info)
    if info.is_master:
        _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    """The run's summary on stdout. Printed after the run saved: a reader of stdout that is gone
    (`| head -1`) loses it without changing the exit status (0, or a stop's 75/130); stdout then
    goes to os.devnull, so that Python's flush at exit does not fail again."""
    try:
        print(json.dumps(summary, indent=1), flush=True)
    except BrokenPipeError:
        stdout_closed()


def _synthesis_job_defaults() -> dict:
    """SynthesisJob's defaults ({field: value}), which synthesize.py's options take. The class
    lives in :mod:`pix2pixhd.synthesis_job`, which imports no torch: --help and a mistyped option
    do not wait for it."""
    import dataclasses
    from pix2pixhd.synthesis_job import SynthesisJob
    return {f.name: f.default for f in dataclasses.fields(SynthesisJob) if f.default is not dataclasses.MISSING}


def synthesize_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """synthesize.py's parser (abbreviations refused); ``prog``: the command's name in its help
    (default: the script's file name). The options of a SynthesisJob field default to the field's
    default (:func:`_synthesis_job_defaults`), so that the command and the Python API agree."""
    job = _synthesis_job_defaults()
    p = argparse.ArgumentParser(
        prog=prog,
        description="Maps -> a dataset of synthesized photos with a trained generator (pix2pixHD, "
                    "pix2pix, CycleGAN): streaming, sharded under torchrun, resumable. See docs/synthesis.md.",
        formatter_class=HelpFormatter, allow_abbrev=False)
    add_debug_option(p)
    p.add_argument("--checkpoint", required=True,
                   help="training run folder (config.json + *.pt); the architecture comes from it")
    p.add_argument("--which_epoch", default="latest", help="checkpoint to load: 'latest' or an epoch number")
    i = p.add_argument_group("inputs (one of --input and --dataroot)")
    i.add_argument("--input", default="",
                   help="folder of inputs: label maps (single-channel id PNGs; colour maps for runs "
                        "trained with --palette), or photos for runs trained with --label_nc 0")
    i.add_argument("--inst", default="", help="with --input: folder of instance maps matched by file stem")
    i.add_argument("--real", default="", help="with --input: folder of real photos matched by stem (for "
                                              "--feature_mode encoded, and an HTML page with L1/PSNR)")
    i.add_argument("--dataroot", default="", help="a dataset root that holds the checkpoint's inputs: label "
                                                  "maps (cityscapes, palette, A|B colour maps), photos (rgb_pairs, "
                                                  "aligned) or two unpaired domains for CycleGAN, validated as for training")
    i.add_argument("--phase", default=job["phase"],
                   help="with --dataroot: the split to read ({phase}_label, ...); also the split written "
                        "in --out unless --out_phase is given (with --input: only that)")
    i.add_argument("--validate", default=job["validate"], choices=("full", "headers", "off"),
                   help="with --dataroot only: how the dataset is checked before any work")
    i.add_argument("--how_many", type=int, default=job["how_many"],
                   help="at most this many inputs (the first by name); 0 = all")
    i.add_argument("--scale_width", default=str(job["scale_width"]),
                   help="resize every input to this width in pixels first (height by its aspect ratio; "
                        "label/instance maps nearest, photos bicubic), as training's --resize_or_crop "
                        "scale_width did; 'trained': the checkpoint's --loadSize; 0: each map keeps its size")
    o = p.add_argument_group("output (a dataset: OUT/{phase}_label, _inst, _img + manifest.jsonl)")
    o.add_argument("--out", required=True, help="output dataset folder; a rerun of the same command resumes it")
    o.add_argument("--out_phase", default="", help="split name of the output dataset; empty = --phase")
    o.add_argument("--num_samples", type=int, default=job["num_samples"],
                   help="photos per map (K > 1: named <stem>_<k>.png), from sampled cluster features or "
                        "pix2pix's dropout, seeded per map and sample")
    o.add_argument("--seed", type=int, default=job["seed"],
                   help="seed of sampled clusters and dropout masks; each map and sample draws from its own")
    o.add_argument("--overwrite", action="store_true",
                   help="replace another synthesis in --out (default: refuse; the same job resumes)")
    o.add_argument("--strict", action="store_true", default=job["strict"],
                   help="exit status 65 (not 0) when any input was skipped (unreadable, ids out of range...), "
                        "once the job has gone through every input: the images written are kept and the job "
                        "is complete; the last line says how many were skipped and names the first. Under "
                        "torchrun every rank ends with 65, but torchrun itself exits with 1, as for any "
                        "failed rank: tell skips from errors by OUT/synthesis.json (complete, n_skipped) or "
                        "the ranks' 'error (rank R of W): --strict:' lines. Default: skips are counted, "
                        "and the exit status is 1 only when nothing was written")
    r = p.add_argument_group("engine")
    r.add_argument("--batch_size", type=int, default=job["batch_size"],
                   help="maps per generator call (maps of one size; a short batch is filled up)")
    r.add_argument("--workers", type=int, default=job["workers"], help="decoding processes (0: in the main process)")
    r.add_argument("--writers", type=int, default=job["writers"],
                   help="PNG encoding/writing threads (0 counts as 1: writing always runs in a thread of its own)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (torchrun: cuda:LOCAL_RANK)")
    r.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="number format of the generator (autocast); auto = bf16 on CUDA GPUs that compute "
                        "in it (sm_80 and newer), fp32 on older ones, on CPU and with --backend onnx "
                        "(whose graph computes in fp32)")
    r.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                   help="run the PyTorch generator or its ONNX export (onnxruntime)")
    r.add_argument("--onnx_path", default="", help="ONNX file for --backend onnx; empty = CHECKPOINT/generator.onnx "
                                                    "(CycleGAN --direction BtoA: CHECKPOINT/generator_G_B.onnx)")
    r.add_argument("--direction", default=job["direction"], choices=("AtoB", "BtoA"),
                   help="which generator of a CycleGAN run (AtoB: G_A, BtoA: G_B); default the run's")
    r.add_argument("--no_progress", action="store_true", help="no progress bar")
    r.add_argument("--no_test_dropout", action="store_true",
                   help="pix2pix: switch the U-Net's dropout off (default on at test time, as the paper)")
    r.add_argument("--bn_running_stats", action="store_true",
                   help="--norm batch generators (pix2pix's default), and the encoder of --feature_mode "
                        "encoded: normalise with the running statistics gathered in training (default: each "
                        "image's own statistics, as the paper and the reference run BatchNorm at test time)")
    r.add_argument("--eval", action="store_true",
                   help="the reference pix2pix's --eval: --bn_running_stats and --no_test_dropout together")
    f = p.add_argument_group("feature encoder (runs trained with --instance_feat / --label_feat)")
    f.add_argument("--feature_mode", default=None, choices=("sample", "cluster", "encoded"),
                   help="sample: a saved cluster per instance; cluster: the --cluster centre(s); "
                        "encoded: E's encoding of the real photos (--real, or the --dataroot's); not "
                        "given: cluster with --cluster, else sample")
    f.add_argument("--cluster", default="", help="--feature_mode cluster: K for every class (K modulo each "
                                                 "class's count of clusters), or class=K pairs (26=3,24=1; "
                                                 "other classes sampled)")
    f.add_argument("--use_encoded_image", action="store_true", help="reference name of --feature_mode encoded")
    f.add_argument("--clusters", default="", metavar="FILE",
                   help="the clusters file to sample from (or choose from, --cluster) instead of the run's "
                        "features_clustered.pt (the latest checkpoint's), e.g. for --which_epoch N the one "
                        "`python -m pix2pixhd.features encode --checkpoint RUN --which_epoch N --out FILE` wrote; "
                        "checked against the encoder as the run's file is")
    return p


def synthesize_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """synthesize.py: one process, or one rank of ``torchrun --nproc_per_node=K synthesize.py``;
    ``prog``: the command's name in its help (default: the script's file name)."""
    args = sys.argv[1:] if argv is None else argv
    refuse_reference_only(args, SYNTHESIZE_REFERENCE_ONLY)
    parser = synthesize_parser(prog)
    refuse_unknown_options(parser, args)
    a = parser.parse_args(argv)
    for name, what in (("checkpoint", "the training run folder"), ("out", "the output dataset folder")):
        if not getattr(a, name):   # Path("") is the working directory
            raise ConfigError(f"--{name} is empty: give {what}")
    for name in ("checkpoint", "input", "inst", "real", "dataroot", "out", "onnx_path", "clusters"):
        if getattr(a, name):   # a quoted ~ (--out=~/x) is the home folder, as the shell would make it
            setattr(a, name, os.path.expanduser(getattr(a, name)))
    from pix2pixhd.engine import check_job_int   # a job built in Python is checked the same way
    for name in ("how_many", "workers", "writers", "batch_size", "num_samples"):
        check_job_int(name, getattr(a, name))   # before the generator is loaded or anything is written
    if a.backend == "onnx":   # onnxruntime runs the exported fp32 graph: autocast does not reach it
        if a.precision in ("bf16", "fp16"):
            raise ConfigError(f"--precision {a.precision} with --backend onnx: the exported ONNX graph computes "
                              f"in fp32 and cannot run in {a.precision}; drop --precision (the ONNX backend is "
                              f"fp32), or pass --backend torch to synthesize in {a.precision}")
        a.precision = "fp32"   # what the job computes and records (auto would be bf16 on CUDA sm_80+)
    # {split}_label, _inst, _img are made in --out (and --phase's read from --dataroot): one folder name
    check_name(a.phase, "--phase", a.dataroot or a.out)
    if a.out_phase:
        check_name(a.out_phase, "--out_phase", a.out)
    a.feature_mode = _feature_mode(a)
    if bool(a.input) == bool(a.dataroot):
        raise ConfigError("give either --input FOLDER (label maps or photos) or --dataroot DATASET "
                          "(with --phase), " + ("not both" if a.input else "one of them"))
    for flag in ("inst", "real"):
        if getattr(a, flag) and a.dataroot:
            raise ConfigError(f"--{flag} goes with --input; a --dataroot dataset brings its own")
    if a.onnx_path and a.backend != "onnx":   # it was accepted, and the PyTorch generator ran
        raise ConfigError(f"--onnx_path {a.onnx_path} goes with --backend onnx, which runs that ONNX file; "
                          f"without it the PyTorch generator of --checkpoint runs: add --backend onnx, "
                          "or drop --onnx_path")
    if a.input and _given(args, "--validate"):   # it was accepted and changed nothing
        raise ConfigError(f"--validate {a.validate} goes with --dataroot: an --input folder is not validated "
                          "as a dataset (each map is checked as it is read, and skipped if bad): drop --validate")
    check_required_imports("synthesis")   # before the generator loads or --out is made
    from pix2pixhd import distributed
    info = distributed.setup(a.device)   # torchrun's environment: one shard per rank
    try:
        return _synthesize(a, info)
    finally:
        distributed.cleanup(info)


def _given(argv: list[str], flag: str) -> bool:
    """Whether ``flag`` is on the command line ``argv`` (``--flag V``, ``--flag=V``; not after
    ``--``). For an option whose default is SynthesisJob's, which the parser must keep (the
    command and the Python API run the same job), so "not given" is not None."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument(flag, dest="value", default=None)
    return pre.parse_known_args(list(argv))[0].value is not None


def _feature_mode(a: argparse.Namespace) -> str:
    """The feature mode --feature_mode, --use_encoded_image and --cluster ask for together; two of
    them that contradict each other are refused in one line naming both."""
    given = a.feature_mode   # None: not on the command line
    cluster = f"--cluster {a.cluster}"
    if a.use_encoded_image:
        if given not in (None, "encoded"):
            raise ConfigError(f"--use_encoded_image and --feature_mode {given} contradict each other "
                              "(--use_encoded_image is --feature_mode encoded): drop one of them")
        if a.cluster:
            raise ConfigError(f"--use_encoded_image and {cluster} contradict each other (features encoded "
                              "from the real photos, or a saved cluster centre): drop one of them")
        return "encoded"
    if a.cluster and given in ("sample", "encoded"):
        raise ConfigError(f"--feature_mode {given} and {cluster} contradict each other (--cluster chooses "
                          "the centres of --feature_mode cluster, and --cluster alone selects it): drop "
                          f"--feature_mode {given}, or --cluster")
    return given or ("cluster" if a.cluster else "sample")


def _synthesize(a: argparse.Namespace, info) -> int:
    from pix2pixhd.checkpoint import checkpoint_path
    from pix2pixhd.engine import SynthesisJob, run_synthesis
    from pix2pixhd.paths import file_sha256
    from pix2pixhd.models import generator_key
    from pix2pixhd.synthesis import Synthesizer, load_generator
    # flushed: through a pipe the summary otherwise waits in the buffer until the process exits,
    # after the process group's teardown (a log shows that the job is done before the exit is)
    device, say = info.device, (partial(print, flush=True) if info.is_master else (lambda *_, **__: None))
    given = {k: getattr(a, k) for k in ("bn_running_stats", "no_test_dropout", "eval")}
    if a.eval:
        a.bn_running_stats = a.no_test_dropout = True
    g, cfg = load_generator(a.checkpoint, a.which_epoch, device, test_dropout=not a.no_test_dropout,
                            test_batch_stats=not a.bn_running_stats, direction=a.direction)
    import torch
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    for note in _idle_test_options(given, g, cfg):
        say(f"note: {note}")
    bn_statistics = ("running" if a.bn_running_stats else "per_image") if has_bn else None
    ckpt = Path(a.checkpoint)
    ckpt = ckpt if ckpt.is_file() else checkpoint_path(ckpt, a.which_epoch)
    identity = {"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": file_sha256(ckpt),
                "generator": generator_key(cfg, a.direction), "backend": a.backend}
    if a.backend == "onnx":
        from pix2pixhd.export import OnnxGenerator, default_onnx_path, export_command
        key = identity["generator"]
        onnx = Path(a.onnx_path) if a.onnx_path else default_onnx_path(a.checkpoint, key)
        # the export that writes the file this synthesis needs, at the path it reads
        fix = export_command(a.checkpoint, a.which_epoch, a.direction, a.bn_running_stats and has_bn,
                             onnx if a.onnx_path else None)
        g = OnnxGenerator(onnx, fix=fix)   # a missing, special or damaged file names this exact command
        own = default_onnx_path(ckpt.parent, key)   # this run's file, beside its checkpoint
        theirs = Path(g.checkpoint).parent if g.checkpoint else None
        if (theirs is not None and theirs != ckpt.resolve().parent and onnx.resolve() != own.resolve()
                and g.checkpoint_sha256 not in (None, identity["checkpoint_sha256"])):
            # another run's export: re-exporting to this path would overwrite that run's file
            own_fix = export_command(a.checkpoint, a.which_epoch, a.direction,
                                     a.bn_running_stats and has_bn, own)
            raise ConfigError(f"{onnx} belongs to run {theirs} (exported from {g.checkpoint}), not to this "
                              f"synthesis's {ckpt}: export this run's generator to a file of its own with "
                              f"`{own_fix}` and leave --onnx_path out (that file is its default), or pass "
                              "--onnx_path a file exported from this checkpoint")
        if g.generator_key is not None and g.generator_key != key and a.onnx_path:
            # the file given is the other generator's export: re-exporting this one to it would
            # overwrite that export; this generator's file of its own is the default path
            own_fix = export_command(a.checkpoint, a.which_epoch, a.direction, a.bn_running_stats and has_bn)
            raise ConfigError(f"{onnx} holds generator {g.generator_key}, but this synthesis runs {key}"
                              f"{f' (--direction {a.direction})' if a.direction else ''}: leave --onnx_path out "
                              f"to read {own}, {key}'s own export"
                              + (" (there already)" if own.is_file() else f", which `{own_fix}` writes")
                              + f" (exporting {key} to {onnx} would overwrite the {g.generator_key} export)")
        if g.generator_key is not None and g.generator_key != key:   # None: exported before keys were stored
            raise ConfigError(f"{onnx} holds generator {g.generator_key}, but this synthesis runs {key}"
                              f"{f' (--direction {a.direction})' if a.direction else ''}: export {key} with "
                              f"`{fix}`" + ("" if a.onnx_path else " and pass its file with --onnx_path"))
        if g.checkpoint_sha256 is None:
            say(f"note: {onnx} records no checkpoint hash (exported before pix2pixhd recorded it): it cannot "
                f"be checked against {ckpt}; `{fix}` writes one that can")
        elif g.checkpoint_sha256 != identity["checkpoint_sha256"]:
            raise ConfigError(f"{onnx} is out of date: it was exported from {g.checkpoint or 'a checkpoint'} "
                              f"(sha256 {g.checkpoint_sha256[:12]}), but this synthesis loads {ckpt} (sha256 "
                              f"{identity['checkpoint_sha256'][:12]}); re-export with `{fix}`, or pass "
                              "--onnx_path a file exported from this checkpoint")
        if has_bn:   # the graph's BatchNorm mode is fixed at export; --bn_running_stats cannot change it
            exported = g.batchnorm_statistics or "per_image"   # unrecorded: the export CLI always wrote per_image
            if exported != bn_statistics:
                raise ConfigError(f"{onnx} normalises BatchNorm with {exported.replace('_', '-')} statistics, but "
                                  f"this synthesis asks for {bn_statistics.replace('_', '-')} ones"
                                  f"{' (--bn_running_stats / --eval)' if a.bn_running_stats else ''}: "
                                  f"re-export with `{fix}`, or pass --onnx_path a file exported "
                                  f"{'with' if a.bn_running_stats else 'without'} --bn_running_stats")
            if g.batchnorm_statistics is None:
                say(f"note: {onnx} records no BatchNorm mode (exported before it was recorded); taken as "
                    "per-image, which python -m pix2pixhd.export always wrote then")
        identity.update(onnx=str(onnx.resolve()), onnx_sha256=file_sha256(onnx))
        if cfg.model == "pix2pix" and not a.no_test_dropout:
            say("note: --backend onnx: the exported graph has no dropout, so pix2pix's test-time "
                "dropout is off (as with --no_test_dropout)")
    if not cfg.use_features and (a.cluster or a.clusters or a.feature_mode != "sample"):
        given = "--use_encoded_image" if a.use_encoded_image else f"--cluster {a.cluster}" if a.cluster else \
            f"--clusters {a.clusters}" if a.clusters else f"--feature_mode {a.feature_mode}"
        raise ConfigError(f"{given}: {a.checkpoint} has no feature encoder (it was trained without "
                          f"--instance_feat/--label_feat), so there are no features to choose: drop {given.split()[0]}")
    features = None
    if cfg.use_features:
        from pix2pixhd.features import FeatureSource
        features = FeatureSource.from_checkpoint(a.checkpoint, cfg, a.feature_mode, which_epoch=a.which_epoch,
                                                 cluster=a.cluster or None, seed=a.seed, device=device,
                                                 test_batch_stats=not a.bn_running_stats,
                                                 clusters=a.clusters or None)
        identity.update(feature_mode=a.feature_mode, cluster=a.cluster or None)
    synth = Synthesizer(g, cfg, device, precision=a.precision, features=features)
    identity.update(precision=synth.precision, test_dropout=synth.has_dropout)
    if has_bn:   # the two give other photos: a folder written with one does not resume with the other
        identity["batchnorm_statistics"] = bn_statistics   # onnx: the file's, checked equal above
        if a.feature_mode == "encoded" and cfg.use_features:   # E's too (older versions: running, always)
            identity["encoder_batchnorm_statistics"] = bn_statistics
    from pix2pixhd.engine import resolve_scale_width
    job = SynthesisJob(out=Path(a.out), input=Path(a.input) if a.input else None,
                       inst=Path(a.inst) if a.inst else None, real=Path(a.real) if a.real else None,
                       dataroot=Path(a.dataroot) if a.dataroot else None, phase=a.phase,
                       out_phase=a.out_phase or None, num_samples=a.num_samples, seed=a.seed,
                       batch_size=a.batch_size, how_many=a.how_many, workers=a.workers,
                       writers=a.writers, validate=a.validate, direction=a.direction,
                       overwrite=a.overwrite, progress=not a.no_progress,
                       scale_width=resolve_scale_width(a.scale_width, cfg), strict=a.strict)
    from pix2pixhd.engine import InputsSkippedError, SynthesisInterrupted
    skips = None
    try:
        rep = run_synthesis(synth, job, identity=identity, dist_info=info)
    except InputsSkippedError as e:   # --strict: the job is complete; its line comes last (errors.run)
        rep, skips = e.report, e
    except SynthesisInterrupted as e:   # Ctrl-C: the API's KeyboardInterrupt, the command's stop line
        if e.stopped:   # every rank says its own line (under torchrun)
            print(e.line, file=sys.stderr, flush=True)
            return e.exit_status
        rep = e.report   # during the final merge: the job is complete, summed up as after a SIGTERM there
    say(f"wrote {rep.written} images to {a.out} in {rep.seconds:.2f} s ({rep.images_per_s:.2f} images/s "
        f"on {device}{f', rank 0 of {info.world_size}' if info.distributed else ''}; generator "
        f"{rep.generator_fraction:.0%} of the time); skipped {rep.skipped}; {rep.already_done} already "
        f"complete; manifest {rep.manifest}")
    if a.real and info.is_master:
        _results_page(job, cfg, say)
    if skips is not None:
        raise skips   # one error line, exit status 65 (errors.SKIPPED_EXIT_STATUS), on every rank
    return 0 if rep.written or rep.already_done or not rep.skipped else 1


def _idle_test_options(given: dict, g, cfg) -> list[str]:
    """Notes for the test-time options in ``given`` ({flag: given}) that change nothing for
    generator ``g``: --bn_running_stats without BatchNorm layers, --no_test_dropout without dropout
    layers, --eval (the two together) where neither or one of them applies."""
    import torch
    from torch.nn.modules.dropout import _DropoutNd
    no_bn = not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    no_dropout = not any(isinstance(m, _DropoutNd) and m.p > 0 for m in g.modules())
    why = {"bn_running_stats": f"no BatchNorm layers (--norm {cfg.norm}: no running statistics to use)",
           "no_test_dropout": "no dropout layers (" + ("pix2pixHD's generator has none" if cfg.model == "pix2pixhd"
                                                       else "trained with --no_dropout") + ")"}
    idle = {k: why[k] for k, none in (("bn_running_stats", no_bn), ("no_test_dropout", no_dropout)) if none}
    notes = []
    for k, reason in idle.items():
        if given[k]:
            notes.append(f"--{k} changes nothing for this checkpoint: its generator has {reason}")
    rest = [k for k in idle if not given[k]]
    if given["eval"] and rest:
        part = ("--eval (--bn_running_stats and --no_test_dropout)" if len(rest) == 2 else
                f"--eval's --{rest[0]} part")
        notes.append(f"{part} changes nothing for this checkpoint: its generator has "
                     + " and ".join(idle[k] for k in rest))
    return notes


def _results_page(job, cfg, say) -> None:
    """L1/PSNR against --real and an HTML page (label | synthesized | real) in OUT/index.html."""
    from pix2pixhd.engine import OutputLayout
    from pix2pixhd.errors import InputError
    from pix2pixhd.report import compare_folders, write_comparison_page
    if job.num_samples != 1:
        say("note: --real with --num_samples > 1: no L1/PSNR page (the samples have no single real photo)")
        return
    lay = OutputLayout(job.split, photo_inputs=cfg.label_nc == 0)
    try:
        stats = compare_folders(job.out / lay.image_dir, job.real, resize_real=bool(job.scale_width))
    except InputError as e:
        say(f"note: no comparison with --real: {e}")
        return
    page = write_comparison_page(job.out / lay.image_dir, job.out / lay.input_dir, job.real, cfg.label_nc,
                                 stats, page_dir=job.out)
    say(f"vs {job.real}{f' (resized to --scale_width {job.scale_width})' if job.scale_width else ''}: "
        f"L1 {stats['l1']:.4f}  pooled PSNR {stats['pooled_psnr']:.2f} dB over {stats['n']} images; page {page}")


if __name__ == "__main__":   # `python -m pix2pixhd.cli`: this module only defines the commands
    print("pix2pixhd.cli defines the commands and runs none: use pix2pixhd-train / pix2pixhd-synthesize "
          "(python -m pix2pixhd train|synthesize; in a checkout: python train_hd.py / synthesize.py)",
          file=sys.stderr)
    sys.exit(2)
