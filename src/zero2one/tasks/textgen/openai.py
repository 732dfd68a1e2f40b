"""OpenAI-compatible routes for language models: ``/v1/chat/completions``, ``/v1/completions``
(both with ``stream: true`` as server-sent events, and usage counts) and ``/v1/models``.
Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response, StreamingResponse

from zero2one.errors import UserError
from zero2one.moderation.stream import Blocked, StreamGuard
from zero2one.serving.errors import JSON, APIError, read_body
from zero2one.serving.feedback import remember
from zero2one.serving.moderation import check_input, moderator, output_policy
from zero2one.serving.schemas import ERROR_RESPONSES, json_body
from zero2one.serving.security import Guarded
from zero2one.tasks.textgen import tools
from zero2one.tasks.textgen.constrained import ANY_OBJECT
from zero2one.tasks.textgen.generate import TEMPERATURE_MAX, Outcome, sampling
from zero2one.tasks.textgen.tools import Tool

router = APIRouter(tags=["openai"], dependencies=Guarded)
IMAGE_MARK = "<image>"  # where an image part stood, in the text of its message
# a completion is JSON, or with "stream": true server-sent events
RESPONSES = {**ERROR_RESPONSES, 200: {"description": "The completion", "content": {
    "application/json": {}, "text/event-stream": {}}}}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    """A chat message in the current OpenAI forms: ``content`` as a string or a list of parts
    (text parts are joined; ``image_url`` parts go to an engine that reads images, its
    ``read_images``, and stand as :data:`IMAGE_MARK` in the text; other parts are refused);
    the ``developer`` role is the newer name of ``system``."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # the call a tool message answers

    def as_chat(self, index: int, images: list[tuple[str, str]] | None = None
                ) -> dict[str, Any]:
        """The message for the chat template; ``images`` collects the image parts' (url,
        where) for an engine that reads images (None: the model reads text only)."""
        content = self.content
        if isinstance(content, list):
            texts = []
            for number, part in enumerate(content):
                kind = part.get("type")
                if kind == "image_url" and images is not None:
                    where = f"messages.{index}.content.{number}"
                    url = (part.get("image_url") or {}).get("url") \
                        if isinstance(part.get("image_url"), dict) else None
                    if not isinstance(url, str):
                        raise APIError(400, "invalid_request_error",
                                       f"{where}: an image_url part needs image_url.url")
                    images.append((url, where))
                    texts.append(IMAGE_MARK)
                    continue
                if kind != "text":
                    raise APIError(400, "invalid_request_error",
                                   f"messages.{index}.content.{number}: {kind!r} parts are not "
                                   "supported: this model reads text only")
                try:
                    texts.append(TextPart.model_validate(part).text)
                except ValidationError:
                    raise APIError(400, "invalid_request_error",
                                   f"messages.{index}.content.{number}: a text part needs a "
                                   "string 'text'") from None
            content = "".join(texts)
        if content is None and not (self.role == "assistant" and self.tool_calls):
            raise APIError(400, "invalid_request_error",
                           f"messages.{index}.content: required")
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": content or "", "tool_calls": self.tool_calls,
                "tool_call_id": self.tool_call_id}


class StreamOptions(BaseModel):
    include_usage: bool = False


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field("response", max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None  # answers always follow the schema: constrained decoding


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: free text, any JSON object, or JSON under a schema."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    def schema_(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return ANY_OBJECT
        if self.json_schema is None or self.json_schema.schema_ is None:
            raise APIError(400, "invalid_request_error", "response_format.json_schema.schema: "
                           "required for type json_schema", param="response_format")
        return self.json_schema.schema_


class Common(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0, le=TEMPERATURE_MAX)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None  # chat completions: tools.py
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None  # the deprecated form of tools: refused
    response_format: ResponseFormat | None = None

    def sampling(self, grammar: str | None = None) -> Any:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        schema = self.response_format.schema_() if self.response_format else None
        try:
            return sampling(max_new_tokens=self.max_completion_tokens or self.max_tokens or 256,
                            temperature=self.temperature if self.temperature is not None
                            else 0.7, top_p=self.top_p, stop=stop, seed=self.seed,
                            json_schema=schema, grammar=grammar)
        except UserError as exc:
            message, param = str(exc), None
            if message.startswith("json_schema: "):  # the request's name for it
                message = "response_format.json_schema.schema: " + message[13:]
                param = "response_format"
            raise APIError(400, "invalid_request_error", message, param=param) from None


class ChatRequest(Common):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Common):
    prompt: str = Field(min_length=1)


