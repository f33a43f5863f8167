"""Loading NVIDIA pix2pixHD checkpoints (``latest_net_G.pth``, ``_D``, ``_E``) into our models.

The reference saves plain state_dicts. Our networks build the reference's module index layout, and
the fused norm+activation layers have the plain layers' keys, so its keys map one to one; this
module adds the checks and messages that ``load_state_dict`` alone does not give.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from pix2pixhd.errors import MissingInputError, UserError


class CheckpointMismatchError(UserError, ValueError):
    """A state_dict's keys or shapes do not fit the model it is loaded into."""


def _read(state_dict_or_path) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(state_dict_or_path, Mapping):
        return dict(state_dict_or_path), "the given state_dict"
    path = os.fsdecode(os.fspath(state_dict_or_path))   # bytes too: torch.load takes bytes as a buffer
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files
        raise CheckpointMismatchError(_unreadable(path, e)) from e
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return dict(state), path


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The state_dict in ``.pth`` file ``path`` (``weights_only=True``); a missing, empty,
    truncated or damaged file is refused in one line that says which and what to do."""
    return _read(path)[0]


# torch's weights_only refusals of a pickled global, in its two wordings: "Unsupported global:
# GLOBAL cls.Foo was not an allowed global by default" and "Trying to load unsupported GLOBAL
# posix.system whose module posix is blocked" (a module that runs code: os, subprocess...).
_PICKLED_GLOBAL = re.compile(r"unsupported global:?\s+(?:global\s+)?([\w.]+)", re.IGNORECASE)


def pickled_global(e: BaseException) -> str | None:
    """``'GLOBAL name'`` when ``torch.load(weights_only=True)`` refused ``e`` because the file pickles
    a Python object (a class, a function such as os.system) other than tensors; else None."""
    found = _PICKLED_GLOBAL.search(str(e))
    return f"GLOBAL {found[1]}" if found else None


def _unreadable(path: str, e: Exception) -> str:
    """Why ``torch.load`` could not read ``path`` (``e``), in one line with the fix."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = pickled_global(e)
    start = f"{path} could not be read as a state_dict"
    if said is not None:   # a pickle of other objects than tensors, refused by weights_only
        return (f"{start}: it holds objects other than tensors ({said}), which are not loaded (they could "
                "run code): save the network's state_dict() alone")
    reason = (lines[0].split(". ")[0] if lines else type(e).__name__)[:160]
    if size == 0:
        return f"{start}: it is empty (0 bytes): copy it again from the run that saved it"
    if head.startswith((b"PK\x03\x04", b"\x80")):   # torch.save's zip, or its legacy pickle format
        return (f"{start}: it is truncated or damaged ({size} bytes; {reason}): copy it again from the run "
                "that saved it")
    return f"{start}: it is not a file torch.save wrote ({size} bytes starting {head!r}): pass the network's .pth file"


_SCALE_KEY = re.compile(r"(scale\d+)_layer\d+\.")   # MultiscaleDiscriminator, get_interm_feat
_LAYER_KEY = re.compile(r"(layer\d+)\.\d+\.")          # the same without (--no_ganFeat_loss)


