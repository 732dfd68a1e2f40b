"""``zero2one serve MODEL_REF``: the HTTP model server (FastAPI on uvicorn)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from zero2one.cli.output import Precision, PrecisionOption


def serve(
    model: Annotated[str, typer.Argument(
        help="Model reference: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/model or a "
        "directory.", show_default=False)],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    api_key: Annotated[str | None, typer.Option(
        help="Require this bearer key (prefer the ZERO2ONE_API_KEY variable: flags show in ps).",
        envvar="ZERO2ONE_API_KEY", show_envvar=True)] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body.")]
    = 1 << 20,
    max_batch: Annotated[int, typer.Option(min=1, help="Most rows in one request.")] = 1024,
    max_image_pixels: Annotated[int, typer.Option(
        min=64, help="Image models: largest width × height accepted.")] = 16_777_216,
    max_image_bytes: Annotated[int, typer.Option(
        min=1024, help="Image models: largest image file accepted.")] = 8 << 20,
    precision: PrecisionOption = Precision.bfloat16,
    batch_max_size: Annotated[int, typer.Option(
        min=1, help="Most rows per predict call when requests are batched.")] = 256,
    batch_max_wait_ms: Annotated[float, typer.Option(
        min=0, max=1000, help="Extra wait for more requests before a batch runs.")] = 0.0,
    rate_limit: Annotated[float | None, typer.Option(
        min=0.001, help="Requests per second per client (off when unset).")] = None,
    rate_burst: Annotated[int, typer.Option(min=1, help="Burst size for --rate-limit.")] = 50,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="Allow this CORS origin (repeatable; CORS is off by default).")] = None,
    follow: Annotated[float | None, typer.Option(
        min=1, help="Every N seconds re-resolve an alias reference and hot-swap on change.")
    ] = None,
    trust: Annotated[list[str] | None, typer.Option(
        help="Trust a type the model file holds that is not trusted by default.")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    graceful_seconds: Annotated[int, typer.Option(
        min=0, help="On SIGTERM, wait this long for requests in flight.")] = 30,
) -> None:
    """Serve a model over HTTP: /predict (tabular, image) or OpenAI-compatible
    /v1/chat/completions and /v1/completions (language models); /v1/models, /healthz, /readyz,
    /metrics, /docs."""
    import uvicorn

    from zero2one.artifacts import verify
    from zero2one.errors import require
    from zero2one.refs import check_pinned, resolve
    from zero2one.serving.settings import ServeSettings
    from zero2one.serving.state import is_external_language_model

    require("fastapi", "serve")
    if is_external_language_model(model):  # fail here, with one line, before workers start
        from zero2one.tasks.textgen.models import resolve_lm

        resolve_lm(model)
    else:
        resolved = resolve(model)
        check_pinned(resolved)
        verify(resolved.path)
    env = {
        "ZERO2ONE_SERVE_MODEL": model,
        "ZERO2ONE_SERVE_MAX_BODY_BYTES": str(max_body_bytes),
        "ZERO2ONE_SERVE_MAX_BATCH": str(max_batch),
        "ZERO2ONE_SERVE_MAX_IMAGE_PIXELS": str(max_image_pixels),
        "ZERO2ONE_SERVE_MAX_IMAGE_BYTES": str(max_image_bytes),
        "ZERO2ONE_SERVE_PRECISION": precision.value,
        "ZERO2ONE_SERVE_BATCH_MAX_SIZE": str(batch_max_size),
        "ZERO2ONE_SERVE_BATCH_MAX_WAIT_MS": str(batch_max_wait_ms),
        "ZERO2ONE_SERVE_RATE_BURST": str(rate_burst),
        "ZERO2ONE_SERVE_CORS_ORIGINS": ",".join(cors_origin or []),
        "ZERO2ONE_SERVE_TRUST": ",".join(trust or []),
    }
    if rate_limit is not None:
        env["ZERO2ONE_SERVE_RATE_LIMIT"] = str(rate_limit)
    if follow is not None:
        env["ZERO2ONE_SERVE_FOLLOW_SECONDS"] = str(follow)
    if api_key:
        env["ZERO2ONE_API_KEY"] = api_key
    os.environ.update(env)  # workers are new processes: settings travel in the environment
    ServeSettings()  # type: ignore[call-arg]  # validate once here
    typer.echo(f"serving {model} on http://{host}:{port} ({workers} worker"
               f"{'s' if workers > 1 else ''}; auth {'on' if api_key else 'off'})", err=True)
    uvicorn.run(
        "zero2one.serving.app:app_from_env", factory=True, host=host, port=port,
        workers=workers, access_log=access_log, log_level="info",
        timeout_graceful_shutdown=graceful_seconds, proxy_headers=False,
    )
