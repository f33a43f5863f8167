"""Small crafted files that asked for gigabytes: a dataset's classes.json, NVIDIA's cluster file
(import_reference), a run's features_clustered.pt. Each is refused in one line naming the file,
before anything large is allocated. The files here are tiny; nothing big is ever built: where the
unfixed code would allocate, the allocation is replaced by one that raises MemoryError past a
small size (as a memory cap would), or the crafted size is a harmless tens of megabytes."""
import builtins
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd.data import DatasetError
from pix2pixhd.data import layouts
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.layouts import LABEL_NC_MAX, read_classes
from pix2pixhd.errors import InputError
from pix2pixhd.features import FeatureClusters
from pix2pixhd.import_reference import REFERENCE_CLUSTERS_MAX_ELEMENTS, read_reference_clusters

SMALL = 2**20   # what the stand-in allocations below take before "running out of memory"


# ---- (a) classes.json --------------------------------------------------------------------------------
def _dataset(root):
    for k in ("label", "img"):
        (root / f"train_{k}").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32), np.uint8), "L").save(root / "train_label/s0.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8), "RGB").save(root / "train_img/s0.png")


@pytest.fixture()
def capped_frozenset(monkeypatch):
    """layouts' frozenset, raising MemoryError for more than SMALL ids (a billion took 2.5 GB)."""
    def capped(it=()):
        if isinstance(it, range) and len(it) > SMALL:
            raise MemoryError()
        return builtins.frozenset(it)
    monkeypatch.setattr(layouts, "frozenset", capped, raising=False)


@pytest.mark.fault(cls="bad dataset", case="classes.json of 25 bytes with label_nc 1000000000: refused in one line "
                                             "naming the file, the value and the bound, no set of a billion ids")
def test_an_absurd_label_nc_in_classes_json_is_refused(tmp_path, capped_frozenset, capsys):
    _dataset(tmp_path)
    (tmp_path / "classes.json").write_text('{"label_nc": 1000000000}')
    with pytest.raises(DatasetError) as e:
        read_classes(tmp_path)
    want = (f"{tmp_path / 'classes.json'}: label_nc 1000000000: must be >= 0 and <= {LABEL_NC_MAX} (number of "
            "label classes")
    assert str(e.value).startswith(want), str(e.value)
    assert "\n" not in str(e.value)
    # scan (which training's validation shares) reports it as the dataset's problem, no traceback
    assert data_main(["scan", str(tmp_path), "--no_instance"]) == 1
    assert want in capsys.readouterr().out


@pytest.mark.fault(cls="bad dataset", case="classes.json naming class id 1000000000 (label_nc taken as 10^9 + 1): "
                                             "refused in one line naming the file")
def test_a_class_id_past_the_bound_in_classes_json_is_refused(tmp_path):
    (tmp_path / "classes.json").write_text('{"classes": [{"id": 0}, {"id": 1000000000}]}')
    with pytest.raises(DatasetError, match=rf"classes\.json: class id 1000000000: must be < {LABEL_NC_MAX}"):
        read_classes(tmp_path)


def test_classes_json_at_the_bound_is_read_without_listing_its_ids(tmp_path, capped_frozenset):
    (tmp_path / "classes.json").write_text(f'{{"label_nc": {LABEL_NC_MAX}}}')
    c = read_classes(tmp_path)
    assert c.label_nc == LABEL_NC_MAX and len(c.ids) == LABEL_NC_MAX
    assert LABEL_NC_MAX - 1 in c.ids and LABEL_NC_MAX not in c.ids and max(c.ids) == LABEL_NC_MAX - 1


# ---- (b) NVIDIA's features_clustered_NNN.npy ------------------------------------------------------------
_RECONSTRUCT = np.zeros(1).__reduce__()[0]


class _Shape:
    """Pickles as numpy's _reconstruct(ndarray, shape, dtype): an array of that shape, no data."""
    def __init__(self, shape, dtype="u1"):
        self.shape, self.dtype = shape, np.dtype(dtype)

    def __reduce__(self):
        return _RECONSTRUCT, (np.ndarray, self.shape, self.dtype)


class _Direct:
    """Pickles as numpy.ndarray(shape, dtype) called directly."""
    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return np.ndarray, (self.shape, np.dtype("u1"))


def _npy(path, payload):
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(payload, fh, protocol=3)
    return path


@pytest.mark.fault(cls="damaged run folder",
                   case="NVIDIA cluster file of a few hundred bytes whose pickle asks numpy for a {id} array: "
                        "import refuses it in one line before allocating")
@pytest.mark.parametrize("payload", [{1: _Shape((2**31, 2**31, 2**31))}, {1: _Shape((2**13, 2**12))},
                                     {1: _Direct((2**13, 2**12))},
                                     {c: _Shape((2**11, 2**12)) for c in range(3)}],
                         ids=["2^93-element", "2^25-element", "ndarray()-called 2^25-element",
                              "3 x 2^23-element"])
def test_a_cluster_pickle_that_asks_for_a_huge_array_is_refused(tmp_path, payload):
    f = _npy(tmp_path / "features_clustered_010.npy", payload)
    assert f.stat().st_size < 400
    with pytest.raises(CheckpointMismatchError) as e:
        read_reference_clusters(f)
    msg = str(e.value)
    assert msg.startswith(f"{f} asks for ") and "refusing to build it" in msg, msg
    assert f"at most {REFERENCE_CLUSTERS_MAX_ELEMENTS} elements" in msg and "\n" not in msg


@pytest.mark.fault(cls="damaged run folder",
                   case="MemoryError while reading NVIDIA's cluster file: one line naming the file, no traceback")
def test_a_memory_error_reading_a_cluster_file_is_one_line(tmp_path, monkeypatch):
    f = tmp_path / "features_clustered_010.npy"
    np.save(f, {7: np.ones((10, 3))}, allow_pickle=True)

    def out_of_memory(*a, **k):
        raise MemoryError()
    monkeypatch.setattr(np.lib.format, "read_array_header_1_0", out_of_memory)
    with pytest.raises(CheckpointMismatchError, match=rf"^{f} could not be read as a cluster file: MemoryError$"):
        read_reference_clusters(f)


def test_the_cluster_file_encode_features_writes_still_reads(tmp_path):
    f = tmp_path / "features_clustered_010.npy"
    centers = {7: np.random.rand(10, 3), 26: np.random.rand(4, 3).astype(np.float32)}
    np.save(f, centers, allow_pickle=True)
    got = read_reference_clusters(f)
    assert sorted(got) == [7, 26]
    for k, v in got.items():
        assert type(v) is np.ndarray and v.dtype == np.float32 and np.allclose(v, centers[k])


# ---- (c) a run's features_clustered.pt --------------------------------------------------------------
@pytest.fixture()
def capped_zeros(monkeypatch):
    """torch.zeros raising MemoryError above SMALL elements (table() asked for [C, 10^9, 3])."""
    real = torch.zeros

    def capped(*size, **kw):
        dims = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        n = 1
        for d in dims:
            n *= int(d)
        if n > SMALL:
            raise MemoryError()
        return real(*size, **kw)
    monkeypatch.setattr(torch, "zeros", capped)


def _clusters_file(path, centers, feat_num=3, n_clusters=10):
    torch.save({"centers": centers, "feat_num": feat_num, "n_clusters": n_clusters, "global_step": 1,
                "counts": {}, "encoder": {}, "features": {}}, path)
    return path


@pytest.mark.fault(cls="damaged run folder",
                   case="features_clustered.pt of a few KB: {id}: refused in one line naming the file, not "
                        "'out of memory' for every input at synthesis")
@pytest.mark.parametrize("centers, n_clusters, why", [
    ({7: torch.zeros(3).as_strided((10**9, 3), (0, 1))}, 10, "class 7 holds 1000000000 centres, more than its "
                                                            "n_clusters 10"),
    ({7: torch.zeros(3).as_strided((10**9, 3), (0, 1))}, 10**9, "n_clusters 1000000000: must be an integer"),
], ids=["stride-0 view of 10^9 centres", "n_clusters 10^9"])
def test_a_clusters_file_asking_for_a_huge_table_is_refused(tmp_path, capped_zeros, centers, n_clusters, why):
    f = _clusters_file(tmp_path / "features_clustered.pt", centers, n_clusters=n_clusters)
    assert f.stat().st_size < 8000
    with pytest.raises(InputError) as e:
        FeatureClusters.load(f).table(torch.device("cpu"))
    msg = str(e.value)
    assert msg.startswith(f"{f} is not a usable clusters file (") and why in msg and "\n" not in msg, msg


def test_a_class_id_past_any_label_nc_is_refused_by_the_table_not_allocated(tmp_path, capped_zeros):
    """Class 10^9: loaded (synthesis names classes past the run's label_nc, tests/
    test_findings_dec06d_saved.py), and its table, [10^9, k, feat_num], is refused before it is made."""
    f = _clusters_file(tmp_path / "features_clustered.pt", {10**9: torch.zeros(2, 3)})
    with pytest.raises(InputError, match=rf"^{f}: classes up to 1000000000 with up to 2 centres of 3 features make "
                                         r"a table of 6000000006 values, more than 16777216"):
        FeatureClusters.load(f).table(torch.device("cpu"))


def test_a_table_past_the_bound_is_refused_in_load_and_in_table(tmp_path, capped_zeros):
    # feat_num 30, 10 centres, class 65535: 19.7 million values > 2^24, refused by table()
    big = {LABEL_NC_MAX - 1: torch.zeros(1, 30).as_strided((10, 30), (0, 1))}
    f = _clusters_file(tmp_path / "features_clustered.pt", big, feat_num=30)
    with pytest.raises(InputError, match=r"a table of 19660800 values, more than 16777216"):
        FeatureClusters.load(f).table(torch.device("cpu"))
    # more centre values in the file itself than any table holds: refused by load
    many = {3: torch.zeros(1, 30).as_strided((600_000, 30), (0, 1))}
    f2 = _clusters_file(tmp_path / "many.pt", many, feat_num=30, n_clusters=10**6)
    with pytest.raises(InputError, match=r"1 classes hold 18000000 centre values, more than 16777216"):
        FeatureClusters.load(f2)
    fc = FeatureClusters(centers={k: v.contiguous() for k, v in big.items()}, feat_num=30, n_clusters=10, path=f)
    with pytest.raises(InputError, match=rf"^{f}: classes up to 65535 with up to 10 centres of 30 features make "
                                         r"a table of 19660800 values"):
        fc.table(torch.device("cpu"))


def test_a_strided_clusters_file_within_bounds_loads_as_contiguous_float32(tmp_path):
    base = torch.arange(6, dtype=torch.float64)
    f = _clusters_file(tmp_path / "features_clustered.pt", {2: base.as_strided((4, 3), (0, 2))})
    fc = FeatureClusters.load(f)
    v = fc.centers[2]
    assert v.is_contiguous() and v.dtype == torch.float32 and v.stride() == (3, 1)
    assert v.tolist() == [[0.0, 2.0, 4.0]] * 4
    tab, num = fc.table(torch.device("cpu"))
    assert tab.shape == (3, 4, 3) and num.tolist() == [0, 0, 4]


def test_label_nc_past_the_bound_on_the_command_line_is_refused():
    """--label_nc had no upper bound while a classes.json's has one (65536): the two agree now."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.errors import ConfigError
    with pytest.raises(ConfigError, match=r"--label_nc 1000000000: must be <= 65536 \(every id of a 16-bit label map"):
        TrainConfig(label_nc=1_000_000_000).resolved()
    assert TrainConfig(label_nc=65536, ngf=4).resolved().label_nc == 65536


@pytest.mark.parametrize("top, said", [
    (65535, "65535 is usually an 'ignore' (void) id (16-bit maps' largest"),
    (255, "255 is usually an 'ignore' (void) id (8-bit maps' largest"),
    (70001, "remap the ids to 0..N-1 for N classes (label_nc is at most 65536"),
    (40, "pass --label_nc 41 or remap ids"),
])
def test_the_fix_for_a_large_label_id_never_suggests_a_label_nc_past_the_bound(top, said):
    """scan suggested `set label_nc 65536` for a 16-bit map's 65535 (almost surely a void id, as 255
    is for 8-bit maps: a 65536-channel one-hot), and `set label_nc 70001` for a TIFF's 70000."""
    from pix2pixhd.data.dataset import _id_fix
    fix = _id_fix(top, 35)
    assert said in fix, fix
    assert "label_nc 70001" not in fix and "label_nc 65536 or" not in fix


