"""Turning what a client asked for into decoding work, or an InvalidRequest that says what to fix.
Everything is checked before any work is queued."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from decoding.batching import SearchOptions
from decoding.constraints import TokenRules
from server.config import ServerConfig
from server.errors import InvalidRequest
from server.models import ServedModel
from server.segmentation import Cancelled, Segmented, split_long, split_text, whole


@dataclass(frozen=True)
class RequestedOptions:
    """Decoding options as sent; None: not set, take the default."""

    beam_size: int | None = None
    length_penalty: float | None = None
    max_decoding_length: int | None = None
    num_hypotheses: int | None = None
    min_decoding_length: int | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    return_attention: bool = False


@dataclass(frozen=True)
class DefaultDecoding:
    beam_size: int
    length_penalty: float


def default_decoding(model: ServedModel, config: ServerConfig) -> DefaultDecoding:
    """What a request that sets no beam or length penalty gets: the server's flags where set,
    else the model's manifest; a beam never over --max-beam-size."""
    own = model.decoding
    beam_size = config.default_beam_size or own.beam_size
    length_penalty = config.default_length_penalty if config.default_length_penalty >= 0 else own.length_penalty
    return DefaultDecoding(min(beam_size, config.max_beam_size), length_penalty)


def search_options(requested: RequestedOptions, model: ServedModel, config: ServerConfig) -> SearchOptions:
    """What the request set, and the defaults (default_decoding, the manifest's bound and
    suppressed tokens) for what it left unset."""
    fallback = default_decoding(model, config)
    max_beam_size = config.max_beam_size
    beam_size = fallback.beam_size if requested.beam_size is None else requested.beam_size
    if not 1 <= beam_size <= max_beam_size:
        raise InvalidRequest(f"options.beam_size must be between 1 and {max_beam_size} (1 is greedy search), got {beam_size}")
    length_penalty = fallback.length_penalty if requested.length_penalty is None else requested.length_penalty
    if not (math.isfinite(length_penalty) and length_penalty >= 0):
        raise InvalidRequest(f"options.length_penalty must be a finite number >= 0 (0 disables it, default 1.0), got {length_penalty}")
    limit = model.max_output_tokens
    max_length = limit if requested.max_decoding_length is None else requested.max_decoding_length
    if not 1 <= max_length <= limit:
        raise InvalidRequest(f"options.max_decoding_length must be between 1 and {limit} (model {model.name}'s maximum), got {max_length}")
    num_hypotheses = 1 if requested.num_hypotheses is None else requested.num_hypotheses
    if not 1 <= num_hypotheses <= beam_size:
        raise InvalidRequest(f"options.num_hypotheses must be between 1 and beam_size ({beam_size}), got {num_hypotheses}")
    return model.search_options(
        beam_size=beam_size,
        length_penalty=length_penalty,
        num_hypotheses=num_hypotheses,
        max_decoding_length=max_length,
        rules=token_rules(requested, max_length, tuple(model.decoding.suppressed_ids)),
        with_attention=attention_wanted(requested, model),
    )


def attention_wanted(requested: RequestedOptions, model: ServedModel) -> bool:
    if requested.return_attention and not model.has_attention:
        raise InvalidRequest(
            f"options.return_attention: model {model.name} version {model.version} was exported without an attention output; export it again with python -m export"
        )
    return requested.return_attention


def token_rules(requested: RequestedOptions, max_length: int, suppressed: tuple[int, ...]) -> TokenRules:
    min_length = 0 if requested.min_decoding_length is None else requested.min_decoding_length
    if min_length > max_length:
        raise InvalidRequest(f"options.min_decoding_length must be at most max_decoding_length ({max_length}), got {min_length}")
    penalty = 1.0 if requested.repetition_penalty is None else requested.repetition_penalty
    if not (math.isfinite(penalty) and penalty > 0):
        raise InvalidRequest(f"options.repetition_penalty must be a finite number > 0 (1 is off; above 1 discourages repeated tokens), got {penalty}")
    ngram = 0 if requested.no_repeat_ngram_size is None else requested.no_repeat_ngram_size
    if ngram > max_length:
        raise InvalidRequest(f"options.no_repeat_ngram_size must be at most max_decoding_length ({max_length}; 0 is off), got {ngram}")
    return TokenRules(min_length=min_length, repetition_penalty=penalty, no_repeat_ngram_size=ngram, suppressed=suppressed)


@dataclass(frozen=True)
class PreparedTexts:
    """A request's texts as the sentences to decode: sources holds every sentence of every text,
    in order; texts[i] says how text i is laid out around its sentences."""

    texts: list[Segmented]
    sources: list[list[int]]  # token ids, each ending in eos


