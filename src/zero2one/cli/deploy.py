"""``zero2one deploy docker|k8s MODEL_REF --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zero2one.cli.output import Json, console, print_json

app = typer.Typer(help="Deployment files: Docker build context, Kubernetes manifests.",
                  no_args_is_help=True)

Model = Annotated[str, typer.Argument(help="Model reference to deploy.", show_default=False)]
Out = Annotated[Path, typer.Option("--out", "-o", help="Directory to write.", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")]
Engine = Annotated[str, typer.Option(
    "--engine", help="The server: zero2one's, or another the model's task supports (vllm: "
    "language models on GPUs).")]
Also = Annotated[list[str] | None, typer.Option(
    "--also", help="Another model served beside MODEL by the same --engine (vLLM: LoRA "
    "models of the same base); repeatable.", show_default=False)]


def _engine_spec(model: str, engine: str, also: list[str]) -> object:
    """What another --engine serves (None for zero2one's server), its notes said."""
    if engine == "zero2one":
        return None
    from zero2one.deploy.render import engine_spec

    spec, _ = engine_spec(model, engine, also)
    for note in spec.notes:
        console().print(note)
    return spec


@app.command("docker")
def docker(model: Model, out: Out, workers: Annotated[int, typer.Option(
        min=1, help="Server workers in the container.")] = 1,
           torch_index: Annotated[str, typer.Option(
               help="Where models that need torch get it (e.g. a CUDA wheel index).")]
           = "https://download.pytorch.org/whl/cpu",
           engine: Engine = "zero2one", also: Also = None,
           force: Force = False, json_: Json = False) -> None:
    """A Docker build context: Dockerfile (slim, non-root, HEALTHCHECK), the model and what its
    task needs beside it, pinned requirements (or the --engine's image and its arguments)."""
    from zero2one.deploy import render_docker

    files = render_docker(model, out, workers=workers, overwrite=force, torch_index=torch_index,
                          engine=engine, also=also or [])
    if json_:
        print_json({"files": [str(f) for f in files]})
        return
    spec: Any = _engine_spec(model, engine, also or [])
    if spec is not None:
        console().print(f"wrote {out}/ — build it with: docker build -t {engine}-model {out}\n"
                        f"  run it on a GPU machine: docker run --gpus all -p "
                        f"{spec.port}:{spec.port} -e {spec.api_key_env}=... {engine}-model")
        return
    console().print(f"wrote {out}/ — build and run it with:\n"
                    f"  docker build -t zero2one-model {out}\n"
                    "  docker run -p 8000:8000 -e ZERO2ONE_API_KEY=... zero2one-model")


@app.command("k8s")
def k8s(
    model: Model, out: Out,
    image: Annotated[str, typer.Option(help="Image built from `deploy docker`.")]
    = "zero2one-model:latest",
    name: Annotated[str | None, typer.Option(help="Kubernetes name (default: the model's).")]
    = None,
    replicas: Annotated[int, typer.Option(min=1, help="Initial replicas.")] = 2,
    min_replicas: Annotated[int, typer.Option(min=1, help="HPA minimum.")] = 2,
    max_replicas: Annotated[int, typer.Option(min=1, help="HPA maximum.")] = 10,
    cpu_target: Annotated[int, typer.Option(min=1, max=100, help="HPA CPU utilisation %.")]
    = 70,
    api_key: Annotated[str | None, typer.Option(
        help="API key for the Secret (default: a random one).", envvar="ZERO2ONE_API_KEY")]
    = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No API key, no Secret.")] = False,
    engine: Engine = "zero2one",
    also: Also = None,
    force: Force = False,
    json_: Json = False,
) -> None:
    """Deployment (probes, resources, non-root), Service, HPA on CPU, Secret for the API key;
    with --engine, that server's pods (GPUs, its health route, an HPA on its queue)."""
    from zero2one.deploy import render_k8s

    files = render_k8s(model, out, image=image, name=name, replicas=replicas,
                       min_replicas=min_replicas, max_replicas=max_replicas,
                       cpu_target=cpu_target, api_key=api_key, auth=not no_auth,
                       overwrite=force, engine=engine, also=also or [])
    if not json_:
        _engine_spec(model, engine, also or [])
    if json_:
        print_json({"files": [str(f) for f in files]})
        return
    console().print(f"wrote {', '.join(f.name for f in files)} to {out}/ — apply with:\n"
                    f"  kubectl apply -f {out}/")
