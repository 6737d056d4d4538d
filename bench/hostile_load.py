"""The hostile and heavy requests `python -m bench.soak --hostile` mixes into its light load, one
client per kind, each sending its kind again as soon as the last was answered: a megabyte without
spaces, a megabyte of words (both to be refused at once), a 300-sentence document at beam 8 with
8-best and attention (to be answered while light requests keep their latency), and a stream
pushing 1,000 requests at once (to be answered in full, in order)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from bench.load import percentile
from decoding.translator import Translator
from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc

MEGABYTE_WITHOUT_SPACES = "x" * 1_000_000
MEGABYTE_OF_WORDS = "word " * 200_000
DOCUMENT_SENTENCES = 300
STREAM_REQUESTS = 1000
HEAVY_OPTIONS = pb.DecodingOptions(beam_size=8, num_hypotheses=8, return_attention=True)
GREEDY = pb.DecodingOptions(beam_size=1)
# Between two outsized texts of one client: one hostile request at a time, a few a second.
OUTSIZED_PAUSE_SECONDS = 0.25


@dataclass
class KindResult:
    """One kind of request over the run: what came back, and how long it took."""

    sent: int = 0
    answered: int = 0
    refused: collections.Counter = field(default_factory=collections.Counter)  # status code -> count
    wrong: int = 0
    lost: int = 0
    latencies: list[float] = field(default_factory=list)

    def row(self, name: str) -> str:
        refused = ", ".join(f"{code} {count}" for code, count in sorted(self.refused.items())) or "none"
        times = [percentile(self.latencies, fraction) for fraction in (0.5, 0.95)] + [max(self.latencies, default=0.0)]
        return f"| {name} | {self.sent} | {self.answered} | {refused} | {self.wrong} | {self.lost} | " + " | ".join(f"{1000 * t:.0f}" for t in times) + " |"


TABLE_HEAD = "| kind | sent | answered | refused | wrong | lost | p50 ms | p95 ms | max ms |\n|---|---:|---:|---|---:|---:|---:|---:|---:|"


@dataclass(frozen=True)
class Expected:
    """What the hostile kinds must get: the document's best translation, and each greedy sentence's."""

    document: str
    document_text: str
    greedy: dict[str, str]


def expected_answers(translator: Translator, sentences: list[str], greedy: dict[str, str]) -> Expected:
    """The document (the pool's first 300 sentences, a line each) translated in-process as the
    server must: beam 8, 8-best, the model's length penalty."""
    lines = sentences[:DOCUMENT_SENTENCES]
    best = translator.translate(lines, translator.default_options(beam_size=8, num_hypotheses=8))
    return Expected("\n".join(lines), "\n".join(best), greedy)


async def refused_at_once(stub: translator_pb2_grpc.TranslatorStub, model: str, text: str, result: KindResult, stop_at: float, deadline: float) -> None:
    """An outsized text again and again: each must be refused (INVALID_ARGUMENT); an answer is wrong."""
    while time.monotonic() < stop_at:
        await _call(stub.Translate(pb.TranslateRequest(model=model, texts=[text]), timeout=deadline), result, deadline, lambda response: True)
        await asyncio.sleep(OUTSIZED_PAUSE_SECONDS)


async def heavy_documents(stub: translator_pb2_grpc.TranslatorStub, model: str, expected: Expected, result: KindResult, stop_at: float, deadline: float) -> None:
    def wrong(response: pb.TranslateResponse) -> bool:
        (translation,) = response.translations
        return translation.text != expected.document_text or len(translation.hypotheses) != 8 or len(translation.attention) != translation.sentences

    while time.monotonic() < stop_at:
        await _call(stub.Translate(pb.TranslateRequest(model=model, texts=[expected.document], options=HEAVY_OPTIONS), timeout=deadline), result, deadline, wrong)


async def pushed_streams(stub: translator_pb2_grpc.TranslatorStub, model: str, expected: Expected, result: KindResult, stop_at: float, deadline: float) -> None:
    """A stream of 1,000 one-sentence requests written as fast as gRPC takes them; counted per
    request: an answer in its place, an error in its response (or the stream's), or lost (the
    stream ended without it); a latency is the whole stream's."""
    pool = list(expected.greedy)
    while time.monotonic() < stop_at:
        sentences = [pool[i % len(pool)] for i in range(STREAM_REQUESTS)]
        began = time.perf_counter()
        call = stub.TranslateStream(iter(pb.TranslateRequest(model=model, texts=[s], options=GREEDY) for s in sentences), timeout=deadline)
        answers = 0
        result.sent += STREAM_REQUESTS
        try:
            async for response in call:
                sentence = sentences[answers]
                answers += 1
                if response.HasField("error"):
                    result.refused[status_name(response.error.code)] += 1
                    continue
                result.answered += 1
                result.wrong += response.translations[0].text != expected.greedy[sentence]
        except grpc.aio.AioRpcError as error:  # the stream ended: what it had not answered is refused
            result.refused[error.code().name] += STREAM_REQUESTS - answers
        else:
            result.lost += STREAM_REQUESTS - answers
        result.latencies.append(time.perf_counter() - began)


def status_name(value: int) -> str:
    return next(code.name for code in grpc.StatusCode if code.value[0] == value)


async def _call(call: grpc.aio.UnaryUnaryCall, result: KindResult, deadline: float, wrong: Callable[[pb.TranslateResponse], bool]) -> None:
    result.sent += 1
    began = time.perf_counter()
    try:
        response = await asyncio.wait_for(call, deadline + 10)
    except TimeoutError:  # neither answered nor failed within its deadline: lost
        call.cancel()
        result.lost += 1
        return
    except grpc.aio.AioRpcError as error:
        result.refused[error.code().name] += 1
        result.latencies.append(time.perf_counter() - began)
        return
    result.latencies.append(time.perf_counter() - began)
    result.answered += 1
    result.wrong += wrong(response)


async def hostile_clients(channel: grpc.aio.Channel, model: str, expected: Expected, stop_at: float, deadline: float) -> dict[str, KindResult]:
    stub = translator_pb2_grpc.TranslatorStub(channel)
    results = {name: KindResult() for name in ("1 MB without spaces", "1 MB of words", "300-sentence document, beam 8, 8-best, attention", "stream of 1,000 pushed")}
    names = iter(results)
    await asyncio.gather(
        refused_at_once(stub, model, MEGABYTE_WITHOUT_SPACES, results[next(names)], stop_at, deadline),
        refused_at_once(stub, model, MEGABYTE_OF_WORDS, results[next(names)], stop_at, deadline),
        heavy_documents(stub, model, expected, results[next(names)], stop_at, deadline),
        pushed_streams(stub, model, expected, results[next(names)], stop_at, deadline),
    )
    return results
