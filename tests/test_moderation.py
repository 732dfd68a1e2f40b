"""Moderation: normalisation, phrase lists, validated personal data, actions, the audit log,
the classifier and API plug-ins, the CLI, and the configurations refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from zero2one.errors import RecipeError
from zero2one.moderation import ModerationConfig, Moderator, evaluate, load_moderator
from zero2one.moderation.pii import cn_id_valid, find, luhn

from .conftest import REPO

pytest.importorskip("glin_profanity")


def bare(**settings: object) -> Moderator:
    """A moderator with only the plug-ins given (no lists, no built-in classifier)."""
    return Moderator(ModerationConfig(builtin_lists=False, builtin_classifier=False,
                                      **settings))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    return load_moderator("default")


@pytest.mark.parametrize("text, category", [
    ("you idiot", "harassment"),
    ("Y O U  I D I O T", "harassment"),                 # inserted spaces
    ("ｙｏｕ ｉｄｉｏｔ", "harassment"),                    # full width
    ("sh1t happens", "profanity"),                      # leetspeak
    ("what a sh*t show", "profanity"),                  # a masked letter
    ("k.i.l.l y.o.u.r.s.e.l.f", "violence"),            # symbols between letters
    ("你这个傻逼", "profanity"),
    ("你 是 个 废 物", "harassment"),                     # spaces between characters
    ("我想自殺", "self-harm"),                            # traditional characters
    ("怎么製造炸彈", "illicit"),
])
def test_lists_see_through_obfuscation(moderator: Moderator, text: str, category: str) -> None:
    verdict = moderator.check(text)
    assert category in verdict.categories, verdict.hits
    assert verdict.blocked


@pytest.mark.parametrize("text", [
    "a classic glass of water", "analysis of the bass line", "kill the process",
    "Scunthorpe", "逼迫别人是不对的", "今天天气很好", "call the assistant",
])
def test_innocent_texts_pass(moderator: Moderator, text: str) -> None:
    verdict = moderator.check(text)
    assert not verdict.flagged, verdict.hits


def test_the_builtin_classifier_catches_what_no_list_holds() -> None:
    """Insults absent from every list, in both languages; innocent look-alikes pass."""
    lists_only = Moderator(ModerationConfig(builtin_classifier=False))
    both = load_moderator("default")
    for text in ("you absolute clown", "你个蠢东西", "go away you creep"):
        assert not lists_only.check(text).flagged
        verdict = both.check(text)
        assert verdict.categories == ["harassment"]
        assert verdict.hits[0].source == "classifier:builtin" and verdict.hits[0].score >= 0.8
    for text in ("you are nice", "I passed the class", "Java的垃圾回收机制会释放内存",
                 "请安装杀毒软件", "the garbage collector frees memory"):
        assert not both.check(text).flagged, text


def test_pii_is_validated_not_just_matched() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert cn_id_valid("11010519491231002X")
    assert not cn_id_valid("110105194912310021")  # wrong check character
    assert not cn_id_valid("110105194902300023")  # 30 February
    assert not cn_id_valid("990105194912310021")  # no province 99
    kinds = {f.kind for f in find("a@example.com 13912345678 4111 1111 1111 1111 "
                                  "11010519491231002X 10.0.0.7 2001:db8::1")}
    assert kinds == {"email", "phone", "card", "cn_id", "ip"}
    assert find("4111 1111 1111 1112 999.1.1.1 x@localhost 110105194912310021") == []


def test_redaction_labels_each_span(moderator: Moderator) -> None:
    text = "mail bob@example.org or call 139-1234-5678, card 4111 1111 1111 1111"
    verdict = moderator.check(text)
    assert not verdict.blocked  # personal data is redacted, not refused, by default
    assert moderator.redact(text, verdict) == "mail [EMAIL] or call [PHONE], card [CARD]"
    assert verdict.openai()["categories"]["pii"] is True


def test_actions_and_user_lists(tmp_path: Path) -> None:
    lists = tmp_path / "mine.yaml"
    lists.write_text("competitors: [acme corp, 某某公司]\n", encoding="utf-8")
    config = tmp_path / "moderation.yaml"
    config.write_text(f"lists: [{lists.name}]\nactions: {{competitors: redact, profanity: "
                      "flag}\npii: {email: block}\n", encoding="utf-8")
    moderator = load_moderator(config)
    verdict = moderator.check("ACME  Corp is worse, shit")
    assert verdict.categories == ["competitors", "profanity"] and not verdict.blocked
    assert moderator.redact("ACME  Corp is worse", moderator.check("ACME  Corp is worse")) \
        == "[REDACTED] is worse"
    assert moderator.check("某某公司").categories == ["competitors"]
    assert moderator.check("write to a@example.com").blocked


@pytest.mark.parametrize("content, message", [
    ("actions: {rudeness: block}\n", "actions: unknown category rudeness"),
    ("pii: {passport: block}\n", "pii: unknown kind passport"),
    ("lists: [missing.yaml]\n", "missing.yaml not found"),
    ("outputs: sometimes\n", "outputs"),
    ("[1, 2]\n", "a moderation config is a mapping"),
    ("actions: {hate: [\n", "not valid YAML"),
    ("unknown_key: 1\n", "unknown_key"),
])
def test_bad_configs_are_refused(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "moderation.yaml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(RecipeError, match=message):
        load_moderator(config)


def test_a_bad_list_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("- just\n- phrases\n", encoding="utf-8")
    (tmp_path / "moderation.yaml").write_text("lists: [bad.yaml]\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="expected a mapping of category -> list of phrases"):
        load_moderator(tmp_path / "moderation.yaml")
    with pytest.raises(RecipeError, match="use 'default' or a YAML file"):
        load_moderator(tmp_path / "nope.yaml")


def test_audit_log_keeps_decisions_not_text(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    moderator = Moderator(ModerationConfig(audit=log))
    moderator.check("you idiot")
    moderator.check("hello")  # nothing found: nothing logged
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["blocked"] and record["hits"][0]["category"] == "harassment"
    assert "text" not in record and len(record["sha256"]) == 64
    Moderator(ModerationConfig(audit=log, audit_text=True)).check("you idiot")
    assert json.loads(log.read_text().splitlines()[-1])["text"] == "you idiot"


def test_evaluate_counts_precision_and_recall(moderator: Moderator) -> None:
    report = evaluate(moderator, [("you idiot", ["harassment"]), ("hello", []),
                                  ("nice weather", ["harassment"]), ("shit", [])])
    assert report["categories"]["harassment"] == {
        "support": 2, "precision": 1.0, "recall": 0.5, "f1": 0.6667, "tp": 1, "fp": 0, "fn": 1}
    assert report["categories"]["profanity"]["fp"] == 1
    assert report["flagged"]["tp"] == 1 and report["flagged"]["fp"] == 1


# ---- plug-ins ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised BERT text classifier with labels toxic/ok, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out = tmp_path_factory.mktemp("classifier")
    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "you", "are",
                                "nice", "bad"]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=9, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        id2label={0: "ok", 1: "toxic"}, label2id={"ok": 0, "toxic": 1})
    BertForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def test_a_classifier_plugs_in(tiny_classifier: Path) -> None:
    from zero2one.moderation import ClassifierConfig

    always = bare(classifier=ClassifierConfig(
        path=tiny_classifier, labels={"toxic": "harassment", "ok": "harassment"},
        threshold=0.01))
    verdict = always.check("you are nice")
    assert {h.source for h in verdict.hits} == {"classifier"} and verdict.blocked
    assert all(0 < h.score <= 1 for h in verdict.hits)
    with pytest.raises(RecipeError, match="no label rude; it has ok, toxic"):
        Moderator(ModerationConfig(classifier=ClassifierConfig(
            path=tiny_classifier, labels={"rude": "harassment"})))
    with pytest.raises(RecipeError, match="not a transformers directory"):
        Moderator(ModerationConfig(classifier=ClassifierConfig(
            path=tiny_classifier.parent, labels={"toxic": "harassment"})))


@pytest.fixture
def moderation_api() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            flagged = "hate" in body["input"]
            answer = json.dumps({"results": [{"flagged": flagged,
                                              "categories": {"hate/threatening": flagged},
                                              "category_scores": {"hate/threatening": 0.9}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/moderations"
    server.shutdown()


def test_an_external_api_plugs_in(moderation_api: str) -> None:
    from zero2one.moderation import ApiConfig

    moderator = bare(api=ApiConfig(url=moderation_api,
                                   categories={"hate/threatening": "hate"}))
    verdict = moderator.check("i hate mondays")
    assert verdict.categories == ["hate"] and verdict.hits[0].score == 0.9
    assert not moderator.check("hello").flagged
    down = "http://127.0.0.1:9/v1/moderations"  # nothing listens there
    closed = bare(api=ApiConfig(url=down, timeout=1))
    assert closed.check("hello").blocked  # fails closed by default
    opened = bare(api=ApiConfig(url=down, timeout=1, on_error="allow"))
    assert not opened.check("hello").flagged


# ---- the CLI ------------------------------------------------------------------------------

def test_cli_moderate_text_file_and_eval(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app

    runner = CliRunner()
    done = runner.invoke(app, ["moderate", "you idiot, mail a@example.com", "--json"])
    assert done.exit_code == 0, done.output
    (result,) = json.loads(done.stdout)
    assert result["flagged"] and result["categories"]["harassment"]
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "hello"}\n{"text": "傻逼"}\n', encoding="utf-8")
    done = runner.invoke(app, ["moderate", str(texts), "--json"])
    assert [r["flagged"] for r in json.loads(done.stdout)] == [False, True]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"text": "you idiot", "categories": ["harassment"]}\n'
                        '{"text": "hello", "categories": []}\n', encoding="utf-8")
    done = runner.invoke(app, ["moderate", "eval", str(labelled), "--json"])
    assert json.loads(done.stdout)["categories"]["harassment"]["recall"] == 1.0
    labelled.write_text('{"text": "x", "categories": "hate"}\n', encoding="utf-8")
    done = runner.invoke(app, ["moderate", "eval", str(labelled)])
    assert done.exit_code != 0 and "`categories` must be a list" in str(done.exception)
    labelled.write_text("not json\n", encoding="utf-8")
    done = runner.invoke(app, ["moderate", "eval", str(labelled)])
    assert "labelled.jsonl:1: not valid JSON" in str(done.exception)


# ---- the server ---------------------------------------------------------------------------

def _served(tiny_lm: Path, moderation: str, monkeypatch: pytest.MonkeyPatch,
            pieces: list[str] | None = None,
            engine: str | None = None):  # type: ignore[no-untyped-def]
    """A client of the tiny language model served with ``moderation``; ``pieces`` replaces
    what the model generates (to know what moderation sees)."""
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app
    from zero2one.tasks.textgen.serving import LMEngine

    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    if pieces is not None:
        async def scripted(self: LMEngine, prompt: str, settings: object,  # type: ignore[no-untyped-def]
                           outcome: object = None):
            for piece in pieces:
                yield piece

        monkeypatch.setattr(LMEngine, "stream", scripted)
    # the scripted pieces replace zero2one's engine's (moderation sits in the routes, before
    # any engine); without them the default engine runs
    engine = "zero2one" if pieces is not None else engine
    return TestClient(create_app(ServeSettings(model=str(tiny_lm),  # type: ignore[call-arg]
                                               moderation=moderation, engine=engine)))


def test_served_inputs_are_checked(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _served(tiny_lm, "default", monkeypatch) as client:
        refused = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "you idiot"}], "max_tokens": 2})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "content_policy_violation" and error["param"] == "messages"
        assert "harassment" in error["message"]
        refused = client.post("/v1/completions", json={"prompt": "我要杀了你", "max_tokens": 2})
        assert refused.status_code == 400 and "violence" in refused.json()["error"]["message"]
        fine = client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 2,
                                                     "temperature": 0})
        assert fine.status_code == 200
        answer = client.post("/v1/moderations", json={"input": ["you idiot", "hello"]})
        assert answer.status_code == 200
        first, second = answer.json()["results"]
        assert first["flagged"] and first["categories"]["harassment"]
        assert not second["flagged"] and second["category_scores"]["harassment"] == 0.0
        assert client.post("/v1/moderations", json={"input": []}).status_code == 400


PIECES = ["Sure, you ", "idi", "ot, write to ", "bob@exam", "ple.org today"]


@pytest.mark.parametrize("outputs, expected, finish", [
    ("block", "", "content_filter"),
    ("redact", "Sure, [REDACTED], write to [EMAIL] today", "stop"),
])
def test_served_outputs_are_checked(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path, outputs: str, expected: str,
                                    finish: str) -> None:
    config = tmp_path / "moderation.yaml"
    config.write_text(f"outputs: {outputs}\n", encoding="utf-8")
    with _served(tiny_lm, str(config), monkeypatch, PIECES) as client:
        answer = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})
        assert answer.status_code == 200, answer.text
        choice = answer.json()["choices"][0]
        assert (choice["message"]["content"], choice["finish_reason"]) == (expected, finish)


def test_a_blocked_stream_ends_with_an_error_event(tiny_lm: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with _served(tiny_lm, "default", monkeypatch, PIECES) as client:
        answer = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50, "stream": True})
        events = [line.removeprefix("data: ") for line in answer.text.splitlines()
                  if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "content_policy_violation" and "harassment" in error["message"]
        sent = "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                       for e in events[:-2])
        assert "idi" not in sent  # nothing of the flagged words went out


def test_a_redacted_stream_sends_labels(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    config = tmp_path / "moderation.yaml"
    config.write_text("outputs: redact\n", encoding="utf-8")
    with _served(tiny_lm, str(config), monkeypatch, PIECES) as client:
        answer = client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 50,
                                                      "stream": True})
        events = [json.loads(line.removeprefix("data: "))
                  for line in answer.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        assert "".join(e["choices"][0]["text"] for e in events) == \
            "Sure, [REDACTED], write to [EMAIL] today"


def test_a_bad_moderation_config_stops_the_server(tiny_lm: Path, tmp_path: Path) -> None:
    from zero2one.serving import ServeSettings, create_app

    config = tmp_path / "moderation.yaml"
    config.write_text("actions: {rudeness: block}\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="unknown category rudeness"):
        create_app(ServeSettings(model=str(tiny_lm), moderation=str(config)))  # type: ignore[call-arg]


def test_regenerate_samples_again_then_withholds(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from zero2one.tasks.textgen.serving import LMEngine

    seeds: list[int | None] = []

    async def scripted(self: LMEngine, prompt: str, settings: object,  # type: ignore[no-untyped-def]
                       outcome: object = None):
        seeds.append(settings.seed)  # type: ignore[attr-defined]
        for piece in (["you idiot"] if len(seeds) < 3 else ["all good"]):
            yield piece

    monkeypatch.setattr(LMEngine, "stream", scripted)
    config = tmp_path / "moderation.yaml"
    config.write_text("outputs: regenerate\nretries: 2\n", encoding="utf-8")
    with _served(tiny_lm, str(config), monkeypatch, engine="zero2one") as client:
        answer = client.post("/v1/completions", json={"prompt": "hi", "seed": 7})
        assert answer.json()["choices"][0]["text"] == "all good"
        assert seeds == [7, 8, 9]  # sampled again with other seeds
        seeds.clear()
        config.write_text("outputs: regenerate\nretries: 1\n", encoding="utf-8")
    with _served(tiny_lm, str(config), monkeypatch, engine="zero2one") as client:
        choice = client.post("/v1/completions", json={"prompt": "hi"}).json()["choices"][0]
        assert (choice["text"], choice["finish_reason"]) == ("", "content_filter")


def test_generate_command_checks_the_prompt(tiny_lm: Path) -> None:
    from zero2one.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["generate", str(tiny_lm), "-p", "you idiot", "--moderation", "default"])
    assert exited.value.code == 2


# ---- images -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_image_checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ViT image classifier (labels safe/nsfw), safetensors."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    out = tmp_path_factory.mktemp("image-checker")
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=16,
                       num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       id2label={0: "safe", 1: "nsfw"}, label2id={"safe": 0, "nsfw": 1})
    ViTForImageClassification(config).save_pretrained(out, safe_serialization=True)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(out)
    return out


def checker_config(tmp_path: Path, model: Path, threshold: float) -> Path:
    config = tmp_path / "moderation.yaml"
    config.write_text(f"image_checker: {{path: {model}, labels: {{nsfw: sexual, safe: sexual}}, "
                      f"threshold: {threshold}}}\n", encoding="utf-8")
    return config


def test_an_image_checker_plugs_in(tiny_image_checker: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("RGB", (32, 32), (200, 10, 10))
    flags = load_moderator(checker_config(tmp_path, tiny_image_checker, 0.01))
    verdict = flags.check_image(image)
    assert verdict.blocked and {h.source for h in verdict.hits} == {"image-checker"}
    passes = load_moderator(checker_config(tmp_path, tiny_image_checker, 1.0))
    assert not passes.check_image(image).flagged  # no score reaches 1.0
    assert not load_moderator("default").check_image(image).flagged  # none configured


def test_served_images_are_withheld_by_the_checker(
        tiny_image_checker: Path, tmp_path: Path, tiny_text_encoder: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app
    from zero2one.tasks.imagegen.serving import ImageEngine

    async def drawn(self: ImageEngine, options: object) -> tuple[list[bytes], list[int]]:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG")
        return [buffer.getvalue(), buffer.getvalue()], [1, 2]

    monkeypatch.setattr(ImageEngine, "draw", drawn)
    from zero2one.api import train

    from .tasks.test_imagegen import recipe as image_recipe

    model = tmp_path / "imagegen"
    train(image_recipe(tiny_text_encoder), out=model)
    config = checker_config(tmp_path, tiny_image_checker, 0.01)
    settings = ServeSettings(model=str(model), moderation=str(config))  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/images/generations", json={"prompt": "a digit", "n": 2})
        assert answer.status_code == 200, answer.text
        assert [d["b64_json"] for d in answer.json()["data"]] == [None, None]
        assert answer.json()["data"][0]["content_filter"]["categories"] == ["sexual"]
        refused = client.post("/v1/images/generations", json={"prompt": "send nudes"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "content_policy_violation"


def test_false_positives_on_benign_text_it_never_saw() -> None:
    """"Say hi." scored as harassment (0.88) and a served chat refused it. On everyday chat
    turns in both languages (examples/moderation/benign-chat.txt), the Chinese guide's prose and
    libraries' docstrings, under 0.5 % are flagged, and no greeting or short turn at all; the
    labelled set's recall stays."""
    from zero2one.moderation import benign

    moderator = load_moderator("default")
    chat = benign.lines(REPO / "examples/moderation/benign-chat.txt")
    docs = benign.sentences((REPO / "docs/guide.zh-CN.md").read_text(encoding="utf-8"))
    code = benign.docstrings(["json", "pathlib", "collections", "statistics",
                              "sklearn.metrics", "sklearn.linear_model"])
    texts = chat + docs + code
    assert len(chat) > 150 and len(docs) > 50 and len(code) > 200
    rate, flagged = benign.false_positives(moderator, texts)
    assert rate < 0.005, flagged
    short = [t for t in chat if len(t.split()) <= 3 or len(t) <= 6]
    assert len(short) > 50 and not benign.false_positives(moderator, short)[1]
    rows = [json.loads(line) for line in
            (REPO / "examples/moderation/eval.jsonl").read_text().splitlines() if line]
    report = evaluate(moderator, [(r["text"], r["categories"]) for r in rows])
    assert report["flagged"]["recall"] >= 0.9 and report["flagged"]["precision"] >= 0.95


def test_this_machines_address_is_not_personal_data() -> None:
    """Every tutorial says 127.0.0.1 (the Chinese guide's playground step was flagged as PII)."""
    assert find("open http://127.0.0.1:8000/ or [::1]:8000, bind 0.0.0.0") == []
    assert [f.kind for f in find("the server is at 10.0.12.7")] == ["ip"]
