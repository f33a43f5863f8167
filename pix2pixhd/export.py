"""ONNX export of a trained generator, and the runtime wrapper synthesis uses for ``--backend onnx``.

* :func:`export_onnx` writes ``generator [N, input_nc, H, W] float32 → [N, output_nc, H, W]``
  with N, H and W dynamic, then checks the file with onnxruntime on CPU against PyTorch. The file
  is made and checked under a temporary name beside ``path`` and written to ``path`` (atomically)
  only once the check passes: a failed check or an interruption leaves ``path`` as it was.
* :class:`OnnxGenerator` loads such a file into an onnxruntime session and is called like the
  torch generator (``OnnxGenerator(path)(x)``), so ``pix2pixhd.synthesis.Synthesizer`` takes either.
* ``python -m pix2pixhd.export --checkpoint DIR`` exports a training run's generator to
  ``DIR/generator.onnx`` (the path ``synthesize.py --backend onnx`` reads by default); for a
  CycleGAN run ``--direction BtoA`` exports G_B instead, to ``DIR/generator_G_B.onnx``
  (:func:`default_onnx_path`).

The exported graph is fp32 and uses the PyTorch reference of every fused layer (Triton kernels
do not export), so it runs anywhere onnxruntime does. The file carries its own metadata
(input/output channels, the required size multiple, the training config when known) so a
session never needs the checkpoint to know how to be called. It also records what it was made
from, so ``synthesize.py --backend onnx`` can refuse a file that no longer matches the checkpoint
it loads: the checkpoint file's sha256 and ``--which_epoch`` (the CLI's exports), and which
BatchNorm statistics the graph normalises with (``per_image``, the default, or ``running`` with
``--bn_running_stats``), for generators that have BatchNorm.

Needs ``pip install onnx onnxscript onnxruntime`` (in a checkout: ``pip install -e '.[export]'``).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from pix2pixhd import __version__
from pix2pixhd.errors import ConfigError, InputError, MissingDependencyError, MissingInputError, UserError, loads_json

# Keys of the ONNX file's metadata_props that OnnxGenerator reads back.
META_INPUT_NC = "pix2pixhd.input_nc"
META_OUTPUT_NC = "pix2pixhd.output_nc"
META_MULTIPLE = "pix2pixhd.required_multiple"
META_CONFIG = "pix2pixhd.config"
META_VERSION = "pix2pixhd.version"
META_GENERATOR = "pix2pixhd.generator"
META_KEY = "pix2pixhd.generator_key"   # the checkpoint key: G, or CycleGAN's G_A / G_B
META_CHECKPOINT = "pix2pixhd.checkpoint"                 # the checkpoint file exported (resolved path)
META_CHECKPOINT_SHA256 = "pix2pixhd.checkpoint_sha256"   # ... and its sha256 when exported
META_WHICH_EPOCH = "pix2pixhd.which_epoch"               # ... and the --which_epoch that chose it
META_BN = "pix2pixhd.batchnorm_statistics"               # per_image | running; absent: no BatchNorm


class ExportCheckError(UserError, RuntimeError):
    """The exported graph does not reproduce the PyTorch generator; the file was not written."""


class OnnxOutOfMemoryError(UserError, MemoryError):
    """onnxruntime ran out of memory running an ONNX generator. A MemoryError, so synthesis skips
    the batch's inputs as it does those too large for a torch generator (engine ``_too_large``)."""


# what onnxruntime's errors say when an allocation failed (its arena, the CPU or CUDA allocator)
_ORT_OUT_OF_MEMORY = re.compile(r"BFCArena|[Ff]ailed to allocate|bad_alloc|out of memory|Available memory of")


def _ort_why(e: BaseException) -> str:
    """onnxruntime's error ``e`` as one line, without its ``[ONNXRuntimeError] : 2 : KIND :`` head."""
    why = " ".join(re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(e)).split())
    return re.sub(r"\s*Please fix either the inputs/outputs or the model\.?$", "", why).rstrip(".")


_EXTRA_HINT = "pip install onnx onnxscript onnxruntime (in a checkout: pip install -e '.[export]')"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise MissingDependencyError(f"pix2pixhd.export needs `{module}`; {_EXTRA_HINT}") from e


