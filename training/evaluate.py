"""Translation of raw sentences with a PyTorch model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from decoding.batching import SearchOptions, search_batches
from decoding.constraints import LengthBound
from decoding.search import Hypothesis
from nmt_spec import ModelSpec, Tokenizer
from nmt_spec.manifest import DecodingDefaults
from training.models import Seq2SeqModel
from training.search import EnsembleDecoder, TorchIncrementalDecoder


def translate(model: Seq2SeqModel | Sequence[Seq2SeqModel], tokenizer: Tokenizer, spec: ModelSpec, texts: list[str], *search: Any, **named: Any) -> list[str]:
    """Translate raw sentences, batched by length; the search options are best_hypotheses'
    (beam_size 1, the default, is greedy search)."""
    best = best_hypotheses(model, tokenizer, spec, texts, *search, **named)
    return tokenizer.decode_batch([hypothesis.tokens for hypothesis in best])


@torch.no_grad()
def best_hypotheses(
    model: Seq2SeqModel | Sequence[Seq2SeqModel],
    tokenizer: Tokenizer,
    spec: ModelSpec,
    texts: list[str],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_batch_tokens: int = 4000,
    device: str | torch.device = "cpu",
    max_batch_size: int | None = None,
    attention_layer: int | None = None,
    progress: bool = False,
) -> list[Hypothesis]:
    """The best hypothesis of each text, decoded as the exported model decodes by default
    (output bounded by the source), with a progress bar if asked; with attention_layer (an index,
    -1 the last), with the attention of that decoder layer. Several models (sharing the tokenizer)
    decode as an ensemble: the mean of their probabilities at each step."""
    models = [model] if isinstance(model, Seq2SeqModel) else list(model)
    for member in models:
        member.eval()
    sources = [ids[: spec.max_source_length] for ids in tokenizer.encode_batch(texts)]
    defaults = DecodingDefaults()
    options = SearchOptions(
        beam_size=beam_size,
        length_penalty=length_penalty,
        max_decoding_length=spec.max_target_length,
        length_bound=LengthBound(defaults.max_length_a, defaults.max_length_b),
        with_attention=attention_layer is not None,
    )

    def start(batch: np.ndarray) -> TorchIncrementalDecoder | EnsembleDecoder:
        src = torch.from_numpy(batch).to(device)
        members = [TorchIncrementalDecoder(member, src, attention_layer if attention_layer is not None else -1) for member in models]
        return members[0] if len(members) == 1 else EnsembleDecoder(members)

    with tqdm(total=len(sources), desc="translating", unit="sentence", disable=not progress) as bar:
        nbest = search_batches(sources, start, spec.special_ids, options, max_batch_tokens, max_batch_size, on_batch=bar.update)
    return [hypotheses[0] for hypotheses in nbest]
