"""Fine-tuning with transformers' Trainer: LoRA adapters (peft) or every weight.

The Trainer brings gradient accumulation, warm-up and decay, clipping, and checkpoints that hold
the optimizer, scheduler and RNG states, so ``--resume`` continues exactly where a killed run
stopped. A callback forwards progress and losses to zero2one's reporter (and from there to the
tracking run).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zero2one import distributed
from zero2one.errors import RecipeError, UserError
from zero2one.progress import Reporter
from zero2one.tasks.textgen.config import FinetuneConfig, TrainConfig
from zero2one.tasks.textgen.data import IGNORE


@dataclass
class Outcome:
    history: list[dict[str, float]] = field(default_factory=list)  # logged training steps
    steps: int = 0
    resumed_from: int | None = None  # the checkpoint step training continued from
    train_tokens: int = 0  # tokens seen by the forward passes in this process
    train_seconds: float = 0.0
    trainable: int = 0
    total: int = 0
    val_loss: dict[int, float] = field(default_factory=dict)  # step -> loss per trained token


class Collator:
    """Pads a batch on the right: pad ids for inputs, no loss for padding."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            labels[i, :n] = torch.tensor(row["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft calls a method transformers has deprecated; its FutureWarning is not the user's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        yield


def wrap(model: Any, config: FinetuneConfig) -> Any:
    """The model to train: with LoRA adapters, or as it is (every weight trainable)."""
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    targets: list[str] | str = ("all-linear" if lora.target_modules == ["all-linear"]
                                else lora.target_modules)
    try:
        with quiet_peft():
            return get_peft_model(model, LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft scales by a float too
                lora_dropout=lora.dropout,
                target_modules=targets, task_type="CAUSAL_LM", bias="none"))
    except ValueError as exc:
        raise RecipeError(f"model.lora.target_modules: {str(exc).splitlines()[0]}; linear layers "
                          f"of this model: {', '.join(linear_names(model))}") from None