def default_onnx_path(checkpoint_dir: str | Path, key: str = "G") -> Path:
    """Where a run's exported generator ``key`` goes by default: ``generator.onnx`` for the run's
    own generator (G; CycleGAN's G_A), ``generator_G_B.onnx`` for CycleGAN's B -> A one."""
    return Path(checkpoint_dir) / ("generator.onnx" if key in ("G", "G_A") else f"generator_{key}.onnx")


def _required_multiple(generator: nn.Module) -> int:
    return int(getattr(generator, "required_multiple", 1))


def batchnorm_statistics(generator: nn.Module) -> str | None:
    """Which statistics ``generator``'s BatchNorm layers normalise with in eval mode (as exported):
    'per_image' (``PerImageBatchNorm2d``, load_generator's default), 'running' (plain BatchNorm2d),
    or None when it has no BatchNorm. Layers that disagree are refused: the file could record neither."""
    from pix2pixhd.pix2pix_networks import PerImageBatchNorm2d
    modes = {"per_image" if isinstance(m, PerImageBatchNorm2d) else "running"
             for m in generator.modules() if isinstance(m, nn.BatchNorm2d)}
    if len(modes) > 1:
        raise ValueError(f"{type(generator).__name__} mixes per-image and running-statistics BatchNorm; "
                         "switch all its layers with pix2pixhd.pix2pix_networks.use_test_statistics")
    return modes.pop() if modes else None


def export_command(checkpoint: str | Path, which_epoch: str = "latest", direction: str | None = None,
                   bn_running_stats: bool = False, out: str | Path | None = None) -> str:
    """The ``python -m pix2pixhd.export`` command line that writes the file a synthesis needs
    (for the error messages that name it); ``out`` None: the default path."""
    return " ".join(["python -m pix2pixhd.export --checkpoint", str(checkpoint),
                     *([f"--which_epoch {which_epoch}"] if str(which_epoch) != "latest" else []),
                     *([f"--direction {direction}"] if direction else []),
                     *(["--bn_running_stats"] if bn_running_stats else []),
                     *([f"--out {out}"] if out else [])])


class _DropTorchvisionNote(logging.Filter):
    """torch.onnx's exporter builds its op registry on every export and, without torchvision
    installed, logs 'torchvision is not installed. Skipping torchvision::nms' (roi_align, roi_pool,
    deform_conv2d) at WARNING each time: ops no generator uses, so nothing to act on. Those lines
    are dropped; anything else it logs passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("torchvision is not installed")


class _KeepConverterNotes(logging.Filter):
    """Holds back what the exporter logs about converting the graph to a lower opset (torch's
    'Setting ONNX exporter to use operator set version 18...', onnxscript's failed conversion with
    its traceback); ``export_onnx`` checks the written opset and says what happened in one error."""

    def __init__(self):
        super().__init__()
        self.failures: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            self.failures.append((str(e).strip().splitlines() or [type(e).__name__])[-1].split("failed: ")[-1])
        return False


@contextlib.contextmanager
def _converter_notes():
    logs = [logging.getLogger(n) for n in ("torch.onnx._internal.exporter._compat", "onnxscript.version_converter")]
    notes = _KeepConverterNotes()
    for log in logs:
        log.addFilter(notes)
    try:
        yield notes
    finally:
        for log in logs:
            log.removeFilter(notes)


def _opset(model) -> int | None:
    """The default-domain opset an ONNX ModelProto imports."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


LEGACY_MAX_OPSET = 17   # the highest opset export_onnx asks the TorchScript exporter for


@contextlib.contextmanager
def _without_torchvision_note():
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    note = _DropTorchvisionNote()
    log.addFilter(note)
    try:
        yield
    finally:
        log.removeFilter(note)


