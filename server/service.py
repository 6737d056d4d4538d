"""The nmt.v1.Translator servicer: protobuf in, domain calls, protobuf out. Domain errors become
gRPC status codes here, in one place, and every RPC is counted and timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

import grpc

from decoding.search import Hypothesis
from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
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
from server.validation import RequestedOptions, search_options, source_ids

STATUS_CODES: dict[type[RequestError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DecodeFailed: grpc.StatusCode.INTERNAL,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(error: RequestError) -> grpc.StatusCode:
    return next(STATUS_CODES[kind] for kind in type(error).__mro__ if kind in STATUS_CODES)


UNKNOWN_MODEL = "unknown"  # the model label of requests for a model that is not served
# gRPC cancels a handler at the call's deadline, sometimes a little before its own
# time_remaining() reaches 0 (seen: 73 us left, in about one call of ten); a call cancelled this
# close to its deadline is counted as having exceeded it, not as cancelled by the client.
DEADLINE_TOLERANCE_SECONDS = 0.01


def requested_options(options: pb.DecodingOptions) -> RequestedOptions:
    def optional(name: str):
        return getattr(options, name) if options.HasField(name) else None

    return RequestedOptions(optional("beam_size"), optional("length_penalty"), optional("max_decoding_length"), optional("num_hypotheses"))


def translation_message(nbest: list[Hypothesis], texts: list[str], input_tokens: int, return_scores: bool) -> pb.Translation:
    best = nbest[0]
    translation = pb.Translation(text=texts[0], input_tokens=input_tokens, output_tokens=len(best.tokens))
    if return_scores:
        translation.score = best.score
    if len(nbest) > 1:
        for hypothesis, text in zip(nbest, texts):
            translation.hypotheses.add(text=text, score=hypothesis.score if return_scores else 0.0, output_tokens=len(hypothesis.tokens))
    return translation


class TranslatorService(translator_pb2_grpc.TranslatorServicer):
    def __init__(self, lifecycle: Lifecycle, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.lifecycle = lifecycle
        self.config = config
        self.metrics = metrics

    async def Translate(self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        return await self._answer("Translate", request, context)

    async def TranslateStream(self, request_iterator: AsyncIterator[pb.TranslateRequest], context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TranslateResponse]:
        """Requests of one stream are decoded concurrently (they batch with each other) and
        answered in order. A failing request ends the stream with its status."""
        answers: asyncio.Queue[asyncio.Task | None] = asyncio.Queue()

        async def read() -> None:
            async for request in request_iterator:
                await answers.put(asyncio.ensure_future(self._translate(request, context, "TranslateStream")))
            await answers.put(None)

        reader = asyncio.ensure_future(read())
        index = 0
        try:
            while (task := await answers.get()) is not None:
                try:
                    yield await task
                except RequestError as error:
                    await context.abort(status_of(error), f"request #{index} of the stream: {error}")
                index += 1
        finally:
            reader.cancel()
            while not answers.empty():
                task = answers.get_nowait()
                if task is not None:
                    task.cancel()

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        registry = self.lifecycle.registry
        response = pb.ListModelsResponse()
        if registry is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "models are still loading; retry once the health service reports SERVING")
        for model in registry.models.values():
            spec = model.manifest.spec
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
            )
        return response

    async def _answer(self, method: str, request: pb.TranslateRequest, context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        try:
            return await self._translate(request, context, method)
        except RequestError as error:
            await context.abort(status_of(error), str(error))

    async def _translate(self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext, method: str) -> pb.TranslateResponse:
        began = time.perf_counter()
        model_label, code = UNKNOWN_MODEL, grpc.StatusCode.OK
        try:
            with self.lifecycle.request():
                model = self.lifecycle.resolve(request.model, request.model_version)
                model_label = model.name
                return await self._run(model, request, context)
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
            self.metrics.requests.labels(model=model_label, method=method, code=code.name).inc()
            self.metrics.request_duration.labels(model=model_label, method=method).observe(time.perf_counter() - began)

    async def _run(self, model: ServedModel, request: pb.TranslateRequest, context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        options = search_options(requested_options(request.options), model, self.config.max_beam_size)
        sources = source_ids(list(request.texts), model, self.config.max_texts_per_request)
        try:
            item = model.batcher.submit(sources, options)
        except Replaced:  # a newer version took over between resolving the model and now
            model = self.lifecycle.resolve(model.name, request.model_version)
            item = model.batcher.submit(sources, options)
        self.metrics.sentences.labels(model=model.name).inc(len(sources))
        self.metrics.input_tokens.labels(model=model.name).inc(sum(len(s) for s in sources))
        try:
            nbest = await _within_deadline(asyncio.shield(asyncio.wrap_future(item.future)), context.time_remaining())
        except BaseException:  # deadline, cancellation: the work is dropped from queue and batch
            model.batcher.cancel(item)
            raise
        texts = model.translator.tokenizer.decode_batch([h.tokens for hypotheses in nbest for h in hypotheses])
        response = pb.TranslateResponse(model=model.name, model_version=model.version)
        offset = 0
        for hypotheses, source in zip(nbest, sources):
            response.translations.append(translation_message(hypotheses, texts[offset : offset + len(hypotheses)], len(source), request.options.return_scores))
            offset += len(hypotheses)
        return response


async def _within_deadline(answer: Awaitable, seconds_left: float | None):
    if seconds_left is None:
        return await answer
    try:
        return await asyncio.wait_for(answer, seconds_left)
    except TimeoutError:
        raise DeadlineExceeded(f"the deadline passed after the request was queued; it was dropped (allow more than {seconds_left:.3f} s)") from None
