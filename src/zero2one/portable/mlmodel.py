"""MLflow's model format beside a zero2one model directory, written without importing MLflow
(3 s at every save): an ``MLmodel`` whose ``python_function`` flavor is "models from code" —
MLflow runs :data:`CODE_FILE`, which loads the directory through zero2one's verified load, so
nothing is unpickled — with the task's signature and input example
(:meth:`~zero2one.task.MLflowModel.pyfunc_schema`) and the environment files MLflow builds a
serving environment from (the requirements the task declares for deployment, pinned to the
versions installed here).

The files are not in the manifest's hash list (``zero2one models upgrade`` adds them to models
saved before, without changing a registered version's pinned manifest); the loader checks the
manifest's digest recorded here, then every file the manifest lists."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import platform
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from zero2one.artifacts import library_versions, manifest_digest
from zero2one.version import __version__

if TYPE_CHECKING:
    from zero2one.task import PyfuncSchema, Task

log = logging.getLogger(__name__)

CODE_FILE = "zero2one_model.py"
MLMODEL = "MLmodel"
EXAMPLE = "input_example.json"
SERVING_EXAMPLE = "serving_input_example.json"
FLAVOR = "zero2one"  # the MLmodel's own section: task, manifest digest, zero2one version

CODE = '''"""MLflow's entry to this zero2one model ("models from code": MLflow runs this file,
nothing is unpickled). The directory beside it is loaded by zero2one: manifest.json's digest is
checked against the MLmodel's, then every file against manifest.json."""

from pathlib import Path

import mlflow

from zero2one.portable.pyfunc import ZeroOneModel

mlflow.models.set_model(ZeroOneModel(Path(__file__).resolve().parent))
'''


def write_mlmodel(directory: Path, task: Task, manifest: dict[str, Any]) -> list[Path]:
    """The MLflow files for the saved model in ``directory`` (``manifest``: its manifest, as
    written); returns them."""
    try:
        schema = task.pyfunc_schema()
    except Exception as exc:  # a task's bug must not cost the model just trained
        log.warning("%s: the MLmodel has no signature or input example: pyfunc_schema() "
                    "failed (%s)", directory, str(exc).splitlines()[0] if str(exc) else exc)
        schema = None
    requirements = _requirements(task, manifest)
    (directory / CODE_FILE).write_text(CODE)
    (directory / "requirements.txt").write_text("\n".join(requirements) + "\n")
    python = platform.python_version()
    installed = library_versions(["pip", "mlflow"])
    pip = installed.get("pip")
    (directory / "python_env.yaml").write_text(yaml.safe_dump({
        "python": python, "build_dependencies": [f"pip=={pip}" if pip else "pip", "setuptools",
                                                 "wheel"],
        "dependencies": ["-r requirements.txt"]}, sort_keys=False))
    (directory / "conda.yaml").write_text(yaml.safe_dump({
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", f"pip<={pip}" if pip else "pip",
                         {"pip": requirements}],
        "name": "mlflow-env"}, sort_keys=False))
    model: dict[str, Any] = {
        "flavors": {
            "python_function": {
                "code": None, "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "mlflow.pyfunc.loaders.code_model",
                "model_code_path": CODE_FILE, "python_version": python, "streamable": False},
            FLAVOR: {"task": manifest["task"], "zero2one_version": __version__,
                     "manifest_sha256": manifest_digest(directory)},
        },
        "mlflow_version": installed.get("mlflow"),
        "model_size_bytes": sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()),
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "metadata": {"zero2one_task": manifest["task"], "zero2one_name": manifest.get("name")},
    }
    written = [directory / n for n in (CODE_FILE, "requirements.txt", "python_env.yaml",
                                       "conda.yaml")]
    if schema is not None:
        model["signature"] = _signature(schema)
        model["saved_input_example_info"] = {
            "artifact_path": EXAMPLE, "pandas_orient": "split",
            **({"params": "true"} if schema.params else {}),
            "serving_input_path": SERVING_EXAMPLE, "type": "dataframe"}
        rows = _rows(schema)
        split = {"columns": [c for c, _ in schema.inputs], "data": rows}
        (directory / EXAMPLE).write_text(json.dumps(
            {"inputs": split, "params": schema.params} if schema.params else split))
        (directory / SERVING_EXAMPLE).write_text(json.dumps(
            {"dataframe_split": split, **({"params": schema.params} if schema.params else {})},
            indent=2))
        written += [directory / EXAMPLE, directory / SERVING_EXAMPLE]
    else:  # an MLmodel without an example: none left from an earlier schema
        for name in (EXAMPLE, SERVING_EXAMPLE):
            (directory / name).unlink(missing_ok=True)
    (directory / MLMODEL).write_text(yaml.safe_dump(model, sort_keys=False))
    return [directory / MLMODEL, *written]


def _signature(schema: PyfuncSchema) -> dict[str, str | None]:
    def columns(pairs: list[tuple[str, str]]) -> str:
        return json.dumps([{"type": kind, "name": name, "required": True}
                           for name, kind in pairs])

    params = [{"name": name, "default": value, "shape": None, "type": _param_type(value)}
              for name, value in schema.params.items()]
    return {"inputs": columns(schema.inputs), "outputs": columns(schema.outputs),
            "params": json.dumps(params) if params else None}


def _param_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {int: "long", float: "double"}.get(type(value), "string")


def _rows(schema: PyfuncSchema) -> list[list[Any]]:
    """The example's rows as JSON values (binary columns base64, as MLflow writes them)."""
    kinds = dict(schema.inputs)
    columns = [[base64.b64encode(v).decode() if kinds[name] == "binary" else v
                for v in schema.example[name]] for name, _ in schema.inputs]
    return [list(row) for row in zip(*columns, strict=True)]


def _requirements(task: Task, manifest: dict[str, Any]) -> list[str]:
    """MLflow, zero2one and what the task's deployed image installs, pinned to the versions
    installed here (torch without its local label: ``2.13.0+cpu`` -> ``2.13.0``)."""
    names = ["mlflow", *task.deploy_requirements(manifest),
             *(["torch"] if task.needs_torch else [])]
    pinned = library_versions(names)
    lines = [f"zero2one=={__version__}"]
    for name in dict.fromkeys(names):
        version = pinned.get(name)
        lines.append(f"{name}=={version.split('+')[0]}" if version else name)
    return lines