def _guess(keys) -> str:
    keys = list(keys)
    if any(k.startswith("model1_1.") for k in keys):
        n = len({k.split(".")[0] for k in keys if k.startswith("model") and k[5:6].isdigit()}) // 2
        return f"a LocalEnhancer with {n} local enhancer(s) (netG local)"
    scales = {m[1] for m in map(_SCALE_KEY.match, keys) if m}
    if scales:
        return f"a MultiscaleDiscriminator with num_D={len(scales)}"
    layers = {m[1] for m in map(_LAYER_KEY.match, keys) if m}
    if layers:
        return f"a MultiscaleDiscriminator with num_D={len(layers)} (trained with --no_ganFeat_loss)"
    if any("conv_block" in k for k in keys):
        n = len({k.split(".")[1] for k in keys if k.startswith("model.") and "conv_block" in k})
        # the pix2pix/CycleGAN repo's ResnetGenerator: two stride-2 convs, so its blocks start at model.10
        first = min((int(k.split(".")[1]) for k in keys if k.startswith("model.") and "conv_block" in k), default=0)
        if first == 10:
            return (f"CycleGAN's ResNet generator (netG resnet_{n}blocks of the pix2pix/CycleGAN repo; also "
                    f"pix2pixHD's GlobalGenerator with n_downsample_global 2, n_blocks_global {n})")
        return (f"a ResNet generator with {n} residual blocks: pix2pixHD's GlobalGenerator (netG global, "
                f"n_blocks_global {n}) or CycleGAN's resnet_{n}blocks")
    if any(k.startswith("model.model.") for k in keys):   # UnetGenerator: model = the outermost block
        depth = max(k.count("model.") for k in keys if k.startswith("model.model.")) - 1
        return (f"pix2pix's U-Net (netG unet_{2 ** depth}; a run folder of the pix2pix/CycleGAN repo imports "
                "with python -m pix2pixhd.import_reference RUN --model pix2pix)")
    if any(k.startswith("model.") for k in keys):
        return "an Encoder"
    return "an unknown network"


def _convs(state: Mapping, prefix: str) -> list[torch.Tensor]:
    """The 4-d weights ``{prefix}{i}.weight`` (convs, transposed convs) in index order."""
    found = []
    for k, v in state.items():
        m = re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", k)
        if m and isinstance(v, torch.Tensor) and v.dim() == 4:
            found.append((int(m[1]), v))
    return [v for _, v in sorted(found, key=lambda iv: iv[0])]


def _blocks(state: Mapping, prefix: str) -> int:
    """How many ResNet blocks (``{prefix}{i}.conv_block.*``) ``state`` holds under ``prefix``."""
    return len({m[1] for m in (re.match(re.escape(prefix) + r"(\d+)\.conv_block\.", k) for k in state) if m})


def _norm(state: Mapping) -> str:
    """batch when ``state`` holds norm parameters or statistics; the reference's instance norm has none."""
    return "batch" if any((isinstance(v, torch.Tensor) and v.dim() == 1 and k.endswith(".weight"))
                          or k.endswith(".running_mean") for k, v in state.items()) else "instance"


def reference_architecture(state: Mapping, kind: str) -> dict | None:
    """The options a pix2pixHD network's state_dict fixes, read from its keys and shapes; None
    when they do not read as one. ``kind``: 'G' (netG, ngf, n_downsample_global, n_blocks_global,
    n_local_enhancers, n_blocks_local, output_nc), 'D' (num_D, n_layers_D, ndf, no_ganFeat_loss:
    the key layout of getIntermFeat) or 'E' (nef, n_downsample_E, feat_num, output_nc: its input);
    each with norm and ``in_channels``, its first conv's input channels."""
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    if kind == "G":
        convs = _convs(state, "model.")
        nle = len({m[1] for m in (re.match(r"model(\d+)_1\.", k) for k in state) if m})
        if not convs:
            return None
        if nle:   # the global part without its final conv: first conv, n down and n up
            last = _convs(state, f"model{nle}_2.")
            if (len(convs) - 1) % 2 or f"model{nle}_1.1.weight" not in state or not last:
                return None
            arch = {"netG": "local", "ngf": state[f"model{nle}_1.1.weight"].shape[0],
                    "n_downsample_global": (len(convs) - 1) // 2, "n_blocks_global": _blocks(state, "model."),
                    "n_local_enhancers": nle, "n_blocks_local": _blocks(state, "model1_2."),
                    "output_nc": last[-1].shape[0]}
        else:
            if len(convs) < 2 or len(convs) % 2:
                return None
            arch = {"netG": "global", "ngf": convs[0].shape[0], "n_downsample_global": (len(convs) - 2) // 2,
                    "n_blocks_global": _blocks(state, "model."), "output_nc": convs[-1].shape[0]}
    elif kind == "D":
        interm = [(int(m[1]), int(m[2]), int(m[3]), v) for k, v in state.items()
                  if (m := re.fullmatch(r"scale(\d+)_layer(\d+)\.(\d+)\.weight", k)) and v.dim() == 4]
        flat = [(int(m[1]), 0, int(m[2]), v) for k, v in state.items()
                if (m := re.fullmatch(r"layer(\d+)\.(\d+)\.weight", k)) and v.dim() == 4]
        found = interm or flat
        first_scale = [v for i, _, _, v in sorted(found, key=lambda t: t[:3]) if i == 0]
        if len(first_scale) < 2:
            return None
        convs = first_scale
        arch = {"num_D": len({t[0] for t in found}), "n_layers_D": len(convs) - 2, "ndf": convs[0].shape[0],
                "no_ganFeat_loss": not interm}
    elif kind == "E":   # the global generator's layout without ResNet blocks
        convs = _convs(state, "model.")
        if len(convs) < 2 or len(convs) % 2:
            return None
        arch = {"nef": convs[0].shape[0], "n_downsample_E": (len(convs) - 2) // 2,
                "feat_num": convs[-1].shape[0], "output_nc": convs[0].shape[1]}
    else:
        raise ValueError(f"kind={kind!r}: expected 'G', 'D' or 'E'")
    arch.update(norm=_norm(state), in_channels=convs[0].shape[1])
    return arch


