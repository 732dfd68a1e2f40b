"""The step-by-step guide (docs/guide.md, docs/guide.zh-CN.md) never rots: both languages show
the same commands, link to files that exist, and every ``sh`` block runs — top to bottom in one
workspace, with smaller epochs and steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, free_port, reader_clone
from .zygote import Zygote

GUIDES = [REPO / "docs/guide.md", REPO / "docs/guide.zh-CN.md"]
READMES = [REPO / "README.md", REPO / "README.zh-CN.md"]

# what the test changes so that the guide runs in minutes: (command as written, what it gets)
SMALL = [
    ("zero2one train recipes/digits-cnn.yaml", "zero2one train recipes/digits-cnn.yaml "
     "--set train.epochs=1"),
    ("--per-class 1000", "--per-class 30"),
    ("zero2one train recipes/shapes-cnn.yaml", "zero2one train recipes/shapes-cnn.yaml "
     "--set train.epochs=1"),
    ("zero2one train recipes/smollm2-lora.yaml", "zero2one train recipes/smollm2-lora.yaml "
     "--set train.max_steps=2 --set eval.samples=1 --set eval.sample_tokens=4"),
    ("zero2one train recipes/digits-diffusion.yaml", "zero2one train "
     "recipes/digits-diffusion.yaml --set train.steps=4 --set train.batch_size=8 "
     "--set train.sample_every=2 --set train.checkpoint_every=2 --set sample.steps=2 "
     "--set eval.images_per_prompt=2 --set eval.guidance_scales=[1,3] "
     "--set eval.judge_epochs=1"),
    ("--method qat --epochs 3", "--method qat --epochs 1"),
    ("zero2one train recipes/keras-cnn.yaml", "zero2one train recipes/keras-cnn.yaml "
     "--set train.epochs=1"),
]


def blocks(path: Path, language: str = "sh") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.M | re.S)


def commands(block: str) -> list[str]:
    """The block's commands (continuation lines joined), without comments."""
    joined = block.replace("\\\n", " ")
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_both_languages_show_the_same_commands() -> None:
    english, chinese = GUIDES
    for language in ("sh", "bash"):
        assert [commands(b) for b in blocks(english, language)] == [
            commands(b) for b in blocks(chinese, language)], language
    assert len(blocks(english)) >= 12


def test_the_guides_link_only_to_what_exists() -> None:
    for page in [*GUIDES, *READMES]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}"


def test_the_chinese_readme_quick_start_is_run_by_the_guide_test() -> None:
    """README.zh-CN.md takes a reader from a clone to a served model: past the set-up
    (``make demo``), each of its commands is one the guide test runs."""
    run = [" ".join(c.rstrip(" &").split()) for b in blocks(GUIDES[0]) for c in commands(b)]
    shown = blocks(READMES[1], "bash")
    last = next(i for i, b in enumerate(shown) if "localhost:8000/predict" in b)
    quick = [" ".join(c.split()) for b in shown[:last + 1] for c in commands(b)
             if not c.startswith(("git clone", "make ", "source "))]
    assert len(quick) >= 7
    for command in quick:
        assert any(c.startswith(command) for c in run), f"README.zh-CN.md: {command!r}"


def test_the_small_settings_still_match_the_guide() -> None:
    text = GUIDES[0].read_text()
    for written, _ in SMALL:
        assert written in text, f"{written!r} is no longer in the guide; update SMALL"


