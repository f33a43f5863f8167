"""The Python API of synthesis as a user meets it: a generator in training mode (build_generator's)
is set up as load_generator's before it runs, a device this machine lacks is one clean error,
input errors name the argument at fault and a fix that applies to a trained checkpoint, and the
networks' size errors print W x H like the rest of the project."""
import pytest
import torch

from pix2pixhd.config import TrainConfig
from pix2pixhd.distributed import DeviceUnavailableError
from pix2pixhd.encoding import LabelRangeError
from pix2pixhd.errors import InputError
from pix2pixhd.models import build_generator
from pix2pixhd.synthesis import Synthesizer, load_generator
from tests.test_synthesis_engine import save_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _unet_in_train_mode():
    """A tiny pix2pix U-Net (BatchNorm, dropout) straight from build_generator: training mode."""
    cfg = TrainConfig(model="pix2pix", label_nc=0, ngf=2, netG_pix2pix="unet_128",
                      norm_impl="ref").resolved()
    torch.manual_seed(0)
    return build_generator(cfg), cfg


def _photos(n):
    return torch.randint(0, 256, (n, 3, 128, 128), generator=torch.Generator().manual_seed(1)).to(torch.uint8)


def _bn_buffers(g):
    return [b.clone() for name, b in g.named_buffers() if "running" in name]


# ---- 1. a training-mode module is set up as load_generator's ------------------------------------

def test_a_training_mode_generator_is_set_up_as_load_generator_returns_it():
    g, cfg = _unet_in_train_mode()
    assert g.training
    before = _bn_buffers(g)
    s = Synthesizer(g, cfg, "cpu", precision="fp32")
    x = _photos(2)
    both = s(x, seeds=[7, 8])
    alone = s(x[:1], seeds=[7])
    assert torch.equal(both[:1], alone)                       # a row does not depend on its batch
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_buffers(g)))   # running stats untouched
    assert not g.training and s.has_dropout                   # eval, with pix2pix's test dropout
    dropouts = [m for m in g.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert dropouts and all(m.training for m in dropouts)


def test_an_eval_mode_generator_runs_as_its_owner_set_it():
    g, cfg = _unet_in_train_mode()
    g.eval()                                                  # running statistics, dropout off
    s = Synthesizer(g, cfg, "cpu", precision="fp32")
    assert not s.has_dropout
    assert not any(type(m).__name__ == "PerImageBatchNorm2d" for m in g.modules())


# ---- 2. a device this machine lacks -------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    save_run(folder, label_nc=5, no_instance=True)
    return folder


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_missing_cuda_is_one_clean_error(run, no_cuda, device):
    with pytest.raises(DeviceUnavailableError, match=rf"^device {device}: CUDA is not available on this "
                                                      r"machine .*use device cpu$"):
        load_generator(run, device=device)
    g, cfg = load_generator(run)
    with pytest.raises(DeviceUnavailableError, match=rf"^device {device}: CUDA is not available"):
        Synthesizer(g, cfg, device)


def test_a_cuda_index_past_the_last_gpu_is_one_clean_error(run, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    g, cfg = load_generator(run)
    with pytest.raises(DeviceUnavailableError, match=r"^device cuda:1: this machine has 1 CUDA device\(s\), "
                                                     r"numbered from cuda:0; pass one of them or cpu$"):
        Synthesizer(g, cfg, "cuda:1")


# ---- 3. messages that point to the right fix ----------------------------------------------------

def test_an_nhwc_label_is_blamed_not_the_inst_map(tmp_path):
    save_run(tmp_path, label_nc=5)                            # with instance maps
    g, cfg = load_generator(tmp_path)
    label = torch.randint(0, 5, (1, 1, 32, 36))
    s = Synthesizer(g, cfg, "cpu")
    with pytest.raises(InputError, match=r"^label has shape \(1, 32, 36, 1\), channels last \(NHWC\); pass "
                                         r"\[N, 1, H, W\] integer label ids .*label\.permute\(0, 3, 1, 2\)$"):
        s(label.permute(0, 2, 3, 1), label)
    assert s(label, label).shape == (1, 3, 32, 36)


def test_a_label_id_past_the_checkpoints_label_nc_says_remap_not_set_label_nc(run):
    g, cfg = load_generator(run)
    label = torch.randint(0, 5, (1, 1, 16, 16))
    label[0, 0, 3, 3] = 7
    with pytest.raises(LabelRangeError, match=r"^label id 7 >= label_nc=5 of the checkpoint; remap the ids "
                                              r"to 0\.\.4") as e:
        Synthesizer(g, cfg, "cpu")(label)
    assert "--label_nc" not in str(e.value)


@pytest.mark.parametrize("metric", ["ssim", "psnr"])
def test_an_nhwc_batch_to_ssim_or_psnr_says_nhwc(metric):
    from pix2pixhd import evaluate
    a = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with pytest.raises(InputError, match=rf"^{metric}'s fake has shape \(2, 32, 32, 3\), channels last "
                                         r"\(NHWC\); pass \[N, C, H, W\]"):
        getattr(evaluate, metric)(a, a.clone())
    assert getattr(evaluate, metric)(a.permute(0, 3, 1, 2), a.permute(0, 3, 1, 2)).shape == (2,)


# ---- 4. size errors print W x H -----------------------------------------------------------------

def test_generator_size_errors_print_width_by_height():
    from pix2pixhd.networks import GlobalGenerator
    from pix2pixhd.pix2pix_networks import ResnetGenerator, UnetGenerator
    x = torch.zeros(1, 3, 24, 40)                              # H 24, W 40
    for g, m, padded in ((UnetGenerator(3, 3, num_downs=5, ngf=2), 32, "64x32"),
                         (GlobalGenerator(3, 3, ngf=2, n_downsampling=4, n_blocks=1), 16, "48x32")):
        with pytest.raises(ValueError, match=rf"input size 40x24 \(WxH\) is not divisible by {m};.*"
                                             rf"\(e\.g\. {padded}\)"):
            g(x)
    with pytest.raises(ValueError, match=r"input size 30x24 \(WxH\) .* pad or resize the input to 32x24$"):
        ResnetGenerator(3, 3, ngf=2, n_blocks=1)(torch.zeros(1, 3, 24, 30))
