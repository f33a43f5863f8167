"""A user walkthrough's findings: feature maps missing as partners after an interrupted
``features precompute`` (the listing ends with the command that writes them, and, where the
precompute's progress file is in the dataroot, that rerunning it finishes the job), and
loss_log.txt's notes of resumes of a finished run ("nothing to train"), which a later resume at
the same step took for steps trained past it and dropped."""

import pytest
from PIL import Image

from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.visualizer import LOG_HEADER, Visualizer

fault = pytest.mark.fault


@pytest.fixture()
def half_precomputed(tmp_path):
    """A dataroot whose train_feat/ holds the maps of 2 of its 4 samples, as a precompute killed
    half-way leaves it."""
    root = tmp_path / "streets"
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    (root / "train_feat").mkdir()
    for p in sorted((root / "train_label").iterdir())[:2]:
        Image.new("RGB", (64, 32)).save(root / "train_feat" / f"{p.stem}.png")
    return root


@fault(cls="bad dataset", case="--load_features with feature maps missing as partners (a precompute killed "
       "half-way): the listing ends with the precompute command that writes them")
def test_missing_feature_maps_name_the_precompute_command(half_precomputed, capsys):
    assert data_main(["scan", str(half_precomputed), "--label_nc", str(LABEL_NC), "--load_features"]) == 1
    out = capsys.readouterr().out
    assert "missing partner: 2 file(s)" in out and "has no train_feat/" in out, out
    fix = (f"write them with `python -m pix2pixhd.features precompute --checkpoint RUN --dataroot "
           f"{half_precomputed}`")
    assert fix in out and ("(without --how_many: every image needs its map; RUN: the run whose encoder makes them; "
                           "docs/features.md)") in out, out
    assert "interrupted precompute" not in out, out


@fault(cls="interrupted run", case="--load_features after a precompute killed half-way (its .train_feat.progress "
       "in the dataroot): the missing maps' listing says to rerun the same precompute command to finish it")
def test_missing_feature_maps_with_a_progress_file_say_to_rerun_it(half_precomputed, capsys):
    progress = half_precomputed / ".train_feat.progress"
    progress.write_bytes(b"x")   # only its being there matters here
    assert data_main(["scan", str(half_precomputed), "--label_nc", str(LABEL_NC), "--load_features"]) == 1
    out = capsys.readouterr().out
    assert "missing partner: 2 file(s)" in out, out
    assert (f"an interrupted precompute left {progress}: rerun the same precompute command to finish it"
            in out), out


def _start(run, resumed_at_step, *notes):
    """A start of the run at ``run`` (Trainer's order: begin, then its notes)."""
    vis = Visualizer(run, tensorboard=False, html_page=False)
    vis.begin(resumed_at_step=resumed_at_step)
    for n in notes:
        vis.log_message(n)
    return vis


@fault(cls="interrupted run", case="--resume of a finished run, several times ('nothing to train'), then a "
       "resume that trains: the earlier resumes' notes are not taken for steps logged past the resume and dropped")
def test_notes_of_resumes_of_a_finished_run_are_no_steps_past_it(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    trained = ("(epoch: 2, iters: 2, time: 0.060) G_GAN: 1.1154 \n"
               "    [step 4] lr: 0.0002 images_per_s: 16.5750\n")
    (run / "loss_log.txt").write_text(LOG_HEADER.format("t0") + "\n" + trained)
    for _ in range(3):
        _start(run, 4, "resumed from epoch 3 iteration 0", "r has finished its 2 epoch(s): nothing to train")
    _start(run, 4, "resumed from epoch 3 iteration 0", "training global stage, epochs 3..3")
    log = (run / "loss_log.txt").read_text()
    assert "dropped" not in log, log
    assert log.count("nothing to train") == 3 and log.count(LOG_HEADER.split("{}")[0]) == 5, log
    assert log.endswith("training global stage, epochs 3..3\n") and trained in log, log
    # a start at step 4 that trained past it: its notes go with its steps at the next resume there
    with (run / "loss_log.txt").open("a") as f:
        f.write("(epoch: 3, iters: 1, time: 0.060) G_GAN: 1.0 \n    [step 5] lr: 0.0002\n")
    _start(run, 4)
    log = (run / "loss_log.txt").read_text()
    assert "[step 5] lr" not in log and "4 line(s) from step 5 on, logged past step 4" in log, log
    assert log.count("nothing to train") == 3 and "epochs 3..3" not in log, log
