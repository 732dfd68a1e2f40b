"""CPU time and peak memory of `zero2one` commands with the program's garbage-collector
thresholds (``zero2one.machine.GC_THRESHOLDS``, set by ``cli/main.py``'s ``main()``) against
Python's defaults (700, 10, 10), in the same run.

Each command runs in a new process, the two settings alternating, REPEAT times; the table
shows the medians (CPU: user + system of the process, from ``os.wait4``). The iris recipe is
trained once first, so that ``predict`` has a model.

    python benchmarks/cli_gc.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = "from zero2one.cli.main import main\nmain()\n"
# the name main() reads, in its own module
BASELINE = ("from zero2one.cli import main as cli\ncli.GC_THRESHOLDS = (700, 10, 10)\n"
            "cli.main()\n")
COMMANDS = [
    ["train", str(REPO / "recipes/iris-svc.yaml"), "--quiet"],
    ["predict", "models:/iris-svc/1", "--input", str(REPO / "examples/flowers.csv"),
     "--output", "scored.csv"],
    ["generate", "builtin:smollm2-135m-instruct", "--chat", "-p", "Name a colour.",
     "--max-new-tokens", "16", "--temperature", "0"],
    ["export", "models:/iris-svc/1", "--format", "onnx"],
]


def run(script: str, args: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, peak resident MiB) of one process."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([sys.executable, "-c", script, *args], cwd=cwd,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed: {errors.read()[-800:].decode()}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="z21-gc-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")
    run(SHIPPED, COMMANDS[0], work)  # a model for predict and export; the store exists
    print("| command | CPU s, Python's (700, 10, 10) | CPU s, zero2one's | × | peak MiB, "
          "Python's | peak MiB, zero2one's |\n| --- | --- | --- | --- | --- | --- |")
    for command in COMMANDS:
        seen: dict[str, list[tuple[float, float]]] = {"baseline": [], "shipped": []}
        for _ in range(args.repeat):
            seen["baseline"].append(run(BASELINE, command, work))
            seen["shipped"].append(run(SHIPPED, command, work))
        cpu = {k: statistics.median(c for c, _ in v) for k, v in seen.items()}
        rss = {k: statistics.median(m for _, m in v) for k, v in seen.items()}
        print(f"| `zero2one {command[0]}` | {cpu['baseline']:.2f} | {cpu['shipped']:.2f} | "
              f"{cpu['shipped'] / cpu['baseline']:.2f} | {rss['baseline']:.0f} | "
              f"{rss['shipped']:.0f} |")


if __name__ == "__main__":
    main()