class _BadState:
    """Pickles as numpy's array reconstruction with a state whose data does not fill its shape."""

    def __init__(self, shape, dtype, data):
        self.args = (shape, dtype, data)

    def __reduce__(self):
        shape, dtype, data = self.args
        return (np.zeros(1).__reduce__()[0], (np.ndarray, (0,), b"b"), (1, shape, np.dtype(dtype), False, data))


@pytest.mark.fault(cls="damaged run folder",
                   case="NVIDIA's features_clustered_NNN.npy whose array state does not fill its shape (an object "
                        "array of 1000 or 2 holding 1, float32 of 4 holding 1): one line naming the file, not a segfault")
def test_a_cluster_array_whose_data_does_not_fill_its_shape_is_refused(tmp_path):
    """numpy's ndarray.__setstate__ reads an object array's list without checking its length: a
    336-byte file made the import segfault (status 139, no message; found by mutation testing).
    Read in one child process: without the check it kills the process it runs in."""
    import subprocess
    import sys
    files = []
    for k, (shape, dtype, data) in enumerate([((1000,), "O", [1.0]), ((2,), "O", [1.0]), ((4,), "f4", b"\0" * 4)]):
        f = tmp_path / f"{k}" / "features_clustered_010.npy"
        f.parent.mkdir()
        np.save(f, {1: _BadState(shape, dtype, data)}, allow_pickle=True)
        files.append(str(f))
    code = ("import sys; from pix2pixhd.import_reference import read_reference_clusters\n"
            "for f in sys.argv[1:]:\n    try:\n        read_reference_clusters(f)\n        print('read', f)\n"
            "    except Exception as e:\n        print(type(e).__name__, e)\n")
    p = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr[-2000:])
    lines = p.stdout.splitlines()
    assert len(lines) == 3 and all(ln.startswith(f"CheckpointMismatchError {f} holds an array whose data does not "
                                                 "fill its shape") for ln, f in zip(lines, files)), p.stdout
