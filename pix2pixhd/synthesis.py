"""Bulk synthesis: a folder of label maps (and instance maps) → a folder of photos.

The generator and its flags come from a training checkpoint folder (config.json + latest.pt or
epoch_N.pt), so a checkpoint is never run with the wrong architecture. Any input size: each map is
padded (replicate) to the generator's multiple and the output cropped back. Inputs of one size are
batched; the loop runs under ``torch.inference_mode`` with autocast on CUDA and channels-last.
Files it cannot use are reported with the reason and skipped, never silently.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pix2pixhd.checkpoint import load_checkpoint, load_run_config
from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import LabelRangeError, encode_input, float_to_uint8

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_generator(checkpoint_dir: str | Path, which_epoch: str = "latest",
                   device: str | torch.device = "cpu", *,
                   test_dropout: bool = True) -> tuple[torch.nn.Module, TrainConfig]:
    """The generator of a training run, in eval mode, with the config it was trained with.

    ``test_dropout``: pix2pix keeps its U-Net's dropout on at test time (the paper's only noise
    source, so outputs vary between calls unless the torch seed is fixed); False switches it off
    for deterministic outputs. Generators without dropout (pix2pixHD's) are unaffected.
    """
    from pix2pixhd.models import build_generator
    checkpoint_dir = Path(checkpoint_dir)
    ckpt = load_checkpoint(checkpoint_dir, which_epoch)
    cfg = load_run_config(checkpoint_dir, which_epoch, checkpoint=ckpt)   # the checkpoint's own wins
    g = build_generator(cfg)
    from pix2pixhd.compat import load_reference_weights
    load_reference_weights(g, ckpt["G"])
    g = g.to(device).eval().requires_grad_(False)
    if cfg.model == "pix2pix" and test_dropout:
        from pix2pixhd.pix2pix_networks import set_dropout
        set_dropout(g, True)  # after eval(), which turned it off
    return g, cfg


def read_id_map(path: Path) -> np.ndarray:
    """A single-channel integer map (label or instance ids) → [H, W] int64."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGB", "RGBA", "CMYK", "LA"):
            raise ValueError(f"{path} is a {im.mode} image; label and instance maps must be "
                             "single-channel id maps (convert colour maps with the dataset tools)")
        return np.asarray(im).astype(np.int64)


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class SynthesisReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.written) / self.seconds if self.seconds > 0 else 0.0


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x.float(), (0, pw, 0, ph), mode="replicate").to(x.dtype)
    return x, h, w


class Synthesizer:
    """``Synthesizer(generator, cfg)(label, inst)`` → uint8 [N, 3, H, W] for any H, W.

    ``backend``: a torch generator, or any callable on the float input (e.g. an ONNX session).
    ``features``: for runs trained with --instance_feat/--label_feat, a
    :class:`pix2pixhd.features.FeatureSource` giving G's feature channels (sampled clusters,
    chosen clusters, or a real photo's encoding).
    """

    def __init__(self, generator, cfg: TrainConfig, device: str | torch.device = "cpu",
                 precision: str = "auto", channels_last: bool | None = None, features=None):
        self.G, self.cfg, self.device = generator, cfg, torch.device(device)
        if cfg.use_features and features is None:
            raise ValueError("this checkpoint was trained with --instance_feat/--label_feat: G needs "
                             "feature channels; pass features=FeatureSource.from_checkpoint(...) "
                             "(synthesize.py: --feature_mode sample|cluster|encoded)")
        self.features = features if cfg.use_features else None
        self.multiple = max(cfg.required_multiple, getattr(self.features, "multiple", 1))
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        if channels_last is None:  # the GPU layout of choice; on CPU keep NCHW (see docs/benchmarks.md)
            channels_last = self.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last and isinstance(generator, torch.nn.Module) \
            else torch.contiguous_format
        if isinstance(generator, torch.nn.Module):
            generator.to(self.device, memory_format=self.memory_format)

    @torch.inference_mode()
    def __call__(self, label: torch.Tensor, inst: torch.Tensor | None = None,
                 source: str | None = None, image: torch.Tensor | None = None,
                 seeds: list[int] | None = None) -> torch.Tensor:
        """``image``: real photos [N, 3, H, W] for --feature_mode encoded; ``seeds``: one per
        sample for sampled features (default: the FeatureSource's seed + index)."""
        cfg = self.cfg
        label, h, w = _pad_to(label.to(self.device), self.multiple)
        if inst is not None:
            inst, _, _ = _pad_to(inst.to(self.device), self.multiple)
        feat = None
        if self.features is not None:
            if image is not None:
                image, _, _ = _pad_to(image.to(self.device), self.multiple)
            feat = self.features(label, inst, image=image, seeds=seeds)
        x = encode_input(label, None if cfg.no_instance else inst, feat, label_nc=cfg.label_nc, source=source)
        x = x.contiguous(memory_format=self.memory_format)
        if self.amp_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.amp_dtype):
                y = self.G(x)
        else:
            y = self.G(x)
        return float_to_uint8(y[..., :h, :w])