# The network entries of this project's training checkpoints (pix2pixhd.models.network_keys).
_CHECKPOINT_NETWORKS = ("G", "D", "E", "G_A", "G_B", "D_A", "D_B")


def _refuse_training_checkpoint(state: dict, source: str) -> None:
    """A training checkpoint of this project (``latest.pt``: the networks' state_dicts under 'G',
    'D', 'E' or CycleGAN's 'G_A'..., with the run's 'config', optimizer states...) is not one
    network's state_dict. Which network the caller means is not for us to guess (a CycleGAN run
    holds two generators of the same shapes), so say how to load it."""
    nets = [k for k in _CHECKPOINT_NETWORKS if isinstance(state.get(k), Mapping)]
    if not (isinstance(state.get("config"), Mapping) and nets):
        return
    gen = next((k for k in nets if k.startswith("G")), nets[0])
    raise CheckpointMismatchError(
        f"{source} is a pix2pixhd training checkpoint (networks {nets} with the run's config), not "
        "one network's state_dict: for the generator use pix2pixhd.synthesis.load_generator(RUN_FOLDER) "
        f"(it builds it with the run's flags), or pass one network's weights, e.g. "
        f"load_reference_weights(model, torch.load(PATH, map_location='cpu', weights_only=True)[{gen!r}])")


def _drop_untracked_instance_norm_stats(model: nn.Module, state: dict) -> dict:
    """Checkpoints saved by PyTorch < 0.4 (e.g. some of the CycleGAN/pix2pix repo's pretrained
    models) hold ``running_mean``/``running_var`` (and later ``num_batches_tracked``) for instance
    norms that track no statistics; they mean nothing there, and the reference drops them on load
    too. Only keys of our InstanceNorm2d layers without running statistics are dropped."""
    untracked = {name for name, m in model.named_modules()
                 if isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats}
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v for k, v in state.items()
            if not (k.rpartition(".")[2] in stats and k.rpartition(".")[0] in untracked)}


def _upsample_hint(model: nn.Module, state: dict, own: dict, keys: list[str]) -> str | None:
    """When the shape mismatches are upsampling weights transposed ([in, out] vs [out, in]): the
    file and the model differ in ``--upsample`` (transposed conv vs resize-conv); say which."""
    from pix2pixhd.networks import ResizeConv2d
    ups = {name: m for name, m in model.named_modules() if isinstance(m, (nn.ConvTranspose2d, ResizeConv2d))}
    for k in keys:
        mod, _, leaf = k.rpartition(".")
        if mod not in ups or leaf != "weight":
            continue
        f, o = tuple(state[k].shape), tuple(own[k].shape)
        if f[:2] == o[1::-1] and f[2:] == o[2:]:
            ours = "resize" if isinstance(ups[mod], ResizeConv2d) else "transpose"
            theirs = "transpose" if ours == "resize" else "resize"
            return (f"its upsampling weights ({k}: {list(f)}) are those of --upsample {theirs}, the "
                    f"model's of --upsample {ours}: build the model with --upsample {theirs}")
    return None


