"""Every network of a run, built from its resolved TrainConfig: the one place models are made.

The trainer, synthesis, export, the feature tools, the FLOP model and the benchmarks all call
these builders, so a checkpoint's ``config.json`` always rebuilds the architecture it was trained
with. The layers themselves live in ``networks.py`` (pix2pixHD), ``pix2pix_networks.py``
(pix2pix and CycleGAN); norms, activations and the weight init in ``layers.py``.

  build_generator(cfg, direction=None)
                            pix2pixHD GlobalGenerator / LocalEnhancer, pix2pix U-Net, or one of
                            CycleGAN's two generators (``direction`` 'AtoB': G_A, 'BtoA': G_B)
  build_discriminator(cfg, key="D")
                            pix2pixHD MultiscaleDiscriminator, or a pix2pix PatchGAN; None when
                            the run has no discriminator (pix2pix's L1-only ablation); CycleGAN's
                            D_A (judges domain B) or D_B (judges domain A)
  check_discriminator_input(cfg, d, w, h, what)
                            a one-line ConfigError when D cannot take w x h images (too deep
                            for them), with the depth and the crop that fit
  generator_min_side(cfg, multiple=None)
                            the smallest side G (and E) run on: 1 for the U-Net, else more than
                            one multiple (a 1x1 bottleneck cannot be normalised or padded)
  check_generator_input(cfg, w, h, what)
                            a one-line ConfigError when G or E cannot take w x h images, with the
                            depth and the sizes that fit
  build_encoder(cfg)        the instance feature encoder E; None without --instance_feat /
                            --label_feat, or with --load_features (maps come from disk)
  check_weights_fit(cfg, ckpt, config_source, checkpoint_file)
                            a one-line CheckpointError when a saved config gives the networks
                            other sizes than the checkpoint's weights have, before any build

Channels at the boundaries: G takes ``generator_input_nc(cfg)`` channels (one-hot labels or
the input photo, of ``input_image_nc(cfg)`` channels, + instance boundary, + features) and gives
``output_nc``; D takes ``discriminator_input_nc(cfg)`` (G's condition without the features, + the
image). CycleGAN's G_A maps input_nc -> output_nc channels, G_B output_nc -> input_nc, and its
discriminators are unconditional (D_A sees output_nc channels, D_B input_nc). A checkpoint holds
each network under its key (``G``, ``D``, ``E``; CycleGAN: ``G_A``, ``G_B``, ``D_A``, ``D_B``, the
reference's file names ``latest_net_<key>.pth``); :func:`generator_key` says which generator
synthesis uses. Every fused norm is set to ``cfg.norm_impl``. Weights come from torch's global
RNG: seed it to repeat a build.
"""
from __future__ import annotations

from torch import nn

from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import input_channels
from pix2pixhd.errors import ConfigError
from pix2pixhd.layers import set_norm_impl
from pix2pixhd.networks import Encoder, GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from pix2pixhd.pix2pix_networks import define_D, define_G

__all__ = ["input_image_nc", "generator_input_nc", "discriminator_input_nc", "generator_key",
           "network_keys", "build_generator", "build_discriminator", "check_discriminator_input",
           "generator_min_side", "check_generator_input", "build_encoder", "check_weights_fit"]

DIRECTIONS = ("AtoB", "BtoA")


def input_image_nc(cfg: TrainConfig, direction: str | None = None) -> int:
    """Channels of the photos the generator :func:`generator_key` names for ``direction`` reads
    when its inputs are photos (label_nc 0), as they are on disk: ``input_nc``, but CycleGAN's
    G_B reads domain B's (``output_nc``). Synthesis converts its input photos to this."""
    if cfg.model == "cyclegan" and generator_key(cfg, direction) == "G_B":
        return cfg.output_nc
    return cfg.input_nc


def generator_input_nc(cfg: TrainConfig, direction: str | None = None) -> int:
    """Channels of the input of the generator :func:`generator_key` names for ``direction``:
    labels (one-hot, or the photo of :func:`input_image_nc`) + boundary map + encoded features;
    CycleGAN's generators read the photo alone."""
    if cfg.model == "cyclegan":
        return input_image_nc(cfg, direction)
    return input_channels(cfg.label_nc, cfg.input_nc, cfg.no_instance,
                          cfg.feat_num if cfg.use_features else 0)


def discriminator_input_nc(cfg: TrainConfig) -> int:
    """Channels of a conditional D's input: G's condition (without the features) + the image."""
    return generator_input_nc(cfg) - (cfg.feat_num if cfg.use_features else 0) + cfg.output_nc


