"""``zero2one serve MODEL_REF``: the HTTP model server (FastAPI on uvicorn).

The command's options are generated from :class:`~zero2one.serving.settings.ServeSettings`,
the one place a server setting is declared: a field added there is a flag here, an environment
variable, and a setting the worker processes read back.
"""

from __future__ import annotations

import inspect
import socket
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from zero2one.errors import UserError
from zero2one.machine import on_own_thread

ARGUMENT_HELP = ("Model reference: models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, "
                 "runs:/ID/model, a directory, builtin:NAME, or what a task loads (a .gguf file, "
                 "a transformers directory).")


def serve(model: str, **options: Any) -> None:
    """Serve a model over HTTP. The routes are the ones the model's task declares (/predict,
    OpenAI-compatible /v1/chat/completions and /v1/completions, ...); every server has
    /healthz, /readyz, /metrics and /docs."""
    import uvicorn
    from pydantic import ValidationError

    from zero2one.errors import require
    from zero2one.recipe import format_validation_error

    require("fastapi", "serve")
    from zero2one.serving.settings import ServeSettings

    try:
        settings = ServeSettings(model=model, **{k: v for k, v in options.items()
                                                 if v is not None})
    except ValidationError as exc:
        raise UserError(format_validation_error(exc)) from None
    check_port_free(settings.host, settings.port)
    app = load_app(settings)
    auth = "on" if settings.api_key else "off"
    typer.echo(f"serving {model} on http://{settings.host}:{settings.port} ({settings.workers} "
               f"worker{'s' if settings.workers > 1 else ''}; auth {auth})", err=True)
    uvicorn.run(
        app, factory=isinstance(app, str), host=settings.host, port=settings.port,
        workers=settings.workers, access_log=settings.access_log, log_level="info",
        timeout_graceful_shutdown=settings.graceful_seconds, proxy_headers=False,
    )


def load_app(settings: Any) -> Any:
    """The app for uvicorn, resolving the reference once. One worker: the app itself, with the
    model loaded here (a bad model fails with one line before the server starts). Several: the
    factory's import string; the reference is verified here once and each worker loads it,
    given the resolved reference in the environment (no worker resolves or downloads again)."""
    import json
    import os

    from zero2one.artifacts import verify
    from zero2one.refs import check_pinned, resolve
    from zero2one.serving.app import RESOLVED_ENV, create_app
    from zero2one.serving.metrics import Metrics
    from zero2one.serving.state import load_served

    # a built-in model is converted at its first use: torch's threads end with this one's
    resolved = on_own_thread(lambda: resolve(settings.model))
    if settings.workers == 1:
        metrics = Metrics()
        served = load_served(settings, metrics, resolved)
        return create_app(settings, resolved=resolved, served=served, metrics=metrics)
    if resolved.has_manifest and resolved.path is not None:
        check_pinned(resolved)
        verify(resolved.path)
    os.environ.update(settings.environment())
    os.environ[RESOLVED_ENV] = json.dumps(resolved.to_json())
    return "zero2one.serving.app:app_from_env"


def check_port_free(host: str, port: int) -> None:
    """Fail in one line, before the model loads, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                            "another --port or stop what uses it") from None


def _option(name: str, field: Any) -> tuple[Any, Any]:
    """(annotation, default) of the Typer option for one settings field; defaults stay None so
    that only the flags given override the environment and the field defaults."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    flag = "--" + str(extra.get("cli") or name.replace("_", "-"))
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    origin = typing.get_origin(annotation)
    default = field.get_default(call_default_factory=True)
    shown = None if default in (None, []) or name == "api_key" else str(default)
    info: dict[str, Any] = {"help": field.description, "show_default": shown or False}
    kind: Any
    if origin is Literal:
        kind = annotation
    elif origin is list:
        kind = list[str]
    elif annotation is bool:
        flag = f"{flag}/--no-{flag[2:]}"
        kind = bool
    elif annotation in (int, float, str):
        kind = annotation
    else:  # SecretStr and other strings
        kind = str
    env = extra.get("env")
    if env:
        info.update(envvar=str(env), show_envvar=True)
    return Annotated[kind | None, typer.Option(flag, **info)], None


def command() -> Callable[..., None]:
    """``serve`` with one option per :class:`ServeSettings` field (the model is the argument)."""
    try:
        from zero2one.serving.settings import ServeSettings
    except ImportError:  # the serve extra is missing: the command says what to install

        def missing(model: Annotated[str, typer.Argument(help=ARGUMENT_HELP)]) -> None:
            from zero2one.errors import require

            require("pydantic_settings", "serve")

        missing.__doc__ = serve.__doc__
        return missing

    parameters = [inspect.Parameter(
        "model", inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[str, typer.Argument(help=ARGUMENT_HELP, show_default=False)])]
    for name, field in ServeSettings.model_fields.items():
        if name == "model":
            continue
        annotation, default = _option(name, field)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=annotation, default=default))

    def run(**kwargs: Any) -> None:
        serve(**kwargs)

    run.__doc__ = serve.__doc__
    run.__name__ = "serve"
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run
