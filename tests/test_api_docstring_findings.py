"""Findings of a walkthrough of the public Python API's docstrings (at 369c3cd), one test each.

1. ``Synthesizer.synthesize`` read a float photo (label_nc 0) as [-1, 1], so a torchvision-style
   [0, 1] photo gave a wrong output without an error; ``image_to_float`` passed any float through
   (0-255 levels as float too).
2. ``encode_input`` of a float photo already of the dtype, alone, returned the caller's tensor.
5. ``load_reference_weights`` with a bytes path said the file was truncated or damaged.
6. ``boundary_map`` of a float instance map: kept (the reference's maps are float), see its test.
7. ``NLayerDiscriminator.groups()`` raised AttributeError 'model0' without get_interm_feat;
   ``psnr_ssim`` raised range()'s error for chunk=0 and torch.cat's for an empty batch.
"""
from __future__ import annotations

import os

import pytest
import torch

from pix2pixhd.compat import load_reference_weights
from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import boundary_map, encode_input, image_to_float
from pix2pixhd.errors import InputError
from pix2pixhd.evaluate import psnr_ssim
from pix2pixhd.models import build_generator
from pix2pixhd.networks import GlobalGenerator, NLayerDiscriminator
from pix2pixhd.synthesis import Synthesizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _photos(n=1, h=16, w=16):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


# ---- 1. float photos ----------------------------------------------------------------------------

@pytest.mark.fault(cls="synthesis",
                   case="a float photo ([0, 1], torchvision-style) given to Synthesizer.synthesize of a photo-input "
                        "generator: refused in one line saying to pass uint8, not misread as [-1, 1]")
def test_synthesizer_refuses_a_float_photo():
    cfg = TrainConfig(label_nc=0, no_instance=True, netG="global", ngf=4, n_downsample_global=2,
                      n_blocks_global=1, norm_impl="ref").resolved()
    torch.manual_seed(0)
    s = Synthesizer(build_generator(cfg).eval().requires_grad_(False), cfg, "cpu")
    u8 = _photos()
    with pytest.raises(InputError, match=r"^label has dtype torch\.float32; photos go in as uint8 values "
                                         r"0-255 .*\(x \* 255\)\.round\(\)\.to\(torch\.uint8\)") as e:
        s(u8.float() / 255)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"^image has dtype torch\.float32; photos go in as uint8"):
        s(u8, image=u8.float() / 255)                    # the real photos for encoded features too
    assert s(u8).shape == (1, 3, 16, 16)                 # uint8 photos as before
    with pytest.raises(InputError, match=r"^label has dtype torch\.complex64; photos go in as uint8"):
        s(u8.to(torch.complex64))                        # complex is refused as float is
    # label ids (label_nc > 0): a float map is a label map of the wrong dtype, not a float photo
    ids = TrainConfig(label_nc=3, no_instance=True, netG="global", ngf=4, n_downsample_global=2,
                      n_blocks_global=1, norm_impl="ref").resolved()
    torch.manual_seed(0)
    s = Synthesizer(build_generator(ids).eval().requires_grad_(False), ids, "cpu")
    with pytest.raises(InputError, match=r"^label map has dtype torch\.float32; label ids must be an integer"):
        s(torch.zeros(1, 1, 16, 16))


def test_image_to_float_refuses_floats_outside_minus_one_one_and_passes_the_rest():
    levels = _photos().float()                           # 0-255 levels as float
    with pytest.raises(InputError, match=r"^float image of dtype torch\.float32 has values in \[\d+, 2\d\d\]; "
                                         r"float images must lie in \[-1, 1\]: pass uint8") as e:
        image_to_float(levels)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"^float image of dtype torch\.float32 has values in \[-2, -2\]"):
        image_to_float(torch.full((1, 3, 2, 2), -2.0))   # below -1 too, not only above 1
    with pytest.raises(InputError, match=r"must lie in \[-1, 1\]"):
        encode_input(levels, label_nc=0)
    x = levels / 127.5 - 1
    assert torch.equal(image_to_float(x), x)             # [-1, 1] floats pass unchanged
    assert torch.equal(image_to_float(_photos()), x)     # uint8 as before
    assert image_to_float(torch.empty(0, 3, 4, 4)).shape == (0, 3, 4, 4)
    feat = torch.full((1, 3, 16, 16), 3.0)               # features are not photos: not range-checked
    assert torch.equal(encode_input(_photos(), None, feat, label_nc=0)[:, 3:], feat)


