"""One self-contained HTML evaluation report (plots embedded as PNG), for people deciding on a model.

Shown in the Kubeflow / Vertex UI as an HTML artifact and written as a file in local runs.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation import metrics

SYSTEM_COLOURS = {"model": "#1f77b4", "popularity": "#ff7f0e", "published": "#2ca02c", "ials": "#9467bd",
                 "recent_popularity": "#8c564b", "ease": "#e377c2"}
MAX_POINTS = 5_000  # products drawn in the embedding projection
MAX_CATEGORIES = 10  # coloured categories in the projection; the rest are grey
TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "mrr", "auc", "coverage@20", "popularity_percentile@20")


@dataclass(frozen=True)
class ReportInputs:
    overall: dict[str, dict[str, float]]
    slices: dict[str, dict[str, dict[str, float]]]
    blessing: dict[str, object]
    curves: dict[str, dict[str, list[float]]]
    ranked: dict[str, np.ndarray]  # top-K rows per system
    popularity: np.ndarray
    embeddings: np.ndarray
    categories: np.ndarray
    config: EvaluateConfig


def render_report(inputs: ReportInputs) -> str:
    import matplotlib

    matplotlib.use("Agg")
    figures = {
        "Metrics vs K": _curves_figure(inputs),
        f"Slices: recall@{max(inputs.config.top_k)} with {inputs.config.confidence:.0%} intervals": _slices_figure(inputs),
        "Popularity of what is recommended": _popularity_figure(inputs),
        "Product embeddings (PCA), coloured by category": _projection_figure(inputs),
    }
    verdict = "BLESSED" if inputs.blessing["blessed"] else "NOT BLESSED"
    sections = "".join(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,"
                       f"{image}'/>" for title, image in figures.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fashionrec evaluation</title>"
        "<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}"
        ".ok{color:#2a2}.bad{color:#c22}</style></head><body>"
        f"<h1>fashionrec evaluation: <span class='{'ok' if inputs.blessing['blessed'] else 'bad'}'>{verdict}</span></h1>"
        f"{_checks_table(inputs.blessing)}{_metrics_table(inputs.overall)}{sections}</body></html>"
    )


def png_base64(figure) -> str:
    """The figure as base64 PNG text, to embed in a self-contained HTML page; closes the figure."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _curves_figure(inputs: ReportInputs) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, kind in zip(axes, ("recall", "ndcg"), strict=True):
        for system, curve in inputs.curves.items():
            axis.plot(inputs.config.report_k, curve[kind], marker="o", label=system, color=SYSTEM_COLOURS.get(system))
        axis.set_xscale("log")
        axis.set_xlabel("K")
        axis.set_title(f"{kind}@K")
        axis.legend()
    return png_base64(figure)


def _slices_figure(inputs: ReportInputs) -> str:
    import matplotlib.pyplot as plt

    metric = f"recall@{max(inputs.config.top_k)}"
    names = list(inputs.slices)
    systems = list(inputs.overall)
    figure, axis = plt.subplots(figsize=(10, 0.45 * len(names) * len(systems) + 1))
    height = 0.8 / len(systems)
    for offset, system in enumerate(systems):
        rows = [inputs.slices[name].get(system, {}) for name in names]
        means = np.array([r.get(metric, np.nan) for r in rows])
        errors = np.array([[m - r.get(f"{metric}_low", m), r.get(f"{metric}_high", m) - m] for r, m in zip(rows, means)])
        # A percentile interval of a few resamples (ablations use 10) can lie wholly on one side of the mean;
        # matplotlib refuses a negative bar, so that side is drawn as none.
        errors = np.maximum(errors, 0.0)
        axis.barh(np.arange(len(names)) + offset * height, means, height, xerr=errors.T, label=system,
                  color=SYSTEM_COLOURS.get(system), capsize=2)
    axis.set_yticks(np.arange(len(names)) + height * (len(systems) - 1) / 2)
    axis.set_yticklabels([f"{n} ({int(inputs.slices[n]['model']['customers'])})" for n in names])
    axis.invert_yaxis()
    axis.set_xlabel(metric)
    axis.legend()
    return png_base64(figure)


def _popularity_figure(inputs: ReportInputs) -> str:
    import matplotlib.pyplot as plt

    k = max(inputs.config.top_k)
    figure, axis = plt.subplots(figsize=(10, 3.2))
    bins = np.linspace(0, 1, 21)
    axis.hist(np.linspace(0, 1, len(inputs.popularity)), bins=bins, density=True, histtype="step", color="grey",
              label="catalogue")
    for system, rows in inputs.ranked.items():
        percentile = np.argsort(np.argsort(inputs.popularity, kind="stable"), kind="stable") / max(len(inputs.popularity) - 1, 1)
        axis.hist(percentile[rows[:, :k]].ravel(), bins=bins, density=True, histtype="step", linewidth=2,
                  color=SYSTEM_COLOURS.get(system),
                  label=f"{system} (mean {metrics.popularity_percentile(rows, k, inputs.popularity).mean():.2f})")
    axis.set_xlabel(f"popularity percentile of products in the top {k}")
    axis.set_ylabel("density")
    axis.legend()
    return png_base64(figure)


def _projection_figure(inputs: ReportInputs) -> str:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(inputs.config.seed)
    shown = rng.choice(len(inputs.embeddings), size=min(MAX_POINTS, len(inputs.embeddings)), replace=False)
    centred = inputs.embeddings[shown] - inputs.embeddings[shown].mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    categories = inputs.categories[shown]
    names, counts = np.unique(categories, return_counts=True)
    top = names[np.argsort(-counts)][:MAX_CATEGORIES]
    figure, axis = plt.subplots(figsize=(10, 6))
    other = ~np.isin(categories, top)
    axis.scatter(points[other, 0], points[other, 1], s=4, color="#cccccc", label="other")
    for name in top:
        member = categories == name
        axis.scatter(points[member, 0], points[member, 1], s=5, label=str(name))
    axis.legend(markerscale=3, fontsize=8, ncol=2)
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    return png_base64(figure)


def _checks_table(blessing: dict[str, object]) -> str:
    rows = "".join(
        f"<tr><td style='text-align:left'>{html.escape(c['name'])}</td><td>{c['value']:.4f}</td>"
        f"<td>{c['threshold']:.4f}</td><td>{html.escape(c['verdict'] or '')}</td>"
        f"<td class='{'ok' if c['passed'] else 'bad'}'>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in blessing["checks"]  # type: ignore[union-attr]
    )
    return ("<h2>Gate</h2><table><tr><th>check</th><th>value</th><th>threshold</th><th>verdict</th><th></th></tr>"
            f"{rows}</table>")


def _metrics_table(overall: dict[str, dict[str, float]]) -> str:
    header = "".join(f"<th>{m}</th>" for m in TABLE_METRICS)
    rows = "".join(
        f"<tr><td style='text-align:left'>{html.escape(system)}</td>"
        + "".join(f"<td>{values.get(m, float('nan')):.4f}</td>" for m in TABLE_METRICS) + "</tr>"
        for system, values in overall.items()
    )
    return f"<h2>Holdout metrics</h2><table><tr><th>system</th>{header}</tr>{rows}</table>"