def _collect(input_dir: Path, how_many: int) -> list[Path]:
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input {input_dir} is not a folder of label maps")
    files = sorted(p for p in input_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    return files[:how_many] if how_many > 0 else files


def synthesize_folder(synth: Synthesizer, input_dir: Path, out_dir: Path, *, inst_dir: Path | None = None,
                      batch_size: int = 4, how_many: int = 0, progress: bool = True,
                      image_dir: Path | None = None) -> SynthesisReport:
    """Every label map of ``input_dir`` → ``out_dir/<stem>.png``; instance maps matched by stem.

    ``image_dir``: real photos matched by stem, encoded by E for --feature_mode encoded. Sampled
    features use a per-image seed from the FeatureSource's seed and the file name, so a rerun
    (in any batch size) repeats.
    """
    from tqdm import tqdm
    cfg = synth.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    report = SynthesisReport()
    files = _collect(Path(input_dir), how_many)
    inst_index = {p.stem: p for p in Path(inst_dir).iterdir()} if inst_dir else {}
    feats = synth.features
    encoded = feats is not None and feats.mode == "encoded"
    image_index = {p.stem: p for p in Path(image_dir).iterdir()} if encoded and image_dir else {}
    needs_inst = (not cfg.no_instance or cfg.instance_feat) and cfg.label_nc > 0
    # Read everything that is usable; group by size so a batch never mixes sizes.
    items: dict[tuple, list] = {}
    for p in files:
        try:
            if cfg.label_nc > 0:
                lab = torch.from_numpy(read_id_map(p))[None, None]
            else:
                lab = torch.from_numpy(np.array(read_rgb(p))).permute(2, 0, 1)[None]
            ins = None
            if needs_inst:
                ip = inst_index.get(p.stem)
                if ip is None:
                    # without instance maps, the reference falls back to the label map itself
                    ins = lab.clone() if inst_dir is None else None
                    if ins is None:
                        raise ValueError(f"no instance map named {p.stem}.* in {inst_dir}")
                else:
                    ins = torch.from_numpy(read_id_map(ip))[None, None]
                    if ins.shape[-2:] != lab.shape[-2:]:
                        raise ValueError(f"instance map {ip.name} is {tuple(ins.shape[-2:])}, "
                                         f"label map is {tuple(lab.shape[-2:])}")
            photo = None
            if encoded:
                rp = image_index.get(p.stem)
                if rp is None:
                    raise ValueError(f"--feature_mode encoded: no real photo named {p.stem}.* in {image_dir}")
                photo = torch.from_numpy(read_rgb(rp).copy()).permute(2, 0, 1)[None]
                if photo.shape[-2:] != lab.shape[-2:]:
                    raise ValueError(f"photo {rp.name} is {tuple(photo.shape[-2:])}, label map is "
                                     f"{tuple(lab.shape[-2:])}")
            if cfg.label_nc > 0:
                bad = int(lab.max())
                if bad >= cfg.label_nc:
                    raise LabelRangeError(f"label id {bad} >= label_nc={cfg.label_nc} of the checkpoint")
        except Exception as e:  # unreadable, wrong mode, size mismatch, ids out of range
            report.skipped.append((p, str(e)))
            continue
        items.setdefault(tuple(lab.shape[-2:]), []).append((p, lab, ins, photo))
    t0 = time.perf_counter()
    bar = tqdm(total=sum(len(v) for v in items.values()), disable=not progress, desc="synthesize")
    for group in items.values():
        for i in range(0, len(group), batch_size):
            chunk = group[i:i + batch_size]
            lab = torch.cat([c[1] for c in chunk])
            extra = {}
            if encoded:
                extra["image"] = torch.cat([c[3] for c in chunk])
            elif feats is not None:
                from pix2pixhd.features import image_seed
                extra["seeds"] = [image_seed(feats.seed, c[0].name) for c in chunk]
            ins = torch.cat([c[2] for c in chunk]) if needs_inst else None
            imgs = synth(lab, ins, source=str(chunk[0][0]), **extra)
            for (p, *_), img in zip(chunk, imgs.cpu()):
                dst = out_dir / f"{p.stem}.png"
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(dst)
                report.written.append(dst)
            bar.update(len(chunk))
    if synth.device.type == "cuda":
        torch.cuda.synchronize()
    report.seconds = time.perf_counter() - t0
    bar.close()
    return report
