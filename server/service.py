"""The nmt.v1.Translator servicer: protobuf in, domain calls, protobuf out. Domain errors become
gRPC status codes here, in one place, and every RPC is counted and timed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from decoding.search import Hypothesis
from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from nmt_spec.alignment import word_alignment
from server.batcher import Answer
from server.config import ServerConfig
from server.errors import (
    DeadlineExceeded,
    DecodeFailed,
    InvalidRequest,
    ModelNotFound,
    QueueFull,
    Replaced,
    RequestError,
    Unavailable,
)
from server.lifecycle import Lifecycle
from server.metrics import ServerMetrics
from server.models import ServedModel
from server.off_loop import OffLoop
from server.segmentation import Segmented
from server.validation import PreparedTexts, RequestedOptions, check_sizes, default_decoding, prepare_texts, search_options

STATUS_CODES: dict[type[RequestError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DecodeFailed: grpc.StatusCode.INTERNAL,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


# What ends a TranslateStream instead of answering one request with an error: the stream's own
# deadline passing, the server loading or shutting down.
STREAM_FAULTS = (DeadlineExceeded, Unavailable)


def status_of(error: RequestError) -> grpc.StatusCode:
    return next(STATUS_CODES[kind] for kind in type(error).__mro__ if kind in STATUS_CODES)


UNKNOWN_MODEL = "unknown"  # the model label of requests for a model that is not served
# gRPC cancels a handler at the call's deadline, sometimes a little before its own
# time_remaining() reaches 0 (seen: 73 us left, in about one call of ten); a call cancelled this
# close to its deadline is counted as having exceeded it, not as cancelled by the client.
DEADLINE_TOLERANCE_SECONDS = 0.01


def requested_options(options: pb.DecodingOptions) -> RequestedOptions:
    optional = [f.name for f in dataclasses.fields(RequestedOptions) if f.name != "return_attention"]
    return RequestedOptions(**{name: getattr(options, name) if options.HasField(name) else None for name in optional}, return_attention=options.return_attention)


def sentence_attention(pieces: Callable[[list[int]], list[str]], source: list[int], hypothesis: Hypothesis) -> pb.SentenceAttention:
    """The hypothesis's attention over its own source tokens (the batch's padding cut off)."""
    source_pieces, target_pieces = pieces(source), pieces(hypothesis.tokens)
    weights = hypothesis.attention[:, : len(source)]
    message = pb.SentenceAttention(source_tokens=source_pieces, target_tokens=target_pieces)
    message.weights.extend(pb.AttentionRow(weights=row) for row in weights.tolist())
    message.alignment.extend(pb.WordAlignment(target_word=t, source_word=s) for t, s in word_alignment(source_pieces, target_pieces, weights))
    return message


def translation_message(
    layout: Segmented, sources: list[list[int]], sentences: list[list[Hypothesis]], texts: list[list[str]], return_scores: bool, pieces: Callable[[list[int]], list[str]]
) -> pb.Translation:
    """One text's translation from the n-best lists of its sentences: hypothesis k joins each
    sentence's k-th best (its last, where a sentence has fewer), scores and lengths summed."""
    ranks = max(len(nbest) for nbest in sentences)

    def kth(k: int) -> tuple[str, float, int, list[pb.SentenceAttention]]:
        chosen = [sentences[i][min(k, len(nbest) - 1)] for i, nbest in enumerate(sentences)]
        text = layout.join([texts[i][min(k, len(nbest) - 1)] for i, nbest in enumerate(sentences)])
        with_attention = chosen[0].attention is not None
        attention = [sentence_attention(pieces, source, hypothesis) for source, hypothesis in zip(sources, chosen)] if with_attention else []
        return text, sum(h.score for h in chosen), sum(len(h.tokens) for h in chosen), attention

    text, score, output_tokens, attention = kth(0)
    input_tokens = sum(len(source) for source in sources)
    translation = pb.Translation(text=text, input_tokens=input_tokens, output_tokens=output_tokens, sentences=len(sentences), attention=attention)
    if return_scores:
        translation.score = score
    if ranks > 1:
        for k in range(ranks):
            text, score, output_tokens, attention = kth(k)
            translation.hypotheses.add(text=text, score=score if return_scores else 0.0, output_tokens=output_tokens, attention=attention)
    return translation


def error_response(error: RequestError) -> pb.TranslateResponse:
    return pb.TranslateResponse(error=pb.Error(code=status_of(error).value[0], message=str(error)))


