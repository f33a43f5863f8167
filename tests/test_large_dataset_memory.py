"""A large dataset (10k-100k samples) costs a DataLoader worker no memory per sample: a worker is a
fork, and every Python object of the parent's that it touches (a reference count, a walk of the
garbage collector) is copied into it page by page. The dataset's records were a list of dicts of
Paths, some objects per sample, which each worker copied as an epoch went by (63 MiB more per
worker than with Records over an epoch of 100k samples: benchmarks/loader_memory.py, docs/data.md);
they are stored compactly (:class:`pix2pixhd.data.layouts.Records`),
and validation's source sizes share one tuple per distinct size. Checked by counting the objects
the garbage collector tracks that are reachable from the dataset, which must not grow with the
number of samples (no RSS measurement, no timing), and by the records and samples staying what
they were (a list of dicts of Paths read the same files).

Each test carries ``@pytest.mark.fault(cls=..., case=...)``: the fault table in the docs is built
from these markers."""
import gc
import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.data import create_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))
from synthetic_streets import generate  # noqa: E402

fault = pytest.mark.fault
OPTS = dict(label_nc=9, resize_or_crop="none", required_multiple=1)


def _streets(root: Path, n: int) -> Path:
    """A synthetic_streets split of ``n`` samples (16x16, with instance maps): 20 generated, the
    rest copies of them under new names (generating 400 would take seconds)."""
    generate(root, n_train=min(n, 20), n_test=0, width=16, height=16)
    for sub in ("train_label", "train_inst", "train_img"):
        for i in range(20, n):
            shutil.copyfile(root / sub / f"train_{i % 20:05d}.png", root / sub / f"train_{i:05d}.png")
    return root


def _tracked(obj) -> int:
    """The objects the garbage collector tracks reachable from ``obj`` (classes, modules and
    functions are not followed: they are shared by everything)."""
    seen, stack, n = set(), [obj], 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(o))
        n += gc.is_tracked(o)
        stack.extend(gc.get_referents(o))
    return n


@fault(cls="bad dataset", case="a split of many samples: the dataset holds no Python object per sample "
       "(records stored compactly, one size tuple per distinct size), so forked DataLoader workers do "
       "not copy them as an epoch goes by")
@pytest.mark.parametrize("validate", ["off", "headers"])
def test_objects_reachable_from_the_dataset_do_not_grow_with_the_samples(tmp_path, validate):
    counts = {}
    for n in (20, 400):
        ds = create_dataset(_streets(tmp_path / f"d{n}", n), "train", validate=validate, **OPTS)
        assert len(ds) == n
        counts[n] = _tracked(ds)
    assert counts[400] <= counts[20] + 10, (
        f"gc-tracked objects reachable from the dataset: {counts[20]} at 20 samples, {counts[400]} at 400")


def _expected(root: Path, n: int, roles=("label", "image", "inst")) -> list[dict]:
    sub = {"label": "train_label", "image": "train_img", "inst": "train_inst"}
    return [{r: root / sub[r] / f"train_{i:05d}.png" for r in roles} for i in range(n)]


@fault(cls="bad dataset", case="records stored compactly: all_records(), indexing, limit(), samples, "
       "pickling and the unaligned layout's two domains give what the list of dicts of Paths gave")
def test_records_and_samples_are_what_a_list_of_dicts_gave(tmp_path):
    root = _streets(tmp_path / "d", 30)
    ds = create_dataset(root, "train", validate="headers", **OPTS)
    want = _expected(root, 30)
    assert ds.all_records() == want and list(ds.all_records()) == want and ds.records == want
    assert [type(v) for v in ds.records[3].values()] == [type(Path())] * 3
    assert list(ds.records[7]) == ["label", "image", "inst"] and ds.records[-1] == want[-1]
    assert ds.records[5:9] == want[5:9] and ds.records[::7] == want[::7] and ds.records[40:] == []
    assert pickle.loads(pickle.dumps(ds.records)) == want
    with pytest.raises(IndexError):
        ds.records[30]
    old = create_dataset(root, "train", validate="headers", **OPTS)
    old.records = [dict(r) for r in want]   # the former representation, read by the same code
    for i in (0, 13, 29):
        a, b = ds[(i, 2)], old[(i, 2)]
        assert a.keys() == b.keys() == {"label", "inst", "image", "path"}
        assert a["path"] == b["path"] == str(want[i]["label"])
        for k in ("label", "inst", "image"):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k])
    ds.limit(4)
    assert len(ds) == 4 and ds.all_records() == want[:4]

    # the unaligned layout: A's records, B's, all_records() A then B
    for d, n in (("trainA", 3), ("trainB", 5)):
        (tmp_path / "u" / d).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), 10 * i, np.uint8)).save(tmp_path / "u" / d / f"{i}.png")
    u = create_dataset(tmp_path / "u", "train", label_nc=0, no_instance=True, resize_or_crop="none",
                       required_multiple=1, validate="full")
    a = [{"A": tmp_path / "u/trainA" / f"{i}.png"} for i in range(3)]
    b = [{"B": tmp_path / "u/trainB" / f"{i}.png"} for i in range(5)]
    assert u.records == a and u.records_B == b and u.all_records() == a + b and len(u) == 5
    u.limit(2)
    assert u.records == a[:2] and u.records_B == b[:2] and len(u) == 2


def test_records_keep_optional_roles_and_str_values():
    """Records of different roles (the unaligned layout's A and B in one all_records()) and str
    values (a caller's own list) come back as given."""
    from pix2pixhd.data.layouts import Records
    given = [{"label": Path("/x/a.png"), "inst": Path("/x/i.png")}, {"A": "/y/é.png"}, {"B": Path("/z/b.png")}]
    r = Records(given)
    assert r == given and list(r) == given and isinstance(r[1]["A"], str)
    assert r[1:] == given[1:] and r + [] == given and [] + r == given and len(Records()) == 0
