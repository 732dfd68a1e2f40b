"""``zero2one`` commands forked from a process that imported zero2one's libraries once.

A command's own process spends most of a short command importing torch, transformers,
scikit-learn and MLflow (3-5 CPU-seconds of the 4-8 a guide command takes here). The guide
test runs about forty of them in one environment, so it puts a ``zero2one`` of this module's
first on its shells' PATH: a client of a few standard-library lines that hands its arguments,
working directory, environment and standard streams to the zygote, which forks; the fork runs
``zero2one.cli.main.main()`` as the console script would, in a process of its own. The client
passes SIGTERM, SIGINT and SIGHUP on (``kill %1`` of a backgrounded ``zero2one serve``) and
exits as the command did. The zygote is started with the environment the commands get (what
libraries read when imported is the same), and the console script itself keeps its tests
elsewhere (the fresh-environment tests run an installed ``bin/zero2one``).

    with Zygote(env, cwd) as zygote:
        subprocess.run(["bash", "-c", "zero2one ..."], env=zygote.env)
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType, TracebackType

# what most commands import; each command imports the rest itself (Keras, diffusers)
WARM = ["zero2one.cli.main", "zero2one.api", "torch", "transformers", "peft", "sklearn.svm",
        "sklearn.model_selection", "skops.io", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
        "matplotlib.pyplot", "pandas", "pyarrow.parquet", "onnx", "onnxruntime"]

CLIENT = '''#!{python} -SE
import json, os, signal, socket, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
connection.connect({address!r})
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
pid = json.loads(connection.recv(1 << 16))["pid"]
def forward(number, frame):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, forward)
status = json.loads(connection.recv(1 << 16))["status"]
if status < 0:
    signal.signal(-status, signal.SIG_DFL)
    os.kill(os.getpid(), -status)
sys.exit(status)
'''


class Zygote:
    """The zygote process (``python -m tests.zygote ADDRESS MODULE...``) and ``env``, the
    environment for the shells that run the commands: the one given, its client first on PATH
    and one OpenMP thread (a thread pool made in the zygote would be inherited by its forks
    without its threads)."""

    def __init__(self, env: dict[str, str], cwd: Path, warm: list[str] = WARM) -> None:
        self.env = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.folder = Path(tempfile.mkdtemp(prefix="zero2one-zygote-"))
        self.address = str(self.folder / "socket")
        self.bin = self.folder / "bin"
        self.bin.mkdir()
        client = self.bin / "zero2one"
        client.write_text(CLIENT.format(python=sys.executable, address=self.address))
        client.chmod(0o755)
        root = str(Path(__file__).resolve().parents[1])
        self.log = (self.folder / "zygote.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote", self.address, *warm], cwd=cwd,
            env={**self.env, "PYTHONPATH": os.pathsep.join(filter(None, [
                root, env.get("PYTHONPATH", "")]))},
            stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        deadline = time.monotonic() + 300
        while not os.path.exists(self.address):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.log.close()
                log = (self.folder / "zygote.log").read_text(errors="replace")
                raise AssertionError(f"the zygote did not start: {log[-3000:]}")
            time.sleep(0.1)

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _serve(address: str, warm: list[str]) -> None:
    """Import, then fork a monitor per connection (reaped by the kernel: SIGCHLD ignored),
    which forks the command and reports how it ended."""
    import importlib

    for name in warm:
        importlib.import_module(name)
    gc.freeze()  # what was imported stays out of the children's collections (and their pages)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address + ".new")
    listener.listen(16)
    os.rename(address + ".new", address)  # ready
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _monitor(connection)
        connection.close()


def _monitor(connection: socket.socket) -> None:
    try:
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            connection.close()
            _command(request, fds)
        for fd in fds:
            os.close(fd)
        connection.send(json.dumps({"pid": pid}).encode())
        _, wait = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait)
        connection.send(json.dumps({"status": status}).encode())
    finally:
        os._exit(0)


def _command(request: dict[str, object], fds: list[int]) -> None:
    """The command, as the console script runs it (``__main__`` is that script: what
    multiprocessing's spawn re-imports in a Dask worker)."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update(request["env"])  # type: ignore[arg-type]
        script = str(Path(sys.executable).parent / "zero2one")
        main = ModuleType("__main__")
        main.__file__ = script
        sys.modules["__main__"] = main
        sys.argv = [script, *request["argv"]]  # type: ignore[misc]
        from zero2one.cli.main import main as run

        try:
            code = run() or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(int(code))


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2:])
