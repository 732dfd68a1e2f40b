"""The playground in a real headless Chromium (Playwright, Debian's chromium), for every task's
model behind a real ``zero2one serve`` process with an API key, feedback and moderation on: the
key is asked for and kept in the tab only, each widget answers, screenshots are not blank,
a chat reply is drawn token by token, thumbs reach the feedback store, model text is shown as
text. Everything targets 127.0.0.1 and ends by itself.

The browser is ``ZERO2ONE_TEST_BROWSER`` (CI sets it and installs Chromium: a missing browser
then fails) or /usr/bin/chromium (else these tests are skipped).
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..cases import CASES, _png
from .test_process import Server

pytestmark = pytest.mark.slow

KEY = "browser-test-key"
BROWSER = os.environ.get("ZERO2ONE_TEST_BROWSER") or shutil.which("chromium") or ""
# what Chromium needs on a closed network (no update checks, no background connections)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("ZERO2ONE_TEST_BROWSER"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not Path(BROWSER).is_file():
        if os.environ.get("ZERO2ONE_TEST_BROWSER"):
            raise AssertionError(f"ZERO2ONE_TEST_BROWSER={BROWSER} is not a file")
        pytest.skip("no Chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=BROWSER, args=FLAGS)
        yield launched
        launched.close()


class Page:
    """A fresh browser context (its own sessionStorage) on one server, collecting the page's
    script errors."""

    def __init__(self, browser: Any, url: str, *, locale: str = "en-US") -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": 1100, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url + "/")

    def enter_key(self, key: str) -> None:
        self.page.locator("#key").wait_for(state="visible")
        self.page.fill("#key-input", key)
        self.page.click("#key button[type=submit]")

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


def keep(png: bytes, name: str) -> bytes:
    """The screenshot, also saved under ZERO2ONE_TEST_SCREENSHOTS when set (to look at)."""
    if folder := os.environ.get("ZERO2ONE_TEST_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.png").write_bytes(png)
    return png


def not_blank(png: bytes) -> None:
    """A screenshot shows something: many colours, and not one flat area."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 20 and pixels.std() > 8, (colours, pixels.std())


def answered(page: Any, selector: str = "[data-testid=answer]") -> Any:
    """The answer once shown; an error shown instead fails with its text."""
    page.locator(f"{selector}, .result .error").first.wait_for()
    errors = page.locator(".result .error")
    assert errors.count() == 0, errors.first.inner_text()
    return page.locator(selector)


# ---- what a person does with each widget ----------------------------------------------------


def use_form(page: Any, name: str, tmp: Path) -> str:
    page.click("#predict-form button[type=submit]")  # the typical values are filled in
    text = answered(page).inner_text()
    assert " = " in text  # "target = class" or "target = number"
    bars = page.locator(".bars meter").count()
    assert bars in (0, 3)  # iris: three classes with probabilities; a regressor: none
    # a value that is not a number is caught in the page, before any request
    page.fill("#field-0", "twelve")
    page.click("#predict-form button[type=submit]")
    assert "must be a number" in page.locator(".result .error").inner_text()
    page.fill("#field-0", "1")
    page.click("#predict-form button[type=submit]")
    answered(page)
    return "#predict-form"


def use_upload(page: Any, name: str, tmp: Path) -> str:
    image = tmp / "digit.png"
    image.write_bytes(_png(200))
    page.click("#upload-form button[type=submit]")
    assert "at least one image" in page.locator(".result .error").inner_text()
    page.set_input_files("#files", [str(image)])
    page.locator(".images img").wait_for()
    page.click("#upload-form button[type=submit]")
    assert answered(page).inner_text().startswith("digit.png: ")
    assert page.locator(".bars meter").count() == 5  # top 5 of ten digits
    # a file the server cannot read: its one-line error, shown
    junk = tmp / "junk.png"
    junk.write_bytes(b"not an image at all")
    page.set_input_files("#files", [str(junk)])
    page.click("#upload-form button[type=submit]")
    assert "image 0" in page.locator(".result .error").inner_text()
    # one unreadable file in a batch: the readable one is still answered, the other says why
    page.set_input_files("#files", [str(image), str(junk)])
    page.click("#upload-form button[type=submit]")
    page.locator(".result .error").wait_for()
    assert page.locator("[data-testid=answer]").inner_text().startswith("digit.png: ")
    assert page.locator(".result .error").inner_text().startswith("junk.png: ")
    page.set_input_files("#files", [str(image)])
    page.click("#upload-form button[type=submit]")
    answered(page)
    return "#upload-form"


