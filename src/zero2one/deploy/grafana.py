"""A Grafana dashboard for a served model: traffic, latency, drift, class shares, ratings.

``zero2one deploy k8s`` writes it twice beside the manifests: ``grafana/dashboard.json``, to
import in Grafana (Dashboards → Import), and ``configmap.yaml``, a ConfigMap labelled
``grafana_dashboard: "1"`` that the dashboard sidecar of the kube-prometheus-stack chart loads
(``kubectl apply -f`` the folder applies it with the rest; the JSON's subfolder is skipped).
Its queries read the metrics every ``zero2one serve`` exposes on ``/metrics``
(``zero2one_monitor_*`` with ``--monitor``), filtered by the ``job`` Prometheus gives the
scraped pods.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE = "grafana/dashboard.json"
_JOB = '{job=~"$job"}'


def _panel(number: int, title: str, queries: list[tuple[str, str]], *, kind: str = "timeseries",
           unit: str = "short", x: int = 0, y: int = 0, threshold: float | None = None,
           width: int = 12) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if threshold is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "red", "value": threshold}]}
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {"id": number, "type": kind, "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for i, (expr, legend) in enumerate(queries)]}


def dashboard(name: str) -> dict[str, Any]:
    """The dashboard of the model served as ``name`` (its title; the job is a variable)."""
    panels = [
        _panel(1, "Requests per second", [(
            f"sum by (route, status) (rate(zero2one_requests_total{_JOB}[5m]))",
            "{{route}} {{status}}")], unit="reqps", x=0, y=0),
        _panel(2, "Latency (p50, p95)", [
            (f"histogram_quantile({q}, sum by (le) "
             f"(rate(zero2one_request_duration_seconds_bucket{_JOB}[5m])))", f"p{int(q * 100)}")
            for q in (0.5, 0.95)], unit="s", x=12, y=0),
        _panel(3, "Drift per column (PSI against training)", [(
            f"max by (column) (zero2one_monitor_psi{_JOB})", "{{column}}")],
            x=0, y=8, threshold=0.2),
        _panel(4, "Columns drifting now", [(
            f"sum by (column) (zero2one_monitor_drifted{_JOB}) > 0", "{{column}}")],
            kind="stat", x=12, y=8, threshold=1),
        _panel(5, "Class shares (served and training)", [(
            f"avg by (class_, source) (zero2one_monitor_class_share{_JOB})",
            "{{class_}} ({{source}})")], unit="percentunit", x=0, y=16),
        _panel(6, "Good ratings", [(
            f"avg(zero2one_monitor_good_share{_JOB})", "good share")],
            unit="percentunit", x=12, y=16),
        _panel(7, "Monitoring alerts", [(
            f"max(zero2one_monitor_alerts{_JOB})", "thresholds crossed")],
            kind="stat", x=0, y=24, threshold=1, width=8),
        _panel(8, "Samples in the window", [(
            f"sum(zero2one_monitor_samples{_JOB})", "samples")], x=8, y=24, width=8),
        _panel(9, "Samples dropped (store down, queue full)", [(
            f"sum(rate(zero2one_monitor_dropped_total{_JOB}[5m]))", "dropped/s")],
            x=16, y=24, width=8, threshold=0.001),
    ]
    return {
        "title": f"zero2one: {name}", "uid": f"zero2one-{name}"[:40], "schemaVersion": 39,
        "version": 1, "editable": True, "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s", "tags": ["zero2one"], "panels": panels,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus"},
            {"name": "job", "type": "query", "label": "job", "includeAll": True,
             "multi": True, "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": "label_values(zero2one_model_info, job)", "refresh": 2}]},
        "annotations": {"list": []},
    }


def write(out: Path, name: str) -> Path:
    path = out / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dashboard(name), indent=2, ensure_ascii=False) + "\n")
    return path


def config_map(name: str) -> dict[str, Any]:
    """The dashboard as a ConfigMap for Grafana's dashboard sidecar."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{name}-dashboard",
                         "labels": {"grafana_dashboard": "1",
                                    "app.kubernetes.io/name": name,
                                    "app.kubernetes.io/part-of": "zero2one"}},
            "data": {f"zero2one-{name}.json": json.dumps(dashboard(name), ensure_ascii=False)}}
