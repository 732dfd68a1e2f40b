"""Export and compression: a trained model in, a new model of the same task out.

    zero2one export MODEL_REF --format onnx [--register NAME]
    zero2one compress MODEL_REF --method static|qat|dynamic|... [--calibration N] [--epochs N]

The task does the work (:meth:`~zero2one.task.Task.export`, :meth:`~zero2one.task.Task.compress`)
and checks the new model's outputs against its parent's before anything is written. This module
loads the parent and its data (the recipe's, ``--set`` overrides applied), measures every model
the same way — size on disk, held-out metrics, p50 latency at batch 1 and throughput at a larger
batch, on the same threads — writes the report (Markdown and JSON), and saves the new model as a
tracked run, registered with its parent recorded in the version's tags and the manifest.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one import portable, refs, tracking
from zero2one.api import registered_uri
from zero2one.artifacts import manifest_digest, read_manifest, save_model
from zero2one.catalog import all_tasks, get_task, validate
from zero2one.errors import UserError
from zero2one.monitoring.reference import REFERENCE
from zero2one.onnxrt import threads
from zero2one.paths import workspace
from zero2one.progress import NullReporter, Reporter
from zero2one.recipe import apply_overrides, flatten
from zero2one.version import __version__

if TYPE_CHECKING:
    from zero2one.refs import Resolved
    from zero2one.task import Task

# the held-out metric a report shows, the first a task's evaluate() gives
PRIMARY_METRICS = ("accuracy", "r2", "val_perplexity")
MIN_BENCH_SECONDS = 0.4  # timing each model at each batch size, at least (and 10 calls)


@dataclass
class CompressOptions:
    """What ``zero2one compress`` passes to a task (None: the task's default)."""

    calibration: int | None = None  # inputs that calibrate activation ranges
    epochs: int | None = None  # quantization-aware fine-tuning
    # the share of held-out labels the compressed model must agree on (None: the task's own)
    min_agreement: float | None = None


@dataclass
class Conversion:
    """What a task's export or compress made."""

    model: Task  # the new model, ready to evaluate, save and serve
    method: str  # onnx, static, qat, ...
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest
    # further models measured in the report between parent and new model (the float32 model
    # in the new model's runtime, for a quantized one)
    baselines: list[Task] = field(default_factory=list)
    # bytes on disk of parent, baselines and new model where saving them does not tell (a
    # language model's parent directory holds only an adapter); None: measured by saving
    sizes: list[int | None] | None = None
    # held-out metrics of the same models the task already measured (None: evaluated here)
    metrics: list[dict[str, float] | None] | None = None


@dataclass
class ConvertResult:
    model_dir: Path
    model_uri: str
    method: str
    parent: str
    metrics: dict[str, float]
    report: list[dict[str, Any]]
    markdown: str
    run_id: str | None = None
    registered_name: str | None = None
    registered_version: str | None = None

    @property
    def registered_uri(self) -> str | None:
        return registered_uri(self.registered_name, self.registered_version)

    def to_dict(self) -> dict[str, Any]:
        return {"model_uri": self.model_uri, "model_dir": str(self.model_dir),
                "method": self.method, "parent": self.parent, "run_id": self.run_id,
                "registered_uri": self.registered_uri, "metrics": self.metrics,
                "report": self.report}


def export(ref: str | Path, fmt: str = "onnx", *, register: str | None = None,
           overrides: Iterable[str] = (), out: str | Path | None = None,
           reporter: Reporter | None = None, trust: Iterable[str] = (),
           accept_loss: bool = False) -> ConvertResult:
    """The model at ``ref`` in another runtime (``onnx``), checked against it on held-out rows,
    measured, tracked and registered (``register``, else the parent's registered name).
    ``accept_loss`` keeps an export that loses more quality than the task allows."""
    resolved = refs.resolve(ref)  # format and data are checked before any weights load
    own = get_task(resolved.task).export_formats
    base, _, quant = fmt.partition("-")
    variants = [f.partition("-")[2] for f in own if f.startswith(f"{base}-")]
    if fmt not in own and quant and variants:  # `--format gguf --quant q3`
        raise UserError(f"--quant {quant} is not one of {', '.join(variants)} for "
                        f"--format {base}")
    if fmt not in own and quant and base in own:
        raise UserError(f"--format {base} takes no --quant")
    if fmt not in own:
        able = [c.name for c in all_tasks() if fmt in c.export_formats]
        raise UserError(f"{resolved.task} models cannot be exported to {fmt}; --format {fmt} "
                        f"applies to {_names(able)}")
    loss = {"accept_loss": True} if accept_loss else {}  # tasks that gate on quality take it
    return _convert(resolved, trust, lambda parent, data, rep: parent.export(
        fmt, data, reporter=rep, **loss), register=register, overrides=overrides, out=out,
        reporter=reporter)


def compress(ref: str | Path, method: str, *, options: CompressOptions | None = None,
             register: str | None = None, overrides: Iterable[str] = (),
             out: str | Path | None = None, reporter: Reporter | None = None,
             trust: Iterable[str] = ()) -> ConvertResult:
    """A compressed (INT8) model made from the one at ``ref``; see :func:`export`."""
    resolved = refs.resolve(ref)  # method and data are checked before any weights load
    own = get_task(resolved.task).compress_methods
    if method not in own:
        able = [f"{c.name} ({', '.join(c.compress_methods)})" for c in all_tasks()
                if c.compress_methods]
        raise UserError(f"--method {method} does not apply to {resolved.task} models"
                        + (f" (they take {', '.join(own)})" if own else "")
                        + f"; compress applies to {_names(able)}")
    options = options or CompressOptions()
    if options.min_agreement is not None and not 0 < options.min_agreement <= 1:
        raise UserError(f"--min-agreement {options.min_agreement}: a share between 0 and 1")
    return _convert(resolved, trust, lambda parent, data, rep: parent.compress(
        method, data, options=options, reporter=rep), register=register, overrides=overrides,
        out=out, reporter=reporter)


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "no installed task"


def _convert(resolved: Resolved, trust: Iterable[str],
             make: Callable[[Task, Any, Reporter], Conversion], *, register: str | None,
             overrides: Iterable[str], out: str | Path | None,
             reporter: Reporter | None) -> ConvertResult:
    """Load the parent and its data, make the new model, measure, save. A zero2one model's
    data is read (and refused) before its weights load: the recipe is in the manifest."""
    reporter = reporter or NullReporter()
    if out is not None and Path(out).exists():
        raise UserError(f"--out {out} already exists; choose a new directory")
    overrides = list(overrides)
    data = None
    if resolved.has_manifest and resolved.path is not None:
        cls = get_task(resolved.task)
        config = cls.recipe_from(read_manifest(resolved.path), resolved.path)
        if overrides:
            config = validate(apply_overrides(config.model_dump(mode="json"), overrides))
        with reporter.step("reading the data"):
            data = cls(config).load_data()
    with reporter.step("loading the model"):
        parent = refs.load(resolved, trust=trust)
    if overrides:
        parent.config = validate(apply_overrides(parent.config.model_dump(mode="json"),
                                                 overrides))
    if data is None:
        with reporter.step("reading the data"):
            data = parent.load_data()
    conversion = make(parent, data, reporter)
    with reporter.step("measuring"):
        rows = measure(parent, conversion, data)
    metrics = rows[-1]["metrics"]
    markdown = render(rows, parent, conversion)
    return _save(parent, conversion, data, metrics, rows, markdown, register=register, out=out)


# ---- measuring ------------------------------------------------------------------------------

def measure(parent: Task, conversion: Conversion, data: Any) -> list[dict[str, Any]]:
    """One row per model (parent, baselines, new): size, held-out metric, latency, throughput,
    and ratios against the parent and against the last baseline (the same runtime)."""
    models = [parent, *conversion.baselines, conversion.model]
    batch = getattr(parent, "bench_batch", 64)
    rows: list[dict[str, Any]] = []
    for i, model in enumerate(models):
        known = conversion.metrics[i] if conversion.metrics else None
        metrics = known if known is not None else model.evaluate(data)
        name = next((m for m in PRIMARY_METRICS if m in metrics), next(iter(metrics), None))
        given = conversion.sizes[i] if conversion.sizes else None
        size = given if given is not None else footprint(model)
        latency = _median_seconds(model.bench_call(data, 1))
        per_batch = _median_seconds(model.bench_call(data, batch))
        rows.append({"model": model.runtime, "size_bytes": size, "metrics": metrics,
                     "metric": name, "value": metrics.get(name) if name else None,
                     "p50_batch1_ms": latency * 1000, "batch": batch,
                     f"throughput_batch{batch}_per_s": batch / per_batch})
    reference = rows[-2] if conversion.baselines else rows[0]
    key = f"throughput_batch{batch}_per_s"
    for row in rows:
        row["size_vs_parent"] = row["size_bytes"] / rows[0]["size_bytes"]
        row["speedup_batch1_vs_parent"] = rows[0]["p50_batch1_ms"] / row["p50_batch1_ms"]
        row[f"speedup_batch{batch}_vs_parent"] = row[key] / rows[0][key]
        row["speedup_batch1_vs_same_runtime"] = (reference["p50_batch1_ms"]
                                                 / row["p50_batch1_ms"])
        row[f"speedup_batch{batch}_vs_same_runtime"] = row[key] / reference[key]
    return rows


def footprint(model: Task) -> int:
    """Bytes on disk of what ``model.save`` writes, the monitoring reference left out (the
    same few kB beside every version: on a tiny model it would blur the ratio)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        return sum(p.stat().st_size for p in Path(tmp).rglob("*")
                   if p.is_file() and p.name != REFERENCE)


def _median_seconds(call: Callable[[], Any]) -> float:
    call()  # warm-up: first-call allocations and lazy initialisation
    times: list[float] = []
    spent = 0.0
    while len(times) < 10 or (spent < MIN_BENCH_SECONDS and len(times) < 2000):
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return statistics.median(times)


def render(rows: list[dict[str, Any]], parent: Task, conversion: Conversion) -> str:
    """The report as a Markdown table, ratios beside the values: × the parent, and (where a
    baseline was measured) × the float32 model in the new model's runtime."""
    batch = rows[0]["batch"]
    same = bool(conversion.baselines)
    rate = f"batch {batch} /s"
    columns = ["model", "size MB", "× size", rows[0]["metric"] or "metric", "p50 batch 1 ms",
               "× parent", *(["× same runtime"] if same else []), rate, "× parent",
               *(["× same runtime"] if same else [])]
    origin = _lineage(parent.ref, parent)["ref"]
    lines = [
        f"# {conversion.method}: {parent.config.name}",
        "",
        f"Parent: `{origin}` ({parent.runtime}); {_threads()} threads; held-out data of the "
        "recipe." + (" × same runtime: against the float32 model in the new model's runtime."
                     if same else ""),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    for i, row in enumerate(rows):
        value = row["value"]
        # the parent runs in another runtime than the baseline: no same-runtime ratio
        ratio = "-" if i == 0 else f"{row['speedup_batch1_vs_same_runtime']:.2f}"
        batch_ratio = "-" if i == 0 else f"{row[f'speedup_batch{batch}_vs_same_runtime']:.2f}"
        cells = [row["model"], f"{row['size_bytes'] / 1e6:.3f}", f"{row['size_vs_parent']:.1%}",
                 "-" if value is None else f"{value:.4g}", f"{row['p50_batch1_ms']:.3f}",
                 f"{row['speedup_batch1_vs_parent']:.2f}", *([ratio] if same else []),
                 f"{row[f'throughput_batch{batch}_per_s']:.0f}",
                 f"{row[f'speedup_batch{batch}_vs_parent']:.2f}",
                 *([batch_ratio] if same else [])]
        lines.append("| " + " | ".join(cells) + " |")
    if conversion.details:
        lines += ["", "Details: " + ", ".join(f"{k} = {_plain(v)}"
                                              for k, v in conversion.details.items())]
    new, reference = rows[-1], rows[-2]
    if (len(rows) > 2 and new["speedup_batch1_vs_same_runtime"] < 1
            and new[f"speedup_batch{batch}_vs_same_runtime"] < 1):
        lines += ["", f"Note: on this machine the new model is slower than "
                      f"{reference['model']} at both batch sizes; for speed, keep that one "
                      "(`zero2one export`), for size, this one."]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _threads() -> int:
    return threads()


# ---- saving ---------------------------------------------------------------------------------

def _save(parent: Task, conversion: Conversion, data: Any, metrics: dict[str, float],
          rows: list[dict[str, Any]], markdown: str, *, register: str | None,
          out: str | Path | None) -> ConvertResult:
    new, method = conversion.model, conversion.method
    resolved = parent.ref
    lineage = _lineage(resolved, parent)
    extra: dict[str, Any] = {"metrics": metrics, "parent": lineage,
                             "conversion": {"method": method, **conversion.details}}
    if (fingerprint := getattr(data, "fingerprint", None)) is not None:
        extra["data"] = {"source": getattr(data, "source", None), **fingerprint}

    def add_report(directory: Path) -> None:
        (directory / "report").mkdir()
        _write_report(directory / "report", rows, markdown)

    config = parent.config
    if not config.track.enabled:
        target = Path(out) if out is not None else _default_out(config.name, method)
        model_dir = save_model(new, target, extra=extra, add=add_report)
        portable.describe(model_dir, new)
        return ConvertResult(model_dir, str(model_dir), method, lineage["ref"], metrics, rows,
                             markdown)
    tags = {tracking.TASK_TAG: new.name, "zero2one.version": __version__,
            tracking.PARENT_TAG: lineage["ref"], tracking.CONVERSION_TAG: method}
    if lineage.get("manifest_sha256"):
        tags["zero2one.parent_manifest_sha256"] = lineage["manifest_sha256"]
    name = register or (resolved.name if resolved is not None and resolved.kind == "registry"
                        else None)
    with tracking.start_run(config.experiment, run_name=f"{config.name}-{method}",
                            tags=tags) as run:
        run.log_params(flatten({"parent": lineage["ref"], "method": method,
                                **{k: v for k, v in conversion.details.items()
                                   if isinstance(v, int | float | str)}}))
        run.log_metrics({f"test_{k}": v for k, v in metrics.items()}
                        | _report_metrics(rows))
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            report = tmp_path / "report"
            report.mkdir()
            _write_report(report, rows, markdown)
            run.log_artifacts(report, "report")
            model_dir = save_model(new, Path(out) if out else tmp_path / "model", extra=extra)
            portable.describe(model_dir, new)
            run.log_artifacts(model_dir, tracking.MODEL_PATH)
        digest = manifest_digest(tracking.download(run.model_artifact_uri))
        run.set_tags({tracking.MANIFEST_TAG: digest})
        version = None
        if name:
            version = tracking.register_model(
                name, run, manifest_sha256=digest,
                tags={tracking.PARENT_TAG: lineage["ref"], tracking.CONVERSION_TAG: method})
    local = Path(out) if out else tracking.download(run.model_artifact_uri)
    return ConvertResult(local, run.model_uri, method, lineage["ref"], metrics, rows, markdown,
                         run_id=run.run_id, registered_name=name if version else None,
                         registered_version=version)


def _lineage(resolved: Resolved | None, parent: Task) -> dict[str, Any]:
    """Where the parent came from: the reference, its registered version, its manifest."""
    if resolved is None:
        return {"ref": parent.config.name}
    lineage: dict[str, Any] = {"ref": resolved.ref}
    if resolved.name and resolved.version:  # pinned: models:/NAME@champion moves on
        lineage["ref"] = f"models:/{resolved.name}/{resolved.version}"
        lineage["given_as"] = resolved.ref
    if resolved.has_manifest and resolved.path is not None:
        lineage["manifest_sha256"] = manifest_digest(resolved.path)
    return lineage


def _report_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    new, batch = rows[-1], rows[-1]["batch"]
    return {key: float(new[key]) for key in (
        "size_vs_parent", "p50_batch1_ms", f"throughput_batch{batch}_per_s",
        "speedup_batch1_vs_parent", f"speedup_batch{batch}_vs_parent",
        "speedup_batch1_vs_same_runtime", f"speedup_batch{batch}_vs_same_runtime")}


def _write_report(directory: Path, rows: list[dict[str, Any]], markdown: str) -> None:
    (directory / "conversion.md").write_text(markdown, encoding="utf-8")
    (directory / "conversion.json").write_text(json.dumps(rows, indent=2) + "\n")


def _default_out(name: str, method: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return workspace() / "models" / f"{name}-{method}-{stamp}"
