"""The training system: models, optimizers, one step, the epoch loop, checkpoints and logs.

Read top to bottom: ``Trainer.__init__`` builds the networks (``pix2pixhd.models``) and places
them (device, channels-last, DDP), loads a previous stage or resumes; ``train_step`` is
one iteration of the reference's recipe; ``fit`` runs epochs with the linear lr decay, logging
and atomic checkpoints.

One step (pix2pixHD, Wang et al. 2018, as NVIDIA's code computes it):
  fake = G(x)                                    x = one-hot(label) ⊕ boundary(inst) ⊕ feat
  L_D  = ½ [GAN(D(x, real), 1) + GAN(D(x, fake.detach()), 0)]
  L_G  = GAN(D(x, fake), 1) + FM(D(x, fake), D(x, real)) + λ_feat · VGG(fake, real)
  G and D both step on losses computed with the same (pre-update) D. During the G pass the
  discriminator's parameters do not require grad, so no D weight gradients are computed.
  With --diffaug every D input (x, image) is first transformed by T, one random draw per step
  shared by the real and the fake pair, in L_D and L_G alike (``pix2pixhd.diffaug``); VGG and L1
  compare the untransformed fake and real.

pix2pix (``--model pix2pix``) and CycleGAN (``--model cyclegan``, Zhu et al. 2017) are other
``train_step`` recipes of the same Trainer (same checkpoints, logs, resume, DDP, precision):
  CycleGAN  fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A)
            L_G = GAN(D_A(fake_B), 1) + GAN(D_B(fake_A), 1) + λ_A |rec_A - A| + λ_B |rec_B - B|
                  + λ_idt (λ_B |G_A(B) - B| + λ_A |G_B(A) - A|)
            L_D_A = ½ [GAN(D_A(B), 1) + GAN(D_A(pool_B(fake_B)), 0)], L_D_B likewise
  (the two generators are one module, ``CycleGenerators``, as are the two discriminators, so one
  optimizer, one DDP wrapper and one forward per backward serve each pair.)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

import pix2pixhd
from pix2pixhd import diffaug
from pix2pixhd.checkpoint import (CheckpointError, atomic_write_bytes, checkpoint_path, clean_stale_tmp,
                                  environment, epoch_checkpoints, imported_source, line_of, load_checkpoint,
                                  load_run_config, new_attempt,
                                  rng_state, save_checkpoint, seed_rng, set_rng_state, write_lineage)
from pix2pixhd.config import TrainConfig, global_frozen_at, loads_whole, lr_at_epoch  # noqa: F401 (lr_at_epoch: also for callers)
from pix2pixhd.distributed import DistInfo, barrier, bind_cuda_device, differing_keys, gather_all, resolve_device
from pix2pixhd.encoding import encode_input, image_to_float
from pix2pixhd.image_pool import ImagePool
from pix2pixhd.errors import (INTERRUPTED_EXIT_STATUS, ConfigError, UserError, check_required_imports,
                              install_signal_handlers, raise_on_any_rank, restore_signal_handlers, say,
                              user_message)
from pix2pixhd.errors import PROGRESS_INTERVAL_S
from pix2pixhd.errors import STOPPED_EXIT_STATUS
from pix2pixhd.data.dataset import STAMP_FILE   # the run folder's validation stamp
from pix2pixhd.data.loader import socket_error_as_worker_death as _worker_death_error
from pix2pixhd.errors import stderr_is_tty as _stderr_is_tty
from pix2pixhd.losses import GANLoss, VGGLoss, feature_matching_loss
from pix2pixhd.models import build_discriminator, build_encoder, build_generator, check_discriminator_input
from pix2pixhd.networks import LocalEnhancer
from pix2pixhd.run_folder import check_new_run, drop_replaced, lock_run, move_aside, note_leftovers
from pix2pixhd.visualizer import Visualizer, WindowMeans, loss_line_order, summary_writer_class

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# On a terminal, an epoch's progress bar is left on the screen when the epoch took at least this
# long (seconds), and the run's last bar always; shorter epochs' bars are cleared at their end, so
# a run of thousands of tiny epochs does not leave thousands of lines
EPOCH_BAR_KEEP_S = 60.0
# --norm_impl auto's measured choices on CUDA, kept in the run folder (Trainer.__init__)
NORM_AUTOTUNE_FILE = "norm_autotune.json"


def norm_autotune_file(exp_dir: Path, rank: int) -> Path:
    """Where rank ``rank`` of a run keeps --norm_impl auto's choices: one file per rank, as each
    rank times its own norms (ranks may choose differently where both paths are as fast, and a
    resume gives each the path it took) and no two ranks rewrite one file at once."""
    return exp_dir / (NORM_AUTOTUNE_FILE if rank == 0 else f"norm_autotune.rank{rank}.json")


@contextmanager
def _frozen(module: nn.Module | None):
    """``module``'s parameters do not require grad inside the block (None: a no-op)."""
    if module is None:
        yield
        return
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN or inf; raised before the step's optimizer steps (pix2pix's D, which
    steps before G's losses exist, excepted: the message says when it had)."""


# A run stopped by SIGTERM after saving latest.pt exits with errors.STOPPED_EXIT_STATUS (75). A run
# stopped by SIGINT (Ctrl-C), after saving latest.pt (the first) or at once (a second), exits
# with errors.INTERRUPTED_EXIT_STATUS, 128 + SIGINT as a shell reports it, so that a script or a
# retry loop stops as the user asked instead of taking 75 for "resume me". (Through the Python API
# SIGINT's stops are KeyboardInterrupts, TrainingInterrupted and TrainingAborted; train_hd.py exits.)

# The signals the training loop turns into a stop at a step boundary, by priority (under DDP the
# ranks agree on the highest code any of them got): their names and exit statuses.
_STOP_SIGNALS = {1: ("SIGTERM", STOPPED_EXIT_STATUS), 2: ("SIGINT", INTERRUPTED_EXIT_STATUS)}
# The stop code (above the signals') of a rank whose DataLoader worker died (under DDP).
WORKER_DEATH_CODE = 3
# Options the ranks of one run may give differently (_agree_on_start): paths (a node may keep its
# copy of the data, or mount the folders, elsewhere; the dataset's size is compared instead),
# loader workers and progress display. Every other option must be the same on every rank.
RANK_LOCAL_OPTIONS = frozenset({"dataroot", "checkpoints_dir", "load_pretrain", "vgg_path", "nThreads",
                                "no_progress"})


class TrainingStopped(SystemExit):
    """SIGTERM stopped the run at a step boundary, latest.pt saved. A SystemExit with status
    :data:`STOPPED_EXIT_STATUS`, as SIGTERM's default action ends the process: ``errors.run``
    and the scripts pass it on as the exit status (the message was printed on stderr); Python
    callers can catch it. train_hd.py also ends a Ctrl-C stop (:class:`TrainingInterrupted`)
    with one, status :data:`INTERRUPTED_EXIT_STATUS`. ``summary``: the run's summary
    (``stopped_by`` names the signal), which train_hd.py prints on stdout."""

    def __init__(self, message: str, status: int = STOPPED_EXIT_STATUS, summary: dict | None = None):
        super().__init__(status)
        self.message = message
        self.summary = summary   # the run's summary (``fit``'s return value had it finished), for train_hd.py

    def __str__(self) -> str:
        return self.message


class TrainingInterrupted(KeyboardInterrupt):
    """A first Ctrl-C (SIGINT) stopped the run at a step boundary, latest.pt saved: a
    KeyboardInterrupt, so that a script's or notebook's ``except KeyboardInterrupt`` sees it, as
    it sees a Ctrl-C during the start (a SystemExit(130) used to pass by both ``except
    KeyboardInterrupt`` and ``except Exception``). A new Trainer of the same config with
    ``resume=True`` continues the run. ``summary``: the run's summary (``stopped_by`` "SIGINT");
    ``status``: :data:`INTERRUPTED_EXIT_STATUS`, the command's exit status; ``line``: the line
    train_hd.py says on stderr (from Python none is printed: the message says it)."""
    exit_status = INTERRUPTED_EXIT_STATUS

    def __init__(self, message: str, summary: dict | None = None, *, line: str | None = None):
        super().__init__(message)
        self.message, self.summary, self.line = message, summary, line
        self.status = INTERRUPTED_EXIT_STATUS

    def __str__(self) -> str:
        return self.message


class TrainingAborted(KeyboardInterrupt):
    """A second SIGINT (Ctrl-C twice): the run ends at once, mid-step, saving nothing more (the
    last checkpoint written stays as it was). A KeyboardInterrupt, as :class:`TrainingInterrupted`;
    train_hd.py said its ``line`` on stderr and exits with :data:`INTERRUPTED_EXIT_STATUS` (no
    traceback); from Python none is printed: the message says it."""
    exit_status = INTERRUPTED_EXIT_STATUS

    def __init__(self, message: str, *, line: str | None = None):
        super().__init__(message)
        self.message, self.line = message, line
        self.status = INTERRUPTED_EXIT_STATUS

    def __str__(self) -> str:
        return self.message


def fetch_error_text(e: BaseException) -> str:
    """``e``, a fetch's error, in one line for another rank's message: a UserError's message (a
    worker's traceback left out), the line for a dead worker or a full /dev/shm, else the last
    line of torch's re-raised message (the worker's own error), with its type."""
    from pix2pixhd.errors import loader_worker_died, shared_memory_full
    if isinstance(e, UserError):
        text = user_message(e)
    else:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        text = (loader_worker_died(e, resume="") or shared_memory_full(e)
                or (lines[-1] if lines and "Original Traceback" in str(e) else f"{type(e).__name__}: {' '.join(lines)}"))
    return " ".join(text.split())


class PeerDataError(UserError):
    """Under DDP, another rank's fetch of its batch failed (a file it could not read): this rank
    saved latest.pt with it (after the run's first step) and stops; the message names that rank
    and its error."""


class LoaderWorkerDied(UserError, RuntimeError):
    """A DataLoader worker died (the OOM killer's kill -9) in a single-process run: latest.pt was
    saved at the step boundary where its error was raised; the message (``errors.loader_worker_died``'s
    line) says so and how to resume. Raised from torch's error."""


# the non-finite-loss error's advice on precision, by the run's --precision
_PRECISION_ADVICE = {"fp16": "--precision bf16 or fp32, or ", "bf16": "--precision fp32, or ", "fp32": "or "}


def _write_stderr(text: str) -> None:
    """Write ``text`` to stderr from a signal handler: one os.write, which cannot re-enter the
    buffered stream that the interrupted code may have been writing to (print() could raise
    "reentrant call")."""
    try:
        sys.stderr.flush()
    except (RuntimeError, ValueError, OSError):
        pass
    try:
        os.write(2, text.encode(errors="replace"))
    except OSError:
        pass


def _run_label(cfg: TrainConfig, short: bool = False) -> str:
    """What the run trains, for the progress bar (``short``) and the log: pix2pixHD's stage
    ('global', 'global stage'), or the model ('cyclegan', 'pix2pix'), which has no stages."""
    if cfg.model != "pix2pixhd":
        return cfg.model
    return cfg.stage if short else f"{cfg.stage} stage"


def _duration(seconds: float) -> str:
    """``seconds`` as [Dd ]H:MM:SS."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return (f"{d}d " if d else "") + f"{h}:{m:02d}:{s:02d}"


class RunProgress:
    """The whole run's progress for rank 0's console: the step of the run's last step
    (``last_step``: the end of its last epoch, or of --max_steps), the speed and the run's ETA.
    The ETA is the steps left times the mean time of the steps after the run's first (its
    warm-up: cuDNN's benchmark, compilation), epoch ends and saves included."""

    def __init__(self, first_step: int, last_step: int, now: float):
        self.first_step, self.last_step = first_step, last_step
        self._t_first = None           # when the run's first step ended
        self._t_line, self._images_line = now, 0
        # the last logged window's loss means (the trainer sets them at each log line): the line
        # ends with them, as a log file has no bar postfix to show them ({}: none logged yet)
        self.losses: dict[str, float] = {}

    def step(self, images: int, now: float) -> None:
        """A step has ended, ``images`` images over all ranks."""
        self._images_line += images
        if self._t_first is None:
            self._t_first = now

    def eta(self, step: int, now: float) -> float | None:
        """Seconds until the run's last step, after step ``step``; None before the second step."""
        timed = step - self.first_step - 1
        if self._t_first is None or timed < 1:
            return None
        return max(0, self.last_step - step) * (now - self._t_first) / timed

    def eta_text(self, step: int, now: float) -> str:
        eta = self.eta(step, now)
        return "?" if eta is None else _duration(eta)

    def line_due(self, now: float) -> bool:
        return now - self._t_line >= PROGRESS_INTERVAL_S

    def line(self, label: str, epoch: int, total_epochs: int, step: int, now: float) -> str:
        """The progress line; the speed is over the time since the previous line; then the last
        logged window's losses (3 significant digits), the values loss_log.txt's last line has."""
        speed = self._images_line / max(now - self._t_line, 1e-9)
        self._t_line, self._images_line = now, 0
        pct = 100.0 * step / self.last_step if self.last_step else 100.0
        losses = "".join(f" {k} {v:.3g}" for k, v in self.losses.items())
        return (f"progress: {label} epoch {epoch}/{total_epochs}, step {step}/{self.last_step} ({pct:.1f}%), "
                f"{speed:.2f} images/s, run ETA {self.eta_text(step, now)}" + (f", losses{losses}" if losses else ""))


def _unwrap(m: nn.Module) -> nn.Module:
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return getattr(m, "module", m)  # DDP


class CycleGenerators(nn.Module):
    """CycleGAN's G_A (A -> B) and G_B (B -> A) as one module: the reference's one optimizer
    over both, one DDP wrapper, and every generator pass of a step in one forward (DDP wants one
    forward per backward). [N, C, H, W] in [-1, 1] -> dict of [N, C, H, W]."""

    def __init__(self, G_A: nn.Module, G_B: nn.Module):
        super().__init__()
        self.G_A, self.G_B = G_A, G_B

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, identity: bool) -> dict[str, torch.Tensor]:
        fake_B, fake_A = self.G_A(real_A), self.G_B(real_B)
        out = {"fake_B": fake_B, "rec_A": self.G_B(fake_B), "fake_A": fake_A, "rec_B": self.G_A(fake_A)}
        if identity:   # each generator should leave an image of its output domain as it is
            out["idt_A"], out["idt_B"] = self.G_A(real_B), self.G_B(real_A)
        return out


