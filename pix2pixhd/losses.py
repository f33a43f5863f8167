"""pix2pixHD's losses: multi-scale GAN, discriminator feature matching, VGG19 perceptual.

Discriminator outputs follow ``MultiscaleDiscriminator``: a list over scales of lists of features
whose last entry is the patch logits [N, 1, h, w]. Weights are the reference's:
  GAN:   sum over scales of the per-scale loss (mean over patches);
  feat:  sum over scales i and intermediate layers j of 1/num_D · 4/(n_layers+1) · λ_feat · L1;
  VGG:   λ_feat · Σ_k w_k · L1(VGG_k(fake), VGG_k(real)), w = 1/32, 1/16, 1/8, 1/4, 1 at
         relu1_1 … relu5_1, inputs mapped from [-1, 1] to ImageNet-normalised RGB (the reference
         fed [-1, 1] images straight into a network trained on normalised ones).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pix2pixhd.errors import InputError, MissingInputError

GAN_MODES = ("lsgan", "vanilla", "hinge")


def _as_scales(preds) -> list[list[torch.Tensor]]:
    """Accept a tensor, a list of tensors (one per scale) or a list of feature lists."""
    if isinstance(preds, torch.Tensor):
        return [[preds]]
    return [p if isinstance(p, (list, tuple)) else [p] for p in preds]


class GANLoss(nn.Module):
    """Adversarial loss on the last output of every discriminator scale, summed over scales.

    lsgan: MSE to 1/0 (the reference's default); vanilla: BCE on logits; hinge: D gets
    relu(1 - real) + relu(1 + fake), G gets -mean(fake).
    Call ``loss(preds, target_is_real, for_discriminator=True)``.
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
        return sum(self._single(scale[-1], target_is_real, for_discriminator)
                   for scale in _as_scales(preds))


def feature_matching_loss(pred_fake, pred_real, *, n_layers_D: int, num_D: int,
                          lambda_feat: float = 10.0) -> torch.Tensor:
    """Σ_i Σ_j 1/num_D · 4/(n_layers_D+1) · λ_feat · L1(D_i^j(fake), D_i^j(real).detach()).

    j runs over every intermediate output of scale i (the logits excluded), as the reference.
    ``pred_fake`` and ``pred_real`` must have as many scales, and each scale as many features
    (InputError otherwise: a shorter list would silently leave terms out).
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


def vgg19_file(path: str | os.PathLike | None = None) -> Path:
    """The VGG19 weights file ``path`` (--vgg_path; empty: :func:`default_vgg19_path`), which
    must exist: MissingInputError naming it and the three fixes otherwise."""
    path = Path(path) if path else default_vgg19_path()
    if not path.is_file():
        raise MissingInputError(
            f"VGG19 weights not found at {path}. The VGG perceptual loss needs torchvision's "
            f"{VGG19_FILENAME} (ImageNet VGG19) as a local file: pass --vgg_path FILE, or "
            f"place it at {default_vgg19_path()}, or train without it: --no_vgg_loss")
    return path


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
        """Load torchvision-format VGG19 weights from a local file (never downloads)."""
        path = vgg19_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        wanted = model.state_dict().keys()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise InputError(f"{path} is not a torchvision VGG19 state_dict: missing {missing[:4]} "
                             f"({len(missing)} keys); expected keys like 'features.0.weight'")
        model.load_state_dict({k: state[k] for k in wanted})
        return model


class VGGLoss(nn.Module):
    """λ_feat is applied by the caller (as the reference): returns Σ_k w_k · L1 at five layers.

    fake, real: [N, 3, H, W] in [-1, 1]. The network is frozen; real features carry no graph.
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