def use_chat(page: Any, name: str, tmp: Path) -> str:
    if page.locator("#attach").count():  # a model that reads images: one goes with the question
        assert not page.locator("#schema").count() and not page.locator("#tools").count()
        digit = tmp / "digit.png"
        digit.write_bytes(_png(200))
        page.set_input_files("#attach", str(digit))
        reply = chat(page, "Which digit is this?", max_tokens=2)
        assert page.locator(".bubble.user img.attached").count() == 1
        assert page.evaluate("document.querySelector('img.attached').naturalWidth") == 8
    else:
        reply = chat(page, "What is zero2one?", max_tokens=8)
        assert reply.locator(".text").inner_text()
    # moderation refuses a prompt: the reply says so instead of answering
    page.fill("#message", "你 是 个 废 物")
    page.press("#message", "Enter")
    refused = page.locator("[data-testid=reply][data-done=true]").nth(1)
    refused.wait_for()
    assert "harassment" in refused.locator(".error").inner_text()
    return "#chat-form"


def chat(page: Any, message: str, *, max_tokens: int) -> Any:
    """Send one message at temperature 0; the reply once it is done."""
    done = page.locator("[data-testid=reply][data-done=true]")
    before = done.count()
    if not page.locator("#max-tokens").is_visible():
        page.click("details summary")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#temperature", "0")
    page.fill("#message", message)
    page.press("#message", "Enter")
    reply = done.nth(before)
    reply.wait_for()
    assert reply.locator(".error").count() == 0, reply.inner_text()
    return reply


def use_prompt(page: Any, name: str, tmp: Path) -> str:
    assert page.locator(".chips button").count() == 10  # every digit's prompt, not 8 of them
    page.locator(".chips button").first.click()  # an example prompt of the model
    assert page.input_value("#prompt")
    page.fill("#negative", "blurry")
    page.fill("#steps", "2")
    page.fill("#seed", "7")
    page.fill("#count", "2")
    page.click("#prompt-form button[type=submit]")
    images = answered(page, "[data-testid=image]")
    images.nth(1).wait_for()
    assert images.count() == 2
    assert page.evaluate("[...document.querySelectorAll('[data-testid=image]')]"
                         ".every((i) => i.complete && i.naturalWidth > 0)")
    not_blank(images.first.screenshot())
    assert "seed 7" in page.locator("figcaption").first.inner_text()
    page.fill("#steps", "100000")  # over the server's limit: the form refuses it
    assert page.evaluate("document.querySelector('#steps').validity.rangeOverflow")
    page.fill("#steps", "2")
    page.fill("#prompt", "你 是 个 废 物")  # refused by moderation: its message, shown
    page.click("#prompt-form button[type=submit]")
    assert "harassment" in page.locator(".result .error").inner_text()
    page.locator(".chips button").first.click()
    page.click("#prompt-form button[type=submit]")
    answered(page, "[data-testid=image]").nth(1).wait_for()
    return "#prompt-form"


def use_json(page: Any, name: str, tmp: Path) -> str:
    import json

    page.fill("#body", "{not json")
    page.click("#json-form button[type=submit]")
    assert "not valid JSON" in page.locator(".result .error").inner_text()
    page.fill("#body", json.dumps(CASES[name].good[2]))
    page.click("#json-form button[type=submit]")
    assert json.loads(answered(page).inner_text())["request_id"]
    return "#json-form"


