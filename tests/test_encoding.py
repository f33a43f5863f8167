"""Input encoding: one-hot, boundary maps on hand-made instance maps, label range errors."""
import pytest
import torch

from pix2pixhd.encoding import (LabelRangeError, boundary_map, encode_input, float_to_uint8,
                                image_to_float, input_channels, one_hot)


def test_one_hot_hand_case():
    label = torch.tensor([[[[0, 2], [1, 2]]]], dtype=torch.uint8)
    oh = one_hot(label, 3)
    assert oh.shape == (1, 3, 2, 2)
    assert oh[0, :, 0, 0].tolist() == [1, 0, 0] and oh[0, :, 0, 1].tolist() == [0, 0, 1]
    assert oh[0, :, 1, 0].tolist() == [0, 1, 0] and oh.sum(1).eq(1).all()


def test_label_id_out_of_range_names_id_source_and_fix():
    label = torch.tensor([[[[0, 40]]]])
    with pytest.raises(LabelRangeError, match=r"label id 40 in train_label/x.png .*label_nc=35.*--label_nc 41"):
        one_hot(label, 35, source="train_label/x.png")
    with pytest.raises(LabelRangeError, match=r"label id 35 in train_label/x.png .*label_nc=35.*--label_nc 36"):
        one_hot(torch.tensor([[[[0, 35]]]]), 35, source="train_label/x.png")   # label_nc itself: one past the last


def test_boundary_map_hand_made():
    inst = torch.tensor([[0, 0, 0, 0],
                         [0, 5, 5, 0],
                         [0, 5, 5, 0],
                         [0, 0, 0, 7]]).view(1, 1, 4, 4)
    expected = torch.tensor([[0, 1, 1, 0],
                             [1, 1, 1, 1],
                             [1, 1, 1, 1],
                             [0, 1, 1, 1]], dtype=torch.float32)
    # (0,0) has only 0-neighbours; (3,3)=7 differs from both neighbours; diagonals do not count.
    assert torch.equal(boundary_map(inst)[0, 0], expected)


def test_boundary_map_separates_touching_instances_of_one_class():
    inst = torch.full((1, 1, 3, 6), 26001)
    inst[..., 3:] = 26002
    b = boundary_map(inst)[0, 0]
    assert b[:, 2].eq(1).all() and b[:, 3].eq(1).all() and b[:, :2].eq(0).all() and b[:, 4:].eq(0).all()


def test_encode_input_concatenates_in_reference_order():
    label = torch.randint(0, 4, (2, 1, 8, 8), dtype=torch.uint8)
    inst = torch.randint(0, 3, (2, 1, 8, 8), dtype=torch.int32)
    feat = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    x = encode_input(label, inst, feat, label_nc=4)
    assert x.shape == (2, input_channels(4, no_instance=False, feat_num=3), 8, 8) == (2, 8, 8, 8)
    assert torch.equal(x[:, :4], one_hot(label, 4)) and torch.equal(x[:, 4:5], boundary_map(inst))
    rgb = torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(encode_input(rgb, label_nc=0), image_to_float(rgb))


def test_image_round_trip():
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = image_to_float(u8)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(float_to_uint8(f), u8)


def test_negative_label_id_says_ids_must_be_non_negative():
    label = torch.tensor([[[[-1, 3]]]], dtype=torch.int32)
    with pytest.raises(LabelRangeError, match=r"label id -1 .*must be >= 0") as err:
        one_hot(label, 35)
    assert "--label_nc" not in str(err.value)


def test_label_id_255_is_explained_as_an_ignore_id():
    label = torch.tensor([[[[255, 3]]]], dtype=torch.uint8)
    with pytest.raises(LabelRangeError, match=r"label id 255 .*'ignore'.*--label_nc 256 only if 255 is a real class"):
        one_hot(label, 35)
