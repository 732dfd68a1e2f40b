"""A monitoring report as one self-contained HTML page (plots embedded as PNG): the verdicts
first, then per-feature distributions (training against served), class shares, drift and
ratings over time."""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zero2one import plots
from zero2one.monitoring.report import PREDICTION, Report

MAX_FEATURES = 24  # plotted (drifted first); the table lists them all


def write_html(found: Report, reference: dict[str, Any] | None, frame: Any, out: Path) -> Path:
    """Write the page to ``out`` (atomically) and return it."""
    with tempfile.TemporaryDirectory() as tmp:
        images = [_png(p) for p in _plots(found, reference, frame, Path(tmp))]
    body = [f"<h1>{html.escape(found.model)}"
            f"{' version ' + html.escape(found.version) if found.version else ''}</h1>",
            f"<p>{found.since:%Y-%m-%d %H:%M} – {found.until:%Y-%m-%d %H:%M} UTC · "
            f"{found.samples} samples · {found.rows} rows</p>"]
    body.append("<h2>Alerts</h2>" + (
        "<ul>" + "".join(f"<li class=alert>{html.escape(a)}</li>" for a in found.alerts)
        + "</ul>" if found.alerts else "<p>None: nothing crossed a threshold.</p>"))
    body += [f"<p class=note>{html.escape(n)}</p>" for n in found.notes]
    if found.features or found.prediction:
        body.append(_table(found))
    for title, figures, digits in (("Ratings", found.ratings, 2),
                                   ("Inputs against the reference", found.embedding, 2),
                                   ("Answers", found.text, 1)):
        if figures:
            body.append(f"<h2>{title}</h2><p>" + html.escape(", ".join(
                f"{k}: {v:.{digits}f}" if isinstance(v, float) else f"{k}: {v}"
                for k, v in figures.items())) + "</p>")
    body += [f'<img alt="plot" src="data:image/png;base64,{image}">' for image in images]
    page = ("<!doctype html><meta charset=utf-8><title>zero2one monitor: "
            f"{html.escape(found.model)}</title><style>{_STYLE}</style>" + "\n".join(body))
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(page, encoding="utf-8")
    tmp_out.replace(out)
    return out


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;"
          "text-align:right}td:first-child,th:first-child{text-align:left}.alert{color:#b00}"
          ".drift{background:#fdd}.note{color:#666}img{max-width:100%;display:block;"
          "margin:1em 0}")


def _table(found: Report) -> str:
    rows = []
    for column in [*found.features, *([found.prediction] if found.prediction else [])]:
        cells = [column.name, column.kind, column.rows,
                 "" if column.psi is None else f"{column.psi:.3f}",
                 "" if column.p_value is None else f"{column.p_value:.1e}",
                 f"{column.missing:.1%} ({column.missing_reference:.1%})",
                 ", ".join(list(column.unseen)[:5]), "; ".join(column.reasons)]
        rows.append(f"<tr{' class=drift' if column.drifted else ''}>" + "".join(
            f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("column", "kind", "values", "PSI", "p-value",
                                              "missing (training)", "unseen", "verdict"))
    return f"<h2>Drift</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _plots(found: Report, reference: dict[str, Any] | None, frame: Any,
           tmp: Path) -> list[Path]:
    made = []
    if reference is not None and len(frame):
        columns = sorted(found.features, key=lambda c: (not c.drifted, c.name))[:MAX_FEATURES]
        predicted = reference.get("prediction")
        summaries = [(c.name, reference["features"][c.name]) for c in columns]
        if predicted is not None and PREDICTION in frame:
            summaries.insert(0, (PREDICTION, predicted))
        for i in range(0, len(summaries), 3):
            made.append(_distributions(summaries[i:i + 3], frame, tmp / f"dist{i}.png"))
    psi = [w for w in found.windows if w.get("psi")]
    if psi:
        made.append(_over_time(found, tmp / "psi.png"))
    if any(w.get("good_share") is not None for w in found.windows):
        made.append(_ratings(found, tmp / "ratings.png"))
    return made


def _distributions(summaries: list[tuple[str, dict[str, Any]]], frame: Any,
                   path: Path) -> Path:
    import pandas as pd

    fig, axes = plots.figure(12, 3.2, ncols=3)
    for ax, (name, summary) in zip(axes, summaries, strict=False):
        served = frame[name].dropna()
        if summary["kind"] == "numeric":
            edges = np.asarray(summary["edges"])
            values = pd.to_numeric(served, errors="coerce").dropna().to_numpy(dtype=float)
            counts = np.bincount(np.searchsorted(edges, values, side="right"),
                                 minlength=len(edges) + 1)
            labels = ["<" + _short(edges[0])] + [_short(e) for e in edges[:-1]] + \
                [">" + _short(edges[-1])] if len(edges) else ["all"]
            ours = counts / max(counts.sum(), 1)
            theirs = np.asarray(summary["shares"])
        else:
            shares = summary["shares"]
            seen = served.astype(str).value_counts(normalize=True)
            labels = list(dict.fromkeys([*list(shares)[:8], *list(seen.index[:4])]))
            theirs = np.asarray([shares.get(k, 0.0) for k in labels])
            ours = np.asarray([float(seen.get(k, 0.0)) for k in labels])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, theirs, 0.4, label="training")
        ax.bar(x + 0.2, ours, 0.4, label="served")
        ax.set_xticks(x, [str(lab)[:10] for lab in labels], rotation=45, fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[len(summaries):]:
        ax.set_visible(False)
    return plots.save(fig, path, bottom=0.28, wspace=0.3)


def _over_time(found: Report, path: Path) -> Path:
    fig, ax = plots.figure(12, 3.5)
    windows = [w for w in found.windows if w.get("psi")]
    names = sorted({n for w in windows for n in w["psi"]})
    x = np.arange(len(windows))
    for name in names:
        ax.plot(x, [w["psi"].get(name) or 0.0 for w in windows], marker="o", label=name)
    ax.axhline(0.2, color="#b00", linestyle="--", linewidth=1, label="PSI 0.2")
    ax.set_xticks(x, [w["start"][5:16].replace("T", " ") for w in windows], rotation=30,
                  fontsize=7)
    ax.set_title("drift over time (PSI per window)", fontsize=10)
    ax.legend(fontsize=7, ncol=4)
    return plots.save(fig, path, bottom=0.25)


def _ratings(found: Report, path: Path) -> Path:
    fig, ax = plots.figure(12, 3)
    windows = [w for w in found.windows if w.get("good_share") is not None]
    x = np.arange(len(windows))
    ax.plot(x, [w["good_share"] for w in windows], marker="o")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x, [w["start"][5:16].replace("T", " ") for w in windows], rotation=30,
                  fontsize=7)
    ax.set_title("good ratings per window", fontsize=10)
    return plots.save(fig, path, bottom=0.25)


def _short(value: float) -> str:
    return f"{value:.3g}"


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
