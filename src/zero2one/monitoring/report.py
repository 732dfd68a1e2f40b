"""A monitoring report: the served samples of one model over a period, against its training
reference and its users' ratings.

    report = build(samples, reference, ratings, since=..., until=..., windows=12)
    report.alerts   # what crossed a threshold, one line each

Tabular models: drift per feature (:mod:`zero2one.monitoring.drift`) and of the predictions
(class shares of a classifier). Language models: prompt and answer lengths, the share of
answers the moderation checks flag, and the share of good ratings (``--min-good-share``). The
period is also cut into ``windows`` equal spans, each with its own figures, for the plots of
drift over time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zero2one.feedback import BAD, GOOD, verdict
from zero2one.monitoring.drift import ColumnDrift, Thresholds, column_drift, shares
from zero2one.monitoring.embeddings import MIN_EACH, domain_auc
from zero2one.monitoring.store import Sample, aware

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "prediction"


@dataclass(frozen=True)
class Limits(Thresholds):
    min_good_share: float = 0.5  # of rated answers, good among good and bad
    min_ratings: int = 10  # fewer give no verdict
    max_flagged_share: float = 0.05  # answers the moderation checks flag
    max_embedding_auc: float = 0.75  # a classifier telling the periods' prompts apart
    max_refused_share: float = 0.2  # prompts refused and answers filtered by moderation


@dataclass
class Report:
    model: str
    version: str | None
    since: dt.datetime
    until: dt.datetime
    samples: int = 0
    rows: int = 0
    has_reference: bool = False
    features: list[ColumnDrift] = field(default_factory=list)
    prediction: ColumnDrift | None = None
    class_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    text: dict[str, Any] | None = None
    embedding: dict[str, Any] | None = None  # served vectors against the reference's
    ratings: dict[str, Any] | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [c.name for c in self.features if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["since"], found["until"] = self.since.isoformat(), self.until.isoformat()
        found["drifted"] = self.drifted
        return found

    def metrics(self) -> dict[str, float]:
        """The figures as flat MLflow metrics (and Prometheus gauges)."""
        found: dict[str, float] = {"samples": self.samples, "rows": self.rows,
                                   "alerts": len(self.alerts), "drifted": len(self.drifted)}
        for column in [*self.features, *([self.prediction] if self.prediction else [])]:
            if column.psi is not None:
                found[f"psi.{column.name}"] = column.psi
        if self.embedding and self.embedding.get("auc") is not None:
            found["embedding.auc"] = float(self.embedding["auc"])
        for key in ("good_share", "ratings"):
            if self.ratings and self.ratings.get(key) is not None:
                found[f"ratings.{key}"] = float(self.ratings[key])
        for key in ("prompt_chars", "answer_chars", "flagged_share", "refused_share",
                    "prompt_drift_auc"):
            if self.text and self.text.get(key) is not None:
                found[f"text.{key}"] = float(self.text[key])
        return found


def rows_frame(samples: list[Sample]) -> pd.DataFrame:
    """The served rows of ``rows`` samples as one table: the features, the prediction and the
    time each was served."""
    import pandas as pd

    frames = []
    for sample in samples:
        if sample.kind != "rows":
            continue
        payload = sample.payload
        frame = pd.DataFrame(payload.get("rows") or [], columns=payload.get("columns"))
        predictions = payload.get("predictions") or []
        if len(predictions) >= len(frame):
            frame[PREDICTION] = predictions[:len(frame)]
        frame["_served"] = sample.created
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build(samples: list[Sample], reference: dict[str, Any] | None,
          ratings: list[dict[str, Any]], *, model: str, version: str | None,
          since: dt.datetime, until: dt.datetime, windows: int = 12,
          limits: Limits = Limits(), flag: Any = None) -> Report:
    """The report over ``samples`` (and the feedback ``ratings``) in [since, until).
    ``flag``: text -> bool, the moderation check of answers (None: not checked)."""
    report = Report(model, version, since, until, samples=len(samples),
                    has_reference=reference is not None)
    frame = rows_frame(samples)
    report.rows = len(frame)
    texts = [s.payload for s in samples if s.kind == "text"]
    if len(frame):
        _served_rows(report, frame, reference, limits)
    if reference is not None and reference.get("embedding"):
        _embedding(report, samples, reference["embedding"], limits)
    if texts:
        report.text = _text(texts, flag)
        _text_alerts(report, report.text, limits, len(texts))
    if ratings:
        report.ratings = _ratings(ratings)
        share = report.ratings["good_share"]
        if report.ratings["rated"] >= limits.min_ratings and share is not None \
                and share < limits.min_good_share:
            report.alerts.append(f"good ratings {share:.0%} of {report.ratings['rated']} "
                                 f"(limit {limits.min_good_share:.0%})")
    if not samples and not ratings:
        report.notes.append("no samples and no ratings in this period: is the server run "
                            "with --monitor (and --feedback for ratings)?")
    report.windows = _windows(samples, frame, ratings, reference, since, until, windows,
                              limits)
    return report


def _text_alerts(report: Report, text: dict[str, Any], limits: Limits, count: int) -> None:
    if count < limits.min_rows:
        return
    if text.get("flagged_share", 0.0) > limits.max_flagged_share:
        report.alerts.append(f"{text['flagged_share']:.0%} of the answers are flagged by the "
                             f"moderation checks (limit {limits.max_flagged_share:.0%})")
    if text["refused_share"] > limits.max_refused_share:
        report.alerts.append(f"{text['refused_share']:.0%} of the prompts were refused or "
                             f"their answers filtered by moderation (limit "
                             f"{limits.max_refused_share:.0%})")


def add_prompt_drift(report: Report, drift: dict[str, Any], limits: Limits) -> None:
    """The embedding drift of the prompts against a baseline period (see
    :mod:`zero2one.monitoring.embeddings`), with its alert."""
    if report.text is None:
        return
    report.text["prompt_drift_auc"] = drift["auc"]
    if drift.get("note"):
        report.notes.append(drift["note"] + f" (baseline {drift['baseline']}, this period "
                            f"{drift['current']})")
    elif drift["auc"] >= limits.max_embedding_auc:
        report.alerts.append(f"the prompts drifted: a classifier tells them from the baseline "
                             f"period's with ROC AUC {drift['auc']:.2f} (limit "
                             f"{limits.max_embedding_auc:.2f})")


def _embedding(report: Report, samples: list[Sample], reference: dict[str, Any],
               limits: Limits) -> None:
    """The served vectors (an image classifier's class probabilities) against those the
    model gave on its held-out inputs: a classifier's ROC AUC at telling them apart."""
    import numpy as np

    served = [v for s in samples if s.kind == "rows" for v in s.payload.get("embeddings") or []]
    known = reference["vectors"]
    report.embedding = {"kind": reference["kind"], "served": len(served),
                        "reference": len(known), "auc": None}
    if len(served) < MIN_EACH or len(known) < MIN_EACH:
        report.notes.append(f"embedding drift needs {MIN_EACH} served vectors "
                            f"(got {len(served)})")
        return
    auc = domain_auc(np.asarray(known, dtype=float), np.asarray(served, dtype=float))
    report.embedding["auc"] = auc
    if auc >= limits.max_embedding_auc:
        report.alerts.append(f"the inputs drifted: a classifier tells the served "
                             f"{reference['kind']} from the held-out ones with ROC AUC "
                             f"{auc:.2f} (limit {limits.max_embedding_auc:.2f})")


def _served_rows(report: Report, frame: pd.DataFrame, reference: dict[str, Any] | None,
             limits: Limits) -> None:
    if reference is None:
        report.notes.append(
            "this model carries no training reference (reference.json; models saved before "
            "monitoring came, or by a task that keeps none): served distributions, class "
            "shares and ratings are shown, drift against training is not")
        if PREDICTION in frame:
            report.class_shares = {"served": shares(frame[PREDICTION])}
        return
    for name, summary in reference.get("features", {}).items():
        if name in frame:
            report.features.append(column_drift(name, summary, frame[name], limits))
    if report.drifted:
        report.alerts.append("drift in " + ", ".join(
            f"{c.name} ({'; '.join(c.reasons)})" for c in report.features if c.drifted))
    predicted = reference.get("prediction")
    if predicted is not None and PREDICTION in frame:
        report.prediction = column_drift(PREDICTION, predicted, frame[PREDICTION], limits)
        if predicted["kind"] == "categorical":
            report.class_shares = {"reference": dict(predicted["shares"]),
                                   "served": shares(frame[PREDICTION])}
        if report.prediction.drifted:
            report.alerts.append("the predictions drifted ("
                                 + "; ".join(report.prediction.reasons) + ")")


def _text(texts: list[dict[str, Any]], flag: Any) -> dict[str, Any]:
    import numpy as np

    finished = [t.get("finish") for t in texts]
    answered = [t for t, f in zip(texts, finished, strict=True) if f != "refused"]
    found: dict[str, Any] = {
        "answers": len(answered), "refused": finished.count("refused"),
        "filtered": finished.count("content_filter"), "cut": finished.count("length"),
        "prompt_chars": float(np.mean([len(t.get("prompt") or "") for t in texts])),
        "answer_chars": float(np.mean([len(t.get("answer") or "") for t in answered]))
        if answered else None,
        "empty_answers": sum(1 for t in answered if not t.get("answer"))}
    found["refused_share"] = (found["refused"] + found["filtered"]) / len(texts)
    if flag is not None:
        flagged = sum(1 for t in answered if flag(t.get("answer") or ""))
        found["flagged"] = flagged
        found["flagged_share"] = flagged / len(answered) if answered else 0.0
    return found


def _ratings(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [verdict(r) for r in ratings]
    good, bad = verdicts.count(GOOD), verdicts.count(BAD)
    return {"feedback": len(ratings), "rated": good + bad, "good": good, "bad": bad,
            "good_share": good / (good + bad) if good + bad else None}


def _windows(samples: list[Sample], frame: pd.DataFrame, ratings: list[dict[str, Any]],
             reference: dict[str, Any] | None, since: dt.datetime, until: dt.datetime,
             count: int, limits: Limits) -> list[dict[str, Any]]:
    """Each of ``count`` equal spans of the period with its own figures."""
    span = (until - since) / max(count, 1)
    found = []
    for i in range(max(count, 1)):
        start, end = since + span * i, since + span * (i + 1)
        window: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(),
                                  "samples": sum(1 for s in samples if start <= s.created < end)}
        if len(frame):
            part = frame[(frame["_served"] >= start) & (frame["_served"] < end)]
            window["rows"] = len(part)
            if reference is not None and len(part):
                window["psi"] = {
                    name: column_drift(name, summary, part[name], limits).psi
                    for name, summary in [*reference.get("features", {}).items(),
                                          (PREDICTION, reference.get("prediction"))]
                    if summary is not None and name in part}
        texts = [s.payload for s in samples if s.kind == "text" and start <= s.created < end]
        if texts:
            window["answers"] = len(texts)
            window["prompt_chars"] = sum(len(t.get("prompt") or "") for t in texts) / len(texts)
            window["answer_chars"] = sum(len(t.get("answer") or "") for t in texts) / len(texts)
        rated = [r for r in ratings if start <= aware(r["created"]) < end]
        if rated:
            window["good_share"] = _ratings(rated)["good_share"]
        found.append(window)
    return found
