"""A --norm batch run's feature encoder E at encode, precompute and --feature_mode encoded time
normalises each image by its own statistics, as the reference's E ran (it never put E in eval mode:
batch 1, train-mode BatchNorm) and as synthesis runs G; synthesis's --bn_running_stats takes the
running statistics for E too. Before, E ran in eval mode on its running statistics: features up to
0.2 off the reference's, larger than their whole spread (a side-by-side run against NVIDIA's
encode_features.py)."""
import copy

import pytest
import torch

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.models import build_encoder, build_generator


@pytest.fixture
def bn_run(tmp_path):
    return save_bn_run(tmp_path)


def save_bn_run(folder):
    """A norm batch run with E whose running statistics are far from any image's own, saved in
    ``folder``: (folder, E)."""
    cfg = TrainConfig(label_nc=5, netG="global", ngf=4, n_downsample_global=2, n_blocks_global=1, norm="batch",
                      norm_impl="ref", instance_feat=True, feat_num=3, n_downsample_E=2, nef=4,
                      no_instance=True).resolved()
    torch.manual_seed(0)
    g, e = build_generator(cfg), build_encoder(cfg)
    for m in e.modules():   # running statistics far from any image's own
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(0.25)
    save_checkpoint({"G": g.state_dict(), "E": e.state_dict(), "config": cfg.to_dict()}, folder, "latest",
                    cfg.to_json())
    return folder, e


def test_a_loaded_encoder_normalises_each_image_by_its_own_statistics(bn_run):
    from pix2pixhd.features import FeatureSource, encode_features, load_encoder
    run, trained = bn_run
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    inst = torch.zeros(2, 1, 16, 24, dtype=torch.int64)
    reference = copy.deepcopy(trained).train()   # the reference's E: train-mode BatchNorm, one image at a time
    with torch.no_grad():
        want = torch.cat([reference(x[i:i + 1], inst[i:i + 1]) for i in range(2)])
    e, cfg, _ = load_encoder(run)
    with torch.no_grad():
        got = e(x, inst)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # encode_features' own .eval() keeps it
    batch = {"image": ((x + 1) * 127.5).round().to(torch.uint8), "label": inst.to(torch.int32), "inst": inst}
    encode_features(e, [batch])
    assert e.training is False
    with torch.no_grad():
        torch.testing.assert_close(e(x, inst), want, rtol=1e-5, atol=1e-5)
    # --bn_running_stats: the running statistics, as eval mode uses them
    running = load_encoder(run, test_batch_stats=False)[0]
    with torch.no_grad():
        torch.testing.assert_close(running(x, inst), copy.deepcopy(trained).eval()(x, inst))
        assert (running(x, inst) - want).abs().max() > 1e-2   # (features here span about 0.1)
    src = FeatureSource.from_checkpoint(run, cfg, "encoded", test_batch_stats=False)
    assert type(next(m for m in src.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))) is torch.nn.BatchNorm2d
    src = FeatureSource.from_checkpoint(run, cfg, "encoded")
    assert type(next(m for m in src.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))) is not torch.nn.BatchNorm2d


def test_an_encoded_job_records_the_encoders_statistics_so_an_older_one_is_another_job(bn_run, tmp_path):
    """Older versions ran E on its running statistics whatever --bn_running_stats said: a folder they
    wrote must not resume under per-image E (half its photos from each). The job records E's
    statistics; a synthesis.json without them is another job, refused naming the key."""
    import json

    import numpy as np
    from PIL import Image

    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.errors import UserError
    run, _ = bn_run
    (tmp_path / "maps").mkdir()
    (tmp_path / "real").mkdir()
    for n in "ab":
        Image.fromarray((np.arange(16 * 24) % 5).reshape(16, 24).astype(np.uint8)).save(tmp_path / "maps" / f"{n}.png")
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(
            tmp_path / "real" / f"{n}.png")
    out = tmp_path / "out"
    args = ["--checkpoint", str(run), "--input", str(tmp_path / "maps"), "--out", str(out), "--device", "cpu",
            "--no_progress", "--workers", "0", "--feature_mode", "encoded", "--real", str(tmp_path / "real")]
    assert synthesize_main(args) == 0
    job = json.loads((out / "synthesis.json").read_text())
    assert job["encoder_batchnorm_statistics"] == "per_image"
    assert synthesize_main(args) == 0   # the same job resumes
    with pytest.raises(UserError, match="encoder_batchnorm_statistics"):
        synthesize_main(args + ["--bn_running_stats"])
    # the folder as an older version left it: no key, its digest and manifest lines without it
    from pix2pixhd.engine import _digest
    old = {k: v for k, v in job.items() if k != "encoder_batchnorm_statistics"}
    old["digest"] = _digest(old)
    (out / "synthesis.json").write_text(json.dumps(old))
    lines = (out / "manifest.jsonl").read_text().replace(job["digest"], old["digest"])
    (out / "manifest.jsonl").write_text(lines)
    with pytest.raises(UserError, match=r"another synthesis \(encoder_batchnorm_statistics: None then"):
        synthesize_main(args)