# ---- 2. no aliasing -----------------------------------------------------------------------------

def test_encode_input_of_a_float_photo_is_a_new_tensor():
    x = image_to_float(_photos())
    before = x.clone()
    out = encode_input(x, label_nc=0)
    assert torch.equal(out, before) and out.data_ptr() != x.data_ptr()
    out.zero_()
    assert torch.equal(x, before), "editing encode_input's result in place edited its input"


# ---- 5. bytes paths -----------------------------------------------------------------------------

def test_load_reference_weights_takes_a_bytes_path(tmp_path):
    torch.manual_seed(0)
    src = GlobalGenerator(5, 3, ngf=4, n_downsampling=1, n_blocks=1)
    path = tmp_path / "net_G.pth"
    torch.save(src.state_dict(), path)
    g = GlobalGenerator(5, 3, ngf=4, n_downsampling=1, n_blocks=1)
    load_reference_weights(g, os.fsencode(path))         # was: "truncated or damaged" ('bytes' ... 'seek')
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), src.state_dict().values()))


# ---- 6. boundary_map and float instance ids ------------------------------------------------------

def test_boundary_map_of_a_float_map_of_whole_ids_is_the_integer_maps():
    """The reference's instance tensors are float (benchmarks/baseline.py feeds such to
    encode_input, as a migrating user may): boundaries compare neighbours only, so they are kept.
    A refusal added at 92bebbc broke that baseline and was taken back."""
    inst = torch.randint(0, 3, (2, 1, 6, 7), generator=torch.Generator().manual_seed(0)) * 1000
    want = boundary_map(inst)
    assert want.dtype == torch.float32 and 0 < int(want.sum()) < want.numel()
    assert torch.equal(boundary_map(inst.float()), want)
    label = torch.zeros(2, 1, 6, 7, dtype=torch.long)
    assert torch.equal(encode_input(label, inst.float(), label_nc=2), encode_input(label, inst, label_nc=2))


# ---- 7. groups() and psnr_ssim -------------------------------------------------------------------

def test_nlayer_discriminator_groups_without_intermediate_features():
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, ndf=4, n_layers=2, get_interm_feat=False)
    groups = d.groups()                                  # was: AttributeError 'model0'
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(d.model)
    assert all(m is n for m, n in zip((m for g in groups for m in g), d.model))   # shared, not copied
    x = torch.randn(1, 3, 16, 16)
    y = x
    for g in groups:
        y = g(y)
    assert torch.equal(y, d(x))


def test_psnr_ssim_refuses_chunk_zero_and_takes_an_empty_batch():
    a = _photos(2)
    with pytest.raises(InputError, match=r"^psnr_ssim: chunk=0; pass the number of images per SSIM pass, "
                                         r"an int >= 1"):
        psnr_ssim(a, a, chunk=0)                         # was: range() arg 3 must not be zero
    for bad in (True, 2.5):                              # a bool is not a count; nor is a float
        with pytest.raises(InputError, match=rf"^psnr_ssim: chunk={bad!r}; pass the number"):
            psnr_ssim(a, a, chunk=bad)
    empty = a[:0]
    p, s = psnr_ssim(empty, empty)                       # was: torch.cat(): expected a non-empty list
    assert p.shape == s.shape == (0,) and s.dtype == torch.float64
    p, s = psnr_ssim(a, a, chunk=1)
    assert s.shape == (2,) and torch.allclose(s, torch.ones(2, dtype=torch.float64))


def test_a_name_that_is_not_a_string_is_named_as_such_not_called_empty(tmp_path):
    """TrainConfig(name=5) said "--name 5 is empty"."""
    from pix2pixhd.paths import UnsafeNameError
    with pytest.raises(UnsafeNameError, match=r"^--name 5 is of type int, not a name: pass a str .* --name '5'$"):
        TrainConfig(name=5, checkpoints_dir=str(tmp_path)).resolved()
    with pytest.raises(UnsafeNameError, match=r"^--name '' is empty"):
        TrainConfig(name="", checkpoints_dir=str(tmp_path)).resolved()
