"""Structured outputs: validity and speed of JSON-schema answers, in one run.

SmolLM2-135M-Instruct (built in), the schemas of ``benchmarks/structured_schemas.json`` (nested
objects, arrays with item bounds, enums, bounded integers and numbers, optional fields, strings
with patterns and formats, anyOf, $ref, nullable, a top-level array) × 5 prompt framings, at
temperature 0.7:

  validity   the share of answers that parse and validate (jsonschema), constrained (zero2one's
             engine, llguidance's token masks) against the same requests unconstrained (the
             schema in the prompt: the baseline); those that do not, split into answers the
             token budget cut (finish_reason length: said to be cut) and answers that ended
             as complete (for constrained decoding: must be 0)
  speed      decoding seconds per token with and without a schema, zero2one's engine (1 row and
             8 rows in one batch) and llama.cpp's server engine (1 and 8 concurrent requests)
  compile    a schema's grammar compiled into a matcher, and one token mask
  libraries  llguidance against outlines-core (where installed: pip install outlines-core):
             the time to compile each schema for this vocabulary and to compute one token mask

    python benchmarks/structured_bench.py [--framings 5] [--tokens 160]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema

from zero2one.api import load
from zero2one.tasks.textgen import constrained
from zero2one.tasks.textgen.batch import Decoder, Row
from zero2one.tasks.textgen.generate import Outcome, sampling

SCHEMAS = json.loads((Path(__file__).parent / "structured_schemas.json").read_text())
FRAMINGS = ["{p}", "{p} Answer in JSON.", "Return JSON only. {p}",
            "{p}\nAnswer with JSON under this schema: {schema}",
            "You are an API that answers in JSON. {p}"]


def chat_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                              add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def parsed(text: str, schema: dict[str, Any]) -> bool:
    """The answer is one JSON document valid under ``schema`` (code fences forgiven)."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def validity(task: Any, framings: int, tokens: int) -> dict[str, tuple[int, int, int]]:
    """Per way of asking: (answers that parse and validate, answers cut by the token budget
    (finish_reason length) that do not, answers)."""
    jobs = []
    for number, case in enumerate(SCHEMAS):
        for k, framing in enumerate(FRAMINGS[:framings]):
            prompt = framing.format(p=case["prompt"], schema=json.dumps(case["schema"]))
            jobs.append((case, chat_ids(task.tokenizer_, prompt), 1000 * number + k))
    counts = {}
    for label, constrain in (("unconstrained (schema in the prompt)", False),
                             ("constrained (response_format)", True)):
        good, cut = 0, 0
        for start in range(0, len(jobs), 8):
            rows = [Row(ids, sampling(max_new_tokens=tokens, temperature=0.7, seed=seed,
                                      json_schema=case["schema"] if constrain else None),
                        emit=lambda _: None) for case, ids, seed in jobs[start: start + 8]]
            decoder = Decoder(task.model_, task.tokenizer_)
            decoder.add(rows)
            while decoder.rows:
                decoder.step()
            for row, (case, _, _) in zip(rows, jobs[start: start + 8], strict=True):
                good += parsed(row.text, case["schema"])
                cut += not parsed(row.text, case["schema"]) and row.finish == "length"
        counts[label] = (good, cut, len(jobs))
    return counts


def own_speed(task: Any, rows: int, schema: dict[str, Any] | None, tokens: int) -> float:
    """Seconds per generated token of ``rows`` rows decoding together (steps only)."""
    ids = chat_ids(task.tokenizer_, SCHEMAS[5]["prompt"])
    batch = [Row(ids, sampling(max_new_tokens=tokens, temperature=0.7, seed=seed,
                               json_schema=schema), emit=lambda _: None) for seed in range(rows)]
    decoder = Decoder(task.model_, task.tokenizer_)
    decoder.add(batch)
    started = time.perf_counter()
    while decoder.rows:
        decoder.step()
    return (time.perf_counter() - started) / sum(len(r.generated) for r in batch)


def server_speed(engine: Any, streams: int, schema: dict[str, Any] | None,
                 tokens: int) -> float:
    """Seconds per generated token of ``streams`` concurrent requests to llama.cpp's engine
    (prompt included: the same prompt either way)."""
    ids = chat_ids(engine.tokenizer, SCHEMAS[5]["prompt"])
    made: list[int] = []

    def one(seed: int) -> None:
        outcome = Outcome()
        engine.run(ids, sampling(max_new_tokens=tokens, temperature=0.7, seed=seed,
                                 json_schema=schema), lambda _: False, outcome)
        made.append(outcome.completion_tokens)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.perf_counter() - started) / sum(made)


