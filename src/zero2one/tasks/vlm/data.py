"""Question-answer data about images: made from scikit-learn's digits ("Which digit is
this?"), from a captioned image folder (``zero2one datasets make shapes --captions``: its colour,
its shape, a description), or read from a JSONL file of (image, question, answer, type).

Splits are by image, seeded and stratified by the first answer, so no held-out image was seen
in training under another question.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zero2one.errors import DataError
from zero2one.tasks.vision.data import IMAGE_SUFFIXES, read_image
from zero2one.tasks.vlm.config import VLDataConfig

DIGIT_QUESTION = "Which digit is this?"
# a caption file "a red star" answers all three
CAPTION_QUESTIONS = (("colour", "What colour is the shape?"), ("shape", "What shape is this?"),
                     ("describe", "Describe the picture."))
MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True)
class Question:
    image: int  # index into VLData.images
    question: str
    answer: str
    kind: str  # the question type: accuracy is reported per type


@dataclass
class VLData:
    images: list[Any]  # PIL images
    splits: dict[str, list[Question]]  # train, val, test
    source: str
    fingerprint: dict[str, Any]


def load_questions(cfg: VLDataConfig, seed: int) -> VLData:
    source = cfg.source
    if source == "sklearn:digits":
        images, questions = _digits()
    elif source.startswith("folder:"):
        images, questions = _captioned(Path(source.removeprefix("folder:")))
    elif source.startswith("jsonl:"):
        images, questions = _jsonl(Path(source.removeprefix("jsonl:")))
    else:
        raise DataError(f"data.source {source!r}: use sklearn:digits, folder:PATH (captioned "
                        "images) or jsonl:PATH")
    if len(images) < 10:
        raise DataError(f"{source}: {len(images)} images; at least 10 are needed to hold some out")
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.tobytes())
    for q in questions:
        digest.update(f"{q.image}\0{q.question}\0{q.answer}\0{q.kind}\n".encode())
    splits = _split(questions, cfg, seed)
    kinds = sorted({q.kind for q in questions})
    return VLData(images, splits, source, {
        "sha256": digest.hexdigest(), "rows": len(questions), "images": len(images),
        "question_types": kinds})


def _digits() -> tuple[list[Any], list[Question]]:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * (255 / 16), 0, 255).astype(np.uint8)
    images = [Image.fromarray(p, "L") for p in pixels]
    return images, [Question(i, DIGIT_QUESTION, str(int(y)), "digit")
                    for i, y in enumerate(digits.target)]


def _captioned(root: Path) -> tuple[list[Any], list[Question]]:
    """Every image with a caption file "a COLOUR SHAPE" beside it: three questions each."""
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    images: list[Any] = []
    questions: list[Question] = []
    for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        caption_file = file.with_suffix(".txt")
        if not caption_file.is_file():
            continue
        caption = " ".join(caption_file.read_text(errors="replace").split())
        words = caption.split()
        if len(words) != 3 or words[0] not in ("a", "an"):
            raise DataError(f"{caption_file}: the caption {caption!r} is not \"a COLOUR SHAPE\" "
                            "(use jsonl:PATH for free-form questions)")
        index = len(images)
        images.append(read_image(file.read_bytes(), name=str(file)))
        answers = {"colour": words[1], "shape": words[2], "describe": caption}
        questions += [Question(index, text, answers[kind], kind)
                      for kind, text in CAPTION_QUESTIONS]
    if not images:
        raise DataError(f"{root}: no image has a caption file beside it (IMAGE.txt); make "
                        "one with: zero2one datasets make shapes OUT --captions")
    return images, questions


def _jsonl(path: Path) -> tuple[list[Any], list[Question]]:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    images: list[Any] = []
    seen: dict[Path, int] = {}
    questions: list[Question] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            file = (path.parent / str(record["image"])).resolve()
            question, answer = str(record["question"]), str(record["answer"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{number}: a record needs image, question and answer "
                            f"({type(exc).__name__}: {exc})") from None
        if not question.strip() or not answer.strip() or len(question) > MAX_QUESTION_CHARS:
            raise DataError(f"{path}:{number}: empty question or answer, or a question over "
                            f"{MAX_QUESTION_CHARS} characters")
        if file not in seen:
            try:
                blob = file.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}:{number}: cannot read {file} "
                                f"({exc.strerror or exc})") from None
            seen[file] = len(images)
            images.append(read_image(blob, name=str(file)))
        questions.append(Question(seen[file], question, answer,
                                  str(record.get("type") or "answer")))
    return images, questions


def _split(questions: list[Question], cfg: VLDataConfig,
           seed: int) -> dict[str, list[Question]]:
    """By image: stratified by each image's first answer where every answer is common enough."""
    from sklearn.model_selection import train_test_split

    first: dict[int, str] = {}
    for q in questions:
        first.setdefault(q.image, q.answer)
    ids = np.array(sorted(first))
    labels = np.array([first[i] for i in ids])
    held = cfg.val_size + cfg.test_size

    def stratify(values: np.ndarray, share: float) -> np.ndarray | None:
        _, counts = np.unique(values, return_counts=True)
        enough = counts.min() * min(share, 1 - share) >= 1 and len(counts) < len(values) * share
        return values if enough else None

    try:
        train, rest = train_test_split(ids, test_size=held, random_state=seed,
                                       stratify=stratify(labels, held))
        rest_labels = np.array([first[i] for i in rest])
        share = cfg.test_size / held
        val, test = train_test_split(rest, test_size=share, random_state=seed,
                                     stratify=stratify(rest_labels, share))
    except ValueError as exc:
        raise DataError(f"cannot split {len(ids)} images into train, val and test: {exc}") \
            from None
    where = {**{int(i): "train" for i in train}, **{int(i): "val" for i in val},
             **{int(i): "test" for i in test}}
    splits: dict[str, list[Question]] = {"train": [], "val": [], "test": []}
    for q in questions:
        splits[where[q.image]].append(q)
    return splits
