"""Synthesis on the device: a trained generator, loaded from its run folder, applied to batches.

``load_generator`` rebuilds the generator from a training checkpoint folder (config.json or the
checkpoint's own config + ``latest.pt`` / ``epoch_N.pt``), so a checkpoint is never run with the
wrong architecture. ``Synthesizer`` turns integer maps (or uint8 photos) into uint8 photos of any
size: each batch is padded (replicate) to the generator's multiple and the output cropped back,
under ``torch.inference_mode``, with autocast (bf16 on CUDA by default) and channels-last on CUDA.

Randomness is per map and sample, never per batch: every row of a batch carries its own seed
(:func:`sample_seed` of the run's seed, the input's name and the sample index). Sampled cluster
features draw from it (``pix2pixhd.features.sample_features``), and so do pix2pix's test-time
dropout masks (``_SeededDropout``), so what a map gets does not depend on the batch it came in,
the number of ranks or a resume.

The data engine around it (reading, batching, writing a dataset, sharding, resuming) is
``pix2pixhd.engine``; ``synthesize.py`` is its command line.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pix2pixhd.checkpoint import (NOT_OURS_FIX, checkpoint_path, describe_entries, load_checkpoint,
                                  load_run_config)
from pix2pixhd.config import PRECISIONS, TrainConfig
from pix2pixhd.data.layouts import IMG_EXTS
from pix2pixhd.distributed import bind_cuda_device, resolve_device
from pix2pixhd.encoding import LabelRangeError, encode_input, float_to_uint8
from pix2pixhd.errors import ConfigError, InputError, UserError

IMAGE_EXTS = IMG_EXTS   # the data module's list: synthesis reads what training reads


class NonFiniteOutputError(UserError, FloatingPointError):
    """The generator's output (or the feature channels it read) for an input held NaN or inf: its
    photo would be black, so nothing is written for it."""


def _finite_rows(y: torch.Tensor, feat: torch.Tensor | None) -> torch.Tensor:
    """bool [N, 2] on ``y``'s device, not read (no sync): per row, whether G's output and the
    feature channels it read (none: True) are finite."""
    ok = torch.isfinite(y).flatten(1).all(1)
    fok = torch.isfinite(feat).flatten(1).all(1) if feat is not None else torch.ones_like(ok)
    return torch.stack([ok, fok], 1)


def prepare_generator(g: torch.nn.Module, *, test_dropout: bool = True,
                      test_batch_stats: bool = True) -> torch.nn.Module:
    """``g`` set up for synthesis in place, as :func:`load_generator` returns it (see its
    ``test_dropout`` and ``test_batch_stats``): eval mode, then pix2pix's test-time dropout and
    per-image BatchNorm. Returns ``g``. Per-image BatchNorm survives ``.train()``: to train ``g``
    again, call ``use_test_statistics(g, False)`` first."""
    from pix2pixhd.pix2pix_networks import set_dropout, use_test_statistics
    g.eval()
    if test_dropout:
        set_dropout(g, True)  # after eval(), which turned it off
    use_test_statistics(g, test_batch_stats)
    return g


def load_generator(checkpoint_dir: str | Path, which_epoch: str = "latest",
                   device: str | torch.device = "cpu", *, test_dropout: bool = True,
                   test_batch_stats: bool = True,
                   direction: str | None = None) -> tuple[torch.nn.Module, TrainConfig]:
    """The generator of a training run, in eval mode, with the config it was trained with.

    ``direction``: which generator translates (``pix2pixhd.models.generator_key``): None is the
    run's own; CycleGAN runs hold two ('AtoB': G_A, 'BtoA': G_B).
    ``test_dropout``: pix2pix keeps its U-Net's dropout on at test time (the paper's only noise
    source); :class:`Synthesizer` draws its masks per map and sample from seeds. False switches
    it off. Generators without dropout (pix2pixHD's) are unaffected.
    ``test_batch_stats``: BatchNorm layers (``--norm batch``, pix2pix's default) normalise each
    image by its own statistics, as the paper and both reference repositories run them at test
    time (batch 1, train-mode BatchNorm; :class:`~pix2pixhd.pix2pix_networks.PerImageBatchNorm2d`).
    False: the running statistics (``model.eval()``; the reference's ``--eval``). Instance norm is
    unaffected.
    """
    from pix2pixhd.compat import load_reference_weights
    from pix2pixhd.models import build_generator, generator_key
    device = resolve_device(device, None, option="device")   # one line for a device this machine lacks
    checkpoint_dir = Path(checkpoint_dir).expanduser()   # '~/runs/x': the home folder's
    ckpt = load_checkpoint(checkpoint_dir, which_epoch)
    cfg = load_run_config(checkpoint_dir, which_epoch, checkpoint=ckpt)   # the checkpoint's own wins
    key = generator_key(cfg, direction)
    if key not in ckpt:
        if "global_step" in ckpt:   # a training checkpoint of another model or direction
            raise ConfigError(f"{checkpoint_dir} ({which_epoch}) holds no generator {key!r} (it holds "
                              f"{sorted(k for k in ckpt if isinstance(ckpt[k], dict))})")
        file = checkpoint_dir if checkpoint_dir.is_file() else checkpoint_path(checkpoint_dir, which_epoch)
        raise ConfigError(f"{file} holds no generator {key!r} and was not written by train_hd.py "
                          f"({describe_entries(ckpt)}); {NOT_OURS_FIX}")
    g = build_generator(cfg, direction)
    load_reference_weights(g, ckpt[key])
    g = prepare_generator(g.to(device).requires_grad_(False), test_dropout=test_dropout,
                          test_batch_stats=test_batch_stats)
    return g, cfg


def sample_seed(seed: int, key: str, sample: int) -> int:
    """The seed of sample ``sample`` of the input named ``key`` (its path relative to the input
    folder or dataset root): a 63-bit hash, so millions of inputs do not share seeds and a rerun,
    another batch size or another shard count draws the same."""
    h = hashlib.blake2b(f"{seed}\0{key}\0{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


def read_id_map(path: Path) -> np.ndarray:
    """A single-channel integer map (label or instance ids) → [H, W] int64."""
    with Image.open(path) as im:
        im.load()
        if len(im.getbands()) != 1:   # InputError is a ValueError: callers catching that still do
            raise InputError(f"{path} is a {im.mode} image ({len(im.getbands())} channels); label "
                             "and instance maps must be single-channel id maps (mode L, or I;16 "
                             "for ids above 255): convert colour maps to ids first, e.g. CMP "
                             "Facades (pix2pix's photo|label folder) with python -m "
                             "pix2pixhd.datasets.convert_facades --src SRC --out OUT")
        return np.asarray(im).astype(np.int64)


def read_rgb(path: Path) -> np.ndarray:
    """An image → uint8 [H, W, 3]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def png_bytes(arr: np.ndarray) -> bytes:
    """uint8 [H, W] / [H, W, 1] / [H, W, 3] → PNG bytes (one channel: a greyscale PNG); other
    integer [H, W] ids → a 16-bit PNG (the data module reads both as id maps)."""
    import io
    if arr.ndim == 3 and arr.shape[2] == 1:   # a one-channel photo (e.g. CycleGAN's grey domain)
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        if arr.size and (int(arr.max()) > 65535 or int(arr.min()) < 0):
            raise InputError(f"ids from {int(arr.min())} to {int(arr.max())} do not fit a 16-bit PNG; "
                             "renumber them to 0..65535, or write them with id_map_bytes (a 32-bit TIFF)")
        arr = arr.astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def id_map_bytes(arr: np.ndarray) -> tuple[bytes, str]:
    """Integer [H, W] ids → (file bytes, extension) that read back as the same ids in a mode the
    data module takes for id maps: a PNG ('.png', ``png_bytes``) for ids 0..65535, else a 32-bit
    TIFF (PIL mode I, '.tif'), which holds any int32 id (Cityscapes' id*1000+k, negative ids)."""
    import io
    if arr.dtype == np.uint8 or not arr.size or (int(arr.min()) >= 0 and int(arr.max()) <= 65535):
        return png_bytes(arr), ".png"
    lo, hi = int(arr.min()), int(arr.max())
    if lo < -2 ** 31 or hi >= 2 ** 31:
        raise InputError(f"ids from {lo} to {hi} do not fit a 32-bit id map; renumber them to "
                         f"{-2 ** 31}..{2 ** 31 - 1}")
    from PIL import features
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr.astype(np.int32))).save(
        buf, format="TIFF", compression="tiff_adobe_deflate" if features.check("libtiff") else None)
    return buf.getvalue(), ".tif"


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """``x`` [..., H, W] padded (replicate, bottom and right) to multiples of ``multiple`` →
    (padded, H, W). Integer maps are padded by indexing their last row and column, never through
    float: float32 holds integers exactly only up to 2^24, and instance ids above that (e.g.
    16777217) would round onto their neighbours' and merge instances."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        if x.is_floating_point():
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        else:   # F.pad's replicate mode takes float only; index-based replicate is exact for any dtype
            rows = torch.arange(h + ph, device=x.device).clamp_(max=h - 1)
            cols = torch.arange(w + pw, device=x.device).clamp_(max=w - 1)
            x = x.index_select(-2, rows).index_select(-1, cols)
    return x, h, w


class _SeededDropout:
    """pix2pix's test-time dropout with one mask stream per batch row.

    nn.Dropout draws one mask for the whole batch from the global RNG, so a map's output would
    depend on its batch neighbours and on what ran before. Inside :meth:`seeded` each active
    Dropout layer (train mode, p > 0) runs as the identity (eval) and a forward hook multiplies its
    output by a mask drawn, row by row, from a CPU ``torch.Generator`` seeded with that row's seed;
    the layers run in a fixed order, so row i's masks depend on its seed alone. Masks are drawn on
    the CPU so every device gets the same ones.

    One instance per module (:meth:`of`), kept on the module, so any number of Synthesizers on one
    generator share it instead of stacking hooks. Threads: switching the layers' modes is a change
    to the shared module, so :meth:`seeded` holds the instance's lock for the whole call (the
    generator's forward included): calls on one generator with Dropout layers run one at a time,
    whatever thread and Synthesizer they come from (generators without Dropout, pix2pixHD's, take
    no lock). The running call's masks are kept per thread, so a plain ``G(x)`` from another thread
    meanwhile never draws them, but it does run with the layers as the seeded call set them
    (dropout off): do not call the module itself from other threads while Synthesizers run on it.
    Outside :meth:`seeded` the hooks do nothing and the layers keep the mode their owner set
    (``set_dropout``), so the caller's module behaves as
    before: a plain ``G(x)`` drops out from the global RNG as nn.Dropout does, ``eval()`` turns
    dropout off, and a deep copy (``export_onnx``'s) carries no active mask stream
    (:func:`remove_seeded_dropout` strips the hooks from such a copy).
    """

    ATTR = "_pix2pixhd_seeded_dropout"
    _MAKING = threading.Lock()   # two threads making the first Synthesizers on one module at once

    def __init__(self, model: torch.nn.Module):
        self.all_layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        self._new_thread_state()
        for m in self.all_layers:
            m.register_forward_hook(self._hook)

    def _new_thread_state(self) -> None:
        self._lock = threading.RLock()   # held by the running seeded call (see the class docstring)
        self._local = threading.local()  # that call's generators and active layers, in its thread

    def __getstate__(self):   # deep copies (export_onnx's) and pickles: no lock, no thread state
        state = dict(self.__dict__)
        del state["_lock"], state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._new_thread_state()

    @property
    def generators(self) -> list[torch.Generator] | None:
        """Row i's mask stream of the seeded call running in this thread (None: none runs)."""
        return getattr(self._local, "generators", None)

    @property
    def active(self) -> set[int]:
        """ids of the layers this thread's seeded call switched to eval."""
        return getattr(self._local, "active", set())

    @classmethod
    def of(cls, model: torch.nn.Module) -> "_SeededDropout":
        """The module's seeded dropout, made (and its hooks registered) on first use only."""
        with cls._MAKING:
            sd = model.__dict__.get(cls.ATTR)
            if sd is None:
                sd = cls(model)
                model.__dict__[cls.ATTR] = sd   # a plain attribute: not a submodule, not in state_dict
        return sd

    @property
    def layers(self) -> list[torch.nn.Module]:
        """The Dropout layers that draw masks now (train mode, p > 0)."""
        return [m for m in self.all_layers if m.training and m.p > 0]

    def _hook(self, module, inputs, out):
        generators = self.generators
        if generators is None or id(module) not in self.active:
            return None   # not in a seeded call: the layer's own forward already ran as it is set
        p = module.p
        if out.shape[0] != len(generators):
            raise ValueError(f"{len(generators)} dropout seeds for a batch of {out.shape[0]}; "
                             "pass one seed per row")
        keep = torch.stack([torch.rand(out.shape[1:], generator=g) >= p for g in generators])
        keep = keep.to(out.device, non_blocking=True)
        return out * keep.to(out.dtype) * (1.0 / (1.0 - p))

    @contextlib.contextmanager
    def seeded(self, seeds: list[int] | None):
        """Within the block, G's active Dropout layers draw row i's masks from ``seeds[i]``; the
        layers' modes are restored on exit. ``seeds`` None: the layers run as they are set.
        Holds the lock for the block when the module has Dropout layers (with ``seeds`` None too:
        another thread's seeded call would switch its layers off meanwhile)."""
        if not self.all_layers:
            yield
            return
        with self._lock:
            if seeds is None:
                yield
                return
            layers = self.layers
            self._local.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
            self._local.active = {id(m) for m in layers}
            for m in layers:
                m.eval()
            try:
                yield
            finally:
                for m in layers:
                    m.train()
                self._local.generators, self._local.active = None, set()


def remove_seeded_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Strip :class:`_SeededDropout`'s hooks and state from ``model`` (in place; returns it).

    For copies that leave synthesis, such as the one ``export_onnx`` traces: a deep copy takes the
    hooks along, and a traced hook would put random ops into the graph. Removing them from the
    module a Synthesizer runs would stop its seeded masks, so call it on copies only.
    """
    for m in model.modules():
        for k, hook in list(m._forward_hooks.items()):
            if getattr(hook, "__func__", None) is _SeededDropout._hook:
                del m._forward_hooks[k]
                for d in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
                    getattr(m, d, {}).pop(k, None)
    model.__dict__.pop(_SeededDropout.ATTR, None)
    return model


def _check_partner(label: torch.Tensor, other: torch.Tensor | None, name: str, what: str, *,
                   channels: int | None) -> None:
    """``other`` (inst or image) must be [N, C, H, W] with the label's N, H and W (and ``channels``
    channels, when given): one line saying so, instead of torch.cat's size error later."""
    if other is None:
        return
    n, h, w = label.shape[0], label.shape[-2], label.shape[-1]
    c = "C" if channels is None else str(channels)
    if (other.dim() != 4 or other.shape[0] != n or tuple(other.shape[-2:]) != (h, w)
            or (channels is not None and other.shape[1] != channels)):
        raise InputError(f"{name} has shape {tuple(other.shape)}, the label map {tuple(label.shape)}: "
                         f"pass the {what}s as [{n}, {c}, {h}, {w}] (one per label map, the same size)")


def require_tensor(x, name: str, want: str, optional: bool = True) -> None:
    """``x`` (``name``, to be ``want``) must be a torch tensor (or None, where ``optional``): a numpy
    array, a PIL image or a list is one InputError naming the conversion, not an AttributeError
    ('no attribute dim') from deep inside."""
    if isinstance(x, torch.Tensor) or (x is None and optional):
        return
    if isinstance(x, np.ndarray):
        fix = f"torch.from_numpy({name})"
    elif isinstance(x, Image.Image):
        fix = (f"torch.from_numpy(np.array({name})), then [None, None] for an [H, W] map or "
               ".permute(2, 0, 1)[None] for an [H, W, C] photo")
    elif x is None:
        raise InputError(f"{name} is None; pass a torch tensor, {want}")
    else:
        fix = f"torch.tensor({name})"
    module = type(x).__module__.split(".")[0]
    held = type(x).__qualname__ if module == "builtins" else f"{module}.{type(x).__qualname__}"
    raise InputError(f"{name} is a {held}; pass a torch tensor, {want}: {fix}")


def auto_precision(device: torch.device) -> str:
    """``precision='auto'`` for a PyTorch generator on ``device``: bf16 on a CUDA GPU that computes
    in bf16 natively (Ampere, sm_80, and newer), else fp32. torch's is_bf16_supported() also says
    yes for GPUs that only emulate it (a T4, a V100), where bf16 is slower than fp32 and less
    precise."""
    if device.type != "cuda":
        return "fp32"
    with torch.cuda.device(device):
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"


class Synthesizer:
    """``Synthesizer(generator, cfg)(label, inst)`` → uint8 [N, 3, H, W] for any H, W.

    ``generator``: a torch module, or any callable on the float input (e.g. an ONNX session,
    ``pix2pixhd.export.OnnxGenerator``). ``features``: for runs trained with --instance_feat /
    --label_feat, a :class:`pix2pixhd.features.FeatureSource` giving G's feature channels
    (sampled clusters, chosen clusters, or a real photo's encoding).
    ``generator_seconds``: time spent in G's forward, summed over calls (CUDA: device time
    from events, read without a sync until asked for).
    ``precision``: 'auto' (bf16 on a CUDA device that computes in it natively, sm_80 and newer, else fp32: ``auto_precision``), 'fp32', 'bf16' or 'fp16'
    (autocast). ``device``: one this machine lacks is a DeviceUnavailableError
    (:func:`~pix2pixhd.distributed.resolve_device`).

    A module in training mode (e.g. ``build_generator``'s) is set up in place as
    :func:`load_generator` returns it by default (:func:`prepare_generator`: eval mode, test-time
    dropout, per-image BatchNorm), so BatchNorm's running statistics are never updated and a map's
    photo does not depend on its batch. A module in eval mode runs as its owner set it (e.g.
    ``load_generator(..., test_dropout=False)``, or ``model.eval()`` for running statistics).

    Threads: Synthesizers may run in several threads, on one generator module too. A generator
    with test-time dropout (pix2pix) runs one call at a time then (its seeded masks switch the
    module's Dropout layers for the call; see ``_SeededDropout``), so threads give that case no
    speed-up; pix2pixHD's generators run concurrently. One Synthesizer's ``generator_seconds``
    adds up the calls of every thread that uses it.
    """

    def __init__(self, generator, cfg: TrainConfig, device: str | torch.device = "cpu",
                 precision: str = "auto", channels_last: bool | None = None, features=None):
        device = resolve_device(device, None, option="device")   # first: an unknown device is named as before
        if not isinstance(cfg, TrainConfig):   # a Python caller's: one line, not an AttributeError below
            held = f"a {type(cfg).__name__}" if cfg is not None else "None"
            raise ConfigError(f"Synthesizer: cfg is {held}; pass the run's TrainConfig: load_generator(RUN) "
                              "returns (generator, cfg); from a dict of its options (config.json): "
                              "TrainConfig.from_dict(d)")
        self.G, self.cfg, self.device = generator, cfg, device
        bind_cuda_device(self.device)
        if isinstance(generator, torch.nn.Module) and generator.training:
            prepare_generator(generator)   # train-mode BatchNorm: batch statistics, updated buffers
        if cfg.use_features and features is None:
            raise ConfigError("this checkpoint was trained with --instance_feat/--label_feat: G needs "
                              "feature channels; pass features=FeatureSource.from_checkpoint(...) "
                              "(synthesize.py: --feature_mode sample|cluster|encoded)")
        self.features = features if cfg.use_features else None
        self.multiple = max(cfg.required_multiple, getattr(self.features, "multiple", 1))
        if precision not in ("auto", *PRECISIONS):
            raise ConfigError(f"precision={precision!r}; expected one of {('auto', *PRECISIONS)} "
                              "(synthesize.py: --precision)")
        is_module = isinstance(generator, torch.nn.Module)
        if not is_module and precision in ("bf16", "fp16"):   # an ONNX graph: autocast does not reach it
            raise ConfigError(f"precision={precision!r} with an ONNX generator: the exported graph computes in "
                              "fp32; leave precision 'auto' (fp32 for ONNX), or synthesize with the PyTorch "
                              f"generator in {precision} (synthesize.py: --backend torch)")
        if precision == "auto":
            precision = auto_precision(self.device) if is_module else "fp32"
        self.precision = precision
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        if channels_last is None:  # the GPU layout of choice; on CPU keep NCHW (see docs/benchmarks.md)
            channels_last = self.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last and is_module else torch.contiguous_format
        if is_module:
            generator.to(self.device, memory_format=self.memory_format)
        self.dropout = _SeededDropout.of(generator) if is_module else None
        self._events: list = []
        self._cpu_seconds = 0.0

    @property
    def has_dropout(self) -> bool:
        """Whether G draws dropout masks at test time (pix2pix without --no_test_dropout)."""
        return bool(self.dropout and self.dropout.layers)

    @property
    def min_side(self) -> int:
        """The smallest map side this generator runs on, for sides padded to :attr:`multiple`
        (:func:`pix2pixhd.models.generator_min_side`, the rule training refuses samples by)."""
        from pix2pixhd.models import generator_min_side
        return generator_min_side(self.cfg, self.multiple)

    @property
    def generator_seconds(self) -> float:
        if self._events:
            torch.cuda.synchronize(self.device)
            self._cpu_seconds += sum(a.elapsed_time(b) for a, b in self._events) / 1e3
            self._events.clear()
        return self._cpu_seconds

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        cuda = self.device.type == "cuda"
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(torch.cuda.current_stream(self.device))   # this device's, whichever is current
        else:
            import time
            t0 = time.perf_counter()
        if self.amp_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.amp_dtype):
                y = self.G(x)
        else:
            y = self.G(x)
        if cuda:
            end.record(torch.cuda.current_stream(self.device))
            self._events.append((start, end))
        else:
            self._cpu_seconds += time.perf_counter() - t0
        return y

    @torch.inference_mode()
    def synthesize(self, label: torch.Tensor, inst: torch.Tensor | None = None, *,
                   image: torch.Tensor | None = None, seeds: list[int] | None = None,
                   source: str | None = None, finite_flags: bool = False) -> tuple:
        """→ (uint8 [N, 3, H, W] on the device, cluster choices per row or None).

        label: [N, 1, H, W] integer ids (label_nc > 0) or uint8 [N, C, H, W] photos (a float photo,
        here or as ``image``, is refused: [0, 1] and [-1, 1] floats cannot be told apart, and one
        read as the other gives a wrong photo without an error); inst:
        [N, 1, H, W] instance ids or None (a run trained with instance maps then takes the label
        map's class boundaries, as the reference and synthesize.py do without --inst; a run with
        photo inputs has no label map to take them from and needs ``inst``); image: real photos
        uint8 [N, 3, H, W] for
        --feature_mode encoded; seeds: one per row, for sampled features and dropout masks
        (default: the FeatureSource's seed + row; dropout from the global RNG). Choices: per row
        {instance id: [class, cluster index]} for sampled/chosen clusters (index -1: the class
        has none), else None.
        A non-finite output (NaN or inf: damaged weights or cluster centres) raises
        NonFiniteOutputError (one reduction per batch, read at once: a sync on CUDA). With
        ``finite_flags`` it is not read here: a third value, bool [N, 2] on the device (per row:
        output finite, features finite), is returned for the caller to check once the batch is on
        the host (:meth:`nonfinite_error`).
        """
        cfg = self.cfg
        require_tensor(label, "label", "[N, 1, H, W] integer label ids" if cfg.label_nc > 0
                       else "uint8 [N, C, H, W] photos", optional=False)
        require_tensor(inst, "inst", "[N, 1, H, W] instance ids")
        require_tensor(image, "image", "uint8 [N, 3, H, W] photos")
        if seeds is not None and len(seeds) != label.shape[0]:
            # one seed for three rows would give all three the same masks and features, silently
            raise ValueError(f"{len(seeds)} seed(s) for a batch of {label.shape[0]} maps: pass one seed "
                             "per row (e.g. sample_seed(seed, name, sample) for each), or None")
        self._check_label(label)
        # as evaluate refuses float images: a torchvision-style [0, 1] photo read as [-1, 1]
        for name, photo in (("label", label if cfg.label_nc == 0 else None), ("image", image)):
            if photo is not None and (photo.is_floating_point() or photo.is_complex()):
                raise InputError(f"{name} has dtype {photo.dtype}; photos go in as uint8 values 0-255 (a "
                                 "float photo could be [0, 1] or [-1, 1]): convert a [0, 1] float with "
                                 "(x * 255).round().to(torch.uint8)")
        inst = self._instance_map(label, inst)
        _check_partner(label, image, "image", "photo", channels=None)
        label, h, w = _pad_to(label.to(self.device, non_blocking=True), self.multiple)
        if inst is not None:
            inst, _, _ = _pad_to(inst.to(self.device, non_blocking=True), self.multiple)
        feat, choices = None, None
        if self.features is not None:
            if image is not None:
                image, _, _ = _pad_to(image.to(self.device, non_blocking=True), self.multiple)
            if self.features.mode == "encoded":
                feat = self.features(label, inst, image=image, seeds=seeds)
            else:
                feat, choices = self.features(label, inst, image=image, seeds=seeds, return_choices=True)
        try:
            x = encode_input(label, None if cfg.no_instance else inst, feat, label_nc=cfg.label_nc,
                             source=source)
        except LabelRangeError:   # its fix, "set --label_nc", cannot apply to a trained checkpoint
            from pix2pixhd.engine import id_out_of_range
            lo, hi = torch.aminmax(label.long())
            bad = int(hi) if int(hi) >= cfg.label_nc else int(lo)
            raise LabelRangeError((f"{source}: " if source else "")
                                  + id_out_of_range(bad, cfg.label_nc)) from None
        x = x.contiguous(memory_format=self.memory_format)
        if self.dropout is None:
            y = self._forward(x)
        else:
            with self.dropout.seeded(seeds):
                y = self._forward(x)
        y = y[..., :h, :w]
        ok = _finite_rows(y, feat)
        if finite_flags:
            return float_to_uint8(y), choices, ok
        if not bool(ok.all()):
            bad = ok[~ok.all(1)][0].tolist()
            raise self.nonfinite_error(*bad, source=source)
        return float_to_uint8(y), choices

    def nonfinite_error(self, output_ok: bool, features_ok: bool, *, source: str | None = None,
                        generator: str | None = None) -> NonFiniteOutputError:
        """The error for a row whose output (``output_ok`` False) or features (``features_ok``
        False) held NaN or inf. ``source``: the input; ``generator``: what to name (the checkpoint
        file; default: the ONNX file, or 'the generator')."""
        where = f" for {source}" if source else ""
        onnx = getattr(self.G, "path", None)
        gen = generator or (f"the ONNX generator {onnx}" if onnx is not None else "the generator")
        fix = "synthesize with another checkpoint (--which_epoch N)"
        if self.precision == "fp16":
            fix = "pass --precision fp32 or bf16 (fp16 may have overflowed), or " + fix
        if not features_ok and self.features is not None and self.features.mode != "encoded":
            from pix2pixhd.features import encode_command
            path = self.features.clusters.path
            return NonFiniteOutputError(f"the feature channels{where} hold NaN or inf: the cluster centres in "
                                        f"{path or 'the clusters file'} are not finite; nothing was written for "
                                        f"it; rewrite the file with `{encode_command(path)}`")
        part = "the encoder E of " if not features_ok and self.features is not None else ""
        return NonFiniteOutputError(f"{part}{gen} gave NaN or inf{where}: its weights hold non-finite values "
                                    "(a damaged file, or one saved after training diverged) and the photo "
                                    f"would be black; nothing was written for it; {fix}")

    def _check_label(self, label: torch.Tensor) -> None:
        """``label`` must be [N, 1, H, W] ids (label_nc > 0) or [N, C, H, W] photos: checked
        before its partners, so a wrong label layout is not blamed on the inst map."""
        ids = self.cfg.label_nc > 0
        want = "[N, 1, H, W] integer label ids" if ids else "[N, C, H, W] uint8 photos"
        shape = tuple(label.shape)
        if label.dim() == 4 and label.shape[1] != 1 and label.shape[-1] in (1, 3, 4) and \
                (ids or label.shape[1] not in (1, 3, 4)):
            raise InputError(f"label has shape {shape}, channels last (NHWC); pass {want} (NCHW, "
                             "channels first): label.permute(0, 3, 1, 2)")
        if label.dim() != 4 or (ids and label.shape[1] != 1):
            raise InputError(f"label has shape {shape}; pass {want}")

    def _instance_map(self, label: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor | None:
        """``inst`` checked against ``label``; for a run that needs instance ids (the boundary
        channel, or --instance_feat's regions) and got none, the label map itself, as
        ``pix2pixhd.engine`` (and the reference) fall back to."""
        cfg = self.cfg
        if inst is not None:
            _check_partner(label, inst, "inst", "instance id map", channels=1)
            return inst
        if cfg.no_instance and not cfg.instance_feat:
            return None
        if cfg.label_nc == 0:
            raise ConfigError("this checkpoint was trained with instance maps (no --no_instance) on photo "
                              "inputs (label_nc 0): pass inst=[N, 1, H, W] instance ids (synthesize.py: "
                              "--inst FOLDER); there is no label map to take boundaries from")
        return label

    def __call__(self, label: torch.Tensor, inst: torch.Tensor | None = None,
                 source: str | None = None, image: torch.Tensor | None = None,
                 seeds: list[int] | None = None) -> torch.Tensor:
        """uint8 [N, 3, H, W] photos (see :meth:`synthesize`)."""
        return self.synthesize(label, inst, image=image, seeds=seeds, source=source)[0]


def synthesize_folder(synth: Synthesizer, input_dir: Path, out_dir: Path, *, inst_dir: Path | None = None,
                      batch_size: int = 4, how_many: int = 0, progress: bool = True,
                      image_dir: Path | None = None, **job_options):
    """Every map of ``input_dir`` through ``synth`` into the dataset ``out_dir`` (photos in
    ``out_dir/test_img``, see ``pix2pixhd.engine``), in this process. ``image_dir``: real photos
    matched by stem, for --feature_mode encoded. Returns the engine's ``SynthesisReport``."""
    from pix2pixhd.engine import SynthesisJob, run_synthesis
    job = SynthesisJob(out=Path(out_dir), input=Path(input_dir), inst=Path(inst_dir) if inst_dir else None,
                       real=Path(image_dir) if image_dir else None, batch_size=batch_size,
                       how_many=how_many, progress=progress, **job_options)
    return run_synthesis(synth, job)