def generator_key(cfg: TrainConfig, direction: str | None = None) -> str:
    """The checkpoint key of the generator that translates in ``direction``: 'G' for pix2pixHD
    and pix2pix (one direction: None or the run's own); CycleGAN: 'G_A' for 'AtoB' (and None), 'G_B' for
    'BtoA'. A and B are the run's domains: {phase}A/ and {phase}B/, swapped for a run trained
    with --direction BtoA."""
    if direction not in (None, *DIRECTIONS):
        raise ConfigError(f"direction={direction!r}; expected one of {DIRECTIONS} (or None)")
    if cfg.model == "cyclegan":
        return "G_B" if direction == "BtoA" else "G_A"
    if direction not in (None, cfg.direction):   # its own direction names its one generator
        raise ConfigError(f"--direction {direction}: this {cfg.model} run was trained with --direction "
                          f"{cfg.direction}, and its one generator translates that way: drop --direction "
                          f"(or pass {cfg.direction}); a --model cyclegan run has a generator for each way")
    return "G"


def network_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """The checkpoint keys of every network a run of ``cfg.model`` trains."""
    return ("G_A", "G_B", "D_A", "D_B") if cfg.model == "cyclegan" else ("G", "D", "E")


def build_generator(cfg: TrainConfig, direction: str | None = None) -> nn.Module:
    """The generator :func:`generator_key` names for ``direction``, initialised."""
    cfg.check_resolved()
    key = generator_key(cfg, direction)
    nc = generator_input_nc(cfg, direction)
    if cfg.model == "cyclegan":
        nc_out = cfg.output_nc if key == "G_A" else cfg.input_nc
        g = define_G(nc, nc_out, cfg.ngf, cfg.netG_pix2pix, cfg.norm, use_dropout=not cfg.no_dropout)
    elif cfg.model == "pix2pix":
        g = define_G(nc, cfg.output_nc, cfg.ngf, cfg.netG_pix2pix, cfg.norm, use_dropout=not cfg.no_dropout)
    elif cfg.netG == "global":
        g = GlobalGenerator(nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global, cfg.norm,
                            upsample=cfg.upsample)
    else:
        g = LocalEnhancer(nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global,
                          cfg.n_local_enhancers, cfg.n_blocks_local, cfg.norm, upsample=cfg.upsample)
    return set_norm_impl(g, cfg.norm_impl)


def build_discriminator(cfg: TrainConfig, key: str = "D") -> nn.Module | None:
    """The discriminator stored under ``key`` ('D'; CycleGAN: 'D_A' or 'D_B'), initialised."""
    cfg.check_resolved()
    nc = discriminator_input_nc(cfg)
    if cfg.model == "cyclegan":
        if key not in ("D_A", "D_B"):
            raise ConfigError(f"a cyclegan run has discriminators 'D_A' and 'D_B', not {key!r}")
        # D_A judges G_A's outputs (domain B), D_B judges G_B's (domain A); unconditional
        d = define_D(cfg.output_nc if key == "D_A" else cfg.input_nc, cfg.ndf, cfg.netD_pix2pix,
                     cfg.n_layers_D, cfg.norm)
    elif key != "D":
        raise ConfigError(f"a {cfg.model} run has one discriminator 'D', not {key!r}")
    elif cfg.model == "pix2pix":
        if cfg.lambda_GAN == 0:
            return None  # the L1-only ablation has no discriminator
        d = define_D(cfg.output_nc if cfg.no_cond_D else nc, cfg.ndf, cfg.netD_pix2pix, cfg.n_layers_D, cfg.norm)
    else:
        d = MultiscaleDiscriminator(nc, cfg.ndf, cfg.n_layers_D, cfg.num_D, cfg.norm,
                                    use_sigmoid=False, get_interm_feat=not cfg.no_ganFeat_loss)
    return set_norm_impl(d, cfg.norm_impl)