def export_onnx(generator: nn.Module, path: str | Path, input_nc: int | None = None, *,
                height: int | None = None, width: int | None = None, opset: int = 18,
                dynamo: bool = True, config: dict | None = None, check: bool = True,
                atol: float = 1e-4, seed: int = 0, generator_key: str | None = None,
                checkpoint: str | Path | None = None, checkpoint_sha256: str | None = None,
                which_epoch: str | None = None, verify: Callable[[Path], None] | None = None) -> Path:
    """Export ``generator`` to ONNX at ``path`` with dynamic batch, height and width.

    generator: a GlobalGenerator / LocalEnhancer, or a pix2pix / CycleGAN U-Net or ResNet (any
        module mapping [N, input_nc, H, W] float32 to [N, C, H, W]). It is copied to CPU fp32, put
        in eval mode (no dropout: the file is deterministic, even if a Synthesizer hooked seeded
        dropout into the module), and every fused norm layer is switched to its PyTorch
        reference; the caller's module is left untouched.
    input_nc: channels of the generator input (label_nc [+1 boundary] [+feat_num]); read from
        ``generator.input_nc`` when None.
    height, width: the trace example's size; default two multiples of the generator's required
        multiple that differ (so nothing specialises on a square shape). Exported H/W stay dynamic.
    dynamo: True uses torch.export (PyTorch's default exporter since 2.9, needs onnxscript);
        False the legacy TorchScript exporter (deprecated upstream, much faster to run).
    opset: the file's opset; the TorchScript exporter is asked for at most 17. torch.export
        exports at 18 and converts to a lower ``opset``, which fails for most generators (no
        converter for Pad): a file whose opset is not the one asked for is refused (ConfigError
        naming --legacy) and not written.
    config: the training config (``TrainConfig.to_dict()``), stored in the file's metadata, with
        ``generator_key`` (which of the run's generators this is: G, G_A or G_B) when given.
    checkpoint, checkpoint_sha256, which_epoch: the checkpoint file the weights came from, its
        sha256 (``pix2pixhd.paths.file_sha256``) and the ``--which_epoch`` that named it; recorded
        when given, so synthesis can tell the file is out of date once the checkpoint changes.
        The BatchNorm statistics the graph uses (:func:`batchnorm_statistics`) are always recorded.
    check: run the file with onnxruntime on CPU on random one-hot label maps at two sizes and
        raise :class:`ExportCheckError` if max |onnx - torch| > ``atol``.
    verify: called with the finished file (metadata included) under its temporary name, after
        ``check``; an exception it raises stops the export like a failed check.
    The file is exported, given its metadata and checked as ``path``'s temporary sibling
    (``NAME.export.tmp``), then written to ``path`` atomically (``atomic_write_bytes``): when the
    export, the check or ``verify`` fails, or the process is interrupted, ``path`` is as it was
    before (the previous file or none) and the temporary file is removed.
    Returns the written path.
    """
    _require("onnx")
    if dynamo:
        _require("onnxscript")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give the ONNX file to write, e.g. {path / 'generator.onnx'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if input_nc is None:
        input_nc = getattr(generator, "input_nc", None)
        if input_nc is None:
            raise ValueError(f"{type(generator).__name__} has no input_nc attribute; pass "
                             "export_onnx(..., input_nc=label_nc + 1 (boundary) + feat_num)")
    g = _export_copy(generator)
    g.requires_grad_(False)
    bn = batchnorm_statistics(g)
    m = _required_multiple(g)
    height = height or 2 * m
    width = width or 3 * m
    x = _random_input(1, input_nc, height, width, seed)
    tmp = path.with_name(path.name + ".export.tmp")   # not NAME.tmp: atomic_write_bytes' own
    try:
        with warnings.catch_warnings(), _without_torchvision_note(), _converter_notes() as conversion:
            # Both exporters warn at length about internals we cannot act on (shape-check tracer
            # warnings, instance_norm's train flag, constant folding of slices, legacy deprecation).
            warnings.simplefilter("ignore")
            if dynamo:
                n, h, w = torch.export.Dim("N"), torch.export.Dim.DYNAMIC, torch.export.Dim.DYNAMIC
                # Positional (a tuple, one entry per forward argument): a dict must be keyed by the
                # forward's own argument name, which differs between generators (pix2pixHD's `input`,
                # the pix2pix/CycleGAN U-Net's and ResNet's `x`); input_names only names the ONNX input.
                torch.onnx.export(g, (x,), str(tmp), input_names=["input"], output_names=["output"],
                                  opset_version=opset, dynamo=True, external_data=False,
                                  dynamic_shapes=({0: n, 2: h, 3: w},), verbose=False)
            else:
                axes = {0: "N", 2: "H", 3: "W"}
                torch.onnx.export(g, (x,), str(tmp), input_names=["input"], output_names=["output"],
                                  opset_version=min(opset, LEGACY_MAX_OPSET), dynamo=False,
                                  dynamic_axes={"input": axes, "output": axes})

        import onnx
        model = onnx.load(str(tmp))
        want, got = (opset if dynamo else min(opset, LEGACY_MAX_OPSET)), _opset(model)
        if got != want:
            raise ConfigError(_opset_not_honoured(path, want, got, dynamo, conversion.failures))
        data = _with_metadata(model, {
            META_INPUT_NC: str(input_nc),
            META_OUTPUT_NC: str(getattr(g, "output_nc", "")),
            META_MULTIPLE: str(m),
            META_GENERATOR: type(generator).__name__,
            META_VERSION: __version__,
            **({META_CONFIG: json.dumps(config, sort_keys=True)} if config is not None else {}),
            **({META_KEY: generator_key} if generator_key is not None else {}),
            **({META_BN: bn} if bn is not None else {}),
            **({META_CHECKPOINT: str(Path(checkpoint).resolve())} if checkpoint is not None else {}),
            **({META_CHECKPOINT_SHA256: checkpoint_sha256} if checkpoint_sha256 is not None else {}),
            **({META_WHICH_EPOCH: str(which_epoch)} if which_epoch is not None else {}),
        })
        tmp.write_bytes(data)   # the check runs the bytes that go to path
        if check:
            # Two sizes that differ from the trace example and from each other, N=2: proves H, W and
            # N are really dynamic, not just that the traced shape replays.
            sizes = [(height + m, width), (height, width + 2 * m)]
            diff = check_onnx(g, tmp, sizes=sizes, batch=2, seed=seed + 1, written=path)
            if diff > atol:
                raise ExportCheckError(f"{path}: onnxruntime output differs from PyTorch by {diff:.3g} "
                                       f"(> atol={atol}); the export is not faithful, so it was not written "
                                       f"({_previous(path)})")
        if verify is not None:
            verify(tmp)
        from pix2pixhd.checkpoint import atomic_write_bytes
        atomic_write_bytes(path, data)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _opset_not_honoured(path: Path, want: int, got: int | None, dynamo: bool, failures: list[str]) -> str:
    """The one line for an exported file whose opset is not the one asked for."""
    if dynamo:
        why = f" (onnx: {failures[-1]})" if failures else ""
        how = (f"the torch.export exporter wrote opset {got}: it exports at opset 18 and could not convert "
               f"this generator to {want}{why}")
        fix = (f"Export with --legacy --opset {want} (the TorchScript exporter, opsets up to "
               f"{LEGACY_MAX_OPSET}) for an older onnxruntime, or with --opset 18"
               if want <= LEGACY_MAX_OPSET else "Export with --opset 18")
    else:
        how = f"the TorchScript exporter (--legacy) wrote opset {got}"
        fix = f"Pass an --opset it supports (at most {LEGACY_MAX_OPSET}), or drop --legacy for opset 18"
    return f"--opset {want} was not honoured: {how}; {path} was not written ({_previous(path)}). {fix}"


def _previous(path: Path) -> str:
    return f"the previous {path.name} there is untouched" if path.exists() else f"there was no {path.name} before"


def _export_copy(generator: nn.Module) -> nn.Module:
    """What gets exported: a CPU fp32 copy in eval mode (Dropout off), fused norms switched to
    their PyTorch reference, and no test-time dropout hooks. A Synthesizer built on ``generator``
    leaves forward hooks on its Dropout layers (``pix2pixhd.synthesis._SeededDropout``); a deep
    copy takes them along, and traced they would put RandomUniformLike into the graph and make the
    file non-deterministic. The exported generator is the deterministic one (no dropout)."""
    from pix2pixhd.layers import set_norm_impl
    from pix2pixhd.synthesis import remove_seeded_dropout
    return set_norm_impl(remove_seeded_dropout(copy.deepcopy(generator)).float().cpu().eval(), "ref")


def _random_input(n: int, c: int, h: int, w: int, seed: int, images: bool = False) -> torch.Tensor:
    """Random label-map-like input: a one-hot of random ids (+ any remaining channels binary);
    ``images``: random images, uniform in [-1, 1] (the input of image-to-image generators).

    Label-map generators see one-hot maps and a {0,1} boundary channel, never Gaussian noise;
    instance norm makes the network sensitive to the input statistics, so test on what it will be fed.
    """
    gen = torch.Generator().manual_seed(seed)
    if images:
        return torch.rand(n, c, h, w, generator=gen) * 2 - 1
    ids = torch.randint(0, c, (n, 1, h, w), generator=gen)
    return torch.zeros(n, c, h, w).scatter_(1, ids, 1.0)


def _with_metadata(model, props: dict[str, str]) -> bytes:
    """The bytes of the ONNX ModelProto ``model`` (or the file at that path) with ``props`` set in
    its metadata_props."""
    import onnx
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    existing = {p.key: p for p in model.metadata_props}
    for k, v in props.items():
        if k in existing:
            existing[k].value = v
        else:
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    return model.SerializeToString()


def check_onnx(generator: nn.Module, path: str | Path, sizes=((64, 96), (96, 64)), batch: int = 2,
               seed: int = 1, images: bool = False, written: str | Path | None = None) -> float:
    """Max |onnxruntime(CPU) - torch| over random one-hot inputs (``images``: random images in
    [-1, 1]) of each (H, W) in ``sizes``. NaN or inf in either output raises ExportCheckError
    (a difference of NaN would pass any atol); ``written``: the file the check is for (``path``
    is its temporary copy), which the error says was not written."""
    og = OnnxGenerator(path)
    g = _export_copy(generator)
    worst = 0.0
    for i, (h, w) in enumerate(sizes):
        x = _random_input(batch, og.input_nc, h, w, seed + i, images)
        with torch.inference_mode():
            ref = g(x)
        out = og(x)
        if out.shape != ref.shape:
            raise RuntimeError(f"{path}: onnx output shape {tuple(out.shape)} != torch "
                               f"{tuple(ref.shape)} at input {w}x{h} (WxH)")
        for name, y in (("PyTorch", ref), ("onnxruntime", out)):
            if not bool(torch.isfinite(y).all()):
                raise ExportCheckError(_nonfinite_check(name, w, h, path, written))
        worst = max(worst, float((out - ref).abs().max()))
    return worst


def _nonfinite_check(name: str, w: int, h: int, path, written) -> str:
    """The one line for a parity check whose ``name`` output (PyTorch or onnxruntime) held NaN or inf."""
    head = f"{written} was not written ({_previous(Path(written))})" if written is not None else str(path)
    if name == "PyTorch":
        return (f"{head}: the PyTorch generator itself outputs NaN or inf on a {w}x{h} (WxH) input: its "
                "weights hold non-finite values (a damaged checkpoint, or one saved after training "
                "diverged); export another checkpoint (--which_epoch N)")
    return (f"{head}: onnxruntime outputs NaN or inf on a {w}x{h} (WxH) input where PyTorch does not: the "
            "export is not faithful; export again with the other exporter (--legacy or not) or another --opset")


def _export_command_for(path: Path) -> str:
    """The export command that writes ``path``: at a run's default name (generator.onnx,
    generator_G_B.onnx) the run is its folder; elsewhere the run is not known."""
    if path.name == "generator.onnx":
        return export_command(path.parent)
    if path.name == "generator_G_B.onnx":
        return export_command(path.parent, direction="BtoA")
    return export_command("<training run folder>", out=path)


def _bad_meta(path: Path, meta, key: str, why: str, fix: str) -> InputError:
    value = meta[key] if len(meta[key]) <= 40 else meta[key][:37] + "..."
    return InputError(f"ONNX generator {path}: its metadata {key} {value!r} {why}; the file was edited or "
                      f"damaged; export it again with `{fix}`")


def _meta_int(path: Path, meta, key: str, default: int, fix: str) -> int:
    """Metadata ``key`` of the file at ``path``: a whole number >= 1 (absent: ``default``)."""
    if key not in meta:
        return default
    try:
        n = int(meta[key])
    except ValueError:
        raise _bad_meta(path, meta, key, "is not a whole number", fix) from None
    if n < 1:
        raise _bad_meta(path, meta, key, "is not a number >= 1", fix)
    return n


def _meta_config(path: Path, meta, fix: str) -> dict | None:
    """The training config the file at ``path`` records (a JSON object), or None."""
    if META_CONFIG not in meta:
        return None
    try:
        config = loads_json(meta[META_CONFIG])
    except ValueError:   # not JSON, or nested too deeply
        raise _bad_meta(path, meta, META_CONFIG, "is not JSON", fix) from None
    if not isinstance(config, dict):
        raise _bad_meta(path, meta, META_CONFIG, "is not a JSON object (the training config)", fix)
    return config


class OnnxGenerator:
    """An exported generator as a callable: ``OnnxGenerator(path)(x [N, C, H, W] float) → [N, 3, H, W]``.

    The output is float32 on ``x``'s device. H and W must be multiples of ``required_multiple``
    (``Synthesizer`` pads to it). ``providers``: onnxruntime execution providers, CPU by default;
    pass e.g. ``("CUDAExecutionProvider", "CPUExecutionProvider")`` with onnxruntime-gpu.
    ``config`` is the training config dict stored at export time (None if none was given);
    ``generator_key`` which of the run's generators it is (G, or CycleGAN's G_A / G_B), if known;
    ``checkpoint_sha256`` the sha256 of the checkpoint file it was exported from and
    ``batchnorm_statistics`` its BatchNorm mode ('per_image' | 'running'); None where the file
    records none (exported before they were recorded, from Python without them, or no BatchNorm).
    ``fix``: the export command that writes this file, named when it is missing or unreadable
    (default: guessed from its name, :func:`_export_command_for`), when it is not a regular file
    (a fifo is never opened), or when its input has a fixed N, H or W (refused here, not mid-run).
    onnxruntime's errors while running are one line: InputError naming the file and ``fix``, or,
    out of memory, :class:`OnnxOutOfMemoryError` (a MemoryError: synthesis skips those inputs).
    """

    def __init__(self, path: str | Path, providers=("CPUExecutionProvider",),
                 intra_op_num_threads: int = 0, *, fix: str | None = None):
        ort = _require("onnxruntime")
        from onnxruntime.capi.onnxruntime_pybind11_state import (Fail, InvalidArgument, InvalidGraph,
                                                                 InvalidProtobuf, NoSuchFile)
        self.path = Path(path)
        fix = self.fix = fix or _export_command_for(self.path)
        from pix2pixhd.checkpoint import not_regular_message
        if (said := not_regular_message(self.path, f"remove it, and export one there with `{fix}`")):
            raise InputError(f"ONNX generator {said}")   # never opened: a fifo would block for ever
        if not self.path.is_file():
            raise MissingInputError(f"ONNX generator {self.path} does not exist; export it with `{fix}`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_num_threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=list(providers))
        except (InvalidProtobuf, InvalidArgument) as e:   # damaged or cut short; empty: InvalidArgument
            why = str(e).split("failed:", 1)[-1].strip().rstrip(".")
            raise InputError(f"ONNX generator {self.path} cannot be read ({why}): the file is damaged or "
                             f"incomplete; export it again with `{fix}`") from e
        except (Fail, InvalidGraph, NoSuchFile) as e:   # e.g. external data outside its folder
            why = _ort_why(e)
            raise InputError(f"ONNX generator {self.path} cannot be loaded by onnxruntime ({why}): the file is "
                             f"damaged, or refers to data it may not read; export it again with `{fix}`") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        inp = self.session.get_inputs()[0]
        # pix2pixhd's export writes N, H and W as named dims (strings); an int is a size the graph
        # takes alone, which synthesis (any batch, images of any size) would meet mid-run
        shape = list(inp.shape)
        fixed = ([] if len(shape) != 4 else
                 [f"{d} {shape[i]}" for i, d in ((0, "N"), (2, "H"), (3, "W")) if isinstance(shape[i], int)])
        if len(shape) != 4 or fixed:
            what = (f"has {len(shape)} dimensions {shape}, not a generator's [N, C, H, W]" if len(shape) != 4
                    else f"{shape} has fixed {', '.join(fixed)}: it takes inputs of that size alone, and "
                         "synthesis feeds batches and images of other sizes")
            raise InputError(f"ONNX generator {self.path}: its input {inp.name!r} {what} (pix2pixhd's export "
                             f"writes N, H and W dynamic); export it with `{fix}`")
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        c = inp.shape[1]
        self.input_nc = _meta_int(self.path, meta, META_INPUT_NC, c if isinstance(c, int) else 0, fix)
        self.required_multiple = _meta_int(self.path, meta, META_MULTIPLE, 1, fix)
        self.config = _meta_config(self.path, meta, fix)
        self.generator_key = meta.get(META_KEY)   # None in files exported before it was recorded
        self.checkpoint = meta.get(META_CHECKPOINT)
        self.checkpoint_sha256 = meta.get(META_CHECKPOINT_SHA256)
        self.which_epoch = meta.get(META_WHICH_EPOCH)
        self.batchnorm_statistics = meta.get(META_BN)
        self.metadata = dict(meta)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or (self.input_nc and x.shape[1] != self.input_nc):
            raise ValueError(f"{self.path}: expects input [N, {self.input_nc}, H, W]; got "
                             f"{tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.required_multiple
        if h % m or w % m:
            raise ValueError(f"{self.path}: input size {w}x{h} (WxH) is not divisible by {m}; pad it to "
                             f"{-(-w // m) * m}x{-(-h // m) * m} (Synthesizer does this)")
        # onnxruntime takes contiguous fp32 NumPy on the host; autocast output may be bf16.
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException
        try:
            y = self.session.run([self.output_name], {self.input_name: arr})[0]
        except (Fail, InvalidArgument, RuntimeException) as e:   # one line, not onnxruntime's traceback
            why = _ort_why(e)
            if _ORT_OUT_OF_MEMORY.search(why):
                raise OnnxOutOfMemoryError(f"ONNX generator {self.path} ran out of memory on input "
                                           f"{list(arr.shape)} ({why}): synthesize fewer or smaller "
                                           "images at a time (--batch_size, --scale_width)") from e
            if isinstance(e, RuntimeException):   # a failing node: not the file's fault to name
                raise
            raise InputError(f"ONNX generator {self.path} cannot run on input {list(arr.shape)} ({why}): "
                             f"the file does not take what synthesis feeds it; export it again with "
                             f"`{self.fix}`") from e
        return torch.from_numpy(y).to(x.device)

    def __repr__(self) -> str:
        return (f"OnnxGenerator({str(self.path)!r}, input_nc={self.input_nc}, "
                f"required_multiple={self.required_multiple}, "
                f"providers={self.session.get_providers()})")


def build_parser() -> argparse.ArgumentParser:
    from pix2pixhd.argparsing import make_parser
    p = make_parser("python -m pix2pixhd.export",
                    "Export a training run's generator to ONNX (dynamic N, H, W) and check it "
                    "with onnxruntime against PyTorch")
    p.add_argument("--checkpoint", required=True, help="training run folder (config.json + *.pt)")
    from pix2pixhd.errors import add_debug_option
    add_debug_option(p)
    p.add_argument("--which_epoch", default="latest",
                   help="checkpoint to export: 'latest' (latest.pt) or an epoch number N (epoch_NNNN.pt)")
    p.add_argument("--out", default="", help="ONNX file to write (default: CHECKPOINT/generator.onnx; "
                                             "CycleGAN's G_B: CHECKPOINT/generator_G_B.onnx)")
    p.add_argument("--direction", default=None, choices=("AtoB", "BtoA"),
                   help="which generator of a CycleGAN run (AtoB: G_A, BtoA: G_B); default the run's own. "
                        "A pix2pix/pix2pixHD run has one generator: only its own --direction is accepted")
    p.add_argument("--bn_running_stats", action="store_true",
                   help="--norm batch generators: the graph normalises with the running statistics "
                        "gathered in training (for synthesize.py --bn_running_stats / --eval); default: "
                        "each image's own, as synthesize.py does by default")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset version of the file: default 18 (--legacy: 17). torch.export writes "
                        "18 and up; for an older onnxruntime use --legacy, which writes up to 17 (a file "
                        "that does not get the opset asked for is refused, not written)")
    p.add_argument("--legacy", action="store_true",
                   help="use the deprecated TorchScript exporter instead of torch.export")
    p.add_argument("--atol", type=float, default=1e-4, help="max |onnx - torch| the check accepts")
    p.add_argument("--no_check", action="store_true", help="skip the onnxruntime parity check")
    return p


def _why_not_onnx(path: Path) -> str | None:
    """None when ``path`` may be an ONNX file: named ``.onnx`` (a previous export, replaced as
    before, or a damaged one: the export command rewrites it) or starting as an ONNX model does
    (protobuf field 1, ir_version); else what it is (a PyTorch file, JSON, an image:
    ``paths.describe_file``, or an unknown file)."""
    from pix2pixhd.paths import describe_file
    what = describe_file(path)
    if what:
        return f"{what}, not an ONNX model"
    if path.suffix.lower() == ".onnx":
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError:
        return None   # the write says why
    return None if head == b"\x08" else "a file that is not an ONNX model (nor named .onnx)"


def _check_out(out: Path, ckpt: Path) -> Path:
    """``--out`` refused before the export when it is a folder, cannot be written, is the
    checkpoint read, or is an existing file that is not an ONNX model."""
    from pix2pixhd.paths import check_output_file
    return check_output_file(out, "--out", kind="an ONNX file", default_name="generator.onnx",
                             inputs=[("the checkpoint", ckpt)], why_not_kind=_why_not_onnx)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not a.checkpoint:   # Path("") is the working directory
        raise ConfigError("--checkpoint is empty: give the training run folder (or its .pt file)")
    if not a.atol >= 0 or a.atol == float("inf"):   # nan would pass every check: refused too
        raise ConfigError(f"--atol {a.atol:g}: must be a finite number >= 0 (the largest |onnxruntime - torch| "
                          "the parity check accepts; 1e-4 by default); skip the check with --no_check")
    from pix2pixhd.checkpoint import checkpoint_path
    from pix2pixhd.paths import file_sha256
    from pix2pixhd.synthesis import load_generator
    from pix2pixhd.models import generator_input_nc, generator_key, input_image_nc
    onnx = _require("onnx")
    opset = a.opset if a.opset is not None else (LEGACY_MAX_OPSET if a.legacy else 18)
    if a.legacy and opset > LEGACY_MAX_OPSET:
        raise ConfigError(f"--opset {opset} with --legacy: the TorchScript exporter writes opsets up to "
                          f"{LEGACY_MAX_OPSET}; pass --opset {LEGACY_MAX_OPSET} or lower, or drop --legacy "
                          "(torch.export writes 18 and up)")
    if not 1 <= opset <= onnx.defs.onnx_opset_version():
        raise ConfigError(f"--opset {opset}: the installed onnx {onnx.__version__} knows opsets 1 to "
                          f"{onnx.defs.onnx_opset_version()}; pass e.g. --opset 18 (the default)")
    ckpt = Path(a.checkpoint)
    ckpt = ckpt if ckpt.is_file() else checkpoint_path(ckpt, a.which_epoch)   # as load_checkpoint picks it
    if a.out:   # checked before any work; the default path once the run's generator is known
        _check_out(Path(a.out), ckpt)
    # Hashed before loading: if training replaces the file in between, the recorded hash is the
    # older one and synthesis refuses the file (safe), rather than vouching for weights it lacks.
    sha = file_sha256(ckpt) if ckpt.is_file() else None   # absent: load_generator says so
    direction = a.direction   # a pix2pix/pix2pixHD run: its own direction, or refused (generator_key)
    g, cfg = load_generator(a.checkpoint, a.which_epoch, "cpu", direction=direction,
                            test_batch_stats=not a.bn_running_stats)
    if a.bn_running_stats and batchnorm_statistics(g) is None:
        print("note: --bn_running_stats: this generator has no BatchNorm layers; the option changes nothing")
    key = generator_key(cfg, direction)
    out = Path(a.out) if a.out else _check_out(default_onnx_path(a.checkpoint, key), ckpt)
    m = cfg.required_multiple
    # What the generator reads: photos alone (CycleGAN; label_nc 0 without boundary or feature
    # channels) are checked on random images, the rest on one-hot label maps.
    images = (cfg.model == "cyclegan" or not cfg.label_nc) and \
        generator_input_nc(cfg, direction) == input_image_nc(cfg, direction)

    def check(tmp: Path) -> None:   # on the finished file, before it goes to `out`
        diff = check_onnx(g, tmp, sizes=[(3 * m, 2 * m), (2 * m, 5 * m)], batch=2, images=images, written=out)
        print(f"max |onnxruntime - torch| on random {'images' if images else 'label maps'} at "
              f"{2 * m}x{3 * m} and {5 * m}x{2 * m} (WxH): {diff:.3g} (atol {a.atol})")
        if diff > a.atol:
            other = "without --legacy" if a.legacy else "with --legacy"
            raise ExportCheckError(f"{out} was not written: the exported graph does not reproduce the PyTorch "
                                   f"generator (max |onnxruntime - torch| {diff:.3g} > --atol {a.atol}); "
                                   f"{_previous(out)}. Export again {other} or with another --opset, or "
                                   "raise --atol if this difference is acceptable")

    export_onnx(g, out, generator_input_nc(cfg, direction), opset=opset, dynamo=not a.legacy, config=cfg.to_dict(),
                check=False, generator_key=key, checkpoint=ckpt, checkpoint_sha256=sha,
                which_epoch=a.which_epoch, verify=None if a.no_check else check)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) from {ckpt} (sha256 {sha[:12]})")
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))
