"""The model: a frozen zero2one image classifier's last feature map, pooled to a grid of
visual tokens, an MLP projector into the language model's embedding space, and the frozen
language model reading them where the prompt's image stands (LLaVA's design, with the
projector the only trained part).

A prompt is the language model's own chat template around one user message,
``IMAGE + "\\n" + question``; the template's text before and after ``IMAGE`` is tokenized apart
and the visual tokens' embeddings go between.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zero2one.errors import UserError
from zero2one.tasks.textgen.data import IGNORE
from zero2one.tasks.textgen.train import labelled_logits

IMAGE = "<image>"


def feature_extractor(net: nn.Module) -> nn.Module:
    """``net``'s layers up to its last 4-D feature map: the ``features`` of zero2one's
    seed-cnn and small-cnn without their global pooling."""
    features = getattr(net, "features", None)
    if not isinstance(features, nn.Sequential):
        raise UserError("model.vision: the encoder must be a zero2one seed-cnn or small-cnn "
                        f"image classifier (this one is a {type(net).__name__})")
    layers = list(features.children())
    while layers and isinstance(layers[-1], nn.Flatten | nn.AdaptiveAvgPool2d):
        layers.pop()
    return nn.Sequential(*layers)


class Projector(nn.Module):
    """(B, C, H, W) feature maps and the (B, c, S, S) images they came from -> (B, tokens,
    hidden): both pooled to a √tokens grid and joined per cell — the image's own mean colour
    beside the features, since a classifier trained to name shapes learns to ignore colour
    (a shapes model answered colour questions at 0.34 without it, chance 0.25) — then an MLP
    per cell (LLaVA-1.5's two layers with GELU). ``channels``: C + c."""

    def __init__(self, channels: int, hidden: int, tokens: int) -> None:
        super().__init__()
        side = round(tokens ** 0.5)
        self.tokens = side * side
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden))

    def forward(self, maps: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        cells = torch.cat([self.pool(maps), self.pool(pixels)], 1)  # (B, C + c, side, side)
        return self.mlp(cells.flatten(2).transpose(1, 2))  # (B, T, hidden)


class VisionLanguageModel(nn.Module):
    def __init__(self, encoder: nn.Module, projector: Projector, lm: Any, tokenizer: Any,
                 *, system: str = "") -> None:
        super().__init__()
        self.encoder, self.projector, self.lm = encoder.eval(), projector, lm.eval()
        self.tokenizer, self.system = tokenizer, system
        self.prepare_images: Any = None  # PIL images -> the encoder's normalised input
        for module in (self.encoder, self.lm):
            for p in module.parameters():
                p.requires_grad_(False)
        self._answer_end = self._template_end()

    # ---- prompts ------------------------------------------------------------------------------

    def _messages(self, question: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": f"{IMAGE}\n{question}"}]

    def prompt_text(self, question: str) -> tuple[str, str]:
        """The template's text before and after the image, for one question."""
        if IMAGE in question:
            raise UserError(f"a question must not contain {IMAGE}")
        text = self.tokenizer.apply_chat_template(self._messages(question), tokenize=False,
                                                  add_generation_prompt=True)
        before, _, after = text.partition(IMAGE)
        return before, after

    def _template_end(self) -> str:
        """What the template writes after an assistant's answer (SmolLM2: <|im_end|>\\n)."""
        messages = [*self._messages("q"), {"role": "assistant", "content": "ANSWER"}]
        whole = self.tokenizer.apply_chat_template(messages, tokenize=False)
        return whole[whole.rindex("ANSWER") + len("ANSWER"):].rstrip("\n") or \
            (self.tokenizer.eos_token or "")

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count(self, question: str) -> int:
        """Prompt tokens of one question, the visual ones included."""
        before, after = self.prompt_text(question)
        return len(self._ids(before)) + self.visual_tokens + len(self._ids(after))

    @property
    def visual_tokens(self) -> int:
        return self.projector.tokens

    # ---- embeddings -----------------------------------------------------------------------------

    def visual(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, C, S, S) -> visual token embeddings (B, T, hidden)."""
        with torch.no_grad():
            maps = self.encoder(pixels)
        return self.projector(maps, pixels)

    def sequences(self, pixels: torch.Tensor, questions: Sequence[str],
                  answers: Sequence[str] | None = None, *, left: bool = False, skip: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(inputs_embeds, attention_mask, labels): one row per question, padded on the right
        for training (labels: IGNORE but on the answer and its end), on the left for
        generation; ``skip``: leave out the first tokens of every row (a head they share,
        read once from a cache instead)."""
        embed = self.lm.get_input_embeddings()
        device = embed.weight.device
        visual = self.visual(pixels.to(device))
        rows, targets = [], []
        for i, question in enumerate(questions):
            before, after = self.prompt_text(question)
            head, tail = self._ids(before), self._ids(after)
            answer = self._ids(answers[i] + self._answer_end) if answers is not None else []
            text_ids = torch.tensor(head + tail + answer, device=device)
            words = embed(text_ids)
            rows.append(torch.cat([words[skip:len(head)], visual[i],
                                   words[len(head):]], 0))
            prompt_len = len(head) - skip + visual.shape[1] + len(tail)
            targets.append([IGNORE] * prompt_len + answer)
        longest = max(r.shape[0] for r in rows)
        hidden = rows[0].shape[1]
        embeds = torch.zeros(len(rows), longest, hidden, device=device, dtype=rows[0].dtype)
        mask = torch.zeros(len(rows), longest, dtype=torch.long, device=device)
        labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            n = row.shape[0]
            span = slice(longest - n, longest) if left else slice(0, n)
            embeds[i, span], mask[i, span] = row, 1
            labels[i, span] = torch.tensor(targets[i], device=device)
        return embeds, mask, (labels if answers is not None else None)

    def loss(self, pixels: torch.Tensor, questions: Sequence[str],
             answers: Sequence[str]) -> torch.Tensor:
        """Mean cross-entropy over the answers' tokens. Two savings, the same loss: the
        template's text before the image, where every row has the same (SmolLM2: 8 of a digit
        question's 30 tokens), is read once and its keys and values shared by the batch; and
        the vocabulary's logits are computed only where a row's next token is an answer token
        (``logits_to_keep``). A step of the digits recipe (16 questions, forward and
        backward): 2.3 s -> 1.5 s on one thread."""
        heads = {tuple(self._ids(self.prompt_text(q)[0])) for q in set(questions)}
        head = list(heads.pop()) if len(heads) == 1 else []
        embeds, mask, labels = self.sequences(pixels, questions, answers, skip=len(head))
        assert labels is not None
        inputs: dict[str, Any] = {"inputs_embeds": embeds, "attention_mask": mask}
        if head:
            inputs["cache"] = self._shared(head, len(questions))
            inputs["attention_mask"] = torch.cat([mask.new_ones(len(questions), len(head)),
                                                  mask], 1)
        logits, targets = labelled_logits(self.lm, labels, **inputs)
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                           ignore_index=IGNORE)

    def _shared(self, head: list[int], rows: int) -> Any:
        """The language model's cache of ``head`` read once (with the gradient of any adapter
        on it), repeated for ``rows`` rows."""
        embed = self.lm.get_input_embeddings()
        ids = torch.tensor([head], device=embed.weight.device)
        cache = self.lm(inputs_embeds=embed(ids), use_cache=True).cache
        cache.batch_repeat_interleave(rows)
        return cache

    @torch.no_grad()
    def generate(self, images: Sequence[Any], questions: Sequence[str],
                 **options: Any) -> list[list[int]]:
        """The new tokens' ids for each question about its image (PIL images);
        ``options``: transformers' ``generate`` settings (:func:`generation_options`)."""
        if self.prepare_images is None:
            raise UserError("the model has no image preprocessing (its vision encoder)")
        embeds, mask, _ = self.sequences(self.prepare_images(list(images)), questions,
                                         left=True)
        out = self.lm.generate(inputs_embeds=embeds, attention_mask=mask, **options)
        return [row.tolist() for row in out]  # inputs_embeds: only the new tokens come back


def generation_options(tokenizer: Any, *, max_new_tokens: int = 16, temperature: float = 0.0,
                       top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None,
                       streamer: Any = None) -> dict[str, Any]:
    """``generate`` keyword arguments: greedy at temperature 0, else sampled (``seed``: the
    caller seeds torch), stopping at any of ``stop``."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad,
                               "streamer": streamer}
    options.update({"do_sample": True, "temperature": temperature, "top_p": top_p}
                   if temperature > 0 else {"do_sample": False})
    if stop:
        options.update(stop_strings=list(stop), tokenizer=tokenizer)
    return options


def with_lora(lm: Any, r: int, alpha: float, target_modules: list[str]) -> Any:
    """``lm`` with trainable LoRA adapters (peft) on ``target_modules``; the rest frozen."""
    from peft import LoraConfig, get_peft_model

    try:
        return get_peft_model(lm, LoraConfig(r=r, lora_alpha=alpha,  # type: ignore[arg-type]
                                             lora_dropout=0.0, target_modules=target_modules,
                                             bias="none"))
    except ValueError as exc:  # no such module in this model
        raise UserError(f"model.lora.target_modules: {exc}") from None


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a fit trains (the projector's, LoRA's), by name: a checkpoint's."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
