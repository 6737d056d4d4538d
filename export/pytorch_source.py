"""Our PyTorch checkpoints as an export source, and the one module of export/ that imports
training/: a checkpoint loaded into the weight spec (nmt_spec/weights.py), and the PyTorch model
as the reference its graphs are verified against (how closely they follow it, its BLEU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from decoding.batching import SearchOptions, pad_ids, search_batches, token_batches
from decoding.onnx_decoder import OnnxSeq2Seq
from nmt_spec import ModelSpec, Tokenizer
from nmt_spec.weights import fill
from training.checkpoint import load_model
from training.evaluate import translate
from training.models import Seq2SeqModel
from training.search import TorchIncrementalDecoder


@dataclass
class PyTorchSource:
    spec: ModelSpec
    weights: dict[str, np.ndarray]  # the spec's, filled
    model: Seq2SeqModel  # the reference, in eval mode

    def translate(self, tokenizer: Tokenizer, texts: list[str]) -> list[str]:
        """PyTorch's greedy translations: the BLEU the graphs are held to."""
        return translate(self.model, tokenizer, self.spec, texts)


def load_checkpoint(path: Path) -> PyTorchSource:
    spec, model, _ = load_model(path)
    return PyTorchSource(spec, fill(spec, {name: value.detach().numpy() for name, value in model.state_dict().items()}, str(path)), model)


@dataclass
class ParityReport:
    sentences: int
    max_abs_logit_diff: float  # teacher-forced, over every real target position
    greedy_compared: int
    greedy_identical: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.no_grad()
def max_logit_difference(model: Seq2SeqModel, onnx_model: OnnxSeq2Seq, spec: ModelSpec, sources: list[list[int]], targets: list[list[int]], max_batch_tokens: int = 3000) -> float:
    """Feeds the reference targets to both decoders step by step and compares the logits,
    normalised (the graphs end in LogSoftmax: the difference of log-probabilities)."""
    special = spec.special_ids
    worst = 0.0
    lengths = [(len(s), len(t) + 1) for s, t in zip(sources, targets)]
    for indices in token_batches(lengths, max_batch_tokens, seed=None):
        src = pad_ids([sources[i] for i in indices], special.pad)
        tgt_in = pad_ids([[special.bos] + targets[i] for i in indices], special.pad)
        reference = torch.log_softmax(model(torch.from_numpy(src), torch.from_numpy(tgt_in)), dim=-1).numpy()
        decoder = onnx_model.start(src)
        real = tgt_in != special.pad
        for position in range(tgt_in.shape[1]):
            logits = decoder.step(tgt_in[:, position])
            rows = real[:, position]
            worst = max(worst, float(np.abs(logits[rows] - reference[rows, position]).max()))
    return worst


def greedy_agreement(model: Seq2SeqModel, onnx_model: OnnxSeq2Seq, spec: ModelSpec, sources: list[list[int]], max_batch_tokens: int = 3000) -> int:
    """How many sentences get exactly the same greedy token ids from both."""
    options = SearchOptions(max_decoding_length=spec.max_target_length)

    def torch_start(batch: np.ndarray) -> TorchIncrementalDecoder:
        return TorchIncrementalDecoder(model, torch.from_numpy(batch))

    expected = search_batches(sources, torch_start, spec.special_ids, options, max_batch_tokens)
    actual = search_batches(sources, onnx_model.start, spec.special_ids, options, max_batch_tokens)
    return sum(a[0].tokens == e[0].tokens for a, e in zip(actual, expected))


def measure_parity(model: Seq2SeqModel, onnx_model: OnnxSeq2Seq, spec: ModelSpec, sources: list[list[int]], targets: list[list[int]]) -> ParityReport:
    return ParityReport(
        sentences=len(sources),
        max_abs_logit_diff=max_logit_difference(model, onnx_model, spec, sources, targets),
        greedy_compared=len(sources),
        greedy_identical=greedy_agreement(model, onnx_model, spec, sources),
    )
