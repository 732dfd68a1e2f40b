"""``zero2one export`` and ``zero2one compress``: a new model made from a trained one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zero2one.cli.output import Json, Quiet, console, print_json

ModelArg = Annotated[str, typer.Argument(
    help="Model reference: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/model or a "
    "directory.", show_default=False)]
Register = Annotated[str | None, typer.Option(
    "--register", help="Register the new model under this name [the parent's registered "
    "name, as a new version].", show_default=False)]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="Override a field of the parent's recipe (its data: data.path=...).")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Also write the model directory "
                                          "here.")]
Trust = Annotated[list[str] | None, typer.Option(
    "--trust", help="Trust a type the parent's model file holds (repeatable).")]


def export(
    model: ModelArg,
    format_: Annotated[str, typer.Option(
        "--format", "-f", help="Target format: onnx (ONNX Runtime), or gguf (llama.cpp, "
        "Ollama) for language models.")] = "onnx",
    quant: Annotated[str | None, typer.Option(
        "--quant", help="Weights of a gguf export: f16, q8_0 (default), q4_0 or q4_1.",
        show_default=False)] = None,
    register: Register = None,
    set_: SetOption = None,
    out: Out = None,
    trust: Trust = None,
    accept_loss: Annotated[bool, typer.Option(
        "--accept-loss", help="Keep an export that loses more of the model's quality than the "
        "check allows (a 4-bit GGUF that undoes most of a fine-tune).")] = False,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Export a model to another runtime (ONNX for ONNX Runtime, GGUF for llama.cpp and
    Ollama); its outputs are checked against the original's on held-out data before anything
    is written."""
    from zero2one.convert import export as run_export

    fmt = f"{format_}-{quant}" if quant else format_
    _finish(run_export(model, fmt, register=register, overrides=set_ or [], out=out,
                       reporter=_reporter(json_, quiet), trust=trust or (),
                       accept_loss=accept_loss), json_, quiet)


def compress(
    model: ModelArg,
    method: Annotated[str, typer.Option(
        "--method", "-m", help="static: INT8 after training, calibrated; qat: INT8 after "
        "quantization-aware fine-tuning; dynamic: INT8 weights, activation ranges per call; "
        "int8-weights: language models' weights in INT8.", show_default=False)],
    calibration: Annotated[int | None, typer.Option(
        help="Inputs that calibrate activation ranges (static, qat) [512].")] = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Epochs of quantization-aware fine-tuning (qat) [3].")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="Share of held-out labels the INT8 model must agree on with the original "
        "(images: 0.98); lower it to accept a model that agrees less.")] = None,
    register: Register = None,
    set_: SetOption = None,
    out: Out = None,
    trust: Trust = None,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Compress a model to INT8; the report compares size, held-out metric, latency and
    throughput with the original (and with float32 in the same runtime)."""
    from zero2one.convert import CompressOptions
    from zero2one.convert import compress as run_compress

    options = CompressOptions(calibration, epochs, min_agreement)
    result = run_compress(model, method, options=options,
                          register=register, overrides=set_ or [], out=out,
                          reporter=_reporter(json_, quiet), trust=trust or ())
    _finish(result, json_, quiet)


def _reporter(json_: bool, quiet: bool) -> Any:
    from zero2one.progress import NullReporter, RichReporter

    return NullReporter() if quiet or json_ else RichReporter()


def _finish(result: Any, json_: bool, quiet: bool) -> None:
    if json_:
        print_json(result.to_dict())
        return
    if quiet:
        return
    from rich.markdown import Markdown

    out = console()
    out.print(Markdown(result.markdown))
    if result.run_id:
        out.print(f"run:   {result.run_id}")
    out.print(f"model: {result.model_uri}")
    if result.registered_uri:
        out.print(f"registered: {result.registered_uri} (parent {result.parent})")