def _input_hint(model: nn.Module, state: dict, own: dict) -> str | None:
    """When the file's first conv reads another number of input channels than the model's: both
    counts, and for pix2pixHD's generators the options that make them up (label_nc, the boundary
    map of no_instance, and the encoded features of instance_feat / label_feat with feat_num)."""
    from pix2pixhd.networks import GlobalGenerator, LocalEnhancer
    first = next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    k = f"{first}.weight"
    if first is None or k not in state or k not in own or state[k].dim() != 4 or own[k].dim() != 4:
        return None
    f, o = tuple(state[k].shape), tuple(own[k].shape)
    if f[1] == o[1] or f[:1] + f[2:] != o[:1] + o[2:]:
        return None
    hint = f"the file's first conv ({k}) takes {f[1]} input channels, the model's {o[1]}"
    if isinstance(model, (GlobalGenerator, LocalEnhancer)):
        hint += (f": build the generator with input options that add up to {f[1]} (label_nc, +1 boundary "
                 f"channel without --no_instance, +feat_num with --instance_feat or --label_feat)")
    return hint


def _encoder_options(model: nn.Module, state: dict) -> dict[str, tuple] | None:
    """For an Encoder: its options (nef, n_downsample_E, feat_num, its input channels output_nc,
    norm) as the file's shapes imply them and as the model has them, {name: (file, model)};
    None when the file's convs do not read as an encoder's (:func:`reference_architecture`)."""
    from pix2pixhd.networks import Encoder
    if not isinstance(model, Encoder):
        return None
    theirs, ours = reference_architecture(state, "E"), reference_architecture(model.state_dict(), "E")
    if theirs is None or ours is None:
        return None
    return {k: (theirs[k], ours[k]) for k in ("nef", "n_downsample_E", "feat_num", "output_nc", "norm")}


def _network_options(model: nn.Module, state: dict) -> tuple[str, dict[str, tuple]] | None:
    """For a pix2pixHD generator or discriminator: (what it is, {option: (file, model)}) for the
    options whose values the file's shapes imply otherwise than the model's (input channels
    aside: :func:`_input_hint` says them); None for other networks or unreadable shapes."""
    from pix2pixhd.networks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
    kind = ("G", "generator") if isinstance(model, (GlobalGenerator, LocalEnhancer)) else \
        ("D", "discriminator") if isinstance(model, MultiscaleDiscriminator) else None
    if kind is None:
        return None
    theirs, ours = reference_architecture(state, kind[0]), reference_architecture(model.state_dict(), kind[0])
    if theirs is None or ours is None:
        return None
    return kind[1], {k: (theirs[k], v) for k, v in ours.items()
                     if k in theirs and k not in ("in_channels", "no_ganFeat_loss") and theirs[k] != v}


# the options each network's shapes depend on, named when a file does not fit it
_FLAGS = {"generator": "netG, ngf, n_downsample_global, n_blocks_global, n_local_enhancers, n_blocks_local, "
                       "upsample, norm, label_nc, no_instance",
          "discriminator": "num_D, n_layers_D, ndf, norm, label_nc, no_instance, output_nc"}


