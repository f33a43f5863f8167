"""Checks of kernels/aot.py that its end-to-end test (tests/test_aot.py) cannot make, each written
against a mutant that survived it: the spill gate and the last line, the backward pass recorded
for every dtype, the recorder's warps and alignment, the cache key and what is cached, the SM
counts, the tables' columns.

Fast by construction: the gate, cache and table checks run in this process on fakes (a Spec built
by hand, compile results given, no compiler); only the recordings need the JIT kernels, so they
run in a subprocess without TRITON_INTERPRET (see tests/test_aot.py), on meta tensors, with no
compile (the whole recording of every network takes a few seconds).
"""
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import Future

import pytest

triton = pytest.importorskip("triton")
try:  # the AOT path needs Triton's compiler API (3.x with knobs)
    from triton.backends.compiler import GPUTarget  # noqa: F401
    from triton.compiler import ASTSource  # noqa: F401
    from triton import knobs  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installed Triton
    pytest.skip(f"Triton {triton.__version__} lacks the AOT compiler API ({e})", allow_module_level=True)

from pix2pixhd.kernels import aot  # noqa: E402  (the module itself imports no kernels)

LAYOUT_DTYPES = {(lay, d) for lay in ("nchw", "cl") for d in ("fp32", "bf16", "fp16")}


def _env():
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def _record_in_subprocess(code: str):
    """Run ``code`` (which prints one JSON line last) where the kernels are JIT functions."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spec(name="a", kernel="_fwd_kernel"):
    """A hand-made NCHW fp32 forward Spec (what describe() and the tables read); ``name`` makes
    specs distinct."""
    return aot.Spec(kernel=kernel,
                    signature={"x_ptr": "*fp32", "L": "i32", "stride_p": "constexpr",
                               "BLOCK_P": "constexpr", "BLOCK_C": "constexpr", "tag": name},
                    constexprs=[[[2], 1], [[3], 256], [[4], 1]],
                    attrs=[[[0], [["tt.divisibility", 16]]], [[1], [["tt.divisibility", 16]]]],
                    num_warps=2, sources={"test"}, example="(1, 64, 16, 16) grid (1, 64)")


def _ok(**over):
    res = dict(regs=40, spill_stores=0, spill_loads=0, stack=0, smem=0,
               access=aot.ptx_access_widths("ld.global.v4.b32 {%r1,%r2,%r3,%r4}, [%rd1];"),
               error=None)
    return res | over


class _FakeRecorder:
    def __init__(self, arch, sms, specs):
        self.arch, self.sms, self.launches = arch, sms, len(specs)
        self.specs = {s.key(): s for s in specs}


# ---- the spill gate and the last line (main on fakes) ---------------------------------------------
@pytest.fixture
def fake_run(monkeypatch):
    """main() with recording and compiling replaced: ``fake_run(results_by_name, argv)`` gives
    each target one spec per name with that compile result; returns (exit status, stdout lines,
    the (arch, sms) targets main asked to record)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(aot, "_import_triton", lambda: type("T", (), {"__version__": "fake"}))
    asked = []

    def run(results_by_name, argv, capsys):
        specs = [_spec(n) for n in results_by_name]

        def record(targets, dtypes, layouts):
            asked.extend(targets)
            return [_FakeRecorder(a, n, specs) for a, n in targets], {"fake net": len(specs)}

        def compile_all(specs_by_arch, cache_dir, jobs):
            return {(arch, s.key()): results_by_name[s.signature["tag"]]
                    for arch, lst in specs_by_arch.items() for s in lst}

        monkeypatch.setattr(aot, "record", record)
        monkeypatch.setattr(aot, "compile_all", compile_all)
        rc = aot.main([*argv, "--no_cache"])
        return rc, capsys.readouterr().out.strip().splitlines(), asked
    return run


@pytest.mark.parametrize("results, rc, last", [
    ({"a": _ok()}, 0, "1 specializations compiled for sm_90, 0 spills"),
    # spill loads only, then stores only: each alone fails the run and is counted
    ({"a": _ok(spill_loads=8, stack=8)}, 1, "1 specializations compiled for sm_90, 1 spills"),
    ({"a": _ok(spill_stores=4, stack=8), "b": _ok()}, 1,
     "2 specializations compiled for sm_90, 1 spills"),
    # a failed compile is not counted as compiled, and fails the run
    ({"a": _ok(), "b": {"error": "CompilationError: boom"}}, 1,
     "1 specializations compiled for sm_90, 0 spills, 1 failed to compile"),
], ids=["clean", "spill-loads", "spill-stores", "compile-error"])
def test_main_fails_on_any_spilled_byte_and_counts_only_compiled_specs(fake_run, capsys, results,
                                                                       rc, last):
    got_rc, lines, _ = fake_run(results, ["--arch", "90"], capsys)
    assert lines[-1] == last, f"last line {lines[-1]!r}, expected {last!r}"
    assert got_rc == rc, f"exit status {got_rc}, expected {rc}, after {lines[-2:]}"
    spill_lines = [ln for ln in lines if ln.startswith("SPILL ")]
    assert len(spill_lines) == last.count(", 1 spills"), spill_lines
    if spill_lines:  # the bytes reported are stores + loads
        total = sum(r.get("spill_stores", 0) + r.get("spill_loads", 0) for r in results.values())
        assert spill_lines[0].endswith(f": {total} bytes"), spill_lines