def compile_times(task: Any) -> tuple[float, float]:
    """Median seconds: a schema's grammar compiled into a matcher, and one token mask."""
    import torch

    vocab = int(task.model_.config.vocab_size)
    # the tokenizer's view, built once per tokenizer
    constrained.Matcher(task.tokenizer_, constrained.lark({"type": "object"}), vocab=vocab)
    builds, masks = [], []
    for case in SCHEMAS:
        started = time.perf_counter()
        matcher = constrained.Matcher(task.tokenizer_, constrained.lark(case["schema"]),
                                      vocab=vocab)
        builds.append(time.perf_counter() - started)
        logits = torch.zeros(vocab)
        started = time.perf_counter()
        matcher.mask(logits)
        masks.append(time.perf_counter() - started)
    return statistics.median(builds), statistics.median(masks)


def outlines_times(task: Any) -> tuple[float, float, int] | None:
    """outlines-core on the same schemas: median compile seconds, median mask seconds, and how
    many schemas it compiled (None where it is not installed)."""
    try:
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema
    except ImportError:
        return None
    tokenizer = task.tokenizer_
    eos = tokenizer.eos_token_id
    words: dict[str, list[int]] = {}
    for token, index in tokenizer.get_vocab().items():
        if index != eos and index not in tokenizer.all_special_ids:
            words.setdefault(tokenizer.convert_tokens_to_string([token]), []).append(index)
    vocabulary = Vocabulary(eos, words)
    builds, masks, compiled = [], [], 0
    for case in SCHEMAS:
        started = time.perf_counter()
        try:
            index = Index(build_regex_from_schema(json.dumps(case["schema"])), vocabulary)
        except Exception:  # a schema it cannot compile
            continue
        builds.append(time.perf_counter() - started)
        compiled += 1
        guide = Guide(index)
        started = time.perf_counter()
        guide.get_tokens()
        masks.append(time.perf_counter() - started)
    return statistics.median(builds), statistics.median(masks), compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framings", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=160)
    args = parser.parse_args()
    task = load("builtin:smollm2-135m-instruct")
    print(f"# SmolLM2-135M-Instruct, {len(SCHEMAS)} schemas × {args.framings} prompts, "
          f"temperature 0.7, at most {args.tokens} tokens\n")
    print("| answers | parse and validate | cut by the budget (length) | invalid, said complete |"
          "\n| --- | --- | --- | --- |")
    for label, (good, cut, total) in validity(task, args.framings, args.tokens).items():
        print(f"| {label} | {good}/{total} ({good / total:.0%}) | {cut} | "
              f"{total - good - cut} |")

    from zero2one.tasks.textgen.engines import build

    schema = SCHEMAS[5]["schema"]
    server = build(task, SimpleNamespace(engine="llama.cpp", precision=None, slots=None,
                                         max_batch_tokens=None, workers=1), "bench")
    print("\n| engine | streams | ms/token free | ms/token with schema | × |\n"
          "| --- | --- | --- | --- | --- |")
    try:
        for label, measure in (("zero2one", lambda n, s: own_speed(task, n, s, 96)),
                               ("llama.cpp server", lambda n, s: server_speed(server, n, s,
                                                                             96))):
            for streams in (1, 8):
                free = min(measure(streams, None) for _ in range(2))
                bound = min(measure(streams, schema) for _ in range(2))
                print(f"| {label} | {streams} | {1000 * free:.2f} | {1000 * bound:.2f} | "
                      f"{bound / free:.2f} |")
    finally:
        server.close()

    build, mask = compile_times(task)
    print("\n| library | compile a schema (median) | one token mask (median) |\n"
          "| --- | --- | --- |")
    print(f"| llguidance | {1000 * build:.1f} ms | {1e6 * mask:.0f} µs |")
    other = outlines_times(task)
    if other is None:
        print("| outlines-core | not installed (pip install outlines-core) | |")
    else:
        build_s, mask_s, compiled = other
        print(f"| outlines-core ({compiled}/{len(SCHEMAS)} schemas compiled) | "
              f"{1000 * build_s:.1f} ms | {1e6 * mask_s:.0f} µs |")


if __name__ == "__main__":
    main()
