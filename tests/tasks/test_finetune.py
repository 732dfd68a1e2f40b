"""The text-generation task: data forms and their bad inputs, assistant-only labels, LoRA and
full fine-tuning, resume, saving and loading by reference, all on a tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from zero2one.api import load, train
from zero2one.catalog import get_task, validate
from zero2one.errors import DataError, IntegrityError, RecipeError, SchemaError
from zero2one.tasks.textgen.config import TextDataConfig
from zero2one.tasks.textgen.data import IGNORE, pack, read_records, split, tokenize

from ..conftest import fit_until_interrupted

FACTS = [("what does zero2one do", "zero2one trains models"),
         ("how do models answer", "the model answers questions"),
         ("what does the server do", "zero2one serves models over http"),
         ("say hello", "hello world, hello model")]


def chats(n: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": FACTS[i % 4][0]},
                          {"role": "assistant", "content": FACTS[i % 4][1]}]} for i in range(n)]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def recipe(tiny_lm: Path, data: Path, **train_: Any) -> dict[str, Any]:
    return {
        "task": "text-generation", "name": "lm-test", "seed": 0,
        "data": {"source": str(data), "val_size": 0.25, "max_length": 64},
        "model": {"base": str(tiny_lm), "method": "lora",
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["all-linear"]}},
        "train": {"epochs": 4, "batch_size": 4, "lr": 0.02, "warmup": 0, "save_steps": 2,
                  "logging_steps": 1, **train_},
        "eval": {"samples": 1, "sample_tokens": 6},
        "track": {"enabled": False},
    }


@pytest.fixture
def chat_file(workspace: Path) -> Path:
    return write_jsonl(workspace / "chats.jsonl", chats(24))


# ---- data ---------------------------------------------------------------------------------


def test_text_forms_are_read(tmp_path: Path) -> None:
    config = TextDataConfig(source="x")
    (tmp_path / "a.txt").write_text("first paragraph\nstill first\n\nsecond\n\n\n")
    records = read_records(str(tmp_path / "a.txt"), config)
    assert records.kind == "text" and [r["text"] for r in records.rows] == [
        "first paragraph\nstill first", "second"]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("third")
    shutil.copy(tmp_path / "a.txt", folder / "a.txt")
    assert len(read_records(str(folder), config).rows) == 3
    write_jsonl(tmp_path / "t.jsonl", [{"body": "one"}, {"body": "two"}])
    records = read_records(str(tmp_path / "t.jsonl"), TextDataConfig(source="x", text_field="body"))
    assert [r["text"] for r in records.rows] == ["one", "two"]
    assert read_records(str(write_jsonl(tmp_path / "c.jsonl", chats(2))), config).kind == "chat"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "no assistant message"),
        ('{"messages": [{"role": "wizard", "content": "hi"}]}\n', "unknown role 'wizard'"),
        ('{"messages": [{"role": "assistant", "content": " "}]}\n', "empty content"),
        ('{"messages": []}\n', "`messages` must be a non-empty list"),
        ('{"messages": [{"role": "user", "content": "hi", "x": 1}]}\n', "expected {role, content}"),
        ('{"text": "ok"}\n{"text": \n', "c.jsonl:2: not valid JSON"),
        ('[1, 2]\n', "c.jsonl:1: each line must be a JSON object"),
        ('{"text": ""}\n', "no text in field 'text'"),
        ('\n\n', "no examples"),
    ],
)
def test_bad_records_are_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "c.jsonl").write_text(content)
    with pytest.raises(DataError, match=message.replace("{", r"\{").replace("[", r"\[")):
        read_records(str(tmp_path / "c.jsonl"), TextDataConfig(source="x"))


def test_bad_files(tmp_path: Path) -> None:
    config = TextDataConfig(source="x")
    with pytest.raises(DataError, match="data not found"):
        read_records(str(tmp_path / "none.jsonl"), config)
    (tmp_path / "bin.txt").write_bytes(b"ok \xff\xfe")
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_records(str(tmp_path / "bin.txt"), config)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        read_records(str(tmp_path / "x.csv"), config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt files"):
        read_records(str(tmp_path / "empty"), config)
    small = write_jsonl(tmp_path / "small.jsonl", chats(3))
    with pytest.raises(DataError, match="3 examples; need at least 4"):
        split(read_records(str(small), config), config, 0)
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": "a"}] * 5)
    mixed = TextDataConfig(source=str(small), val_source=str(texts))
    with pytest.raises(DataError, match="text records, but the training data holds chat"):
        split(read_records(str(small), mixed), mixed, 0)


def test_only_assistant_tokens_carry_a_loss(tiny_lm: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    config = TextDataConfig(source="x", max_length=256)
    conversation = {"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"},
        {"role": "assistant", "content": "hello world"}, {"role": "user", "content": "again"},
        {"role": "assistant", "content": "hello model"}]}
    from datasets import Dataset

    row = tokenize(Dataset.from_list([conversation]), tokenizer, "chat", config)[0]
    labelled = [t for t in row["labels"] if t != IGNORE]
    text = tokenizer.decode(labelled)
    # both answers with the template's end of turn; no system or user words
    assert text == "hello world\nhello model\n"
    assert len(row["labels"]) == len(row["input_ids"])
    cut = tokenize(Dataset.from_list([conversation]), tokenizer, "chat",
                   TextDataConfig(source="x", max_length=len(row["input_ids"]) - 3))[0]
    assert cut["input_ids"] == row["input_ids"][:-3] and cut["labels"] == row["labels"][:-3]


def test_the_loss_reads_logits_only_where_a_label_follows(tiny_lm: Path) -> None:
    """labelled_logits (the validation loss's and the vision-language projector's) gives the
    loss transformers computes from every position's logits — plain and under LoRA — and
    nothing for a batch without labels."""
    import torch
    from transformers import AutoModelForCausalLM

    from zero2one.tasks.textgen.config import FinetuneConfig
    from zero2one.tasks.textgen.train import labelled_logits, wrap

    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_pretrained(tiny_lm)
    ids = torch.randint(3, plain.config.vocab_size, (3, 12))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 5:9], labels[1, 7:12], labels[2, 2:4] = ids[0, 5:9], ids[1, 7:12], ids[2, 2:4]
    mask = torch.ones_like(ids)
    lora = wrap(AutoModelForCausalLM.from_pretrained(tiny_lm), FinetuneConfig.model_validate(
        {"base": str(tiny_lm), "method": "lora", "lora": {"target_modules": ["q_proj"]}}))
    for model in (plain, lora):
        expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        logits, targets = labelled_logits(model, labels, input_ids=ids, attention_mask=mask)
        assert logits.shape[:2] == targets.shape == (3, 9)  # 2-3 and 5-11 are labelled
        got = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                ignore_index=IGNORE)
        assert torch.allclose(got, expected, atol=1e-5), (float(got), float(expected))
    logits, targets = labelled_logits(plain, torch.full_like(ids, IGNORE), input_ids=ids)
    assert logits.shape[1] == targets.shape[1] == 0


def test_the_first_step_loss_is_the_loss_per_token_of_the_whole_batch(
        tiny_lm: Path, workspace: Path) -> None:
    """Training computes logits only at labelled positions and divides the summed loss by the
    labelled tokens of the whole accumulated batch: with the adapters still zero (LoRA's B
    starts at 0, no dropout), the first logged loss over two micro-batches of unequal length
    is the base model's loss per token over the same four chats, measured apart."""
    data = write_jsonl(workspace / "four.jsonl", chats(4))
    cfg = recipe(tiny_lm, data, batch_size=2, gradient_accumulation=2, max_steps=1,
                 epochs=1, lr=1e-9)
    cfg["data"] = {"source": str(data), "val_source": str(data), "max_length": 64}
    cfg["eval"] = {"samples": 0}
    done = train(cfg, out=workspace / "m")
    history = json.loads((workspace / "m" / "manifest.json").read_text())["training"]["history"]
    first = next(row["train_loss"] for row in history if "train_loss" in row)
    assert first == pytest.approx(done.metrics["base_val_loss"], rel=1e-4)