def test_default_sm_counts_are_a100_and_h100(fake_run, capsys):
    # Launch configs (the pixel split, so the specializations) are planned for these counts.
    assert aot.DEFAULT_SMS == {80: 108, 90: 132}
    rc, lines, asked = fake_run({"a": _ok()}, ["--arch", "80,90"], capsys)
    assert asked == [(80, 108), (90, 132)], asked
    assert rc == 0 and lines[-1] == "2 specializations compiled for sm_80,sm_90, 0 spills", lines[-3:]


# ---- the tables ----------------------------------------------------------------------------------
def _columns(lines, header_start):
    """{column title: cell} for the one data row under the header starting with header_start."""
    i = next(i for i, ln in enumerate(lines) if ln.startswith(header_start))
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    row = [c.strip() for c in lines[i + 2].strip("|").split("|")]
    return dict(zip(header, row))


def test_tables_put_registers_spills_and_smem_in_their_columns():
    s = _spec()
    rows = aot.rows_for(90, [s], {(90, s.key()): _ok(regs=40, spill_stores=4, spill_loads=8,
                                                     stack=24, smem=1024)})
    want = {"layout": "nchw", "dtype": "fp32", "H*W % 16 == 0": "yes", "specs": "1",
            "regs/thread": "40", "spilled bytes": "12", "stack": "24", "smem bytes": "1024"}
    cols = _columns(aot.summary_tables(rows), "| layout |")
    got = {k: cols.get(k) for k in want}
    assert got == want, f"summary table row {got}"
    want = {"regs": "40", "spills": "12", "smem": "1024", "warps": "2"}
    cols = _columns(aot.full_table(rows), "| arch |")
    got = {k: cols.get(k) for k in want}
    assert got == want, f"full table row {got}"