async def _parse(request: Request, model: type[Common]) -> Any:
    body = await read_body(request, model, status=400, kind="invalid_request_error",
                           malformed="invalid_request_error")
    if body.functions:
        raise APIError(400, "invalid_request_error", "functions is the deprecated form of "
                       "tools; send tools", param="functions")
    if model is CompletionRequest and (body.tools or body.tool_choice not in (None, "none")):
        raise APIError(400, "invalid_request_error", "tools are for /v1/chat/completions",
                       param="tools")
    return body


def _engine(request: Request) -> Any:
    return request.app.state.holder.current.adapter


async def _generate(engine: Any, prompt: str,
                    settings: Any) -> tuple[str | None, Any, Outcome]:
    """The first piece, the rest, and how the generation ended (known after the last)."""
    outcome = Outcome()
    try:
        pieces = engine.stream(prompt, settings, outcome)
        first = await anext(pieces, None)  # errors (too long, ...) surface as a 400 here
    except UserError as exc:
        raise APIError(400, "invalid_request_error", str(exc)) from None
    return first, pieces, outcome


async def _run(request: Request, body: Any, prompt: str, chat: bool,
               asked: dict[str, Any], plan: tools.Plan | None = None) -> Response:
    engine = _engine(request)
    settings = body.sampling(tools.grammar(plan) if plan else None)
    first, pieces, outcome = await _generate(engine, prompt, settings)
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prompt_tokens = engine.count(prompt)
    policy = output_policy(request)
    if plan is not None and plan.calls:  # calls or text, known once the answer is whole
        text = (first or "") + "".join([p async for p in pieces])
        found = tools.calls(text)
        # a budget that cut a call is said: "length", as for a cut text
        finish = ("tool_calls" if outcome.finish_reason != "length" else "length") \
            if found is not None else outcome.finish_reason
        if found is None and policy != "off":  # a text answer is moderated as any other
            text, filtered, outcome = await _moderated(request, engine, prompt, settings, text,
                                                       policy, outcome)
            finish = "content_filter" if filtered else outcome.finish_reason
        await remember(request, ident, route=request.url.path, body=asked, output=text,
                       finish=finish)
        usage = _usage(prompt_tokens, outcome.completion_tokens)
        message = ({"role": "assistant", "content": None, "tool_calls": found or None}
                   if found is not None else {"role": "assistant", "content": text})
        if body.stream:
            return StreamingResponse(_sse_whole(engine, body, ident, created, message, finish,
                                                usage), media_type="text/event-stream")
        return JSON({"id": ident, "object": "chat.completion", "created": created,
                     "model": engine.name, "usage": usage,
                     "choices": [{"index": 0, "finish_reason": finish, "message": message}]})
    if body.stream:
        if policy != "off":
            pieces = _guarded(moderator(request), first, pieces, redact=policy == "redact")
            first = ""

        async def remembered(text: str) -> None:
            await remember(request, ident, route=request.url.path, body=asked, output=text,
                           finish=outcome.finish_reason)

        return StreamingResponse(_sse(engine, body, ident, created, first, pieces, chat,
                                      prompt_tokens, outcome, remembered),
                                 media_type="text/event-stream")
    text = (first or "") + "".join([p async for p in pieces])
    filtered = False
    if policy != "off":
        text, filtered, outcome = await _moderated(request, engine, prompt, settings, text,
                                                   policy, outcome)
    finish = "content_filter" if filtered else outcome.finish_reason
    completion = outcome.completion_tokens
    await remember(request, ident, route=request.url.path, body=asked, output=text,
                   finish=finish)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return JSON({
        "id": ident, "object": "chat.completion" if chat else "text_completion",
        "created": created, "model": engine.name, "choices": [choice],
        "usage": _usage(prompt_tokens, completion),
    })


async def _moderated(request: Request, engine: Any, prompt: str, settings: Any, text: str,
                     policy: str, outcome: Outcome) -> tuple[str, bool, Outcome]:
    """A whole output through moderation: (the text to answer, whether it was withheld, how
    the generation answered ended). ``regenerate`` samples again with other seeds (up to the
    configured retries)."""
    import random

    found = moderator(request)
    verdict = found.check(text, where="output")
    retries = found.config.retries if policy == "regenerate" else 0
    seed = settings.seed if settings.seed is not None else random.randrange(2**31)
    for attempt in range(1, retries + 1):
        if not verdict.blocked:
            break
        again = settings.model_copy(update={"seed": seed + attempt,
                                            "temperature": settings.temperature or 0.7})
        first, pieces, outcome = await _generate(engine, prompt, again)
        text = (first or "") + "".join([p async for p in pieces])
        verdict = found.check(text, where="output")
    if verdict.blocked and policy != "redact":
        return "", True, outcome
    return found.redact(text, verdict) if verdict.hits else text, False, outcome


