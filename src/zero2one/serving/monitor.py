"""Monitoring in the server (``zero2one serve MODEL --monitor default|PATH|URL``).

Routes hand their answers to :func:`offer_rows` (``/predict``: the rows in the model's column
order and the predictions) and :func:`offer_text` (generative routes: the prompt and the
answer); the :class:`~zero2one.monitoring.store.Sampler` keeps a share of them. Every
``--monitor-interval`` seconds the report of the last ``--monitor-window`` seconds
(:func:`zero2one.monitoring.period_report`, its newest :data:`CHECKED` samples) sets the
Prometheus gauges below; when its alerts change
they are logged, one line.

    zero2one_monitor_psi{column}            PSI of a feature (or "prediction") against training
    zero2one_monitor_drifted{column}        1 when that column drifted
    zero2one_monitor_class_share{class,source}  served and training shares of each class
    zero2one_monitor_good_share             good ratings among rated answers
    zero2one_monitor_embedding_auc          an image classifier's inputs against its reference
    zero2one_monitor_alerts                 thresholds crossed (0: all well)
    zero2one_monitor_samples                samples in the window
    zero2one_monitor_dropped_total          samples dropped (store down, queue full)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.requests import Request

from zero2one.errors import UserError
from zero2one.feedback import FeedbackStore
from zero2one.monitoring import Report, Subject, period_report, subject
from zero2one.monitoring.store import MonitorStore, Sampler
from zero2one.serving.settings import ServeSettings

log = logging.getLogger("uvicorn.error")  # the server's configured logger
MAX_TEXT = 4000  # characters kept of a prompt or an answer
CHECKED = 5000  # the newest samples of the window each check reads (bounds its cost)


class Gauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.psi = Gauge("zero2one_monitor_psi", "Population stability index against training.",
                         ["column"], registry=registry)
        self.drifted = Gauge("zero2one_monitor_drifted", "1 when the column drifted.",
                             ["column"], registry=registry)
        self.class_share = Gauge("zero2one_monitor_class_share", "Share of a predicted class.",
                                 ["class_", "source"], registry=registry)
        self.good_share = Gauge("zero2one_monitor_good_share",
                                "Good ratings among rated answers in the window.",
                                registry=registry)
        self.alerts = Gauge("zero2one_monitor_alerts", "Monitoring thresholds crossed.",
                            registry=registry)
        self.samples = Gauge("zero2one_monitor_samples", "Samples in the monitoring window.",
                             registry=registry)
        self.embedding_auc = Gauge("zero2one_monitor_embedding_auc", "ROC AUC of a classifier "
                                   "telling served embeddings from the reference's (0.5: "
                                   "alike).", registry=registry)
        self.dropped = Counter("zero2one_monitor_dropped", "Samples dropped (store down or "
                               "queue full).", registry=registry)

    def show(self, found: Report) -> None:
        self.samples.set(found.samples)
        self.alerts.set(len(found.alerts))
        for gauge in (self.psi, self.drifted, self.class_share):
            gauge.clear()
        for column in [*found.features, *([found.prediction] if found.prediction else [])]:
            if column.psi is not None:
                self.psi.labels(column.name).set(column.psi)
            self.drifted.labels(column.name).set(int(column.drifted))
        for source, shares in found.class_shares.items():
            for name, value in shares.items():
                self.class_share.labels(name, source).set(value)
        auc = (found.embedding or {}).get("auc")
        self.embedding_auc.set(float(auc) if auc is not None else float("nan"))
        good = (found.ratings or {}).get("good_share")
        self.good_share.set(float(good) if good is not None else float("nan"))


class Monitor:
    """The sampler and the periodic report of one server process."""

    def __init__(self, settings: ServeSettings, registry: CollectorRegistry,
                 feedback: FeedbackStore | None) -> None:
        assert settings.monitor is not None
        self.settings, self.feedback = settings, feedback
        self.store = MonitorStore(settings.monitor)  # a malformed URL fails here, at start
        self.gauges = Gauges(registry)
        self.sampler = Sampler(self.store, rate=settings.monitor_rate,
                               max_samples=settings.monitor_max_samples,
                               per_second=settings.monitor_max_per_second,
                               on_drop=self.gauges.dropped.inc)
        self._alerts: list[str] = []
        self._subject: tuple[Any, Subject] | None = None

    async def start(self, served: Any) -> None:
        """Open the store (one that does not answer is said once, and serving goes on); say
        what cannot be monitored for a model that carries no training reference."""
        try:
            await asyncio.to_thread(self.store.open)
        except UserError as exc:
            log.warning("%s; serving goes on, samples are dropped until it answers", exc)
            self.sampler.say_failing()
        if getattr(served.adapter, "monitored_columns", None) and served.resolved is not None:
            found = await asyncio.to_thread(subject, served.resolved)
            self._subject = (served.resolved, found)  # the checks read it from here
            if found.reference is None:
                log.warning("monitor: %s carries no training reference (saved before "
                            "monitoring came): its class shares and ratings are monitored, "
                            "drift against training is not; train it again to have it",
                            found.name)

    async def watch(self, holder: Any) -> None:
        """Every ``--monitor-interval`` seconds, the report of the last window to the gauges."""
        while True:
            await asyncio.sleep(self.settings.monitor_interval)
            served = holder.current
            if served is None or served.resolved is None:
                continue
            try:
                found = await asyncio.to_thread(self.check, served.resolved)
            except Exception as exc:  # the store is down, or a model without a reference
                log.debug("monitoring report failed: %s", exc)
                continue
            self.gauges.show(found)
            if found.alerts != self._alerts:
                if found.alerts:
                    log.warning("monitor: %s", " | ".join(found.alerts))
                else:
                    log.warning("monitor: the alerts cleared")
            self._alerts = found.alerts

    def check(self, resolved: Any) -> Report:
        if self._subject is None or self._subject[0] != resolved:  # a hot swap: read again
            self._subject = (resolved, subject(resolved))
        now = dt.datetime.now(dt.UTC)
        return period_report(self._subject[1], self.store, feedback=self.feedback,
                             since=now - dt.timedelta(seconds=self.settings.monitor_window),
                             until=now, windows=1, newest=CHECKED)

    def close(self) -> None:
        self.sampler.close()


def _monitor(request: Request) -> Monitor | None:
    return getattr(request.app.state, "monitor", None)


def offer_rows(request: Request, served: Any, rows: list[Any], results: list[Any],
               content: dict[str, Any]) -> None:
    """A ``/predict`` answer: its rows (when the adapter names its columns), predictions and
    embeddings (when the adapter gives them)."""
    found = _monitor(request)
    if found is None or not found.sampler.wants():
        return
    adapter = served.adapter
    columns = getattr(adapter, "monitored_columns", None)
    payload = {"columns": columns, "rows": rows if columns else [[] for _ in rows],
               "predictions": content.get("result")}
    embeddings = getattr(adapter, "monitored_embeddings", lambda _: None)(results)
    if embeddings is not None:
        payload["embeddings"] = embeddings
    found.sampler.offer(model=served.info.name, version=served.info.version,
                        route="/predict", kind="rows", payload=payload)


def offer_text(request: Request, ident: str, route: str, body: Any, output: Any, *,
               finish: str | None = None) -> None:
    """A generative answer: the prompt (a chat's messages), the answer's text and how it
    ended (``stop``, ``length``, ``content_filter``; ``refused``: moderation refused the
    prompt)."""
    found = _monitor(request)
    if found is None or not isinstance(output, str):  # /predict offers its rows itself
        return
    if not found.sampler.wants():
        return
    info = request.app.state.holder.current.info
    messages = body.get("messages") if isinstance(body, dict) else None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages:
        said = [m for m in messages if isinstance(m, dict)]
        users = [m for m in said if m.get("role") == "user"] or said
        prompt = users[-1].get("content") if users else None
    found.sampler.offer(model=info.name, version=info.version, route=route, kind="text",
                        payload={"id": ident,
                                 "prompt": _cut(prompt if isinstance(prompt, str) else ""),
                                 "messages": messages if isinstance(messages, list)
                                 and len(str(messages)) <= MAX_TEXT * 4 else None,
                                 "answer": _cut(output), "finish": finish})


def _cut(text: str) -> str:
    return text[:MAX_TEXT]