class TranslatorService(translator_pb2_grpc.TranslatorServicer):
    def __init__(self, lifecycle: Lifecycle, config: ServerConfig, metrics: ServerMetrics, off_loop: OffLoop) -> None:
        self.lifecycle = lifecycle
        self.config = config
        self.metrics = metrics
        self.off_loop = off_loop

    async def Translate(self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        return await self._answer("Translate", request, context)

    async def TranslateStream(self, request_iterator: AsyncIterator[pb.TranslateRequest], context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TranslateResponse]:
        """Requests of one stream are decoded concurrently (they batch with each other) and
        answered in order. A request that fails gets its error in its own response; only a
        fault of the stream (deadline, server loading or shutting down) ends it.

        Back-pressure: the next request is read only once the last one is queued, and while the
        stream has answers on their way its requests wait for room in a full queue instead of
        being refused; unread requests then fill HTTP/2's flow-control window and slow the
        sender. A stream with nothing on its way is refused like a unary call (RESOURCE_EXHAUSTED
        in that request's response), so streams cannot take a full queue from everyone else."""
        answers: asyncio.Queue[tuple[str, asyncio.Task] | None] = asyncio.Queue(STREAM_WINDOW)
        loop = asyncio.get_running_loop()
        stream = object()  # its requests take turns in the queue as one client

        async def read() -> None:
            async for request in request_iterator:
                queued = loop.create_future()
                waits = any(not task.done() for task in pending)
                task = asyncio.ensure_future(self.translate(request, context, "TranslateStream", Admission(queued, waits, turn=stream)))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await answers.put((request.model, task))
                await asyncio.wait([queued, task], return_when=asyncio.FIRST_COMPLETED)
            await answers.put(None)

        pending: set[asyncio.Task] = set()
        reader = asyncio.ensure_future(read())
        index = 0
        try:
            while (answer := await answers.get()) is not None:
                model, task = answer
                try:
                    yield await task
                except STREAM_FAULTS as error:
                    await context.abort(status_of(error), f"request #{index} of the stream: {error}")
                except RequestError as error:
                    self.metrics.stream_errors.labels(model=self._model_label(model), code=status_of(error).name).inc()
                    yield error_response(error)
                index += 1
        finally:
            reader.cancel()
            for task in pending:
                task.cancel()

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        try:
            return self.list_models()
        except RequestError as error:
            await context.abort(status_of(error), str(error))

    def list_models(self) -> pb.ListModelsResponse:
        registry = self.lifecycle.registry
        response = pb.ListModelsResponse()
        if registry is None:
            raise Unavailable("models are still loading; retry once the health service reports SERVING")
        for model in registry.models.values():
            spec = model.manifest.spec
            defaults = default_decoding(model, self.config)
            response.models.add(
                name=model.name,
                versions=[model.version],
                source_language=spec.source_language,
                target_language=spec.target_language,
                architecture=spec.architecture,
                variant=model.variant,
                available_variants=sorted(model.manifest.variants),
                is_default=model.name == registry.default_model,
                max_input_tokens=model.max_input_tokens,
                max_length_a=model.manifest.decoding.max_length_a,
                max_length_b=model.manifest.decoding.max_length_b,
                has_attention=model.has_attention,
                attention_layer=model.decoding.attention_layer,
                default_beam_size=defaults.beam_size,
                default_length_penalty=defaults.length_penalty,
                batch_invariant=model.manifest.variants[model.variant].batch_invariant,
            )
        return response

    def _model_label(self, requested: str) -> str:
        """The metrics label of a model as a request names it."""
        registry = self.lifecycle.registry
        if registry is None:
            return UNKNOWN_MODEL
        name = requested or registry.default_model
        return name if name in registry.models else UNKNOWN_MODEL

    async def _answer(self, method: str, request: pb.TranslateRequest, context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        try:
            return await self.translate(request, context, method, UNARY)
        except RequestError as error:
            await context.abort(status_of(error), str(error))

    async def translate(self, request: pb.TranslateRequest, context: CallContext, method: str, admission: Admission) -> pb.TranslateResponse:
        """One request answered, or a RequestError; counted and timed under `method`."""
        began = time.perf_counter()
        model_label, code = UNKNOWN_MODEL, grpc.StatusCode.OK
        try:
            with self.lifecycle.request():
                model = self.lifecycle.resolve(request.model, request.model_version)
                model_label = model.name
                return await self._run(model, request, context, admission)
        except RequestError as error:
            code = status_of(error)
            raise
        except asyncio.CancelledError:  # the client went away, or gRPC ended the call at its deadline
            remaining = context.time_remaining()
            code = grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= DEADLINE_TOLERANCE_SECONDS else grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            self.metrics.child(self.metrics.requests, model_label, method, code.name).inc()
            self.metrics.child(self.metrics.request_duration, model_label, method).observe(time.perf_counter() - began)

    async def _run(self, model: ServedModel, request: pb.TranslateRequest, context: CallContext, admission: Admission) -> pb.TranslateResponse:
        options = search_options(requested_options(request.options), model, self.config)
        split = not request.HasField("split_sentences") or request.split_sentences
        texts = list(request.texts)
        check_sizes(texts, model, self.config, split)
        prepared = await self.off_loop.run(sum(map(len, texts)), lambda cancelled: prepare_texts(texts, model, self.config, split, cancelled))
        sources = prepared.sources
        loop = asyncio.get_running_loop()

        async def enqueue(model: ServedModel) -> Answer:
            if admission.waits_for_room:
                return await model.batcher.submit_when_room(sources, options, loop, admission.turn)
            return model.batcher.submit(sources, options, loop, admission.turn)

        try:
            answer = await enqueue(model)
        except Replaced:  # a newer version took over between resolving the model and now
            model = self.lifecycle.resolve(model.name, request.model_version)
            answer = await enqueue(model)
        finally:
            admission.settle()
        self.metrics.child(self.metrics.sentences, model.name).inc(len(sources))
        self.metrics.child(self.metrics.input_tokens, model.name).inc(sum(len(s) for s in sources))
        per_text = self.metrics.child(self.metrics.sentences_per_text, model.name)
        for layout in prepared.texts:
            per_text.observe(len(layout.sentences))
        try:
            nbest = await _within_deadline(answer.future, context.time_remaining())
        except BaseException:  # deadline, cancellation: the work is dropped from queue and batch
            model.batcher.cancel(answer)
            raise
        return await self.off_loop.run(answer_size(nbest), lambda cancelled: response_message(model, prepared, nbest, request.options.return_scores))


@dataclass(frozen=True)
class Admission:
    """How a request enters its model's queue: refused when full (unary), or waiting for room (a
    stream with answers on their way); `queued` is resolved once it is in (or failed). `turn`:
    the stream whose turns in the queue it shares (None: its own)."""

    queued: asyncio.Future | None = None
    waits_for_room: bool = False
    turn: object | None = None

    def settle(self) -> None:
        if self.queued is not None and not self.queued.done():
            self.queued.set_result(None)


UNARY = Admission()
# Requests of one stream read ahead of the answers it has sent; beyond, the stream reads no more
# until the client takes its answers.
STREAM_WINDOW = 512


def answer_size(nbest: list[list[Hypothesis]]) -> int:
    """What assembling an answer costs, in the units of OffLoop.run: tokens of every hypothesis,
    attention weights counted one per cell."""
    return sum(len(h.tokens) + (h.attention.size if h.attention is not None else 0) for hypotheses in nbest for h in hypotheses)


def response_message(model: ServedModel, prepared: PreparedTexts, nbest: list[list[Hypothesis]], return_scores: bool) -> pb.TranslateResponse:
    """The answer: every hypothesis detokenized, each text's sentences joined in its layout."""
    decoded = iter(model.decode([h.tokens for hypotheses in nbest for h in hypotheses]))
    texts = [[next(decoded) for _ in hypotheses] for hypotheses in nbest]
    response = pb.TranslateResponse(model=model.name, model_version=model.version)
    sources, first = prepared.sources, 0
    for layout in prepared.texts:
        last = first + len(layout.sentences)
        response.translations.append(translation_message(layout, sources[first:last], nbest[first:last], texts[first:last], return_scores, model.pieces))
        first = last
    return response


class CallContext(Protocol):
    """What translating needs of a call: the time left before its deadline (None: no deadline).
    gRPC's ServicerContext is one; the HTTP API makes its own."""

    def time_remaining(self) -> float | None: ...


async def _within_deadline(answer: asyncio.Future, seconds_left: float | None):
    """The answer, or DeadlineExceeded once the call's time is up (a timer on the loop, not a
    task wrapped around the answer as asyncio.wait_for makes)."""
    if seconds_left is None:
        return await answer
    timer = answer.get_loop().call_later(seconds_left, _expire, answer, seconds_left)
    try:
        return await answer
    finally:
        timer.cancel()


def _expire(answer: asyncio.Future, seconds_left: float) -> None:
    if not answer.done():
        answer.set_exception(DeadlineExceeded(f"the deadline passed after the request was queued; it was dropped (allow more than {seconds_left:.3f} s)"))
