"""A small agent: the official ``openai`` client, two local tools, and ``zero2one serve``.

    zero2one serve builtin:smollm2-135m-instruct --port 8000 &
    python examples/agent/agent.py "What is 12.5 * 4 + 3?"
    python examples/agent/agent.py "How do I serve a model with an API key?" --stream

The loop is the one written against OpenAI: send the conversation and the tools; run each call
the model makes (``calculate``, ``search_docs``) and send the results back as ``role: "tool"``
messages; stop when the model answers in text. zero2one's server constrains every call to its
function's JSON schema (``tools.json``), so the arguments always parse and validate — even from a
135M-parameter model that was never tuned for tools. Small models seldom decide to call a tool on
their own: the first step asks for one (``--first required``), the last forbids them, so the
loop always ends in an answer.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import os
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from openai import APIConnectionError, APIStatusError, OpenAI

HERE = Path(__file__).resolve().parent
TOOLS = json.loads((HERE / "tools.json").read_text(encoding="utf-8"))
DOCS = [HERE.parents[1] / "README.md", HERE.parents[1] / "docs" / "guide.md"]
SYSTEM = ("You answer questions about zero2one and arithmetic. Use calculate for arithmetic "
          "and search_docs for zero2one; then answer briefly from the results.")

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def calculate(expression: str) -> str:
    """The value of an arithmetic expression (parsed, never ``eval``-ed), or what is wrong."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return float(_OPERATORS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return float(_OPERATORS[type(node.op)](value(node.operand)))
        raise ValueError(f"not arithmetic: {ast.unparse(node)}")

    try:
        result = value(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return f"error: {exc}"
    return f"{result:g}"


@cache
def _index(paths: tuple[Path, ...]) -> tuple[list[str], Any, Any]:
    """The docs' passages (paragraphs, cut into overlapping pieces of at most 60 words) and
    their TF-IDF."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    passages = []
    for path in paths:
        text = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
        for block in re.split(r"\n\s*\n", text):
            words = block.split()
            for start in range(0, max(len(words) - 20, 1), 40):
                if len(piece := words[start:start + 60]) >= 8:
                    passages.append(f"[{path.name}] {' '.join(piece)}")
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    return passages, vectorizer, vectorizer.fit_transform(passages)


def search_docs(query: str, top: int = 2, paths: tuple[Path, ...] = tuple(DOCS)) -> str:
    """The ``top`` passages of the docs closest to ``query`` (TF-IDF, cosine)."""
    passages, vectorizer, matrix = _index(paths)
    scores = (matrix @ vectorizer.transform([query]).T).toarray().ravel()
    best = [i for i in scores.argsort()[::-1][:top] if scores[i] > 0]
    if not best:
        return "no passage matches"
    return "\n\n".join(passages[i] for i in best)


FUNCTIONS: dict[str, Callable[..., str]] = {"calculate": calculate, "search_docs": search_docs}


def ask(client: OpenAI, model: str, messages: list[dict[str, Any]], choice: str,
        stream: bool, write: Callable[[str], None]) -> dict[str, Any]:
    """One turn of the model: its message (text, or tool calls), streamed or not."""
    settings: dict[str, Any] = {"model": model, "messages": messages, "tools": TOOLS,
                                "tool_choice": choice, "parallel_tool_calls": False,
                                "temperature": 0, "max_tokens": 160}
    if not stream:
        message = client.chat.completions.create(**settings).choices[0].message
        return message.model_dump(exclude_none=True)
    text, calls = [], {}  # OpenAI's streamed calls: deltas per index
    for chunk in client.chat.completions.create(**settings, stream=True):
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is None:
            continue
        if delta.content:
            text.append(delta.content)
            write(delta.content)
        for part in delta.tool_calls or []:
            call = calls.setdefault(part.index, {"id": "", "type": "function",
                                                 "function": {"name": "", "arguments": ""}})
            call["id"] += part.id or ""
            if part.function:
                call["function"]["name"] += part.function.name or ""
                call["function"]["arguments"] += part.function.arguments or ""
    if text:
        write("\n")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def run(client: OpenAI, model: str, question: str, *, steps: int = 3, first: str = "required",
        stream: bool = False, say: Callable[[str], None] = print,
        write: Callable[[str], None] = _write) -> str:
    """The agent's answer to ``question`` after at most ``steps`` turns of the model (``say``:
    each tool call and its result; ``write``: streamed text, as it comes)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": question}]
    for step in range(steps):
        choice = first if step == 0 else "none" if step == steps - 1 else "auto"
        message = ask(client, model, messages, choice, stream, write)
        messages.append(message)
        if not message.get("tool_calls"):
            return str(message.get("content") or "")
        for call in message["tool_calls"]:
            name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
            result = FUNCTIONS[name](**arguments)
            say(f"-> {name}({json.dumps(arguments, ensure_ascii=False)}): "
                f"{result[:160]}{'...' if len(result) > 160 else ''}")
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--base-url", default=os.environ.get(
        "OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"), help="zero2one serve's /v1 [%(default)s]")
    parser.add_argument("--api-key", default=os.environ.get("ZERO2ONE_API_KEY", "unused"))
    parser.add_argument("--model", default="default", help="the served model's name (any: one "
                        "model is served)")
    parser.add_argument("--steps", type=int, default=3, help="most turns of the model [3]")
    parser.add_argument("--first", choices=["required", "auto"], default="required",
                        help="tool_choice of the first turn [required]")
    parser.add_argument("--stream", action="store_true", help="stream the model's turns")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps: at least 2 (a call, then the answer)")
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=300)
    try:
        answer = run(client, args.model, args.question, steps=args.steps, first=args.first,
                     stream=args.stream)
    except APIConnectionError:
        print(f"error: nothing answers at {args.base_url}: start `zero2one serve MODEL` first "
              "(or give --base-url)", file=sys.stderr)
        return 2
    except APIStatusError as exc:  # the server's one-line reason (a 400, a 401 without a key)
        print(f"error: {exc.status_code}: {exc.message}", file=sys.stderr)
        return 2
    if not args.stream:
        print(answer)
    return 0 if answer else 1


if __name__ == "__main__":
    sys.exit(main())