def check_sizes(texts: Sequence[str], model: ServedModel, config: ServerConfig, split_sentences: bool) -> None:
    """The limits that cost nothing to check, on the request as it came: texts, and characters per
    text and per request (the token limits times --max-characters-per-token, a bound no real text
    reaches: test2016 averages 4.6 characters a token). Checked before any normalization,
    segmentation or tokenization, so an outsized text is refused in microseconds."""
    if not texts:
        raise InvalidRequest("texts is empty: send at least one text to translate")
    if len(texts) > config.max_texts_per_request:
        raise InvalidRequest(f"{len(texts)} texts in one request; the limit is {config.max_texts_per_request}: split them over several requests")
    per_token = config.max_characters_per_token
    request_limit = config.max_request_tokens * per_token
    if not split_sentences:
        text_limit = model.max_input_tokens * per_token
        for index, text in enumerate(texts):
            if len(text) > text_limit:
                raise InvalidRequest(
                    f"texts[{index}] holds {len(text)} characters; unsplit, model {model.name} accepts at most {text_limit} "
                    f"({model.max_input_tokens} tokens x {per_token} characters per token): split the text into sentences, or leave split_sentences unset"
                )
    characters = sum(len(text) for text in texts)
    if characters > request_limit:
        raise InvalidRequest(
            f"the request holds {characters} characters; the limit is {request_limit} "
            f"(--max-request-tokens {config.max_request_tokens} x --max-characters-per-token {per_token}): send the text in several requests"
        )


def prepare_texts(
    texts: list[str], model: ServedModel, config: ServerConfig, split_sentences: bool, cancelled: Callable[[], bool] = lambda: False
) -> PreparedTexts:
    """Each text split into sentences (or kept whole), tokenized, every sentence within the
    model's input length, the request within the server's limits; in time linear in the
    request's characters (check_sizes has bounded those). `cancelled` is asked between texts
    and pieces: a request whose client left stops being prepared (Cancelled)."""
    check_sizes(texts, model, config, split_sentences)
    language = model.manifest.spec.source_language
    segmented = [split_text(text, language) if split_sentences else whole(text) for text in texts]
    for index, text in enumerate(segmented):
        if not text.sentences:
            raise InvalidRequest(f"texts[{index}] is empty or holds only whitespace or invisible characters: every text must hold something to translate")
    limit = model.max_input_tokens
    # Every sentence of the request in one tokenizer call; only sentences over the limit are cut
    # (split_long tokenizes each of their pieces).
    everything = iter(model.encode([sentence for text in segmented for sentence in text.sentences]))
    laid_out: list[Segmented] = []
    sources: list[list[int]] = []
    for index, text in enumerate(segmented):
        if cancelled():
            raise Cancelled
        encoded = [next(everything) for _ in text.sentences]
        if all(len(ids) <= limit for ids in encoded):
            laid_out.append(text)
            sources += encoded
            continue
        if not split_sentences:
            longest = max(len(ids) for ids in encoded)
            raise InvalidRequest(
                f"texts[{index}] is {longest} tokens long after tokenization; model {model.name} accepts at most {limit}: split the text into sentences, or leave split_sentences unset"
            )
        text, ids = _within_limit(text, encoded, model.encode_one, limit, cancelled)
        laid_out.append(text)
        sources += ids
    tokens = sum(len(ids) for ids in sources)
    if tokens > config.max_request_tokens:
        raise InvalidRequest(
            f"the request holds {tokens} source tokens after splitting into sentences; the limit is {config.max_request_tokens}: send the text in several requests"
        )
    if len(sources) > config.max_queue_size:
        raise InvalidRequest(
            f"the request holds {len(sources)} sentences; model {model.name}'s queue holds at most {config.max_queue_size}: send the text in several requests"
        )
    return PreparedTexts(laid_out, sources)


def _within_limit(
    text: Segmented, encoded: list[list[int]], encode: Callable[[str], list[int]], limit: int, cancelled: Callable[[], bool]
) -> tuple[Segmented, list[list[int]]]:
    """The text with each sentence over the limit replaced by its pieces, and every sentence's ids."""
    sentences: list[str] = []
    ids: list[list[int]] = []
    gaps = [text.gaps[0]]
    for sentence, sentence_ids, gap in zip(text.sentences, encoded, text.gaps[1:]):
        if len(sentence_ids) <= limit:
            sentences.append(sentence)
            ids.append(sentence_ids)
            gaps.append(gap)
            continue
        cut = split_long(sentence, len(sentence_ids), encode, limit, cancelled)
        sentences += cut.layout.sentences
        ids += cut.ids
        gaps[-1] += cut.layout.gaps[0]
        gaps += cut.layout.gaps[1:-1] + [cut.layout.gaps[-1] + gap]
    return Segmented(sentences, gaps), ids
