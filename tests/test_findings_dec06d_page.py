"""The training HTML page does not slow training as the history grows: loss_history.jsonl is read
once, then kept up in memory, and each loss curve draws at most CURVE_MAX_POINTS points."""
from __future__ import annotations

import json
import re
import time

from pix2pixhd.visualizer import CURVE_MAX_POINTS, Visualizer, loss_curves_svg


def _record(step: int) -> dict:
    return {"epoch": 1, "iter": step, "step": step, "G_GAN": 1.0 + (step % 7) / 10,
            "D_real": 0.5 + (step % 3) / 10, "lr": 2e-4}


def _write_history(run, steps) -> list[dict]:
    recs = [_record(s) for s in steps]
    run.mkdir(parents=True, exist_ok=True)
    (run / "loss_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return recs


def _page_time_and_size(run) -> tuple[float, int]:
    vis = Visualizer(run, tensorboard=False)
    vis.write_html()   # the one read of the history
    best = min(_timed(vis.write_html) for _ in range(5))
    return best, (run / "web" / "index.html").stat().st_size


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _polylines(page: str) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in pts.split()]
            for pts in re.findall(r'<polyline [^>]*points="([^"]*)"', page)]


def test_page_time_and_size_stay_flat_as_the_history_grows(tmp_path):
    _write_history(tmp_path / "short", range(1, 1001))
    _write_history(tmp_path / "long", range(1, 50001))
    t_short, size_short = _page_time_and_size(tmp_path / "short")
    t_long, size_long = _page_time_and_size(tmp_path / "long")
    assert size_long < 3 * size_short, (size_short, size_long)
    assert t_long < 3 * t_short + 0.005, (t_short, t_long)


def test_page_writes_read_the_history_once(tmp_path, monkeypatch):
    reads = []
    real = Visualizer._read_history
    monkeypatch.setattr(Visualizer, "_read_history", lambda self: reads.append(1) or real(self))
    recs = _write_history(tmp_path, range(1, 11))
    vis = Visualizer(tmp_path, tensorboard=False)
    vis.begin()
    for step in range(11, 14):
        vis.write_html()
        vis.log_losses(1, step, step, {"G_GAN": 9.0 + step, "D_real": 0.1}, {"lr": 2e-4})
        recs.append({"epoch": 1, "iter": step, "step": step, "G_GAN": 9.0 + step, "D_real": 0.1, "lr": 2e-4})
    page = vis.write_html().read_text()
    vis.close()
    assert len(reads) == 1
    # the records logged since are drawn, as from the file
    assert loss_curves_svg(recs) in page
    on_disk = [json.loads(ln) for ln in (tmp_path / "loss_history.jsonl").read_text().splitlines()]
    assert loss_curves_svg(on_disk) in page


def test_a_resume_draws_the_cut_history(tmp_path):
    recs = _write_history(tmp_path, range(1, 11))
    recs[7]["G_GAN"] = 100.0   # step 8: cut by the resume at step 5
    (tmp_path / "loss_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    vis = Visualizer(tmp_path, tensorboard=False)
    vis.write_html()   # read before the cut, as a page written before begin would
    assert "100" in (tmp_path / "web" / "index.html").read_text()
    vis.begin(resumed_at_step=5)
    vis.log_losses(1, 6, 6, {"G_GAN": 1.25, "D_real": 0.5}, {"lr": 2e-4})
    page = vis.write_html().read_text()
    vis.close()
    want = recs[:5] + [{"epoch": 1, "iter": 6, "step": 6, "G_GAN": 1.25, "D_real": 0.5, "lr": 2e-4}]
    assert loss_curves_svg(want) in page
    assert ">100<" not in page and "… 10)" not in page


def test_long_history_draws_bounded_bucket_means_with_exact_axis_labels(tmp_path):
    n = 50_000
    recs = [{"step": s, "G_GAN": s / n, "D_real": 0.5} for s in range(1, n + 1)]
    recs[1234]["D_real"] = 77.0   # one spike: the axis label shows it exactly
    svg = loss_curves_svg(recs)
    d_real, g_gan = _polylines(svg)
    assert all(CURVE_MAX_POINTS // 2 <= len(pts) <= CURVE_MAX_POINTS for pts in (d_real, g_gan))
    assert ">77<" in svg and "(step 1 … 5e+04)" in svg
    # each point is its bucket's mean: the spike is averaged into its bucket (below the top, y 40)
    assert min(y for _, y in d_real) > 41
    # G_GAN rises with the step: the bucket means lie in order, spanning the axis (x 40 .. 680)
    xs = [x for x, _ in g_gan]
    assert xs == sorted(xs) and 40 < xs[0] < 41 and 679 < xs[-1] <= 680
    # the page of a run with this history draws the same bounded curves
    run = tmp_path / "run"
    run.mkdir()
    (run / "loss_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    vis = Visualizer(run, tensorboard=False)
    page = vis.write_html().read_text()
    assert svg in page
