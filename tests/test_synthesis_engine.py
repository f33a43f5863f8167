"""The synthesis data engine (pix2pixhd/engine.py, synthesize.py): its output is a dataset the data
module reads back, two torchrun ranks write exactly what one process writes, a SIGKILLed run
resumes to the same bytes, memory stays flat over thousands of maps, --num_samples draws are
seeded per map and sample, dataset roots of every layout are read through the data module, and
the ONNX backend runs through the same engine.

Checkpoints here are tiny generators saved untrained (weights from a fixed seed): the engine's
properties do not depend on training. norm_impl 'ref' keeps the Triton interpreter out of it.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.cli import synthesize_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.models import build_generator
from tests.bounded import run_bounded

ROOT = Path(__file__).resolve().parents[1]


def save_run(folder: Path, seed: int = 0, **options) -> TrainConfig:
    """A run folder (config.json + latest.pt) holding an untrained tiny generator."""
    base = dict(label_nc=LABEL_NC, netG="global", ngf=4, n_downsample_global=2, n_blocks_global=1,
                norm_impl="ref")
    if options.get("model", "pix2pixhd") != "pix2pixhd":   # pix2pixHD's generator options: refused for the others
        del base["netG"], base["n_downsample_global"], base["n_blocks_global"]
    base.update(options)
    cfg = TrainConfig(**base).resolved()
    torch.manual_seed(seed)
    g = build_generator(cfg)
    save_checkpoint({"G": g.state_dict(), "config": cfg.to_dict()}, folder, "latest", cfg.to_json())
    return cfg


def save_clusters(folder: Path, cfg: TrainConfig, k: int = 4) -> None:
    """features_clustered.pt with k random centres for every class (what `features encode` writes)."""
    from pix2pixhd.features import FeatureClusters
    g = torch.Generator().manual_seed(1)
    centers = {c: torch.rand(k, cfg.feat_num, generator=g) * 2 - 1 for c in range(cfg.label_nc)}
    FeatureClusters(centers, cfg.feat_num, k).save(folder / "features_clustered.pt")


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=1, n_test=7, width=64, height=32, seed=0)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    save_run(folder)
    return folder


def synth(run_dir, data, out, *extra) -> int:
    return synthesize_main(["--checkpoint", str(run_dir), "--input", str(data / "test_label"),
                            "--inst", str(data / "test_inst"), "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0", *map(str, extra)])


@contextlib.contextmanager
def threads(n: int):
    """Run with ``n`` torch threads, as the subprocesses compared with this process do (CPU
    kernels may split a reduction differently for another thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


# ---- the output is a dataset ------------------------------------------------------------------------
def test_output_is_a_dataset_that_scan_and_training_read_back(run, streets, tmp_path):
    from pix2pixhd.data import create_dataset
    from pix2pixhd.data.__main__ import main as data_main
    out = tmp_path / "out"
    assert synth(run, streets, out, "--batch_size", 3) == 0
    names = sorted(p.name for p in (streets / "test_label").iterdir())
    for d in ("test_img", "test_label", "test_inst"):
        assert sorted(p.name for p in (out / d).iterdir()) == names, d
    # label and instance maps are the inputs, byte for byte
    for n in names:
        assert (out / "test_label" / n).read_bytes() == (streets / "test_label" / n).read_bytes()
        assert (out / "test_inst" / n).read_bytes() == (streets / "test_inst" / n).read_bytes()
    assert data_main(["scan", str(out)]) == 0
    ds = create_dataset(out, "test", label_nc=LABEL_NC, resize_or_crop="none", validate="full")
    assert len(ds) == 7 and ds[0]["image"].shape == (3, 32, 64)
    lines = manifest(out)
    assert [r["output"] for r in lines] == [f"test_img/{n}" for n in names]
    ck = run / "latest.pt"
    import hashlib
    for r in lines:
        data = (out / r["output"]).read_bytes()
        assert r["status"] == "ok" and r["bytes"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest()
        assert r["checkpoint"] == str(ck.resolve())
        assert r["checkpoint_sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
        assert r["input"] == str(streets / "test_label" / Path(r["output"]).name)
        assert r["sample"] == 0 and isinstance(r["seed"], int) and r["clusters"] is None
    assert not list(out.rglob("*.tmp")) and not (out / "manifest.parts").exists()


def test_a_rerun_skips_complete_outputs_and_redoes_the_rest(run, streets, tmp_path, capsys):
    out = tmp_path / "out"
    assert synth(run, streets, out) == 0
    before = images(out / "test_img")
    (out / "test_img" / "test_00002.png").unlink()                        # lost
    (out / "test_img" / "test_00004.png").write_bytes(b"short")           # wrong size
    (out / "test_img" / "test_00005.png.tmp").write_bytes(b"killed")      # a killed write
    capsys.readouterr()
    assert synth(run, streets, out) == 0
    text = capsys.readouterr()
    assert "wrote 2 images" in text.out and "5 already complete" in text.out
    assert "test_00005.png.tmp" in text.err and not list(out.rglob("*.tmp"))
    assert images(out / "test_img") == before
    assert len(manifest(out)) == 7
    # another job in the same folder is refused, and --overwrite replaces it
    with pytest.raises(ValueError, match="another synthesis .*seed: 0 then, 5 now.*--overwrite"):
        synth(run, streets, out, "--seed", 5)
    seeds_before = {r["seed"] for r in manifest(out)}
    assert synth(run, streets, out, "--seed", 5, "--overwrite") == 0
    lines = manifest(out)
    assert len(lines) == 7 and seeds_before.isdisjoint(r["seed"] for r in lines)
    assert json.loads((out / "synthesis.json").read_text())["seed"] == 5


def test_an_existing_dataset_is_never_written_over(run, streets, tmp_path):
    with pytest.raises(ValueError, match="would write into --input"):
        synthesize_main(["--checkpoint", str(run), "--input", str(streets / "test_label"),
                         "--out", str(streets), "--out_phase", "test", "--device", "cpu"])
    ds = tmp_path / "ds"
    (ds / "test_img").mkdir(parents=True)
    (ds / "test_img" / "x.png").write_bytes(b"a photo")
    with pytest.raises(ValueError, match="not written by synthesize.py"):
        synth(run, streets, ds)
    assert (ds / "test_img" / "x.png").read_bytes() == b"a photo"


# ---- ranks -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_write_what_one_process_writes_each_input_once(run, streets, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--checkpoint", str(run), "--input", str(streets / "test_label"), "--inst",
            str(streets / "test_inst"), "--device", "cpu", "--no_progress", "--workers", "1",
            "--batch_size", "2"]
    with threads(1):
        assert synthesize_main(args + ["--out", str(one)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(ROOT / "synthesize.py"),
           *args, "--out", str(two)]
    # a rank stuck for 60 s fails (gloo's timeout names the collective, the loader's the input):
    # before the test's limit, with the ranks' own errors
    p = run_bounded(cmd, timeout=120, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                         PIX2PIXHD_DIST_TIMEOUT_S="60"))   # seconds, here
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "wrote 7 images" in p.stdout and "rank 0 of 2" in p.stdout
    assert images(two / "test_img") == images(one / "test_img")   # byte-identical
    lines = manifest(two)
    assert sorted(r["output"] for r in lines) == sorted(r["output"] for r in manifest(one))
    assert {r["rank"] for r in lines} == {0, 1}          # both ranks worked, disjoint shards:
    per_rank = [{r["input"] for r in lines if r["rank"] == k} for k in (0, 1)]
    assert per_rank[0].isdisjoint(per_rank[1]) and len(per_rank[0]) + len(per_rank[1]) == 7
    strip = lambda r: {k: v for k, v in r.items() if k != "rank"}  # noqa: E731
    assert [strip(r) for r in lines] == [strip(r) for r in manifest(one)]


# ---- kill and resume --------------------------------------------------------------------------------
def test_a_sigkilled_run_resumes_to_every_output_once_and_byte_identical(run, tmp_path):
    data = tmp_path / "data"
    generate(data, n_train=1, n_test=48, width=128, height=64, seed=3)
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ["--checkpoint", str(run), "--input", str(data / "test_label"), "--inst",
            str(data / "test_inst"), "--device", "cpu", "--no_progress", "--batch_size", "2",
            "--workers", "1", "--seed", "7"]
    with threads(1):
        assert synthesize_main(args + ["--out", str(full), "--workers", "0"]) == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "synthesize.py"), *args, "--out", str(cut)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    part = cut / "manifest.parts" / "rank00000.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if part.is_file() and part.read_text().count("\n") >= 6:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; give it more inputs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = part.read_text().count("\n")
    assert 6 <= done_before < 48 and not (cut / "manifest.jsonl").exists()
    with threads(1):
        assert synthesize_main(args + ["--out", str(cut)]) == 0
    assert images(cut / "test_img") == images(full / "test_img")
    lines = manifest(cut)
    assert len(lines) == 48 and len({r["output"] for r in lines}) == 48
    assert all(r["status"] == "ok" for r in lines) and not list(cut.rglob("*.tmp"))
    assert [r["sha256"] for r in lines] == [r["sha256"] for r in manifest(full)]


# ---- memory ----------------------------------------------------------------------------------------
_MEMORY = r"""
import json, sys
from pathlib import Path
import torch
from pix2pixhd.config import TrainConfig
from pix2pixhd.engine import SynthesisJob, run_synthesis
from pix2pixhd.synthesis import Synthesizer

sys.stdin.readline()   # the test writes the maps meanwhile, then a line

def peak_rss():   # VmHWM: this process's peak resident set so far, from /proc (kB)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024

data, out = map(Path, sys.argv[1:3])
cfg = TrainConfig(label_nc=9, no_instance=True, netG="global", n_downsample_global=2).resolved()
torch.manual_seed(0)
g = torch.nn.Sequential(torch.nn.Conv2d(9, 3, 1), torch.nn.Tanh())   # tiny: the engine is under test
synth = Synthesizer(g, cfg, "cpu")
res = {}
for name, n in (("first_200", 200), ("all_2000", 2000)):
    rep = run_synthesis(synth, SynthesisJob(out=out / name, input=data, how_many=n, batch_size=8,
                                            workers=1, writers=2, progress=False))
    res[name] = {"written": rep.written, "peak": peak_rss()}
print(json.dumps(res))
"""


def test_memory_stays_flat_over_2000_maps(tmp_path):
    """One process synthesizes the first 200 of 2,000 maps (128x128), then all 2,000. Its peak
    resident memory may not grow by more than 16 MiB between the two: a non-streaming engine holds
    the 1,800 extra maps — 225 MiB as the old synthesize.py kept them (int64, decoded before the
    first image was written), 28 MiB even as uint8. What the first run costs (threads, worker
    start, allocator pools) is paid once and does not count.

    glibc's malloc raises its mmap threshold when a large block is freed, after which the
    generator's multi-MB batch tensors come from the heap, and timing decides how much freed
    heap stays resident (runs of this test without it grew by up to 18 MiB, all of it free
    memory). MALLOC_MMAP_THRESHOLD_ fixes the threshold, so the peak measures what the engine
    holds."""
    data = tmp_path / "labels"
    data.mkdir()
    # the process starts first: its imports and the maps' writing overlap
    p = subprocess.Popen([sys.executable, "-c", _MEMORY, str(data), str(tmp_path / "out")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072"))
    try:
        y, x = np.mgrid[:128, :128]
        for i in range(2000):   # structured maps: cheap to encode, different per file
            ids = ((x // (4 + i % 5) + y // 8 + i) % 9).astype(np.uint8)
            Image.fromarray(ids).save(data / f"m{i:05d}.png", compress_level=1)
        stdout, stderr = p.communicate("go\n", timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr[-4000:]
    r = json.loads(stdout.strip().splitlines()[-1])
    growth = (r["all_2000"]["peak"] - r["first_200"]["peak"]) / 2**20
    print(f"peak RSS {r['first_200']['peak'] / 2**20:.1f} MiB after 200 maps, "
          f"{r['all_2000']['peak'] / 2**20:.1f} MiB after 2000 (+{growth:.1f})")
    assert r["first_200"]["written"] == 200 and r["all_2000"]["written"] == 2000
    assert len(list((tmp_path / "out" / "all_2000" / "test_img").iterdir())) == 2000
    assert growth < 16, f"peak RSS grew by {growth:.1f} MiB from 200 to 2000 maps"


# ---- several samples per map --------------------------------------------------------------------
class PixelProbe(torch.nn.Module):
    """A generator that works pixel by pixel with elementwise ops only (a channel mix written as
    a sum of products, then dropout): no operation reduces across rows or pixels, so its
    arithmetic cannot depend on the batch, and equal bytes across batch sizes test the seeding
    alone. Real generators' convolutions pick their kernels by batch shape (see below)."""

    def __init__(self, c_in: int, dropout: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, c_in, generator=torch.Generator().manual_seed(0)),
                                    requires_grad=False)
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x):
        h = sum(x[:, i:i + 1] * self.w[:, i].view(1, 3, 1, 1) for i in range(x.shape[1]))
        return torch.tanh(self.drop(torch.tanh(h)) * 2)


def _probe_run(out, streets, synth, *, batch_size, num_samples=3, seed=0):
    from pix2pixhd.engine import SynthesisJob, run_synthesis
    return run_synthesis(synth, SynthesisJob(out=out, input=streets / "test_label", inst=streets / "test_inst",
                                             num_samples=num_samples, seed=seed, batch_size=batch_size,
                                             workers=0, progress=False))


def test_cluster_samples_are_seeded_per_map_and_sample_whatever_the_batch(streets, tmp_path):
    from pix2pixhd.features import FeatureClusters, FeatureSource
    from pix2pixhd.synthesis import Synthesizer
    cfg = TrainConfig(label_nc=LABEL_NC, instance_feat=True, feat_num=3, netG="global",
                      n_downsample_global=2).resolved()
    g = torch.Generator().manual_seed(1)
    clusters = FeatureClusters({c: torch.rand(4, 3, generator=g) * 2 - 1 for c in range(LABEL_NC)}, 3, 4)
    outs = {}
    for bs in (1, 3):
        synth = Synthesizer(PixelProbe(LABEL_NC + 1 + 3), cfg, features=FeatureSource(cfg, "sample", clusters=clusters))
        _probe_run(tmp_path / f"b{bs}", streets, synth, batch_size=bs)
        outs[bs] = images(tmp_path / f"b{bs}" / "test_img")
    assert len(outs[1]) == 7 * 3 and "test_00000_2.png" in outs[1]
    assert outs[1] == outs[3]                                             # same bytes
    assert outs[1]["test_00000_0.png"] != outs[1]["test_00000_1.png"]     # different draws
    lines = manifest(tmp_path / "b1")
    assert lines == [dict(r, rank=0) for r in manifest(tmp_path / "b3")]
    first = lines[0]
    assert first["sample"] == 0 and first["clusters"] and all(
        isinstance(v, list) and len(v) == 2 and 0 <= v[1] < 4 for v in first["clusters"].values())
    assert lines[0]["clusters"] != lines[1]["clusters"]                   # sample 1 drew others
    # the label and instance maps are written beside every sample
    assert sorted(p.name for p in (tmp_path / "b1" / "test_label").iterdir()) == sorted(outs[1])


def test_dropout_samples_are_seeded_per_map_and_sample_whatever_the_batch(streets, tmp_path):
    from pix2pixhd.synthesis import Synthesizer
    cfg = TrainConfig(label_nc=LABEL_NC, netG="global", n_downsample_global=2).resolved()
    outs = {}
    for bs, seed in ((1, 0), (3, 0), (3, 1)):
        probe = PixelProbe(LABEL_NC + 1, dropout=0.5)
        probe.drop.train()                                   # as load_generator leaves pix2pix's
        synth = Synthesizer(probe, cfg)
        assert synth.has_dropout
        _probe_run(tmp_path / f"b{bs}s{seed}", streets, synth, batch_size=bs, seed=seed)
        outs[bs, seed] = images(tmp_path / f"b{bs}s{seed}" / "test_img")
    assert outs[1, 0] == outs[3, 0]
    assert outs[1, 0]["test_00003_0.png"] != outs[1, 0]["test_00003_1.png"]
    assert all(outs[3, 1][n] != outs[3, 0][n] for n in outs[3, 0])        # another seed, other masks


def test_real_generator_samples_keep_their_draws_across_batch_sizes(tmp_path, streets):
    """With a real generator the draws are the same for any batch size, and so are the bytes for
    one batch size across shards and resume (the tests above); across batch sizes, CPU
    convolutions choose other kernels for another batch shape, and a pixel may round to the
    next grey level."""
    run = tmp_path / "run"
    cfg = save_run(run, instance_feat=True, feat_num=3)
    save_clusters(run, cfg)
    outs, lines = {}, {}
    for bs in (1, 3):
        out = tmp_path / f"b{bs}"
        assert synth(run, streets, out, "--batch_size", bs, "--num_samples", 2) == 0
        outs[bs] = {n: np.asarray(Image.open(out / "test_img" / n)).astype(int) for n in images(out / "test_img")}
        lines[bs] = [(r["output"], r["seed"], r["clusters"]) for r in manifest(out)]
    assert lines[1] == lines[3] and len(lines[1]) == 14
    assert max(np.abs(outs[1][n] - outs[3][n]).max() for n in outs[1]) <= 1
    assert np.abs(outs[1]["test_00000_0.png"] - outs[1]["test_00000_1.png"]).mean() > 0.5


def test_num_samples_without_a_source_of_variation_is_refused(run, streets, tmp_path):
    with pytest.raises(ValueError, match="--num_samples 2: this generator gives one image per map "
                                         r"\(it has no feature encoder and no dropout\)"):
        synth(run, streets, tmp_path / "out", "--num_samples", 2)


# ---- dataset roots as inputs ------------------------------------------------------------------------
def test_dataset_root_in_the_cityscapes_layout_gives_what_the_folder_gives(run, streets, tmp_path):
    assert synth(run, streets, tmp_path / "folder") == 0
    assert synthesize_main(["--checkpoint", str(run), "--dataroot", str(streets), "--phase", "test",
                            "--out", str(tmp_path / "root"), "--device", "cpu", "--no_progress",
                            "--workers", "1", "--validate", "full"]) == 0
    for d in ("test_img", "test_label", "test_inst"):
        assert images(tmp_path / "root" / d) == images(tmp_path / "folder" / d), d


def _facades(root: Path, n: int = 3, size: int = 32) -> Path:
    """pix2pix's aligned layout: photo | colour-coded label map side by side (BtoA reads the map)."""
    from pix2pixhd.data.layouts import FACADES_PALETTE
    rng = np.random.default_rng(0)
    pal = np.array(FACADES_PALETTE, dtype=np.uint8)
    (root / "test").mkdir(parents=True)
    for i in range(n):
        ids = rng.integers(0, 12, (size // 8, size // 8)).repeat(8, 0).repeat(8, 1)
        ab = np.concatenate([rng.integers(0, 256, (size, size, 3), dtype=np.uint8), pal[ids]], 1)
        Image.fromarray(ab).save(root / "test" / f"{i + 1}.png")
    return root


def test_palette_and_rgb_pair_roots_become_datasets_that_scan_passes(tmp_path):
    from pix2pixhd.data.__main__ import main as data_main
    # aligned AB images whose map half is a facades colour map -> id maps in the cityscapes layout
    fac = _facades(tmp_path / "facades")
    save_run(tmp_path / "fr", label_nc=12, no_instance=True, palette="facades", direction="BtoA")
    out = tmp_path / "fo"
    assert synthesize_main(["--checkpoint", str(tmp_path / "fr"), "--dataroot", str(fac), "--out", str(out),
                            "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    assert sorted(p.name for p in (out / "test_label").iterdir()) == ["1.png", "2.png", "3.png"]
    lab = np.asarray(Image.open(out / "test_label" / "1.png"))
    assert lab.ndim == 2 and lab.max() < 12 and len(np.unique(lab)) > 1      # decoded ids
    assert json.loads((out / "classes.json").read_text()) == {"label_nc": 12, "written_by": "synthesize.py"}
    assert data_main(["scan", str(out)]) == 0
    # rgb_pairs (photo -> photo): test_A (input) and test_B (synthesized)
    pairs = tmp_path / "pairs"
    for sub in ("test_A", "test_B"):
        for i in range(2):
            photo = np.random.default_rng(i).integers(0, 256, (32, 48, 3), dtype=np.uint8)
            (pairs / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo).save(pairs / sub / f"p{i}.png")
    save_run(tmp_path / "pr", label_nc=0, no_instance=True)
    out = tmp_path / "po"
    assert synthesize_main(["--checkpoint", str(tmp_path / "pr"), "--dataroot", str(pairs), "--out", str(out),
                            "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    assert images(out / "test_A") == images(pairs / "test_A")
    assert sorted(images(out / "test_B")) == ["p0.png", "p1.png"]
    assert data_main(["scan", str(out)]) == 0


def test_a_dataset_root_is_validated_like_training_data(run, streets, tmp_path):
    from pix2pixhd.data import DatasetError
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(streets, bad)
    Image.new("RGB", (64, 32)).save(bad / "test_label" / "test_00001.png")   # an RGB label map
    with pytest.raises(DatasetError, match="test_00001.png: label has mode RGB"):
        synthesize_main(["--checkpoint", str(run), "--dataroot", str(bad), "--out", str(tmp_path / "o"),
                         "--device", "cpu", "--no_progress"])
    assert not (tmp_path / "o").exists()


# ---- the ONNX backend -------------------------------------------------------------------------------
def test_onnx_backend_runs_through_the_same_engine(run, streets, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from pix2pixhd.export import export_onnx
    from pix2pixhd.synthesis import load_generator
    g, cfg = load_generator(run)
    export_onnx(g, run / "generator.onnx", dynamo=False, config=cfg.to_dict(), check=False)
    try:
        assert synth(run, streets, tmp_path / "torch") == 0
        assert synth(run, streets, tmp_path / "onnx", "--backend", "onnx", "--batch_size", 3) == 0
    finally:
        (run / "generator.onnx").unlink()
    a, b = images(tmp_path / "torch" / "test_img"), images(tmp_path / "onnx" / "test_img")
    assert sorted(a) == sorted(b)
    for n in a:
        d = np.abs(np.asarray(Image.open(io_bytes(a[n]))).astype(int) - np.asarray(Image.open(io_bytes(b[n]))))
        assert d.max() <= 1, n
    lines = manifest(tmp_path / "onnx")
    assert len(lines) == 7 and all(r["status"] == "ok" for r in lines)
    ident = json.loads((tmp_path / "onnx" / "synthesis.json").read_text())
    assert ident["backend"] == "onnx" and len(ident["onnx_sha256"]) == 64


def io_bytes(b: bytes):
    import io
    return io.BytesIO(b)


def test_unaligned_root_synthesizes_each_image_of_the_chosen_domain_once(tmp_path):
    """CycleGAN: --direction AtoB runs G_A on {phase}A/, BtoA G_B on {phase}B/ (the data module's
    unaligned layout, whose samples wrap around and pair at random: each input must come once)."""
    from pix2pixhd.data.__main__ import main as data_main
    from pix2pixhd.models import build_generator
    from pix2pixhd.synthesis import Synthesizer, load_generator
    root = tmp_path / "unaligned"
    rng = np.random.default_rng(0)
    for d, n in (("testA", 3), ("testB", 5)):
        (root / d).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(root / d / f"{d}_{i}.png")
    cfg = TrainConfig(model="cyclegan", ngf=4, netG_pix2pix="resnet_6blocks", norm_impl="ref").resolved()
    torch.manual_seed(0)
    state = {k: build_generator(cfg, d).state_dict() for k, d in (("G_A", "AtoB"), ("G_B", "BtoA"))}
    save_checkpoint({**state, "config": cfg.to_dict()}, tmp_path / "run", "latest", cfg.to_json())
    for direction, domain, n in (("AtoB", "testA", 3), ("BtoA", "testB", 5)):
        out = tmp_path / direction
        assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--dataroot", str(root), "--out", str(out),
                                "--direction", direction, "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
        assert images(out / "test_A") == images(root / domain)            # every input once, as it was
        assert sorted(images(out / "test_B")) == sorted(images(root / domain))
        ident = json.loads((out / "synthesis.json").read_text())
        assert ident["generator"] == {"AtoB": "G_A", "BtoA": "G_B"}[direction]
        assert data_main(["scan", str(out)]) == 0
        # the photos are that direction's generator's, not the other one's (batch shapes differ:
        # a rounding may move a pixel by one level)
        this, other = (Synthesizer(load_generator(tmp_path / "run", direction=d)[0], cfg)
                       for d in (direction, {"AtoB": "BtoA", "BtoA": "AtoB"}[direction]))
        for name, data in images(out / "test_B").items():
            x = torch.from_numpy(np.asarray(Image.open(root / domain / name)).transpose(2, 0, 1).copy())[None]
            got = np.asarray(Image.open(io_bytes(data))).astype(int)
            assert np.abs(got - this(x)[0].permute(1, 2, 0).numpy()).max() <= 1, name
            assert np.abs(got - other(x)[0].permute(1, 2, 0).numpy()).max() > 10, name


def test_resnet_generators_skip_maps_too_small_for_their_bottleneck(tmp_path, capsys):
    """pix2pix with a ResNet generator (size multiple 4): a 4-pixel side would leave a 1x1
    bottleneck, which its instance norm and reflection pad cannot take; skipped with the reason."""
    save_run(tmp_path / "run", model="pix2pix", netG_pix2pix="resnet_6blocks", label_nc=0, ngf=4)
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("ok.png", (8, 12)), ("tiny.png", (4, 12))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(inp / name)
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--input", str(inp), "--out", str(tmp_path / "out"),
                            "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    assert "skipped " + str(inp / "tiny.png") + ": 12x4 is too small for this generator: each side must be at least 5" \
        in capsys.readouterr().out
    assert list(images(tmp_path / "out" / "test_B")) == ["ok.png"]
