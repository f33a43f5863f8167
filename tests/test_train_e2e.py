"""The main job end to end on tiny configs: train_hd.py's three stages, exact resume, the HTML
page's links, checkpoints, and synthesis of a folder."""
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import resolve_config, synthesize_main, train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--n_blocks_local", "1",
        "--ndf", "8", "--n_layers_D", "2", "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0",
        "--no_progress", "--no_tensorboard", "--print_freq", "1", "--display_freq", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=6, n_test=3, width=64, height=32, seed=0)
    return root


def _run(tmp_path, streets, *args):
    ngf = [] if any(a in args for a in ("--ngf", "--load_pretrain", "--resume")) else ["--ngf", "8"]
    return train_main(["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, *ngf, *args])


def _weights(path: Path) -> dict:
    ck = load_checkpoint(path)
    return {**{"G." + k: v for k, v in ck["G"].items()}, **{"D." + k: v for k, v in ck["D"].items()}}


@pytest.mark.fault(cls="interrupted run",
                   case="stopped mid-epoch twice, resumed: bit-equal weights and lr")
def test_resume_mid_epoch_is_exact(tmp_path, streets):
    common = ["--niter", "1", "--niter_decay", "2", "--deterministic", "--no_html"]
    _run(tmp_path, streets, "--name", "full", *common)
    # 3 epochs × 3 iterations; stop after 4 (mid-epoch 2), resume twice in small steps
    _run(tmp_path, streets, "--name", "cut", *common, "--max_steps", "4")
    ck = load_checkpoint(tmp_path / "cut")
    assert (ck["epoch"], ck["iter_in_epoch"], ck["global_step"]) == (2, 1, 4)
    _run(tmp_path, streets, "--name", "cut", "--resume", "--max_steps", "3")
    _run(tmp_path, streets, "--name", "cut", "--resume")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fa, fb = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    assert fa["global_step"] == fb["global_step"] == 9
    # the optimizer state (lr included) was carried too: the decayed lr of the last epoch
    assert fb["optimizer_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 2)
    # every lr from the log: epoch 3 runs at half the rate
    lrs = {json.loads(line)["epoch"]: json.loads(line)["lr"]
           for line in (tmp_path / "cut" / "loss_history.jsonl").read_text().splitlines()}
    assert lrs == pytest.approx({1: 2e-4, 2: 2e-4, 3: 1e-4})


def test_three_stages_then_synthesis(tmp_path, streets):
    _run(tmp_path, streets, "--stage", "global", "--name", "g", "--niter", "1", "--niter_decay", "0")
    g_ck = load_checkpoint(tmp_path / "g")
    _run(tmp_path, streets, "--stage", "local", "--name", "l", "--load_pretrain", str(tmp_path / "g"),
         "--niter", "1", "--niter_decay", "0", "--niter_fix_global", "1")
    l_ck = load_checkpoint(tmp_path / "l")
    cfg = json.loads((tmp_path / "l" / "config.json").read_text())
    assert cfg["netG"] == "local" and cfg["ngf"] == 4 and cfg["num_D"] == 3  # ngf inherited: 8 // 2
    # the global part did not move during the niter_fix_global epoch
    for k, v in l_ck["G"].items():
        if k.startswith("model."):
            assert torch.equal(v, g_ck["G"][k]), k
    _run(tmp_path, streets, "--stage", "finetune", "--name", "f", "--load_pretrain", str(tmp_path / "l"),
         "--niter", "1", "--niter_decay", "0")
    f_ck = load_checkpoint(tmp_path / "f")
    assert any(not torch.equal(v, l_ck["G"][k]) for k, v in f_ck["G"].items() if k.startswith("model."))

    # every image link of the HTML page resolves
    page = (tmp_path / "f" / "web" / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all((tmp_path / "f" / "web" / link).is_file() for link in links)
    assert "<svg" in page and "G_GAN" in page

    out = tmp_path / "synth"
    rc = synthesize_main(["--checkpoint", str(tmp_path / "f"), "--input", str(streets / "test_label"),
                          "--inst", str(streets / "test_inst"), "--out", str(out), "--no_progress",
                          "--real", str(streets / "test_img"), "--batch_size", "2"])
    assert rc == 0
    pngs = sorted((out / "test_img").glob("*.png"))   # the output is a dataset (docs/synthesis.md)
    assert [p.stem for p in pngs] == sorted(p.stem for p in (streets / "test_label").iterdir())
    assert all(Image.open(p).size == (64, 32) for p in pngs)
    page = (out / "index.html").read_text()
    assert all((out / link).resolve().is_file() for link in re.findall(r'src="([^"]+)"', page))


def test_synthesis_pads_any_size_and_reports_bad_inputs(tmp_path, streets, capsys):
    _run(tmp_path, streets, "--name", "g", "--niter", "1", "--niter_decay", "0", "--no_html")
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray((torch.arange(37 * 50) % LABEL_NC).reshape(37, 50).byte().numpy()).save(inp / "odd.png")
    Image.fromarray(torch.full((8, 8), 200, dtype=torch.uint8).numpy()).save(inp / "bad_ids.png")
    (inp / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(inp / "colour.png")
    rc = synthesize_main(["--checkpoint", str(tmp_path / "g"), "--input", str(inp), "--out",
                          str(tmp_path / "o"), "--no_progress"])
    text = capsys.readouterr().out
    assert rc == 0 and Image.open(tmp_path / "o" / "test_img" / "odd.png").size == (50, 37)
    assert re.search(r"skipped .*bad_ids.png: label id 200 >= label_nc=9", text)
    assert re.search(r"skipped .*broken.png", text) and re.search(r"skipped .*colour.png: .*RGB", text)
    assert "skipped 3" in text


def test_dry_run_prints_config_and_trains_nothing(tmp_path, streets, capsys):
    assert _run(tmp_path, streets, "--name", "dry", "--dry_run") == 0
    out = capsys.readouterr().out
    assert re.search(r"ngf: 8\s+\[changed\]", out) and not (tmp_path / "dry").exists()


def test_dry_run_checks_the_vgg19_file_the_run_would_stop_for(tmp_path, streets, monkeypatch, capsys):
    # it printed the options and exited 0, and the run itself then stopped for the missing file
    from pix2pixhd.errors import MissingInputError
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))
    with pytest.raises(MissingInputError, match=r"VGG19 weights not found at .*no_torch_home.*--no_vgg_loss"):
        _run(tmp_path, streets, "--name", "dry", "--dry_run", "--no_vgg_loss", "false")
    from pix2pixhd.errors import InputError
    from pix2pixhd.losses import vgg19_shapes
    vgg = tmp_path / "vgg19.pth"
    vgg.write_bytes(b"")   # there, but empty: the run would stop for it, so the dry run does
    with pytest.raises(InputError, match="the file is empty"):
        _run(tmp_path, streets, "--name", "dry", "--dry_run", "--no_vgg_loss", "false", "--vgg_path", str(vgg))
    torch.save({k: torch.zeros(s) for k, s in vgg19_shapes().items()}, vgg)   # VGG19's keys and shapes
    assert _run(tmp_path, streets, "--name", "dry", "--dry_run", "--no_vgg_loss", "false",
                "--vgg_path", str(vgg)) == 0


@pytest.mark.fault(cls="numerics",
                   case="non-finite loss after a resume: the error names epoch, iteration and step; "
                        "latest.pt byte-identical")
def test_non_finite_loss_keeps_the_last_checkpoint(tmp_path, streets, monkeypatch):
    from pix2pixhd import trainer as tr_mod
    _run(tmp_path, streets, "--name", "nf", "--niter", "1", "--niter_decay", "0", "--no_html")
    before = (tmp_path / "nf" / "latest.pt").read_bytes()
    orig = tr_mod.Trainer._pix2pixhd_step

    def poisoned(self, batch):
        with torch.no_grad():
            self.G.model[1].bias.fill_(float("inf"))
        return orig(self, batch)

    monkeypatch.setattr(tr_mod.Trainer, "_pix2pixhd_step", poisoned)
    with pytest.raises(tr_mod.NonFiniteLossError, match=r"epoch 2, iteration 1 \(step 4\)"):
        _run(tmp_path, streets, "--name", "nf", "--resume", "--niter_decay", "1", "--save_latest_freq", "1")
    assert (tmp_path / "nf" / "latest.pt").read_bytes() == before


def test_resume_inherits_the_run_config(tmp_path, streets):
    _run(tmp_path, streets, "--name", "r", "--niter", "1", "--niter_decay", "0", "--ngf", "4", "--no_html")
    cfg = resolve_config(["--name", "r", "--checkpoints_dir", str(tmp_path), "--resume"])
    assert cfg.ngf == 4 and cfg.dataroot == str(streets) and cfg.label_nc == LABEL_NC


def test_tensorboard_gets_losses_lr_speed_phases_and_the_image_grid(tmp_path, streets):
    from tests.tb_events import read_events
    args = [a for a in TINY if a != "--no_tensorboard"]
    train_main(["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *args, "--ngf", "8",
                "--name", "tb", "--niter", "1", "--niter_decay", "0", "--no_html"])
    tags = {v.tag for ev in read_events(tmp_path / "tb" / "tensorboard") for v in ev.summary.value}
    assert {"loss/G_GAN", "loss/G_GAN_Feat", "loss/D_real", "loss/D_fake", "lr", "images_per_s",
            "ms/data", "ms/G_forward", "ms/optimizer", "images/label_synthesized_real"} <= tags


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path, streets, capsys):
    _run(tmp_path, streets, "--name", "done", "--niter", "1", "--niter_decay", "0", "--no_html")
    capsys.readouterr()
    _run(tmp_path, streets, "--name", "done", "--resume", "--no_html")
    err = capsys.readouterr().err
    assert "has finished its 1 epoch(s)" in err and "--niter" in err, err
