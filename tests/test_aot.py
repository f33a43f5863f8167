"""Ahead-of-time compilation of the kernels for sm_80 and sm_90 (no GPU needed): every
specialization the networks launch compiles, with zero register spills.

The compiler cannot run on interpreted kernels, and this process has TRITON_INTERPRET=1 (see
conftest.py), so each check runs ``python -m pix2pixhd.kernels.aot`` or a recording script in a
subprocess without it. Compiled results are cached in ~/.cache/pix2pixhd/aot (or
$PIX2PIXHD_AOT_CACHE): a cold run compiles ~650 specializations (about 2 minutes on 2 idle cores),
a warm one only records (~20 s).
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

triton = pytest.importorskip("triton")
try:  # the AOT path needs Triton's compiler API (3.x with knobs)
    from triton.backends.compiler import GPUTarget  # noqa: F401
    from triton.compiler import ASTSource  # noqa: F401
    from triton import knobs  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installed Triton
    pytest.skip(f"Triton {triton.__version__} lacks the AOT compiler API ({e})", allow_module_level=True)

from pix2pixhd.kernels import aot  # noqa: E402  (the module itself imports no kernels)


def _env():
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def test_aot_compiles_every_network_specialization_for_sm80_and_sm90_without_spills(tmp_path):
    out = tmp_path / "aot.json"
    proc = subprocess.run([sys.executable, "-m", "pix2pixhd.kernels.aot", "--arch", "80,90",
                           "--json", str(out)], env=_env(), capture_output=True, text=True,
                          timeout=1800)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    m = re.fullmatch(r"(\d+) specializations compiled for sm_80,sm_90, 0 spills", lines[-1])
    assert m, lines[-1]
    rows = json.loads(out.read_text())["rows"]
    assert int(m.group(1)) == len(rows) > 0
    assert all(r["error"] is None and r["spills"] == 0 for r in rows)
    # Both targets, every kernel, dtype and layout; every pix2pixHD network at both sizes.
    for arch in ("sm_80", "sm_90"):
        mine = [r for r in rows if r["arch"] == arch]
        assert {r["kernel"] for r in mine} == {"_stats_kernel", "_combine_kernel", "_fwd_kernel",
                                               "_bwd_reduce_kernel", "_bwd_dx_kernel"}
        fwd = [r for r in mine if r["kernel"] == "_fwd_kernel"]
        assert {(r["layout"], r["dtype"]) for r in fwd} == {
            (lay, d) for lay in ("nchw", "cl") for d in ("fp32", "bf16", "fp16")}
        sources = {s.rsplit(" ", 2)[0] for r in mine for s in r["sources"]}
        for net in ("global G", "local G", "D"):
            for res in ("1024x512", "2048x1024"):
                assert any(s.startswith(f"pix2pixHD {net} {res}") for s in sources), (net, res)
        # Channels-last tiles run along the contiguous channels: vectorised everywhere.
        cl = [r for r in mine if r["layout"] == "cl" and r["kernel"] != "_combine_kernel"]
        assert cl and all(r["ld"] == "16B" for r in cl)


def test_recorded_specializations_are_the_jits():
    # Record a few calls on meta tensors and check the specialization Triton's JIT would make:
    # ints equal to 1 -> constexpr, divisibility-16 hints on pointers and on ints divisible by
    # 16 only, the split count never specialised; channels-last networks record channels-last.
    code = textwrap.dedent("""
        import json, torch
        from pix2pixhd.kernels import aot, instance_norm_act
        from pix2pixhd.networks import GlobalGenerator
        def fwd_specs(shape, fmt):
            with aot.recording([(90, 132)]) as (rec,):
                with torch.device("meta"):
                    instance_norm_act(torch.empty(shape).contiguous(memory_format=fmt), act="relu")
            return [dict(sig=s.signature, const=s.constexprs, attrs=s.attrs) for s in rec.specs.values()
                    if s.kernel == "_fwd_kernel"]
        out = {"nchw16": fwd_specs((1, 64, 16, 16), torch.contiguous_format),
               "nchw_odd": fwd_specs((1, 64, 15, 15), torch.contiguous_format),
               "cl": fwd_specs((1, 64, 16, 16), torch.channels_last)}
        with aot.recording([(90, 132)]) as (rec,):
            aot._run(lambda: GlobalGenerator(4, 3, 16, 2, 1), (1, 4, 64, 64), torch.float32, "cl")
        out["net_cl_layouts"] = sorted({s.describe()["layout"] for s in rec.specs.values()})
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    def named(spec):
        names = list(spec["sig"])
        const = {names[i]: v for (i,), v in spec["const"]}
        div = {names[i] for (i,), a in spec["attrs"] if a == [["tt.divisibility", 16]]}
        return const, div

    (nchw16,), (nchw_odd,), (cl,) = out["nchw16"], out["nchw_odd"], out["cl"]
    const, div = named(nchw16)
    assert const["stride_p"] == 1 and "stride_c" not in const           # NCHW: pixels contiguous
    assert {"x_ptr", "y_ptr", "mean_ptr", "L", "stride_c", "C"} <= div    # 256 = 16 * 16
    assert "n_splits" not in const and "n_splits" not in div             # do_not_specialize
    const, div = named(nchw_odd)
    assert "L" not in div and "stride_c" not in div and "x_ptr" in div  # 225 is odd
    const, div = named(cl)
    assert const["stride_c"] == 1 and "stride_p" in div                  # channels-last: C = 64
    assert out["net_cl_layouts"] == ["-", "cl"]  # the combine kernel has no layout


def test_ptx_access_widths_and_ptxas_report_parsing():
    ptx = """
        ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
        @%p1 ld.global.b32 { %r5 }, [ %rd2 + 0 ];
        ld.global.v2.b32 { %r6, %r7 }, [ %rd3 + 0 ];
        st.global.v4.b16 [ %rd4 + 0 ], { %rs1, %rs2, %rs3, %rs4 };
        st.global.b32 [ %rd5 + 0 ], { %r8 };
    """
    acc = aot.ptx_access_widths(ptx)
    assert acc == {"ld": {"16B": 1, "8B": 1, "4B": 1, "2B": 0, "1B": 0},
                   "st": {"16B": 0, "8B": 1, "4B": 1, "2B": 0, "1B": 0}}  # v4.b16 is 8 bytes
    assert aot.vector_verdict(acc["ld"]) == "16B"
    assert aot.vector_verdict({"16B": 0, "8B": 0, "4B": 0, "2B": 3, "1B": 0}) == "2B"
    log = ("ptxas info    : Compiling entry function '_fwd_kernel' for 'sm_90a'\n"
           "    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 456 bytes cmem[0]\n")
    assert aot.parse_ptxas_log(log) == {"regs": 255, "spill_stores": 12, "spill_loads": 16,
                                        "stack": 8}
    with pytest.raises(RuntimeError, match="no register/spill report"):
        aot.parse_ptxas_log("ptxas info    : 0 bytes gmem\n")
