"""Moderation, feedback and the preference loop, measured.

1. Moderation quality on examples/moderation/eval.jsonl (labelled by hand, Chinese and English,
   separate from the tests' cases): precision and recall per category; time per check.
2. Added latency on /v1/chat/completions (SmolLM2, 8 new tokens, greedy, sequential requests):
   `zero2one serve` without and with `--moderation default`, p50 and p99.
3. Feedback writes/s: `zero2one serve` (iris, 2 workers, `--feedback` SQLite), 8 concurrent
   clients each posting /predict then /v1/feedback for DURATION seconds; every write checked.
4. The loop on SmolLM2: answers of the base to examples/zero2one-qa questions are the rejected
   side, the reference answers the chosen; DPO on the training questions' pairs; preference
   accuracy and margin on the held-out questions' pairs, before and after.

5. False positives on benign text the classifier never trained on: everyday chat turns
   (examples/moderation/benign-chat.txt), the Chinese guide's and README's prose, first
   sentences of docstrings of installed libraries; with and without the built-in classifier.

    python benchmarks/safety_bench.py [--only quality latency feedback dpo benign]
Traffic goes to 127.0.0.1 only; every part stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def quality() -> None:
    from zero2one.moderation import evaluate, load_moderator

    moderator = load_moderator("default")
    rows = [json.loads(line) for line in
            (REPO / "examples/moderation/eval.jsonl").read_text().splitlines() if line]
    report = evaluate(moderator, [(r["text"], r["categories"]) for r in rows])
    print(f"\n### Moderation quality: examples/moderation/eval.jsonl, {len(rows)} texts\n")
    print("category | labelled | precision | recall | f1")
    print("--- | --- | --- | --- | ---")
    for name, s in [*report["categories"].items(), ("any (flagged or not)", report["flagged"])]:
        print(f"{name} | {s['support']} | {s['precision']:.3f} | {s['recall']:.3f} | "
              f"{s['f1']:.3f}")
    for label, text in (("short (30 chars)", rows[0]["text"]),
                        ("long (2000 chars)", " ".join(r["text"] for r in rows)[:2000])):
        times = []
        for _ in range(300):
            start = time.perf_counter()
            moderator.check(text)
            times.append(time.perf_counter() - start)
        times.sort()
        print(f"\none check, {label}: p50 {times[150] * 1e6:.0f} µs, p99 "
              f"{times[296] * 1e6:.0f} µs")


def _serve(args: list[str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "zero2one"), "serve", *args, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)  # type: ignore[no-any-return]


def _ready(port: int, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)


def latency(requests: int) -> None:
    """Both servers up at once, requests alternating between them (an idle server costs
    nothing): the same machine state for both."""
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_load import free_port

    body = {"messages": [{"role": "user", "content": "What is machine learning?"}],
            "max_tokens": 8, "temperature": 0}
    configs = {"off": [], "--moderation default": ["--moderation", "default"]}
    ports = {label: free_port() for label in configs}
    processes = [_serve(["builtin:smollm2-135m-instruct", *extra], ports[label])
                 for label, extra in configs.items()]
    times: dict[str, list[float]] = {label: [] for label in configs}
    try:
        for port in ports.values():
            _ready(port)
        urls = {label: f"http://127.0.0.1:{port}/v1/chat/completions"
                for label, port in ports.items()}
        for url in urls.values():
            for _ in range(3):
                _post(url, body)  # warm-up
        for _ in range(requests):
            for label, url in urls.items():
                start = time.perf_counter()
                _post(url, body)
                times[label].append(time.perf_counter() - start)
    finally:
        for process in processes:
            _stop(process)
    off = statistics.median(times["off"])
    print(f"\n### /v1/chat/completions, SmolLM2, 8 new tokens, {requests} requests each, "
          "alternating between the two servers\n")
    print("moderation | p50 ms | p99 ms | p50 added ms")
    print("--- | --- | --- | ---")
    for label, values in times.items():
        values.sort()
        p50, p99 = statistics.median(values), values[int(len(values) * 0.99) - 1]
        print(f"{label} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {(p50 - off) * 1e3:+.1f}")


def feedback(duration: int, work: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_load import free_port

    from zero2one.api import train
    from zero2one.feedback import FeedbackStore

    model = work / "iris"
    train(REPO / "recipes/iris-svc.yaml", overrides=["track.enabled=false"], out=model)
    store = work / "feedback.db"
    port = free_port()
    process = _serve([str(model), "--workers", "2", "--feedback", str(store)], port)
    counts: list[int] = []
    errors: list[str] = []
    try:
        _ready(port)
        base = f"http://127.0.0.1:{port}"
        stop = time.monotonic() + duration

        def client() -> None:
            done = 0
            while time.monotonic() < stop:
                try:
                    answer = _post(f"{base}/predict", {"features": [5.1, 3.5, 1.4, 0.2]})
                    _post(f"{base}/v1/feedback", {"id": answer["request_id"], "rating": "up"})
                    done += 1
                except OSError as exc:
                    errors.append(str(exc))
            counts.append(done)

        threads = [threading.Thread(target=client) for _ in range(8)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        _stop(process)
    stats = FeedbackStore(str(store)).stats()
    total = sum(counts)
    print(f"\n### Feedback store: iris, 2 workers, 8 clients, {duration} s, SQLite (WAL)\n")
    print("what | value")
    print("--- | ---")
    print(f"answers recorded + feedback written, per second | {total / elapsed:.0f} "
          f"(each: one /predict record and one /v1/feedback row)")
    print(f"rows in the store / acknowledged | {stats['feedback']} / {total} "
          f"(answers {stats['answers']}); client errors {len(errors)}")


def dpo(work: Path, epochs: float) -> None:
    import zero2one
    from zero2one.tasks.textgen.batch import complete
    from zero2one.tasks.textgen.models import load_lm

    model, tokenizer = load_lm("builtin:smollm2-135m-instruct")
    qa = REPO / "examples/zero2one-qa"
    started = time.perf_counter()
    sets = {}
    for split in ("train", "val"):
        chats = [json.loads(line)["messages"] for line in
                 (qa / f"{split}.jsonl").read_text().splitlines() if line]
        prompts, references = [], []
        for messages in chats:
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            prompts.append(messages[:last])
            references.append(messages[last]["content"])
        ids = [list(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"])
               for p in prompts]
        answers = complete(model, tokenizer, ids, max_new_tokens=48, precision="float32")
        pairs = [{"prompt": p, "chosen": ref, "rejected": ans.strip()}
                 for p, ref, ans in zip(prompts, references, answers, strict=True)
                 if ans.strip() and ans.strip() != ref]
        path = work / f"pairs-{split}.jsonl"
        path.write_text("".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
        sets[split] = (path, len(pairs))
    generated = time.perf_counter() - started
    result = zero2one.train({
        "task": "text-generation", "name": "smollm2-dpo", "seed": 0,
        "data": {"source": str(sets["train"][0]), "val_source": str(sets["val"][0]),
                 "max_length": 256},
        "model": {"base": "builtin:smollm2-135m-instruct", "method": "dpo",
                  "lora": {"r": 8, "alpha": 16, "dropout": 0.0,
                           "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]}},
        "train": {"epochs": epochs, "batch_size": 4, "lr": 5e-4, "beta": 0.1, "warmup": 0,
                  "save_steps": 1000, "logging_steps": 5},
        "track": {"enabled": False},
    }, out=work / "dpo-model")
    m = result.metrics
    print(f"\n### The loop on SmolLM2: DPO on {sets['train'][1]} pairs, measured on "
          f"{sets['val'][1]} held-out pairs (answers generated in {generated:.0f} s, trained "
          f"in {result.seconds['fit']:.0f} s, {epochs:g} epochs)\n")
    print("model | preference accuracy | mean margin log p(chosen) − log p(rejected)")
    print("--- | --- | ---")
    print(f"base | {m['base_val_preference_accuracy']:.3f} | "
          f"{m['base_val_preference_margin']:.1f}")
    print(f"after DPO | {m['val_preference_accuracy']:.3f} | {m['val_preference_margin']:.1f}")


def benign_rates() -> None:
    from zero2one.moderation import ModerationConfig, Moderator, benign, load_moderator

    sets = {
        "chat turns (en, zh)": benign.lines(REPO / "examples/moderation/benign-chat.txt"),
        "Chinese docs' prose": [s for p in ("docs/guide.zh-CN.md", "README.zh-CN.md")
                                for s in benign.sentences((REPO / p).read_text())],
        "docstrings (technical en)": benign.docstrings([
            "json", "os", "pathlib", "collections", "statistics", "sklearn.linear_model",
            "sklearn.ensemble", "sklearn.metrics", "numpy", "pandas"]),
    }
    full = load_moderator("default")
    lists_only = Moderator(ModerationConfig(builtin_classifier=False))
    print("\n### False positives on benign text (any hit)\n")
    print("set | texts | flagged: default | flagged: without the classifier | examples")
    print("--- | --- | --- | --- | ---")
    every: list[str] = []
    for name, texts in sets.items():
        every += texts
        rate, flagged = benign.false_positives(full, texts)
        plain, _ = benign.false_positives(lists_only, texts)
        print(f"{name} | {len(texts)} | {rate:.2%} | {plain:.2%} | "
              f"{'; '.join(t[:40] for t in flagged[:3]) or '-'}")
    rate, _ = benign.false_positives(full, every)
    print(f"all | {len(every)} | {rate:.2%} | | ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["quality", "latency", "feedback", "dpo", "benign"]
    parser.add_argument("--only", nargs="+", choices=parts, default=parts)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--dpo-epochs", type=float, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="z21-safety-bench-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    if "quality" in args.only:
        quality()
    if "latency" in args.only:
        latency(args.requests)
    if "feedback" in args.only:
        feedback(args.duration, work)
    if "dpo" in args.only:
        dpo(work, args.dpo_epochs)
    if "benign" in args.only:
        benign_rates()


if __name__ == "__main__":
    main()
