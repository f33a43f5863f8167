"""pix2pixhd.data: layouts, preprocessing modes and alignment, determinism and resume."""
import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.data import (DatasetError, FACADES_PALETTE, create_dataloader, create_dataset,
                            decode_palette)
from pix2pixhd.datasets import synthetic_streets as ss

NC = 6
COLOURS = np.array([[0, 0, 0], [250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0],
                    [0, 250, 250]], np.uint8)


def blocks(w, h, seed, block=8):
    """A label map of constant 8x8 blocks, its photo (a colour per id) and unique instance ids."""
    rng = np.random.default_rng(seed)
    lab = np.kron(rng.integers(0, NC, (h // block, w // block)), np.ones((block, block), int))
    inst = (np.arange(h)[:, None] * w + np.arange(w)[None, :]).astype(np.int32)   # pixel address
    return lab.astype(np.uint8), inst, COLOURS[lab]


def write_cityscapes(root, phase, n, w=64, h=32, feat=True):
    for k in ("label", "inst", "img", "feat"):
        (root / f"{phase}_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        lab, inst, img = blocks(w, h, i)
        Image.fromarray(lab, "L").save(root / f"{phase}_label/s{i}.png")
        Image.fromarray(inst.astype(np.uint16)).save(root / f"{phase}_inst/s{i}.png")
        Image.fromarray(img, "RGB").save(root / f"{phase}_img/s{i}.png")
        if feat:
            Image.fromarray(img[:, :, ::-1].copy(), "RGB").save(root / f"{phase}_feat/s{i}.png")


@pytest.fixture()
def city(tmp_path):
    write_cityscapes(tmp_path, "train", 4)
    return tmp_path


def test_cityscapes_sample_matches_files(city):
    ds = create_dataset(city, label_nc=NC, load_features=True, resize_or_crop="none",
                        required_multiple=16, no_flip=True)
    assert len(ds) == 4
    s = ds[1]
    lab, inst, img = blocks(64, 32, 1)
    assert s["label"].dtype == torch.uint8 and s["label"].shape == (1, 32, 64)
    assert s["inst"].dtype == torch.int32 and s["image"].dtype == torch.uint8
    assert s["feat"].shape == (3, 32, 64) and s["path"].endswith("s1.png")
    np.testing.assert_array_equal(s["label"][0].numpy(), lab)
    np.testing.assert_array_equal(s["inst"][0].numpy(), inst)
    np.testing.assert_array_equal(s["image"].permute(1, 2, 0).numpy(), img)
    np.testing.assert_array_equal(s["feat"].permute(1, 2, 0).numpy(), img[:, :, ::-1])
    big = create_dataset(city, label_nc=300, no_instance=True)
    assert big[0]["label"].dtype == torch.int32 and "inst" not in big[0]


MODES = [  # mode, loadSize, fineSize, required_multiple, expected (w, h) from 64x32
    ("resize_and_crop", 64, 32, 16, (32, 32)),
    ("crop", 99, 16, 16, (16, 16)),
    ("scale_width", 128, 99, 16, (128, 64)),
    ("scale_width_and_crop", 96, 32, 16, (32, 32)),
    ("none", 99, 99, 24, (72, 48)),     # rounded up to multiples of 24
]


@pytest.mark.parametrize("mode,load,fine,mult,size", MODES)
def test_preprocessing_sizes_and_alignment(city, mode, load, fine, mult, size):
    """Every map gets the same geometry: photo colours, ids and feature colours agree."""
    ds = create_dataset(city, label_nc=NC, load_features=True, resize_or_crop=mode,
                        loadSize=load, fineSize=fine, required_multiple=mult, seed=3)
    flips = set()
    for i in range(len(ds)):
        for epoch in range(3):
            s = ds[(i, epoch)]
            lab = s["label"][0].numpy().astype(int)
            assert s["label"].shape[1:] == s["inst"].shape[1:] == s["image"].shape[1:] \
                == s["feat"].shape[1:] == (size[1], size[0])
            # Away from block edges (bicubic ringing) the photo is the id's colour.
            pad = np.pad(lab, 2, constant_values=-1)     # beyond the crop: unknown neighbours
            flat = np.ones_like(lab, bool)
            for dy in range(5):
                for dx in range(5):
                    flat &= pad[dy:dy + lab.shape[0], dx:dx + lab.shape[1]] == lab
            assert flat.mean() > 0.1
            img = s["image"].permute(1, 2, 0).numpy().astype(int)
            err = np.abs(img[flat] - COLOURS[lab[flat]])
            assert err.max() <= 16 and err.mean() <= 2, (err.max(), err.mean())
            feat = s["feat"].permute(1, 2, 0).numpy().astype(int)   # NEAREST: exact everywhere
            np.testing.assert_array_equal(feat, COLOURS[lab][:, :, ::-1])
            # Without resize the instance map (pixel addresses) shows the exact crop and flip.
            if mode == "crop":
                inst = s["inst"][0].numpy()
                y0, x0 = divmod(int(inst[0].min()), 64)
                flipped = inst[0, 0] > inst[0, -1]
                flips.add(bool(flipped))
                xs = np.arange(x0, x0 + size[0])[::-1 if flipped else 1]
                np.testing.assert_array_equal(inst, np.arange(y0, y0 + size[1])[:, None] * 64 + xs)
    if mode == "crop":
        assert flips == {True, False}


def test_flip_only_in_training(city):
    write_cityscapes(city, "test", 2, feat=False)
    kw = dict(label_nc=NC, resize_or_crop="none", no_instance=True)
    lab0 = blocks(64, 32, 0)[0]
    for ds in (create_dataset(city, "train", no_flip=True, **kw), create_dataset(city, "test", **kw)):
        for e in range(8):
            np.testing.assert_array_equal(ds[(0, e)]["label"][0].numpy(), lab0)
    ds = create_dataset(city, "train", **kw)
    got = {bool((ds[(0, e)]["label"][0].numpy() == lab0[:, ::-1]).all()) for e in range(16)}
    assert got == {True, False}


def test_deterministic_crops_workers_and_resume(city):
    ds = create_dataset(city, label_nc=NC, resize_or_crop="crop", fineSize=16, seed=7)
    assert all(torch.equal(ds[(i, 2)]["inst"], ds[(i, 2)]["inst"]) for i in range(4))
    assert any(not torch.equal(ds[(i, 0)]["inst"], ds[(i, 1)]["inst"]) for i in range(4))

    def epoch_batches(loader, epoch, skip=0):
        loader.sampler.set_epoch(epoch, skip=skip)
        return [(b["path"], b["inst"]) for b in loader]

    l0 = create_dataloader(ds, 1, shuffle=True, num_workers=0, seed=7)
    l2 = create_dataloader(ds, 1, shuffle=True, num_workers=2, seed=7)
    e0, e1 = epoch_batches(l0, 0), epoch_batches(l0, 1)
    assert [p for p, _ in e0] != [p for p, _ in e1] or any(
        not torch.equal(a, b) for (_, a), (_, b) in zip(e0, e1))
    w1 = epoch_batches(l2, 1)
    assert all(p == q and torch.equal(a, b) for (p, a), (q, b) in zip(e1, w1)) and len(w1) == 4
    tail = epoch_batches(l0, 1, skip=2)               # resume after 2 batches of epoch 1
    assert len(tail) == 2
    assert all(p == q and torch.equal(a, b) for (p, a), (q, b) in zip(e1[2:], tail))
    assert len(epoch_batches(l0, 1)) == 4             # the skip applied once


def test_rgb_pairs_layout(tmp_path):
    for k in ("A", "B"):
        (tmp_path / f"train_{k}").mkdir()
    for i in range(2):
        _, _, img = blocks(64, 32, i)
        Image.fromarray(img, "RGB").save(tmp_path / f"train_A/p{i}.jpg", quality=100,
                                             subsampling=0)
        Image.fromarray(255 - img, "RGB").save(tmp_path / f"train_B/p{i}.png")
    ds = create_dataset(tmp_path, label_nc=0, no_instance=True, resize_or_crop="none")
    assert ds.mode == "rgb_pairs"
    s = ds[0]
    assert s["label"].shape == (3, 32, 64) and s["label"].dtype == torch.uint8
    assert (s["label"].int() + s["image"].int() - 255).abs().float().mean() < 4   # JPEG-close
    with pytest.raises(DatasetError, match="label_nc=0"):
        create_dataset(tmp_path, label_nc=35, no_instance=True)


def test_aligned_layout_both_directions_and_palette(tmp_path):
    (tmp_path / "train").mkdir()
    lab, _, img = blocks(64, 32, 0)
    photo = (255 - img)
    Image.fromarray(np.concatenate([photo, img], 1), "RGB").save(tmp_path / "train/1.png")
    kw = dict(no_instance=True, resize_or_crop="none", no_flip=True)
    a2b = create_dataset(tmp_path, label_nc=0, direction="AtoB", **kw)[0]
    b2a = create_dataset(tmp_path, label_nc=0, direction="BtoA", **kw)[0]
    assert a2b["label"].shape == (3, 32, 64)
    assert torch.equal(a2b["label"], b2a["image"]) and torch.equal(a2b["image"], b2a["label"])
    np.testing.assert_array_equal(a2b["label"].permute(1, 2, 0).numpy(), photo)
    s = create_dataset(tmp_path, label_nc=NC, direction="BtoA", palette=COLOURS.tolist(), **kw)[0]
    np.testing.assert_array_equal(s["label"][0].numpy(), lab)
    with pytest.raises(DatasetError, match="palette"):
        create_dataset(tmp_path, label_nc=NC, **kw)
    with pytest.raises(DatasetError, match="no_instance"):
        create_dataset(tmp_path, label_nc=0, resize_or_crop="none")


def test_palette_layout_and_nearest_decoding(tmp_path):
    write_cityscapes(tmp_path, "train", 2, feat=False)
    for i in range(2):   # replace the ids by their (slightly noisy) colours
        lab = blocks(64, 32, i)[0]
        noisy = COLOURS[lab].astype(int) + np.random.default_rng(i).integers(-40, 40, (32, 64, 3))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(tmp_path / f"train_label/s{i}.png")
    ds = create_dataset(tmp_path, label_nc=NC, palette=COLOURS.tolist(), resize_or_crop="none",
                        no_flip=True)
    assert ds.mode == "palette"
    np.testing.assert_array_equal(ds[1]["label"][0].numpy(), blocks(64, 32, 1)[0])
    pal = np.array(FACADES_PALETTE)
    np.testing.assert_array_equal(decode_palette(pal[None].astype(np.uint8), pal), [np.arange(12)])
    with pytest.raises(DatasetError, match="wrong channels"):
        create_dataset(tmp_path, label_nc=NC, resize_or_crop="none")   # RGB labels without palette


def test_synthetic_dataset_loads(tmp_path):
    ss.generate(tmp_path, n_train=3, n_test=1, width=128, height=64, seed=0)
    ds = create_dataset(tmp_path, "train", label_nc=ss.LABEL_NC, resize_or_crop="none")
    b = next(iter(create_dataloader(ds, 3, shuffle=False, num_workers=0)))
    assert b["label"].shape == (3, 1, 64, 128) and b["inst"].max() >= 7000
    assert int(b["label"].max()) < ss.LABEL_NC
    with pytest.raises(DatasetError, match="classes.json says label_nc=9"):
        create_dataset(tmp_path, "train", label_nc=8)


@pytest.mark.parametrize("mode,load,fine,mult", [("resize_and_crop", 96, 64, 16),
                                                  ("scale_width", 128, 0, 16),
                                                  ("scale_width_and_crop", 160, 48, 16),
                                                  ("none", 0, 0, 24)])
def test_nearest_ids_sit_where_bicubic_photo_pixels_sit(tmp_path, mode, load, fine, mult):
    """Sub-pixel alignment: ids are source column/row numbers, the photo a linear ramp of the
    source coordinates (bicubic reproduces ramps), so every output pixel's id must be the
    source pixel containing the centre the photo says it came from."""
    for k in ("label", "inst", "img"):
        (tmp_path / f"train_{k}").mkdir()
    x, y = np.meshgrid(np.arange(64), np.arange(32))
    Image.fromarray(x.astype(np.uint8)).save(tmp_path / "train_label/r.png")
    Image.fromarray(y.astype(np.uint16)).save(tmp_path / "train_inst/r.png")
    ramp = np.stack([4 * x + 2, 8 * y + 4, 0 * x], -1).astype(np.uint8)   # centre coords x4, x8
    Image.fromarray(ramp).save(tmp_path / "train_img/r.png")
    ds = create_dataset(tmp_path, label_nc=64, resize_or_crop=mode, loadSize=load, fineSize=fine,
                        required_multiple=mult)
    for epoch in range(4):
        s = ds[(0, epoch)]
        img = s["image"].numpy().astype(float)
        sx, sy = img[0] / 4, img[1] / 8               # source coordinate of each output pixel
        inner = (sx > 2) & (sx < 62) & (sy > 2) & (sy < 30)   # bicubic clamps at the borders
        assert inner.mean() > 0.5
        assert np.abs(s["label"][0].numpy() + 0.5 - sx)[inner].max() <= 0.5 + 0.2
        assert np.abs(s["inst"][0].numpy() + 0.5 - sy)[inner].max() <= 0.5 + 0.1


def test_sampler_shards_ranks_and_reseeds_epochs():
    from pix2pixhd.data import ResumableSampler
    r0 = ResumableSampler(10, shuffle=True, seed=1, rank=0, world_size=2)
    r1 = ResumableSampler(10, shuffle=True, seed=1, rank=1, world_size=2)
    a, b = [i for i, _ in r0], [i for i, _ in r1]
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    r0.set_epoch(1)
    assert [i for i, _ in r0] != a and {e for _, e in r0} == {1}
    odd = ResumableSampler(5, shuffle=False, rank=1, world_size=2, drop_last=True)
    assert [i for i, _ in odd] == [1, 3]


@pytest.mark.parametrize("drop_last", [True, False])
def test_sampler_resumes_an_epoch_on_any_number_of_ranks(drop_last):
    """done=D leaves out the D samples the ranks consumed together; on the same number of ranks
    that is each rank's own order less its first D / W samples (so an equal-world resume is what
    it always was), on another number no sample of the epoch is trained twice or left out."""
    from pix2pixhd.data import ResumableSampler

    def orders(n, world, **kw):
        out = []
        for r in range(world):
            s = ResumableSampler(n, shuffle=True, seed=7, rank=r, world_size=world, drop_last=drop_last)
            s.set_epoch(3, **kw)
            out.append([i for i, _ in s])
        return out

    n = 23
    for old_world in (1, 2, 3, 4):
        full = orders(n, old_world)
        for k in range(len(full[0]) + 1):   # samples each rank trained before the stop
            consumed = [i for o in full for i in o[:k]]
            assert orders(n, old_world, done=k * old_world) == [o[k:] for o in full]
            assert orders(n, old_world, skip=k) == [o[k:] for o in full]
            for new_world in (1, 2, 3, 5):
                rest = [i for o in orders(n, new_world, done=k * old_world) for i in o]
                shares = {len(o) for o in orders(n, new_world, done=k * old_world)}
                assert len(shares) == 1                        # equal shares, as DDP needs
                trimmed = (n - k * old_world) % new_world if drop_last else 0
                if drop_last and k < len(full[0]):             # trimming leaves out a remainder only
                    assert len(set(rest)) == len(rest) == n - k * old_world - trimmed
                    assert not set(rest) & set(consumed)
                elif not drop_last and k * old_world < n:      # padding repeats, never drops
                    assert set(rest) | set(consumed) == set(range(n))
    with pytest.raises(ValueError, match="not both"):
        ResumableSampler(4, shuffle=True).set_epoch(1, skip=1, done=2)


def test_loader_benchmark_runs(tmp_path, capsys):
    from benchmarks import loader as mod
    mod.main(["--res", "64x32", "--workers", "0", "--n", "2", "--epochs", "1",
              "--data", str(tmp_path), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "images/s" in out and "64x32" in out
    import json
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["workers"] == 0
