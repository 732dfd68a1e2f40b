"""``zero2one monitor MODEL``: drift, class shares and ratings of a served model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from zero2one.cli.output import Json, console, print_json, table

if TYPE_CHECKING:
    from zero2one.monitoring import Report

ALERT_EXIT = 3  # --exit-code: a threshold was crossed (2 is a usage error, 1 a crash)


def monitor(
    model: Annotated[str, typer.Argument(help="The served model's reference (as given to "
                                         "zero2one serve).")],
    store: Annotated[str, typer.Option("--store", help="The monitor store: 'default' (the "
                                       "workspace's SQLite), a file, or a database URL.")]
    = "default",
    feedback: Annotated[str | None, typer.Option(
        "--feedback", help="Read ratings from this feedback store too ('default', a file, "
        "a URL).")] = None,
    since: Annotated[str, typer.Option(help="Start of the period: a duration ago (30m, 24h, "
                                       "7d) or an ISO time.")] = "24h",
    until: Annotated[str | None, typer.Option(help="End of the period (default: now).")]
    = None,
    windows: Annotated[int, typer.Option(min=1, max=200, help="Spans the period is cut "
                                         "into for the plots over time.")] = 12,
    psi: Annotated[float, typer.Option(min=0, help="PSI at which a column drifts.")] = 0.2,
    p_value: Annotated[float, typer.Option(min=0, max=1, help="p-value below which a shift "
                                           "is more than chance.")] = 0.01,
    min_good_share: Annotated[float, typer.Option(min=0, max=1, help="Alert below this "
                                                  "share of good ratings.")] = 0.5,
    moderate: Annotated[bool, typer.Option(help="Check generated answers with the built-in "
                                           "moderation (the share flagged).")] = True,
    baseline: Annotated[str | None, typer.Option(
        help="Language models: compare the period's prompts (embedded by all-MiniLM-L6-v2) "
        "with those since this time (a duration ago or an ISO time) until --since. Default: "
        "the period of the same length before --since; 'none' to skip.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the report with its plots "
                                              "to this HTML file.")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Write the period's served rows (CSV, with the prediction) or "
        "conversations (JSONL) to this file: the next training set.")] = None,
    track: Annotated[bool, typer.Option(help="Log the report as an MLflow run (experiment "
                                        "'monitoring').")] = True,
    exit_code: Annotated[bool, typer.Option(
        "--exit-code", help=f"Exit with code {ALERT_EXIT} when a threshold is crossed (for "
        "schedulers).")] = False,
    json_: Json = False,
) -> None:
    """Compare a period of served traffic with the model's training data and its ratings."""
    import datetime as dt

    from zero2one.errors import UserError
    from zero2one.feedback import FeedbackStore
    from zero2one.monitoring import Limits, check_period, parse_since, period_report, subject
    from zero2one.monitoring import export as write_export
    from zero2one.monitoring.store import MonitorStore

    found = subject(model)
    start = parse_since(since)
    end = parse_since(until) if until else dt.datetime.now(dt.UTC)
    check_period(start, end)
    monitor_store = MonitorStore(store)
    monitor_store.open()
    limits = Limits(psi=psi, p_value=p_value, min_good_share=min_good_share)
    before = None if baseline == "none" else (
        parse_since(baseline) if baseline else start - (end - start), start)
    if before is not None and before[0] >= start:
        raise UserError(f"--baseline {baseline}: the baseline period must begin before --since")
    report = period_report(found, monitor_store, since=start, until=end,
                           feedback=FeedbackStore(feedback) if feedback else None,
                           windows=windows, limits=limits, flag=_flagger() if moderate else None,
                           baseline=before)
    samples = monitor_store.read(found.name, since=start, until=end, version=found.version) \
        if html or export else []
    if html:
        from zero2one.monitoring.html import write_html
        from zero2one.monitoring.report import rows_frame

        write_html(report, found.reference, rows_frame(samples), html)
    exported = None
    if export:
        exported = write_export(samples, export)
    run_id = _track(report, html) if track else None
    if json_:
        print_json({**report.to_dict(), "html": str(html) if html else None,
                    "exported": exported, "run_id": run_id})
    else:
        _show(report, html, export, exported, run_id)
    if exit_code and report.alerts:
        raise typer.Exit(ALERT_EXIT)


def _flagger() -> object:
    from zero2one.moderation import load_moderator

    moderator = load_moderator("default")
    return lambda text: bool(text) and moderator.check(text, where="output").flagged


def _track(report: Report, html: Path | None) -> str:
    import json
    import tempfile

    from zero2one import tracking

    tags = {"zero2one.monitor.model": report.model,
            "zero2one.monitor.alerts": str(len(report.alerts))}
    with tracking.start_run("monitoring", run_name=f"{report.model} {report.since:%Y-%m-%d %H:%M}",
                            tags=tags) as run:
        run.log_params({"model": report.model, "version": report.version or "-",
                        "since": report.since.isoformat(), "until": report.until.isoformat()})
        run.log_metrics(report.metrics())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "monitor_report.json"
            path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
            run.log_artifact(path)
        if html is not None:
            run.log_artifact(html)
        return run.run_id


def _show(report: Report, html: Path | None, export: Path | None, exported: int | None,
          run_id: str | None) -> None:
    out = console()
    out.print(f"[bold]{report.model}[/bold]{' version ' + report.version if report.version else ''}"
              f": {report.samples} samples, {report.rows} rows, "
              f"{report.since:%Y-%m-%d %H:%M} – {report.until:%Y-%m-%d %H:%M} UTC")
    for note in report.notes:
        out.print(f"[dim]{note}[/dim]")
    columns = [*report.features, *([report.prediction] if report.prediction else [])]
    if columns:
        out.print(table("drift against training", ["column", "kind", "values", "PSI",
                                                   "p-value", "missing", "verdict"], [
            [c.name, c.kind, c.rows, "-" if c.psi is None else f"{c.psi:.3f}",
             "-" if c.p_value is None else f"{c.p_value:.1e}", f"{c.missing:.1%}",
             "; ".join(c.reasons) if c.drifted else "ok" if not c.reasons else c.reasons[0]]
            for c in columns]))
    if report.class_shares:
        classes = sorted({k for shares in report.class_shares.values() for k in shares})
        sources = list(report.class_shares)
        out.print(table("class shares", ["class", *sources], [
            [k, *[f"{report.class_shares[s].get(k, 0.0):.1%}" for s in sources]]
            for k in classes]))
    for title, figures in (("answers", report.text), ("inputs against the reference",
                                                      report.embedding),
                           ("ratings", report.ratings)):
        if figures:
            out.print(table(title, list(figures), [[
                f"{v:.2f}" if isinstance(v, float) else v for v in figures.values()]]))
    for alert in report.alerts:
        out.print(f"[red]alert:[/red] {alert}")
    if not report.alerts:
        out.print("no alerts: nothing crossed a threshold")
    if html:
        out.print(f"report: {html}")
    if export:
        out.print(f"exported {exported} to {export}")
    if run_id:
        out.print(f"MLflow run: {run_id} (experiment 'monitoring')")
