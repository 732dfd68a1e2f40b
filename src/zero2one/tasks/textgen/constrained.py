"""Constrained decoding: answers that are valid JSON under a JSON Schema (OpenAI's
``response_format``), whatever the model would have written.

The schema is compiled by llguidance (the structured-generation engine of Microsoft's
Guidance, which llama.cpp and vLLM also use): a token-level grammar whose matcher says, before
each step, which tokens keep the answer a prefix of some valid document. zero2one's engine
sets every other token's logit to minus infinity before sampling, per row of the continuous
batch, so constrained and free requests decode together; llama.cpp's server engine gets the
same grammar (its llama.cpp is built with llguidance). The model's end token is allowed only once
the document is complete; a document the token budget cuts ends with ``finish_reason: "length"``.

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    check_schema(schema)                # a one-line ValueError for what cannot be used
    matcher = Matcher(tokenizer, lark(schema), vocab=49152)
    matcher.mask(logits)                # before picking a token
    matcher.advance(token)              # after; matcher.done once the document is complete
"""

from __future__ import annotations

import functools
import json
import weakref
from typing import Any

# compact, as json.dumps writes it: no free whitespace, which a small model fills with newlines
JSON_OPTIONS: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT: dict[str, Any] = {"type": "object"}  # response_format {"type": "json_object"}

_tokenizers: weakref.WeakKeyDictionary[Any, dict[tuple[int, tuple[int, ...]], Any]] = (
    weakref.WeakKeyDictionary())


def check_schema(schema: Any) -> None:
    """``schema`` is a JSON Schema (draft 2020-12 and earlier, by its ``$schema``) that the
    grammar compiler can use; else ValueError naming what is wrong."""
    import jsonschema

    if not isinstance(schema, dict):
        raise ValueError(f"a JSON schema is an object; got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(f"not a valid JSON Schema{f' at {where}' if where else ''}: "
                         f"{exc.message}") from None
    error = _schema_problem(json.dumps(schema, sort_keys=True))
    if error:
        raise ValueError(f"this schema cannot be enforced: {error}")


@functools.lru_cache(maxsize=256)
def _schema_problem(schema: str) -> str:
    """What llguidance finds wrong with a schema ("" for nothing), once per schema: checked in
    its JSON-schema form, whose messages name the problem in one line (a ``%json`` rule's
    quote the whole grammar)."""
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
    return str(LLMatcher.validate_grammar(grammar))


@functools.lru_cache(maxsize=256)
def _problem(grammar: str) -> str:
    """What llguidance finds wrong with a grammar ("" for nothing), once per grammar."""
    from llguidance import LLMatcher

    return str(LLMatcher.validate_grammar(grammar))


def lark(schema: dict[str, Any]) -> str:
    """The schema as an llguidance grammar with zero2one's JSON options, for a llama.cpp built
    with llguidance (xllamacpp's is): both engines then write the same compact JSON."""
    return "%llguidance {}\nstart: %json " + json_rule(schema)


def json_rule(schema: dict[str, Any]) -> str:
    """``schema`` as the body of an llguidance ``%json`` rule, with zero2one's JSON options."""
    return json.dumps({**schema, "x-guidance": JSON_OPTIONS})


def grammar_of(settings: Any) -> str | None:
    """The llguidance grammar a request's answer follows: its JSON schema's, or the grammar
    it carries (tool calls), or None (free text)."""
    if getattr(settings, "grammar", None) is not None:
        return str(settings.grammar)
    if getattr(settings, "json_schema", None) is not None:
        return lark(settings.json_schema)
    return None


def check_grammar(grammar: str) -> None:
    """ValueError naming what an llguidance grammar gets wrong."""
    error = _problem(grammar)
    if error:
        raise ValueError(f"this grammar cannot be enforced: {error}")


def _tokenizer(tokenizer: Any, vocab: int, eos: tuple[int, ...]) -> Any:
    """llguidance's view of a transformers tokenizer (built once per tokenizer: ~1 s for a
    49k-token vocabulary)."""
    import llguidance.hf

    made = _tokenizers.setdefault(tokenizer, {})
    key = (vocab, eos)
    if key not in made:
        made[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab,
                                                 eos_token=list(eos) or None)
    return made[key]


class _Place:
    """One answer's place in its grammar (:func:`grammar_of`), over llguidance's tokenizer.

    The mask is computed into a bit set by llguidance and unpacked with numpy: llguidance's own
    torch helper is a ``torch.compile`` kernel, which needs a C compiler at run time (a slim
    image has none) and computed wrong masks here under ``ATEN_CPU_CAPABILITY=avx2`` (half the
    vocabulary allowed)."""

    def __init__(self, lltokenizer: Any, grammar: str, vocab: int) -> None:
        import llguidance
        import numpy as np

        self.matcher = llguidance.LLMatcher(lltokenizer, grammar)
        if self.matcher.is_error():
            raise ValueError(f"this grammar cannot be enforced: {self.matcher.get_error()}")
        self._np = np
        self.bitmask = np.full((vocab + 31) // 32, -1, dtype=np.int32)

    def refused(self, size: int) -> Any:
        """A numpy bool array over the first ``size`` tokens: True where a token would break
        the document."""
        self.matcher.unsafe_compute_mask_ptr(self.bitmask.ctypes.data, self.bitmask.nbytes)
        bits = self._np.unpackbits(self.bitmask.view(self._np.uint8), bitorder="little")
        return bits[:size] == 0

    def advance(self, token: int) -> None:
        self.matcher.consume_token(token)

    @property
    def done(self) -> bool:
        """The document is complete: nothing may follow it but the end."""
        return bool(self.matcher.is_stopped())

    @property
    def error(self) -> str:
        return str(self.matcher.get_error()) if self.matcher.is_error() else ""


class Matcher(_Place):
    """Masks for torch logits, from a transformers tokenizer (zero2one's engine)."""

    def __init__(self, tokenizer: Any, grammar: str, *, vocab: int,
                 eos: tuple[int, ...] = ()) -> None:
        super().__init__(_tokenizer(tokenizer, vocab, eos), grammar, vocab)

    def mask(self, logits: Any) -> None:
        """``logits`` (V,) with the tokens that would break the document at minus infinity."""
        import torch

        refused = torch.from_numpy(self.refused(logits.shape[-1])).to(logits.device)
        with torch.inference_mode():  # the decoding step's logits are inference tensors
            logits.masked_fill_(refused, float("-inf"))


class ArrayMatcher(_Place):
    """Masks for numpy logits, from llguidance's tokenizer of a llama.cpp vocabulary
    (``llguidance.llamacpp``): a logits processor for llama-cpp-python's sampler."""

    def mask(self, _ids: Any, logits: Any) -> Any:
        """``logits`` (V,) with the tokens that would break the document at minus infinity."""
        logits[self.refused(len(logits))] = -self._np.inf
        return logits
