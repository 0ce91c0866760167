"""The evaluation report renders in a real headless Chromium, and its screenshot shows the plots."""

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation.gate import Check, blessing
from fashionrec.evaluation.report import ReportInputs, render_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    config = EvaluateConfig()
    systems = ("model", "popularity")
    overall = {s: {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.1, "mrr": 0.2, "auc": 0.7} for s in systems}
    slices = {name: {s: {"customers": 10.0, "recall@20": 0.2, "recall@20_low": 0.1, "recall@20_high": 0.3}
                     for s in systems} for name in ("cold_start_products", "new_customers")}
    curves = {s: {"recall": list(np.linspace(0.01, 0.4, len(config.report_k))),
                  "ndcg": list(np.linspace(0.01, 0.2, len(config.report_k)))} for s in systems}
    checks = [Check("recall@20 beats popularity", 0.2, 0.1, True, "")]
    return ReportInputs(overall, slices, blessing(checks, overall), curves,
                        {s: rng.integers(0, 300, size=(50, 20)) for s in systems}, rng.random(300),
                        rng.normal(size=(300, 16)), rng.choice(np.array(["dress", "coat", "bag"]), 300), config)


def test_report_embeds_every_plot_as_a_png():
    page = render_report(_inputs())
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 4
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "BLESSED" in page and "recall@20 beats popularity" in page


def test_a_slice_interval_that_misses_its_mean_still_renders():
    """A percentile interval of a few bootstrap resamples can lie wholly above (or below) the point estimate."""
    inputs = _inputs()
    inputs.slices["new_customers"]["model"].update({"recall@20_low": 0.25, "recall@20_high": 0.3})
    assert len(re.findall(r"src='data:image/png;base64,", render_report(inputs))) == 4


def test_report_screenshot_in_headless_chromium_shows_the_plots(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is needed for this test: apt-get install -y chromium (make test does it)")
    page = tmp_path / "report.html"
    page.write_text(render_report(_inputs()), encoding="utf-8")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000",
                    f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (3000, 1200)
    # Plots put the systems' colours on the page: the model's blue and popularity's orange lines/bars.
    colours = {tuple(c) for c in image.reshape(-1, 3)[:: 7]}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours
    assert (image.reshape(-1, 3) != 255).any(axis=1).mean() > 0.02  # far from a blank page (text alone: < 1 %)
