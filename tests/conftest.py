"""Shared fixtures: an isolated workspace per test, tiny recipes, a trained iris model, a tiny
language model."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zero2one.machine import GC_THRESHOLDS

REPO = Path(__file__).resolve().parents[1]

# pytest -n N: each worker (and the processes its tests start) computes on its share of the
# cores — N workers each running torch's full thread pool fight over the same cores
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(_share))
    # and the threads a library starts anyway (llama.cpp decodes on every core, its OpenMP
    # runtime libgomp) sleep when they wait instead of spinning: with more workers than cores
    # a spinning thread holds a core the thread it waits for needs. Decoding SmolLM2 on 2
    # threads beside 2 busy processes: 9-10 tokens/s, 99-113 ms of CPU a token spinning;
    # 22-27 tokens/s, 28-33 ms sleeping (on an idle machine spinning is 3 times faster, which
    # is why zero2one leaves OpenMP's default alone)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# the test processes collect cyclic garbage as the `zero2one` program does (GC_THRESHOLDS: at
# Python's defaults, full collections over everything imported took up to a tenth of the CPU)
gc.set_threshold(*GC_THRESHOLDS)

# no test asks the Hugging Face hub (this machine has no network, and where a name lookup hangs
# rather than fails each question costs seconds); the tests of the hub path serve a stand-in
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_CACHE = pytest.StashKey[str]()
_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """One conversion cache for the session (``$ZERO2ONE_CACHE``; the built-in language model
    is converted once, not once per workspace), shared by the xdist workers, which inherit it;
    removed at the end. A cache set before (to keep it between runs) is used as it is.

    And a workspace per process (``$ZERO2ONE_HOME``) for what runs outside the ``workspace``
    fixture (models trained once per module or session): never the checkout's own
    ``.zero2one``, which xdist workers training the same recipe at once raced over (one
    renamed the other's checkpoint away)."""
    if "ZERO2ONE_CACHE" not in os.environ:
        os.environ["ZERO2ONE_CACHE"] = config.stash[_CACHE] = tempfile.mkdtemp(
            prefix="zero2one-test-cache-")
    base = os.environ.get("ZERO2ONE_TEST_HOMES")  # made by the xdist controller
    if base is None and "ZERO2ONE_HOME" not in os.environ:
        base = os.environ["ZERO2ONE_TEST_HOMES"] = config.stash[_HOME] = tempfile.mkdtemp(
            prefix="zero2one-test-homes-")
    if base is not None:
        home = Path(base) / os.environ.get("PYTEST_XDIST_WORKER", "main") / ".zero2one"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["ZERO2ONE_HOME"] = str(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    for key, names in ((_CACHE, ["ZERO2ONE_CACHE"]),
                       (_HOME, ["ZERO2ONE_TEST_HOMES", "ZERO2ONE_HOME"])):
        if folder := config.stash.get(key, None):
            shutil.rmtree(folder, ignore_errors=True)
            for name in names:
                os.environ.pop(name, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first, the longest of them (``slow(seconds=N)``, about N seconds on 2
    cores beside other workers) first of all, stable otherwise: under ``pytest -n`` the workers
    start on the long ones and end on short ones, instead of one worker finishing a long test
    alone while the other cores wait."""
    def order(item: pytest.Item) -> tuple[bool, float]:
        slow = item.get_closest_marker("slow")
        return slow is None, -float(slow.kwargs.get("seconds", 0) if slow else 0)

    items.sort(key=order)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory whose ``.zero2one`` store starts empty (a copy of the empty
    store zero2one keeps in the session's cache, as for any new workspace)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = tmp_path / ".zero2one"
    home.mkdir()
    monkeypatch.setenv("ZERO2ONE_HOME", str(home))
    return tmp_path


CORPUS = ["zero2one trains models", "zero2one serves models over http",
          "the model answers questions", "hello world, hello model"] * 20
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with a small byte-level BPE tokenizer and a chat
    template, saved like any model (language-model tests and the contract test use it)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-lm")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def long_lm(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a 2,048-token window (rotary positions: the same weights): its
    300-token vocabulary spells tools' descriptions out in about 600 tokens."""
    import json

    out = tmp_path_factory.mktemp("long-lm")
    for path in tiny_lm.iterdir():
        shutil.copy2(path, out / path.name)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return out


WORDS = ("a", "an", "the", "handwritten", "digit", "number", "zero", "one", "two", "three",
         "four", "five", "six", "seven", "eight", "nine", "red", "green", "blue", "yellow",
         "circle", "square", "triangle", "star", "cat", "dog", "on", "of", "and")


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer BERT (16-d token states) with a word-level vocabulary of
    the test captions: a stand-in for all-MiniLM-L6-v2, saved like any transformers model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny-encoder")
    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(out, safe_serialization=True)
    return out


def fit_until_interrupted(cfg: dict[str, Any], step: int) -> Any:
    """Fit ``cfg`` in this process and die when training reports ``step`` (:class:`StopAt`),
    as a killed process would; returns the task (its checkpoint directory holds what it left)."""
    from zero2one.catalog import get_task, validate

    config = validate(cfg)
    task = get_task(config.task)(config)
    with pytest.raises(Interrupt):
        task.fit(task.load_data(), reporter=StopAt(step))
    return task


def train_killed_at_checkpoint(cfg: dict[str, Any], directory: Path,
                               timeout: float = 180) -> Path:
    """Write ``cfg`` to DIRECTORY/r.yaml, run ``zero2one train`` on it in a new process and
    SIGKILL the process as soon as its first checkpoint exists; returns the recipe's path.
    Asserts that the killed run left no model directory behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from zero2one.catalog import get_task, validate

    path = directory / "r.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = validate(cfg)
    checkpoint = get_task(config.task)(config).checkpoint_dir() / "last.pt"
    process = subprocess.Popen([sys.executable, "-m", "zero2one.cli.main", "train", str(path),
                                "--out", str(directory / "killed"), "--quiet"],
                               env={**os.environ}, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (directory / "killed").exists()  # nothing half-written
    return path


class Interrupt(Exception):
    """What :class:`StopAt` raises: a training process dying mid-fit."""


class StopAt:
    """A reporter that dies when training reports metrics for ``step`` (an epoch, or an
    optimizer step), as a killed process would."""

    def __init__(self, step: int) -> None:
        from zero2one.progress import NullReporter

        self.inner, self.at = NullReporter(), step

    def step(self, description: str, total: int | None = None) -> Any:
        return self.inner.step(description, total)

    def info(self, message: str) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        if step == self.at:
            raise Interrupt


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: Any, *, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200 while ``process`` (a Popen) is still running."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert process.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not come up in {timeout:.0f} s"
        time.sleep(0.5)


def iris_recipe(**changes: Any) -> dict[str, Any]:
    """A small, fast iris recipe (a 4-candidate grid, 3 folds); ``changes`` replace sections."""
    recipe: dict[str, Any] = {
        "task": "tabular-classification",
        "name": "iris-test",
        "data": {"source": "sklearn:iris"},
        "model": {"estimator": "svc"},
        "search": {"method": "grid", "space": {"kernel": ["linear", "rbf"], "C": [1, 10]},
                   "cv": 3},
        "track": {"enabled": False},
    }
    recipe.update(changes)
    return recipe


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained, untracked iris model directory shared by read-only tests."""
    from zero2one.api import train

    out = tmp_path_factory.mktemp("iris") / "model"
    train(iris_recipe(), out=out)
    return out


@pytest.fixture(scope="session")
def tiny_vision(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image classifier of the contract's smallest job (a seed CNN on digits, one epoch):
    the vision encoder of the vision-language tests."""
    from .cases import make_trained

    return make_trained(request, tmp_path_factory)("image-classification").directory


@pytest.fixture
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            workspace: Path) -> Any:
    """``trained(task_name)``: that task's smallest job, trained once per session (see
    tests/cases.py)."""
    from .cases import make_trained

    return make_trained(request, tmp_path_factory)


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "reader", "GIT_AUTHOR_EMAIL": "reader@example.com",
                "GIT_COMMITTER_NAME": "reader", "GIT_COMMITTER_EMAIL": "reader@example.com"}


def reader_clone(folder: Path) -> Path:
    """What a reader has after ``git clone``: this repository's files (as in the working
    tree, ignored ones left out) committed in a repository of their own, .gitignore included —
    the guide runs there, as a reader runs it (a fresh folder hid that /data/ was git-ignored)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, text=True, check=True)
    clone = folder / "zero2one"
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run(["git", "-C", str(clone), *command], env={**os.environ, **GIT_IDENTITY},
                       check=True)
    return clone


POSTGRES_ENV = "ZERO2ONE_TEST_POSTGRES_URL"


@contextlib.contextmanager
def database(kind: str, tmp_path: Path, name: str) -> Iterator[str]:
    """A store's URL: ``sqlite`` (a file in ``tmp_path``) or ``postgresql`` (a schema of its own
    on the test server: :func:`postgres_schema`)."""
    if kind == "sqlite":
        yield str(tmp_path / f"{name}.db")
        return
    with postgres_schema(name) as url:
        yield url


@contextlib.contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A URL of the test PostgreSQL server (``.ci/run`` starts one) whose connections use a
    schema of their own, dropped afterwards: tests on other pytest workers write at the same
    time. Skips the test where no server is set."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_ENV} (.ci/run starts one)")
    import sqlalchemy as sa

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as db:
            db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
