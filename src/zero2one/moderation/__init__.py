"""Moderation of prompts and outputs, offline: phrase lists, validated personal data, and a
plug-in point for a classifier or an external moderation API.

    >>> from zero2one.moderation import load_moderator
    >>> moderator = load_moderator("default")          # or a YAML file (ModerationConfig)
    >>> verdict = moderator.check("call me at 13800138000, you idiot")
    >>> verdict.flagged, verdict.categories, moderator.redact(text, verdict)

A :class:`Verdict` lists every hit (category, rule, source, score, span) and what the config
says to do with it: ``block`` (the request is refused, the output withheld), ``redact`` (the
span is replaced), ``flag`` (recorded only). Used by ``zero2one serve --moderation``,
``zero2one generate``/``generate-image --moderation`` and ``zero2one moderate``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zero2one.errors import RecipeError, require
from zero2one.moderation import offensive, pii
from zero2one.moderation.lists import PhraseLists, builtin_lists, load_file
from zero2one.moderation.pii import KINDS, LABELS
from zero2one.recipe import format_validation_error

Action = Literal["block", "redact", "flag", "off"]
CATEGORIES = ("profanity", "harassment", "hate", "violence", "self-harm", "sexual", "illicit",
              "pii")


class ClassifierConfig(BaseModel):
    """A transformers text-classification directory (safetensors), labels mapped to
    categories; a label's score at or above ``threshold`` is a hit."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    labels: dict[str, str] = Field(description="Classifier label -> category.")
    threshold: float = Field(0.5, gt=0, le=1)


class ImageCheckerConfig(BaseModel):
    """A transformers image classifier's directory (safetensors) that judges generated
    images; a label mapped to a category scoring at or above ``threshold`` withholds it."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    labels: dict[str, str] = Field(description="Classifier label -> category.")
    threshold: float = Field(0.5, gt=0, le=1)


class ApiConfig(BaseModel):
    """An external moderation API in OpenAI's format (POST {input} -> results[0])."""

    model_config = ConfigDict(extra="forbid")
    url: str
    api_key_env: str | None = Field(None, description="Environment variable with the key.")
    timeout: float = Field(5.0, gt=0, le=60)
    on_error: Literal["allow", "block"] = Field(
        "block", description="When the API fails: let the text through or refuse it.")
    categories: dict[str, str] = Field(default_factory=dict,
                                       description="API category -> zero2one category.")


class ModerationConfig(BaseModel):
    """What ``--moderation FILE.yaml`` holds (every field optional)."""

    model_config = ConfigDict(extra="forbid")
    builtin_lists: bool = Field(True, description="zero2one's lists and glin-profanity's.")
    builtin_classifier: bool = Field(True, description="The offline offensive-language "
                                     "classifier (scored as harassment).")
    builtin_threshold: float = Field(0.8, gt=0, le=1, description="Its score that is a hit.")
    lists: list[Path] = Field(default_factory=list, description="More list files (YAML).")
    actions: dict[str, Action] = Field(default_factory=dict,
                                       description="Category -> action (default: block; pii: "
                                       "redact).")
    pii: dict[str, Action] = Field(default_factory=dict, description="email, phone, card, "
                                   "cn_id, ip -> action (default: the pii category's).")
    inputs: bool = Field(True, description="Check prompts and messages.")
    outputs: Literal["block", "redact", "regenerate", "off"] = Field(
        "block", description="A flagged output: withheld, redacted, or generated again (up to "
        "`retries` times, then withheld).")
    retries: int = Field(2, ge=0, le=5)
    classifier: ClassifierConfig | None = None
    api: ApiConfig | None = None
    image_checker: ImageCheckerConfig | None = Field(
        None, description="Generated images are judged by this classifier (image prompts go "
        "through the text checks).")
    audit: Path | None = Field(None, description="Append every decision to this JSONL file.")
    audit_text: bool = Field(False, description="Keep the flagged text in the audit log.")

    @model_validator(mode="after")
    def _known(self) -> ModerationConfig:
        extra = set(self.actions) - set(CATEGORIES) - self._list_categories()
        if extra:
            raise ValueError(f"actions: unknown category {', '.join(sorted(extra))}; known: "
                             f"{', '.join(CATEGORIES)} and those of the list files")
        unknown = set(self.pii) - set(KINDS)
        if unknown:
            raise ValueError(f"pii: unknown kind {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(KINDS)}")
        return self

    def _list_categories(self) -> set[str]:
        return {c for path in self.lists for c in load_file(path)}


@dataclass(frozen=True)
class Hit:
    category: str
    rule: str  # the phrase, PII kind, classifier label or API category
    source: str  # list:NAME, pii, classifier, api
    action: Action
    score: float = 1.0
    start: int | None = None  # span in the checked text (lists, PII)
    end: int | None = None


