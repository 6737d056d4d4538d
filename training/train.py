"""The training loop: token-bucketed batches, AdamW, label smoothing, clipping, mixed precision,
DDP, periodic resumable checkpoints, per-epoch validation (loss and BLEU) and plots."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nmt_spec.model_spec import TOKENIZER_FILE
from nmt_spec import ModelSpec, SpecialIds, Tokenizer, train_tokenizer
from nmt_spec.scores import score
from training.checkpoint import save_model_checkpoint
from training.config import TrainConfig, config_to_dict
from training.data import EncodedCorpus, encode_corpus, epoch_batches, make_batch, read_parallel, read_training_pairs
from training.distributed import DistributedContext, broadcast_float, setup_distributed, teardown_distributed
from training.evaluate import translate
from training.models import Seq2SeqModel, build_model
from training.models.base import count_parameters
from training.plots import plot_training_curves
from training.schedule import LearningRateSchedule

log = logging.getLogger(__name__)

SPEC_FILE = "model_spec.json"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
TRAIN_LOG = "train_log.jsonl"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
PLOT_INTERVAL_SECONDS = 60.0  # redrawing costs ~1 s: fine per epoch of a real run, not of a tiny one


@dataclass
class TrainingState:
    """Where training is, beyond the weights: enough to continue exactly."""

    step: int = 0
    epoch: int = 1
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    best_bleu: float = -math.inf
    epoch_loss_sum: float = 0.0  # over the batches of `epoch` trained so far
    epoch_tokens: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if config.precision == "fp32" or (config.precision == "auto" and device.type != "cuda"):
        return None
    if config.precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if config.precision == "bf16" else torch.float16


def prepare_tokenizer(config: TrainConfig, out_dir: Path) -> Tokenizer:
    """Train the joint tokenizer on both sides of the training split, once per run directory."""
    path = out_dir / TOKENIZER_FILE
    if path.exists():
        return Tokenizer(path)
    sources, targets = read_parallel(config.data, config.data.train_split, config.data.limit_train_pairs)
    return train_tokenizer(sources + targets, path, config.tokenizer.vocab_size, config.tokenizer.model_type)


def make_spec(config: TrainConfig) -> ModelSpec:
    return ModelSpec(
        architecture=config.architecture,
        config=config.model,
        tokenizer_file=TOKENIZER_FILE,
        special_ids=SpecialIds(),
        max_source_length=config.data.max_length,
        max_target_length=config.data.max_length,
        source_language=config.data.source_language,
        target_language=config.data.target_language,
    )


def weights_shape(spec: ModelSpec) -> dict[str, Any]:
    """What a checkpoint's weights must agree on to start another run: everything in the spec but
    dropout, which a run may change (a model trained with little of it continued with more)."""
    values = spec.to_dict()
    values["config"] = {key: value for key, value in values["config"].items() if not key.endswith("dropout")}
    return values


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int, label_smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy summed over non-pad target tokens."""
    return F.cross_entropy(
        logits.float().flatten(0, 1),
        targets.flatten(),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


@torch.no_grad()
def validation_loss(model: Seq2SeqModel, corpus: EncodedCorpus, config: TrainConfig, device: torch.device) -> float:
    model.eval()
    total, tokens = 0.0, 0
    pad_id, bos_id = SpecialIds().pad, SpecialIds().bos
    for indices in epoch_batches(corpus, config.max_tokens, seed=0, epoch=0):
        batch = make_batch(corpus, indices, pad_id, bos_id).to(device)
        logits = model(batch.src, batch.tgt_in)
        total += float(sequence_loss(logits, batch.tgt_out, pad_id, config.optim.label_smoothing))
        tokens += batch.target_tokens
    model.train()
    return total / max(tokens, 1)


def capture_rng() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(self, config: TrainConfig, out_dir: Path, context: DistributedContext) -> None:
        self.config = config
        self.out_dir = out_dir
        self.context = context
        self.device = context.device
        self.special = SpecialIds()
        out_dir.mkdir(parents=True, exist_ok=True)
        initial = torch.load(config.init_from, map_location="cpu", weights_only=True) if config.init_from else None
        if context.is_main:
            (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
            if initial is not None and not (out_dir / TOKENIZER_FILE).exists():
                # the ids the weights were trained on; a tokenizer trained again could differ
                shutil.copyfile(Path(config.init_from).parent / initial["spec"]["tokenizer_file"], out_dir / TOKENIZER_FILE)
            self.tokenizer = prepare_tokenizer(config, out_dir)
        if context.enabled:
            torch.distributed.barrier()
        self.tokenizer = Tokenizer(out_dir / TOKENIZER_FILE)
        if self.tokenizer.vocab_size != config.model.vocab_size:
            raise ValueError(
                f"{out_dir / TOKENIZER_FILE} has {self.tokenizer.vocab_size} pieces, the config wants {config.model.vocab_size}"
            )
        self.spec = make_spec(config)
        spec_file = out_dir / SPEC_FILE
        # left as it is on --resume: its time is when the run began (runs-report's wall time)
        if context.is_main and not (spec_file.exists() and ModelSpec.load(spec_file) == self.spec):
            self.spec.save(spec_file)

        data = config.data
        sources, targets = read_training_pairs(data)
        self.train_corpus = encode_corpus(self.tokenizer, sources, targets, data.max_length)
        self.valid_sources, self.valid_references = read_parallel(data, data.valid_split, data.limit_valid_pairs)
        self.valid_corpus = encode_corpus(self.tokenizer, self.valid_sources, self.valid_references)

        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.model = build_model(self.spec).to(self.device)
        if initial is not None:
            if weights_shape(ModelSpec.from_dict(initial["spec"])) != weights_shape(self.spec):
                raise ValueError(f"init_from {config.init_from} holds another model than the config describes: {initial['spec']} against {self.spec.to_dict()}")
            self.model.load_state_dict(initial["model"])  # fp16 weights are cast to the parameters' fp32
        self.trained_model: torch.nn.Module = (
            DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
            if context.enabled
            else self.model
        )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.optim.learning_rate,
            betas=config.optim.betas,
            eps=config.optim.eps,
            weight_decay=config.optim.weight_decay,
        )
        self.schedule = LearningRateSchedule(self.optimizer, config.optim)
        self.autocast_dtype = resolve_precision(config, self.device)
        self.scaler = torch.amp.GradScaler(enabled=self.autocast_dtype == torch.float16)
        self.state = TrainingState()
        self.last_plot_time = -math.inf

    # --- checkpoints -------------------------------------------------------------------
    def save_training_checkpoint(self) -> None:
        if not self.context.is_main:
            return
        path = self.out_dir / LAST_CHECKPOINT
        staging = path.with_suffix(".tmp")
        torch.save(
            {
                "spec": self.spec.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "training_state": self.state.__dict__,
                "rng": capture_rng(),
                "config": config_to_dict(self.config),
            },
            staging,
        )
        staging.replace(path)  # never leave a half-written last.pt behind

    def resume(self) -> None:
        path = self.out_dir / LAST_CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"--resume: no {path} to continue from")
        checkpoint = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainingState(**checkpoint["training_state"])
        restore_rng(checkpoint["rng"])
        log.info("resumed from %s at step %d (epoch %d)", path, self.state.step, self.state.epoch)

    # --- the loop ----------------------------------------------------------------------
    def train_step(self, indices: list[int]) -> tuple[float, int]:
        batch = make_batch(self.train_corpus, indices, self.special.pad, self.special.bos).to(self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.trained_model(batch.src, batch.tgt_in)
        tokens = batch.target_tokens
        loss_sum = sequence_loss(logits, batch.tgt_out, self.special.pad, self.config.optim.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_sum / max(tokens, 1)).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.clip_norm)
        self.schedule.apply(self.state.step + 1)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_sum.item() / max(tokens, 1), tokens

    def run(self) -> TrainingState:
        config = self.config
        if self.context.is_main:
            log.info(
                "%s: %d parameters, %d training pairs, device %s, precision %s",
                config.architecture,
                count_parameters(self.model),
                len(self.train_corpus),
                self.device,
                self.autocast_dtype or "fp32",
            )
        self.model.train()
        log_file = open(self.out_dir / TRAIN_LOG, "a", encoding="utf-8") if self.context.is_main else None
        try:
            while self.state.epoch <= config.epochs and not self.reached_max_steps():
                self.train_epoch(log_file)
                if self.reached_max_steps():
                    break
                self.end_epoch()
        finally:
            if log_file:
                log_file.close()
        self.save_training_checkpoint()
        self.plot_curves()
        return self.state

    def plot_curves(self) -> None:
        if self.context.is_main and self.state.history:
            title = f"{self.config.architecture} on {self.config.data.directory}"
            plot_training_curves(self.state.history, self.out_dir / CURVES_FILE, title)
            self.last_plot_time = time.monotonic()

    def reached_max_steps(self) -> bool:
        return self.config.max_steps is not None and self.state.step >= self.config.max_steps

    def train_epoch(self, log_file: Any) -> None:
        config, state, context = self.config, self.state, self.context
        batches = epoch_batches(self.train_corpus, config.max_tokens, config.seed, state.epoch)
        per_rank = len(batches) // context.world_size  # equal counts keep DDP processes in step
        batches = batches[context.rank * per_rank : (context.rank + 1) * per_rank]
        progress = tqdm(
            total=per_rank,
            initial=state.batch_in_epoch,
            desc=f"epoch {state.epoch}/{config.epochs}",
            disable=not (config.progress and context.is_main),
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
        )
        started, tokens_since = time.perf_counter(), 0
        for indices in batches[state.batch_in_epoch :]:
            loss, tokens = self.train_step(indices)
            state.step += 1
            state.batch_in_epoch += 1
            state.epoch_loss_sum += loss * tokens
            state.epoch_tokens += tokens
            tokens_since += tokens
            learning_rate = self.optimizer.param_groups[0]["lr"]
            if log_file:
                log_file.write(json.dumps({"step": state.step, "epoch": state.epoch, "loss": loss, "lr": learning_rate, "tokens": tokens}) + "\n")
            elapsed = time.perf_counter() - started
            progress.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_since * context.world_size / max(elapsed, 1e-9):.0f}", lr=f"{learning_rate:.2e}", refresh=False)
            progress.update()
            if state.step % config.checkpoint_every == 0:
                self.save_training_checkpoint()
            if self.reached_max_steps():
                break
        progress.close()

    def end_epoch(self) -> None:
        config, state = self.config, self.state
        valid_bleu = None
        entry: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "train_loss": state.epoch_loss_sum / max(state.epoch_tokens, 1)}
        if self.context.is_main:
            entry["valid_loss"] = validation_loss(self.model, self.valid_corpus, config, self.device)
            if config.validate_bleu:
                hypotheses = translate(self.model, self.tokenizer, self.spec, self.valid_sources, device=self.device)
                valid_bleu = score(hypotheses, self.valid_references).bleu
                self.model.train()
            entry["valid_bleu"] = valid_bleu
            log.info("epoch %d: %s", state.epoch, json.dumps(entry))
        # Every process takes the same plateau decision, from the main process's BLEU.
        metric = broadcast_float(valid_bleu if valid_bleu is not None else -entry.get("valid_loss", 0.0), self.context)
        self.schedule.report_validation(metric)
        if self.context.is_main:
            state.history.append(entry)
            self.write_epoch_outputs(entry, metric)
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_loss_sum, state.epoch_tokens = 0.0, 0
        self.save_training_checkpoint()

    def write_epoch_outputs(self, entry: dict[str, Any], metric: float) -> None:
        state, config = self.state, self.config
        (self.out_dir / HISTORY_FILE).write_text(json.dumps(state.history, indent=2) + "\n")
        if time.monotonic() - self.last_plot_time >= PLOT_INTERVAL_SECONDS:
            self.plot_curves()
        epoch_path = self.out_dir / f"epoch{state.epoch}.pt"
        save_model_checkpoint(epoch_path, self.spec, self.model, epoch=state.epoch, step=state.step)
        stale = self.out_dir / f"epoch{state.epoch - config.keep_epoch_checkpoints}.pt"
        stale.unlink(missing_ok=True)
        if metric > state.best_bleu:
            state.best_bleu = metric
            save_model_checkpoint(
                self.out_dir / BEST_CHECKPOINT, self.spec, self.model, epoch=state.epoch, step=state.step, valid_bleu=entry.get("valid_bleu")
            )


def train(config: TrainConfig, out_dir: Path, resume: bool = False) -> TrainingState:
    """Train (or continue training) a model into out_dir; returns where training ended."""
    if config.threads:
        torch.set_num_threads(config.threads)
    context = setup_distributed()
    try:
        trainer = Trainer(config, out_dir, context)
        if resume:
            trainer.resume()
        return trainer.run()
    finally:
        teardown_distributed(context)