def load_reference_weights(model: nn.Module,
                           state_dict_or_path: Mapping[str, torch.Tensor] | str | bytes | os.PathLike,
                           *, strict: bool = True,
                           ignore_prefixes: tuple[str, ...] = (), source: str | None = None) -> nn.Module:
    """Load a state_dict saved by NVIDIA's pix2pixHD, the CycleGAN/pix2pix repo (``latest_net_G_A.pth``
    ...) or by us (one network's ``state_dict()``) into ``model`` (G, D or E).

    Our training checkpoints (``latest.pt``, ``epoch_N.pt``) hold every network of a run and are
    refused with a message saying what to pass instead: ``pix2pixhd.synthesis.load_generator(run)``
    for the generator, or one network's entry (``ckpt['G']``, ``ckpt['D']``...).

    ``state_dict_or_path``: a mapping or a ``.pth`` file (str, bytes or path-like; read with
    ``weights_only=True``).
    A ``module.`` prefix (DataParallel / DDP) is stripped. Keys under ``ignore_prefixes`` are
    skipped on both sides (e.g. a new discriminator scale). Any missing or unexpected key or
    shape mismatch raises :class:`CheckpointMismatchError` listing the first few and guessing
    what the file holds, unless ``strict=False`` (then only matching entries are loaded and the
    shape mismatches still raise). For an Encoder it names the options that differ, with the
    values the file's shapes imply. ``source``: what the messages call a mapping (e.g.
    "ck/g/latest.pt's E"; default "the given state_dict").
    """
    state, read_from = _read(state_dict_or_path)
    source = source if source is not None and isinstance(state_dict_or_path, Mapping) else read_from
    _refuse_training_checkpoint(state, source)
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    state = _drop_untracked_instance_norm_stats(model, state)
    from pix2pixhd.networks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
    if isinstance(model, MultiscaleDiscriminator):   # trained with or without --no_ganFeat_loss
        state = model.in_own_layout(state)
    own = model.state_dict()
    skip = lambda k: any(k.startswith(p) for p in ignore_prefixes)  # noqa: E731
    missing = [k for k in own if k not in state and not skip(k)]
    unexpected = [k for k in state if k not in own and not skip(k)]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and not skip(k) and state[k].shape != own[k].shape]
    if shapes or (strict and (missing or unexpected)):
        parts = [f"{source} does not fit {type(model).__name__}:"]
        hint = _upsample_hint(model, state, own, [k for k in own if k in state and not skip(k)
                                                  and state[k].shape != own[k].shape])
        inputs = _input_hint(model, state, own)
        if hint:
            parts.append(hint)
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:3]}")
        encoder = _encoder_options(model, state)
        if encoder is not None:   # an Encoder: its own options, not G's (the input hint is one of them)
            differ = {k: v for k, v in encoder.items() if v[0] != v[1]}
            if differ:
                parts.append("the file's feature encoder was built with " + ", ".join(
                    f"{k} {f} (this encoder: {o})" for k, (f, o) in differ.items())
                    + ": build the encoder with " + " ".join(f"--{k} {f}" for k, (f, _) in differ.items()))
            else:
                parts.append("build the encoder with the flags it was trained with (nef, n_downsample_E, "
                             "feat_num, output_nc, norm)")
            raise CheckpointMismatchError(parts[0] + " " + "; ".join(parts[1:]))   # one line
        if inputs:
            parts.append(inputs)
        implied = _network_options(model, state)
        what = implied[0] if implied is not None else "generator" if isinstance(
            model, (GlobalGenerator, LocalEnhancer)) else "discriminator" if isinstance(
            model, MultiscaleDiscriminator) else None
        if implied is not None and implied[1]:
            parts.append(f"the file's {what} was built with " + ", ".join(
                f"{k} {f} (this {what}: {o})" for k, (f, o) in implied[1].items()))
        flags = _FLAGS.get(what, "netG, ngf, n_downsample_global, n_blocks_global, n_local_enhancers, upsample, "
                                 "num_D, n_layers_D, label_nc, no_instance")
        if inputs and what == "generator":   # features feed G only
            flags += ", instance_feat, label_feat, feat_num"
        fix = (" ".join(f"--{k} {f}" for k, (f, _) in implied[1].items()) + ", and the other flags it was trained "
               f"with ({flags})") if implied is not None and implied[1] else f"the flags it was trained with ({flags})"
        parts.append(f"the file looks like {_guess(state)}; build the model with {fix}")
        raise CheckpointMismatchError(parts[0] + " " + "; ".join(parts[1:]))   # one line
    load = {k: v for k, v in state.items() if k in own and not skip(k)}
    model.load_state_dict(load, strict=False)
    return model