async def _guarded(found: Any, first: str | None, pieces: AsyncIterator[str], *,
                   redact: bool) -> AsyncIterator[str]:
    """Streamed pieces through a :class:`~zero2one.moderation.stream.StreamGuard`; a blocked
    stream raises :class:`~zero2one.moderation.stream.Blocked` before the flagged words."""

    guard = StreamGuard(found, redact=redact)
    if first and (out := guard.feed(first)):
        yield out
    async for piece in pieces:
        if out := guard.feed(piece):
            yield out
    if out := guard.finish():
        yield out


async def _sse(engine: Any, body: Any, ident: str, created: int, first: str | None,
               pieces: AsyncIterator[str], chat: bool, prompt_tokens: int,
               outcome: Outcome, remembered: Any) -> AsyncIterator[bytes]:
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(delta: dict[str, Any] | str, finish: str | None = None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta
        chunk = {"id": ident, "object": kind, "created": created, "model": engine.name,
                 "choices": [choice]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    if chat:
        yield event({"role": "assistant", "content": ""})

    text = first or ""
    if first:
        yield event({"content": first} if chat else first)
    try:
        async for piece in pieces:
            text += piece
            yield event({"content": piece} if chat else piece)
    except Blocked as exc:  # ends with an error event, not a cut-off sentence
        error = {"error": {"type": "content_filter", "code": "content_policy_violation",
                           "message": str(exc)}}
        yield b"data: " + orjson.dumps(error) + b"\n\n"
        yield b"data: [DONE]\n\n"
        return
    completion = outcome.completion_tokens
    await remembered(text)
    yield event({} if chat else "", outcome.finish_reason)
    for end in _closing(engine, body, ident, created, kind, _usage(prompt_tokens, completion)):
        yield end


async def _sse_whole(engine: Any, body: Any, ident: str, created: int, message: dict[str, Any],
                     finish: str, usage: dict[str, int]) -> AsyncIterator[bytes]:
    """A whole answer as OpenAI streams one: the role, then the text or each tool call (its id,
    name and arguments in one delta per call), the finish reason, and usage if asked."""

    def event(delta: dict[str, Any], reason: str | None = None) -> bytes:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created,
                 "model": engine.name,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    yield event({"role": "assistant", "content": None if message.get("tool_calls") else ""})
    for index, call in enumerate(message.get("tool_calls") or []):
        yield event({"tool_calls": [{"index": index, **call}]})
    if message.get("content"):
        yield event({"content": message["content"]})
    yield event({}, finish)
    for end in _closing(engine, body, ident, created, "chat.completion.chunk", usage):
        yield end


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _closing(engine: Any, body: Any, ident: str, created: int, kind: str,
             usage: dict[str, int]) -> Iterator[bytes]:
    """A stream's end: the usage chunk where ``stream_options`` asks for it, then [DONE]."""
    if body.stream_options and body.stream_options.include_usage:
        chunk = {"id": ident, "object": kind, "created": created, "model": engine.name,
                 "choices": [], "usage": usage}
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


@router.post("/v1/chat/completions", summary="OpenAI-compatible chat completion",
             openapi_extra=json_body(ChatRequest), responses=RESPONSES)
async def chat_completions(request: Request) -> Response:
    body = await _parse(request, ChatRequest)
    engine = _engine(request)
    reader = getattr(engine, "read_images", None)  # an engine that reads images
    parts: list[tuple[str, str]] | None = [] if reader is not None else None
    try:
        plan = tools.plan(body.tools, body.tool_choice, body.parallel_tool_calls)
        messages, described = tools.messages(
            [m.as_chat(i, parts) for i, m in enumerate(body.messages)], plan, engine.template)
    except tools.ToolError as exc:
        raise APIError(400, "invalid_request_error", str(exc), param=exc.param) from None
    check_input(request, [m["content"] for m in messages if m["role"] != "assistant"],
                param="messages")
    try:
        if reader is not None:  # decoded (or fetched) off the event loop, within the limits
            images = await reader(parts)
            prompt = engine.chat_prompt(messages, described, images=images)
        else:
            prompt = engine.chat_prompt(messages, described)
    except UserError as exc:
        raise APIError(400, "invalid_request_error", str(exc), param="messages") from None
    return await _run(request, body, prompt, chat=True, asked={"messages": messages},
                      plan=plan)


@router.post("/v1/completions", summary="OpenAI-compatible text completion",
             openapi_extra=json_body(CompletionRequest), responses=RESPONSES)
async def completions(request: Request) -> Response:
    body = await _parse(request, CompletionRequest)
    check_input(request, [body.prompt], param="prompt")
    return await _run(request, body, body.prompt, chat=False, asked={"prompt": body.prompt})


@router.get("/v1/models", summary="The served language model")
async def models(request: Request) -> JSON:
    served = request.app.state.holder.current
    return JSON({"object": "list", "data": [{
        "id": served.info.name, "object": "model", "created": int(served.loaded_at),
        "owned_by": "zero2one"}]})