class CycleDiscriminators(nn.Module):
    """CycleGAN's D_A (judges domain B: real B vs G_A's fakes) and D_B (domain A) as one module.
    forward(real_B, fake_B, real_A, fake_A) -> their four logit maps [N, 1, h, w]. With instance
    norm each sample is normalised alone, so real and fake go through each D stacked along the
    batch in one pass; BatchNorm would mix their statistics, so there they go separately, as do
    real and fake of different sizes (the domains' sizes differ, or the pool returned an older
    fake of another size), which cannot be stacked."""

    def __init__(self, D_A: nn.Module, D_B: nn.Module, stack: bool):
        super().__init__()
        self.D_A, self.D_B, self.stack = D_A, D_B, stack

    def forward(self, real_B, fake_B, real_A, fake_A) -> tuple[torch.Tensor, ...]:
        out = []
        for d, real, fake in ((self.D_A, real_B, fake_B), (self.D_B, real_A, fake_A)):
            if self.stack and real.shape[1:] == fake.shape[1:]:
                out += d(torch.cat([real, fake.to(real.dtype)], 0)).split(real.shape[0])
            else:
                out += [d(real), d(fake)]
        return tuple(out)


class PhaseTimer:
    """Milliseconds per phase of a step. Off by default; on a logged step it synchronises the
    device at each mark so the times are real (the cost is paid on those steps only)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.enabled = False
        self.times: dict[str, float] = {}
        self._t = 0.0

    def start(self, enabled: bool) -> None:
        self.enabled, self.times = enabled, {}
        if enabled:
            self._sync()
            self._t = time.perf_counter()

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def mark(self, name: str) -> None:
        if self.enabled:
            self._sync()
            now = time.perf_counter()
            self.times[name] = self.times.get(name, 0.0) + (now - self._t) * 1e3
            self._t = now


def _tqdm():
    """tqdm's progress bar class; missing, a one-line error (fit() asks before anything is written)."""
    check_required_imports("training", {"tqdm": "tqdm"})
    from tqdm import tqdm
    return tqdm


def _note(text: str) -> None:
    """A line on stderr during training (a note of a save, a skipped fp16 step): through tqdm.write
    when tqdm is there, which clears a terminal's progress bar, writes the line and draws the bar
    again below it, so the note is neither glued to the bar's line nor cleared with it; print
    otherwise (and the same line without a terminal)."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(text, file=sys.stderr, flush=True)
        return
    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


# torch's deterministic-algorithms setting (enabled, warn_only) as it was before set_deterministic
# switched it on, while that holds (None: not switched on by a run): unset_deterministic puts it back
_DETERMINISTIC_BEFORE: tuple[bool, bool] | None = None


def set_deterministic(device: torch.device) -> None:
    """``--deterministic``: torch.use_deterministic_algorithms. On CPU that refuses ops without a
    deterministic kernel; CPU runs repeat bit for bit without it at a fixed thread count (a resume
    with another count does not: the trainer notes it).

    On CUDA, ReflectionPad2d's backward (the generators' padding) has no deterministic kernel, and
    strict mode would raise at the first G backward; there the setting warns instead
    (``warn_only``), cuDNN picks deterministic algorithms without benchmarking, and cuBLAS gets the
    workspace setting it needs: reproducible up to that one op, said once. The setting it
    replaced is kept for :func:`unset_deterministic`.
    """
    global _DETERMINISTIC_BEFORE
    if _DETERMINISTIC_BEFORE is None:
        _DETERMINISTIC_BEFORE = (torch.are_deterministic_algorithms_enabled(),
                                 torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type != "cuda":
        torch.use_deterministic_algorithms(True)
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.warn("--deterministic on CUDA: ReflectionPad2d's backward has no deterministic CUDA "
                  "kernel, so runs are reproducible except for that op (torch warns where it runs)",
                  RuntimeWarning, stacklevel=2)


def unset_deterministic() -> None:
    """A run without ``--deterministic``: torch's deterministic algorithms as they were before an
    earlier run of this process switched them on (:func:`set_deterministic`), off unless the
    caller had switched them on; none switched on: left as they are (a caller's own setting
    holds). An earlier run's setting held for every later Trainer of the process, whose strict
    mode refuses ops without a deterministic kernel and whose --norm_impl auto never measures.
    cuDNN's benchmark stays off, as no run switches it on (torch's default), and
    CUBLAS_WORKSPACE_CONFIG stays: cuBLAS reads it as it creates a handle, and it changes no result."""
    global _DETERMINISTIC_BEFORE
    before, _DETERMINISTIC_BEFORE = _DETERMINISTIC_BEFORE, None
    if before is not None:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def check_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """ValueError unless every state of Adam ``opt`` fits its parameter: ``step`` one number,
    ``exp_avg`` and ``exp_avg_sq`` (and ``max_exp_avg_sq`` under amsgrad) floating tensors of the
    parameter's shape, none of them missing where the parameter has a state."""
    for i, group in enumerate(opt.param_groups):
        need = ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group.get("amsgrad") else ())
        for j, p in enumerate(group["params"]):
            st = opt.state.get(p)
            if not st:
                continue
            where = f"group {i} parameter {j} {tuple(p.shape)}"
            for k in need:
                v = st.get(k)
                if k == "step":
                    ok = isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1)
                else:
                    ok = torch.is_tensor(v) and v.is_floating_point() and v.shape == p.shape
                if not ok:
                    got = (f"a {v.dtype} tensor of shape {tuple(v.shape)}" if torch.is_tensor(v)
                           else "missing" if v is None else type(v).__name__)
                    raise ValueError(f"{where}: {k} is {got}")


def match_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """Gives every state tensor of ``opt`` its parameter's device and memory layout.

    ``Optimizer.load_state_dict`` casts dtype and device only: moments saved by a channels-last run
    keep their strides in an NCHW run (and back), which fused Adam refuses on CUDA ("same dtype,
    device, and layout") and on CPU steps wrongly; and a group saved unfused keeps ``step`` on the
    CPU, which fused CUDA Adam refuses. Both are fixed in place here.
    """
    for group in opt.param_groups:
        fused = bool(group.get("fused"))
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            for k, v in st.items():
                if not torch.is_tensor(v):
                    continue
                if k == "step":
                    if fused and v.device != p.device:
                        st[k] = v.to(p.device, torch.float32)
                elif v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


