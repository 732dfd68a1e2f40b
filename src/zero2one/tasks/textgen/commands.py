"""``zero2one generate MODEL_REF --prompt TEXT``: stream generated text to the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from zero2one.api import load
from zero2one.cli.output import (
    Json,
    ModerationOption,
    PrecisionOption,
    check_prompt,
    print_json,
)
from zero2one.errors import UserError
from zero2one.machine import on_own_thread
from zero2one.tasks.textgen import tools


def generate(
    model: Annotated[str, typer.Argument(
        help="builtin:smollm2-135m-instruct, a model fine-tuned by zero2one (models:/NAME@ALIAS, "
        "runs:/ID/model, its directory), a save_pretrained directory, a .gguf file or a Hugging "
        "Face id.", show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt.",
                                        show_default=False)],
    image: Annotated[Path | None, typer.Option(
        "--image", help="An image the prompt asks about (vision-language models).",
        show_default=False)] = None,
    chat: Annotated[bool, typer.Option(help="Wrap the prompt in the model's chat template.")]
    = False,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens to generate [128].")]
    = None,
    temperature: Annotated[float | None, typer.Option(help="0: greedy [0.7].")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus mass [0.95].")] = None,
    top_k: Annotated[int | None, typer.Option(help="Keep the k most likely [50].")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="[1.0]")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    json_schema: Annotated[Path | None, typer.Option(
        "--json-schema", help="A JSON Schema file: the answer is JSON valid under it "
        "(constrained decoding).", show_default=False)] = None,
    tools_file: Annotated[Path | None, typer.Option(
        "--tools", help="A JSON file of OpenAI tools (a list, or {\"tools\": [...]}): the "
        "answer is tool calls, printed as JSON with arguments valid under each function's "
        "schema, or text (implies --chat).", show_default=False)] = None,
    tool_choice: Annotated[str, typer.Option(
        help="With --tools: auto, required, none, or a tool's name.")] = "auto",
    precision: PrecisionOption = None,
    moderation: ModerationOption = None,
    engine: Annotated[str, typer.Option(
        help="zero2one (its own decoding step) or llama.cpp (llama.cpp's server engine, "
        "xllamacpp; else the compiled binding of the llamacpp extra, for GGUF files).")
    ] = "zero2one",
    json_: Json = False,
) -> None:
    """Generate text, streaming tokens as they come (--json: one object at the end)."""
    import time

    from zero2one.tasks.textgen.batch import stream
    from zero2one.tasks.textgen.generate import Outcome, sampling
    from zero2one.tasks.textgen.models import load_lm

    if image is not None:
        others = {"--json-schema": json_schema, "--tools": tools_file, "--precision": precision,
                  "--moderation": moderation, "--top-k": top_k, "--chat": chat or None,
                  "--repetition-penalty": repetition_penalty,
                  "--engine": None if engine == "zero2one" else engine}
        if given := [flag for flag, value in others.items() if value is not None]:
            raise UserError(f"--image takes --max-new-tokens, --temperature, --top-p, --stop "
                            f"and --seed; not {', '.join(given)}")
        _about_image(model, image, prompt, json_=json_, max_new_tokens=max_new_tokens,
                     temperature=temperature, top_p=top_p, stop=stop or None, seed=seed)
        return
    plan = _plan(tools_file, tool_choice) if tools_file else None
    if plan is not None and json_schema:
        raise UserError("--tools or --json-schema, not both")
    settings = sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        top_k=top_k, repetition_penalty=repetition_penalty, stop=stop or None,
                        seed=seed, json_schema=_schema(json_schema) if json_schema else None,
                        grammar=tools.grammar(plan) if plan else None)
    chat = chat or plan is not None  # tools are a chat's
    turn = [{"role": "user", "content": prompt}]

    def conversation(template: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The turn for the model's chat template, and the tools it renders (with --tools)."""
        return tools.messages(turn, plan, template) if plan is not None else (turn, None)

    moderator: Any = check_prompt(moderation, prompt)
    start = time.perf_counter()
    pieces = []
    outcome = Outcome()
    generated: Iterator[str]
    if engine == "llama.cpp":
        runner = on_own_thread(lambda: _llama_engine(model))
        text_in = runner.chat_prompt(*conversation(runner.template)) if chat else prompt
        generated = runner.generate(text_in, settings, outcome)
    elif engine == "zero2one":
        lm, tokenizer = load_lm(model)
        messages, described = conversation(getattr(tokenizer, "chat_template", None))
        generated = stream(lm, tokenizer, messages if chat else prompt, settings=settings,
                           chat=chat, precision=precision.value if precision else None,
                           outcome=outcome, tools=described)
    else:
        raise UserError(f"--engine {engine}: zero2one or llama.cpp")
    if moderator is not None and moderator.config.outputs != "off":
        generated = _guarded(moderator, generated)
    quiet = json_ or plan is not None  # calls are printed whole, as JSON
    for piece in generated:
        pieces.append(piece)
        if not quiet:
            sys.stdout.write(piece)
            sys.stdout.flush()
    text = "".join(pieces)
    calls = tools.calls(text) if plan is not None else None
    if json_:
        print_json({"model": model, "text": None if calls is not None else text,
                    "tool_calls": calls, "tokens": outcome.completion_tokens, "finish_reason":
                    "tool_calls" if calls is not None and outcome.finish_reason != "length"
                    else outcome.finish_reason,
                    "seconds": round(time.perf_counter() - start, 3)})
    elif calls is not None:  # a call --max-new-tokens cut is left out (tools.calls)
        print_json(calls)
    else:
        sys.stdout.write(text + "\n" if plan is not None else "\n")


