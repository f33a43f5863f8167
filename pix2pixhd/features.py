"""Multimodal synthesis: the instance-wise feature encoder's features, their clusters, sampling.

pix2pixHD (Wang et al. 2018, §3.4) trains an encoder E jointly with G (``--instance_feat`` or
``--label_feat``; see trainer.py). E's output is averaged within each instance, so every
instance carries one ``feat_num``-vector that G reads as extra input channels. After training:

1. ``encode``: E runs over the training set; one feature per instance (the value at the
   instance's middle pixel in raster order, as the reference takes it, with the instance's area)
   is collected per class; instances covering more than ``min_area`` × (H·W / 32) pixels are
   clustered per class with k-means (scikit-learn); the centres are saved beside the checkpoint
   as ``features_clustered.pt`` (plain tensors, read with ``weights_only=True``).
2. At synthesis a cluster centre is painted into each instance: sampled per instance (seeded:
   a rerun repeats), chosen per class, or E's own encoding of a real photo (``encoded``).
3. ``precompute``: E's maps of a training set, upsampled ×2 (nearest) and written as PNGs into
   ``{phase}_feat/`` for the 2048×1024 stage trained with ``--load_features`` (the reference's
   12 GB recipe, where E would not fit beside the local generator).

Command line::

    python -m pix2pixhd.features encode --checkpoint checkpoints/NAME [--n_clusters 10] [--batch_size 4]
    python -m pix2pixhd.features precompute --checkpoint checkpoints/NAME [--upsample 2] [--batch_size 4]

SIGTERM or SIGINT (GNU timeout, SLURM's scancel, Ctrl-C: the whole process group) stops either
command at once with one line saying what it had written, with training's statuses for a stop (75
and 130). Nothing they write is ever half-written (the clusters file, each feature map and the
progress file go through a temporary file and a rename), and their DataLoader workers ignore the
signals, as training's and synthesis's do, so that the stop is the command's, not a dead worker's.
Both record their progress every ``--progress_every`` images (default 100), or every 5% of the
images done once that is more, and at a stop (all the images done then), in a hidden
``.NAME.progress`` file beside their output; a kill (``kill -9``) loses the images since the last
save. A rerun of the same command (same encoder and options, inputs whose first ones are the images
done: a larger ``--how_many`` continues too) continues from there, with a note saying how many
images were already done; so does one with ``--progress_every 0``, which writes no progress file of
its own but still resumes from the one there (and removes it when it finishes: precompute, once
every map of the split is written). A ``precompute --how_many`` that ends with maps of the split
left records the maps it wrote (and how many it was asked for), so that a larger one continues
after them; no precompute that continues from a progress file lowers its count.

Everything below runs on the tensors' device; the per-instance grouping is one ``torch.unique``
plus a sort, never a Python loop over instances (``_instance_features_ref`` is that loop, kept
as the specification the tests compare against).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pix2pixhd.data.layouts import progress_path   # (its name: the data module's errors say it)
from pix2pixhd.errors import ConfigError, InputError, MissingDependencyError, MissingInputError

CLUSTERS_FILE = "features_clustered.pt"
FEATURE_MODES = ("sample", "cluster", "encoded")
# The reference keeps an instance when its pixel count / (H·W // BLOCK_NUM) exceeds 0.5, i.e.
# when it covers more than 1/64 of the image.
BLOCK_NUM = 32
MIN_AREA = 0.5


# ---- one feature per instance ------------------------------------------------------------------
@dataclass
class InstanceFeatures:
    """One row per (sample, instance). All tensors on the input's device."""
    sample: torch.Tensor   # [K] int64 index into the batch
    inst_id: torch.Tensor  # [K] int64 instance id
    label: torch.Tensor    # [K] int64 class id at the instance's middle pixel
    value: torch.Tensor    # [K, F] float32 feature at the middle pixel
    area: torch.Tensor     # [K] float32 pixel count / (H·W // BLOCK_NUM), the reference's measure
    dense: torch.Tensor    # [N·H·W] int64 row of each pixel (raster order over the batch)