def check_discriminator_input(cfg: TrainConfig, d: nn.Module, w: int, h: int, what: str) -> None:
    """Raise a one-line ConfigError when discriminator ``d`` (one :func:`build_discriminator`
    built from ``cfg``) cannot take the w x h images ``what`` names (a crop, a file): too deep a
    PatchGAN for them (its logits would have no pixel left, or a norm one value), too many
    pix2pixHD scales. Says the largest depth that fits and the crop that fits this depth."""
    if d.input_fits(h, w):
        return
    side = d.min_input_side
    if cfg.model == "pix2pixhd":
        depth = (f"--num_D {cfg.num_D} scales with --n_layers_D {cfg.n_layers_D}: the coarsest sees the "
                 f"image at 1/{2 ** (cfg.num_D - 1)} of its size, 1x1, which its norms cannot take")
        k = (max(h, w) - 1).bit_length()   # the most scales whose coarsest keeps 2 pixels a side
        fix = f"--num_D {k} (or fewer)" if k >= 1 else "--n_layers_D 1"
    else:
        n = getattr(d, "n_layers", None)
        depth = (f"--netD_pix2pix {cfg.netD_pix2pix}"
                 + (f" --n_layers_D {n}" if cfg.netD_pix2pix == "n_layers" else
                    f", a PatchGAN of {n} stride-2 convs" if n is not None else ""))
        n_fit = (min(h, w) // 3).bit_length() - 1   # the deepest PatchGAN: 3 * 2**n <= side
        fix = ("--netD_pix2pix pixel" if n_fit < 1 else f"--n_layers_D {n_fit} (or fewer)"
               if cfg.netD_pix2pix == "n_layers" else f"--netD_pix2pix n_layers --n_layers_D {n_fit}")
    raise ConfigError(f"{what} is {w}x{h}, too small for the discriminator ({depth}; it needs "
                      f"{side}x{side} or more): use {fix}, or {_larger_images(cfg, side)}")


def _larger_images(cfg: TrainConfig, side: int) -> str:
    """The options (or files) that make every sample at least ``side`` pixels a side."""
    return {"resize_and_crop": f"--loadSize and --fineSize {side} or more",
            "crop": f"--fineSize {side} or more, on images at least that large",
            "none": f"images of {side} pixels a side or more"}.get(
        cfg.resize_or_crop, f"a --loadSize (and --fineSize) that leaves {side} pixels a side or more")


def generator_min_side(cfg: TrainConfig, multiple: int | None = None) -> int:
    """The smallest image side a generator of ``cfg`` (or its feature encoder) runs on, for sides
    that divide by (or are padded to) ``multiple`` (default ``cfg.required_multiple``). pix2pixHD's
    generators, its encoder and the ResNet generators (CycleGAN's default, pix2pix's ``resnet_*``)
    instance-normalise (and reflection-pad) their bottleneck, which needs more than one pixel: a
    side of just one multiple (``side <= multiple``) leaves a 1x1 bottleneck. The U-Net runs on any
    padded size. Synthesis skips maps below it; training refuses them (:func:`check_generator_input`)."""
    unet = cfg.model in ("pix2pix", "cyclegan") and not cfg.netG_pix2pix.startswith("resnet")
    return 1 if unet else (cfg.required_multiple if multiple is None else multiple) + 1


def check_generator_input(cfg: TrainConfig, w: int, h: int, what: str,
                          unrounded: tuple[int, int] | None = None) -> None:
    """Raise a one-line ConfigError when the generator or the feature encoder E of ``cfg`` cannot
    take the w x h samples ``what`` names (:func:`generator_min_side`): the network, its minimum,
    the depth that fits and the sizes that fit. ``unrounded``: the size before --resize_or_crop
    none rounds the sides up to the multiple (the depths that fit are those below its sides)."""
    nets = [("the generator", cfg.generator_multiple)]
    if cfg.model == "pix2pixhd" and cfg.use_features and not cfg.load_features:
        nets.append(("the feature encoder", 2 ** cfg.n_downsample_E))
    short = [(name, m) for name, m in nets if min(w, h) < generator_min_side(cfg, m)]
    if not short:
        return
    fit = min(unrounded or (w, h))
    k = (fit - 1).bit_length() - 1   # the most x2 downsamplings that leave 2 pixels of the fit side
    fixes = []
    for name, m in short:
        if name == "the feature encoder" and k >= 0:
            fixes.append(f"--n_downsample_E {k} (or fewer)")
        elif cfg.model == "pix2pixhd":
            n = k - (cfg.n_local_enhancers if cfg.netG == "local" else 0)
            if n >= 0:
                fixes.append(f"--n_downsample_global {n} (or fewer)")
    if fixes and getattr(cfg, "load_pretrain", None):   # the depths come with the weights loaded
        fixes = [f"--load_pretrain of a stage trained with {' and '.join(fixes)}"]
    m = max(m for _, m in short)
    side = generator_min_side(cfg, m)
    if cfg.resize_or_crop != "none":   # (none rounds a file's sides up to the multiple)
        side = -(-side // cfg.required_multiple) * cfg.required_multiple
    who = " and ".join(f"{name} ({m}x downsampled)" for name, m in short)
    raise ConfigError(f"{what} is {w}x{h}, too small for {who}: each side must be more than {m} "
                      f"(a 1x1 bottleneck cannot be normalised): use "
                      f"{', '.join(fixes + [''])}{'or ' if fixes else ''}{_larger_images(cfg, side)}")


def build_encoder(cfg: TrainConfig) -> nn.Module | None:
    cfg.check_resolved()
    # With --load_features the features come precomputed from disk (the reference builds no E).
    if not cfg.use_features or cfg.load_features:
        return None
    return set_norm_impl(Encoder(cfg.output_nc, cfg.feat_num, cfg.nef, cfg.n_downsample_E, cfg.norm),
                         cfg.norm_impl)


def check_weights_fit(cfg: TrainConfig, ckpt: dict, config_source: str, checkpoint_file: str) -> None:
    """Raise a one-line CheckpointError where a saved config (``config_source`` names it) gives the
    networks of checkpoint ``ckpt`` (file ``checkpoint_file``) other sizes than their weights have.
    The sizes are read from the weights' keys and shapes (``compat.reference_architecture``; for
    pix2pix and CycleGAN, the first conv and a build on the meta device), before anything is
    built: an edited or damaged config (n_blocks_global 10**6, label_nc 10**12) is refused here
    instead of building a network that hangs or fills the memory."""
    import torch
    from pix2pixhd.checkpoint import CheckpointError
    from pix2pixhd.compat import reference_architecture

    def state(key):
        s = ckpt.get(key) if isinstance(ckpt, dict) else None
        if not (isinstance(s, dict) and s):
            return None
        return {(k[7:] if k.startswith("module.") else k): v for k, v in s.items()}

    def arch_of(key, kind):
        s = state(key)
        try:
            return reference_architecture(s, kind) if s is not None else None
        except (AttributeError, TypeError, IndexError):   # entries that are not tensors: loading says so
            return None

    differ = []

    def compare(key, arch, names, nc, nc_options):
        for k in names:
            if getattr(cfg, k) != arch[k]:
                differ.append(f"{k} {getattr(cfg, k)} (its {key}: {arch[k]})")
        if nc != arch["in_channels"]:
            said = ", ".join(f"{k} {getattr(cfg, k)}" for k in nc_options)
            differ.append(f"{nc} input channels of {key} from {said} (its {key} takes {arch['in_channels']})")

    feats = ("instance_feat", "label_feat", "feat_num") if cfg.use_features else ()
    img = ("label_nc",) if cfg.label_nc else ("label_nc", "input_nc")
    if cfg.model == "pix2pixhd":
        arch = arch_of("G", "G")
        if arch is not None and arch["netG"] != cfg.netG:
            differ.append(f"netG {cfg.netG} (its G: {arch['netG']})")
        elif arch is not None:
            local = ("n_local_enhancers", "n_blocks_local") if cfg.netG == "local" else ()
            compare("G", arch, ("ngf", "n_downsample_global", "n_blocks_global", *local, "output_nc"),
                    generator_input_nc(cfg), img + ("no_instance",) + feats)
        arch = arch_of("D", "D")
        if arch is not None:
            compare("D", arch, ("num_D", "n_layers_D", "ndf"), discriminator_input_nc(cfg),
                    img + ("no_instance", "output_nc"))
        arch = arch_of("E", "E") if cfg.use_features and not cfg.load_features else None
        if arch is not None:
            compare("E", arch, ("nef", "n_downsample_E", "feat_num"), cfg.output_nc, ("output_nc",))
    else:
        directions = ("AtoB", "BtoA") if cfg.model == "cyclegan" else (None,)
        for direction in directions:
            key = generator_key(cfg, direction)
            g = state(key)
            first = next((v for v in (g or {}).values() if isinstance(v, torch.Tensor) and v.dim() == 4), None)
            if first is None:
                continue
            nc = generator_input_nc(cfg, direction)
            if (cfg.ngf, nc) != tuple(first.shape[:2]):
                differ.append(f"ngf {cfg.ngf} and {nc} input channels (its {key}: ngf {first.shape[0]}, "
                              f"{first.shape[1]} input channels)")
                continue
            with torch.device("meta"):   # the depth is netG_pix2pix's: no memory, no init time
                own = build_generator(cfg, direction).state_dict()
            shapes = [f"{k} {list(own[k].shape)}, in the weights {list(v.shape)}" for k, v in g.items()
                      if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
            if shapes:
                differ.append(f"{key} shapes from output_nc {cfg.output_nc}, netG_pix2pix {cfg.netG_pix2pix} "
                              f"({len(shapes)} differ, e.g. {shapes[0]})")
    if differ:
        e = CheckpointError(
            f"{config_source} does not fit the weights in {checkpoint_file}: {'; '.join(differ)}. The saved "
            "config was edited or damaged, or is another run's: restore it from a copy, or set these "
            "options back to the weights' values")
        e.differ = differ   # what differs, for a caller that falls back on another config
        raise e
