"""Problems users of the Python API reported, one test (or a few) each:

* a LocalEnhancer whose global part is frozen (--niter_fix_global) still passes the gradient to its
  input (the encoder's features, --instance_feat), and still builds no graph for G1 when the input
  needs none;
* ``Synthesizer`` without ``inst`` on a run trained with instance maps takes the label map's
  boundaries (as synthesize.py), an ``inst`` or ``image`` of the wrong size is one clear line, and
  an unknown ``precision`` is refused;
* Synthesizers sharing one pix2pix generator (seeded test-time dropout) give the same outputs from
  two threads as one after the other;
* ``load_reference_weights`` on one of our training checkpoints says what to pass instead, and its
  guess does not take a ``scaler`` key for a discriminator scale;
* ``torch.compile`` of a network warns about no lru_cache; ``one_hot`` refuses float and empty
  label maps; ``feature_matching_loss`` refuses lists of different lengths.
"""
import copy
import pickle
import threading
import warnings

import pytest
import torch

from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import encode_input, one_hot
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.losses import feature_matching_loss
from pix2pixhd.models import build_generator
from pix2pixhd.networks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator, count_parameters
from pix2pixhd.synthesis import Synthesizer
from tests.test_synthesis_dropout import _unet as synthesis_dropout_unet

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---- 1. a frozen global part and the input's gradient ------------------------------------------

def _local():
    torch.manual_seed(0)
    return LocalEnhancer(4, 3, ngf=4, n_downsample_global=1, n_blocks_global=1, n_blocks_local=1)


def test_frozen_global_part_still_passes_the_gradient_to_the_input():
    L = _local()
    x = torch.randn(1, 4, 16, 16, requires_grad=True)
    L(x).square().sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    L.zero_grad(set_to_none=True)
    L.model.requires_grad_(False)
    L(x).square().sum().backward()
    assert torch.allclose(g1, x.grad, atol=1e-6)
    assert all(p.grad is None for p in L.model.parameters())          # G1 itself stays frozen
    assert all(p.grad is not None for p in L.local_parameters())


def test_frozen_global_part_builds_no_graph_for_an_input_without_gradient():
    L = _local()
    seen = []
    L.model.register_forward_hook(lambda m, i, out: seen.append((out.requires_grad, out.grad_fn)))
    x = torch.randn(1, 4, 16, 16)
    L(x).sum().backward()
    assert seen[-1][0] and seen[-1][1] is not None                     # trained G1: a graph
    L.model.requires_grad_(False)
    out = L(x)
    assert seen[-1] == (False, None)                                   # frozen, plain input: none
    out.sum().backward()                                               # the enhancers still train
    assert all(p.grad is not None for p in L.local_parameters())


# ---- 2./3. Synthesizer: inst None, sizes, precision ---------------------------------------------

def _pix2pixhd(**options):
    base = dict(label_nc=4, netG="global", ngf=4, n_downsample_global=2, n_blocks_global=1, norm_impl="ref")
    base.update(options)
    cfg = TrainConfig(**base).resolved()
    torch.manual_seed(0)
    return build_generator(cfg).eval().requires_grad_(False), cfg


def _labels(n=1, h=18, w=22, top=4):
    return torch.randint(0, top, (n, 1, h, w), generator=torch.Generator().manual_seed(3))


def test_synthesizer_without_inst_takes_the_label_maps_boundaries():
    g, cfg = _pix2pixhd()
    assert not cfg.no_instance
    label = _labels(2)
    s = Synthesizer(g, cfg, "cpu")
    out = s(label)                                   # was: conv expected 5 channels, got 4
    assert out.shape == (2, 3, 18, 22) and out.dtype == torch.uint8
    assert torch.equal(out, s(label, label))         # synthesize.py without --inst: the label map
    assert not torch.equal(out, s(label, torch.zeros_like(label)))   # inst does count


