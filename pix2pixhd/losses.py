"""pix2pixHD's losses: multi-scale GAN, discriminator feature matching, VGG19 perceptual.

Discriminator outputs follow ``MultiscaleDiscriminator``: a list over scales of lists of features
whose last entry is the patch logits [N, 1, h, w]; a flat list of tensors is one discriminator's
features (``NLayerDiscriminator(get_interm_feat=True)``), as in the reference. Weights are the reference's:
  GAN:   sum over scales of the per-scale loss (mean over patches);
  feat:  sum over scales i and intermediate layers j of 1/num_D · 4/(n_layers+1) · λ_feat · L1;
  VGG:   λ_feat · Σ_k w_k · L1(VGG_k(fake), VGG_k(real)), w = 1/32, 1/16, 1/8, 1/4, 1 at
         relu1_1 … relu5_1, inputs mapped from [-1, 1] to ImageNet-normalised RGB (the reference
         fed [-1, 1] images straight into a network trained on normalised ones).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pix2pixhd.errors import InputError, MissingInputError

GAN_MODES = ("lsgan", "vanilla", "hinge")


def _as_scales(preds) -> list[list[torch.Tensor]]:
    """Discriminator output → a list over scales of feature lists (logits last), as the
    reference's GANLoss reads it: a tensor is one scale's logits; a flat list of tensors is one
    discriminator's features (``NLayerDiscriminator(get_interm_feat=True)``); a list of lists
    is one list per scale (``MultiscaleDiscriminator``)."""
    if isinstance(preds, torch.Tensor):
        return [[preds]]
    preds = list(preds)
    if not preds:
        raise InputError("discriminator output is an empty list; pass the discriminator's output "
                         "(a tensor, a list of features, or a list of them per scale)")
    if all(isinstance(p, torch.Tensor) for p in preds):
        return [preds]
    if all(isinstance(p, (list, tuple)) for p in preds):
        scales = [list(p) for p in preds]
        if not all(scales) or not all(isinstance(f, torch.Tensor) for p in scales for f in p):
            raise InputError("discriminator output: every scale must be a non-empty list of feature "
                             "tensors (logits last); pass the discriminator's output as it returns it")
        return scales
    raise InputError(f"discriminator output mixes tensors and lists "
                     f"({[type(p).__name__ for p in preds]}); pass a list of feature tensors (one "
                     "discriminator) or a list of such lists (one per scale)")


class GANLoss(nn.Module):
    """Adversarial loss on the last output of every discriminator scale, summed over scales
    (a flat list of tensors is one discriminator's features: its last entry, the logits, is used).

    lsgan: MSE to 1/0 (the reference's default); vanilla: BCE on logits; hinge: D gets
    relu(1 - real) + relu(1 + fake), G gets -mean(fake).
    The discriminator's step calls ``loss(preds_real, True)`` and ``loss(preds_fake, False)``
    (``for_discriminator`` defaults to True); the generator's step must call
    ``loss(preds_fake, True, for_discriminator=False)``. For lsgan and vanilla the flag changes
    nothing, but hinge needs it: with the default, G would get D's relu(1 - fake) instead of
    -mean(fake).
    """

    def __init__(self, gan_mode: str = "lsgan", target_real_label: float = 1.0,
                 target_fake_label: float = 0.0):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode={gan_mode!r}; expected one of {GAN_MODES}")
        self.gan_mode = gan_mode
        self.real_label, self.fake_label = target_real_label, target_fake_label

    def _single(self, pred: torch.Tensor, target_is_real: bool, for_discriminator: bool):
        pred = pred.float()  # losses in fp32 whatever the autocast dtype
        if self.gan_mode == "hinge":
            if not for_discriminator:
                return -pred.mean()
            return F.relu(1 - pred).mean() if target_is_real else F.relu(1 + pred).mean()
        target = torch.full_like(pred, self.real_label if target_is_real else self.fake_label)
        if self.gan_mode == "lsgan":
            return F.mse_loss(pred, target)
        return F.binary_cross_entropy_with_logits(pred, target)

    def forward(self, preds, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        """The loss summed over scales; ``for_discriminator=False`` for the generator's step (see
        the class docstring: hinge's generator loss needs it)."""
        return sum(self._single(scale[-1], target_is_real, for_discriminator)
                   for scale in _as_scales(preds))


def feature_matching_loss(pred_fake, pred_real, *, n_layers_D: int | None = None,
                          num_D: int | None = None, lambda_feat: float = 10.0) -> torch.Tensor:
    """Σ_i Σ_j 1/num_D · 4/(n_layers_D+1) · λ_feat · L1(D_i^j(fake), D_i^j(real).detach()).

    j runs over every intermediate output of scale i (the logits excluded), as the reference.
    ``pred_fake``/``pred_real``: a list per scale of the n_layers_D + 2 features
    (``MultiscaleDiscriminator``), or one flat list of them (one ``NLayerDiscriminator``).
    ``num_D`` and ``n_layers_D`` default to what the lists hold; given, they must agree with it.
    Both must have as many scales, and each scale as many features (InputError otherwise: a
    shorter list would silently leave terms out, a wrong count rescale the loss).
    """
    fake, real = _as_scales(pred_fake), _as_scales(pred_real)
    if len(fake) != len(real):
        raise InputError(f"feature_matching_loss: {len(fake)} discriminator scale(s) for the fake and "
                         f"{len(real)} for the real images; pass both images' outputs of the same "
                         "discriminator")
    for i, (f_scale, r_scale) in enumerate(zip(fake, real)):
        if len(f_scale) != len(r_scale):
            raise InputError(f"feature_matching_loss: scale {i} has {len(f_scale)} feature(s) for the "
                             f"fake and {len(r_scale)} for the real images; pass both images' outputs "
                             "of the same discriminator")
    counts = sorted({len(f_scale) for f_scale in fake})
    if counts[0] < 2:
        raise InputError("feature_matching_loss: the discriminator output holds only the logits, no "
                         "intermediate features; build the discriminator with get_interm_feat=True")
    if len(counts) > 1:
        raise InputError(f"feature_matching_loss: the scales hold different numbers of features "
                         f"({[len(f_scale) for f_scale in fake]}); pass the output of one "
                         "discriminator whose scales have the same n_layers")
    if num_D is not None and num_D != len(fake):
        raise InputError(f"feature_matching_loss: num_D={num_D} but the outputs hold {len(fake)} "
                         f"scale(s); pass num_D={len(fake)} (or leave it out)")
    if n_layers_D is not None and n_layers_D + 2 != counts[0]:
        raise InputError(f"feature_matching_loss: n_layers_D={n_layers_D} but each scale holds "
                         f"{counts[0]} features (n_layers_D + 2); pass n_layers_D={counts[0] - 2} "
                         "(or leave it out)")
    num_D, n_layers_D = len(fake), counts[0] - 2
    weight = (1.0 / num_D) * (4.0 / (n_layers_D + 1)) * lambda_feat
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for f_scale, r_scale in zip(fake, real):
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            loss = loss + weight * F.l1_loss(f.float(), r.detach().float())
    return loss


# torchvision's VGG19 "features" configuration; indices of the Sequential match its state_dict.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"]
# Slice ends (exclusive) of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in VGG19.features.
_VGG_SLICES = (2, 7, 12, 21, 30)
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"


def default_vgg19_path() -> Path:
    """Where torch hub caches torchvision's VGG19 weights ($TORCH_HOME/hub/checkpoints)."""
    torch_home = os.environ.get("TORCH_HOME",
                                os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(torch_home).expanduser() / "hub" / "checkpoints" / VGG19_FILENAME


def vgg19_file(path: str | os.PathLike | None = None, *, check_contents: bool = True) -> Path:
    """The VGG19 weights file ``path`` (--vgg_path; empty: :func:`default_vgg19_path`), which
    must exist (MissingInputError naming it and the three fixes otherwise) and, with
    ``check_contents``, hold VGG19's weights (:func:`read_vgg19_state`, memory-mapped: the keys
    and shapes are checked, the weights not read; a file in torch's legacy format is read whole)."""
    given, path = bool(path), Path(path) if path else default_vgg19_path()
    if path.is_dir():
        raise MissingInputError(
            f"{'--vgg_path ' if given else 'the default VGG19 weights path '}{path} is a folder: give the "
            f"weights file itself, torchvision's {VGG19_FILENAME} (e.g. --vgg_path {path / VGG19_FILENAME}), "
            "or train without the VGG loss: --no_vgg_loss")
    if not path.is_file():
        raise MissingInputError(
            f"VGG19 weights not found at {path}. The VGG perceptual loss needs torchvision's "
            f"{VGG19_FILENAME} (ImageNet VGG19) as a local file: pass --vgg_path FILE, or "
            f"place it at {default_vgg19_path()}, or train without it: --no_vgg_loss")
    if check_contents:
        read_vgg19_state(path, mmap=True)
    return path


def vgg19_shapes() -> dict[str, tuple[int, ...]]:
    """The tensors :class:`VGG19Features` loads: torchvision's ``features.N.weight``/``bias`` up
    to relu5_1, with their shapes."""
    shapes, c, i = {}, 3, 0
    for v in _VGG19_CFG:
        if i >= _VGG_SLICES[-1]:
            break
        if v == "M":
            i += 1
            continue
        shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (v, c, 3, 3), (v,)
        c, i = v, i + 2   # conv, ReLU
    return shapes


def _text_start(head: bytes) -> str | None:
    """The first characters of ``head`` when it reads as text (an HTML page, an error message...),
    else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.lstrip("\ufeff").strip()
    if not text or not all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return None
    return " ".join(text.split())[:40]


def read_vgg19_state(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The VGG19 tensors of ``path`` (``torch.load`` with ``weights_only=True``; ``mmap``: the
    tensors memory-mapped, not read, where the file's format allows), checked against
    :func:`vgg19_shapes`. InputError, one line naming the file, what is wrong and the file
    expected: not a PyTorch file (a text or HTML page saved under its name), truncated or
    damaged, pickled objects other than tensors (a whole module: not loaded, as that would run
    its code), keys or shapes that are not torchvision's VGG19."""
    path = Path(path)
    size = path.stat().st_size

    def bad(what: str) -> InputError:
        return InputError(
            f"VGG19 weights {path}: {what}; the VGG loss needs torchvision's ImageNet VGG19 weights, "
            f"{VGG19_FILENAME} (https://download.pytorch.org/models/{VGG19_FILENAME}, about 575 MB): pass "
            "it with --vgg_path FILE, or train without the VGG loss: --no_vgg_loss")

    if size == 0:
        raise bad("the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(256)
    zipped = head.startswith(b"PK\x03\x04")   # torch.save's format since torch 1.6; else the legacy one
    text = None if zipped else _text_start(head)
    if text is not None:
        raise bad(f"a text file, not PyTorch weights (it starts {text!r}: a web page or an error "
                  "message saved in place of the download?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipped)
    except pickle.UnpicklingError as e:   # torch's advice (weights_only=False) would run the file's code
        from pix2pixhd.compat import pickled_global
        found = pickled_global(e)
        if found:
            raise bad(f"it holds pickled Python objects ({found.partition(' ')[2]}), not only tensors (a whole "
                      "model saved with torch.save(model) instead of its state_dict()?); such a file is not "
                      "loaded, as loading it would run code") from None
        raise bad(f"not PyTorch weights, or damaged ({size} bytes that torch.load's weights-only reader "
                  "cannot read)") from None
    except Exception as e:   # a truncated zip (no central directory), damaged data (miniz), EOF
        raise bad(f"cannot be read as a PyTorch file, truncated or damaged? ({size} bytes; "
                  f"{type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(state, Mapping):
        raise bad(f"it holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    shapes = vgg19_shapes()
    missing = [k for k in shapes if k not in state]
    if missing:
        nested = [k for k in ("state_dict", "model") if isinstance(state.get(k), Mapping)]
        hint = (f" (its tensors are under {nested[0]!r}: save that entry alone)" if nested else
                " (keys without 'features.': a VGG19().features state_dict? prefix them with 'features.')"
                if all(k.partition(".")[2] in state for k in missing) else "")
        raise bad(f"not torchvision's VGG19 state_dict: {len(missing)} of its {len(shapes)} tensors missing, "
                  f"e.g. {missing[:2]}{hint}; expected keys like 'features.0.weight'")
    wrong = [f"{k}: {tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__}"
             f" (VGG19: {s})" for k, s in shapes.items()
             if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != s]
    if wrong:
        raise bad(f"VGG19's keys with other shapes ({len(wrong)} of {len(shapes)} tensors, e.g. "
                  f"{', '.join(wrong[:2])}): another network's weights under those names")
    return state


def _first_line(e: BaseException) -> str:
    """The first sentence of ``e``'s message (torch's miniz errors go on with advice to file an issue)."""
    line = (str(e).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
    return line if len(line) <= 160 else line[:157] + "..."


class VGG19Features(nn.Module):
    """VGG19's conv part up to relu5_1, keys as torchvision's (``features.N.weight``).

    forward(x [N, 3, H, W] ImageNet-normalised) → [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1].
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers[:_VGG_SLICES[-1]])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, start = [], 0
        for end in _VGG_SLICES:
            for layer in self.features[start:end]:
                x = layer(x)
            outs.append(x)
            start = end
        return outs

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None) -> "VGG19Features":
        """Load torchvision-format VGG19 weights from a local file (never downloads); a file that
        does not hold them is refused as :func:`read_vgg19_state` says."""
        state = read_vgg19_state(vgg19_file(path, check_contents=False))
        model = cls()
        model.load_state_dict({k: state[k] for k in model.state_dict()})
        return model


class VGGLoss(nn.Module):
    """λ_feat is applied by the caller (as the reference): returns Σ_k w_k · L1 at five layers.

    fake, real: [N, 3, H, W] in [-1, 1]. The network is frozen; real features carry no graph.
    A ``vgg`` module passed in is frozen in place: it is set to eval() and requires_grad_(False)
    (the caller's module itself, not a copy), and kept in eval mode by :meth:`train`.
    """

    def __init__(self, vgg: VGG19Features | None = None, vgg_path: str | None = None):
        super().__init__()
        self.vgg = vgg if vgg is not None else VGG19Features.from_file(vgg_path)
        self.vgg.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vgg.eval()  # fixed feature extractor, whatever the trainer does
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB → ImageNet-normalised RGB."""
        return ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_f = self.vgg(self.normalize(fake))
        with torch.no_grad():
            real_f = self.vgg(self.normalize(real))
        return sum(w * F.l1_loss(f.float(), r.float()) for w, f, r in zip(VGG_WEIGHTS, fake_f, real_f))
