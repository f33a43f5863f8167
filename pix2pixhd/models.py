"""Every network of a run, built from its resolved TrainConfig: the one place models are made.

The trainer, synthesis, export, the feature tools, the FLOP model and the benchmarks all call
these builders, so a checkpoint's ``config.json`` always rebuilds the architecture it was trained
with. The layers themselves live in ``networks.py`` (pix2pixHD), ``pix2pix_networks.py``
(pix2pix); norms, activations and the weight init in ``layers.py``.

  build_generator(cfg)      pix2pixHD GlobalGenerator / LocalEnhancer, or pix2pix U-Net
  build_discriminator(cfg)  pix2pixHD MultiscaleDiscriminator, or a pix2pix PatchGAN; None when
                            the run has no discriminator (pix2pix's L1-only ablation)
  build_encoder(cfg)        the instance feature encoder E; None without --instance_feat /
                            --label_feat, or with --load_features (maps come from disk)

Channels at the boundaries: G takes ``generator_input_nc(cfg)`` channels (one-hot labels or
the input photo, + instance boundary, + features) and gives ``output_nc``; D takes
``discriminator_input_nc(cfg)`` (G's condition without the features, + the image). Every fused
norm is set to ``cfg.norm_impl``. Weights come from torch's global RNG: seed it to repeat a build.
"""
from __future__ import annotations

from torch import nn

from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import input_channels
from pix2pixhd.layers import set_norm_impl
from pix2pixhd.networks import Encoder, GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from pix2pixhd.pix2pix_networks import define_D, define_G

__all__ = ["generator_input_nc", "discriminator_input_nc", "build_generator", "build_discriminator",
           "build_encoder"]


def generator_input_nc(cfg: TrainConfig) -> int:
    """Channels of G's input: labels (one-hot, or the photo) + boundary map + encoded features."""
    return input_channels(cfg.label_nc, cfg.input_nc, cfg.no_instance,
                          cfg.feat_num if cfg.use_features else 0)


def discriminator_input_nc(cfg: TrainConfig) -> int:
    """Channels of a conditional D's input: G's condition (without the features) + the image."""
    return generator_input_nc(cfg) - (cfg.feat_num if cfg.use_features else 0) + cfg.output_nc


def build_generator(cfg: TrainConfig) -> nn.Module:
    cfg.check_resolved()
    nc = generator_input_nc(cfg)
    if cfg.model == "pix2pix":
        g = define_G(nc, cfg.output_nc, cfg.ngf, cfg.netG_pix2pix, cfg.norm, use_dropout=not cfg.no_dropout)
    elif cfg.netG == "global":
        g = GlobalGenerator(nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global, cfg.norm)
    else:
        g = LocalEnhancer(nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global,
                          cfg.n_local_enhancers, cfg.n_blocks_local, cfg.norm)
    return set_norm_impl(g, cfg.norm_impl)


def build_discriminator(cfg: TrainConfig) -> nn.Module | None:
    cfg.check_resolved()
    nc = discriminator_input_nc(cfg)
    if cfg.model == "pix2pix":
        if cfg.lambda_GAN == 0:
            return None  # the L1-only ablation has no discriminator
        d = define_D(cfg.output_nc if cfg.no_cond_D else nc, cfg.ndf, cfg.netD_pix2pix, cfg.n_layers_D, cfg.norm)
    else:
        d = MultiscaleDiscriminator(nc, cfg.ndf, cfg.n_layers_D, cfg.num_D, cfg.norm,
                                    use_sigmoid=False, get_interm_feat=not cfg.no_ganFeat_loss)
    return set_norm_impl(d, cfg.norm_impl)


def build_encoder(cfg: TrainConfig) -> nn.Module | None:
    cfg.check_resolved()
    # With --load_features the features come precomputed from disk (the reference builds no E).
    if not cfg.use_features or cfg.load_features:
        return None
    return set_norm_impl(Encoder(cfg.output_nc, cfg.feat_num, cfg.nef, cfg.n_downsample_E, cfg.norm),
                         cfg.norm_impl)