@dataclass
class Verdict:
    hits: list[Hit] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(h.action != "off" for h in self.hits)

    @property
    def blocked(self) -> bool:
        return any(h.action == "block" for h in self.hits)

    @property
    def categories(self) -> list[str]:
        return sorted({h.category for h in self.hits if h.action != "off"})

    def reason(self) -> str:
        """One line naming what was found: ``harassment (list:default: "idiot")``."""
        parts = []
        for hit in self.hits:
            if hit.action == "block":
                shown = f'"{hit.rule}"' if hit.source.startswith("list") else hit.rule
                parts.append(f"{hit.category} ({hit.source}: {shown})")
        return ", ".join(dict.fromkeys(parts))

    def openai(self) -> dict[str, Any]:
        """One entry of ``/v1/moderations``'s ``results``."""
        scores = {c: 0.0 for c in CATEGORIES}
        for hit in self.hits:
            if hit.action != "off":
                scores[hit.category] = max(scores.get(hit.category, 0.0), hit.score)
        return {"flagged": self.flagged,
                "categories": {c: s > 0 for c, s in scores.items()},
                "category_scores": scores,
                "zero2one": {"blocked": self.blocked, "hits": [
                    {"category": h.category, "rule": h.rule, "source": h.source,
                     "action": h.action, "score": h.score, "start": h.start, "end": h.end}
                    for h in self.hits]}}


class Moderator:
    def __init__(self, config: ModerationConfig) -> None:
        self.config = config
        lists = builtin_lists() if config.builtin_lists else {}
        for path in config.lists:
            lists[f"{Path(path).name}"] = load_file(path)
        self.lists = PhraseLists(lists)
        if config.builtin_classifier:
            offensive.model()  # trained now (about a second), not at the first request
        self.classifier = _Classifier(config.classifier) if config.classifier else None
        self.image_checker = (_Classifier(config.image_checker, reads="image")
                              if config.image_checker else None)
        self.api = config.api
        self._audit_lock = threading.Lock()

    def action(self, category: str) -> Action:
        default: Action = "redact" if category == "pii" else "block"
        return self.config.actions.get(category, default)

    def check(self, text: str, *, where: str = "input") -> Verdict:
        """Every check on ``text``; the decision is written to the audit log."""

        verdict = Verdict()
        for hit in self.lists.find(text):
            verdict.hits.append(Hit(hit.category, hit.phrase, f"list:{hit.source}",
                                    self.action(hit.category), 1.0, hit.start, hit.end))
        pii_action = self.action("pii")
        for found in pii.find(text):
            action = self.config.pii.get(found.kind, pii_action)
            if action != "off":
                verdict.hits.append(Hit("pii", found.kind, "pii", action, 1.0, found.start,
                                        found.end))
        if self.config.builtin_classifier and text.strip():
            score = offensive.score(text)
            if score >= self.config.builtin_threshold:
                verdict.hits.append(Hit("harassment", "offensive language", "classifier:builtin",
                                        self.action("harassment"), score))
        if self.classifier is not None:
            for category, label, score in self.classifier.scores(text):
                verdict.hits.append(Hit(category, label, "classifier", self.action(category),
                                        score))
        if self.api is not None:
            verdict.hits += self._api(text)
        self._audit(text, where, verdict)
        return verdict

    def check_image(self, image: Any, *, where: str = "image") -> Verdict:
        """A generated image (PIL, or PNG bytes) through the image checker, if one is
        configured (an empty verdict otherwise)."""
        verdict = Verdict()
        if self.image_checker is None:
            return verdict
        if isinstance(image, bytes):
            import io

            from PIL import Image

            image = Image.open(io.BytesIO(image)).convert("RGB")
        for category, label, score in self.image_checker.scores(image):
            verdict.hits.append(Hit(category, label, "image-checker", self.action(category),
                                    score))
        self._audit(f"<image {getattr(image, 'size', '')}>", where, verdict)
        return verdict

    def redact(self, text: str, verdict: Verdict) -> str:
        """``text`` with every redacted (and blocked) span replaced by its label."""

        spans = sorted((h for h in verdict.hits if h.start is not None and h.end is not None
                        and h.action in ("redact", "block")), key=lambda h: h.start or 0)
        out, position = [], 0
        for hit in spans:
            assert hit.start is not None and hit.end is not None
            if hit.start < position:
                continue
            out.append(text[position: hit.start])
            out.append(LABELS.get(hit.rule, "[REDACTED]") if hit.category == "pii"
                       else "[REDACTED]")
            position = hit.end
        out.append(text[position:])
        return "".join(out)

    def _api(self, text: str) -> list[Hit]:
        import os
        import urllib.request

        assert self.api is not None
        headers = {"Content-Type": "application/json"}
        if self.api.api_key_env and os.environ.get(self.api.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api.api_key_env]}"
        request = urllib.request.Request(self.api.url, json.dumps({"input": text}).encode(),
                                         headers)
        try:
            with urllib.request.urlopen(request, timeout=self.api.timeout) as answer:
                result = json.load(answer)["results"][0]
        except Exception as exc:  # any failure of the remote service
            if self.api.on_error == "allow":
                return []
            return [Hit("api-error", type(exc).__name__, "api", "block", 1.0)]
        hits = []
        for name, flagged in (result.get("categories") or {}).items():
            if flagged:
                category = self.api.categories.get(name, name)
                score = float((result.get("category_scores") or {}).get(name, 1.0))
                hits.append(Hit(category, name, "api", self.action(category), score))
        return hits

    def _audit(self, text: str, where: str, verdict: Verdict) -> None:
        if self.config.audit is None or not verdict.hits:
            return
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                  "where": where, "blocked": verdict.blocked,
                  "sha256": hashlib.sha256(text.encode()).hexdigest(),
                  "hits": [{"category": h.category, "rule": h.rule, "source": h.source,
                            "action": h.action, "score": round(h.score, 4)}
                           for h in verdict.hits]}
        if self.config.audit_text:
            record["text"] = text
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._audit_lock, open(self.config.audit, "a", encoding="utf-8") as fh:
            fh.write(line)