def test_truncation_that_leaves_nothing_to_learn_is_an_error(tiny_lm: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    long_question = {"messages": [{"role": "user", "content": "hello " * 50},
                                  {"role": "assistant", "content": "hi"}]}
    with pytest.raises(DataError, match="no example has trainable tokens within max_length=16"):
        tokenize(Dataset.from_list([long_question]), tokenizer, "chat",
                 TextDataConfig(source="x", max_length=16))


def test_packing_fills_blocks() -> None:
    from datasets import Dataset

    rows = Dataset.from_list([{"input_ids": list(range(n)), "labels": list(range(n))}
                              for n in (5, 7, 9)])
    blocks = pack(rows, 8)
    assert [len(b) for b in blocks["input_ids"]] == [8, 8, 5]
    assert [t for b in blocks["input_ids"] for t in b] == [*range(5), *range(7), *range(9)]


def test_chat_data_needs_a_chat_template(tiny_lm: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    tokenizer.chat_template = None
    with pytest.raises(DataError, match="needs a model with a chat template"):
        tokenize(Dataset.from_list(chats(2)), tokenizer, "chat", TextDataConfig(source="x"))


# ---- training -----------------------------------------------------------------------------


def test_lora_lowers_validation_loss_and_reloads_the_same(tiny_lm: Path, chat_file: Path,
                                                          workspace: Path) -> None:
    result = train(recipe(tiny_lm, chat_file), out=workspace / "m")
    m = result.metrics
    assert m["val_loss"] < m["base_val_loss"] - 0.2  # a random tiny model learns slowly
    assert m["val_perplexity"] < m["base_val_perplexity"]
    assert 0 < m["trainable_share"] < 0.5 and m["steps"] == 20  # 18 rows: 5 batches of 4, 4 epochs
    files = {p.name for p in (workspace / "m" / "adapter").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= files
    assert not (workspace / "m" / "merged").exists()
    adapter = json.loads((workspace / "m" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] is None  # no path of this machine in the model
    manifest = json.loads((workspace / "m" / "manifest.json").read_text())
    assert manifest["base"] == str(tiny_lm) and manifest["parts"] == {"adapter": "adapter"}
    assert (workspace / "m" / "report" / "losses.png").exists()
    samples = json.loads((workspace / "m" / "report" / "samples.json").read_text())
    assert {"messages", "reference", "base", "tuned"} <= set(samples[0])
    model = load(workspace / "m")
    # each epoch's evaluation is the loss per trained token; the last one is the reported
    # loss (not measured a second time) and what the reloaded model measures
    evaluated = [row["val_loss"] for row in manifest["training"]["history"] if "val_loss" in row]
    assert len(evaluated) == 4 and evaluated[-1] == m["val_loss"]
    assert model.evaluate(model.load_data())["val_loss"] == pytest.approx(m["val_loss"],
                                                                          rel=1e-4)
    prompts = ["what does zero2one do", "say hello"]
    assert model.predict(prompts, max_new_tokens=8) == model.predict(prompts, max_new_tokens=8)
    # batch completion of a CSV's prompt column, as `zero2one predict` does
    from zero2one.cli.main import main

    (workspace / "prompts.csv").write_text("id,prompt\n1,say hello\n2,what does zero2one do\n")
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(workspace / "m"), "--input", str(workspace / "prompts.csv"),
              "--output", str(workspace / "done.csv")])
    assert exc.value.code == 0
    import pandas as pd

    done = pd.read_csv(workspace / "done.csv", keep_default_na=False)
    assert list(done.columns) == ["id", "prompt", "completion"]
    assert done["completion"].tolist() == model.predict(["say hello", "what does zero2one do"],
                                                        max_new_tokens=128)
    (workspace / "bad.csv").write_text("question\nhi\n")
    with pytest.raises(SchemaError, match="completes a `prompt` column; the input has question"):
        model.predict(pd.read_csv(workspace / "bad.csv"))
    with pytest.raises(SchemaError, match="prompt 1: prompt .* exceeds the context window"):
        model.predict(["hello " * 300])


def test_adapter_on_other_base_weights_is_refused(tiny_lm: Path, chat_file: Path,
                                                  workspace: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    base = workspace / "base"
    shutil.copytree(tiny_lm, base)
    train(recipe(base, chat_file, max_steps=2), out=workspace / "m")
    weights = load_file(base / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + torch.ones_like(weights[name])
    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(IntegrityError, match="trained on other weights"):
        load(workspace / "m")


def test_merged_and_full_models_load_alone(tiny_lm: Path, chat_file: Path,
                                           workspace: Path) -> None:
    cfg = recipe(tiny_lm, chat_file, max_steps=4)
    cfg["model"]["save_merged"] = True
    train(cfg, out=workspace / "lora")
    manifest = json.loads((workspace / "lora" / "manifest.json").read_text())
    assert manifest["parts"] == {"adapter": "adapter", "merged": "merged"}
    from_merged = load(workspace / "lora").predict(["say hello"], max_new_tokens=8)
    manifest["parts"].pop("merged")  # the other way: base + adapter, merged at load
    task = get_task("text-generation").load(workspace / "lora", manifest)
    assert task.predict(["say hello"], max_new_tokens=8) == from_merged

    cfg = recipe(tiny_lm, chat_file, max_steps=4)
    cfg["model"]["method"] = "full"
    result = train(cfg, out=workspace / "full")
    assert result.metrics["trainable_share"] == 1.0
    assert (workspace / "full" / "merged" / "model.safetensors").exists()
    assert not (workspace / "full" / "adapter").exists()
    assert load(workspace / "full").predict(["say hello"], max_new_tokens=8)


def test_bad_target_modules_list_the_linear_layers(tiny_lm: Path, chat_file: Path,
                                                   workspace: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.textgen import train as textgen_train

    def too_late(*args: object, **kwargs: object) -> float:
        raise AssertionError("the base model was evaluated before the recipe was checked")

    monkeypatch.setattr(textgen_train, "validation_loss", too_late)
    cfg = recipe(tiny_lm, chat_file)
    cfg["model"]["lora"]["target_modules"] = ["c_attn"]
    with pytest.raises(RecipeError, match=r"no linear layer named c_attn; its linear layers: "
                       r".*q_proj"):
        train(cfg, out=workspace / "m")
    assert not (workspace / "m").exists()
    cfg = recipe(tiny_lm, chat_file)
    cfg["model"].update(method="full", save_merged=True)
    with pytest.raises(RecipeError, match="save_merged applies to methods lora and dpo"):
        validate(cfg)


@pytest.mark.parametrize(("save_steps", "die_at", "resume_at"),
                         [(2, 5, 4),   # mid-epoch (5 steps an epoch)
                          (5, 6, 5)])  # at an epoch's end, where evaluation follows the save
def test_resume_ends_where_an_uninterrupted_run_ends(tiny_lm: Path, chat_file: Path,
                                                     workspace: Path, save_steps: int,
                                                     die_at: int, resume_at: int) -> None:
    cfg = recipe(tiny_lm, chat_file, epochs=2, save_steps=save_steps)
    cfg["model"]["lora"]["dropout"] = 0.1  # random state must be restored too
    full = train(cfg, out=workspace / "full")
    task = fit_until_interrupted(cfg, die_at)
    assert (task.checkpoint_dir() / f"checkpoint-{resume_at}").is_dir()
    half_written = task.checkpoint_dir() / "checkpoint-9"  # killed while saving: never resumed
    half_written.mkdir()
    (half_written / "trainer_state.json").write_text('{"global_st')
    resumed = train(cfg, out=workspace / "resumed", resume=True)
    training = load(workspace / "resumed").manifest["training"]
    assert training["resumed_from"] == resume_at and training["steps"] == 10
    assert resumed.metrics["val_loss"] == pytest.approx(full.metrics["val_loss"], rel=1e-6)
    assert not task.checkpoint_dir().exists()  # cleaned up after success


@pytest.mark.slow
def test_resume_after_kill_9(tiny_lm: Path, chat_file: Path, workspace: Path) -> None:
    """A real `zero2one train` process SIGKILLed once a checkpoint is written; --resume ends
    where an uninterrupted run ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from zero2one.catalog import get_task, validate

    cfg = recipe(tiny_lm, chat_file, epochs=2, save_steps=2)
    full = train(cfg, out=workspace / "full")
    path = workspace / "r.yaml"
    path.write_text(yaml.safe_dump(cfg))
    checkpoints = get_task("text-generation")(validate(cfg)).checkpoint_dir()
    process = subprocess.Popen([sys.executable, "-m", "zero2one.cli.main", "train", str(path),
                                "--out", str(workspace / "killed"), "--quiet"],
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (workspace / "killed").exists()
    resumed = train(path, out=workspace / "resumed", resume=True)
    assert load(workspace / "resumed").manifest["training"]["resumed_from"] >= 2
    assert resumed.metrics["val_loss"] == pytest.approx(full.metrics["val_loss"], rel=1e-6)


def test_tracked_model_generates_by_reference(tiny_lm: Path, chat_file: Path, workspace: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one import tracking
    from zero2one.cli.main import main

    cfg = recipe(tiny_lm, chat_file, max_steps=4)
    cfg.update(track={"enabled": True}, register="lm-test")
    result = train(cfg)
    assert result.registered_uri == "models:/lm-test/1"
    history = tracking.client().get_metric_history(result.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    with pytest.raises(SystemExit) as exc:
        main(["generate", "models:/lm-test/1", "-p", "say hello", "--chat", "--temperature",
              "0", "--max-new-tokens", "6", "--json"])
    assert exc.value.code == 0
    assert json.loads(capsys.readouterr().out)["model"] == "models:/lm-test/1"
    with pytest.raises(SystemExit) as exc:
        main(["generate", "models:/nothing/1", "-p", "x"])
    assert exc.value.code == 2

    # served by reference: the OpenAI routes, named after the registered model and version
    import openai
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(model="models:/lm-test@latest"))) as http:
        assert http.post("/predict", json={"features": [1]}).status_code == 404
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                               http_client=http, max_retries=0)
        (model,) = client.models.list().data
        assert model.id == "lm-test"
        reply = client.chat.completions.create(
            model="lm-test", messages=[{"role": "user", "content": "say hello"}],
            max_tokens=5, temperature=0)
        assert reply.usage.completion_tokens >= 1
        assert http.get("/readyz").status_code == 200


def test_a_tabular_model_is_not_a_language_model(iris_model: Path) -> None:
    from zero2one.errors import ModelRefError
    from zero2one.tasks.textgen.models import load_lm

    with pytest.raises(ModelRefError, match="is a tabular-classification model"):
        load_lm(str(iris_model))


def test_lora_settings_reach_peft(tiny_lm: Path) -> None:
    from zero2one.tasks.textgen.config import FinetuneConfig
    from zero2one.tasks.textgen.models import load_lm
    from zero2one.tasks.textgen.train import wrap

    model, _ = load_lm(str(tiny_lm))
    config = FinetuneConfig.model_validate(
        {"lora": {"r": 4, "alpha": 12, "dropout": 0.1, "target_modules": ["q_proj"]}})
    peft_config = wrap(model, config).peft_config["default"]
    assert (peft_config.r, peft_config.lora_alpha, peft_config.lora_dropout) == (4, 12, 0.1)
    assert set(peft_config.target_modules) == {"q_proj"}


# ---- preference optimisation (DPO) and the feedback loop ----------------------------------

def dpo_recipe(tiny_lm: Path, pairs: Path, **changes: Any) -> dict[str, Any]:
    base = recipe(tiny_lm, pairs, epochs=6, lr=0.01, batch_size=4, save_steps=100)
    base["model"]["method"] = "dpo"
    base["data"]["val_source"] = str(pairs)  # the same pairs: a random tiny model cannot
    base["eval"] = {"samples": 0}            # generalise; what is measured is that it moved
    base.update(changes)
    return base


def test_the_feedback_loop_ends_in_a_model_that_prefers_the_corrections(
        tiny_lm: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve -> answers -> feedback (corrections, ratings) -> export -> DPO -> a registered
    version whose preference margin for the chosen answers grew."""
    from fastapi.testclient import TestClient

    import zero2one
    from zero2one.feedback import FeedbackStore
    from zero2one.serving import ServeSettings, create_app

    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    store = str(workspace / "feedback.db")
    settings = ServeSettings(model=str(tiny_lm), feedback=store)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        for question, fact in FACTS * 2:
            answer = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": question}], "max_tokens": 6,
                "temperature": 1.0, "seed": len(question)}).json()
            said = answer["choices"][0]["message"]["content"]
            body = ({"id": answer["id"], "rating": "down", "correction": fact}
                    if said != fact else {"id": answer["id"], "rating": "up"})
            assert client.post("/v1/feedback", json=body).status_code == 200
    sft = workspace / "sft.jsonl"  # the other export: corrected and up-voted chats
    assert FeedbackStore(store).export("sft", sft) == 8
    tuned_on_chats = train(recipe(tiny_lm, sft, max_steps=2), out=workspace / "sft-model")
    assert tuned_on_chats.metrics["train_tokens"] > 0
    pairs = workspace / "pairs.jsonl"
    assert FeedbackStore(store).export("dpo", pairs) >= 4
    result = zero2one.train(dpo_recipe(tiny_lm, pairs, track={"enabled": True},
                                       register="tiny-chat"))
    m = result.metrics
    assert result.registered_uri == "models:/tiny-chat/1"
    assert m["val_preference_margin"] > m["base_val_preference_margin"]
    assert m["val_preference_accuracy"] >= m["base_val_preference_accuracy"]
    tuned = zero2one.load("models:/tiny-chat/1")
    assert tuned.manifest["method"] == "dpo" and "adapter" in tuned.manifest["parts"]
    data = tuned.load_data()
    again = tuned.evaluate(data)  # the loaded adapter measures what training measured
    assert again["val_preference_margin"] == pytest.approx(m["val_preference_margin"],
                                                           rel=1e-3)


def test_preference_data_is_checked(tiny_lm: Path, workspace: Path) -> None:
    from zero2one.errors import DataError

    pairs = write_jsonl(workspace / "pairs.jsonl", [
        {"prompt": "q", "chosen": "a", "rejected": "b"}] * 4)
    with pytest.raises(DataError, match="train with model.method: dpo"):
        train(recipe(tiny_lm, pairs))
    chats_file = write_jsonl(workspace / "chats.jsonl", chats(8))
    with pytest.raises(DataError, match="model.method: dpo trains on preference pairs"):
        train(dpo_recipe(tiny_lm, chats_file))
    for row, message in (({"prompt": "q", "chosen": "a", "rejected": "a"}, "the same text"),
                         ({"prompt": "q", "chosen": "", "rejected": "b"}, "`chosen` must be"),
                         ({"prompt": [], "chosen": "a", "rejected": "b"}, "empty list"),
                         ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a",
                           "rejected": "b"}, "prompt message 1")):
        bad = write_jsonl(workspace / "bad.jsonl", [row] * 4)
        with pytest.raises(DataError, match=message):
            train(dpo_recipe(tiny_lm, bad))


def test_the_summary_shows_base_and_tuned_answers(tiny_lm: Path, workspace: Path) -> None:
    """The train said it reports the base's and the tuned model's answers; they were only in
    plots/samples.json. The first few are in the summary, on one line each."""
    from zero2one.api import train
    from zero2one.progress import NullReporter

    class Said(NullReporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, message: str) -> None:
            self.lines.append(message)

    said = Said()
    data = write_jsonl(workspace / "chats.jsonl", chats(24))
    cfg = recipe(tiny_lm, data, max_steps=2)
    cfg["eval"] = {"samples": 5, "sample_tokens": 4}
    train(cfg, out=workspace / "tuned", reporter=said)
    samples = [line for line in said.lines if line.startswith("[sample] ")]
    assert len(samples) == 3  # the first three; all five in samples.json
    for line in samples:
        question, base, tuned, reference = line.split("\n")
        assert base.startswith("  base: ") and tuned.startswith("  tuned: ")
        assert reference.startswith("  reference: ") and len(question) <= 170
