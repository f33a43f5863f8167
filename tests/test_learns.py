"""The training loop learns: after a short global-stage run on the synthetic streets, the test
split's synthesized photos are clearly closer to the real ones than an untrained generator's."""
import torch

from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.report import compare_folders
from pix2pixhd.synthesis import Synthesizer, synthesize_folder
from pix2pixhd.models import build_generator
from pix2pixhd.trainer import Trainer
from tests.test_trainer_step import tiny_cfg


def test_trained_generator_beats_untrained_by_a_clear_margin(tmp_path):
    data = tmp_path / "streets"
    generate(data, n_train=16, n_test=4, width=64, height=32, seed=1)
    cfg = tiny_cfg(tmp_path, dataroot=str(data), label_nc=LABEL_NC, resize_or_crop="none", ngf=16,
                   n_blocks_global=2, ndf=8, batchSize=4, niter=6, niter_decay=4, validate="off",
                   print_freq=1000, display_freq=1000, save_latest_freq=1000, save_epoch_freq=1000)
    torch.manual_seed(0)
    untrained = build_generator(cfg).eval()
    tr = Trainer(cfg)
    tr.fit()
    trained_dir, floor_dir = tmp_path / "trained", tmp_path / "untrained"
    for g, out in ((tr.G.eval(), trained_dir), (untrained, floor_dir)):
        synthesize_folder(Synthesizer(g, cfg), data / "test_label", out, inst_dir=data / "test_inst",
                          progress=False)
    trained = compare_folders(trained_dir / "test_img", data / "test_img")
    floor = compare_folders(floor_dir / "test_img", data / "test_img")
    assert trained["n"] == floor["n"] == 4
    assert trained["l1"] < 0.75 * floor["l1"], (trained, floor)
    assert trained["pooled_psnr"] > floor["pooled_psnr"] + 2.0, (trained, floor)