def _llama_engine(model: str) -> Any:
    """llama.cpp's server engine with one slot (or the compiled binding, for GGUF files); run
    on a thread that takes torch's threads with it when it ends (on_own_thread)."""
    from types import SimpleNamespace

    from zero2one.tasks.textgen.engines import build

    task = load(model)
    if task.name != "text-generation":
        raise UserError(f"{model} is a {task.name} model, not a language model")
    return build(task, SimpleNamespace(engine="llama.cpp", precision=None, slots=1,
                                       max_batch_tokens=None, workers=1), model)


def _about_image(model: str, image: Path, prompt: str, *, json_: bool,
                 **sampling: Any) -> None:
    """``--image``: a vision-language model's answer to ``prompt`` about ``image``."""
    import time

    start = time.perf_counter()
    task = load(model)
    if not getattr(task, "reads_images", False):
        raise UserError(f"--image: {model} is a {task.name} model, which reads text only; "
                        "give a vision-language model")
    settings = {k: v for k, v in sampling.items() if v is not None}
    settings.setdefault("temperature", 0.0)
    seed = settings.pop("seed", None)
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    text = task.predict({"image": image, "question": prompt}, **settings)
    if json_:
        print_json({"model": model, "image": str(image), "text": text,
                    "seconds": round(time.perf_counter() - start, 3)})
    else:
        sys.stdout.write(text + "\n")


def _schema(path: Path) -> Any:
    """The JSON document in ``path`` (checked as a schema by :func:`.generate.sampling`)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--json-schema {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"--json-schema {path}: not JSON ({exc})") from None


def _plan(path: Path, choice: str) -> Any:
    """The tools in ``path`` and ``--tool-choice``, checked (one line each)."""
    import json

    from pydantic import TypeAdapter, ValidationError

    try:
        listed = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--tools {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"--tools {path}: not JSON ({exc})") from None
    if isinstance(listed, dict) and "tools" in listed:
        listed = listed["tools"]
    try:
        declared = TypeAdapter(list[tools.Tool]).validate_python(listed)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"--tools {path}: {where}: {first['msg']} (OpenAI's tool objects: "
                        "{\"type\": \"function\", \"function\": {\"name\", "
                        "\"parameters\"}})") from None
    named = ({"type": "function", "function": {"name": choice}}
             if choice not in ("auto", "required", "none") else choice)
    try:
        return tools.plan(declared, named, None)
    except tools.ToolError as exc:
        raise UserError(f"--tools {path}: {exc}".replace("tool_choice:", "--tool-choice:")
                        ) from None


def _guarded(moderator: Any, pieces: Iterator[str]) -> Iterator[str]:
    """Generated text through moderation: redacted, or stopped before flagged words (the
    command then ends with the one-line reason)."""
    from zero2one.moderation.stream import StreamGuard

    guard = StreamGuard(moderator, redact=moderator.config.outputs == "redact")
    for piece in pieces:
        if out := guard.feed(piece):
            yield out
    if out := guard.finish():
        yield out