@pytest.mark.slow(seconds=150)
def test_every_guide_command_runs(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "ZERO2ONE_HOME": str(tmp_path / ".zero2one"), "GIT_AUTHOR_NAME": "guide",
           "GIT_AUTHOR_EMAIL": "guide@example.com", "GIT_COMMITTER_NAME": "guide",
           "GIT_COMMITTER_EMAIL": "guide@example.com"}
    env.pop("MLFLOW_TRACKING_URI", None)
    clone = reader_clone(tmp_path)
    env["ZERO2ONE_HOME"] = str(clone / ".zero2one")  # the clone's own workspace (git-ignored)
    port = str(free_port())
    outputs = []
    # the shells' `zero2one` forks from a process that imported zero2one's libraries once
    # (tests/zygote.py): each of the forty commands would spend 3-5 CPU-seconds importing them
    with Zygote(env, clone) as zygote:
        env = zygote.env
        for block in blocks(GUIDES[0]):
            for written, small in SMALL:
                block = block.replace(written, small)
            block = re.sub(r"(?<=--port )8000\b|(?<=:)8000\b", port, block)  # not 13800138000
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=clone, env=env,
                                  capture_output=True, text=True, timeout=900, check=False)
            assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            outputs.append(done.stdout)
    everything = "\n".join(outputs)
    for expected in ("registered: models:/iris-svc/1", "reproduced", "models:/cancer-dask/1"):
        assert expected in everything, expected
    assert '"result":[0],"labels":["setosa"]' in everything.replace(" ", "")  # the /predict
    assert (clone / "sevens" / "grid.png").is_file()
    assert "registered: models:/keras-cnn/1" in everything
    assert "[PHONE]" in everything  # the guide's phone number, as written, is redacted
    assert (clone / "build" / "iris" / "Dockerfile").is_file()
    assert sorted(p.name for p in (clone / "scored-parts").glob("*.parquet"))
    # the data step versioned the file in the clone's git, and left nothing else staged
    tracked = subprocess.run(["git", "-C", str(clone), "ls-files", "data"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked == ["data/iris/iris.csv.dvc"], tracked


def test_files_the_docs_name_exist() -> None:
    """`--input digit.png` named a file no one had: every examples/ or recipes/ path the
    READMEs and guides mention is in the repository."""
    for page in [*GUIDES, *READMES]:
        for path in re.findall(r"(?<![\w/.-])((?:examples|recipes)/[\w./-]+\.\w+)",
                               page.read_text()):
            assert (REPO / path).exists(), f"{page.name} names {path}"
    # the README's images to predict: shipped (the guide makes its own digit-0.png first)
    readme = READMES[0].read_text()
    images = re.findall(r"(?:--input |file=@)([\w./-]+\.png)", readme)
    assert images and all((REPO / image).is_file() for image in images), images


def test_chinese_docs_use_full_width_punctuation_and_one_term() -> None:
    """Chinese prose takes ，：；（） beside Chinese characters (code, links and commands keep
    theirs), and "negative prompt" is translated one way in the docs and the playground."""
    cjk = r"[\u4e00-\u9fff]"
    for page in (GUIDES[1], READMES[1]):
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        text = re.sub(r"`[^`\n]*`|\]\([^)\n]*\)|https?://\S+", "", text)
        half = re.findall(rf"{cjk}[,:;(]|[,;)]{cjk}", text)
        assert not half, f"{page.name}: {half[:10]}"
        assert "负面提示词" not in page.read_text()
    assert "反向提示词" in (REPO / "src/zero2one/serving/static/playground.js").read_text()


def test_setup_takes_torch_from_pytorchs_cpu_index_with_a_fallback() -> None:
    """On a user's Linux machine `pip install torch==2.13.0` pulls the CUDA build: make setup
    asks PyTorch's CPU wheel index first, falls back to the default index, and TORCH_INDEX
    chooses another build; the README says so."""
    done = subprocess.run(["make", "-n", "-B", "setup", "TORCH_INDEX=https://example.test/cu1"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    command = " ".join(done.stdout.replace("\\\n", " ").split())
    assert "--index-url https://example.test/cu1 torch==2.13.0 || " in command, command
    assert "pip install -q torch==2.13.0" in command.split("||")[1]
    default = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert "--index-url https://download.pytorch.org/whl/cpu" in default
    assert "TORCH_INDEX=" in READMES[0].read_text()


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="xllamacpp's prebuilt wheels are for Linux x86-64")
def test_setup_installs_the_default_engine_from_a_wheel_without_a_compiler(
        tmp_path: Path) -> None:
    """make setup installs llama.cpp's server engine from requirements/llama-server.txt, hash
    checked; pip resolves it to a prebuilt wheel for this machine, so nothing compiles (a
    source distribution is refused by --only-binary)."""
    import json

    done = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout
    assert "--require-hashes -r requirements/llama-server.txt" in done
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--only-binary",
         ":all:", "--require-hashes", "-r", str(REPO / "requirements/llama-server.txt"),
         "--ignore-installed", "--report", str(report), "-q"],
        capture_output=True, text=True, timeout=600, check=False)
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    (item,) = json.loads(report.read_text())["install"]
    assert item["metadata"]["name"] == "xllamacpp"
    assert item["download_info"]["url"].endswith(".whl"), item["download_info"]["url"]
    assert item["is_direct"] is False and "building" not in resolved.stderr.lower()
