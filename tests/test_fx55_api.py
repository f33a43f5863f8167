"""The Python API as a notebook uses it (FX55, from a walkthrough): launch.train/synthesize return
argparse's status instead of raising SystemExit; --debug holds for its call only; TrainConfig takes
numpy numbers and a torch.device; SynthesisJob's int fields are checked as synthesize.py checks
its options; a wrong Python type at an entry point is one error naming the conversion, not an
AttributeError from deep inside; docs/pix2pix.md's Python runs as written."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd import errors, launch
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError, InputError, UserError
from tests.synthesis_runs import run  # noqa: F401  (a module fixture: label_nc 5, no instance maps)

ROOT = Path(__file__).resolve().parent.parent
fault = pytest.mark.fault


@pytest.fixture(scope="module")
def synth(run):
    from pix2pixhd.synthesis import Synthesizer, load_generator
    g, cfg = load_generator(run)
    return Synthesizer(g, cfg)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "a.png")
    return folder


# ---- 1. launch's functions return argparse's exit status -------------------------------------------
@fault(cls="command-line errors", case="launch.train/launch.synthesize from Python with an option argparse "
       "refuses, and --help: argparse's status returned (SystemExit was raised out of the call)")
def test_launch_returns_argparse_status(tmp_path, capsys):
    args = ["--dataroot", str(tmp_path), "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")]
    assert launch.train(args + ["--ngf", "x"]) == 2
    assert "argument --ngf: invalid int value: 'x'" in capsys.readouterr().err   # argparse's lines still said
    assert launch.train(["--help"]) == 0
    assert "--dataroot" in capsys.readouterr().out
    assert launch.synthesize(["--bogus_zz"]) == 2
    assert "unrecognized arguments: --bogus_zz" in capsys.readouterr().err
    assert launch.synthesize(["--help"]) == 0


@fault(cls="command-line errors", case="synthesize.py with an option argparse refuses: exit status 2 still")
def test_script_keeps_argparse_status():
    p = subprocess.run([sys.executable, str(ROOT / "synthesize.py"), "--bogus_zz"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "unrecognized arguments: --bogus_zz" in p.stderr


# ---- 2. --debug holds for its call only ------------------------------------------------------------
def _failing(argv):
    # what a child of the call (a loader worker) sees of --debug
    seen = subprocess.run([sys.executable, "-c", f"import os; print(os.environ.get({errors.DEBUG_ENV!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    raise InputError(f"bad input (child saw {seen})")


@fault(cls="command-line errors", case="--debug in one call from Python, then a call without it: one error line "
       "and status 1 (the first left PIX2PIXHD_DEBUG=1 set, and the second raised a traceback)")
@pytest.mark.parametrize("before", [None, "0"])
def test_debug_flag_holds_for_its_call_only(monkeypatch, capsys, before):
    if before is None:
        monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    else:
        monkeypatch.setenv(errors.DEBUG_ENV, before)
    with pytest.raises(InputError, match=r"child saw 1\)"):   # the call's children inherit it
        errors.run(_failing, ["--debug"])
    assert os.environ.get(errors.DEBUG_ENV) == before
    assert errors.run(_failing, []) == 1
    assert "error: bad input (child saw " + str(before) + ")" in capsys.readouterr().err


@fault(cls="command-line errors", case="launch.train with --debug, then without it: the second returns 1")
def test_launch_train_after_debug_returns_1(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    args = ["--dataroot", str(tmp_path / "none"), "--name", "x", "--checkpoints_dir", str(tmp_path / "ck"),
            "--no_vgg_loss"]
    with pytest.raises(UserError):
        launch.train(args + ["--debug"])
    capsys.readouterr()
    assert launch.train(args) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "--debug shows the traceback" not in err


# ---- 3. TrainConfig: numpy numbers and a torch.device ---------------------------------------------
@fault(cls="command-line errors", case="TrainConfig(niter=np.int64(1), lr=np.float32, device=torch.device('cpu')) "
       "from Python: taken as int, float and str (refused as 'must be int', 'must be str')")
def test_config_takes_numpy_numbers_and_torch_device(tmp_path):
    cfg = TrainConfig(label_nc=5, dataroot=str(tmp_path), name="a", checkpoints_dir=str(tmp_path / "ck"),
                      niter=np.int64(1), niter_decay=np.uint8(0), lr=np.float32(0.5), beta1=np.float64(0.25),
                      device=torch.device("cpu")).resolved()
    assert (cfg.niter, cfg.niter_decay, cfg.lr, cfg.beta1, cfg.device) == (1, 0, 0.5, 0.25, "cpu")
    assert [type(v) for v in (cfg.niter, cfg.niter_decay, cfg.lr, cfg.beta1, cfg.device)] == [int, int, float,
                                                                                             float, str]
    cfg.to_json()   # config.json holds them
    again = TrainConfig.from_dict({**cfg.to_dict(), "niter": np.int64(3), "device": torch.device("cpu")})
    assert (again.niter, type(again.niter), again.device) == (3, int, "cpu")


@fault(cls="command-line errors", case="TrainConfig(niter=True), niter=1.5, lr='0.1': still refused")
def test_config_still_refuses_bool_and_non_numbers(tmp_path):
    base = dict(label_nc=5, dataroot=str(tmp_path), name="a", checkpoints_dir=str(tmp_path / "ck"))
    for name, value in (("niter", True), ("niter", 1.5), ("lr", "0.1"), ("lr", np.bool_(True)), ("device", 0)):
        with pytest.raises(ConfigError, match=f"--{name} .*must be"):
            TrainConfig(**base, **{name: value}).resolved()


# ---- 4. SynthesisJob's int fields ------------------------------------------------------------------
def _job(out, labels, **kw):
    from pix2pixhd.engine import SynthesisJob
    return SynthesisJob(out=out, input=labels, **{"workers": 0, "progress": False, **kw})


@fault(cls="synthesis", case="SynthesisJob(how_many=-1) from Python: synthesize.py's '--how_many -1: must be >= 0' "
       "(it synthesized every input)")
def test_job_how_many_negative_is_refused_as_the_cli_does(synth, labels, tmp_path, run):
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.engine import run_synthesis
    with pytest.raises(ConfigError) as api:
        run_synthesis(synth, _job(tmp_path / "out", labels, how_many=-1))
    with pytest.raises(ConfigError) as cli:
        synthesize_main(["--checkpoint", str(run), "--input", str(labels), "--out", str(tmp_path / "out"),
                         "--how_many", "-1"])
    assert str(api.value) == str(cli.value) == "--how_many -1: must be >= 0 (0 = all)"
    assert not (tmp_path / "out").exists()


@fault(cls="synthesis", case="SynthesisJob(batch_size='4') from Python: a ConfigError naming the field and int "
       "(a TypeError comparing str with int)")
def test_job_int_fields_of_another_type(synth, labels, tmp_path):
    from pix2pixhd.engine import run_synthesis
    for name, value in (("batch_size", "4"), ("num_samples", 1.0), ("how_many", None), ("writers", True)):
        with pytest.raises(ConfigError, match=rf"SynthesisJob {name}={re.escape(repr(value))}: must be an int"):
            run_synthesis(synth, _job(tmp_path / "out", labels, **{name: value}))
    rep = run_synthesis(synth, _job(tmp_path / "out", labels, how_many=np.int64(1), batch_size=np.int32(2)))
    assert rep.written == 1   # numpy ints are ints (the manifest records them as JSON)


# ---- 5. wrong Python types at the entry points -----------------------------------------------------
@fault(cls="synthesis", case="Synthesizer.synthesize with a numpy array, a list or a PIL image (label, inst, image): "
       "one InputError naming the conversion (AttributeError: no attribute 'dim')")
def test_synthesize_refuses_what_is_not_a_tensor(synth):
    ids = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    cases = [((ids.numpy(),), {}, r"label is a numpy\.ndarray; .*torch\.from_numpy\(label\)"),
             ((ids.tolist(),), {}, r"label is a list; .*torch\.tensor\(label\)"),
             ((Image.fromarray(np.zeros((16, 16), np.uint8)),), {}, r"label is a PIL\..*np\.array\(label\)"),
             ((None,), {}, "label is None"),
             ((ids, ids.numpy()), {}, r"inst is a numpy\.ndarray; .*torch\.from_numpy\(inst\)"),
             ((ids,), {"image": np.zeros((1, 3, 16, 16), np.uint8)}, r"image is a numpy\.ndarray; .*uint8")]
    for args, kw, message in cases:
        with pytest.raises(InputError, match=message):
            synth.synthesize(*args, **kw)
    with pytest.raises(InputError, match="label is a numpy"):
        synth(ids.numpy())
    assert synth(ids).shape == (1, 3, 16, 16)


@fault(cls="synthesis", case="Synthesizer(generator, None) and Synthesizer(generator, a dict of options): one "
       "ConfigError naming TrainConfig.from_dict")
def test_synthesizer_needs_a_train_config(run):
    from pix2pixhd.synthesis import Synthesizer, load_generator
    g, cfg = load_generator(run)
    for bad, held in ((None, "None"), (cfg.to_dict(), "a dict")):
        with pytest.raises(ConfigError, match=f"cfg is {held}; pass the run's TrainConfig.*TrainConfig.from_dict"):
            Synthesizer(g, bad)
    s = Synthesizer(g, TrainConfig.from_dict(cfg.to_dict()))   # what the message says works
    assert s(torch.zeros(1, 1, 16, 16, dtype=torch.long)).shape == (1, 3, 16, 16)


@fault(cls="synthesis", case="run_synthesis(generator_module, job) and run_synthesis(synth, dict): one ConfigError "
       "naming what to pass")
def test_run_synthesis_argument_types(synth, labels, tmp_path):
    from pix2pixhd.engine import run_synthesis
    job = _job(tmp_path / "out", labels)
    with pytest.raises(ConfigError, match=r"synth is a GlobalGenerator; pass a Synthesizer.*Synthesizer\(generator"):
        run_synthesis(synth.G, job)
    with pytest.raises(ConfigError, match=r"job is a dict; pass a SynthesisJob.*SynthesisJob\(\*\*d\)"):
        run_synthesis(synth, {"out": str(tmp_path / "out"), "input": str(labels)})
    assert not (tmp_path / "out").exists()


@fault(cls="numerics", case="psnr, ssim, psnr_ssim with numpy arrays: one InputError naming torch.from_numpy "
       "(AttributeError: no attribute 'dim')")
def test_metrics_refuse_numpy_arrays():
    from pix2pixhd.evaluate import psnr, psnr_ssim, ssim
    a = np.zeros((1, 3, 16, 16), np.uint8)
    t = torch.from_numpy(a)
    for f in (psnr, ssim, psnr_ssim):
        with pytest.raises(InputError, match=rf"{f.__name__}'s fake is a numpy\.ndarray; .*torch\.from_numpy"):
            f(a, t)
        with pytest.raises(InputError, match=rf"{f.__name__}'s real is a list; .*torch\.as_tensor"):
            f(t, a.tolist())
    assert float(psnr(t, t)[0]) == float("inf")


@fault(cls="command-line errors", case="evaluate(fake_dir, None) / evaluate(None, real_dir) from Python: one "
       "ConfigError naming the folder to pass (TypeError of Path(None))")
def test_evaluate_needs_both_folders(labels):
    from pix2pixhd.evaluate import evaluate
    with pytest.raises(ConfigError, match=r"real_dir is None; pass the folder of the real photos.*--real"):
        evaluate(labels, None, no_fid=True, verbose=False)
    with pytest.raises(ConfigError, match=r"fake_dir is a list; pass the folder of the synthesized images"):
        evaluate([labels], labels, no_fid=True, verbose=False)


# ---- 6. docs/pix2pix.md's Python -------------------------------------------------------------------
def test_pix2pix_doc_python_runs_as_written():
    text = (ROOT / "docs" / "pix2pix.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:   # in order, in one namespace, as a reader runs them
        exec(compile(block, "docs/pix2pix.md", "exec"), namespace)
    assert namespace["fake"].shape == (2, 3, 256, 256)
    assert namespace["logits"].shape == (2, 1, 30, 30)   # what its comment says
