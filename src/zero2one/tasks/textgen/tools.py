"""Tool calling on ``/v1/chat/completions``: OpenAI's ``tools``, ``tool_choice`` and
``parallel_tool_calls``, ``role: "tool"`` messages answered back.

A call is ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` and a result comes back
as ``<tool_response>...</tool_response>``: the format Hermes, Qwen 2.5 and SmolLM3 models are
tuned on. A model whose chat template renders tools in that format (it names ``tools`` and
``<tool_call>``) gets the tools, its earlier calls and their results through its own template;
any other model gets zero2one's default, the tools described in a system message and the turns
as plain text. What the model writes is constrained by an llguidance grammar
(:mod:`.constrained`): under ``"required"`` or a named function, only calls; under ``"auto"``,
calls or text; under ``"none"``, text; text never holds a call's or a result's tag; each call's
``arguments`` under its function's JSON schema — so they always parse and validate.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zero2one.tasks.textgen.constrained import check_schema, json_rule

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.S)


class ToolError(ValueError):
    """A request's tools that cannot be used: (message, param)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class Function(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: Function


@dataclass
class Plan:
    """What a request's tools mean for its answer."""

    tools: list[Tool] = field(default_factory=list)
    mode: str = "none"  # none, auto, required
    only: str | None = None  # the function tool_choice names
    parallel: bool = True

    @property
    def calls(self) -> bool:
        return self.mode != "none"


def plan(tools: list[Tool] | None, choice: Any, parallel: bool | None) -> Plan:
    """The request's tools checked (each a :class:`ToolError` naming its field)."""
    tools = tools or []
    names = [t.function.name for t in tools]
    for number, tool in enumerate(tools):
        if tool.function.name in names[:number]:
            raise ToolError(f"tools.{number}.function.name: {tool.function.name!r} is "
                            "declared twice", "tools")
        try:
            check_schema(tool.function.parameters or {"type": "object"})
        except ValueError as exc:
            raise ToolError(f"tools.{number}.function.parameters: {exc}", "tools") from None
    only = None
    if choice is None:
        mode = "auto" if tools else "none"
    elif isinstance(choice, str) and choice in ("none", "auto", "required"):
        mode = choice
    elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
            choice.get("function"), dict) and isinstance(choice["function"].get("name"), str):
        mode, only = "required", choice["function"]["name"]
        if only not in names:
            raise ToolError(f"tool_choice: no tool named {only!r} (tools: "
                            f"{', '.join(names) or 'none'})", "tool_choice")
    else:
        raise ToolError("tool_choice: \"none\", \"auto\", \"required\" or {\"type\": "
                        "\"function\", \"function\": {\"name\": ...}}", "tool_choice")
    if mode != "none" and not tools:
        raise ToolError(f"tool_choice {mode!r} needs tools", "tool_choice")
    return Plan(tools, mode, only, True if parallel is None else parallel)


def native(template: Any) -> bool:
    """Whether a chat template renders OpenAI's tools itself, in the format the grammar makes."""
    return isinstance(template, str) and OPEN in template and "tools" in template


def messages(chat: list[dict[str, Any]], the_plan: Plan,
             template: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """OpenAI messages (tool calls and results included) for the model's chat template, and the
    tools to hand that template: its own tool format where it has one (:func:`native`), else
    plain turns with the tools described first (and no tools to hand). A tool result must
    answer a call made before."""
    own = native(template)
    made: list[dict[str, Any]] = []
    called: set[str] = set()
    for number, message in enumerate(chat):
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            said = []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                called.add(str(call.get("id")))
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except (TypeError, json.JSONDecodeError):
                    raise ToolError(f"messages.{number}.tool_calls: arguments are not JSON",
                                    "messages") from None
                said.append({"name": function.get("name"), "arguments": arguments})
            if own:  # transformers' shape: arguments as an object
                made.append({"role": "assistant", "content": content, "tool_calls": [
                    {"type": "function", "function": call} for call in said]})
            else:
                made.append({"role": "assistant", "content": "\n".join(
                    ([content] if content else []) +
                    [OPEN + json.dumps(call) + CLOSE for call in said])})
        elif role == "tool":
            ident = message.get("tool_call_id")
            if ident not in called:
                raise ToolError(f"messages.{number}: a tool message answers a call; "
                                f"tool_call_id {ident!r} matches no earlier call", "messages")
            made.append({"role": "tool", "content": content, "tool_call_id": ident} if own
                        else {"role": "user",
                              "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            made.append({"role": role, "content": content})
    if own:
        return made, [t.model_dump(exclude_none=True) for t in the_plan.tools] \
            if the_plan.calls else None
    if the_plan.tools and the_plan.mode != "none":
        described = "\n".join(json.dumps({"name": t.function.name,
                                          "description": t.function.description or "",
                                          "parameters": t.function.parameters or {}})
                              for t in the_plan.tools)
        text = ("You can call functions. Their JSON schemas:\n" + described + "\nTo call "
                "one, answer with " + OPEN + '{"name": NAME, "arguments": {...}}' + CLOSE +
                " (one such line per call); the results come back as <tool_response>.")
        if made and made[0]["role"] == "system":
            made[0] = {"role": "system", "content": made[0]["content"] + "\n\n" + text}
        else:
            made.insert(0, {"role": "system", "content": text})
    return made, None


# text that never writes a call's or a result's tag: a model that saw calls and results earlier
# in the conversation would otherwise write them as text (seen with SmolLM2)
NO_CALL = r"~/[\s\S]*(" + OPEN + r"|<tool_response>)[\s\S]*/"


def grammar(the_plan: Plan) -> str | None:
    """The llguidance grammar of what the model may write (None: free text, no tools)."""
    if not the_plan.tools:
        return None
    if not the_plan.calls:  # "none": text, without a call's tag
        return "\n".join(["%llguidance {}", "start: TEXT", rf"TEXT: /[\s\S]*/ & {NO_CALL}"])
    chosen = [t for t in the_plan.tools if the_plan.only in (None, t.function.name)]
    schemas = [{"type": "object", "additionalProperties": False,
                "required": ["name", "arguments"],
                "properties": {"name": {"const": t.function.name},
                               "arguments": t.function.parameters or {"type": "object"}}}
               for t in chosen]
    one = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    repeat = "+" if the_plan.parallel else ""
    rules = [f'calls: ("{OPEN}" call "{CLOSE}"){repeat}', f"call: %json {json_rule(one)}"]
    if the_plan.mode == "auto":  # calls, or text that starts at once and writes no tag
        return "\n".join(["%llguidance {}", "start: calls | TEXT", *rules,
                          rf"TEXT: /[^\s][\s\S]*/ & {NO_CALL}"])
    return "\n".join(["%llguidance {}", "start: calls", *rules])


def calls(text: str) -> list[dict[str, Any]] | None:
    """The tool calls in an answer, in OpenAI's shape (None: the answer is text). A call the
    token budget cut is left out — its arguments would not parse — and the answer ends with
    ``finish_reason: "length"``; a list, empty where no call was finished."""
    begun = text.lstrip()
    if not (begun.startswith(OPEN) or (begun and OPEN.startswith(begun))):  # cut in the tag
        return None
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": body["name"],
                          "arguments": json.dumps(body["arguments"], ensure_ascii=False)}}
            for body in map(json.loads, _CALL.findall(text))]