USE: dict[str, Callable[[Any, str, Path], str]] = {
    "form": use_form, "upload": use_upload, "chat": use_chat, "prompt": use_prompt,
    "json": use_json}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_playground_in_a_browser(name: str, trained: Any, browser: Any,
                                     tmp_path: Path) -> None:
    from zero2one.feedback import FeedbackStore

    model = trained(name).directory
    store = tmp_path / "feedback.sqlite"
    server = Server(str(model), "--feedback", str(store), "--moderation", "default",
                    env={"ZERO2ONE_API_KEY": KEY})
    try:
        server.wait_ready(timeout=120)
        visit = Page(browser, server.url)
        page = visit.page
        # the key: asked for, a wrong one refused, the right one kept for this tab
        visit.enter_key("wrong")
        page.locator("#key-why", has_text="refused").wait_for()
        assert page.locator("#widget").inner_text() == ""
        visit.enter_key(KEY)
        page.wait_for_selector("body[data-ready]")
        kind = page.get_attribute("body", "data-ready")
        assert kind in USE, f"no browser test for the {kind!r} widget"
        assert f"task {name}" in page.inner_text("#model")
        root = USE[kind](page, name, tmp_path)
        not_blank(page.locator(root).screenshot())
        not_blank(keep(page.screenshot(full_page=True), name))
        # thumbs up on the last answer: recorded against that answer's id
        rate = page.locator(".feedback").last
        answer_id = rate.get_attribute("data-id")
        rate.locator("button.up").click()
        page.locator(".feedback .thanks").last.wait_for()
        rows = FeedbackStore(str(store)).rows()
        assert [(r["id"], r["rating"]) for r in rows][:1] == [(answer_id, 1)]
        assert page.evaluate("Object.keys(localStorage).length") == 0
        assert page.evaluate("sessionStorage.getItem('zero2one.apiKey')") == KEY
        # a reload keeps the key (same tab); another tab asks again
        page.reload()
        page.wait_for_selector("body[data-ready]")
        assert page.locator("#key").is_hidden()
        visit.close()
        other = Page(browser, server.url)
        other.page.locator("#key").wait_for(state="visible")
        other.close()
    finally:
        server.stop()


@pytest.mark.slow(seconds=70)
def test_a_chat_reply_streams_token_by_token(browser: Any) -> None:
    """SmolLM2 behind the server: the reply grows on the page piece by piece as the tokens
    come, drawn at separate moments (not one paint at the end)."""
    server = Server("builtin:smollm2-135m-instruct")
    try:
        server.wait_ready(timeout=180)
        visit = Page(browser, server.url)
        page = visit.page
        page.wait_for_selector("body[data-ready=chat]")
        # every DOM update of the reply, with the moment the page made it
        page.evaluate("""() => {
            window.updates = [];
            new MutationObserver((records) => {
                for (const r of records) for (const n of r.addedNodes) if (n.nodeType === 3)
                    window.updates.push([performance.now(), n.data]);
            }).observe(document.querySelector('.log'), {childList: true, subtree: true});
        }""")
        reply = chat(page, "Name three colours.", max_tokens=24)
        text = reply.locator(".text").inner_text()
        updates = [(when, seen) for when, seen in page.evaluate("window.updates")
                   if seen != "Name three colours."]  # the user's own bubble
        assert len(updates) >= 8, updates
        for (_, before), (_, after) in itertools.pairwise(updates):
            assert after.startswith(before) and len(after) > len(before)  # it only grows
        assert updates[-1][1] == text
        moments = sorted({round(when) for when, _ in updates})
        assert len(moments) >= 8 and moments[-1] - moments[0] > 50, moments
        not_blank(keep(page.screenshot(), "chat-smollm2"))
        visit.close()
    finally:
        server.stop()


def test_model_text_is_shown_as_text(browser: Any, workspace: Path) -> None:
    """Class names are the model's data: markup in them is shown, never run."""
    from zero2one.api import train

    csv = workspace / "xss.csv"
    label = '<img src=x onerror="window.pwned=1">'
    rows = ["x,z,y"] + [f"{i % 4},{i * 7 % 5},{label if i % 2 else 'plain'}"
                        for i in range(40)]
    csv.write_text("\n".join(rows) + "\n")
    train({"task": "tabular-classification", "name": "xss",
           "data": {"source": str(csv), "target": "y"},
           "model": {"estimator": "logistic_regression"}, "search": {"method": "none"},
           "track": {"enabled": False}}, out=workspace / "xss")
    server = Server(str(workspace / "xss"))
    try:
        server.wait_ready(timeout=120)
        visit = Page(browser, server.url, locale="zh-CN")
        page = visit.page
        page.wait_for_selector("body[data-ready=form]")
        assert page.inner_text("#predict-form button[type=submit]") == "预测"  # Chinese UI
        page.fill("#field-0", "2")
        page.click("#predict-form button[type=submit]")
        assert label in answered(page).inner_text()
        assert page.locator(".result img").count() == 0
        assert page.evaluate("window.pwned") is None
        keep(page.screenshot(), "escaped-zh")
        visit.close()
    finally:
        server.stop()