def test_synthesizer_photo_input_with_instance_maps_needs_inst():
    g, cfg = _pix2pixhd(label_nc=0)
    assert not cfg.no_instance
    photos = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(ConfigError, match=r"trained with instance maps .* pass inst="):
        Synthesizer(g, cfg, "cpu")(photos)
    assert Synthesizer(g, cfg, "cpu")(photos, torch.zeros(1, 1, 16, 16, dtype=torch.int32)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("shape", [(1, 1, 18, 20), (2, 1, 18, 22), (1, 2, 18, 22), (1, 18, 22)])
def test_synthesizer_refuses_an_inst_of_the_wrong_size_in_one_line(shape):
    g, cfg = _pix2pixhd()
    label = _labels(1)
    with pytest.raises(InputError, match=r"^inst has shape .*the label map \(1, 1, 18, 22\): pass the instance "
                                         r"id maps as \[1, 1, 18, 22\]") as e:
        Synthesizer(g, cfg, "cpu")(label, torch.zeros(shape, dtype=torch.int64))
    assert "\n" not in str(e.value)


def test_synthesizer_refuses_a_real_image_of_the_wrong_size():
    g, cfg = _pix2pixhd(no_instance=True)
    with pytest.raises(InputError, match=r"^image has shape \(1, 3, 16, 22\).*\[1, C, 18, 22\]"):
        Synthesizer(g, cfg, "cpu").synthesize(_labels(1), image=torch.zeros(1, 3, 16, 22, dtype=torch.uint8))


def test_synthesizer_refuses_an_unknown_precision():
    g, cfg = _pix2pixhd(no_instance=True)
    with pytest.raises(ConfigError, match=r"precision='fp8'; expected one of \('auto', 'fp32', 'bf16', 'fp16'\)"):
        Synthesizer(g, cfg, "cpu", precision="fp8")
    assert Synthesizer(g, cfg, "cpu", precision="fp32").precision == "fp32"


# ---- 4. one pix2pix generator, two threads --------------------------------------------------------

def _unet():
    """test_synthesis_dropout's tiny U-Net (dropout and per-image BatchNorm on), with more than
    one Dropout layer."""
    g, cfg = synthesis_dropout_unet()
    assert len(_dropouts(g)) > 1
    return g, cfg


def _dropouts(g):
    return [m for m in g.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]


def test_synthesizers_sharing_a_dropout_generator_in_two_threads_match_one_after_the_other():
    g, cfg = _unet()
    x = torch.randint(0, 256, (1, 3, 128, 128), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    s1, s2 = Synthesizer(g, cfg, "cpu"), Synthesizer(g, cfg, "cpu")
    want = {7: s1(x, seeds=[7]), 9: s2(x, seeds=[9])}
    assert not torch.equal(want[7], want[9])
    # The two calls must overlap, whatever a slow machine's scheduler does: the first forward to
    # reach G's first Dropout layer waits there (bounded) until the other call is in progress too,
    # i.e. asks for the generator's seeded-dropout lock (where it waits today, as such calls run one
    # at a time) or, were there no lock, enters G itself. Sleeps would only make the overlap likely.
    sd = s1.dropout
    assert s2.dropout is sd                      # one per generator: both calls go through it
    state = threading.Condition()
    in_call = set()   # threads asking for or holding the lock, or inside G's first Dropout
    most = [0]        # the most calls in progress at once while the first forward waits in G
    first = []        # the thread whose forward waits
    seen = []         # most, when that wait ended

    def arrive():
        with state:
            in_call.add(threading.get_ident())
            most[0] = max(most[0], len(in_call))
            state.notify_all()

    class NotingLock:
        """The seeded dropout's lock, noting the threads that ask for it until they release it."""

        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            arrive()
            return self.lock.__enter__()

        def __exit__(self, *exc):
            with state:
                in_call.discard(threading.get_ident())
            return self.lock.__exit__(*exc)

    sd._lock = NotingLock(sd._lock)

    def wait_for_the_other_call(module, inputs):
        arrive()
        with state:
            if not first:                            # the first forward only: the second must not wait
                first.append(threading.get_ident())
                most[0] = len(in_call)               # counted from now on: the other call may come and go
                state.wait_for(lambda: most[0] >= 2, timeout=30)
                seen.append(most[0])

    _dropouts(g)[0].register_forward_pre_hook(wait_for_the_other_call)
    got, errors = {}, []

    def call(s, seed):
        try:
            got[seed] = s(x, seeds=[seed])
        except Exception as e:   # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=call, args=(s1, 7)), threading.Thread(target=call, args=(s2, 9))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a call still runs after 60 s"
    assert not errors, errors
    assert seen == [2], f"calls in progress at once while the first forward ran: {seen} (want [2])"
    assert torch.equal(got[7], want[7]) and torch.equal(got[9], want[9])
    assert all(m.training for m in _dropouts(g))          # the layers' modes as their owner set them


def test_a_generator_a_synthesizer_ran_on_still_copies_and_pickles():
    g, cfg = _unet()
    x = torch.randint(0, 256, (1, 3, 128, 128), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    s = Synthesizer(g, cfg, "cpu")
    a = s(x, seeds=[4])
    c = copy.deepcopy(g)                                   # export_onnx copies the generator
    assert torch.equal(Synthesizer(c, cfg, "cpu")(x, seeds=[4]), a)
    pickle.loads(pickle.dumps(g))
    assert torch.equal(s(x, seeds=[4]), a)


# ---- 5. load_reference_weights and our training checkpoints --------------------------------------

def test_load_reference_weights_on_a_training_checkpoint_says_what_to_pass(tmp_path):
    g, cfg = _pix2pixhd()
    d = MultiscaleDiscriminator(8, ndf=4, n_layers=1, num_D=1)
    path = tmp_path / "latest.pt"
    torch.save({"G": g.state_dict(), "D": d.state_dict(), "E": None, "optimizer_G": {}, "scaler": {},
                "epoch": 1, "config": cfg.to_dict()}, path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_reference_weights(build_generator(cfg), path)
    msg = str(e.value)
    assert "\n" not in msg and "training checkpoint" in msg and "['G', 'D']" in msg
    assert "pix2pixhd.synthesis.load_generator(" in msg and "['G']" in msg
    assert "MultiscaleDiscriminator" not in msg
    assert torch.equal(load_reference_weights(build_generator(cfg), torch.load(path)["G"]).model[1].weight,
                       g.model[1].weight)                # what the message says works


def test_guess_does_not_take_a_scaler_key_for_a_discriminator_scale():
    src = GlobalGenerator(5, 3, ngf=4, n_downsampling=1, n_blocks=2).state_dict()
    src["scaler"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="looks like a ResNet generator with 2 residual blocks"):
        load_reference_weights(GlobalGenerator(5, 3, ngf=4, n_downsampling=1, n_blocks=1), src)


# ---- 6. cosmetics --------------------------------------------------------------------------------

def test_torch_compile_of_a_network_warns_about_no_lru_cache():
    torch._dynamo.reset()
    torch.manual_seed(0)
    g = GlobalGenerator(3, 3, ngf=4, n_downsampling=1, n_blocks=1)
    x = torch.randn(1, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = torch.compile(g, backend="eager")(x)
    torch._dynamo.reset()
    assert not [str(w.message) for w in caught if "lru_cache" in str(w.message)]
    assert torch.allclose(y, g(x), atol=1e-6)


def test_one_hot_refuses_float_labels_instead_of_truncating():
    label = torch.tensor([[[[0.0, 2.7]]]])
    with pytest.raises(InputError, match=r"label map \(a\.png\) has dtype torch\.float32; label ids must be an "
                                         r"integer tensor"):
        one_hot(label, 4, source="a.png")
    with pytest.raises(InputError, match="dtype torch.float32"):
        encode_input(label, label_nc=4)
    assert one_hot(label.long(), 4)[0, :, 0, 1].tolist() == [0, 0, 1, 0]  # integers as before


@pytest.mark.parametrize("shape", [(0, 1, 4, 4), (1, 1, 0, 4)])
def test_one_hot_refuses_an_empty_label_map(shape):
    with pytest.raises(InputError, match=r"label map is empty \(shape .*\); pass at least one map"):
        one_hot(torch.zeros(shape, dtype=torch.int64), 4)


def test_feature_matching_loss_refuses_lists_of_different_lengths():
    f = [[torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)] for _ in range(2)]
    r = [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)] for _ in range(2)]
    with pytest.raises(InputError, match=r"2 discriminator scale\(s\) for the fake and 1 for the real"):
        feature_matching_loss(f, r[:1], num_D=2)
    with pytest.raises(InputError, match=r"scale 1 has 2 feature\(s\) for the fake and 1 for the real"):
        feature_matching_loss(f, [r[0], r[1][1:]], num_D=2)
    # two features a scale: n_layers_D 0 (the logits are not matched), weight 4 / (0 + 1)
    assert feature_matching_loss(f, r, n_layers_D=0, num_D=2).item() == pytest.approx(2 * 0.5 * 4 * 10)


def test_count_parameters_is_documented_and_counts_shared_parameters_once():
    assert "parameters" in (count_parameters.__doc__ or "")
    conv = torch.nn.Conv2d(2, 3, 1)
    assert count_parameters(torch.nn.Sequential(conv, conv)) == 2 * 3 + 3