# ---- the trainer --------------------------------------------------------------------------------
class Trainer:
    """One training run of ``cfg`` (resolved): ``Trainer(cfg).fit()`` trains it, saving and
    resuming in ``cfg.experiment_dir``. ``dist_info``: this process's place under torchrun
    (``pix2pixhd.distributed.setup``); None = one process on ``cfg.device``. ``vgg``: a VGG19
    feature network to use instead of reading ``cfg.vgg_path``; it is used in place, not copied:
    set to eval() and requires_grad_(False), and moved to the run's device and memory format.

    Process-wide state a run sets, as training scripts do, and leaves set: the Python, NumPy and
    torch RNGs are seeded with ``cfg.seed`` (+ rank); a resume restores the states it saved;
    ``cfg.deterministic`` switches torch's deterministic algorithms on (on CUDA also
    ``CUBLAS_WORKSPACE_CONFIG`` and cuDNN's benchmark off), and a later Trainer without it puts
    them back as they were before (:func:`unset_deterministic`); with --norm_impl auto on CUDA, the
    norm chooser keeps its choices in the run folder's norm_autotune.json (per rank) unless
    PIX2PIXHD_NORM_AUTOTUNE_FILE names a file (other runs unset it); ``fit`` installs SIGTERM/SIGINT
    handlers while it runs (and SIGCHLD's, single process with loader workers). Save and restore
    them around a run if other work in the process needs its own.

    A first Ctrl-C during ``fit`` stops the run at the next step boundary with latest.pt saved
    and raises :class:`TrainingInterrupted`, a second one at once :class:`TrainingAborted`: both
    KeyboardInterrupts, as a Ctrl-C before the loop is; a SIGTERM raises :class:`TrainingStopped`
    (a SystemExit, as SIGTERM ends a process). The notes of ``cfg.notes()`` (a resume's changed
    options among them) are printed on stderr as the run starts. ``from_command``: set by
    train_hd.py, which printed the notes itself and ends a Ctrl-C stop with its line and status.
    """

    def __init__(self, cfg: TrainConfig, dist_info: DistInfo | None = None, vgg: nn.Module | None = None):
        cfg.check_resolved()
        cfg.check_new_training()
        # a layout --model cannot train on (CycleGAN's trainA/ + trainB/ for pix2pixhd): refused from
        # the folder listing before VGGLoss below looks for its weights, which such a run never uses
        cfg.check_layout()
        self.cfg = cfg
        # from Python without dist_info: cfg.device, as train_hd.py resolves it (it ran on the CPU)
        self.dist = dist_info or DistInfo(device=resolve_device(cfg.device))
        self.device = self.dist.device
        bind_cuda_device(self.device)
        seed_rng(cfg.seed + self.dist.rank)   # a resume restores the saved states below
        if cfg.deterministic:
            set_deterministic(self.device)
        else:   # an earlier run's --deterministic in this process must not hold for this one
            unset_deterministic()
        self.amp_dtype = AMP_DTYPES.get(cfg.precision)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

        # --norm_impl auto on CUDA times Triton against native per norm; another process could time
        # them otherwise and take the other path (bitwise different), so the run keeps its choices
        # beside its checkpoints for --resume (PIX2PIXHD_NORM_AUTOTUNE_FILE, when set, wins). CPU
        # runs never time: no file. Set by every Trainer, so no earlier run's file lingers.
        from pix2pixhd.kernels.instance_norm_act import set_run_autotune_file
        tuned = cfg.norm == "instance" and cfg.norm_impl == "auto" and self.device.type == "cuda"
        # --overwrite: the folder's file is the old run's, moved aside with it before the first step
        replaces = cfg.overwrite and not cfg.resume and not getattr(cfg, "_restart", False)
        set_run_autotune_file(norm_autotune_file(cfg.experiment_dir, self.dist.rank) if tuned else None,
                              replaces=replaces)
        if cfg.norm == "instance":   # strict kernels (PIX2PIXHD_STRICT_KERNELS): refused before any write
            from pix2pixhd.kernels import check_norm_impl
            check_norm_impl(cfg.norm_impl, self.device)
        if cfg.model == "cyclegan":
            self.G = CycleGenerators(build_generator(cfg, "AtoB"), build_generator(cfg, "BtoA"))
            self.D = CycleDiscriminators(build_discriminator(cfg, "D_A"), build_discriminator(cfg, "D_B"),
                                         stack=cfg.norm == "instance")
        else:
            self.G = build_generator(cfg)
            self.D = build_discriminator(cfg)
        self.E = build_encoder(cfg)
        if cfg.resize_or_crop == "resize_and_crop":   # every sample this square (else: _start_run)
            side = min(cfg.loadSize, cfg.fineSize)
            self._check_d_input(side, side, f"the crop (--resize_or_crop resize_and_crop --loadSize "
                                            f"{cfg.loadSize} --fineSize {cfg.fineSize})")
        # CycleGAN: each D's history of generated images, drawn by its own seeded generator (per
        # rank: every rank's D sees its own history); the pools are checkpointed with their RNG.
        self.pools = {k: ImagePool(cfg.pool_size, seed=(cfg.seed * 1_000_003 + self.dist.rank) * 2 + i)
                      for i, k in enumerate(("fake_B", "fake_A"))} if cfg.model == "cyclegan" else {}
        if cfg.norm == "batch" and self.dist.distributed:
            if self.device.type == "cuda":
                self.G, self.D = (nn.SyncBatchNorm.convert_sync_batchnorm(m) if m is not None else None
                                  for m in (self.G, self.D))
            elif self.dist.is_master:  # torch's SyncBatchNorm runs on CUDA only
                say("note: --norm batch on CPU ranks: BatchNorm statistics stay per rank (no SyncBatchNorm)")
        self.diffaug = diffaug.parse_policy(cfg.diffaug)   # () = off: D sees its inputs as they are
        self.criterion_gan = GANLoss(cfg.gan_mode)
        self.criterion_l1 = nn.L1Loss()
        self.vgg = None if cfg.no_vgg_loss else (VGGLoss(vgg) if vgg is not None else VGGLoss(vgg_path=cfg.vgg_path or None))
        for m in (self.G, self.D, self.E, self.vgg):
            if m is not None:
                m.to(self.device, memory_format=self.memory_format)

        self.epoch, self.iter_in_epoch, self.global_step = 1, 0, 0
        # samples of this epoch all ranks together have trained (a resume on another number of
        # processes shares out the rest: ResumableSampler)
        self.samples_in_epoch = 0
        self._stepped: list[str] = []   # optimizers the current step has stepped (non-finite message)
        # Local stage: the global generator is fixed for the first niter_fix_global epochs. Trainer
        # state, saved in the checkpoint: a resume restores the optimizer it was saved with.
        self.global_frozen = global_frozen_at(self.cfg, self.epoch)
        self.timer = PhaseTimer(self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        # fp16: steps whose update GradScaler skipped (inf/NaN gradients lowered the loss scale)
        self.skipped_steps = 0
        self.exp_dir = cfg.experiment_dir
        self._replaced: Path | None = None   # the old run --overwrite moved aside, until our first save
        self._leftovers: list[Path] = []      # --overwrite: NAME.replaced-* of earlier ones, deleted with it
        self._lock = None                     # rank 0: the run folder's lock (run_folder.lock_run) in fit()
        # --resume: the step resumed from. A checkpoint this run overwrites that holds a later step
        # (--which_epoch went back) is kept first (_keep_later), at the first write of each name.
        self._resumed_step: int | None = None
        self._written: set[str] = set()
        self._undropped: set[Path] = set()    # --keep_epoch_checkpoints: files a note said were not removed
        # This start's attempt id and the line of training it continues ([[attempt, from_step],
        # ...]; a resume: the resumed checkpoint's line plus this entry), saved in each checkpoint;
        # rank 0 writes the line as lineage.json before this start's first checkpoint.
        self.attempt = new_attempt()
        self.lineage: list[list] = [[self.attempt, 0]]
        self._line_recorded = False
        # --resume at an epoch's end whose epoch_N.pt is missing (a kill between the two saves
        # of the epoch's end): N, written by _start_run from the resumed state
        self._missing_epoch: int | None = None
        self.vis = Visualizer(self.exp_dir, enabled=self.dist.is_master, tensorboard=not cfg.no_tensorboard,
                              html_page=not cfg.no_html, label_nc=cfg.label_nc, dataroot=cfg.dataroot,
                              phase=cfg.phase, direction=cfg.direction)
        # this start's messages are tagged with its first step (a resume to an earlier one cuts them)
        self.vis.step = 1
        self._stop_code = 0            # set by the SIGTERM/SIGINT handlers fit() installs (_STOP_SIGNALS)
        self._worker_death: str | None = None   # under DDP: this rank's dead loader worker (_restart_loader)
        self._sigints = 0              # SIGINTs received: the second aborts at once
        self._sigterm_previous = None  # {signum: handler} they replaced, restored when fit() ends
        self._loader = None            # the training DataLoader, its workers shut down when fit() ends
        self._sigchld_previous = None  # the SIGCHLD handler (torch's) _hold_worker_deaths replaced
        self._sigchld_held = False     # a SIGCHLD came while held
        self._fit_started = False      # fit() started this run (a Trainer fits once)
        self._fit_ended = False        # fit() is ending or has ended (its signal handlers restored)
        # train_hd.py sets it before fit(): it printed cfg.notes() with its start lines, and it ends
        # the process on a Ctrl-C, so that the lines here may name its exit status and its rerun
        self.from_command = False

        # the NVIDIA run folder this run was imported from (pix2pixhd.import_reference), saved in
        # each checkpoint as imported_run: what a resume refusal says the run started from
        self._imported_run: str | None = None
        # the config format of the checkpoint this run continues (resumed, or --load_pretrain's):
        # what its direction meant for A/B folders (TrainConfig.folders_direction); None: a new run
        self._source: tuple[Path, int] | None = None
        # samples of the dataset trained on (make_loader), saved in each checkpoint; on --resume,
        # the resumed checkpoint's (None: not recorded), which _start_run compares
        # (CycleGAN: also domain B's image count, which draws each sample's B)
        self._dataset_size: int | None = None
        self._saved_dataset_size: int | None = None
        self._dataset_size_B: int | None = None
        self._saved_dataset_size_B: int | None = None
        self._dataset_size_A: int | None = None        # CycleGAN: len() is max(|A|, |B|); both are kept
        self._saved_dataset_size_A: int | None = None
        if cfg.resume:
            ckpt = load_checkpoint(self.exp_dir, cfg.which_epoch)
            self.vis.step = ckpt["global_step"] + 1
            self._source = (checkpoint_path(self.exp_dir, cfg.which_epoch),
                            int((ckpt.get("config") or {}).get("config_format", 1)))
            self._load_models(ckpt, strict=True, source=checkpoint_path(self.exp_dir, cfg.which_epoch))
            self._imported_run = imported_source(ckpt)
            self._saved_dataset_size = ckpt.get("dataset_size")
            self._saved_dataset_size_B = ckpt.get("dataset_size_B")
            self._saved_dataset_size_A = ckpt.get("dataset_size_A")   # None in checkpoints of before
            loaded = ckpt.get("pretrain_checkpoint") or (ckpt.get("config") or {}).get("pretrain_checkpoint")
            if cfg.load_pretrain and isinstance(loaded, dict):   # what the run's first start loaded
                cfg._pretrain_checkpoint = loaded
            self.epoch, self.iter_in_epoch = ckpt["epoch"], ckpt["iter_in_epoch"]
            saved_world = len(ckpt.get("rng") or [None])   # one RNG state per rank that saved
            # checkpoints before samples_in_epoch was saved: every step took batchSize per rank
            self.samples_in_epoch = ckpt.get("samples_in_epoch",
                                             self.iter_in_epoch * cfg.batchSize * saved_world)
            self.global_step = self._resumed_step = ckpt["global_step"]
            self.lineage = line_of(ckpt) + [[self.attempt, self.global_step]]
            self.global_frozen = (self._frozen_in(ckpt) if ckpt.get("optimizer_G") is not None
                                  else global_frozen_at(self.cfg, self.epoch))
            if not self.global_frozen and global_frozen_at(self.cfg, self.epoch):
                # the loop only unfreezes: a larger --niter_fix_global would be recorded, not applied
                saved = (ckpt.get("config") or {}).get("niter_fix_global")
                raise ConfigError(
                    f"--niter_fix_global {cfg.niter_fix_global}: {self.exp_dir} trains its global generator "
                    f"already (unfrozen after epoch {saved if saved is not None else '?'}, it resumes at "
                    f"epoch {self.epoch}), and a resume cannot fix it again: drop --niter_fix_global, or "
                    f"give one below {self.epoch} (or start a new local stage from the global one)")
            self._build_optimizers()
            imported = ckpt.get("optimizer_G") is None and ckpt.get("imported_from")
            if imported:   # NVIDIA's run (python -m pix2pixhd.import_reference): weights and position only
                self.vis.log_message(
                    f"continuing the run imported from {ckpt['imported_from']}: its weights, epoch "
                    f"{self.epoch}, fresh Adam moments (it saved none), the learning rate the schedule "
                    f"gives epoch {self.epoch} ({lr_at_epoch(cfg, self.epoch):g}; "
                    + ("NVIDIA's --continue_train restarted at --lr whatever the epoch)" if cfg.model == "pix2pixhd"
                       else "the pix2pix/CycleGAN repo's --continue_train took it from --epoch_count)"))
            else:
                source = checkpoint_path(self.exp_dir, cfg.which_epoch)
                self._load_optimizer(self.opt_G, ckpt["optimizer_G"], source, "optimizer_G")
                if self.opt_D is not None:
                    self._load_optimizer(self.opt_D, ckpt["optimizer_D"], source, "optimizer_D")
            if "scaler" in ckpt and ckpt["scaler"]:
                self.scaler.load_state_dict(ckpt["scaler"])
            if imported:
                seed_rng(cfg.seed + self.dist.rank + 1_000_003 * self.epoch)
            elif self.dist.rank < saved_world:
                set_rng_state(ckpt["rng"][self.dist.rank])
            else:   # a rank the saved run did not have: a stream of its own, not another rank's
                seed_rng(cfg.seed + self.dist.rank + 1_000_003 * self.global_step)
            if self.pools:
                saved = ckpt["pools"][min(self.dist.rank, len(ckpt["pools"]) - 1)]
                held = saved["fake_B"]["size"]
                if held != cfg.pool_size:
                    raise ConfigError(
                        f"{checkpoint_path(self.exp_dir, cfg.which_epoch)}: its image pools hold up to "
                        f"{held} images, this run's --pool_size is {cfg.pool_size}: resume with --pool_size "
                        f"{held} (or without --pool_size: a resumed run keeps its own)")
                for i, (k, pool) in enumerate(self.pools.items()):
                    pool.load_state_dict(saved[k], self.device, self.memory_format)
                    if self.dist.rank >= len(ckpt["pools"]):
                        # a rank the saved run did not have starts from the last rank's history
                        # (images), but draws from a stream of its own: with that rank's generator
                        # state too, both ranks made the same swap/return choices from then on
                        pool.generator.manual_seed((cfg.seed * 1_000_003 + self.dist.rank) * 2 + i
                                                   + 1_000_003 * self.global_step)
            said = [f"resumed from epoch {self.epoch} iteration {self.iter_in_epoch}"]
            if saved_world != self.dist.world_size:
                b, ws = cfg.batchSize, self.dist.world_size
                said.append(
                    f"saved by {saved_world} process(es), resumed on {ws}: each step now trains {b * ws} "
                    f"image{'s' if b * ws > 1 else ''}, not {b * saved_world} (--batchSize {b} per process), so an epoch takes "
                    f"{'fewer' if ws > saved_world else 'more'} steps; the learning rate and the epochs "
                    "are unchanged"
                    + (f"; the {self.samples_in_epoch} samples of epoch {self.epoch} already trained are left "
                       "out and the rest shared among the processes now running (those that do not fill a "
                       "step on every process are left out, as at the end of any epoch)"
                       if self.samples_in_epoch else "")
                    + ("; the new ranks start random streams of their own"
                       if ws > saved_world else ""))
            threads = self._thread_note(ckpt, checkpoint_path(self.exp_dir, cfg.which_epoch))
            if threads:
                said.append(threads)
            if not imported:
                self._missing_epoch = self._missing_epoch_checkpoint(ckpt)
            for line in said:   # the loss log's record, and the console's
                self.vis.log_message(line)
                if self.dist.is_master:
                    print(f"note: {self.exp_dir.name}: {line}"
                          + (f" (step {self.global_step})" if line is said[0] else ""), file=sys.stderr, flush=True)
        else:
            if cfg.load_pretrain:
                self._load_previous_stage(Path(cfg.load_pretrain))
            self._build_optimizers()
        self._agree_on_start()
        self._wrap_distributed()

    # ---- set-up helpers ---------------------------------------------------------------------
    def _agree_on_dataset(self) -> None:
        """Under DDP, once every rank has its loader: the ranks read datasets of one size (each
        shards the same seeded order by its size; with other sizes they would take different
        numbers of steps, and the first rank to finish would leave the others in a collective).
        One all-gather; every rank raises the same DatasetError."""
        if not self.dist.distributed:
            return
        from pix2pixhd.data import DatasetError
        seen = gather_all((self._dataset_size, self._dataset_size_A, self._dataset_size_B, self.cfg.dataroot),
                          self.dist)
        if len({x[:3] for x in seen}) > 1:
            said = ", ".join(f"rank {r}: {n} samples" + (f" ({na} domain A, {nb} domain B images)" if nb is not None
                                                         else "")
                             + f" in {root}" for r, (n, na, nb, root) in enumerate(seen))
            raise DatasetError(f"the ranks read datasets of different sizes ({said}): every rank must read the "
                               "same dataset (one shared copy, or identical copies on every node)")

    def _agree_on_start(self) -> None:
        """Under DDP, before the first collective of training (the DDP wrap): every rank must run
        the same options (:data:`RANK_LOCAL_OPTIONS` aside) and start from the same place (the same
        checkpoint's step, or all fresh). A rank that differs (another command typed on another
        node; a checkpoints folder this node does not share, so --auto_resume started fresh) would
        otherwise train out of step until a collective failed or hung for the process-group
        timeout. One all-gather; every rank raises the same ConfigError."""
        if not self.dist.distributed:
            return
        import dataclasses
        # (--resume and --which_epoch as --auto_resume resolved them: compared through the start)
        opts = {k: v for k, v in dataclasses.asdict(self.cfg).items()
                if k not in RANK_LOCAL_OPTIONS and k not in ("resume", "which_epoch")}
        start = (bool(self.cfg.resume), self.global_step, self.epoch, self.iter_in_epoch, self.samples_in_epoch)
        seen = gather_all((opts, start), self.dist)
        (opts0, start0), same = seen[0], "; every rank must run the same command (on several nodes: the same options on each node's torchrun)"
        for r, (o, st) in enumerate(seen[1:], 1):
            diff = differing_keys(opts0, o)
            if diff:
                said = ", ".join(f"--{k} {o.get(k)!r} (rank 0: {opts0.get(k)!r})" for k in diff[:6])
                more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
                raise ConfigError(f"rank {r}'s options differ from rank 0's: {said}{more}{same}")
            if st != start0:
                def where(x):
                    return (f"resumes {self.exp_dir} at step {x[1]} (epoch {x[2]}, iteration {x[3]})" if x[0]
                            else f"starts {self.exp_dir} fresh")
                raise ConfigError(
                    f"rank {r} {where(st)}, rank 0 {where(start0)}: every rank must read the same run folder "
                    "(--checkpoints_dir on a file system every node shares, holding the same files; "
                    "--auto_resume on a node that cannot see latest.pt starts fresh)")

    def _thread_note(self, ckpt: dict, path: Path) -> str | None:
        """On a CPU resume of a checkpoint saved on the CPU with another torch thread count: the
        note that says so (CPU kernels split reductions by the thread count, so the arithmetic
        differs from the first step) and how to resume exactly; else None (older checkpoints
        record no count)."""
        saved, now = ckpt.get("num_threads"), torch.get_num_threads()
        if self.device.type != "cpu" or ckpt.get("device_type") != "cpu" or not isinstance(saved, int) \
                or saved == now:
            return None
        return (f"{path.name} was saved by a run with {saved} CPU thread(s), this one has {now}: CPU kernels "
                "split their sums by the thread count, so from here on the run is not bit-exact with an "
                f"uninterrupted one; for an exact resume run it with OMP_NUM_THREADS={saved} (or "
                f"torch.set_num_threads({saved}))")

    def _missing_epoch_checkpoint(self, ckpt: dict) -> int | None:
        """N when ``ckpt`` is the end of epoch N (the next epoch at iteration 0), the run that saved
        it writes epoch_N.pt there (its --save_epoch_freq, or N is its last epoch) and the folder
        holds none: that run saved latest.pt at the epoch's end, then died before epoch_N.pt (the
        next save). Every rank decides alike (same state, same folder)."""
        n = ckpt["epoch"] - 1
        if ckpt["iter_in_epoch"] != 0 or n < 1:
            return None
        saved = {**self.cfg.to_dict(), **(ckpt.get("config") or {})}
        if n % saved["save_epoch_freq"] and n != saved["niter"] + saved["niter_decay"]:
            return None
        return None if checkpoint_path(self.exp_dir, n).exists() else n

    def _frozen_in(self, ckpt: dict) -> bool:
        """Whether the global generator was frozen when ``ckpt`` was saved. Checkpoints written
        before the flag was saved tell it by their G optimizer: enhancer-only means frozen."""
        if "global_frozen" in ckpt:
            return bool(ckpt["global_frozen"])
        g = _unwrap(self.G)
        if not isinstance(g, LocalEnhancer):
            return False
        n_saved = sum(len(group["params"]) for group in ckpt["optimizer_G"]["param_groups"])
        n_all = len(list(g.parameters())) + (len(list(self.E.parameters())) if self.E is not None else 0)
        return n_saved < n_all

    def _g_params(self) -> list[nn.Parameter]:
        g = _unwrap(self.G)
        params = list(g.local_parameters()) if self.global_frozen else list(g.parameters())
        return params + (list(self.E.parameters()) if self.E is not None else [])

    def _build_optimizers(self) -> None:
        g = _unwrap(self.G)
        if isinstance(g, LocalEnhancer):
            g.model.requires_grad_(not self.global_frozen)
            self._fix_global_statistics()
        lr = lr_at_epoch(self.cfg, self.epoch)
        self.opt_G = self._adam(self._g_params(), lr)
        self.opt_D = self._adam(_unwrap(self.D).parameters(), lr) if self.D is not None else None

    def _adam_impl(self) -> dict:
        """Torch's fused Adam kernel on CUDA and CPU (one pass per tensor, no temporaries; on CPU
        the default per-tensor loop took about a quarter of a reference-width fp32 step, see
        docs/benchmarks.md); torch's default elsewhere."""
        return {"fused": True, "foreach": None} if self.device.type in ("cuda", "cpu") else {}

    def _adam(self, params, lr: float) -> torch.optim.Adam:
        """The reference's Adam (betas (beta1, 0.999)), with :meth:`_adam_impl`'s kernel."""
        return torch.optim.Adam(params, lr=lr, betas=(self.cfg.beta1, 0.999), **self._adam_impl())

    def _load_optimizer(self, opt: torch.optim.Adam, saved: dict, source: Path | None = None,
                        name: str = "optimizer") -> None:
        """Restore ``opt``'s state from ``saved`` (``name`` in checkpoint file ``source``), keeping
        this process's kernel choice (torch restores a group's fused/foreach flags from the file,
        which would make a run saved on one device, or by an older version, step with that device's
        kernel) and this run's betas: a --beta1 given with --resume applies from here on, as the
        note about changed options says (the lr is set by the schedule at every epoch). A state
        that does not fit its parameters (a damaged or crafted file) is a CheckpointError: torch
        loads it as it is, and fused Adam's first step then reads and writes out of bounds."""
        impl = {k: g[k] for g in opt.param_groups[:1] for k in ("fused", "foreach") if k in g}
        try:
            opt.load_state_dict(saved)
            check_optimizer_state(opt)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise CheckpointError(f"{source or 'the checkpoint'}: its {name} does not fit this run's parameters "
                                  f"({e}); the file is damaged, or was saved with other options or by another "
                                  "version: resume from another checkpoint of the run (--which_epoch N), or "
                                  "load its weights alone into a new run (--load_pretrain)") from None
        for group in opt.param_groups:
            group.update(impl, betas=(self.cfg.beta1, 0.999))
        match_optimizer_state(opt)

    def _fix_global_statistics(self) -> None:
        """While the global generator is fixed its BatchNorm layers still normalise with each
        batch's statistics (train mode, as the reference's did) but track none: their running
        mean, variance and num_batches_tracked stay as loaded. Freezing turns gradients off only;
        this keeps the rest of the fixed part's state fixed too. Undone when it is unfrozen."""
        for m in _unwrap(self.G).model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.track_running_stats = not self.global_frozen

    def _unfreeze_global(self) -> None:
        """Past niter_fix_global: one optimizer over all of G, keeping the enhancer's Adam state.

        (The reference built a new optimizer here but its training loop kept stepping the old one.)
        """
        old = self.opt_G
        self.global_frozen = False
        _unwrap(self.G).model.requires_grad_(True)
        self._fix_global_statistics()
        self.opt_G = self._adam(self._g_params(), old.param_groups[0]["lr"])
        for p, s in old.state.items():
            self.opt_G.state[p] = s
        self._wrap_distributed(rewrap_g=True)
        self.vis.log_message(f"epoch {self.epoch}: global generator unfrozen; G optimizer now holds all "
                             f"{sum(p.numel() for p in self._g_params())} parameters", step=self.global_step + 1)

    def _networks(self) -> dict[str, nn.Module | None]:
        """Every network of the run under its checkpoint key (``models.network_keys``), unwrapped
        (None: the run has no such network)."""
        if self.cfg.model == "cyclegan":
            g, d = _unwrap(self.G), _unwrap(self.D)
            return {"G_A": g.G_A, "G_B": g.G_B, "D_A": d.D_A, "D_B": d.D_B}
        return {k: _unwrap(m) if m is not None else None for k, m in (("G", self.G), ("D", self.D), ("E", self.E))}

    def _load_models(self, ckpt: dict, strict: bool, source: Path) -> None:
        """Every network of the run from checkpoint ``ckpt``, read from file ``source`` (named by errors)."""
        from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
        for key, net in self._networks().items():
            if net is None:
                continue
            if ckpt.get(key) is None and key in ("D", "D_A", "D_B") and ckpt.get("imported_from"):
                self.vis.log_message(f"{ckpt['imported_from']} held no {key} (no *_net_{key}.pth of the epoch "
                                     f"imported): {key} starts from its initialisation")
                continue
            if ckpt.get(key) is None:
                what = "a feature encoder" if key == "E" else f"a {key} network"
                held = [k for k in ("G", "D", "E", "G_A", "G_B", "D_A", "D_B") if ckpt.get(k) is not None]
                raise CheckpointMismatchError(f"this run ({self.cfg.model}) uses {what} but {source} "
                                              f"holds none (it holds {held}); {self._why_none(ckpt, key)}")
            load_reference_weights(net, ckpt[key], strict=strict, source=f"{source}'s {key}")

    def _why_none(self, ckpt: dict, key: str) -> str:
        """Why checkpoint ``ckpt`` holds no network ``key`` that this run builds: the options of its
        saved config that decide whether that network is there, where they differ from this run's
        (the same --model: "another --model?" misled), else its other --model."""
        saved = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
        model = saved.get("model")
        if model is not None and model != self.cfg.model:
            return f"it was written by a --model {model} run"
        deciding = {"D": ("lambda_GAN",) if self.cfg.model == "pix2pix" else (),
                    "E": ("load_features", "instance_feat", "label_feat")}.get(key, ())
        differ = [k for k in deciding if k in saved and saved[k] != getattr(self.cfg, k)]
        if not deciding:
            return "was it written by another --model?"
        if not differ:   # its config does not say
            return (f"was it saved with another {' or '.join('--' + k for k in deciding)}"
                    + ("?" if model is not None else " or --model?"))
        ours = " ".join(f"--{k} {getattr(self.cfg, k)}" for k in differ)
        return (f"it was saved with {', '.join(f'{k} {saved[k]}' for k in differ)}, and this run has {ours}: "
                f"train with the checkpoint's {', '.join('--' + k for k in differ)}, or start a new run "
                "(another --name)")

    def _load_previous_stage(self, path: Path) -> None:
        """global → local: G's global part (final conv dropped) and D's scales by name;
        local → finetune: everything."""
        from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
        from pix2pixhd.paths import file_sha256
        ckpt = load_checkpoint(path, self.cfg.which_epoch)
        file = path if path.is_file() else checkpoint_path(path, self.cfg.which_epoch)
        self._source = (file, int(ckpt["config"].get("config_format", 1)))
        # which file this stage started from (the run loaded may have trained on since): saved in
        # config.json and every checkpoint of this run. Where in its training: the epochs it had
        # completed and the iterations of the next (a checkpoint's "epoch" is the one it runs next)
        epoch, it = ckpt.get("epoch"), ckpt.get("iter_in_epoch")
        self.cfg._pretrain_checkpoint = {
            "path": str(file.resolve()), "global_step": ckpt.get("global_step"),
            "epochs_done": epoch - 1 if isinstance(epoch, int) else None, "iter_in_epoch": it,
            "sha256": file_sha256(file) if self.dist.is_master else None}   # rank 0 alone writes it
        prev = load_run_config(file, checkpoint=ckpt)   # its own config, checked (named) against its weights
        if loads_whole(prev, self.cfg):
            self._load_models(ckpt, strict=True, source=file)
            return
        if not (prev.netG == "global" and self.cfg.netG == "local"):
            raise CheckpointMismatchError(f"{file}: cannot load a {prev.netG} generator into {self.cfg.netG}")
        g = _unwrap(self.G)
        own = g.state_dict()
        part = {k: v for k, v in ckpt["G"].items() if k in own and k.startswith("model.")}
        missing = [k for k in own if k.startswith("model.") and k not in part]
        bad = [k for k, v in part.items() if v.shape != own[k].shape]
        first = next((k for k, v in own.items() if k.startswith("model.") and v.dim() == 4), None)
        if first in part and part[first].shape[1] != own[first].shape[1]:
            # G's input differs, not its width: name the options that make the input channels
            from pix2pixhd.models import generator_input_nc
            opts = ("label_nc", "input_nc", "no_instance", "instance_feat", "label_feat", "feat_num")
            differ = [k for k in opts if getattr(prev, k) != getattr(self.cfg, k)] or list(opts)
            raise CheckpointMismatchError(
                f"{file}: its global generator takes {generator_input_nc(prev)} input channels, this "
                f"run's {generator_input_nc(self.cfg)}: the options that make G's input differ ("
                + ", ".join(f"{k} {getattr(prev, k)} there, {getattr(self.cfg, k)} here" for k in differ)
                + "). Give the global stage's values (or drop these options: --load_pretrain's are "
                "inherited), or train the global stage again with this input")
        if missing or bad:
            others = [k for k in ("n_downsample_global", "n_blocks_global", "norm")
                      if getattr(prev, k) != getattr(self.cfg, k)]
            raise CheckpointMismatchError(
                f"{file}: the global generator (ngf={prev.ngf}, n_downsample_global="
                f"{prev.n_downsample_global}, n_blocks_global={prev.n_blocks_global}, upsample={prev.upsample}) "
                f"does not fit this local generator's global part (ngf={self.cfg.ngf} × "
                f"2^{self.cfg.n_local_enhancers}, upsample={self.cfg.upsample}); missing {missing[:3]}, shape "
                f"mismatches {bad[:3]}. Use --ngf {prev.ngf // 2 ** self.cfg.n_local_enhancers} and "
                f"--upsample {prev.upsample}" + "".join(f" --{k} {getattr(prev, k)}" for k in others))
        differ = [k for k in ("ndf", "n_layers_D", "norm", "output_nc") if getattr(prev, k) != getattr(self.cfg, k)]
        differ += ["num_D"] if self.cfg.num_D < prev.num_D else []
        if differ and ckpt.get("D") is not None:   # D's scales load by name: the same scales, or more
            raise CheckpointMismatchError(
                f"{file}: its discriminator was built with "
                + ", ".join(f"{k} {getattr(prev, k)}" for k in differ) + ", this run's with "
                + ", ".join(f"{k} {getattr(self.cfg, k)}" for k in differ) + ": give the global stage's values "
                f"(or drop these options: --load_pretrain's are inherited; num_D: {prev.num_D} or more), or "
                "train the global stage again with these")
        g.load_state_dict(part, strict=False)
        d = _unwrap(self.D)
        new_scales = tuple(d.scale_prefix(i) for i in range(prev.num_D, self.cfg.num_D))
        if ckpt.get("D") is not None:   # an imported reference run may hold G alone
            load_reference_weights(d, ckpt["D"], strict=True, ignore_prefixes=new_scales, source=f"{file}'s D")
        if self.E is not None and ckpt.get("E") is not None:
            load_reference_weights(self.E, ckpt["E"], source=f"{file}'s E")
        self.vis.log_message(f"loaded the global stage from {path}: {len(part)} G tensors, D scales "
                             f"0..{prev.num_D - 1} (new: {', '.join(new_scales) or 'none'})")

    def _wrap_distributed(self, rewrap_g: bool = False) -> None:
        if self.cfg.compile and not rewrap_g:
            # in place (nn.Module.compile): state_dict keys, _unwrap and the G-pass D stay the same
            for m in (self.G, self.D, self.E):
                if m is not None:
                    # inductor draws random numbers (dropout's masks) with its own generator;
                    # fallback_random draws them with torch's, as eager does, so --compile trains
                    # the same masks. Given as an option, it applies to these modules only.
                    m.compile(options={"fallback_random": True})
        if not self.dist.distributed:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        from pix2pixhd.distributed import wrap
        bf16 = self.cfg.ddp_bf16_grads
        if rewrap_g or not isinstance(self.G, DDP):
            self.G = wrap(_unwrap(self.G), self.dist, bf16)
        if self.D is not None and not isinstance(self.D, DDP):
            self.D = wrap(self.D, self.dist, bf16)
        if self.E is not None and not isinstance(self.E, DDP):
            # E trains through G's loss; unwrapped, each rank's E would drift apart.
            self.E = wrap(self.E, self.dist, bf16)

    def release_distributed(self) -> None:
        """Drop the DDP wrappers of G, D and E (the modules stay, unwrapped). Their reducers hold
        the process group and, freed after it ends, end it again inside a destructor that joins
        gloo's threads while holding the interpreter lock those threads may wait for: a hang
        until SIGKILL. train_hd.py calls this before it ends the group: an error's traceback
        keeps fit()'s frames, and a frame its function, whose closures hold this Trainer, so
        the Trainer outlives the group."""
        from torch.nn.parallel import DistributedDataParallel as DDP
        for name in ("G", "D", "E"):
            m = getattr(self, name, None)
            if isinstance(m, DDP):
                setattr(self, name, m.module)

    # ---- one step ----------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """uint8/int batch → (x [N, Cin, H, W], real [N, 3, H, W] in [-1, 1], inst) on the device."""
        dev, cfg = self.device, self.cfg
        nb = dev.type == "cuda"
        label = batch["label"].to(dev, non_blocking=nb)
        inst = batch["inst"].to(dev, non_blocking=nb) if "inst" in batch and batch["inst"] is not None else None
        real = image_to_float(batch["image"].to(dev, non_blocking=nb))
        src = batch.get("path", [None])[0] if isinstance(batch.get("path"), list) else None
        # x is D's condition too, so it never holds the features (G gets them appended).
        x = encode_input(label, None if cfg.no_instance else inst, label_nc=cfg.label_nc, source=src)
        if cfg.label_feat:
            inst = label
        return (x.contiguous(memory_format=self.memory_format),
                real.contiguous(memory_format=self.memory_format), inst)

    def _features(self, real: torch.Tensor, inst: torch.Tensor | None, batch: dict) -> torch.Tensor | None:
        """G's extra input [N, feat_num, H, W]: E's instance-averaged map, or the precomputed one."""
        if self.cfg.load_features and self.cfg.use_features:
            if batch.get("feat") is None:
                raise ConfigError("--load_features: the batch has no 'feat' map; write the {phase}_feat "
                                 "folder with `python -m pix2pixhd.features precompute --checkpoint "
                                 "<global run>` or drop --load_features")
            return image_to_float(batch["feat"].to(self.device, non_blocking=self.device.type == "cuda"))
        if self.E is None:
            return None
        if inst is None:
            raise ConfigError("--instance_feat needs instance maps: drop --no_instance or use --label_feat")
        return self.E(real, inst)

    def _diffaug_draw(self, x: torch.Tensor) -> diffaug.AugmentParams | None:
        """This step's DiffAugment parameters for the batch of ``x`` (None: --diffaug off)."""
        if not self.diffaug:
            return None
        return diffaug.draw(self.diffaug, x.shape[0], x.shape[-2], x.shape[-1])

    def _d_input(self, cond: torch.Tensor | None, image: torch.Tensor,
                 aug: diffaug.AugmentParams | None) -> torch.Tensor:
        """D's input: (cond, image) concatenated (``image`` alone when ``cond`` is None), then
        transformed by ``aug`` when --diffaug is on (colour on the image channels only)."""
        d_in = image if cond is None else torch.cat([cond, image], 1)
        return d_in if aug is None else diffaug.augment(d_in, aug, image_channels=image.shape[1])

    def _d_real_fake(self, x, real, fake_detached, aug: diffaug.AugmentParams | None = None):
        """D on (x, real) and (x, fake) through the (DDP-wrapped) D, so its gradients sync;
        both pairs transformed by the same ``aug`` (--diffaug).

        With instance norm every sample is normalised alone, so one forward over the two halves
        stacked along the batch equals two forwards and runs as one pass (DDP also wants one
        forward per backward). BatchNorm would mix the halves' statistics: two passes there, fake
        first as the reference runs them (so D's running statistics follow the reference's: fake,
        real, then G's pass).
        """
        real_in, fake_in = self._d_input(x, real, aug), self._d_input(x, fake_detached, aug)
        if self.cfg.norm != "instance":
            pred_fake = self.D(fake_in)
            return self.D(real_in), pred_fake
        n = x.shape[0]
        both = self.D(torch.cat([real_in, fake_in], 0))
        return ([[f[:n] for f in s] for s in both], [[f[n:] for f in s] for s in both])

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        self._stepped = []
        if self.cfg.model == "cyclegan":
            return self._cyclegan_step(batch)
        if self.cfg.model == "pix2pix":
            return self._pix2pix_step(batch)
        return self._pix2pixhd_step(batch)

    def _pix2pix_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """pix2pix (Isola et al. 2017) as its reference trains it: D steps first on ½(real + fake),
        then G on λ_GAN·cGAN + λ_L1·L1 against the updated D."""
        cfg, t = self.cfg, self.timer
        x, real, _ = self.prepare(batch)
        t.mark("prepare")
        with self._autocast():
            fake = self.G(x)
        t.mark("G_forward")
        aug = self._diffaug_draw(x)   # one draw for the step: fake and real, D and G passes
        cond = lambda y: self._d_input(None if cfg.no_cond_D else x, y, aug)  # noqa: E731
        losses: dict[str, torch.Tensor] = {}
        if self.D is not None:
            # Two passes (BatchNorm must not mix real and fake statistics), each followed by its own
            # backward of half its loss: the gradients add up to ½(real + fake)'s, and each pass's
            # graph is freed before the next is built.
            self.opt_D.zero_grad(set_to_none=True)
            for name, inp, target in (("D_fake", fake.detach(), False), ("D_real", real, True)):
                with self._autocast():
                    losses[name] = self.criterion_gan(self.D(cond(inp)), target)
                self._check_finite(losses)
                self.scaler.scale(0.5 * losses[name]).backward()
            self.scaler.step(self.opt_D)
            self._stepped.append("D")
            t.mark("D_forward_backward")
        d_inner = _unwrap(self.D) if self.D is not None else None
        with _frozen(d_inner):
            with self._autocast():
                loss_G = fake.new_zeros((), dtype=torch.float32)
                if d_inner is not None:
                    losses["G_GAN"] = self.criterion_gan(d_inner(cond(fake)), True, for_discriminator=False)
                    loss_G = loss_G + cfg.lambda_GAN * losses["G_GAN"]
                loss_G = self._add_l1(loss_G, fake, real, losses)
            self._backward_G(loss_G, losses)
        return self._finish((self.opt_G,), losses, {"label": batch["label"], "synthesized": fake, "real": real})

    def _pix2pixhd_step(self, batch: dict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        t = self.timer
        x, real, inst = self.prepare(batch)
        t.mark("prepare")
        d_inner = _unwrap(self.D)
        with self._autocast():
            feat = self._features(real, inst, batch)
            g_in = torch.cat([x, feat], 1) if feat is not None else x
            fake = self.G(g_in)
        t.mark("G_forward")
        aug = self._diffaug_draw(x)   # one draw for the step: the real and fake pairs, D and G passes
        with self._autocast():
            pred_real, pred_fake_d = self._d_real_fake(x, real, fake.detach(), aug)
            loss_D_real = self.criterion_gan(pred_real, True)
            loss_D_fake = self.criterion_gan(pred_fake_d, False)
            loss_D = 0.5 * (loss_D_real + loss_D_fake)
        losses = {"D_real": loss_D_real, "D_fake": loss_D_fake}
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_D).backward()
        t.mark("D_forward_backward")

        with _frozen(d_inner):  # the G pass computes no D weight gradients
            with self._autocast():
                pred_fake = d_inner(self._d_input(x, fake, aug))
                loss_G = self.criterion_gan(pred_fake, True, for_discriminator=False)
                losses["G_GAN"] = loss_G
                if not cfg.no_ganFeat_loss:
                    fm = feature_matching_loss(pred_fake, pred_real, n_layers_D=cfg.n_layers_D,
                                               num_D=cfg.num_D, lambda_feat=cfg.lambda_feat)
                    losses["G_GAN_Feat"] = fm
                    loss_G = loss_G + fm
                if self.vgg is not None:
                    # the ImageNet normalisation and the L1s in fp32; VGG's convs, inside autocast,
                    # in the run's precision like every other conv of the step (as the reference's
                    # apex O1 ran them)
                    vgg = self.vgg(fake.float(), real.float()) * cfg.lambda_feat
                    losses["G_VGG"] = vgg
                    loss_G = loss_G + vgg
                loss_G = self._add_l1(loss_G, fake, real, losses)
            self._backward_G(loss_G, losses)
        return self._finish((self.opt_G, self.opt_D), losses,
                            {"label": batch["label"], "synthesized": fake, "real": real})

    def _cyclegan_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """CycleGAN as its reference trains it (see the module docstring): G_A and G_B step on the
        adversarial, cycle and identity losses with both Ds frozen, then D_A and D_B on real
        images vs a history-pool batch of fakes. Both losses use the pre-update networks, so
        stepping G and D together at the end equals the reference's G-then-D order."""
        cfg, t = self.cfg, self.timer
        nb = self.device.type == "cuda"
        real_A, real_B = (image_to_float(batch[k].to(self.device, non_blocking=nb))
                          .contiguous(memory_format=self.memory_format) for k in ("A", "B"))
        t.mark("prepare")
        identity = cfg.lambda_identity > 0
        with self._autocast():
            out = self.G(real_A, real_B, identity)
        t.mark("G_forward")
        d_inner = _unwrap(self.D)
        l1 = lambda a, b: self.criterion_l1(a.float(), b.float())  # noqa: E731 (losses in fp32)
        with _frozen(d_inner):
            with self._autocast():
                g = {"G_A": self.criterion_gan(d_inner.D_A(out["fake_B"]), True, for_discriminator=False),
                     "G_B": self.criterion_gan(d_inner.D_B(out["fake_A"]), True, for_discriminator=False),
                     "cycle_A": l1(out["rec_A"], real_A) * cfg.lambda_A,
                     "cycle_B": l1(out["rec_B"], real_B) * cfg.lambda_B}
                zero = g["G_A"].new_zeros(())
                g["idt_A"] = l1(out["idt_A"], real_B) * (cfg.lambda_B * cfg.lambda_identity) if identity else zero
                g["idt_B"] = l1(out["idt_B"], real_A) * (cfg.lambda_A * cfg.lambda_identity) if identity else zero
            self._backward_G(sum(g.values()), g)
        fake_B, fake_A = self.pools["fake_B"].query(out["fake_B"]), self.pools["fake_A"].query(out["fake_A"])
        with self._autocast():
            p_real_B, p_fake_B, p_real_A, p_fake_A = self.D(real_B, fake_B, real_A, fake_A)
            d = {"D_A": 0.5 * (self.criterion_gan(p_real_B, True) + self.criterion_gan(p_fake_B, False)),
                 "D_B": 0.5 * (self.criterion_gan(p_real_A, True) + self.criterion_gan(p_fake_A, False))}
        self._check_finite(d)
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(d["D_A"] + d["D_B"]).backward()
        t.mark("D_forward_backward")
        losses = {k: {**d, **g}[k] for k in ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")}
        return self._finish((self.opt_G, self.opt_D), losses,
                            {"real_A": real_A, "fake_B": out["fake_B"], "rec_A": out["rec_A"],
                             "real_B": real_B, "fake_A": out["fake_A"], "rec_B": out["rec_B"]})

    def _add_l1(self, loss_G: torch.Tensor, fake: torch.Tensor, real: torch.Tensor,
                losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """``loss_G`` + λ_L1·L1(fake, real), in fp32, when --lambda_L1 > 0 (pix2pix's term;
        pix2pixHD's default is 0, not in the reference's recipe); logged unweighted as ``G_L1``."""
        if self.cfg.lambda_L1 <= 0:
            return loss_G
        losses["G_L1"] = self.criterion_l1(fake.float(), real.float())
        return loss_G + self.cfg.lambda_L1 * losses["G_L1"]

    def _backward_G(self, loss_G: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        """Refuse non-finite losses before any update, then G's backward."""
        self.timer.mark("G_losses")
        self._check_finite(losses)
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_G).backward()
        self.timer.mark("G_backward")

    def _finish(self, optimizers, losses, visuals: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Step ``optimizers``; keep ``visuals`` (name -> batch [N, C, H, W], or label ids) for the
        image display."""
        for opt in optimizers:
            self.scaler.step(opt)
        if self.scaler.is_enabled():
            # GradScaler skips the update of an optimizer with inf/NaN gradients and then lowers
            # the scale (one scaler for G and D: a lower scale means this step skipped one)
            before = self.scaler.get_scale()
            self.scaler.update()
            scale = self.scaler.get_scale()
            if scale < before:
                self.skipped_steps += 1
                if self.skipped_steps == 1 and self.dist.is_master:
                    _note(f"note: fp16: step {self.global_step + 1} had inf/NaN gradients: GradScaler skipped "
                          f"the update of the optimizer(s) holding them and lowered the loss scale to {scale:g}; "
                          "skipped steps are counted in the log (skipped_steps, loss_scale; a few while the "
                          "scale settles are usual)")
        else:
            self.scaler.update()
        self.timer.mark("optimizer")
        self._last = {k: v.detach() for k, v in visuals.items()}
        return {k: v.detach() for k, v in losses.items()}

    def _check_finite(self, losses: dict[str, torch.Tensor]) -> None:
        vals = torch.stack([v.detach().float() for v in losses.values()])
        if not bool(torch.isfinite(vals).all()):
            bad = {k: float(v.detach()) for k, v in losses.items() if not math.isfinite(float(v.detach()))}
            latest = self.exp_dir / "latest.pt"
            stepped = self._stepped
            updated = (f"{' and '.join(stepped)} had already been updated in this step (pix2pix updates D "
                       "before it computes G's losses, as its reference does), so resume from that "
                       "checkpoint rather than from these weights" if stepped else "no weights were updated")
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.epoch}, iteration {self.iter_in_epoch + 1} (step "
                f"{self.global_step + 1}): {bad}. The last good checkpoint "
                f"{latest if latest.exists() else '(none written yet)'} is intact; {updated}. Try a "
                f"lower --lr, {_PRECISION_ADVICE.get(self.cfg.precision, 'or ')}check the data.")

    # ---- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = [rng_state()]  # one per rank: every rank resumes its own random streams
        if self.dist.distributed:
            rng = gather_all(rng[0], self.dist)
        pools = None
        if self.pools:   # every rank's history (each D sees its own); gathered on rank 0 only
            pools = [{k: p.state_dict() for k, p in self.pools.items()}]
            if self.dist.distributed:
                gathered = [None] * self.dist.world_size if self.dist.is_master else None
                torch.distributed.gather_object(pools[0], gathered, dst=0)
                pools = gathered
        return {
            **{k: m.state_dict() if m is not None else None for k, m in self._networks().items()},
            **({"pools": pools} if self.pools else {}),
            "optimizer_G": self.opt_G.state_dict(),
            "optimizer_D": self.opt_D.state_dict() if self.opt_D is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch, "global_step": self.global_step,
            "samples_in_epoch": self.samples_in_epoch, "world_size": self.dist.world_size,
            "global_frozen": self.global_frozen,
            "lr": self.opt_G.param_groups[0]["lr"], "rng": rng,
            "config": self.cfg.to_dict(), "version": pix2pixhd.__version__,
            "attempt": self.attempt, "lineage": [list(x) for x in self.lineage],
            **({"imported_run": self._imported_run} if self._imported_run else {}),
            # what a resume compares (a note where they differ): the CPU thread count, which decides
            # the CPU's rounding, and the number of samples trained on
            "num_threads": torch.get_num_threads(), "device_type": self.device.type,
            **({"dataset_size": self._dataset_size} if self._dataset_size is not None else {}),
            **({"dataset_size_A": self._dataset_size_A} if self._dataset_size_A is not None else {}),
            **({"dataset_size_B": self._dataset_size_B} if self._dataset_size_B is not None else {}),
            **({"pretrain_checkpoint": self.cfg.pretrain_checkpoint} if self.cfg.pretrain_checkpoint else {}),
            "environment": environment(self.device),   # provenance only
        }

    def save(self, which: str | int) -> Path | None:
        """Write checkpoint ``which`` ('latest' or an epoch number) and config.json (rank 0; every
        rank calls it). The first save of a Trainer that fit() did not start checks the folder as
        fit() does (:meth:`_claim_folder`): another run's checkpoints are never written over. An
        epoch's, once written, removes the older ones --keep_epoch_checkpoints does not keep."""
        state = self.state_dict()  # every rank joins the RNG gather
        if not self.dist.is_master:
            return None
        if not self._line_recorded:   # _start_run wrote it, unless this Trainer was not fit()
            self._claim_folder()
            self._record_line()
        if self._resumed_step is not None and str(which) not in self._written:
            self._written.add(str(which))
            self._keep_later(checkpoint_path(self.exp_dir, which))
        path = save_checkpoint(state, self.exp_dir, which, self.cfg.to_json())
        if self._replaced is not None or self._leftovers:   # --overwrite: the new run has a checkpoint now
            drop_replaced(self._replaced, self._leftovers)
            self._replaced, self._leftovers = None, []
        if str(which) != "latest":
            self._drop_old_epochs(int(which))
        return path

    def _drop_old_epochs(self, written: int) -> None:
        """--keep_epoch_checkpoints K: once epoch_N.pt of epoch ``written`` is in place (renamed
        over, rank 0), remove the run's epoch_N.pt of earlier epochs beyond the K - 1 newest, so
        that K are kept with it. Only :func:`epoch_checkpoints`' files: never latest.pt, a link,
        nor what a resume kept aside (epoch_N_stepS.pt). Those of later epochs, left by the
        training a --which_epoch resume went back from, are not counted or removed (each is kept
        aside before this run overwrites it). A file that cannot be removed is named in one note,
        once, and the run goes on: a full disk later says so itself."""
        k = self.cfg.keep_epoch_checkpoints
        if not k:
            return
        held = epoch_checkpoints(self.exp_dir)
        earlier = sorted((n for n in held if n < written), reverse=True)
        failed = []
        for n in sorted(earlier[k - 1:]):
            try:
                held[n].unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                failed.append((held[n], e))
        failed = [(p, e) for p, e in failed if p not in self._undropped]
        if failed:
            self._undropped.update(p for p, _ in failed)
            names = ", ".join(p.name for p, _ in failed)
            msg = (f"--keep_epoch_checkpoints {k}: could not remove {names} from {self.exp_dir} "
                   f"({failed[0][1].strerror or failed[0][1]}): training goes on; remove "
                   f"{'them' if len(failed) > 1 else 'it'} by hand")
            self.vis.log_message(msg, step=self.global_step)
            _note(f"note: {msg}")

    def _claim_folder(self) -> None:
        """Before the first save of a Trainer that fit() did not start (Python): unless it was
        built with resume=True, a folder holding another run is refused (:func:`check_new_run`'s
        RunExistsError), or with overwrite=True moved aside as fit() would (:func:`move_aside`,
        under the folder's lock; the save deletes it once written)."""
        cfg = self.cfg
        if cfg.resume or getattr(cfg, "_restart", False):
            return
        check_new_run(cfg, by_save=True)
        if cfg.overwrite:
            from pix2pixhd.run_folder import replaced_leftovers
            lock = lock_run(self.exp_dir)   # refused while a training process holds the folder
            try:
                self._leftovers = replaced_leftovers(self.exp_dir)
                self._replaced = move_aside(self.exp_dir)
                if self._replaced is not None:   # the lock file went with it
                    lock.moved(self._replaced)
            finally:
                lock.release()

    def _record_line(self) -> None:
        """Write this start's line of training as lineage.json (rank 0), before its first
        checkpoint: a kill between the two leaves the new line, on which every file of the old one
        up to the step resumed from is, and every later one is not (they are what this start
        went back from); the other order would leave this start's first checkpoint off the line."""
        write_lineage(self.exp_dir, self.lineage)
        self._line_recorded = True

    def _keep_later(self, path: Path) -> None:
        """Before this resumed run first overwrites ``path``: when that file holds a later step
        than the run resumed from (``--which_epoch`` went back, so it is the only copy of that
        training), keep it as ``NAME_stepN.pt`` beside it, a name no checkpoint listing takes for
        latest.pt or an epoch_N.pt (a hard link; a copy where the file system has none), and say
        so. A file that cannot be read is left to be replaced (--auto_resume said so)."""
        if not path.is_file():
            return
        try:   # memory-mapped: only what it takes to read the step
            held = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            step, epoch, it = int(held["global_step"]), held["epoch"], held["iter_in_epoch"]
        except Exception:   # torch raises many kinds on a damaged file
            return
        if step <= self._resumed_step:
            return
        kept, k = path.with_name(f"{path.stem}_step{step}.pt"), 1
        while kept.exists():
            k += 1
            kept = path.with_name(f"{path.stem}_step{step}-{k}.pt")
        try:
            try:
                os.link(path, kept)
            except OSError:
                shutil.copy2(path, kept)
        except OSError as e:
            kept.unlink(missing_ok=True)
            raise CheckpointError(f"could not keep {path} (step {step}, later than step {self._resumed_step} "
                                  f"this run resumed from) as {kept} before overwriting it ({e}); copy it "
                                  "away by hand, then resume again") from e
        where = f"the end of epoch {epoch - 1}" if it == 0 else f"epoch {epoch}, iteration {it}"
        resume = "--resume" if path.name == "latest.pt" else f"--resume --which_epoch {int(path.stem[6:])}"
        msg = (f"{path} holds step {step} ({where}), later than step {self._resumed_step} where this run "
               f"resumed: kept as {kept} before this run overwrites it (synthesize.py --checkpoint "
               f"{kept} reads it; renamed back to {path.name}, {resume} continues from it)")
        self.vis.log_message(msg, step=self.global_step, kept=True)
        _note(f"note: {msg}")

    # ---- data ----------------------------------------------------------------------------------
    def _check_d_input(self, w: int, h: int, what: str) -> None:
        """A one-line ConfigError when D cannot take w x h images (``what`` names them)."""
        d = _unwrap(self.D) if self.D is not None else None
        if d is not None:   # CycleGAN's D_A and D_B are alike
            check_discriminator_input(self.cfg, d.D_A if self.cfg.model == "cyclegan" else d, w, h, what)

    def _check_g_input(self, w: int, h: int, what: str, unrounded: tuple[int, int] | None = None) -> None:
        """A one-line ConfigError when G or E cannot take w x h images (``what`` names them; the
        rule synthesis skips maps by: :func:`pix2pixhd.models.generator_min_side`)."""
        from pix2pixhd.models import check_generator_input
        check_generator_input(self.cfg, w, h, what, unrounded)

    def _check_d_on_samples(self, ds) -> None:
        """The size checks of D (:meth:`_check_d_input`), G and E (:meth:`_check_g_input`) on the
        size each sample comes out, from the source sizes the dataset's validation read (none with
        --validate off; its own check is that sides divide by G's multiple); each source size
        once, every file of a record (CycleGAN: A and B). Runs before the run folder is written."""
        from pix2pixhd.data.transforms import output_size, size_options
        seen = set()
        for rec in ds.all_records():
            for path in map(str, rec.values()):
                src = ds.source_sizes.get(path)
                if src is None or src in seen:
                    continue
                seen.add(src)
                w, h = output_size(*src, ds.resize_or_crop, ds.loadSize, ds.fineSize, ds.required_multiple)
                what = f"{path} ({src[0]}x{src[1]}) with " + " ".join(   # the sizes its mode reads
                    f"--{k} {v}" for k, v in size_options(ds.resize_or_crop, ds.loadSize, ds.fineSize).items())
                self._check_g_input(w, h, what, output_size(*src, ds.resize_or_crop, ds.loadSize, ds.fineSize, 1))
                self._check_d_input(w, h, what)

    def _keep_learned_direction(self) -> None:
        """A run continued from a checkpoint saved before --direction BtoA applied to
        {phase}_A/{phase}_B folders learned A to B there: it goes on that way, its config now
        saying AtoB (what it learned), with a note. Before, BtoA was read as AtoB for these folders
        and the config kept BtoA, so a continuation would now train the other way silently."""
        cfg = self.cfg
        if self._source is None:
            return
        source, fmt = self._source
        learned = cfg.learned_direction_there(cfg.dataroot, cfg.phase, fmt)
        if learned is None:
            return
        cfg.direction = learned
        if self.dist.is_master:
            say(f"note: {source} was saved before --direction BtoA applied to {cfg.phase}_A/ + {cfg.phase}_B/ "
                f"folders: it learned {cfg.phase}_A -> {cfg.phase}_B, though its config says BtoA; this run "
                "goes on that way and records --direction AtoB, which is what it learned")

    def make_loader(self):
        """The training DataLoader and its resumable sampler (order from seed and epoch)."""
        from pix2pixhd import data
        cfg = self.cfg
        # is_train: random flips whatever the split is called (--phase trainval); the first
        # --max_dataset_size samples are taken before validation, which reads no other file
        # rank 0 validates (for every rank), unless the run folder's validation stamp says that
        # these files passed this level with these options (a resume, a restart): a fresh
        # --overwrite run ignores the old run's stamp (reuse_stamp=False: the old folder is moved
        # aside only later, so its validation.json is still there now), and writes its own once started
        ds = data.create_dataset(cfg.dataroot, cfg.phase,
                                 cfg.data_config(validate=cfg.validate if self.dist.is_master else "off",
                                                 is_train=True),
                                 max_dataset_size=cfg.max_dataset_size or 0, model=cfg.model,
                                 stamp=Path(cfg.experiment_dir) / STAMP_FILE if self.dist.is_master else None,
                                 reuse_stamp=not (cfg.overwrite and not cfg.resume))
        # rank 0 validated these files for every rank (its failure stops them all): the other
        # ranks' loaders do not repeat the checks of that level at read time
        ds.validated = cfg.validate
        self._dataset_size = len(ds)
        if hasattr(ds, "records_B"):
            self._dataset_size_A, self._dataset_size_B = len(ds.records), len(ds.records_B)
        if self.dist.is_master and cfg.validate != "off":   # where validation runs; sizes it read
            data.check_batch_sizes(ds, cfg.batchSize)        # are reused: samples of one size per batch
        # The loader drops each epoch's last partial batch (drop_last): every step stacks batchSize
        # samples of one size, and every process takes the same number of steps (DDP). Said once.
        n, b, p = len(ds), cfg.batchSize, self.dist.world_size
        k = n // (b * p) * b * p
        if self.dist.is_master and k not in (0, n):   # (0: refused by _start_run)
            print(f"note: {n} images, batchSize {b} x {p} process{'es' if p > 1 else ''}: each epoch trains "
                  f"{k}, the last {n - k} of its shuffled order are left out of it (batches are kept full; "
                  "each epoch shuffles anew, so they are others each time)", file=sys.stderr, flush=True)
        sampler = data.ResumableSampler(len(ds), shuffle=True, seed=cfg.seed, rank=self.dist.rank,
                                        world_size=self.dist.world_size, drop_last=True)
        # the workers outlive a SIGTERM or SIGINT: the step finishes, latest.pt is saved (fit
        # shuts them down on every way out)
        loader = data.create_dataloader(ds, cfg.batchSize, shuffle=True, num_workers=cfg.nThreads,
                                        seed=cfg.seed, drop_last=True, sampler=sampler, ignore_stops=True)
        return loader, sampler

    # ---- the loop ------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = lr_at_epoch(self.cfg, self.epoch)
        for opt in (self.opt_G, self.opt_D):
            for group in (opt.param_groups if opt is not None else []):
                group["lr"] = lr
        return lr

    def fit(self) -> dict:
        """Train to the end of ``niter + niter_decay`` epochs (or ``max_steps``); returns a summary.

        On every way out (the end, a ``max_steps`` stop, a SIGTERM stop (:class:`TrainingStopped`)
        or SIGINT stop (:class:`TrainingInterrupted`), a second SIGINT (:class:`TrainingAborted`)
        and an exception)
        the DataLoader's workers are shut down (they ignore SIGTERM, so leaving them to
        interpreter exit would hang the process), the signal handlers the loop installs are
        replaced by the previous ones, the logs (tensorboard, HTML page, text log) are closed and
        the run folder's lock (rank 0, taken first) is released.

        A Trainer fits once: a second fit() (after one that started its run) raises
        :class:`~pix2pixhd.errors.RunExistsError` before anything is locked, moved or written. To
        continue the run, build a new Trainer from its config with resume=True.
        """
        self._check_not_fitted()
        try:
            return self._fit()
        finally:
            self._fit_ended = True   # the start-up handlers put back below ignore a signal (cli)
            try:
                self._shutdown_loader()
            finally:
                self._release_worker_deaths(raise_held=False)
                self._restore_sigterm()
                try:
                    self.vis.close()
                finally:
                    self._unlock()

    def _check_not_fitted(self) -> None:
        """Refuse a second fit(): it would start the run this Trainer trained again in its own
        folder (refused as another run's, or with overwrite=True moved aside and deleted)."""
        if not self._fit_started:   # set by _start_run once its checks passed
            return
        from pix2pixhd.errors import RunExistsError
        cfg, total = self.cfg, self.cfg.niter + self.cfg.niter_decay
        done = self.epoch > total
        raise RunExistsError(
            f"{self.exp_dir}: fit() was already called on this Trainer (its run is at step "
            f"{self.global_step}, " + (f"its {total} epoch(s) finished" if done else f"epoch {self.epoch}")
            + "); a Trainer fits once. To continue the run, build a new Trainer with "
            f"TrainConfig(..., name={cfg.name!r}, resume=True)"
            + (" and a larger niter or niter_decay" if done else "")
            + "; to start another run, build one with another name")

    def _unlock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _shutdown_loader(self) -> None:
        from pix2pixhd.data.loader import shutdown_workers
        loader, self._loader = self._loader, None
        if loader is not None:
            shutdown_workers(loader)

    # ---- SIGTERM and SIGINT: stop at a step boundary with latest.pt saved ------------------------
    def _catch_sigterm(self) -> None:
        """From here until :meth:`fit` returns, SIGTERM (SLURM preemption; torchrun passes it on
        to its workers) and a first SIGINT (Ctrl-C; torchrun passes it on too) only set a flag:
        the loop stops at the next step boundary with latest.pt saved (:meth:`_stop_requested`).
        A second SIGINT aborts at once (:class:`TrainingAborted`, nothing saved; under train_hd.py
        one line, no traceback). Installed where Python allows it (the main thread); a SIGTERM or SIGINT before
        (the start: dataset validation, checkpoint load) is train_main's: it ends the process at
        once with the same exit status, as nothing has been trained yet."""
        self._stop_code, self._sigints = 0, 0
        if threading.current_thread() is not threading.main_thread() or self._sigterm_previous:
            return

        def on_sigterm(signum, frame):
            self._stop_code = max(self._stop_code, 1)

        def on_sigint(signum, frame):
            self._sigints += 1
            if self._sigints > 1:
                latest = self.exp_dir / "latest.pt"
                saved = f"{latest} is the last checkpoint" if latest.exists() else "no checkpoint yet"
                msg = (f"aborted by a second SIGINT during epoch {self.epoch} after step {self.global_step}, "
                       f"saving nothing ({saved})")
                line = f"{msg}; exit status {INTERRUPTED_EXIT_STATUS}"
                if self.dist.is_master and self.from_command:   # from Python: the exception says it
                    _write_stderr(f"\n{line}\n")
                raise TrainingAborted(msg, line=line)
            self._stop_code = max(self._stop_code, 2)
            if self.dist.is_master:   # os.write: print() could re-enter a write to stderr (tqdm)
                status = f" (exit status {INTERRUPTED_EXIT_STATUS})" if self.from_command else ""
                _write_stderr(f"\nSIGINT: stopping after this step, saving latest.pt{status}; press Ctrl-C "
                              "again to abort without saving\n")
        # a signal ignored on entry (SIGINT of a job a script started with &) stays ignored
        self._sigterm_previous = install_signal_handlers({signal.SIGTERM: on_sigterm, signal.SIGINT: on_sigint})

    def _restore_sigterm(self) -> None:
        previous, self._sigterm_previous = self._sigterm_previous, None
        restore_signal_handlers(previous or {})

    def _stop_requested(self) -> int:
        """Whether the run stops after this step: 0, or the code (:data:`_STOP_SIGNALS`) of the
        signal that reached this process or, under DDP, any rank (the highest code: SIGINT over
        SIGTERM; :data:`WORKER_DEATH_CODE`, a rank's dead loader worker, over both). Every rank takes
        part in one all-reduce (MAX of the codes) after every step,
        so all of them decide at the same step, for the same reason; one device sync, as the
        step's finiteness check already makes."""
        if not self.dist.distributed:
            return self._stop_code
        own = WORKER_DEATH_CODE if self._worker_death is not None else self._stop_code
        flag = torch.tensor([own], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def _stop_by_sigterm(self, code: int = 1, summary: dict | None = None) -> None:
        """Save latest.pt (every rank joins its RNG gather), wait until rank 0 has written it (a
        rank that exits first makes torchrun stop the others, rank 0 mid-write included), say so
        and raise with the run's ``summary``: SIGTERM :class:`TrainingStopped` (exit status 75);
        SIGINT :class:`TrainingInterrupted`, a KeyboardInterrupt carrying the command's line (130),
        said here only under train_hd.py (:attr:`from_command`)."""
        name, status = _STOP_SIGNALS[code]
        self.save("latest")
        barrier(self.dist)
        where = (f"stopped by {name} at epoch {self.epoch} step {self.global_step}; "
                 f"{self.exp_dir / 'latest.pt'} saved")
        msg = f"{where}; rerun the same command with --auto_resume (or --resume) to continue"
        if status != STOPPED_EXIT_STATUS:
            msg += f"; exit status {status}"
        self.vis.log_message(msg, step=self.global_step)
        if self.dist.is_master and (name != "SIGINT" or self.from_command):
            print(msg, file=sys.stderr, flush=True)
        if name == "SIGINT":   # a Python caller's except KeyboardInterrupt sees it; no command to rerun there
            raise TrainingInterrupted(f"{where}; a Trainer of the same config with resume=True continues the run",
                                      summary, line=msg)
        raise TrainingStopped(msg, status, summary)

    # ---- a DataLoader worker that died: latest.pt saved at the step boundary (single process) ----
    def _hold_worker_deaths(self) -> None:
        """Until :meth:`_release_worker_deaths`, SIGCHLD only sets a flag. torch's handler of it
        (installed with the loader's workers) raises a dead worker's error at once, wherever
        the main thread is; held, it is raised at the next fetch. Main thread only."""
        if self._sigchld_previous is not None:
            return
        self._sigchld_held = False

        def on_sigchld(signum, frame):
            self._sigchld_held = True
        # the handler to put back is kept before ours goes in: a KeyboardInterrupt (a second
        # Ctrl-C) raised as signal.signal returns would otherwise leave ours installed for good
        previous = signal.getsignal(signal.SIGCHLD)
        self._sigchld_previous = previous if previous is not None else signal.SIG_DFL
        signal.signal(signal.SIGCHLD, on_sigchld)

    def _release_worker_deaths(self, raise_held: bool) -> None:
        """Put the SIGCHLD handler :meth:`_hold_worker_deaths` replaced back; ``raise_held``: when
        a SIGCHLD came meanwhile, call it now (torch's raises the error of a worker that died)."""
        previous, self._sigchld_previous = self._sigchld_previous, None
        if previous is None:
            return
        signal.signal(signal.SIGCHLD, previous)
        if raise_held and self._sigchld_held and callable(previous):
            self._sigchld_held = False
            previous(signal.SIGCHLD, None)

    def _saved_latest(self) -> str:
        """The end of a line that stops the run with latest.pt saved here: where, and how to go on."""
        return (f"{self.exp_dir / 'latest.pt'} saved at epoch {self.epoch} step {self.global_step}; rerun "
                "the same command with --auto_resume (or --resume) to continue")

    def _restart_loader(self, loader, sampler, died: str):
        """Under DDP, after a worker died (``died``: errors.loader_worker_died's line): shut this
        rank's workers down and start new ones at the same place of the epoch (the sampler's order, less what the
        ranks have trained; samples are drawn from the seed, epoch and index alone, so the batch
        is the one the dead worker was loading). Said at once; the ranks stop after the next step
        (:meth:`_stop_requested`, :meth:`_stop_after_worker_death`). The new iterator."""
        self._worker_death = died
        from pix2pixhd.data.loader import shutdown_workers
        shutdown_workers(loader)   # a dead worker may hold a lock torch's own shutdown would wait on
        sampler.set_epoch(self.epoch, done=self.samples_in_epoch)
        _note(f"note: rank {self.dist.rank}: {self._worker_death}; new workers load the next batch, "
              "and every rank stops after the next step with latest.pt saved")
        return iter(loader)

    def _stop_after_worker_death(self) -> None:
        """Every rank, at the step after a rank's worker died: save latest.pt (every rank joins
        its RNG gather), wait for rank 0 to write it, and raise :class:`LoaderWorkerDied`: the
        rank whose worker died says which it was, the others that it was another rank's (the
        error line names the rank)."""
        self.save("latest")
        barrier(self.dist)
        died = self._worker_death or "a data loader worker of another rank died (its error says which)"
        msg = f"{died}; {self._saved_latest()}"
        if self.dist.is_master:
            self.vis.log_message(msg, step=self.global_step)
        raise LoaderWorkerDied(msg)

    def _agree_on_fetch(self, steps_this_run: int) -> None:
        """Under DDP, after this rank fetched its batch: whether every rank did (one all-reduce of a
        flag, and a device sync, per step: the step's stop check makes the same). A rank whose
        fetch failed calls :meth:`_stop_after_data_error` instead; the others meet it here, before
        the step's collectives, save latest.pt with it and stop with one line naming its rank and
        error (gathered, so the line does not depend on which rank torchrun lets print)."""
        if not self.dist.distributed or not self._fetch_failed(False):
            return
        seen = gather_all(None, self.dist)
        rank = next(r for r, m in enumerate(seen) if m is not None)
        self._save_at_data_error(steps_this_run)
        saved = self._saved_latest() if steps_this_run else "no step was trained in this run, nothing was saved"
        raise PeerDataError(f"stopped because rank {rank} could not load its batch ({seen[rank][:300]}); {saved}")

    def _fetch_failed(self, failed: bool) -> bool:
        """Collective: whether any rank's fetch failed (``failed``: this rank's)."""
        flag = torch.tensor([int(failed)], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def _stop_after_data_error(self, e: BaseException, steps_this_run: int) -> None:
        """This rank's fetch raised ``e`` (not a worker death the run survives): after the run's
        first step, save latest.pt (between two steps, as a stop by a signal does) and say so in a
        note; the caller then raises ``e``, so fixing the file and resuming loses no step. Under
        DDP the other ranks learn of it in :meth:`_agree_on_fetch` (they get ``e``'s message) and
        save with this one. A save that fails is said in a note; ``e`` is raised either way."""
        if self.dist.distributed:
            self._fetch_failed(True)
            gather_all(fetch_error_text(e), self.dist)
        if not steps_this_run:
            return
        try:
            self._save_at_data_error(steps_this_run)
        except Exception as save_error:
            _note(f"note: latest.pt could not be saved after this error ({type(save_error).__name__}: "
                  f"{save_error}); the checkpoints written before are intact")
            return
        msg = (f"the batch after step {self.global_step} could not be loaded (the error below says why); "
               f"{self._saved_latest()}, once that is fixed")
        self.vis.log_message(msg, step=self.global_step)
        _note(f"note: {msg}")

    def _save_at_data_error(self, steps_this_run: int) -> None:
        """Every rank, after the run's first step: latest.pt, and under DDP wait for rank 0 to
        have written it."""
        if steps_this_run:
            self.save("latest")
            barrier(self.dist)

    def _save_after_worker_death(self, e: RuntimeError) -> None:
        """When ``e`` is torch's error of a DataLoader worker that died (``errors.loader_worker_died``):
        save latest.pt (the run is between two steps) and raise :class:`LoaderWorkerDied` from it.
        Single process only (see ``_fit``'s ``batches``)."""
        from pix2pixhd.errors import loader_worker_died
        if loader_worker_died(e) is None:
            return
        self.save("latest")
        msg = loader_worker_died(e, resume=self._saved_latest())
        self.vis.log_message(msg, step=self.global_step)
        raise LoaderWorkerDied(msg) from e

    def _start_run(self):
        """The run's start, in an order that never leaves its folder inconsistent: rank 0 locks
        the folder (:func:`lock_run`: another process training there is refused, before anything
        is written; the other ranks go on only when it has the lock); every rank
        checks that the folder is its own (:func:`check_new_run`) and builds its loader (rank 0
        validates the dataset); the ranks agree that all passed (one rank's error stops all of
        them, none is left waiting); only then does rank 0 write: ``--overwrite`` moves the old
        run aside and locks the new folder, stale ``*.tmp`` files are removed, ``config.json`` and
        the logs are begun.
        The models were built (and a checkpoint loaded) by ``__init__``, which writes nothing.
        Those writes are agreed too: when one fails (a full disk, a damaged log), every rank stops
        with it, instead of the others going on into the first collective (gloo: "Connection
        closed by peer"; NCCL: a hang until the timeout)."""
        cfg = self.cfg
        error, loader, sampler = None, None, None
        if self.dist.is_master:
            try:
                self._lock = lock_run(self.exp_dir)
            except Exception as e:
                error = e
        raise_on_any_rank(error, self.dist, "could not lock the run folder")
        try:
            check_new_run(cfg)
            self._keep_learned_direction()
            loader, sampler = self.make_loader()
            self._loader = loader   # fit() shuts its workers down, whatever happens next
            if len(loader) == 0:
                from pix2pixhd.data import DatasetError
                n, b, p = len(loader.dataset), cfg.batchSize, self.dist.world_size
                step = f"--batchSize {b} x {p} processes = {b * p}" if p > 1 else f"--batchSize {b}"
                fix = (f"lower --batchSize to {n // p} or less" if n >= p else
                       f"use at most {n} process{'es' if n > 1 else ''}")
                raise DatasetError(f"{cfg.dataroot}: {n} sample{'s' if n != 1 else ''} (--phase {cfg.phase}), "
                                   f"fewer than one step takes ({step}): {fix}")
            if self.dist.is_master:
                self._check_d_on_samples(loader.dataset)
                if self.vis.tensorboard:   # a TensorBoard writer: missing, refused before anything is written
                    summary_writer_class()
        except Exception as e:   # any failure: the other ranks must not wait for this one
            error = e
        raise_on_any_rank(error, self.dist)
        self._agree_on_dataset()
        self._fit_started = True   # from here the folder is this run's: a second fit() is refused
        if self.dist.is_master:
            try:
                replacing = cfg.overwrite and not cfg.resume
                left = note_leftovers(self.exp_dir, overwrite=replacing)
                if replacing:
                    self._leftovers = left
                    self._replaced = move_aside(self.exp_dir)
                    if self._replaced is not None:   # our lock went with it: lock the new folder
                        old, self._lock = self._lock, None
                        old.moved(self._replaced)
                        try:
                            self._lock = lock_run(self.exp_dir)
                        finally:
                            old.release()
                self.exp_dir.mkdir(parents=True, exist_ok=True)
                clean_stale_tmp(self.exp_dir)   # partial files of writes a kill interrupted
                self._record_line()   # the line this start continues: before anything of it is written
                atomic_write_bytes(self.exp_dir / "config.json", cfg.to_json().encode())
                stamp = getattr(loader.dataset, "validation_stamp", None)
                if stamp is not None:   # these files passed validation: a resume need not repeat it
                    atomic_write_bytes(self.exp_dir / STAMP_FILE, json.dumps(stamp).encode())
                # a fresh start (0) keeps no history of an attempt that died before its first save
                self.vis.begin(resumed_at_step=self.global_step if cfg.resume else 0)
                for note in cfg.notes():   # the run's log keeps them too (a resume's changed options among them)
                    self.vis.log_message(f"note: {note}")
                    if not self.from_command:   # train_hd.py printed them with its start lines
                        print(f"note: {note}", file=sys.stderr, flush=True)
                data_note = self._dataset_size_note()
                if data_note:
                    self.vis.log_message(f"note: {data_note}")
                    print(f"note: {data_note}", file=sys.stderr, flush=True)
                total = cfg.niter + cfg.niter_decay
                # a resume of a run that has finished (or that stopped after its last step): nothing
                # to train; the loop still closes a last epoch left open (its epoch_N.pt)
                if self.epoch > total or (self.epoch == total and not self._batches_left(sampler)):
                    msg = (f"{self.exp_dir} has finished its {total} epoch(s) (niter {cfg.niter} + "
                           f"niter_decay {cfg.niter_decay}): nothing to train. To train longer, "
                           "resume with a larger --niter or --niter_decay")
                    self.vis.log_message(msg)
                    print(f"note: {msg}", file=sys.stderr, flush=True)
                else:
                    self.vis.log_message(f"training {_run_label(cfg)}, epochs {self.epoch}..{total}")
            except Exception as e:   # the other ranks must not go on into the first collective
                error = e
        raise_on_any_rank(error, self.dist, "could not start (writing its run folder)")
        if self._missing_epoch is not None:   # every rank: the save gathers their RNG states
            self._write_missing_epoch(self._missing_epoch)
        return loader, sampler

    def _dataset_size_note(self) -> str | None:
        """On --resume, when the checkpoint resumed recorded another number of samples than the
        dataset read now holds (CycleGAN: or of domain A or B images; len() is the larger, so one
        domain may change alone): the note that says so; else None."""
        saved, now = self._saved_dataset_size, self._dataset_size
        if not self.cfg.resume or not isinstance(saved, int) or now is None:
            return None
        domains = [(d, was, is_) for d, was, is_ in (("A", self._saved_dataset_size_A, self._dataset_size_A),
                                                      ("B", self._saved_dataset_size_B, self._dataset_size_B))
                   if isinstance(was, int) and is_ is not None]   # CycleGAN (A: checkpoints since 2026-12)
        changed = [d for d, was, is_ in domains if was != is_]
        if saved == now and not changed:
            return None
        if domains:   # CycleGAN: say the domains
            was = f"{saved} samples ({', '.join(f'{w} domain {d}' for d, w, _ in domains)} images)"
            holds = f"{now} ({', '.join(f'{n} domain {d}' for d, _, n in domains)} images)"
        else:
            was, holds = f"{saved} samples", str(now)
        draws = {"A": "takes its domain A image", "B": "draws its domain B image"}
        return (f"{checkpoint_path(self.exp_dir, self.cfg.which_epoch).name} was trained on {was}, "
                f"--dataroot {self.cfg.dataroot} holds {holds} (--phase {self.cfg.phase}): each epoch's order and "
                "length differ from an uninterrupted run's from here on" + (
                    f"; each sample {' and '.join(draws[d] for d in changed)} among another number"
                    if saved == now else ""))

    def _write_missing_epoch(self, n: int) -> None:
        """Write epoch_N.pt from the resumed state (the end of epoch ``n``, what the run that
        died would have written there) and say so; agreed by every rank like the start's writes."""
        error = None
        try:
            path = self.save(n)
            if path is not None:
                msg = (f"{path.name} was missing: the run saved "
                       f"{checkpoint_path(self.exp_dir, self.cfg.which_epoch)} at the end "
                       f"of epoch {n} (step {self.global_step}) and stopped before writing it; written now "
                       f"from that state as {path}")
                self.vis.log_message(msg, step=self.global_step)   # a save at the resumed step
                print(f"note: {msg}", file=sys.stderr, flush=True)
        except Exception as e:
            error = e
        raise_on_any_rank(error, self.dist, f"could not write the missing epoch_{n:04d}.pt")

    def _fit(self) -> dict:
        cfg, master = self.cfg, self.dist.is_master
        tqdm = _tqdm()
        total_epochs = cfg.niter + cfg.niter_decay
        loader, sampler = self._start_run()
        self._catch_sigterm()
        steps_this_run, images, t_run = 0, 0, time.perf_counter()
        self._first_step_s = None   # the run's first step (its batch, --compile's compilation): the summary
        # rank 0's progress: a bar per epoch on a terminal (its postfix: the run's ETA; left on the
        # screen when the epoch took EPOCH_BAR_KEEP_S or more, or ends the run: close_bar), else a
        # line at most every PROGRESS_INTERVAL_S seconds (a log file)
        show, tty = master and not cfg.no_progress, _stderr_is_tty()
        last_step = self.global_step + self._steps_left(sampler, total_epochs)
        if cfg.max_steps:
            last_step = min(last_step, self.global_step + cfg.max_steps)
        progress = RunProgress(self.global_step, last_step, t_run)
        postfix = {"run ETA": "?"}   # the bar's, with the last log line's losses and speed
        # a single process holds a dead loader worker's error to the step boundary (batches())
        # (Windows has no SIGCHLD: torch notices a dead worker by its own timeout there)
        hold = (loader.num_workers > 0 and hasattr(signal, "SIGCHLD")
                and threading.current_thread() is threading.main_thread())
        # logged losses are means over the window since the last log line, summed on the device
        window, t_window, images_window = WindowMeans(), time.perf_counter(), 0
        skipped_before = self.skipped_steps   # fp16: skipped steps before the window
        # the summary's losses: means over the steps this process trained of the last epoch it
        # trained in (summed on the device as the window's are)
        epoch_sums, last_epoch = WindowMeans(), None
        lr, data_ms = self.opt_G.param_groups[0]["lr"], 0.0
        shown_at = None   # the step of the last image grid

        def log_window() -> dict[str, float]:
            """The window's log line (history, text log, tensorboard) at this step; its means."""
            nonlocal t_window, images_window, skipped_before
            n_window = window.n
            means = window.means(self.dist)   # one sync (and all-reduce) per window
            now = time.perf_counter()
            # speed over the window (data loading included); phase times: this step's
            extras = {"lr": lr, "images_per_s": images_window / max(now - t_window, 1e-9),
                      "window_steps": n_window, "ms/data": data_ms,
                      **{f"ms/{k}": v for k, v in self.timer.times.items()}}
            if self.scaler.is_enabled():   # fp16: the scale now, the window's skipped updates
                extras.update({"loss_scale": self.scaler.get_scale(),
                               "skipped_steps": self.skipped_steps - skipped_before})
                skipped_before = self.skipped_steps
            t_window, images_window = now, 0
            self.vis.log_losses(self.epoch, self.iter_in_epoch, self.global_step, means, extras,
                                model=cfg.model)
            postfix.update({**{k: f"{v:.3f}" for k, v in means.items()},
                            "img/s": f"{extras['images_per_s']:.2f}"})
            bar.set_postfix(postfix)
            # the next progress line's (without a terminal), in loss_log.txt's order
            progress.losses = {k: means[k] for k in loss_line_order(means, cfg.model)}
            return means

        def close_bar(ends_run: bool) -> None:
            """The epoch's bar closed: left on the screen if the epoch took EPOCH_BAR_KEEP_S or
            more or ``ends_run`` (its line: the run's last losses and ETA), else cleared."""
            bar.leave = bool(ends_run or time.perf_counter() - t_epoch >= EPOCH_BAR_KEEP_S)
            bar.close()

        def epoch_means(whole: bool) -> dict:
            """This epoch's losses for the summary (a collective under DDP: every rank calls it at
            the same step; the steps are the same on every rank)."""
            n = epoch_sums.n
            return {"epoch": self.epoch, "steps": n, "whole": whole, "losses": epoch_sums.means(self.dist)}

        def batches():
            """This epoch's batches. A DataLoader worker that died (the OOM killer) is noticed
            by torch through SIGCHLD, whose handler raises its error wherever the main thread
            is, mid-step included (between the optimizers' updates); in a single process that
            error is held until the next fetch (:meth:`_hold_worker_deaths`), where the run is at
            a step boundary: latest.pt is saved there and :class:`LoaderWorkerDied` says so.
            Under DDP the other ranks are inside the next step's collectives, and a save gathers
            from every rank: this rank starts new workers at the same position instead
            (:meth:`_restart_loader`), trains that step with the same batch, and the ranks agree
            after it to save latest.pt and stop (:meth:`_stop_requested`). Any other error of a
            fetch (a file that cannot be read; a second death, or one before the run's first
            step, under DDP) saves latest.pt at this boundary after the run's first step, every
            rank agreeing after each fetch (:meth:`_stop_after_data_error`, :meth:`_agree_on_fetch`),
            and is raised. The hold is put
            back inside the ``try``, right after the fetch: torch's handler may raise between the
            fetch and the hold (a worker that died at once of the index the fetch sent it), and
            that error is this boundary's too (the batch, not trained, is loaded again); and first
            thing in the ``except``, where the handler could raise the same death again. A worker
            that died while handing over a batch's shared memory may surface as that socket's
            error (EOFError, ConnectionResetError: torch re-raises it when the worker had not yet
            been reaped): :func:`_worker_death_error` makes it the worker's."""
            it = None
            while True:
                try:
                    if hold:
                        self._release_worker_deaths(raise_held=True)
                    it = iter(loader) if it is None else it   # persistent workers: waits on them
                    batch = next(it)
                    if hold:   # in the try: a death torch raises before the hold is at this boundary too
                        self._hold_worker_deaths()
                except StopIteration:
                    return
                except Exception as caught:   # from the fetch: a step boundary
                    e = caught
                    if hold:   # torch's handler must not raise again in here (a save may follow)
                        try:
                            self._hold_worker_deaths()
                        except RuntimeError as again:   # it did, before the hold took: the same death
                            e = again
                            self._hold_worker_deaths()
                    if isinstance(e, (RuntimeError, EOFError, ConnectionError)):
                        e = _worker_death_error(e, it if it is not None else getattr(loader, "_iterator", None))
                        if steps_this_run and self.dist.distributed and self._worker_death is None:
                            from pix2pixhd.errors import loader_worker_died
                            died = loader_worker_died(e, resume="")
                            if died is not None:
                                it = self._restart_loader(loader, sampler, died)
                                continue
                        if not self.dist.distributed and steps_this_run:   # else torch's error as it is
                            self._save_after_worker_death(e)
                    # any other error of the fetch (a file that cannot be read, found mid-run):
                    # latest.pt at this boundary, on every rank's agreement, then the error
                    self._stop_after_data_error(e, steps_this_run)
                    if e is caught:
                        raise
                    raise e
                finally:
                    if hold:
                        self._hold_worker_deaths()
                self._agree_on_fetch(steps_this_run)
                yield batch

        while self.epoch <= total_epochs:
            if self.global_frozen and not global_frozen_at(self.cfg, self.epoch):
                self._unfreeze_global()
            lr = self._set_lr()
            sampler.set_epoch(self.epoch, done=self.samples_in_epoch)
            began_at = self.iter_in_epoch   # > 0: resumed inside this epoch
            # this run's steps of the epoch, taken once: the loader's length asks the sampler, and
            # once the epoch's iteration began it would be the whole epoch's (set_epoch's done is
            # spent), not what a resumed epoch has left
            epoch_steps = len(loader)
            t_epoch = time.perf_counter()
            bar = tqdm(total=self.iter_in_epoch + epoch_steps, initial=self.iter_in_epoch,
                       disable=not show or not tty, leave=False,   # close_bar decides
                       desc=f"{_run_label(cfg, short=True)} epoch {self.epoch}/{total_epochs}",
                       dynamic_ncols=True)
            t_data = time.perf_counter()
            for batch in batches():
                step = self.global_step + 1
                logging = step % cfg.print_freq == 0 or step == 1
                data_ms = (time.perf_counter() - t_data) * 1e3
                # the run's known last step is timed too: its short window's line has phase times
                # (a SIGTERM/SIGINT stop is not known ahead: that line has none)
                self.timer.start(logging or bool(cfg.max_steps and steps_this_run + 1 >= cfg.max_steps) or (
                    self.epoch == total_epochs and self.iter_in_epoch + 1 - began_at == epoch_steps))
                if not steps_this_run and cfg.compile and master:
                    _note("note: --compile: the networks compile during the first step (minutes on a large "
                        "model); the steps after it run compiled")
                losses = self.train_step(batch)
                if not steps_this_run:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    self._first_step_s = time.perf_counter() - t_run
                n_img = cfg.batchSize * self.dist.world_size   # this step's, over all ranks
                self.iter_in_epoch += 1
                self.samples_in_epoch += n_img
                self.global_step += 1
                steps_this_run += 1
                images += n_img
                images_window += n_img
                window.add(losses)
                epoch_sums.add(losses)
                if logging:
                    log_window()
                if step % cfg.display_freq == 0:
                    self.vis.display(self.vis.visuals(self._last), self.epoch, self.global_step)
                    shown_at = self.global_step
                if show:
                    now = time.perf_counter()
                    progress.step(n_img, now)
                    if tty:
                        postfix["run ETA"] = progress.eta_text(self.global_step, now)
                        bar.set_postfix(postfix, refresh=False)   # drawn by the update
                    elif progress.line_due(now):
                        print(progress.line(_run_label(cfg, short=True), self.epoch, total_epochs,
                                            self.global_step, now), file=sys.stderr, flush=True)
                bar.update(1)
                stop = self._stop_requested()
                if (stop or (cfg.max_steps and steps_this_run >= cfg.max_steps)) and \
                        shown_at != self.global_step and not self._batches_left(sampler):
                    # stopped on the epoch's last step: its images now (the resumed run trains no
                    # step of this epoch, so it had none to show: the page skipped the epoch);
                    # TensorBoard's grids come every --display_freq steps only
                    self.vis.display(self.vis.visuals(self._last), self.epoch, self.global_step, html_only=True)
                    shown_at = self.global_step
                last = stop or (cfg.max_steps and steps_this_run >= cfg.max_steps)
                if last and window.n:   # the steps after the last log line: one shorter window
                    log_window()
                if stop == WORKER_DEATH_CODE:   # a rank's loader worker died: every rank saves, stops
                    close_bar(ends_run=True)
                    self._stop_after_worker_death()
                if stop:   # SIGTERM or SIGINT: every rank stops after this same step
                    close_bar(ends_run=True)
                    last_epoch = epoch_means(whole=began_at == 0 and not self._batches_left(sampler))
                    self._stop_by_sigterm(stop, self._summary(steps_this_run, images, t_run, last_epoch, sampler,
                                                              stopped_by=_STOP_SIGNALS[stop][0]))
                if step % cfg.save_latest_freq == 0:
                    self.save("latest")
                if cfg.max_steps and steps_this_run >= cfg.max_steps:
                    if not self._batches_left(sampler):   # the epoch's last step: its end as usual
                        break                              # (latest.pt, epoch_N.pt), then stop
                    close_bar(ends_run=True)
                    self.save("latest")
                    last_epoch = epoch_means(whole=began_at == 0 and not self._batches_left(sampler))
                    return self._summary(steps_this_run, images, t_run, last_epoch, sampler, stopped_by="max_steps")
                t_data = time.perf_counter()
            finished = self.epoch
            if finished == total_epochs and window.n:
                log_window()   # the run's last steps after its last log line: one shorter window
            close_bar(ends_run=finished == total_epochs or bool(cfg.max_steps and steps_this_run >= cfg.max_steps))
            if epoch_sums.n:   # none when resumed from a save on this epoch's last step
                last_epoch = epoch_means(whole=began_at == 0)
            if steps_this_run and shown_at != self.global_step:   # the page's images of the epoch
                self.vis.display(self.vis.visuals(self._last), finished, self.global_step, html_only=True)
            self.epoch, self.iter_in_epoch, self.samples_in_epoch = self.epoch + 1, 0, 0
            self.save("latest")
            if finished % cfg.save_epoch_freq == 0 or finished == total_epochs:
                self.save(finished)
            if cfg.max_steps and steps_this_run >= cfg.max_steps and self.epoch <= total_epochs:
                return self._summary(steps_this_run, images, t_run, last_epoch, sampler, stopped_by="max_steps")
        return self._summary(steps_this_run, images, t_run, last_epoch, sampler, stopped_by=None)

    def _batches_left(self, sampler) -> int:
        """Batches of the current epoch this rank has still to train (the loader drops a last
        short batch)."""
        return sampler.count(self.epoch, self.samples_in_epoch) // self.cfg.batchSize

    def _steps_left(self, sampler, total_epochs: int) -> int:
        """Steps from here to the end of the last epoch (the same on every rank)."""
        if self.epoch > total_epochs:
            return 0
        per_epoch = sampler.count(self.epoch, 0) // self.cfg.batchSize
        return self._batches_left(sampler) + (total_epochs - self.epoch) * per_epoch

    def _summary(self, steps, images, t_run, last_epoch, sampler, stopped_by: str | None) -> dict:
        """The run's summary (train_hd.py prints it, after a SIGTERM/SIGINT stop too). ``epoch`` is
        the last epoch the run trained in, ``epochs_completed`` how many epochs are fully trained
        (a checkpoint's ``epoch`` is the next one to train instead); ``losses`` are the means over
        the steps of ``epoch`` this process trained (all ranks' under DDP), which ``losses_over``
        says in words. ``stopped_by``: None (the run finished), "max_steps", "SIGTERM" or
        "SIGINT"; ``stopped_early`` is whether it is not None. ``first_step_s``: the seconds from the
        run's start to the end of its first step (its batch's loading and --compile's compilation
        included); ``images_per_s`` is over the steps after it (over all steps when it trained one)."""
        secs = time.perf_counter() - t_run
        first = self._first_step_s
        if steps > 1 and first is not None:   # every step trains the same number of images
            rate = (images - images // steps) / max(secs - first, 1e-9)
        else:
            rate = images / max(secs, 1e-9)
        if self.iter_in_epoch == 0:     # at an epoch boundary: self.epoch is the next to train
            epoch = completed = self.epoch - 1
        else:                           # stopped inside self.epoch, or after its last batch
            epoch = self.epoch
            completed = self.epoch - (1 if self._batches_left(sampler) else 0)
        if last_epoch is None or not last_epoch["steps"]:
            losses, over = {}, "no steps were trained in this run"
        else:
            e, n = last_epoch["epoch"], last_epoch["steps"]
            losses = last_epoch["losses"]
            over = (f"mean over all {n} step(s) of epoch {e}" if last_epoch["whole"] else
                    f"mean over the {n} step(s) of epoch {e} this run trained (not the whole epoch)")
        return {"steps": steps, "images": images, "seconds": secs, "first_step_s": first, "images_per_s": rate,
                "epoch": epoch, "epochs_completed": completed, "global_step": self.global_step,
                "losses": losses, "losses_over": over,
                "stopped_early": stopped_by is not None, "stopped_by": stopped_by,
                "experiment_dir": str(self.exp_dir)}