def test_the_readme_tour_model_in_a_browser(browser: Any, workspace: Path) -> None:
    """The README's own model — recipes/iris-svc.yaml, an SVC without probabilities — served
    as the tour serves it (no key, no feedback): an answer and nothing else ("nullnull" was
    drawn where the missing bars and thumbs were), and readable field labels."""
    from zero2one.api import train

    recipe = Path(__file__).parents[2] / "recipes" / "iris-svc.yaml"
    train(recipe, overrides=["track.enabled=false"], out=workspace / "iris-svc")
    server = Server(str(workspace / "iris-svc"))
    try:
        server.wait_ready(timeout=120)
        visit = Page(browser, server.url)
        page = visit.page
        page.wait_for_selector("body[data-ready=form]")
        label = page.locator("label[for=field-0]")
        assert label.inner_text().startswith("Sepal length ")
        assert label.locator("code").inner_text() == "sepal_length"  # what the API takes
        page.click("#predict-form button[type=submit]")
        answered(page)
        result = page.locator("#predict-form .result").inner_text()
        assert result.strip() in {f"target = {name}" for name in
                                  ("setosa", "versicolor", "virginica")}, result
        assert "null" not in result and page.locator(".bars, .feedback").count() == 0
        not_blank(keep(page.screenshot(), "iris-svc"))
        visit.close()
    finally:
        server.stop()


def test_json_answers_and_tool_calls_are_shown_readably(browser: Any, long_lm: Path) -> None:
    """A schema in the chat's settings: the answer is JSON, shown indented. Tools: each call
    is shown as its function and arguments, a person types each result, and the model answers
    from them. Settings that are not JSON are said in the reply, before any request."""
    import json

    import jsonschema

    schema = {"type": "object", "additionalProperties": False, "required": ["digit"],
              "properties": {"digit": {"type": "integer", "minimum": 0, "maximum": 9}}}
    tools = [{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "additionalProperties": False, "required": ["a", "b"],
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                       "b": {"type": "integer", "minimum": 0, "maximum": 99}}}}}]
    server = Server(str(long_lm), "--engine", "zero2one")
    try:
        server.wait_ready(timeout=120)
        visit = Page(browser, server.url)
        page = visit.page
        page.wait_for_selector("body[data-ready=chat]")
        page.click("details summary")
        page.fill("#schema", json.dumps(schema))
        reply = chat(page, "A digit, please.", max_tokens=40)
        shown = reply.locator("pre.json").inner_text()
        jsonschema.validate(json.loads(shown), schema)
        assert shown == json.dumps(json.loads(shown), indent=2)  # indented, not one line
        page.fill("#schema", "")
        page.fill("#tools", "[{not json")
        bad = chat_reply(page, "What is 2 + 3?")
        assert "Tools" in bad.locator(".error").inner_text() and "not valid JSON" in \
            bad.locator(".error").inner_text()
        page.fill("#tools", json.dumps(tools))
        page.select_option("#tool-choice", "required")
        called = chat(page, "What is 2 + 3?", max_tokens=200)
        assert called.locator("[data-testid=call]").count() >= 1, called.inner_text()
        call = called.locator("[data-testid=call]").first
        assert call.locator(".name").inner_text() == "add()"
        jsonschema.validate(json.loads(call.locator("pre").inner_text()),
                            tools[0]["function"]["parameters"])
        not_blank(keep(page.screenshot(full_page=True), "chat-tools"))
        page.select_option("#tool-choice", "none")
        for index in range(called.locator("[data-testid=call]").count()):
            page.fill(f"#result-{index}", "5")
        done = page.locator("[data-testid=reply][data-done=true]")
        before = done.count()
        called.locator(".results button").click()
        final = done.nth(before)
        final.wait_for()
        assert final.locator(".error").count() == 0, final.inner_text()
        assert final.locator("[data-testid=call]").count() == 0
        visit.close()
    finally:
        server.stop()


def chat_reply(page: Any, message: str) -> Any:
    """The reply to one message, done, whatever it says."""
    done = page.locator("[data-testid=reply][data-done=true]")
    before = done.count()
    page.fill("#message", message)
    page.press("#message", "Enter")
    reply = done.nth(before)
    reply.wait_for()
    return reply
