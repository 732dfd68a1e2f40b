"""GGUF export of fine-tuned language models (llama.cpp, Ollama): written with the gguf package,
read back through transformers and checked before anything is kept; its bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zero2one.api import load
from zero2one.convert import export
from zero2one.errors import ConversionError, UserError
from zero2one.tasks.textgen.gguf_export import metadata_value

from .test_finetune import chats, write_jsonl


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_1"])
def test_a_tuned_model_exports_to_gguf_and_reads_back(tuned: Path, workspace: Path,
                                                      quant: str) -> None:
    import torch

    result = export(tuned, f"gguf-{quant}", out=workspace / quant)
    directory = result.model_dir
    manifest = load(directory).manifest
    assert manifest["parts"] == {"gguf": "gguf"} and manifest["quantization"] == quant
    assert {"gguf/model.gguf", "gguf/Modelfile"} <= set(manifest["files"])  # hashed
    assert (directory / "gguf" / "Modelfile").read_text().startswith("FROM ./model.gguf")
    # the file as llama.cpp gets it: tokenizer, chat template and weights inside
    import gguf

    reader = gguf.GGUFReader(str(directory / "gguf" / "model.gguf"))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert "messages" in reader.fields["tokenizer.chat_template"].contents()
    kinds = {t.name: t.tensor_type.name for t in reader.tensors if len(t.shape) == 2}
    # zero2one's reader of one value agrees with gguf's (which parses every field first)
    for key in ("general.architecture", "llama.context_length", "general.file_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.pre"):
        assert metadata_value(directory / "gguf" / "model.gguf", key) == \
            reader.fields[key].contents(), key
    assert metadata_value(directory / "gguf" / "model.gguf", "no.such.key") is None
    # embeddings and output head 8-bit in a 4-bit file, as in llama.cpp's
    expected = "Q8_0" if quant.startswith("q4") else quant.upper()
    ends = {kinds.pop("token_embd.weight"), kinds.pop("output.weight", expected)}
    assert set(kinds.values()) == {quant.upper()} and ends == {expected}
    # what it computes: the tuned model's logits, within the quantization's tolerance
    parent, exported = load(tuned), load(directory)
    ids = parent.tokenizer_("what does zero2one do", return_tensors="pt").input_ids
    assert exported.tokenizer_("what does zero2one do", return_tensors="pt").input_ids.tolist() \
        == ids.tolist()
    with torch.no_grad():
        a, b = parent.model_(ids).logits, exported.model_(ids).logits
    error = float((a - b).pow(2).mean().sqrt() / a.std())
    assert error <= {"f16": 0.01, "q8_0": 0.08, "q4_1": 0.4}[quant]
    details = manifest["conversion"]
    assert details["method"] == f"gguf-{quant}" and details["quantization"] == quant
    assert details["logits_relative_rms_error"] <= details["tolerance"]
    # held-out perplexity of both, in the report
    assert result.report[0]["metrics"]["val_perplexity"] > 0
    assert result.report[-1]["metrics"]["val_perplexity"] > 0
    assert exported.predict(["what does zero2one do"], max_new_tokens=3)[0] is not None


def test_a_file_that_is_not_gguf_is_said(tmp_path: Path) -> None:
    for content, message in ((b"PK\x03\x04zip", "is not a GGUF file"),
                             (b"GGUF\x03\x00\x00\x00\x01", "not a complete GGUF file")):
        (tmp_path / "x.gguf").write_bytes(content)
        with pytest.raises(ValueError, match=message):
            metadata_value(tmp_path / "x.gguf", "general.architecture")


def test_quantized_files_are_smaller(tuned: Path, workspace: Path) -> None:
    sizes = {q: (export(tuned, f"gguf-{q}", out=workspace / q).model_dir / "gguf/model.gguf")
             .stat().st_size for q in ("f16", "q4_1")}
    assert sizes["q4_1"] < 0.5 * sizes["f16"]


def test_bad_exports_are_refused(tuned: Path, trained: Any, workspace: Path,
                                 tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--quant q3 is not one of f16, q8_0, q4_0, q4_1"):
        export(tuned, "gguf-q3")
    with pytest.raises(UserError, match="cannot be exported to gguf; --format gguf applies to "
                                        "text-generation"):
        export(trained("tabular-classification").directory, "gguf")
    with pytest.raises(UserError, match="--format onnx takes no --quant"):
        export(trained("tabular-classification").directory, "onnx-q8_0")
    # an architecture the writer does not map: named, with the supported ones
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from zero2one.tasks.textgen.models import load_tokenizer

    gpt2 = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(gpt2)
    load_tokenizer(tuned / "adapter").save_pretrained(gpt2)
    with pytest.raises(ConversionError, match="maps LlamaForCausalLM models; this one is "
                                              "GPT2LMHeadModel"):
        export(str(gpt2), "gguf", overrides=[f"data.source={_chats(tmp_path)}"])
    # a refused export leaves no file behind (the check fails: a tolerance of nothing)
    import tempfile

    from zero2one.tasks.textgen import gguf_export

    scratch = tmp_path / "tmp"  # this test's own: exports on other pytest -n workers use /tmp
    scratch.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch))
        patch.setitem(gguf_export.TOLERANCE, "q8_0", 0.0)
        with pytest.raises(ConversionError, match="over the tolerance of 0.0; nothing was "
                                                  "written"):
            export(tuned, "gguf-q8_0")
        assert tempfile.gettempdir() == str(scratch)
    assert not list(scratch.iterdir())
    # a GGUF export is not exported again
    done = export(tuned, "gguf-q8_0", out=workspace / "once").model_dir
    with pytest.raises(ConversionError, match="its weights are quantized already"):
        export(done, "gguf-q4_1")


def test_a_gguf_without_a_chat_template_refuses_chat(tiny_lm: Path, workspace: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app
    from zero2one.tasks.textgen.gguf_export import write
    from zero2one.tasks.textgen.models import load_lm

    model, tokenizer = load_lm(str(tiny_lm))
    tokenizer.chat_template = None
    path = workspace / "plain.gguf"
    write(model, tokenizer, path, "f16")
    plain = CliRunner().invoke(app, ["generate", str(path), "-p", "zero2one",
                                     "--max-new-tokens", "3", "--temperature", "0"])
    assert plain.exit_code == 0, plain.output
    chat = CliRunner().invoke(app, ["generate", str(path), "--chat", "-p", "zero2one"])
    assert isinstance(chat.exception, UserError)
    assert "this model has no chat template; drop --chat" in str(chat.exception)


def test_a_tokenizer_that_is_not_byte_level_bpe_is_refused(tiny_lm: Path,
                                                            tiny_text_encoder: Path,
                                                            tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from zero2one.tasks.textgen.gguf_export import write
    from zero2one.tasks.textgen.models import load_lm

    model, _ = load_lm(str(tiny_lm))
    wordpiece = AutoTokenizer.from_pretrained(str(tiny_text_encoder))
    with pytest.raises(ConversionError, match="writes byte-level BPE tokenizers; this one is "
                                              "WordPiece"):
        write(model, wordpiece, tmp_path / "m.gguf", "f16")


def _chats(directory: Path) -> Path:
    return write_jsonl(directory / "chats.jsonl", chats(12))


def test_the_cli_maps_quant_to_the_format(tuned: Path, workspace: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app

    done = CliRunner().invoke(app, ["export", str(tuned), "--format", "gguf", "--quant", "q4_0",
                                    "--out", str(workspace / "cli"), "--quiet"])
    assert done.exit_code == 0, done.output
    assert load(workspace / "cli").manifest["quantization"] == "q4_0"
    bad = CliRunner().invoke(app, ["export", str(tuned), "--format", "gguf", "--quant", "q2"])
    assert isinstance(bad.exception, UserError)  # main() prints it as one line
    assert "--quant q2 is not one of" in str(bad.exception)


@pytest.mark.parametrize(("tuned_ppl", "exported", "kept"), [
    (79.1, 80.0, 0.983), (79.1, 100.0, 0.596), (79.1, 126.8, None)])
def test_an_export_must_keep_most_of_what_fine_tuning_gained(tuned_ppl: float, exported: float,
                                                             kept: float | None) -> None:
    """The guide's numbers: q4_1 of the LoRA SmolLM2 went 79.1 -> 126.8 held-out perplexity,
    the untuned base being 130.8: it passed the logits check, and undid the fine-tune."""
    from zero2one.tasks.textgen.gguf_export import check_gain

    def ppl(value: float) -> dict[str, float]:
        return {"val_perplexity": value}

    if kept is None:
        with pytest.raises(ConversionError, match=r"q4_1 GGUF undoes most of the fine-tuning: "
                           r"it keeps 8% .*126.8 as q4_1, 130.8 untuned\); --quant q8_0 keeps "
                           r"it, --accept-loss keeps this one"):
            check_gain(ppl(130.8), ppl(tuned_ppl), ppl(exported), "q4_1")
        accepted = check_gain(ppl(130.8), ppl(tuned_ppl), ppl(exported), "q4_1",
                              accept_loss=True)
        assert accepted is not None and accepted["gain_kept"] == pytest.approx(0.077, abs=1e-3)
    else:
        found = check_gain(ppl(130.8), ppl(tuned_ppl), ppl(exported), "q4_1")
        assert found is not None and found["gain_kept"] == pytest.approx(kept, abs=1e-3)
    # nothing to compare with: no base (a pretrained model), or training gained nothing
    assert check_gain(None, ppl(79.1), ppl(200.0), "q4_1") is None
    assert check_gain(ppl(70.0), ppl(79.1), ppl(200.0), "q4_1") is None


def test_a_tuned_export_records_what_it_kept(tuned: Path, workspace: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.textgen import gguf_export

    result = export(tuned, "gguf-q8_0", out=workspace / "kept")
    details = load(result.model_dir).manifest["conversion"]
    assert details["perplexity_base"] > details["perplexity_tuned"]  # the tune gained
    assert details["gain_kept"] > 0.5
    assert details["perplexity_export"] == pytest.approx(
        result.report[-1]["metrics"]["val_perplexity"])
    # a gate that no export passes refuses, with the numbers, and --accept-loss keeps it
    monkeypatch.setattr(gguf_export, "MIN_GAIN_KEPT", 1.01)
    with pytest.raises(ConversionError, match="undoes most of the fine-tuning"):
        export(tuned, "gguf-q8_0")
    kept = export(tuned, "gguf-q8_0", accept_loss=True, out=workspace / "anyway")
    assert load(kept.model_dir).manifest["conversion"]["gain_kept"] < 1.01


def test_inputs_are_checked_before_the_weights_load(tuned: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one import refs
    from zero2one.errors import DataError

    def no_weights(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the weights were loaded before the inputs were checked")

    monkeypatch.setattr(refs, "load", no_weights)
    with pytest.raises(DataError, match="data not found"):
        export(tuned, "gguf", overrides=["data.source=absent.jsonl"])
    with pytest.raises(UserError, match="cannot be exported to onnx"):
        export(tuned, "onnx")
    from zero2one.convert import compress

    with pytest.raises(UserError, match="--method static does not apply"):
        compress(tuned, "static")


@pytest.mark.slow(seconds=60)
def test_the_builtin_model_exports_with_the_built_in_check_set(workspace: Path) -> None:
    """`zero2one export builtin:smollm2-135m-instruct --format gguf` in an empty folder: it has
    no data of its own, so the export is checked on zero2one's built-in held-out chats."""
    result = export("builtin:smollm2-135m-instruct", "gguf-q8_0", out=workspace / "smollm2")
    manifest = load(result.model_dir).manifest
    assert manifest["quantization"] == "q8_0"
    assert 1 < result.report[-1]["metrics"]["val_perplexity"] < 1.1 * \
        result.report[0]["metrics"]["val_perplexity"]