def _group_pixels(inst: torch.Tensor):
    """inst [N, 1, H, W] ids → (dense [N·H·W] row per pixel, counts [K], middle [K] flat pixel).

    Rows are the (sample, id) pairs in sorted order; ``middle`` is the pixel the reference picks:
    the ``count // 2``-th of the instance's pixels in raster order.
    """
    from pix2pixhd.networks import check_instance_ids
    check_instance_ids(inst)   # .long() would merge the instances of a float map
    n, _, h, w = inst.shape
    ids = inst.reshape(n, h * w).long()
    lo = ids.min()
    span = ids.max() - lo + 1
    key = (ids - lo) + torch.arange(n, device=ids.device).unsqueeze(1) * span
    _, dense, counts = torch.unique(key.reshape(-1), return_inverse=True, return_counts=True)
    # A stable sort by row lists each row's pixels in raster order; the middle one is at
    # start + count // 2.
    order = torch.sort(dense, stable=True).indices
    start = torch.cumsum(counts, 0) - counts
    middle = order[start + counts // 2]
    return dense, counts, middle


def instance_features(feat: torch.Tensor, inst: torch.Tensor, label: torch.Tensor) -> InstanceFeatures:
    """E's map → one feature per instance per sample (vectorised; see ``_instance_features_ref``).

    feat: [N, F, H, W] float, E's output (already constant within each instance).
    inst: [N, 1, H, W] integer instance ids (the label map itself for ``--label_feat``).
    label: [N, 1, H, W] integer class ids; an instance's class is the label at its middle pixel,
    which for Cityscapes' ``class*1000 + k`` ids is the reference's ``id // 1000``.
    """
    n, c, h, w = feat.shape
    if inst.shape != (n, 1, h, w) or label.shape != (n, 1, h, w):
        raise ValueError(f"feature map {tuple(feat.shape)} needs instance and label maps of shape "
                         f"({n}, 1, {h}, {w}); got {tuple(inst.shape)} and {tuple(label.shape)}")
    dense, counts, middle = _group_pixels(inst)
    values = feat.permute(0, 2, 3, 1).reshape(n * h * w, c)[middle].float()
    return InstanceFeatures(
        sample=middle // (h * w), inst_id=inst.reshape(-1)[middle].long(),
        label=label.reshape(-1)[middle].long(), value=values,
        area=counts.float() / (h * w // BLOCK_NUM), dense=dense)


def _instance_features_ref(feat: torch.Tensor, inst: torch.Tensor, label: torch.Tensor) -> list[tuple]:
    """The reference's loop (NVIDIA pix2pixHD ``encode_features``), one instance at a time.

    Returns [(sample, inst_id, label, value [F], area)] in (sample, id) order.
    """
    n, c, h, w = feat.shape
    rows = []
    for b in range(n):
        for i in torch.unique(inst[b]).tolist():
            idx = (inst[b, 0] == i).nonzero()  # raster order
            num = idx.shape[0]
            y, x = idx[num // 2].tolist()
            rows.append((b, i, int(label[b, 0, y, x]), feat[b, :, y, x].float(), num / (h * w // BLOCK_NUM)))
    return rows


# ---- collecting and clustering -----------------------------------------------------------------
@torch.no_grad()
def encode_features(encoder: torch.nn.Module, batches: Iterable[dict], *, label_feat: bool = False,
                    device: str | torch.device = "cpu") -> dict[int, np.ndarray]:
    """Run E over ``batches`` → {class id: float32 [M, F + 1]} (feature, area) per instance.

    Each batch is the data pipeline's dict: ``image`` uint8 [N, 3, H, W], ``label`` [N, 1, H, W]
    ids, ``inst`` [N, 1, H, W] ids (ignored for ``label_feat``, where the regions are the labels).
    Rows come in (image, instance id) order whatever the batches' sizes: instances are keyed by
    (image, id), so one id in several images of a batch is several instances, and E (in eval mode,
    its BatchNorm per image) encodes each image as it would alone.
    """
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    parts: dict[int, list[torch.Tensor]] = {}
    for batch in batches:
        for cls, rows in _batch_rows(encoder, batch, label_feat, device).items():
            parts.setdefault(cls, []).append(rows)
    return _joined(parts)


def _joined(parts: dict[int, list[torch.Tensor]]) -> dict[int, np.ndarray]:
    return {k: torch.cat(v).numpy().astype(np.float32) for k, v in sorted(parts.items())}


@torch.no_grad()
def _batch_rows(encoder: torch.nn.Module, batch: dict, label_feat: bool, device: torch.device) -> dict[int, torch.Tensor]:
    """E over one batch → {class id: float32 [M, F + 1] rows on the CPU}, in (image, id) order."""
    from pix2pixhd.encoding import image_to_float
    label = batch["label"].to(device)
    inst = label if label_feat else batch.get("inst")
    if inst is None:   # InputError is a ValueError: callers catching that still do
        paths = batch.get("path")
        first = paths[0] if isinstance(paths, (list, tuple)) and paths else paths
        of = f"the batch of {first}" if isinstance(first, (str, Path)) else "a batch"
        raise InputError(f"--instance_feat needs instance maps, and {of} has none (no 'inst' entry): add the "
                         "dataset's instance maps (its train_inst/ folder, PHASE_inst/ for another --phase), "
                         "or train with --label_feat (encode_features(label_feat=True))")
    inst = inst.to(device)
    real = image_to_float(batch["image"].to(device))
    f = instance_features(encoder(real, inst), inst, label)
    rows = torch.cat([f.value, f.area[:, None]], 1).cpu()
    labels = f.label.cpu()
    return {int(cls): rows[labels == cls] for cls in torch.unique(labels).tolist()}


def cluster_features(features: dict[int, np.ndarray], n_clusters: int = 10, *,
                     min_area: float = MIN_AREA, seed: int = 0) -> dict[int, np.ndarray]:
    """k-means per class → {class id: float32 [k, F]}, k = min(n_clusters, instances kept).

    Keeps the instances whose area measure exceeds ``min_area`` (the reference's 0.5); classes
    with none are left out (synthesis fills them with zeros and says so).
    """
    try:
        from sklearn.cluster import KMeans
    except ImportError as e:
        raise MissingDependencyError("clustering the encoder's features needs scikit-learn: "
                          "pip install scikit-learn (in a checkout: pip install -e '.[features]')") from e
    if n_clusters < 1:
        raise ConfigError(f"--n_clusters {n_clusters}: need at least 1 cluster per class")
    centers = {}
    for cls, rows in sorted(features.items()):
        kept = rows[rows[:, -1] > min_area, :-1].astype(np.float64)
        if len(kept) == 0:
            continue
        k = min(n_clusters, len(kept))
        km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(kept)
        centers[int(cls)] = km.cluster_centers_.astype(np.float32)
    return centers


# ---- the saved clusters --------------------------------------------------------------------------
@dataclass
class FeatureClusters:
    """Per-class k-means centres of E's features, as saved beside a checkpoint."""
    centers: dict[int, torch.Tensor]           # class id → [k, F] float32
    feat_num: int
    n_clusters: int
    global_step: int = -1                      # of the checkpoint whose E produced them
    counts: dict[int, int] = field(default_factory=dict)   # instances kept per class
    path: Path | None = None                   # the file they were loaded from (for error messages)
    # the E they came from (:func:`encoder_identity`): {"sha256": ..., "checkpoint": its file};
    # empty in files of older versions, which the step alone identifies
    encoder: dict[str, str] = field(default_factory=dict)
    file_sha256: str | None = None             # sha256 of the file's bytes, as loaded
    # The most values table() may hold ([classes, centres, features]): with ids below LABEL_NC_MAX
    # (65536, pix2pixhd.data.layouts) and the reference's 10 centres of 3 features, about 2 million;
    # a crafted file's (10^9 rows of a stride-0 view, or class 10^9) asked for gigabytes.
    TABLE_MAX = 2**24

    def table(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (centres [C, kmax, F], n per class [C]) with C = max class + 1; absent classes n = 0.
        A table above :attr:`TABLE_MAX` values (clusters built by hand: :meth:`load`
        refuses such files) is an InputError, not an allocation that exhausts memory."""
        c = max(self.centers, default=-1) + 1
        kmax = max((v.shape[0] for v in self.centers.values()), default=1)
        if max(c, 1) * kmax * self.feat_num > self.TABLE_MAX:
            where = "the clusters" if self.path is None else str(self.path)
            raise InputError(f"{where}: classes up to {c - 1} with up to {kmax} centres of {self.feat_num} "
                             f"features make a table of {max(c, 1) * kmax * self.feat_num} values, more than "
                             f"{self.TABLE_MAX} (class ids below 65536, a few centres each); rewrite it with "
                             f"`{encode_command(self.path)}`")
        tab = torch.zeros(max(c, 1), kmax, self.feat_num)
        num = torch.zeros(max(c, 1), dtype=torch.long)
        for cls, v in self.centers.items():
            tab[cls, :v.shape[0]] = v
            num[cls] = v.shape[0]
        return tab.to(device), num.to(device)

    def save(self, path: str | Path, raw: dict[int, np.ndarray] | None = None) -> Path:
        from pix2pixhd.checkpoint import atomic_torch_save
        obj = {"centers": {int(k): v.float().contiguous() for k, v in self.centers.items()},
               "feat_num": self.feat_num, "n_clusters": self.n_clusters,
               "global_step": self.global_step, "counts": {int(k): int(v) for k, v in self.counts.items()},
               "encoder": {str(k): str(v) for k, v in self.encoder.items()},
               # the collected (feature, area) rows, to re-cluster without re-encoding
               "features": {int(k): torch.from_numpy(np.ascontiguousarray(v)) for k, v in (raw or {}).items()}}
        atomic_torch_save(obj, Path(path))
        return Path(path)

    @classmethod
    def _bounds_problem(cls, d: dict) -> str | None:
        """Why the clusters file dict ``d`` (centres already [k, feat_num] tensors) is not one
        ``encode`` could have written, or None: n_clusters or feat_num not an integer in
        1..TABLE_MAX, a class with more centres than n_clusters, or more centres in all than
        :attr:`TABLE_MAX` values. Class ids are checked where the run is known (synthesis names
        those past its label_nc) and by :meth:`table`, which refuses a table past TABLE_MAX."""
        n, f = d["n_clusters"], d["feat_num"]
        for name, v in (("n_clusters", n), ("feat_num", f)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= cls.TABLE_MAX:
                return f"{name} {v!r}: must be an integer >= 1 and <= {cls.TABLE_MAX}"
        centers = d["centers"]
        over = [k for k, v in centers.items() if v.shape[0] > n]
        if over:
            return f"class {over[0]!r} holds {centers[over[0]].shape[0]} centres, more than its n_clusters {n}"
        total = sum(v.shape[0] for v in centers.values()) * f
        if total > cls.TABLE_MAX:
            return f"{len(centers)} classes hold {total} centre values, more than {cls.TABLE_MAX}"
        return None

    @classmethod
    def load(cls, path: str | Path) -> "FeatureClusters":
        path = Path(path)
        if path.is_dir():
            path = path / CLUSTERS_FILE
        if not path.is_file():
            raise MissingInputError(
                f"{path} not found: run `{encode_command(path)}` to cluster the encoder's features, or "
                "synthesize with --feature_mode encoded and real photos")
        from pix2pixhd.checkpoint import one_line
        try:
            data = path.read_bytes()
            d = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            why = None
        except Exception as e:   # truncated, empty, not a torch file, unreadable
            from pix2pixhd.compat import pickled_global
            said = pickled_global(e)
            if said is not None:   # loading it as torch suggests (weights_only=False) would run code
                raise InputError(f"{path} holds pickled Python objects ({said}), not only the tensors encode "
                                 "writes; such a file is not loaded, as loading it would run code: rewrite it "
                                 f"with `{encode_command(path)}`") from None
            why = one_line(e)
        else:
            missing = [k for k in ("centers", "feat_num", "n_clusters") if k not in d] \
                if isinstance(d, dict) else None
            if missing is None:
                why = f"it holds a {type(d).__name__}, not the dict encode writes"
            elif missing:
                why = f"no {', '.join(repr(k) for k in missing)}"
            elif not isinstance(d["centers"], dict) or not all(
                    isinstance(v, torch.Tensor) and v.ndim == 2 for v in d["centers"].values()):
                why = "its 'centers' are not {class id: [k, feat_num] tensor}"
            elif any(v.shape[1] != d["feat_num"] for v in d["centers"].values()):
                # table() fills [C, k, feat_num] from them (synthesis: "The expanded size...")
                widths = sorted({v.shape[1] for v in d["centers"].values()})
                why = f"its centres are {' and '.join(map(str, widths))} wide, but its feat_num is {d['feat_num']!r}"
            elif any(isinstance(k, int) and k < 0 for k in d["centers"]):
                why = f"negative class ids {sorted(k for k in d['centers'] if isinstance(k, int) and k < 0)[:4]}"
            else:
                why = cls._bounds_problem(d)
        if why is None:
            try:
                enc = d.get("encoder") or {}
                # own contiguous float32 copies (small, bounded above): not a view of the file's
                # storage with strides of its own (a stride-0 [10^9, 3] view passed as 3 numbers)
                return cls(centers={int(k): v.to(torch.float32, copy=True).contiguous()
                                    for k, v in d["centers"].items()},
                           feat_num=int(d["feat_num"]), n_clusters=int(d["n_clusters"]),
                           global_step=int(d.get("global_step", -1)),
                           counts={int(k): int(v) for k, v in d.get("counts", {}).items()}, path=path,
                           encoder={str(k): str(v) for k, v in dict(enc).items()},
                           file_sha256=hashlib.sha256(data).hexdigest())
            except (TypeError, ValueError, AttributeError) as e:
                why = one_line(e)
        raise InputError(f"{path} is not a usable clusters file ({why}): it may be truncated or damaged; "
                         f"rewrite it with `{encode_command(path)}`")


# ---- painting features into instances ------------------------------------------------------------
def parse_cluster_spec(spec: str | int | dict | None) -> int | dict[int, int] | None:
    """``3`` (every class takes centre 3) or ``"26=3,24=1"`` (those classes; others sampled).

    Anything else (``"3,4"``, ``"x"``, ``"26=3,24"``) is a ConfigError naming --cluster, the value
    and both accepted forms, not int()'s bare ValueError; so are a negative class or index and a
    class given twice (``"7=1,7=2"``)."""
    if spec is None or spec == "" or isinstance(spec, dict):
        return spec if spec != "" else None
    if isinstance(spec, int):
        spec = str(spec)
    spec = str(spec).strip()
    bad = ConfigError(f"--cluster {spec!r}: expected one centre index for every class (e.g. 3) or "
                      "comma-separated class=index pairs (e.g. 26=3,24=1)")
    if "=" not in spec:
        try:
            k = int(spec)
        except ValueError:
            raise bad from None
        if k < 0:
            raise ConfigError(f"--cluster {spec}: a centre index is 0 or more (0 is each class's first "
                              "centre); pass e.g. --cluster 0")
        return k
    out = {}
    for part in spec.split(","):
        try:
            cls, k = (int(x) for x in part.split("="))
        except ValueError:
            raise bad from None
        if cls < 0 or k < 0:
            raise ConfigError(f"--cluster {spec!r}: {part.strip()} is negative; classes and centre indices "
                              "are 0 or more")
        if cls in out:
            raise ConfigError(f"--cluster {spec!r}: class {cls} is given twice ({cls}={out[cls]} and "
                              f"{cls}={k}); give each class once")
        out[cls] = k
    return out


def check_cluster_choice(cluster: int | dict[int, int] | None, clusters: FeatureClusters,
                         label_nc: int = 0) -> None:
    """Refuse a parsed ``--cluster`` that ``clusters`` cannot serve: a class outside
    [0, label_nc) (when ``label_nc`` > 0), a class without centres, or an index past a class's
    count. Synthesis calls it when it builds its FeatureSource, before anything is written, so a
    corrected value reruns into the same output folder."""
    if not isinstance(cluster, dict):
        return   # one index for every class: taken mod each class's count
    where = f" in {clusters.path}" if clusters.path is not None else " in the saved clusters"
    for c, k in cluster.items():
        if label_nc > 0 and not 0 <= c < label_nc:
            raise ConfigError(f"--cluster {c}={k}: class {c} is out of range: this run's label_nc is "
                              f"{label_nc}, so classes are 0..{label_nc - 1}")
        n_c = clusters.centers[c].shape[0] if c in clusters.centers else 0
        if not n_c:
            have = ", ".join(str(x) for x in sorted(clusters.centers)) or "none"
            raise ConfigError(f"--cluster {c}={k}: class {c} has no clusters{where} (no instance of it "
                              f"was large enough when encoding); classes with clusters: {have}")
        if not 0 <= k < n_c:
            raise ConfigError(f"--cluster {c}={k}: class {c} has {n_c} cluster(s){where}; pick an "
                              f"index in [0, {n_c})")


def sample_features(inst: torch.Tensor, label: torch.Tensor, clusters: FeatureClusters, *,
                    seeds: int | Sequence[int] = 0, cluster: int | dict[int, int] | None = None,
                    return_choices: bool = False):
    """Paint a cluster centre into every instance → feat [N, F, H, W] float32 on inst's device.

    inst, label: [N, 1, H, W] integer maps (pass the label map as ``inst`` for ``--label_feat``).
    Each instance takes a centre of its class drawn uniformly (the reference's ``sample_features``),
    with sample ``i``'s draws from ``torch.Generator().manual_seed(seeds[i])``, so an image's
    features depend only on its seed and its maps, not on the batch it came in.
    ``cluster``: an int picks centre ``k mod n_class`` for every class; a {class: k} dict picks
    those classes' centres (an index past a class's count is an error) and samples the rest.
    Classes without centres get zeros (E's tanh output is centred there).
    ``return_choices``: also return, per sample, {instance id: [class, centre index]} (index -1:
    the class has no centres), which synthesis records in its manifest.
    """
    n, _, h, w = inst.shape
    dev = inst.device
    rows = instance_features(torch.zeros(n, 0, h, w, device=dev), inst, label)
    tab, num = clusters.table(dev)
    cls = rows.label.clamp(0, tab.shape[0] - 1)
    have = (rows.label < tab.shape[0]) & (num[cls] > 0)
    seeds = [seeds + i for i in range(n)] if isinstance(seeds, int) else list(seeds)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for a batch of {n}")
    # Uniform draws per instance: per sample its own generator (rows are grouped by sample).
    per_sample = torch.bincount(rows.sample, minlength=n).tolist()
    u = torch.cat([torch.rand(k, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
                   for s, k in zip(seeds, per_sample)]).to(dev)
    idx = (u * num[cls].clamp(min=1)).long()
    if isinstance(cluster, int):
        idx = torch.full_like(idx, cluster) % num[cls].clamp(min=1)
    elif isinstance(cluster, dict):
        check_cluster_choice(cluster, clusters)
        for c, k in cluster.items():
            idx = torch.where(rows.label == c, torch.full_like(idx, k), idx)
    value = tab[cls, idx] * have[:, None]                      # [K, F]
    out = value[rows.dense]                                    # [N·H·W, F]
    out = out.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()
    if not return_choices:
        return out
    choices: list[dict[int, list[int]]] = [{} for _ in range(n)]
    for s, i, c, k in zip(rows.sample.tolist(), rows.inst_id.tolist(), rows.label.tolist(),
                          torch.where(have, idx, -1).tolist()):
        choices[s][i] = [c, k]
    return out, choices


def encode_command(out: Path | None = None, checkpoint: str | Path | None = None,
                   which_epoch: str | int = "latest") -> str:
    """The `encode` command line that writes clusters file ``out`` from the encoder of
    ``checkpoint`` at ``which_epoch``: the one place that spells it, for every error and note.

    ``checkpoint`` None: the run ``out`` sits beside when ``out`` is a run's own file
    (``CLUSTERS_FILE``), else the placeholder CHECKPOINT (which encoder made a file saved elsewhere
    is the user's to say). ``--out`` is left out where ``out`` is None or the file encode writes
    without it (``CLUSTERS_FILE`` in the checkpoint's folder)."""
    if checkpoint is None:
        checkpoint = out.parent if out is not None and out.name == CLUSTERS_FILE else "CHECKPOINT"
    cmd = f"python -m pix2pixhd.features encode --checkpoint {checkpoint}"
    if str(which_epoch) != "latest":
        cmd += f" --which_epoch {which_epoch}"
    if out is not None and out != _default_clusters_path(checkpoint):
        cmd += f" --out {out}"
    return cmd


def _default_clusters_path(checkpoint: str | Path) -> Path:
    """Where ``encode --checkpoint checkpoint`` writes without --out: the run's own file."""
    run = Path(checkpoint)
    return (run.parent if run.is_file() else run) / CLUSTERS_FILE


def _feat_num_mismatch(clusters: FeatureClusters, feat_num: int, fix: str | None = None) -> str:
    """The error for clusters of another width than the checkpoint's E: they were made by another
    encoder (another run, or one trained with another --feat_num). The fix re-clusters with the E
    of the run the file sits beside (where ``from_checkpoint`` looks for it); ``fix``: another
    (:func:`recluster_advice`, for clusters given as a file or another epoch's encoder)."""
    where = "the clusters" if clusters.path is None else str(clusters.path)
    fix = fix or f"`{encode_command(clusters.path)}` (it overwrites that file)"
    return (f"{where} holds {clusters.feat_num}-d features but the checkpoint's feat_num is {feat_num}: "
            f"they come from another encoder. Re-cluster this checkpoint's encoder with {fix}")


def checkpoint_clusters_path(checkpoint_dir: str | Path, which_epoch: str | int = "latest") -> Path:
    """Where the clusters of the encoder of ``checkpoint_dir`` (a run folder or a checkpoint file)
    at ``which_epoch`` belong: the run's own file (``CLUSTERS_FILE``) for its latest checkpoint,
    which synthesis without --clusters and the later stages read; beside it, named after the
    checkpoint, for any other: ``RUN/features_clustered_epoch_NNNN.pt`` for epoch N (given as
    ``--which_epoch N`` or as the file ``epoch_NNNN.pt``), ``features_clustered_latest_step40.pt``
    for the ``latest_step40.pt`` a resume kept aside. A checkpoint file's own name says which it
    is: synthesis passes ``which_epoch`` 'latest' with one, so that alone took ``epoch_0002.pt``
    for the latest and advised overwriting the run's file with its clusters."""
    run = Path(checkpoint_dir)
    if run.is_file():
        folder, stem = run.parent, run.stem
    else:
        from pix2pixhd.checkpoint import checkpoint_path
        folder, stem = run, checkpoint_path(run, which_epoch).stem
    return folder / (CLUSTERS_FILE if stem == "latest" else f"features_clustered_{stem}.pt")


def recluster_advice(checkpoint_dir: str | Path, which_epoch: str | int = "latest", path: Path | None = None,
                     given: bool = False) -> str:
    """The `encode` command that clusters the encoder synthesis of ``checkpoint_dir`` at
    ``which_epoch`` reads, and what to do with its file, for the notes and errors on clusters
    ``path`` that do not fit that encoder. ``given``: ``path`` came from synthesize.py --clusters.

    The run's own file (``CLUSTERS_FILE``) is the latest checkpoint's: synthesis without
    --clusters reads it, and so do the later stages' (a --load_features run's). So the command
    writes it only for the latest checkpoint; for any other (epoch N, as ``--which_epoch N`` or
    the file ``epoch_NNNN.pt``, or a checkpoint a resume kept aside) it writes
    :func:`checkpoint_clusters_path` (``--out``), which synthesis then reads with --clusters:
    ``encode --which_epoch N`` or ``encode --checkpoint RUN/epoch_NNNN.pt`` alone overwrote the
    run's file. A file given with --clusters is not rewritten unless it is that file (it may be
    another epoch's or run's); a file of another name found otherwise (a Python caller's) is
    rewritten where it is."""
    own = checkpoint_clusters_path(checkpoint_dir, which_epoch)
    run_file = own.parent / CLUSTERS_FILE
    if not given and path is not None and path.name != CLUSTERS_FILE:
        target = path   # a file of its own (encode --out): rewritten
    else:
        target = own
    if target == run_file:   # the latest checkpoint's: the run's own file, encode's default
        return f"`{encode_command(None, checkpoint_dir, which_epoch)}`" + (
            f", then leave --clusters out (synthesis reads {run_file})" if given else "")
    advice = f"`{encode_command(target, checkpoint_dir, which_epoch)}`"
    if target != path:
        advice += (f", then synthesize with --clusters {target} (encode without --out would overwrite "
                   f"{run_file}, the clusters of the latest checkpoint, which synthesis without "
                   "--clusters and the run's later stages read)")
    return advice


def _no_clusters_of_checkpoint(checkpoint_dir: str | Path, which_epoch: str | int = "latest") -> str | None:
    """The error when there is no clusters file at all for a checkpoint other than the run's latest
    (epoch N, as ``--which_epoch N`` or the file ``epoch_NNNN.pt``; one a resume kept aside): the
    encode that writes its own file (:func:`checkpoint_clusters_path`) and the --clusters that reads
    it. ``FeatureClusters.load``'s advice, plain ``encode --checkpoint RUN``, encodes the latest: its
    clusters were then noted as another encoder's, with a second command to run. None for the latest, whose
    clusters are the run's own file: that advice is right for it."""
    own = checkpoint_clusters_path(checkpoint_dir, which_epoch)
    if own.name == CLUSTERS_FILE:
        return None
    run_file = own.parent / CLUSTERS_FILE
    what = checkpoint_dir if Path(checkpoint_dir).is_file() else f"{checkpoint_dir} --which_epoch {which_epoch}"
    if own.is_file():   # written for it already (encode --out): only --clusters was missing
        return (f"{run_file} not found, and it would hold the latest checkpoint's clusters anyway; those of "
                f"the encoder of {what} are in {own}: synthesize with --clusters {own}")
    return (f"no clusters for the encoder of {what}: neither {own} (its own file) nor {run_file} (the run's, "
            f"for the latest checkpoint) is there: run `{encode_command(own, checkpoint_dir, which_epoch)}`, "
            f"then synthesize with --clusters {own}; or synthesize with --feature_mode encoded and real photos")


def _class_list(classes: Sequence[int], shown: int = 8) -> str:
    """``classes`` for a note: all of them as ``[0, 7]``, or past ``shown`` the first few and a
    count of the rest (a label_nc of 182 named every class on one line of hundreds of characters)."""
    if len(classes) <= shown:
        return f"class(es) {list(classes)}"
    return f"classes {', '.join(map(str, classes[:shown]))} and {len(classes) - shown} more"


class FeatureSource:
    """The feature channels G reads at synthesis: ``source(label, inst, image, seeds)`` → [N, F, H, W].

    mode ``sample``: a centre sampled per instance; ``cluster``: the centre(s) given by ``cluster``
    (see :func:`sample_features`); ``encoded``: E's encoding of a real photo ``image`` (uint8 or
    [-1, 1] float [N, 3, H, W]).
    """

    def __init__(self, cfg, mode: str = "sample", *, clusters: FeatureClusters | None = None,
                 encoder: torch.nn.Module | None = None, cluster=None, seed: int = 0, fix: str | None = None):
        """``fix``: how to write clusters that fit, in the errors on ``clusters`` of another encoder
        (default: the `encode` that rewrites their file; :func:`recluster_advice`)."""
        if mode not in FEATURE_MODES:
            raise ConfigError(f"--feature_mode {mode!r}; expected one of {FEATURE_MODES}")
        if mode in ("sample", "cluster") and clusters is None:
            raise ConfigError(f"--feature_mode {mode} needs the saved clusters (FeatureClusters.load)")
        if mode == "encoded" and encoder is None:
            raise ConfigError("--feature_mode encoded needs the checkpoint's encoder E")
        self.cluster = parse_cluster_spec(cluster)
        if mode == "cluster" and self.cluster is None:
            raise ConfigError("--feature_mode cluster needs --cluster K (every class) or class=K pairs")
        if clusters is not None and clusters.feat_num != cfg.feat_num:
            raise ConfigError(_feat_num_mismatch(clusters, cfg.feat_num, fix))
        beyond = (sorted(c for c in clusters.centers if c >= cfg.label_nc)
                  if clusters is not None and cfg.label_nc else [])
        if beyond:   # table() would hold a row per class up to the largest
            where = "the clusters" if clusters.path is None else str(clusters.path)
            raise InputError(f"{where} holds centres for class(es) {', '.join(map(str, beyond[:4]))}, but the "
                             f"checkpoint's label_nc is {cfg.label_nc} (classes 0 to {cfg.label_nc - 1}): they "
                             "are another run's. Re-cluster this checkpoint's encoder with "
                             + (fix or f"`{encode_command(clusters.path)}` (it overwrites that file)"))
        if mode == "cluster":
            check_cluster_choice(self.cluster, clusters, cfg.label_nc)
        self.cfg, self.mode, self.clusters, self.encoder, self.seed = cfg, mode, clusters, encoder, seed
        self._warned: set[int] = set()
        # E's decoder must land back on the input size: pad inputs to its multiple too.
        self.multiple = 2 ** cfg.n_downsample_E if mode == "encoded" else 1

    @torch.no_grad()
    def __call__(self, label: torch.Tensor, inst: torch.Tensor | None, image: torch.Tensor | None = None,
                 seeds: Sequence[int] | None = None, return_choices: bool = False):
        """→ feat [N, F, H, W]; with ``return_choices`` (sample/cluster modes) also the clusters
        chosen per sample (see :func:`sample_features`)."""
        regions = label if self.cfg.label_feat or inst is None else inst
        if self.mode == "encoded":
            if image is None:
                raise ConfigError("--feature_mode encoded (--use_encoded_image) needs a real photo per "
                                 "label map: pass --real FOLDER with photos named like the label maps")
            from pix2pixhd.encoding import image_to_float
            self.encoder.to(label.device)
            return self.encoder(image_to_float(image.to(label.device)), regions).float()
        present = set(torch.unique(label).tolist()) - set(self.clusters.centers) - self._warned
        # once per class and process, as batches meet them: a note, not a Python warning with a
        # source line (a job of the engine says every such class once before it starts instead:
        # missing_clusters_note)
        if present:
            self._warned |= present
        if present and os.environ.get("RANK", "0") == "0":   # under torchrun: rank 0 only
            print(f"note: {_class_list(sorted(present))} have no saved clusters"
                  f"{f' in {self.clusters.path}' if self.clusters.path is not None else ''} (no instance of "
                  "them was larger than 1/64 of an image when encoding): their feature channels are 0",
                  file=sys.stderr, flush=True)
        return sample_features(regions, label, self.clusters,
                               seeds=self.seed if seeds is None else seeds,
                               cluster=self.cluster if self.mode == "cluster" else None,
                               return_choices=return_choices)

    def missing_clusters_note(self) -> str | None:
        """The note on every class of the checkpoint (0..label_nc-1) the clusters hold no centres
        for (past 8 of them, the first 8 and a count of the rest: :func:`_class_list`), said once
        before a synthesis job starts (``pix2pixhd.engine``, rank 0). It comes from the clusters
        file, which every rank reads, so it names the classes that only another rank's (or a later
        batch's) maps hold: the per-batch note (``__call__``) named the classes
        met so far, again for each batch that met new ones, and under torchrun rank 0's only. After
        it ``__call__`` notes none of those classes again. None in encoded mode, for photo inputs
        (label_nc 0), or when every class has centres."""
        if self.mode == "encoded" or not self.cfg.label_nc:
            return None
        classes = range(self.cfg.label_nc)
        self._warned |= set(classes)
        missing = [c for c in classes if c not in self.clusters.centers]
        if not missing:
            return None
        where = f" in {self.clusters.path}" if self.clusters.path is not None else ""
        return (f"{_class_list(missing)} of this checkpoint's {self.cfg.label_nc} have no saved clusters{where} (no "
                "instance of them was larger than 1/64 of an image when encoding): wherever the maps hold them, "
                "their feature channels are 0 (the manifest's \"clusters\" gives their instances index -1)")

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, cfg, mode: str = "sample", *,
                        which_epoch: str = "latest", cluster=None, seed: int = 0,
                        device: str | torch.device = "cpu", test_batch_stats: bool = True,
                        clusters: str | Path | None = None) -> "FeatureSource":
        """The features of the run in ``checkpoint_dir`` (``cfg``: its config). Everything is
        checked here, ``--cluster`` against the clusters included, before synthesis writes.
        ``test_batch_stats``: E's BatchNorm statistics in 'encoded' mode (:func:`load_encoder`).
        ``clusters``: a clusters file to read instead of the run's (synthesize.py --clusters; a
        folder: its ``CLUSTERS_FILE``), e.g. one that ``encode --which_epoch N --out FILE`` wrote
        for an epoch's encoder; checked against the encoder as the run's file is (the same notes
        and errors, naming it)."""
        if mode == "encoded":
            if clusters is not None:
                raise ConfigError(f"--clusters {clusters} goes with --feature_mode sample or cluster: encoded "
                                  "features are E's encoding of the real photos, not a clusters file's: drop "
                                  "--clusters")
            e = load_encoder(checkpoint_dir, which_epoch, device, test_batch_stats=test_batch_stats)[0]
            return cls(cfg, mode, encoder=e, seed=seed)
        if clusters is not None:
            return cls._from_file(clusters, checkpoint_dir, cfg, mode, which_epoch=which_epoch, cluster=cluster,
                                  seed=seed)
        chain = feature_chain(checkpoint_dir, cfg)
        # A --load_features stage has no E: the clusters of a stage back to the one whose E made its
        # maps fit (encode --checkpoint on any of them writes them beside that one).
        found = [run / CLUSTERS_FILE for run, _ in chain if (run / CLUSTERS_FILE).is_file()]
        if not found and len(chain) > 1:
            runs = " -> ".join(str(run) for run, _ in chain)
            raise MissingInputError(
                f"no {CLUSTERS_FILE} in any run of {runs} (each read feature maps precomputed by the "
                f"encoder of {chain[-1][0]}, through --load_pretrain): run "
                f"`{encode_command(chain[-1][0] / CLUSTERS_FILE)}` to cluster that encoder's features, or "
                "synthesize with --feature_mode encoded and real photos")
        path = found[0] if found else chain[0][0] / CLUSTERS_FILE
        if not found and (why := _no_clusters_of_checkpoint(checkpoint_dir, which_epoch)):
            raise MissingInputError(why)
        if path.parent != chain[0][0]:
            print(f"note: using the clusters of {path.parent} (this run read precomputed features)")
        return cls._of_file(path, checkpoint_dir, cfg, mode, which_epoch=which_epoch, cluster=cluster, seed=seed)

    @classmethod
    def _from_file(cls, given: str | Path, checkpoint_dir: str | Path, cfg, mode: str, *, which_epoch: str,
                   cluster, seed: int) -> "FeatureSource":
        """from_checkpoint with ``clusters`` given (``given``): that file, checked as the run's."""
        path = Path(given).expanduser()
        if path.is_dir():
            path = path / CLUSTERS_FILE
        if not path.is_file():
            what = "is not a file" if path.exists() else "not found"
            raise MissingInputError(f"--clusters {given}: {path} {what}; write the clusters of this checkpoint's "
                                    f"encoder there with `{encode_command(path, checkpoint_dir, which_epoch)}`, "
                                    f"or leave --clusters out to read the run's {CLUSTERS_FILE}")
        return cls._of_file(path, checkpoint_dir, cfg, mode, which_epoch=which_epoch, cluster=cluster, seed=seed,
                            given=True)

    @classmethod
    def _of_file(cls, path: Path, checkpoint_dir: str | Path, cfg, mode: str, *, which_epoch: str, cluster,
                 seed: int, given: bool = False) -> "FeatureSource":
        """The source of clusters file ``path`` (the run's, or ``given``: synthesize.py --clusters)
        for the encoder of ``checkpoint_dir`` at ``which_epoch``: loaded, the note on clusters of
        another encoder said once (rank 0 under torchrun), and the errors' fix
        (:func:`recluster_advice`) one that writes the clusters of this checkpoint where they
        belong (:func:`checkpoint_clusters_path`), never over the run's file for another one."""
        clusters = FeatureClusters.load(path)
        note = stale_clusters_note(clusters, checkpoint_dir, which_epoch, given=given)
        if note is not None and os.environ.get("RANK", "0") == "0":   # under torchrun: once
            print(f"note: {note}", file=sys.stderr, flush=True)
        # the latest checkpoint reading the run's file: the errors' own fix, the encode that rewrites it
        latest = checkpoint_clusters_path(checkpoint_dir, which_epoch).name == CLUSTERS_FILE
        fix = None if latest and not given else recluster_advice(checkpoint_dir, which_epoch, path, given)
        return cls(cfg, mode, clusters=clusters, cluster=cluster, seed=seed, fix=fix)


def encoder_checkpoint(checkpoint_dir: str | Path, which_epoch: str = "latest") -> tuple[Path, dict]:
    """(file, its contents memory-mapped) of the checkpoint whose E encodes for the run in
    ``checkpoint_dir``: its own, or for a --load_features run, that of the run whose E made its
    maps (as :func:`load_encoder` picks it). Raises as torch.load."""
    from pix2pixhd.checkpoint import peek_checkpoint, checkpoint_path
    run = Path(checkpoint_dir)
    path = run if run.is_file() else checkpoint_path(run, which_epoch)
    ckpt = peek_checkpoint(path)
    if ckpt.get("E") is None:
        chain = feature_chain(checkpoint_dir, which_epoch=which_epoch)
        if len(chain) > 1 and chain[0][1].load_features:
            path = checkpoint_path(chain[-1][0], chain[-2][1].pretrain_epoch or "latest")
            ckpt = peek_checkpoint(path)
    return path, ckpt


def encoder_identity(state: dict) -> str:
    """sha256 of an encoder's state_dict (names, dtypes, shapes and values, in name order): the
    same weights give the same identity, in whichever checkpoint file they are."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(f"{k}\0".encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        else:
            h.update(f"{v!r}\0".encode())
    return h.hexdigest()


def checkpoint_encoder_identity(checkpoint_dir: str | Path, which_epoch: str = "latest") -> dict[str, str]:
    """{"sha256", "checkpoint"}: the identity of the E that encodes for ``checkpoint_dir``
    (:func:`encoder_checkpoint`'s), as ``encode`` records it in the clusters file."""
    path, ckpt = encoder_checkpoint(checkpoint_dir, which_epoch)
    if ckpt.get("E") is None:
        return {}
    return {"sha256": encoder_identity(ckpt["E"]), "checkpoint": os.path.abspath(path)}


def stale_clusters_note(clusters: FeatureClusters, checkpoint_dir: str | Path,
                        which_epoch: str = "latest", *, given: bool = False) -> str | None:
    """Why ``clusters`` may not be the encoder's of ``checkpoint_dir``, naming both encoders'
    steps and the command that re-clusters (:func:`recluster_advice`; ``given``: the clusters
    came from synthesize.py --clusters); None when they are its. A clusters file that records
    its E's identity (:func:`encoder_identity`) is compared by it: E's weights now differ when the
    run trained on after ``encode``, another epoch is used, or the clusters are another run's or
    another stage's, even at the same step. An older file (no identity) is compared by step;
    NVIDIA's clusters (step -1) imported with their run's checkpoint (step 0, ``imported_from``)
    agree. A checkpoint that cannot be read gives None: loading it says why."""
    try:
        path, ckpt = encoder_checkpoint(checkpoint_dir, which_epoch)
        step = int(ckpt["global_step"])
        imported = bool(ckpt.get("imported_from"))
        known = clusters.encoder.get("sha256") and ckpt.get("E") is not None
        same = encoder_identity(ckpt["E"]) == clusters.encoder["sha256"] if known else None
    except Exception:
        return None
    cs = clusters.global_step
    if same or (same is None and (cs == step or (cs == -1 and imported and step == 0))):
        return None
    where = clusters.path if clusters.path is not None else "the clusters"
    if same is not None and not (cs == -1 and imported):
        made = (f"were clustered from the encoder of {clusters.encoder.get('checkpoint', 'another checkpoint')} "
                f"at step {cs}")
    elif cs == -1:
        made = ("were imported from NVIDIA's run (encoded before its import)" if imported else
                "record no encoder step (clustered by an older version, or imported)")
    else:
        made = f"were clustered from the encoder at step {cs}"
    other = ", with other weights" if same is not None else ""
    return (f"{where} {made}, but the encoder is {path}'s, at step {step}{other} (the run trained on after "
            f"encode, or the clusters are another checkpoint's, run's or stage's): its features may not "
            f"match them; re-cluster with {recluster_advice(checkpoint_dir, which_epoch, clusters.path, given)}")


# ---- the runs a run was made from ----------------------------------------------------------------
def previous_stage(run_dir: str | Path, cfg) -> Path | None:
    """The run folder that run ``run_dir`` (config ``cfg``) loaded with --load_pretrain; None if none.

    Configs store it absolute (``TrainConfig.resolved``). An older config.json holds it as typed,
    relative to the folder the run was trained from, which is not recorded; tried in order:

    1. that folder, recovered from the run's own path: ``run_dir`` is ``TRAINED_FROM /
       checkpoints_dir / name`` with the same relative ``checkpoints_dir`` typed then;
    2. the path as given, from the working directory (the command runs where it was trained);
    3. beside ``run_dir``: the stages of a recipe share one --checkpoints_dir (the docs, the scripts).

    The first that holds a run (config.json or a checkpoint) is it; none: an error naming the tries.
    """
    from pix2pixhd.paths import folder_made_from
    from pix2pixhd.run_folder import run_files
    given = cfg.load_pretrain
    if not given:
        return None
    p = Path(given).expanduser()
    run = Path(os.path.abspath(run_dir))
    if p.is_absolute():
        tries = [p, run.parent / p.name]
    else:
        trained_from = folder_made_from(run, Path(cfg.checkpoints_dir) / cfg.name)
        tries = ([trained_from / p] if trained_from is not None else []) + [p, run.parent / p.name]
    for i, t in enumerate(tries):
        if run_files(t):
            if i:   # not the path stored (or where the run was trained): say which was taken
                print(f"note: {run_dir}: load_pretrain {given!r} taken as {t}")
            return t
    seen = ", ".join(dict.fromkeys(str(t) for t in tries))
    raise MissingInputError(
        f"{run_dir}: its config's load_pretrain {given!r} (the run it was started from) is no run "
        f"folder: tried {seen}. Set \"load_pretrain\" in {Path(run_dir) / 'config.json'} to that "
        "run's folder as an absolute path" + ("" if p.is_absolute() else ", or run this command from "
                                              "the folder this run was trained in"))


def feature_chain(checkpoint_dir: str | Path, cfg=None, which_epoch: str = "latest") -> list:
    """[(run folder, its TrainConfig)]: the run in ``checkpoint_dir`` (a folder or a checkpoint
    file; ``cfg``: its config, read when not given), then, while a run read precomputed feature
    maps (``--load_features``: no E of its own), the run it loaded (:func:`previous_stage`). The
    last holds the E that made the maps (unless the chain ends at a --load_features run that
    loaded none). A chain that comes back to a run is refused by name."""
    from pix2pixhd.checkpoint import load_run_config
    run = Path(checkpoint_dir)
    if cfg is None:
        cfg = load_run_config(run, which_epoch)
    run = run.parent if run.is_file() else run
    chain, seen = [(run, cfg)], {os.path.realpath(run)}
    while cfg.use_features and cfg.load_features:
        prev = previous_stage(run, cfg)
        if prev is None:
            break
        if os.path.realpath(prev) in seen:
            loop = " -> ".join(str(r) for r, _ in chain) + f" -> {prev}"
            raise ConfigError(f"the --load_pretrain chain of {chain[0][0]} loops ({loop}): set "
                              f"\"load_pretrain\" in {run / 'config.json'} to the run whose encoder "
                              "made the feature maps")
        # the epoch of the previous stage that this one loaded at its first start
        run, cfg = prev, load_run_config(prev, cfg.pretrain_epoch or "latest")
        seen.add(os.path.realpath(run))
        chain.append((run, cfg))
    return chain


# ---- loading E and the data ----------------------------------------------------------------------
def load_encoder(checkpoint_dir: str | Path, which_epoch: str = "latest",
                 device: str | torch.device = "cpu", *, test_batch_stats: bool = True):
    """(E in eval mode, its TrainConfig, the checkpoint's global_step) from a training run; for a
    --load_features run, from the run whose E made its maps (:func:`feature_chain`).
    ``test_batch_stats``: E's BatchNorm layers (``--norm batch``) normalise each image by its own
    statistics, as the reference's E ran in encode_features.py, precompute_feature_maps.py and
    test.py (never put in eval mode) and as :func:`~pix2pixhd.synthesis.load_generator` runs G;
    False: the running statistics (synthesis's ``--bn_running_stats``)."""
    from pix2pixhd.checkpoint import load_checkpoint, load_run_config
    from pix2pixhd.compat import load_reference_weights
    from pix2pixhd.models import build_encoder
    ckpt = load_checkpoint(checkpoint_dir, which_epoch)
    cfg = load_run_config(checkpoint_dir, which_epoch, checkpoint=ckpt)
    if cfg.use_features and cfg.load_features and ckpt.get("E") is None:
        chain = feature_chain(checkpoint_dir, cfg)
        if len(chain) > 1:
            # The --load_features stage read maps precomputed by the E of a stage it loaded.
            checkpoint_dir, cfg = chain[-1]
            which_epoch = chain[-2][1].pretrain_epoch or "latest"   # the epoch of it the next stage loaded
            ckpt = load_checkpoint(checkpoint_dir, which_epoch)
            cfg = load_run_config(checkpoint_dir, which_epoch, checkpoint=ckpt)
    if not cfg.use_features:
        raise ConfigError(f"{checkpoint_dir}: this run has no feature encoder (it was trained without "
                         "--instance_feat / --label_feat); use the checkpoint of a run trained with one")
    if ckpt.get("E") is None:
        if cfg.load_features:   # the chain ends at a --load_features run that loaded no run's E
            raise ConfigError(f"{checkpoint_dir}: this run trained on precomputed feature maps (--load_features), "
                              "has no encoder of its own and loaded no run that has one (--load_pretrain); use "
                              "the checkpoint of the run whose encoder made the maps")
        from pix2pixhd.checkpoint import CheckpointError, _which_epochs, checkpoint_path
        file = Path(checkpoint_dir)
        file = file if file.is_file() else checkpoint_path(file, which_epoch)
        others = _which_epochs(file.parent, but=file)
        flags = " / ".join(f"--{k}" for k in ("instance_feat", "label_feat") if getattr(cfg, k))
        raise CheckpointError(f"{file} is incomplete: it holds no encoder E although its config trains one "
                              f"({flags}); " + (f"pass {others} (another checkpoint of this run), or " if others
                                               else "") + "resume the run (train_hd.py --resume) for another "
                              "epoch, whose checkpoint holds E")
    from dataclasses import replace
    e = build_encoder(replace(cfg, load_features=False))
    load_reference_weights(e, ckpt["E"])
    from pix2pixhd.pix2pix_networks import use_test_statistics
    e = e.to(device).eval().requires_grad_(False)
    use_test_statistics(e, test_batch_stats)   # survives encode_features' .eval()
    return e, cfg, int(ckpt.get("global_step", -1))


# Whole images for precomputed maps: a crop would not line up with the next stage's own crop.
_NO_CROP = {"scale_width_and_crop": "scale_width", "crop": "none", "resize_and_crop": "none"}


def _dataset(cfg, dataroot: str, phase: str, how_many: int, *, whole: bool = False):
    """The run's dataset in file order, unflipped (the reference's serial_batches, no_flip)."""
    from pix2pixhd import data
    if not dataroot and cfg.dataroot and not Path(cfg.dataroot).expanduser().exists():
        # the run's recorded path (relative in an older or imported config.json): not a folder to
        # generate data into, as the data module's message for a missing --dataroot would suggest
        raise MissingInputError(
            f"{cfg.dataroot}: the dataroot the run's config.json records does not exist (from {os.getcwd()}); "
            "pass --dataroot with the folder of the data the run was trained on")
    resize_or_crop = _NO_CROP.get(cfg.resize_or_crop, cfg.resize_or_crop) if whole else cfg.resize_or_crop
    from pix2pixhd.data.dataset import DatasetError
    try:
        ds = data.create_dataset(dataroot or cfg.dataroot, phase, cfg.data_config(
            no_instance=cfg.label_feat, load_features=False, resize_or_crop=resize_or_crop, no_flip=True,
            validate="headers",
            # E's decoder must land back on the input size: its multiple as well as G's
            required_multiple=max(cfg.required_multiple, 2 ** cfg.n_downsample_E)),
            fixed_label_nc=True)   # no note whose fix is another --label_nc: the run's is fixed
    except DatasetError as e:
        raise DatasetError(_run_label_nc_wording(str(e)), e.problems) from None
    if how_many:
        ds.records = ds.records[:how_many]
    return ds


_SET_LABEL_NC = re.compile(r"says label_nc=(\d+) but --label_nc (\d+) was given; pass --label_nc \d+")
# the photo layouts' refusal of a label_nc > 0, whose fix (--label_nc 0 ...) is training's
_PHOTOS_NEED_LABEL_NC_0 = re.compile(r"holds (unpaired images|RGB pairs) \(([^)]*)\)(?:, read as images)?: "
                                     r"set .*got label_nc=(\d+)[^)]*\)$")


def _run_label_nc_wording(text: str) -> str:
    """The data module's message (worded for training, which can set label_nc) for encode and
    precompute, which read data with the run's label_nc: the fix is data with the run's classes
    (label maps, for a run trained on them, where the data module's fix for photos is --label_nc 0)."""
    text = _PHOTOS_NEED_LABEL_NC_0.sub(
        lambda m: (f"holds {m.group(1)} ({m.group(2)}), photos, but this run was trained on label maps "
                   f"(label_nc {m.group(3)}) and encode and precompute read data with the run's classes: "
                   f"pass the --dataroot of a dataset of its label maps, such as the one it was trained on")
        if m.group(3) != "0" else m.group(0), text)
    return _SET_LABEL_NC.sub(
        lambda m: (f"says label_nc={m.group(1)} but this run was trained with label_nc={m.group(2)} "
                   f"(encode and precompute read data with the run's classes): pass the --dataroot of "
                   f"a dataset with the run's {m.group(2)} classes, such as the one it was trained on"), text)


def _batches(ds, num_workers: int, start: int = 0):
    """The dataset's samples from index ``start`` on, one at a time, in file order (each keeps its
    index, so a resumed run reads them as an uninterrupted one would); :func:`_grouped` stacks them
    into batches. Decoding runs in ``num_workers`` processes, which ignore
    SIGTERM and SIGINT (``create_dataloader(ignore_stops=True)``, as training's and synthesis's): a
    signal to the whole process group (GNU timeout, scancel, Ctrl-C) killed them, and the command
    failed on torch's "DataLoader worker (pid N) is killed by signal: Terminated", which reads as
    an out-of-memory kill, instead of stopping. End them with :func:`_end_workers` on every way out."""
    from pix2pixhd.data import create_dataloader
    return create_dataloader(ds, None, shuffle=False, num_workers=num_workers, ignore_stops=True,
                             sampler=[(i, 0) for i in range(start, len(ds))])


def _grouped(samples: Iterable[dict], batch_size: int) -> Iterable[dict]:
    """Consecutive ``samples`` (unbatched dicts) stacked into batches of up to ``batch_size``, in
    order; a sample of another size than the batch in hand starts a new one (a dataset of mixed
    sizes under ``--resize_or_crop none`` is encoded, in smaller batches, where stacking would
    fail). Non-tensor entries become lists, as the loader's collate makes them."""
    held: list[dict] = []

    def stacked(group):
        return {k: torch.stack([g[k] for g in group]) if isinstance(group[0][k], torch.Tensor)
                else [g[k] for g in group] for k in group[0]}

    def shapes(sample):
        return {k: tuple(v.shape) for k, v in sample.items() if isinstance(v, torch.Tensor)}

    for sample in samples:
        if held and shapes(sample) != shapes(held[0]):
            yield stacked(held)
            held = []
        held.append(sample)
        if len(held) >= batch_size:   # at once: no sample fetched ahead of a full batch
            yield stacked(held)
            held = []
    if held:
        yield stacked(held)


# ---- resuming ------------------------------------------------------------------------------------
PROGRESS_EVERY = 100   # least images between two progress saves (--progress_every)
PROGRESS_SPACING = 20  # ...and at least done // PROGRESS_SPACING: saves grow like log N, not N
_PROGRESS_VERSION = 4  # 4: the inputs digest covers the images done (2: every input), each file stamped
                       # with its ctime too (3, unreleased, was without: refused), a sha256 over each
                       # record's stamp's sha256 (_PrefixDigest); 2: a digest of the done
                       # images' names (1 listed them)


def _progress_due(done: int, last: int, progress_every: int) -> bool:
    """Whether a run at ``done`` images, whose progress file records ``last``, saves it again: every
    ``progress_every`` images at first, then every ``done // PROGRESS_SPACING`` (5% more), so that
    the saves of N images are about log N, not N / progress_every. Each save rewrites the features
    so far whole: evenly spaced saves wrote about N² / (2 progress_every) images' features in all,
    these about 20 N. ``progress_every`` 0: never, so that no progress file is written (one already
    there is still resumed from: :func:`_load_progress` reads it whatever ``progress_every``)."""
    return bool(progress_every) and done - last >= max(progress_every, done // PROGRESS_SPACING)


def _record_stamp(rec: dict, ctime: bool = True) -> bytes:
    """One record's part of the inputs digest (:class:`_PrefixDigest`, :func:`_inputs_digest`): its
    files with their sizes, modification times and, with ``ctime``, change times. A rewrite that
    keeps the size and sets the mtime back (``cp -p``, ``rsync -a``, ``touch -r``) changed neither
    of the first two, so a rerun resumed with the old content's features or maps; no tool sets a ctime back (the validation stamp holds it for the
    same reason: pix2pixhd/data/dataset.py's ``_listing_fingerprint``). A change of the file's
    metadata alone (chmod, chown) moves it too: the rerun starts over, the safe side. ``ctime``
    False: a format-2 progress file's stamp, without."""
    lines = []
    for k in sorted(rec):
        v = rec[k]
        if isinstance(v, (str, Path)):
            try:
                st = os.stat(v)
                stamp = f"{st.st_size}:{st.st_mtime_ns}" + (f":{st.st_ctime_ns}" if ctime else "")
            except OSError:
                stamp = "-"
            lines.append(f"{k}={os.path.abspath(v)}:{stamp}\n")
    return "".join(lines).encode() + b"\n"


def _inputs_digest(records, ctime: bool = True) -> str:
    """sha256 of ``records`` (the dataset's inputs) in order, over each record's whole stamp
    (:func:`_record_stamp`): a format-2 progress file's digest (of every input, ``ctime`` False).
    Format 4 keeps :class:`_PrefixDigest`'s, of the images it counts done only, so that a rerun
    with more inputs (a larger --how_many, or 0) whose first ones are those continues from it."""
    h = hashlib.sha256()
    for rec in records:
        h.update(_record_stamp(rec, ctime))
    return h.hexdigest()


class _PrefixDigest:
    """The inputs digest of the first n of ``records`` for a growing n (format 4's): the sha256 over
    the records' own sha256 digests (of their :func:`_record_stamp`), in order, so another input
    set, another order or a rewritten file is another digest. The first ``stamped`` records (the
    run's: default all) are stamped here, when the run starts, before E reads them, and each
    stamp's 32-byte digest kept, not the stamp (a few hundred bytes of paths a record: 100,000
    records of 3 files kept 45 MiB): a save hashes those, not the files as they are then, so that
    a photo rewritten after E read it (and before the save) leaves the old stamp beside its
    features, and a rerun sees the rewrite and starts over (stamped at the save, the new stamp sat
    beside the old content's features, and the rerun resumed from them). Each save advances one
    running hash over the digests since the last (a save at every 5% rehashing the images done
    hashed N log N stamps); a digest of fewer records than the last one rehashes the stored
    digests. Records past ``stamped`` (a progress file counting more images than this run has,
    checked once, at the start) are stamped when first asked for. (Format 2's digest, of every
    input's whole stamp without ctimes, is :func:`_inputs_digest`'s.)"""

    def __init__(self, records, stamped: int | None = None):
        self.records, self.n, self.h = records, 0, hashlib.sha256()
        k = len(records) if stamped is None else min(stamped, len(records))
        self.stamps = [hashlib.sha256(_record_stamp(records[i])).digest() for i in range(k)]

    def _stamp(self, i: int) -> bytes:
        """Record ``i``'s stamp's sha256 digest (32 bytes)."""
        while len(self.stamps) <= i:   # past this run's records: stamped now
            self.stamps.append(hashlib.sha256(_record_stamp(self.records[len(self.stamps)])).digest())
        return self.stamps[i]

    def upto(self, n: int) -> str:
        if n < self.n:
            h = hashlib.sha256()
            for i in range(n):
                h.update(self._stamp(i))
            return h.hexdigest()
        while self.n < n:
            self.h.update(self._stamp(self.n))
            self.n += 1
        return self.h.hexdigest()   # (hexdigest leaves the running hash as it was)


def _limited(ds, how_many: int):
    """The dataset's records, all of them, after ``ds`` is cut to its first ``how_many`` (0: all):
    a progress file of more images than ``how_many`` is checked against the records it counts."""
    records = ds.records
    if how_many:
        ds.records = records[:how_many]
    return records


def _record_name(rec: dict) -> str:
    v = rec.get("label", rec.get("path", rec))
    return os.path.abspath(v) if isinstance(v, (str, Path)) else str(v)


def _names_digest(records) -> str:
    """sha256 of ``records``' names in order: what a progress file keeps of the images done, a
    fixed 64 characters where the names themselves grew with every image."""
    h = hashlib.sha256()
    for rec in records:
        h.update(_record_name(rec).encode() + b"\n")
    return h.hexdigest()


# what a progress file's key differing from the run's means, in words: a key not named here is an
# option, named with its values ("--upsample 4 then, 2 now")
_KEY_WORDS = {"inputs": "records other inputs (among the images it counts done, a file added, removed or "
                        "rewritten since)",
              "encoder": "is another encoder's (the checkpoint changed)",
              "command": "is another command's"}
_KEY_OPTIONS = {"phase": "--phase", "upsample": "--upsample", "out": "--out_dir",
                "label_feat": "the run's label_feat"}


def _why_other(saved: dict, key: dict) -> str:
    """Why a progress file of key ``saved`` is not this run's (``key``), per key in words."""
    other = [k for k in key if saved.get(k) != key[k]]
    words = [_KEY_WORDS[k] for k in other if k in _KEY_WORDS]
    opts = [f"{_KEY_OPTIONS.get(k, k)} {saved.get(k, 'unset')} then, {key[k]} now"
            for k in other if k not in _KEY_WORDS]
    if opts:
        words.append(f"was written with other options ({'; '.join(opts)})")
    return " and ".join(words)


def _why_unreadable(path: Path, e: Exception) -> str:
    """One short reason why ``torch.load`` failed on ``path``, not torch's paragraph."""
    from pix2pixhd.checkpoint import one_line
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as oe:
        return one_line(oe)
    if not head:
        return "empty"
    if head != b"PK\x03\x04" and head[:1] != b"\x80":   # neither torch's zip nor its legacy pickle
        return "not a PyTorch file"
    if "Weights only load failed" in str(e):
        return "it holds objects other than tensors"
    if "zip archive" in str(e):
        return "cut short"
    return one_line(e)


def _load_progress(path: Path, key: dict, ds, command: str, digest: _PrefixDigest, *,
                   per_image: bool = False) -> tuple[int, dict]:
    """(images already done, the progress file's dict) from ``path``, written by an earlier run of
    the same ``command`` with the same encoder and options (``key``, without ``inputs``) whose
    images done are the first of this run's inputs (``digest``: over all the dataset's records,
    also those past --how_many: :func:`_limited`); (0, {}) when there is none, or, with one note on
    stderr saying why, when it cannot be read or records another run (what differs, in words; the
    run then starts over and overwrites it, or, with ``progress_every`` 0, writes none and removes it
    when it finishes). A file of format 2 (released) is still read, its digest being of all the
    inputs stamped without ctimes; any other format than that and this version's is refused.

    The inputs compared are the first ``count`` only, so a rerun with a larger --how_many (or 0)
    continues. One that counts more images done than this run's ``ds`` holds (a smaller
    --how_many) → that count, with a note, and the caller keeps the file as it is, for a rerun with
    more (it writes no progress of its own, nor removes the file): ``per_image`` (precompute, one
    map per image) has the caller's images all done; otherwise (encode, whose features are pooled
    per class with no image boundaries: the first images' cannot be taken apart from the others')
    the run starts over without it. Destroying such a file lost the larger run's images."""
    if not path.exists():
        return 0, {}
    why = None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or "version" not in d:
            why = "cannot be read as a progress file (damaged: not the dict a progress file holds)"
        elif d.get("version") not in (2, _PROGRESS_VERSION):
            why = (f"cannot be read as a progress file (format {d.get('version')}, another pix2pixhd "
                   f"version's; this one writes {_PROGRESS_VERSION})")
        elif not isinstance(d.get("count"), int) or not isinstance(d.get("names"), str) or d["count"] < 0:
            why = "cannot be read as a progress file (damaged: no count of the images done)"
    except Exception as e:
        why, d = f"cannot be read as a progress file (damaged: {_why_unreadable(path, e)})", None
    if why is None:
        n, records = d["count"], digest.records
        if d["version"] == 2:   # an earlier version's: its digest is of all the inputs of its run, no ctimes
            inputs = _inputs_digest(ds.records, ctime=False)
        else:
            inputs = digest.upto(n) if n <= len(records) else "(more images done than these inputs)"
        saved = d.get("key") if isinstance(d.get("key"), dict) else {}
        want = {**key, "inputs": inputs}
        if saved != want:
            why = _why_other(saved, want)
        elif d["names"] != _names_digest(records[:n]):
            why = "records other images done than the first of these inputs"
    if why is not None:
        print(f"note: {path} {why}: ignored, {command} starts over", file=sys.stderr, flush=True)
        return 0, {}
    n = d["count"]
    if n > len(ds.records) and not per_image:
        print(f"note: {path} holds the features of {n} image(s), more than this run's {len(ds.records)} "
              f"(--how_many {len(ds.records)}), pooled per class: the first {len(ds.records)} images' cannot be "
              f"taken apart from them: not used ({command} starts over), but kept for a rerun with more; this "
              "run keeps no progress of its own", file=sys.stderr, flush=True)
    elif n > len(ds.records):
        print(f"note: {path} counts {n} image(s) done, more than this run's {len(ds.records)} (--how_many "
              f"{len(ds.records)}): those are all done already; the file is kept for a rerun with more",
              file=sys.stderr, flush=True)
    else:
        print(f"note: resuming from {path}: {n} of {len(ds.records)} image(s) already done, not redone",
              file=sys.stderr, flush=True)
    return n, d


def _save_progress(path: Path, key: dict, ds, done: int, **payload) -> None:
    """The progress after the first ``done`` images, written whole (a temporary file, renamed), with
    SIGTERM and SIGINT held meanwhile: their count and their names' digest (:func:`_names_digest`),
    not the names, which made each save grow with the images done. ``key["inputs"]`` is the digest
    of those images' inputs (:class:`_PrefixDigest`). ``payload``: entries beside them, which
    :func:`_load_progress` does not compare (encode's ``features``; precompute's ``asked``, the images
    its run was asked for, which files of older versions lack)."""
    from pix2pixhd.checkpoint import atomic_torch_save
    with _stops_held():
        atomic_torch_save({"version": _PROGRESS_VERSION, "key": key, "count": done,
                           "names": _names_digest(ds.records[:done]), **payload}, path)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _held_fetches(loader):
    """``loader``'s batches, each fetched with SIGTERM and SIGINT held (:func:`_stops_held`): a
    stop raised in the middle of a fetch cut the hand-over of the batch's shared memory, and the
    worker serving it printed the broken connection's traceback under the stop's line. The stop
    is raised between two fetches instead."""
    it = None
    while True:
        with _stops_held():
            it = iter(loader) if it is None else it
            try:
                batch = next(it)
            except StopIteration:
                return
        yield batch


def _end_workers(loader) -> None:
    """``shutdown_workers(loader)`` (workers that ignore SIGTERM, left to interpreter exit, would
    hang it), with SIGTERM and SIGINT held meanwhile (:func:`_stops_held`): a stop raised in the
    middle of it would leave workers running."""
    from pix2pixhd.data.loader import shutdown_workers
    with _stops_held():
        shutdown_workers(loader)


@contextlib.contextmanager
def _stops_held():
    """SIGTERM and SIGINT held for the block (main thread only), so that what it does is done
    whole or not at all; the first that arrived is raised again when it ends, for the handler
    then in place (main's stop, or the signal's default). One ignored on entry stays ignored."""
    from pix2pixhd.errors import hold_stop_signals, restore_signal_handlers
    held, previous = hold_stop_signals()
    try:
        yield
    finally:
        restore_signal_handlers(previous)
    if held:
        signal.raise_signal(held[0])


def _kept_at_stop(keep, what: str, saved=lambda: False) -> str:
    """``keep()``, the progress save of encode or precompute, run at a stop: "" once it is saved,
    or " (WHAT failed: reason)" for the stop's line. A full disk or a removed folder must not turn
    the stop into an error or a traceback (the stop's line and status would be lost): the line then
    says what the progress file still holds. The save goes through ``checkpoint._atomic_write``,
    which raises a file system's error as a CheckpointError (a UserError) naming the file, its
    cause the OSError: the reason is that cause, in one line. ``saved()`` True after such an error:
    the file was renamed into place and holds every image done, only its folder's sync failed
    (the CheckpointError "was written, but its folder could not be synced"; ``keep`` has moved its
    count on, seeing the file's new inode): " (saved, but its folder could not be synced: reason)"."""
    from pix2pixhd.errors import UserError
    try:
        keep()
    except (OSError, UserError) as e:
        from pix2pixhd.checkpoint import one_line
        cause = e.__cause__ if isinstance(e, UserError) and isinstance(e.__cause__, OSError) else e
        if saved():
            return f" (saved, but its folder could not be synced: {one_line(cause)})"
        return f" ({what} failed: {one_line(cause)})"
    return ""


class _Stopped(BaseException):
    """SIGTERM or SIGINT during a command of :func:`main`, raised by its handler wherever the main
    thread was (a BaseException, as KeyboardInterrupt, so that no ``except Exception`` takes it).
    ``what``: what the command had written, for main's line, set by the command that met it
    (None: nothing)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.what = signum, None


def _file_id(path: Path) -> tuple | None:
    """(inode, mtime) of ``path``, None when there is none: a rename over it changes the inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def encode_and_cluster(checkpoint_dir: str | Path, *, which_epoch: str = "latest", dataroot: str = "",
                       phase: str = "train", n_clusters: int | None = None, how_many: int = 0,
                       device: str | torch.device = "cpu", batches: Iterable[dict] | None = None,
                       out: str | Path | None = None, batch_size: int = 4,
                       progress_every: int = PROGRESS_EVERY) -> tuple[Path, FeatureClusters]:
    """The ``encode`` command: E over the dataset, k-means per class, clusters saved beside the
    checkpoint (``checkpoint_dir`` may be a checkpoint file: its folder). ``batches`` replaces the
    run's dataset (tests, custom data), encoded as they come: no progress file is read or written
    for them (an iterable has no identity a rerun could be checked against), so a stopped call
    starts over. The options and the output path are checked first.

    E encodes ``batch_size`` images at a time (the rows are those of one at a time: see
    :func:`encode_features`). Every ``progress_every`` images, or every 5% of those done once that
    is more (:func:`_progress_due`; 0: no progress file is written, though one already there is
    still resumed from and removed at the end), the features so far and the count and digest of the
    images done are written to ``.features_clustered.pt.progress`` beside the output, whole; so are
    those of every image encoded when main's stop (SIGTERM, SIGINT: :class:`_Stopped`) comes, with
    the stops held meanwhile, so that a stop loses no image encoded; a kill (``kill -9``, the
    machine going down) loses those since the last save. A rerun after a stop or a kill continues
    from there (the same encoder and options, and inputs whose first ones are the images done: a
    larger ``how_many`` continues too; otherwise it says so and starts over) and gives the clusters
    of an uninterrupted run. A smaller ``how_many`` than the images done starts over, with a note:
    the features kept are pooled per class, and the first images' cannot be taken apart from the
    others'; that file is left as it is, for a rerun with more (this run saves no progress of its
    own). Otherwise the file is removed once the clusters are written."""
    if n_clusters is not None and n_clusters < 0:
        raise ConfigError(f"--n_clusters {n_clusters}: need at least 1 cluster per class (0 or none: the "
                          "run's --n_clusters)")
    _check_how_many(how_many)
    _check_batching(batch_size, progress_every)
    run = Path(checkpoint_dir)
    dst = Path(out) if out else (run.parent if run.is_file() else run) / CLUSTERS_FILE
    _check_clusters_out(dst, run, which_epoch)
    before = _file_id(dst)
    progress, ds, done, last = progress_path(dst), None, 0, 0
    kept, saves = False, 0   # kept: a larger run's progress file (a smaller how_many), left as it is
    # the images done that _load_progress found in the progress file there, once it has returned (0:
    # none of use here); None before: the file may be another run's, a format-3 one or damaged, and a
    # stop's line only says that a rerun reads it
    loaded = None
    try:
        e, cfg, step = load_encoder(checkpoint_dir, which_epoch, device)
        identity = checkpoint_encoder_identity(checkpoint_dir, which_epoch)
        if not out:   # the run's own file, which the latest checkpoint's readers take as theirs
            note = _replacing_note(dst, identity, step, checkpoint_dir, which_epoch)
            if note is not None:
                print(f"note: {note}", file=sys.stderr, flush=True)
        n_clusters = n_clusters or cfg.n_clusters
        if n_clusters < 1:
            raise ConfigError(f"{run}: its n_clusters is {n_clusters}: give --n_clusters N (N >= 1)")
        if batches is not None:
            raw = encode_features(e, batches, label_feat=cfg.label_feat, device=device)
        else:
            ds = _dataset(cfg, dataroot, phase, 0)
            records = _limited(ds, how_many)
            digest = _PrefixDigest(records, len(ds.records))   # the run's inputs stamped now, before E reads them
            key = {"command": "encode", "encoder": identity.get("sha256", ""),
                   "label_feat": str(bool(cfg.label_feat)), "phase": phase}
            # read also with progress_every 0, which only writes none
            loaded, d = _load_progress(progress, key, ds, "encode", digest)
            with _stops_held():   # a stop from here on keeps the features loaded and those encoded
                kept = loaded > len(ds)   # a larger run's: not of use here, kept for it (_load_progress said so)
                saves = 0 if kept else progress_every
                parts = {} if kept else {int(k): [v] for k, v in (d.get("features") or {}).items()}
                done = last = 0 if kept else loaded

            def keep() -> None:
                """The features of the ``done`` images so far into the progress file, whole, and
                ``last`` with it (a stop meanwhile is raised once both are); ``last`` also when the
                file was renamed into place but its folder's sync failed (the error raised after):
                the file holds them."""
                nonlocal parts, last
                with _stops_held():
                    parts = {k: [torch.cat(v)] for k, v in parts.items()}
                    was = _file_id(progress)
                    try:
                        _save_progress(progress, {**key, "inputs": digest.upto(done)}, ds, done,
                                       features={k: v[0] for k, v in parts.items()})
                    finally:   # renamed into place (a new inode), even if its folder's sync then failed
                        if _file_id(progress) != was:
                            last = done
            loader = _batches(ds, cfg.nThreads, start=done)
            e = e.to(device).eval()
            try:
                for batch in _grouped(_held_fetches(loader), batch_size):
                    got = _batch_rows(e, batch, cfg.label_feat, torch.device(device))
                    with _stops_held():   # a batch's rows and its count together: a stop keeps both or neither
                        for cls, rows in got.items():
                            parts.setdefault(cls, []).append(rows)
                        done += len(batch["label"])
                    if _progress_due(done, last, saves) and done < len(ds):
                        keep()
            finally:
                _end_workers(loader)
            raw = _joined(parts)
        centers = cluster_features(raw, n_clusters)
        counts = {k: int((v[:, -1] > MIN_AREA).sum()) for k, v in raw.items()}
        fc = FeatureClusters({k: torch.from_numpy(v) for k, v in centers.items()}, cfg.feat_num,
                             n_clusters, step, counts, encoder=identity)
        path = fc.save(dst, raw)   # whole or not at all (a temporary file, renamed)
        if batches is None and not kept:
            progress.unlink(missing_ok=True)
    except _Stopped as stop:
        if _file_id(dst) != before:
            if batches is None and not kept:   # stopped before it was removed: it would make a rerun encode again
                with _stops_held():
                    progress.unlink(missing_ok=True)
            stop.what = f"{dst} was written, whole, before the stop"
            raise
        if loaded is not None and not done:
            # the file judged, no image done yet (perhaps stopped between _load_progress's return and the
            # block above that takes the file in): as that block sets them, the file a larger run's, kept,
            # or holding the ``loaded`` images a rerun continues from
            kept = loaded > len(ds)
            last = 0 if kept else loaded
        failed = ""
        if ds is not None and saves and done > last:   # the images encoded since the last save
            failed = _kept_at_stop(keep, f"keeping the features of all {done} encoded", lambda: last == done)
        if last:
            stop.what = (f"nothing written to {dst} (written whole at encode's end); the features of {last} "
                         f"image(s) are kept in {progress}{failed}: rerun the same command to continue from there")
        else:
            # stopped before the progress file there was judged (loading E, the dataset, stamping the
            # inputs, reading the file): a rerun reads it, and continues from it only if it is this
            # run's (it may be another encoder's, a format-3 or a damaged one: no promise)
            # (once judged, a file of use here was loaded: ``last`` above; any other starts over)
            if batches is None and loaded is None and progress.exists():
                rerun = f"it reads {progress} and continues from it if it is this run's"
            else:
                rerun = "encode starts over"
            stop.what = (f"nothing written ({dst} is written whole at encode's end; "
                         f"{'the one there is as it was' if before else 'it was not created'}){failed}; rerun "
                         f"the same command ({rerun})"
                         + (f"; {progress}, a larger run's, is kept as it was" if kept else ""))
        raise
    return path, fc


def _replacing_note(dst: Path, identity: dict[str, str], step: int, checkpoint_dir: str | Path,
                    which_epoch: str) -> str | None:
    """What ``encode`` without --out says before E runs when the run's clusters file ``dst`` it
    replaces holds the clusters of another checkpoint than the one it encodes (``identity``,
    :func:`checkpoint_encoder_identity`, at ``step``): the checkpoint they came from (the file
    records it: :meth:`FeatureClusters.save`'s ``encoder``), what reads them, and ``--out`` for
    next time. ``encode --which_epoch N`` (or ``--checkpoint RUN/epoch_NNNN.pt``) silently put
    epoch N's clusters where synthesis without --clusters and the later stages read the latest's.
    None when the checkpoint encoded is the run's latest (its clusters belong in that file: the
    run trained on since, or was moved, or the note's own advice is being followed), when ``dst``
    holds this encoder's clusters, or those of the same checkpoint file, records no checkpoint (an
    older version's), or is missing or unreadable (a damaged one is rewritten)."""
    try:
        held = FeatureClusters.load(dst) if dst.is_file() else None
    except Exception:   # damaged: encode rewrites it, as it always did
        held = None
    was = held.encoder.get("checkpoint") if held is not None else None
    if not was or not identity.get("sha256") or held.encoder.get("sha256") == identity["sha256"] \
            or os.path.abspath(was) == identity.get("checkpoint"):
        return None
    own = checkpoint_clusters_path(checkpoint_dir, which_epoch)
    if own.name == CLUSTERS_FILE:   # the latest checkpoint's, where they belong: nothing to warn of
        return None
    said = (f"{dst} holds the clusters of the encoder of {was} (step {held.global_step}), which synthesis "
            f"without --clusters and the run's later stages read; this encode replaces them with those of "
            f"{identity.get('checkpoint')} (step {step}) when it ends")
    again = encode_command(own, checkpoint_dir, which_epoch)
    return (said + " (stop it before then to keep them: nothing is written until the end); next time, write "
            f"this checkpoint's clusters in a file of their own with `{again}` "
            f"and synthesize with --clusters {own}; `{encode_command(dst)}` writes the latest checkpoint's again")


def _check_batching(batch_size: int, progress_every: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"--batch_size {batch_size}: expected 1 or more images per batch of E (default 4)")
    if progress_every < 0:
        raise ConfigError(f"--progress_every {progress_every}: expected 0 (no progress file written) or a number "
                          f"of images (default {PROGRESS_EVERY})")


def _check_clusters_out(dst: Path, run: Path, which_epoch: str) -> None:
    """Refuse, before E runs, an ``--out`` that cannot be written or would destroy a file: a folder,
    the checkpoint read, or an existing file that is not a clusters file (``paths.check_output_file``)."""
    from pix2pixhd.checkpoint import checkpoint_path
    from pix2pixhd.paths import check_output_file
    try:
        read = run if run.is_file() else checkpoint_path(run, which_epoch)
    except ConfigError:   # a bad --which_epoch: load_encoder says so
        read = None
    check_output_file(dst, "--out", kind="a clusters file", default_name=CLUSTERS_FILE,
                      inputs=[("the checkpoint", read)], why_not_kind=_why_not_clusters)


def _why_not_clusters(path: Path) -> str | None:
    """None when ``path`` is a clusters file (or a damaged PyTorch file, e.g. one cut short, which
    encode may rewrite); else what it is instead."""
    try:
        try:
            d = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:   # the legacy (non-zip) format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04" and head[:1] != b"\x80":   # neither torch's zip nor its legacy pickle
            return "not a PyTorch file"
        if "Weights only load failed" in str(e):
            return "a PyTorch file holding objects other than tensors"
        return None
    if isinstance(d, dict) and all(k in d for k in ("centers", "feat_num", "n_clusters")):
        return None
    if isinstance(d, dict) and ("G" in d or "global_step" in d):
        return f"a training checkpoint: {', '.join(map(str, list(d)[:4]))}, ..."
    what = f"keys {', '.join(map(str, list(d)[:4]))}" if isinstance(d, dict) and d else f"a {type(d).__name__}"
    return f"a PyTorch file holding {what}, not the clusters encode writes"


def _check_how_many(how_many: int) -> None:
    if how_many < 0:
        raise ConfigError(f"--how_many {how_many}: expected 0 (every image) or a number of images")


@torch.no_grad()
def precompute_feature_maps(checkpoint_dir: str | Path, *, which_epoch: str = "latest",
                            dataroot: str = "", phase: str = "train", upsample: int = 2,
                            out_dir: str | Path | None = None, how_many: int = 0,
                            device: str | torch.device = "cpu", batch_size: int = 4,
                            progress_every: int = PROGRESS_EVERY) -> "FeatureMaps":
    """E's maps of every training image, upsampled ×``upsample`` (nearest) → uint8 RGB PNGs in
    ``DATAROOT/{phase}_feat/<label stem>.png``, which ``--load_features`` reads at the next stage.

    As the reference does it: E runs at the resolution it was trained at (the global stage's), and
    the 2048×1024 stage reads the ×2 maps. Values [-1, 1] are stored as (v + 1) · 127.5.

    E encodes ``batch_size`` images at a time (consecutive images of one size, BatchNorm per image:
    each map is the image's own, its floats equal to batch 1's within float32 rounding, so a value
    that falls on a half level can round to the neighbouring uint8 level: docs/features.md); the
    maps of a batch are then written one by one, each whole, so that a stop between two of them
    leaves whole maps and the progress file counts only maps written. Every ``progress_every``
    images, or every 5% of those done once that is more (:func:`_progress_due`), the count of the
    maps written so far is recorded in ``.{out folder}.progress`` beside the folder (whole: a
    temporary file, renamed), with ``asked``, the number of images the run was asked for (by which
    the data module's note on missing maps tells a finished ``how_many`` run from an interrupted
    one), and at main's stop (SIGTERM, SIGINT: :class:`_Stopped`), with the stops held meanwhile, so
    that a stop loses no map written; a kill (``kill -9``) loses those since the last save. A rerun
    after a stop or a kill writes only the others (the same encoder and options, and inputs whose
    first ones are the images done: a larger ``how_many`` continues too; otherwise it says so and
    starts over). The file is removed once every map of the split is written. A run that ends
    (finished, or stopped after its last map) with maps of the split left, a ``how_many`` below its
    size, records the maps written, so that a later run with a larger ``how_many`` (or 0) continues
    after them; no run that continues from the file lowers its count: a ``how_many`` no larger than
    the maps it counts has them all, writes nothing and keeps the file as it is, for a rerun with more.
    ``progress_every`` 0 writes no progress file: one already there is still resumed from, and is
    removed once every map of the split is written, or when the run ends if it did not continue
    from it (its maps were rewritten); a ``how_many`` run then records nothing of its own, and a
    larger run writes its maps again. A ``how_many`` below the split's size says, in one note, that
    a ``--load_features`` run needs the map of every image.

    Returns the paths of the maps of this run's images, in file order (:class:`FeatureMaps`: a list,
    with ``new``, how many of them this run wrote, the others being there already from the run it
    resumed, and ``folder``).
    """
    from PIL import Image

    from pix2pixhd.data.layouts import stem_key
    from pix2pixhd.encoding import float_to_uint8, image_to_float
    _check_how_many(how_many)
    _check_batching(batch_size, progress_every)   # before anything is loaded or created
    if upsample < 1:
        raise ConfigError(f"--upsample {upsample}: expected a factor of 1 or more (2: the reference's, for "
                          "the next stage at twice the size)")
    e, cfg, _ = load_encoder(checkpoint_dir, which_epoch, device)
    if cfg.feat_num != 3:
        raise ConfigError(f"feat_num={cfg.feat_num}: feature maps are stored as RGB PNGs (as the "
                         "reference does and as --load_features reads them); precompute needs feat_num 3")
    ds = _dataset(cfg, dataroot, phase, 0, whole=True)
    records = _limited(ds, how_many)
    root = Path(dataroot or cfg.dataroot)
    out = Path(out_dir) if out_dir else root / f"{phase}_feat"
    try:   # before E runs, and before every input is stamped: a read-only dataset folder is refused in one line
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "Permission denied (no write permission)", str(out))
    except OSError as e:
        raise _feat_folder_error(out, e, phase, bool(out_dir)) from None
    digest = _PrefixDigest(records, len(ds.records))   # the run's inputs stamped now, before E reads them
    progress = progress_path(out)
    key = {"command": "precompute", "encoder": checkpoint_encoder_identity(checkpoint_dir, which_epoch).get("sha256", ""),
           "label_feat": str(bool(cfg.label_feat)), "upsample": str(upsample), "out": os.path.abspath(out)}
    if len(ds) < len(records):   # (how_many): --load_features reads a map per image
        print(f"note: --how_many {how_many}: these maps cover {len(ds)} of the {len(records)} {phase} "
              f"images of {root}; a --load_features run needs the map of every image: run precompute without "
              "--how_many for them all", file=sys.stderr, flush=True)
    # What a stop's line is made of: ``written``, the maps of this run's images there, in order (the
    # resumed ones, then those written); ``last``, the maps the progress file there counts (more than
    # this run's for a smaller how_many: those are all there); ``loaded``, set after both once the
    # file there is judged (its key and inputs, then its maps there): the maps the run continues
    # from, 0 when it starts over. A stop before (loading E, the dataset, reading the file) gets
    # main's line; one after says which.
    loaded, written, last = None, [], 0

    def keep() -> None:
        """The count of the maps written into the progress file, whole, with the images the run was
        asked for, and ``last`` with it (also when the file was renamed into place but its folder's
        sync failed, the error raised after)."""
        nonlocal last
        with _stops_held():
            was = _file_id(progress)
            try:
                _save_progress(progress, {**key, "inputs": digest.upto(len(written))}, ds, len(written),
                               asked=len(ds))
            finally:   # renamed into place (a new inode), even if its folder's sync then failed
                if _file_id(progress) != was:
                    last = len(written)
    try:
        # read also with progress_every 0, which only writes none
        n, _ = _load_progress(progress, key, ds, "precompute", digest, per_image=True)
        there = [out / f"{stem_key(Path(_record_name(r)))}.png" for r in ds.records[:min(n, len(ds))]]
        missing = next((p for p in there if not p.is_file()), None)
        if missing is not None:
            print(f"note: {progress} lists {missing}, which is gone: ignored, precompute starts over",
                  file=sys.stderr, flush=True)
            n, there = 0, []
        written, last = there, n
        resumed = len(written)
        loaded = n
        loader = _batches(ds, cfg.nThreads, start=len(written))
        try:
            for batch in _grouped(_held_fetches(loader), batch_size):
                label = batch["label"].to(device)
                inst = label if cfg.label_feat else batch["inst"].to(device)
                feat = e(image_to_float(batch["image"].to(device)), inst)          # [n, F, h, w] in [-1, 1]
                if upsample != 1:
                    feat = F.interpolate(feat, scale_factor=upsample, mode="nearest")
                imgs = float_to_uint8(feat).permute(0, 2, 3, 1).cpu().numpy()
                for img, path in zip(imgs, _label_paths(batch)):
                    dst = out / f"{stem_key(Path(path))}.png"
                    try:
                        with _stops_held():   # a stop's count of the maps written is exact
                            _write_png(Image.fromarray(img), dst)
                            written.append(dst)
                    except OSError as e:
                        if e.errno is None:   # not the file system's: PIL's own
                            raise
                        raise _feat_folder_error(out, e, phase, bool(out_dir)) from None
                    # per map, not per batch: the count saved is always of maps written whole
                    if _progress_due(len(written), last, progress_every) and len(written) < len(ds):
                        keep()
        finally:
            _end_workers(loader)
        if len(written) == len(records):   # every map of the split: nothing left to continue
            progress.unlink(missing_ok=True)
        elif progress_every and len(written) > last:   # maps of the split left: a larger how_many continues
            keep()
        elif not loaded:   # (--progress_every 0) a file this run did not continue from: its maps were rewritten
            progress.unlink(missing_ok=True)
    except _Stopped as stop:
        if loaded is None:   # before the progress file there was judged: main's line
            raise
        if not written:
            stop.what = f"no feature map written to {out}/ before the stop; rerun the same command to write them all"
            raise
        if len(written) == len(records):   # stopped after the split's last map: nothing left to continue
            with _stops_held():
                progress.unlink(missing_ok=True)
            stop.what = f"all {len(written)} feature map(s) written to {out}/ before the stop, each whole"
            raise
        failed = ""
        if progress_every and len(written) > last:   # the maps written since the last save
            failed = _kept_at_stop(keep, f"recording all {len(written)}", lambda: last == len(written))
        if len(written) == len(ds):   # this run's last map written (a how_many below the split's size)
            stop.what = (f"all {len(written)} feature map(s) asked for (--how_many {how_many}) written to {out}/ "
                         "before the stop, each whole" +
                         (f"; {progress} records the first {last}{failed}: precompute without --how_many (or "
                          "with a larger one) continues from there" if last else failed))
        elif last:
            stop.what = (f"{len(written)} feature map(s) written to {out}/ before the stop, each whole (through a "
                         f"temporary file), the others not; {progress} records the first {last}{failed}: rerun "
                         "the same command to write the others")
        else:
            stop.what = (f"{len(written)} feature map(s) written to {out}/ before the stop, each whole (through a "
                         f"temporary file), the others not{failed}; rerun the same command to write them all "
                         "(precompute starts over)")
        raise
    return FeatureMaps(written, new=len(written) - resumed, folder=out)


class FeatureMaps(list):
    """What :func:`precompute_feature_maps` returns: the paths of the maps of the run's images (a
    list of them, as it always was), with ``new``, how many of them the run wrote (the others were
    there already: the maps of the run it resumed), and ``folder``, where they are; the command's
    last line says which (it said "wrote 300" for a run that resumed from 159 and wrote 141)."""

    def __init__(self, paths: Iterable[Path] = (), *, new: int = 0, folder: Path | None = None):
        super().__init__(paths)
        self.new, self.folder = new, folder

    def summary(self, how_many: int = 0) -> str:
        """The command's last line: the maps written, and those there already."""
        if self.new == len(self):
            return f"wrote {self.new} feature map(s) to {self.folder}"
        if self.new:
            return f"wrote {self.new} feature map(s) to {self.folder} ({len(self)} there in all)"
        asked = f"the {len(self)} asked for are" if how_many == len(self) else f"all {len(self)} are"
        return f"wrote no feature map: {asked} in {self.folder} already"


def _write_png(img, dst: Path) -> None:
    """PIL image ``img`` as the PNG ``dst``, never half-written: into a temporary file beside it
    (:func:`~pix2pixhd.paths.tmp_beside`), then renamed, so that a stop or a kill mid-write leaves
    the earlier map or none, never a cut one that --load_features would fail on; the temporary file
    is removed on any failure (an OS error names ``dst``)."""
    from pix2pixhd.paths import tmp_beside
    tmp = tmp_beside(dst)
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, dst)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename == str(tmp):
            e.filename = str(dst)
        raise


def _feat_folder_error(out: Path, e: OSError, phase: str, given: bool) -> InputError:
    """One line for feature maps that cannot be written into ``out`` (OS error ``e``): the folder,
    the error and the fix (``given``: ``out`` is the user's --out_dir)."""
    if isinstance(e, FileExistsError) or (out.exists() and not out.is_dir()):
        why, where = f"{out} is a file, not a folder", None
    else:
        failed = Path(e.filename) if e.filename else out
        why = f"{failed}: {e.strerror or type(e).__name__}"
        where = next((q for q in (failed, *failed.parents) if q.is_dir()), None)
    fix = ("pass --out_dir a folder you can write to" if given else
           f"{f'make {where} writable, or ' if where else ''}write them elsewhere with --out_dir DIR "
           f"(--load_features reads DATAROOT/{phase}_feat/: copy them there, or into a copy of the dataset)")
    return InputError(f"cannot write the feature maps into {out}/ ({why}); {fix}")


def _label_paths(batch: dict) -> list[str]:
    """The label file of each image of ``batch`` (:func:`_grouped` makes its
    non-tensor entries lists), which name their feature maps."""
    for key in ("label_path", "path"):
        if key in batch:
            v = batch[key]
            return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    raise KeyError("the dataset's items carry no 'path' / 'label_path'; cannot name the feature maps")


# ---- command line --------------------------------------------------------------------------------
# The options of the reference's encode_features.py and precompute_feature_maps.py (NVIDIA's
# pix2pixHD: its training options, a run named by --name in --checkpoints_dir) that these commands
# have none of: what to use instead. main refuses each in one line, through cli.refuse_reference_only
# (train_hd.py's and synthesize.py's way), instead of argparse's usage and "unrecognized arguments".
_FROM_CONFIG = "the encoder's and the data's options come from the checkpoint's config.json: drop --{}"
REFERENCE_ONLY = {
    "name": "give the run folder: --checkpoint CHECKPOINTS_DIR/NAME",
    "checkpoints_dir": "give the run folder: --checkpoint CHECKPOINTS_DIR/NAME",
    "gpu_ids": "the device is --device (auto | cpu | cuda | cuda:N)",
    "batchSize": "use --batch_size (images E encodes at once)",
    "nThreads": "the loader's worker processes are the run's --nThreads (its config.json): drop --nThreads",
    "max_dataset_size": "use --how_many (at most this many images)",
    "ntest": "use --how_many (at most this many images)",
    "serial_batches": "not needed: the images are read in name order: drop --serial_batches",
    "no_flip": "not needed: the images are never flipped: drop --no_flip",
    **{k: _FROM_CONFIG.format(k) for k in (
        "label_nc", "instance_feat", "label_feat", "feat_num", "nef", "n_downsample_E", "no_instance", "netG",
        "ngf", "norm", "model", "input_nc", "output_nc", "loadSize", "fineSize", "resize_or_crop",
        "load_features")},
}
# The command the refusals name: --name, --label_nc... are train_hd.py's options, not this one's.
_COMMAND = "python -m pix2pixhd.features"


def build_parser() -> argparse.ArgumentParser:
    """``python -m pix2pixhd.features``'s parser (commands ``encode`` and ``precompute``)."""
    from pix2pixhd.argparsing import add_command, make_parser
    from pix2pixhd.errors import add_debug_option
    p = make_parser("python -m pix2pixhd.features", __doc__.split("\n")[0])
    add_debug_option(p)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("encode", "cluster E's per-instance features; save them beside the checkpoint"),
                        ("precompute", "write E's upsampled feature maps to {phase}_feat/ for --load_features")):
        s = add_command(sub, name, help=help_, description=help_)
        s.add_argument("--checkpoint", required=True, help="training run folder (config.json + *.pt)")
        s.add_argument("--which_epoch", default="latest",
                       help="checkpoint to read E from: 'latest' (latest.pt) or an epoch number N (epoch_NNNN.pt)")
        s.add_argument("--dataroot", default="", help="dataset root to encode (default: the run's --dataroot)")
        s.add_argument("--phase", default="train", help="split of --dataroot to read ({phase}_label, _inst, _img)")
        s.add_argument("--how_many", type=int, default=0, help="at most this many images; 0 = all")
        s.add_argument("--device", default="auto", help="auto (the GPU if there is one, else the CPU), cpu, cuda or cuda:N")
    sub.choices["encode"].add_argument("--n_clusters", type=int, default=0,
                                       help="k-means clusters per class; 0: the run's --n_clusters (default: 0)")
    sub.choices["encode"].add_argument("--batch_size", type=int, default=4,
                                       help="images E encodes at once (the features are those of one at a time; default: 4)")
    sub.choices["precompute"].add_argument("--batch_size", type=int, default=4,
                                           help="images E encodes at once (each map is that image's own, to float32 "
                                                "rounding; default: 4)")
    for name in ("encode", "precompute"):
        sub.choices[name].add_argument(
            "--progress_every", type=int, default=PROGRESS_EVERY,
            help=f"record the progress every N images, or every 5%% of those done once that is more, so that a "
                 f"rerun after a stop continues (0: write no progress file; one already there is still resumed "
                 f"from; default: {PROGRESS_EVERY})")
    sub.choices["encode"].add_argument("--out", default="",
                                       help=f"clusters file to write (default: CHECKPOINT/{CLUSTERS_FILE})")
    sub.choices["precompute"].add_argument("--upsample", type=int, default=2,
                                           help="nearest upsampling of E's maps (E runs at the size it was trained at; the next stage reads x2)")
    sub.choices["precompute"].add_argument("--out_dir", default="",
                                           help="folder of the feature maps (default: DATAROOT/{phase}_feat)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m pix2pixhd.features``. SIGTERM or SIGINT stops the command at once (its progress
    file, unless --progress_every 0, is written at the stop too, with all the images done) with one
    line on stderr, what it had written and kept and how to go on, and SystemExit with training's
    status for a stop: 75 (SIGTERM), 130 (SIGINT); a second signal while it stops is ignored. The
    previous handlers come back when it returns. The reference's options it has none of
    (:data:`REFERENCE_ONLY`: --name, --checkpoints_dir, --instance_feat...) are refused first, each
    in one line naming what to use instead."""
    from pix2pixhd.cli import refuse_reference_only
    argv = sys.argv[1:] if argv is None else list(argv)
    refuse_reference_only(argv, REFERENCE_ONLY, _COMMAND)
    a = build_parser().parse_args(argv)
    with _stop_handlers():
        try:
            return _command(a)
        except _Stopped as stop:
            from pix2pixhd.errors import INTERRUPTED_EXIT_STATUS
            from pix2pixhd.errors import STOPPED_EXIT_STATUS
            status = STOPPED_EXIT_STATUS if stop.signum == signal.SIGTERM else INTERRUPTED_EXIT_STATUS
            what = stop.what or "nothing written; rerun the same command"
            tail = f"; exit status {status}" if status != STOPPED_EXIT_STATUS else ""
            print(f"stopped by {signal.Signals(stop.signum).name}: {what}{tail}", file=sys.stderr, flush=True)
            raise SystemExit(status) from None


@contextlib.contextmanager
def _stop_handlers():
    """main's SIGTERM and SIGINT handler for the block: the first raises :class:`_Stopped` and
    ignores both from then on; the previous handlers come back when the block ends. A signal
    ignored on entry (nohup, a script's ``&``) stays ignored. Main thread only (Python's rule)."""
    from pix2pixhd.errors import install_signal_handlers, restore_signal_handlers

    def stop(signum, frame):
        for s in _STOP_SIGNALS:   # a second signal while this one unwinds: ignored
            signal.signal(s, signal.SIG_IGN)
        raise _Stopped(signum)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = install_signal_handlers({s: stop for s in _STOP_SIGNALS})
    try:
        yield
    finally:
        restore_signal_handlers(previous)


def _command(a: argparse.Namespace) -> int:
    """main's command ``a.cmd`` with its options."""
    from pix2pixhd.distributed import resolve_device
    device = resolve_device(a.device)
    if a.cmd == "encode":
        path, fc = encode_and_cluster(a.checkpoint, which_epoch=a.which_epoch, dataroot=a.dataroot,
                                      phase=a.phase, n_clusters=a.n_clusters or None,
                                      how_many=a.how_many, device=device, out=a.out or None,
                                      batch_size=a.batch_size, progress_every=a.progress_every)
        for cls in sorted(set(fc.counts) | set(fc.centers)):
            k = fc.centers[cls].shape[0] if cls in fc.centers else 0
            print(f"class {cls:3d}: {fc.counts.get(cls, 0):6d} instances kept, {k} clusters")
        print(f"wrote {path}")
    else:
        files = precompute_feature_maps(a.checkpoint, which_epoch=a.which_epoch, dataroot=a.dataroot,
                                        phase=a.phase, upsample=a.upsample, out_dir=a.out_dir or None,
                                        how_many=a.how_many, device=device, batch_size=a.batch_size,
                                        progress_every=a.progress_every)
        print(files.summary(a.how_many))
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))