# ---- the cache -----------------------------------------------------------------------------------
class _InlineExecutor:
    """ProcessPoolExecutor's part that compile_all uses, run in this process (so the fake
    compile_spec below is the one called)."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        fut = Future()
        fut.set_result(fn(*args))
        return fut


def test_cache_has_one_file_per_target_and_never_stores_a_failed_compile(monkeypatch, tmp_path):
    good, bad = _spec("good"), _spec("bad")
    calls = []

    def compile_spec(spec_json, arch):
        calls.append((spec_json["signature"]["tag"], arch))
        if spec_json["signature"]["tag"] == "bad":
            return {"error": "CompilationError: boom", "seconds": 0.0}
        return _ok(regs=arch)  # tells the targets' results apart

    monkeypatch.setattr(aot, "ProcessPoolExecutor", _InlineExecutor)
    monkeypatch.setattr(aot, "compile_spec", compile_spec)
    monkeypatch.setattr(aot, "_kernel_hash", lambda kernel: f"{kernel}|fake hash")
    specs = {80: [good, bad], 90: [good, bad]}
    first = aot.compile_all(specs, tmp_path, jobs=1, log=lambda m: None)
    assert sorted(calls) == [("bad", 80), ("bad", 90), ("good", 80), ("good", 90)], calls
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2, ("one cache file per target for the good spec, none for the failed "
                             f"one: {[f.name for f in files]}")
    assert sorted(json.loads(f.read_text())["regs"] for f in files) == [80, 90]
    assert first[(80, bad.key())]["error"] and first[(90, good.key())]["regs"] == 90

    calls.clear()
    again = aot.compile_all(specs, tmp_path, jobs=1, log=lambda m: None)
    assert sorted(calls) == [("bad", 80), ("bad", 90)], calls  # the failure is retried
    for arch in (80, 90):
        assert again[(arch, good.key())]["cached"] is True
        assert again[(arch, good.key())]["regs"] == arch, (arch, again[(arch, good.key())])
        assert again[(arch, bad.key())]["cached"] is False


# ---- recording (subprocess: the kernels must be JIT functions) -----------------------------------
def test_recorder_keeps_warps_and_alignment_of_each_launch():
    # Two shapes in one recording differ only in alignment (256 vs 225 pixels): two specs. Each
    # launch's warps are launch_config's for its tensor (the combine kernel always runs 4).
    out = _record_in_subprocess("""
        import json, torch
        from pix2pixhd.kernels import aot, instance_norm_act
        from pix2pixhd.kernels._instance_norm_act_triton import launch_config
        cases = {"nchw16 fp32": ((1, 64, 16, 16), torch.float32, torch.contiguous_format),
                 "nchw15 fp32": ((1, 64, 15, 15), torch.float32, torch.contiguous_format),
                 "nchw16 bf16": ((1, 64, 16, 16), torch.bfloat16, torch.contiguous_format),
                 "cl64 fp32": ((1, 64, 64, 64), torch.float32, torch.channels_last)}
        out = {"together": [], "each": {}}
        def run(shape, dtype, fmt):
            with torch.device("meta"):
                x = torch.empty(shape, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
                y = instance_norm_act(x, act="relu")
                y.backward(torch.empty_like(y))
            return x
        with aot.recording([(90, 132)]) as (rec,):
            run(*cases["nchw16 fp32"])
            run(*cases["nchw15 fp32"])
        out["together"] = [s.describe()["L%16"] for s in rec.specs.values() if s.kernel == "_fwd_kernel"]
        for name, case in cases.items():
            with aot.recording([(90, 132)]) as (rec,):
                x = run(*case)
            out["each"][name] = {"expected": launch_config(x, {}, 132)["num_warps"],
                                 "warps": sorted({(s.kernel, s.num_warps) for s in rec.specs.values()})}
        print(json.dumps(out))
    """)
    assert sorted(out["together"]) == ["no", "yes"], \
        f"_fwd_kernel specs of the 16x16 and 15x15 launches, by H*W % 16 == 0: {out['together']}"
    kernels = {"_stats_kernel", "_combine_kernel", "_fwd_kernel", "_bwd_reduce_kernel", "_bwd_dx_kernel"}
    for name, got in out["each"].items():
        warps = dict(got["warps"])
        assert set(warps) == kernels and len(warps) == len(got["warps"]), (name, got)
        assert warps.pop("_combine_kernel") == 4, (name, got)
        assert set(warps.values()) == {got["expected"]}, (name, got)
    # the cases span the warp range, so a constant would not pass
    assert sorted({got["expected"] for got in out["each"].values()}) == [1, 2, 8], out["each"]


def test_networks_record_backward_for_every_dtype_and_coverage_adds_its_flags():
    out = _record_in_subprocess("""
        import json
        from pix2pixhd.kernels import aot
        (rec,), per_source = aot.record([(90, 132)])
        print(json.dumps([dict(kernel=s.kernel, sources=sorted(s.sources), **s.describe())
                          for s in rec.specs.values()]))
    """)
    by_net = {}
    for s in out:
        if any(not src.startswith("coverage ") for src in s["sources"]):
            by_net.setdefault(s["kernel"], set()).add((s["layout"], s["dtype"]))
    for kernel in ("_fwd_kernel", "_bwd_reduce_kernel", "_bwd_dx_kernel"):
        assert by_net.get(kernel) == LAYOUT_DTYPES, \
            f"{kernel}: (layout, dtype) the networks record: {sorted(by_net.get(kernel, ()))}"
    coverage = [s for s in out if any(src.startswith("coverage ") for src in s["sources"])]
    assert {s["kernel"] for s in coverage} >= {"_fwd_kernel", "_bwd_reduce_kernel", "_bwd_dx_kernel"}, \
        f"kernels the coverage case records: {sorted({s['kernel'] for s in coverage})}"
    fwd_flags = {(s["layout"], s["flags"]) for s in coverage if s["kernel"] == "_fwd_kernel"}
    assert len(fwd_flags) == 2 * 3 * 2 * 2, sorted(fwd_flags)  # layout x act x affine x residual


def test_real_compile_caches_one_file_per_target(tmp_path):
    # The same specialization compiled for sm_80 and sm_90 through the real workers: two files,
    # and a rerun reads both from them (the fakes above stand in for this path).
    out = _record_in_subprocess(f"""
        import json, pathlib, torch
        from pix2pixhd.kernels import aot, instance_norm_act
        with aot.recording([(90, 132)]) as (rec,):
            with torch.device("meta"):
                instance_norm_act(torch.empty(1, 64, 16, 16), act="relu")
        specs = [s for s in rec.specs.values() if s.kernel == "_fwd_kernel"]
        cache = pathlib.Path({str(tmp_path)!r})
        first = aot.compile_all({{80: specs, 90: specs}}, cache, 1, log=lambda m: None)
        again = aot.compile_all({{80: specs, 90: specs}}, cache, 1, log=lambda m: None)
        print(json.dumps({{"files": len(list(cache.iterdir())),
                          "errors": [r["error"] for r in first.values()],
                          "cached": sorted(r["cached"] for r in again.values())}}))
    """)
    assert out["errors"] == [None, None], out
    assert out["files"] == 2, f"cache files for one spec on sm_80 and sm_90: {out['files']}"
    assert out["cached"] == [True, True], out