class _Classifier:
    """A transformers pipeline (text or image classification) from a local directory."""

    def __init__(self, config: ClassifierConfig | ImageCheckerConfig,
                 reads: str = "text") -> None:
        require("transformers", "text")
        from transformers import pipeline

        if not (config.path / "config.json").exists():
            raise RecipeError(f"moderation classifier {config.path}: not a transformers "
                              "directory (config.json is missing)")
        self.config, self.reads = config, reads
        extra = ({"tokenizer": str(config.path)} if reads == "text"
                 else {"image_processor": str(config.path)})
        make: Any = pipeline  # typed per task literal; the pipeline is one of two here
        self.pipe = make(f"{reads}-classification", model=str(config.path), top_k=None,
                         device="cpu", model_kwargs={"use_safetensors": True}, **extra)
        known = {str(v) for v in (self.pipe.model.config.id2label or {}).values()}
        missing = set(config.labels) - known
        if missing:
            raise RecipeError(f"moderation classifier {config.path}: no label "
                              f"{', '.join(sorted(missing))}; it has {', '.join(sorted(known))}")

    def scores(self, item: Any) -> list[tuple[str, str, float]]:
        found = []
        if self.reads == "text":
            results: Any = self.pipe(item[:4000], truncation=True)[0]
        else:
            results = self.pipe(item)
        for item in results:
            category = self.config.labels.get(item["label"])
            if category is not None and item["score"] >= self.config.threshold:
                found.append((category, item["label"], float(item["score"])))
        return found


def load_moderator(spec: str | Path) -> Moderator:
    """``default`` (the built-in checks) or a YAML file of :class:`ModerationConfig`."""
    import yaml

    if str(spec) == "default":
        return Moderator(ModerationConfig())
    path = Path(spec)
    if not path.is_file():
        raise RecipeError(f"--moderation {spec}: use 'default' or a YAML file (not found)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a moderation config is a mapping of settings")
    base = path.parent
    for key in ("lists",):
        data[key] = [str(base / p) if not Path(p).is_absolute() else p
                     for p in data.get(key) or []]
    try:
        return Moderator(ModerationConfig.model_validate(data))
    except ValidationError as exc:
        raise RecipeError(f"{path}: {format_validation_error(exc)}") from None


def evaluate(moderator: Moderator, records: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """Precision, recall and F1 per category (and for flagged-or-not) on labelled texts:
    ``records`` are (text, categories), an empty list meaning clean."""

    def score(tp: int, fp: int, fn: int) -> dict[str, Any]:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"support": tp + fn, "precision": round(precision, 4),
                "recall": round(recall, 4), "f1": round(f1, 4), "tp": tp, "fp": fp, "fn": fn}

    counts: dict[str, list[int]] = {}
    flagged = [0, 0, 0]
    for text, labels in records:
        found = set(moderator.check(text, where="eval").categories)
        wanted = set(labels)
        for category in found | wanted:
            tally = counts.setdefault(category, [0, 0, 0])
            tally[0 if category in found and category in wanted else
                  1 if category in found else 2] += 1
        if found and wanted:
            flagged[0] += 1
        elif found:
            flagged[1] += 1
        elif wanted:
            flagged[2] += 1
    return {"texts": len(records),
            "categories": {c: score(*t) for c, t in sorted(counts.items())},
            "flagged": score(*flagged)}
