"""Training text for causal language models: reading, checking, splitting and tokenizing.

Three forms: plain text (a ``.txt`` file, one example per blank-line-separated paragraph, or a
folder of them), JSONL records with a text field, and chat JSONL records with ``messages``.
Chats are rendered with the model's chat template and only assistant tokens carry a loss: the
character span of each assistant turn is found by rendering the conversation up to that turn,
and the tokens falling inside it are the ones trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zero2one.errors import DataError
from zero2one.paths import expand
from zero2one.tasks.textgen.config import TextDataConfig

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
IGNORE = -100  # label of a token without a loss


@dataclass
class Records:
    rows: list[dict[str, Any]]  # {"text": str} or {"messages": [...]}
    kind: str  # "text" or "chat"
    source: str
    sha256: str


def read_records(source: str, config: TextDataConfig) -> Records:
    """Every example of ``source``, checked; errors name the file and line."""
    path = expand(source)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no .txt files in the folder")
    digest = hashlib.sha256()
    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            raw = file.read_bytes()
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{file}: not UTF-8 text (byte {exc.start})") from None
        digest.update(raw)
        if file.suffix.lower() in (".jsonl", ".json"):
            rows.extend(_jsonl(file, text))
        elif file.suffix.lower() in (".txt", ".md", ""):
            rows.extend({"text": p.strip()} for p in text.split("\n\n") if p.strip())
        else:
            raise DataError(f"{file}: unsupported file type {file.suffix!r}; use .txt or .jsonl")
    if not rows:
        raise DataError(f"{path}: no examples")
    kind = config.format
    if kind == "auto":
        kind = ("preference" if "chosen" in rows[0] else
                "chat" if "messages" in rows[0] else "text")
    checked = [_check(row, kind, config.text_field, f"{path}, example {i + 1}")
               for i, row in enumerate(rows)]
    return Records(checked, kind, str(path), digest.hexdigest())


def _jsonl(file: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{file}:{number}: each line must be a JSON object")
        rows.append(row)
    return rows


def _check(row: dict[str, Any], kind: str, field: str, where: str) -> dict[str, Any]:
    if kind == "preference":
        return check_pair(row, where)
    if kind == "text":
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: no text in field {field!r}")
        return {"text": value}
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: `messages` must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise DataError(f"{where}, message {i + 1}: expected {{role, content}}")
        if message.get("role") not in ROLES:
            raise DataError(f"{where}, message {i + 1}: unknown role {message.get('role')!r}; "
                            f"use {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise DataError(f"{where}, message {i + 1}: empty content")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant message to learn from")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def split(records: Records, config: TextDataConfig, seed: int) -> tuple[Any, Any, str]:
    """(train, validation) as ``datasets.Dataset`` objects, and the fingerprint digest."""
    from datasets import Dataset

    full = Dataset.from_list(records.rows)
    if config.val_source is not None:
        val = read_records(config.val_source, config)
        if val.kind != records.kind:
            raise DataError(f"{config.val_source}: {val.kind} records, but the training data "
                            f"holds {records.kind} records")
        digest = hashlib.sha256(f"{records.sha256}:{val.sha256}".encode()).hexdigest()
        return full, Dataset.from_list(val.rows), digest
    if len(full) < 4:
        raise DataError(f"{records.source}: {len(full)} examples; need at least 4 to hold some "
                        "out for validation (or give data.val_source)")
    parts = full.train_test_split(test_size=config.val_size, seed=seed, shuffle=True)
    return parts["train"], parts["test"], records.sha256


# ---- tokenizing ---------------------------------------------------------------------------


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[
        int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (with the
    template's end-of-turn marker, so the model learns to stop)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False,
                                               add_generation_prompt=True) if i else ""
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not full.startswith(through) or not through.startswith(before):
            raise DataError("the model's chat template renders a conversation differently from "
                            "its beginning; cannot tell assistant tokens apart")
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_text(tokenizer: Any, text: str, max_length: int) -> dict[str, list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = [*ids, tokenizer.eos_token_id]  # the model learns where a text ends
    ids = ids[:max_length]
    return {"input_ids": ids, "labels": list(ids)}


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]],
                  max_length: int) -> dict[str, list[int]]:
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = encoded["input_ids"], []
    for token, (start, _end) in zip(ids, encoded["offset_mapping"], strict=True):
        inside = any(a <= start < b for a, b in spans)
        labels.append(token if inside else IGNORE)
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def tokenize(dataset: Any, tokenizer: Any, kind: str, config: TextDataConfig) -> Any:
    """Token ids and labels per example (packed into blocks when asked); drops examples left
    with nothing to learn after truncation."""
    import datasets

    datasets.disable_progress_bars()  # progress belongs to zero2one's reporter
    if kind == "chat" and not getattr(tokenizer, "chat_template", None):
        raise DataError("chat data needs a model with a chat template; this one has none")
    if kind == "chat" and not tokenizer.is_fast:
        raise DataError("chat data needs a fast tokenizer (character offsets)")

    def one(row: dict[str, Any]) -> dict[str, list[int]]:
        if kind == "chat":
            return tokenize_chat(tokenizer, row["messages"], config.max_length)
        return tokenize_text(tokenizer, row["text"], config.max_length)

    columns = dataset.column_names
    encoded = dataset.map(one, remove_columns=columns)
    kept = encoded.filter(lambda row: any(label != IGNORE for label in row["labels"][1:]))
    if dropped := len(encoded) - len(kept):
        log.warning("%d example(s) had no trainable tokens within max_length=%d and were "
                    "dropped", dropped, config.max_length)
    if len(kept) == 0:
        raise DataError(f"no example has trainable tokens within max_length={config.max_length}")
    if config.packing:
        kept = pack(kept, config.max_length)
    return kept


def pack(dataset: Any, block: int) -> Any:
    """Concatenate every example and cut the stream into blocks of ``block`` tokens."""
    from datasets import Dataset

    ids = [t for row in dataset["input_ids"] for t in row]
    labels = [t for row in dataset["labels"] for t in row]
    blocks = [{"input_ids": ids[i: i + block], "labels": labels[i: i + block]}
              for i in range(0, len(ids), block)]
    blocks = [b for b in blocks if len(b["input_ids"]) > 1]
    return Dataset.from_list(blocks)


def count_tokens(dataset: Any) -> int:
    """Tokens that carry a loss."""
    return sum(sum(1 for t in row[1:] if t != IGNORE) for row in dataset["labels"])


def check_pair(row: dict[str, Any], where: str) -> dict[str, Any]:
    """One preference pair (DPO): a prompt (text or messages), a chosen and a rejected answer."""
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        if not prompt:
            raise DataError(f"{where}: `prompt` is an empty list of messages")
        for i, message in enumerate(prompt):
            if (not isinstance(message, dict) or message.get("role") not in ROLES
                    or not isinstance(message.get("content"), str)):
                raise DataError(f"{where}, prompt message {i + 1}: expected {{role, content}} "
                                f"with a role among {', '.join(ROLES)}")
        prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
    elif not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: `prompt` must be a text or a list of messages")
    for key in ("chosen", "rejected"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise DataError(f"{where}: `{key}` must be a non-empty text")
    if row["chosen"] == row["rejected"]:
        raise DataError(f"{where}: `chosen` and `rejected` are the same text")
    return {"prompt": prompt, "chosen": row["chosen"], "rejected": row["rejected"]}