def linear_names(model: Any) -> list[str]:
    """The short names of a model's linear layers (what LoRA can target)."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                   if type(m).__name__ == "Linear"})


def check_targets(model: Any, config: FinetuneConfig) -> None:
    """Refuse LoRA target modules the model lacks, before any expensive work."""
    if config.method == "full" or config.lora.target_modules == ["all-linear"]:
        return
    names = set(linear_names(model))
    missing = [t for t in config.lora.target_modules if t not in names]
    if missing:
        raise RecipeError(f"model.lora.target_modules: this model has no linear layer named "
                          f"{', '.join(missing)}; its linear layers: {', '.join(sorted(names))}")


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def validation_loss(model: Any, dataset: Any, pad_id: int, *, batch_size: int = 8) -> float:
    """Mean loss per trained token over ``dataset`` (perplexity = exp of it)."""
    import torch

    collate = Collator(pad_id)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size,
                                                                  len(dataset)))])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits, targets = labelled_logits(model, batch["labels"],
                                              input_ids=batch["input_ids"],
                                              attention_mask=batch["attention_mask"])
            losses = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")
            total += float(losses)
            count += int((targets != IGNORE).sum())
    model.train(was_training)
    return total / max(count, 1)


def labelled_positions(labels: Any) -> Any:
    """The positions whose next token is labelled in some row of ``labels`` (IGNORE elsewhere):
    the only ones whose vocabulary logits a loss reads."""
    return (labels[:, 1:] != IGNORE).any(0).nonzero().flatten()


def keeps_logits(model: Any) -> bool:
    """Whether the model's forward computes logits only at chosen positions
    (``logits_to_keep``: transformers' causal models; a peft wrapper passes it on)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def labelled_logits(model: Any, labels: Any, **inputs: Any) -> tuple[Any, Any]:
    """(float32 logits, their targets), shape (B, K, vocab) and (B, K), at the K
    :func:`labelled_positions`: the vocabulary's logits of prompt positions are never computed,
    a fifth of the work for a model of SmolLM2's size whose answers are short."""
    keep = labelled_positions(labels)
    if keeps_logits(model):
        logits = model(**inputs, logits_to_keep=keep).logits
    else:  # an older architecture: every position, then the labelled ones
        logits = model(**inputs).logits[:, keep]
    return logits.float(), labels[:, keep + 1]


def labelled_loss(keeps: bool) -> Callable[..., Any]:
    """The Trainer's ``compute_loss_func`` for batches whose logits are those of
    :func:`labelled_positions` (``keeps``: the model computed only those, else all): the sum of
    the cross-entropy over the labelled tokens divided by ``num_items_in_batch`` (the labelled
    tokens of the whole accumulated batch, as transformers' own causal loss divides)."""
    import torch

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        keep = labelled_positions(labels)
        logits = outputs.logits if keeps else outputs.logits[:, keep]
        targets = labels[:, keep + 1]
        total = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
            reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else \
            (targets != IGNORE).sum().clamp(min=1)
        return total / count

    return loss


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def last_complete_checkpoint(directory: Path) -> tuple[int, Path] | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` (the Trainer writes it last)
    is whole: a process killed while saving leaves a checkpoint that must not be resumed."""
    import json

    steps = []
    for path in directory.glob("checkpoint-*") if directory.is_dir() else []:
        try:
            json.loads((path / "trainer_state.json").read_text())
            steps.append((int(path.name.rsplit("-", 1)[-1]), path))
        except (OSError, ValueError):
            continue
    return max(steps) if steps else None


def trainer_arguments(config: TrainConfig, checkpoint_dir: Path, *, seed: int,
                      use_cuda: bool) -> dict[str, Any]:
    """The Trainer's arguments from a recipe's train section (fine-tuning and DPO). Under
    ``--nproc`` the global batch stays ``batch_size × gradient_accumulation``: each rank takes
    its share of the batch (or of the accumulation steps)."""
    import torch

    batch, accumulation = global_batch_share(config)
    return dict(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=batch, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=accumulation, ddp_find_unused_parameters=False,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        learning_rate=config.lr, weight_decay=config.weight_decay,
        lr_scheduler_type=config.scheduler if config.scheduler != "constant"
        else "constant_with_warmup",
        warmup_steps=config.warmup, max_grad_norm=config.max_grad_norm or 0.0,
        logging_strategy="steps", logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, seed=seed, data_seed=seed,
        use_cpu=not use_cuda, bf16=use_cuda and torch.cuda.is_bf16_supported(),
        report_to="none", disable_tqdm=True, dataloader_num_workers=0,
    )


def global_batch_share(config: TrainConfig, world: int | None = None) -> tuple[int, int]:
    """(per-process batch, accumulation steps) that keep the recipe's global batch across the
    data-parallel ranks; a UserError when the ranks cannot share it evenly."""

    world = world or distributed.world_size()
    if config.batch_size % world == 0:
        return config.batch_size // world, config.gradient_accumulation
    if config.gradient_accumulation % world == 0:
        return config.batch_size, config.gradient_accumulation // world
    raise UserError(f"{world} processes cannot share a global batch of train.batch_size="
                    f"{config.batch_size} × train.gradient_accumulation="
                    f"{config.gradient_accumulation}: choose a process count that divides one "
                    "of them")


def progress_callback(step: Any, outcome: Outcome, reporter: Reporter,
                      values: Callable[[dict[str, Any]], dict[str, float]]) -> Any:
    """A Trainer callback: a progress step per optimizer step, the ``values`` a log holds
    into the outcome's history and the reporter, the training's time and steps."""
    from transformers import TrainerCallback

    class Forward(TrainerCallback):  # type: ignore[misc]
        started = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            step.advance(1)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **_: Any) -> None:
            found = values(logs or {})
            if found:
                outcome.history.append({"step": float(state.global_step), **found})
                reporter.metrics(found, state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            outcome.train_seconds = time.perf_counter() - self.started
            outcome.steps = state.global_step

    return Forward()


def fit(model: Any, tokenizer: Any, train_set: Any, val_set: Any, config: TrainConfig, *,
        seed: int, reporter: Reporter, checkpoint_dir: Path, resume: bool) -> Outcome:
    """Train ``model`` in place with the Trainer; checkpoints go to ``checkpoint_dir``."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    use_cuda = next(model.parameters()).device.type == "cuda"  # placed by load_lm
    if config.threads:
        torch.set_num_threads(config.threads)
    outcome = Outcome()
    keeps = keeps_logits(model)
    for config_ in (model.config, getattr(model, "generation_config", None)):
        if config_ is not None and config_.pad_token_id is None:  # as the collator pads
            config_.pad_token_id = tokenizer.pad_token_id
    outcome.trainable, outcome.total = count_parameters(model)
    args = TrainingArguments(**trainer_arguments(config, checkpoint_dir, seed=seed,
                                                 use_cuda=use_cuda),
                             eval_strategy="epoch", remove_unused_columns=False)
    last = last_complete_checkpoint(checkpoint_dir) if resume else None
    if last is not None:
        outcome.resumed_from, last_path = last
        reporter.info(f"resuming from {last_path.name}")

    def sft_values(logs: dict[str, Any]) -> dict[str, float]:
        values = {}
        if "loss" in logs:
            values["train_loss"] = float(logs["loss"])
            values["learning_rate"] = float(logs.get("learning_rate", 0.0))
            if logs.get("grad_norm") is not None:
                values["grad_norm"] = float(logs["grad_norm"])
        if "eval_loss" in logs:
            values["val_loss"] = float(logs["eval_loss"])
            values["val_perplexity"] = perplexity(values["val_loss"])
        return values

    class CountingTrainer(Trainer):  # type: ignore[misc]
        def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None,
                     metric_key_prefix: str = "eval") -> dict[str, float]:
            """The validation loss per trained token (:func:`validation_loss`, the figure the
            report gives; the Trainer's own averages per-batch means), kept by step so that
            the evaluation after training need not repeat the last epoch's."""
            # evaluation draws from the global generator (a data-loader seed); at an epoch's end
            # it runs after the checkpoint was saved, so a run resumed there would see other
            # dropout masks than the uninterrupted run: leave the generator as it was
            with torch.random.fork_rng(devices=[]):
                loss = validation_loss(self.model, val_set, tokenizer.pad_token_id)
            outcome.val_loss[self.state.global_step] = loss
            metrics = {f"{metric_key_prefix}_loss": loss}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state,
                                                             self.control, metrics)
            return metrics

        def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if model.training:
                outcome.train_tokens += int(inputs["attention_mask"].sum())
            if keeps:  # logits only where the loss reads them (labelled_loss)
                inputs = {**inputs, "logits_to_keep": labelled_positions(inputs["labels"])}
            return super().compute_loss(model, inputs, *args, **kwargs)

    steps_per_epoch = math.ceil(len(train_set) / config.batch_size / config.gradient_accumulation)
    total = config.max_steps or math.ceil(steps_per_epoch * config.epochs)
    with reporter.step("fine-tuning", total=total) as step:
        trainer = CountingTrainer(
            model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
            compute_loss_func=labelled_loss(keeps),
            data_collator=Collator(tokenizer.pad_token_id), processing_class=tokenizer,
            callbacks=[progress_callback(step, outcome, reporter, sft_values)])
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        if outcome.resumed_from:
            step.advance(outcome.resumed_from)
        trainer.train(resume_from_checkpoint=str(last[1]) if last else None)
    return outcome
