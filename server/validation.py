"""Turning what a client asked for into decoding work, or an InvalidRequest that says what to fix.
Everything is checked before any work is queued."""

from __future__ import annotations

import math
from dataclasses import dataclass

from decoding.batching import SearchOptions
from server.errors import InvalidRequest
from server.models import ServedModel


@dataclass(frozen=True)
class RequestedOptions:
    """Decoding options as sent; None: not set, take the default."""

    beam_size: int | None = None
    length_penalty: float | None = None
    max_decoding_length: int | None = None
    num_hypotheses: int | None = None


def search_options(requested: RequestedOptions, model: ServedModel, max_beam_size: int) -> SearchOptions:
    beam_size = 1 if requested.beam_size is None else requested.beam_size
    if not 1 <= beam_size <= max_beam_size:
        raise InvalidRequest(f"options.beam_size must be between 1 and {max_beam_size} (1 is greedy search), got {beam_size}")
    length_penalty = 1.0 if requested.length_penalty is None else requested.length_penalty
    if not (math.isfinite(length_penalty) and length_penalty >= 0):
        raise InvalidRequest(f"options.length_penalty must be a finite number >= 0 (0 disables it, default 1.0), got {length_penalty}")
    limit = model.max_output_tokens
    max_length = limit if requested.max_decoding_length is None else requested.max_decoding_length
    if not 1 <= max_length <= limit:
        raise InvalidRequest(f"options.max_decoding_length must be between 1 and {limit} (model {model.name}'s maximum), got {max_length}")
    num_hypotheses = 1 if requested.num_hypotheses is None else requested.num_hypotheses
    if not 1 <= num_hypotheses <= beam_size:
        raise InvalidRequest(f"options.num_hypotheses must be between 1 and beam_size ({beam_size}), got {num_hypotheses}")
    return SearchOptions(beam_size=beam_size, length_penalty=length_penalty, num_hypotheses=num_hypotheses, max_decoding_length=max_length)


def source_ids(texts: list[str], model: ServedModel, max_texts: int) -> list[list[int]]:
    """Tokenized texts (each ending in eos), all within the model's input length."""
    if not texts:
        raise InvalidRequest("texts is empty: send at least one sentence to translate")
    if len(texts) > max_texts:
        raise InvalidRequest(f"{len(texts)} texts in one request; the limit is {max_texts}: split them over several requests")
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidRequest(f"texts[{index}] is empty or whitespace only: every text must hold a sentence")
    sources = model.translator.encode(texts)
    limit = model.max_input_tokens
    for index, ids in enumerate(sources):
        if len(ids) > limit:
            raise InvalidRequest(
                f"texts[{index}] is {len(ids)} tokens long after tokenization; model {model.name} accepts at most {limit}: split the text into sentences"
            )
    return sources
