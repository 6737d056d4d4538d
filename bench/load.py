"""Load generator: N concurrent gRPC clients, each sending one sentence per request (or a
paragraph of several), over a fixed list of sentences; reports throughput and latency
percentiles.

    python -m bench.load --target localhost:50051 --concurrency 1 16 64 --sentences 1000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc

DEFAULT_SENTENCES = Path(__file__).resolve().parents[1] / "data" / "multi30k" / "test2016.en"


@dataclass
class LoadResult:
    concurrency: int
    sentences: int
    errors: int
    seconds: float
    output_tokens: int
    latencies: list[float]
    translations: list[str]
    client_cpu_seconds: float  # what the load generator itself used of the same machine

    @property
    def client_cpu_share(self) -> float:
        """Cores' worth of CPU the load generator took (1.0: a whole core)."""
        return self.client_cpu_seconds / self.seconds

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)


async def run_load(target: str, texts: list[str], concurrency: int, model: str = "", timeout: float = 120.0, sentences_per_request: int = 1) -> LoadResult:
    """Each of `concurrency` workers sends the next `sentences_per_request` sentences until none
    are left; latencies are per request, errors count failed sentences."""
    translations = [""] * len(texts)
    latencies: list[float] = []
    errors = 0
    output_tokens = 0
    starts = iter(range(0, len(texts), sentences_per_request))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)

        async def worker() -> None:
            nonlocal errors, output_tokens
            for first in starts:
                sent = texts[first : first + sentences_per_request]
                began = time.perf_counter()
                try:
                    response = await stub.Translate(pb.TranslateRequest(model=model, texts=sent), timeout=timeout)
                except grpc.aio.AioRpcError:
                    errors += len(sent)
                    continue
                latencies.append(time.perf_counter() - began)
                for index, translation in enumerate(response.translations, first):
                    translations[index] = translation.text
                    output_tokens += translation.output_tokens

        began, cpu_before = time.perf_counter(), _cpu_seconds()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        seconds, cpu = time.perf_counter() - began, _cpu_seconds() - cpu_before
    return LoadResult(concurrency, len(texts) - errors, errors, seconds, output_tokens, latencies, translations, cpu)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    """The value below which this fraction of values lie (nearest rank); 0 for no values."""
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def format_table(results: list[LoadResult]) -> str:
    base = results[0].sentences_per_second
    lines = [
        "| concurrency | sentences/s | target tokens/s | p50 ms | p90 ms | p99 ms | errors | load generator CPU | vs first row |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.concurrency} | {r.sentences_per_second:.1f} | {r.tokens_per_second:.0f} | {1000 * r.percentile(0.5):.1f} | {1000 * r.percentile(0.9):.1f} | {1000 * r.percentile(0.99):.1f} | {r.errors} | {r.client_cpu_share:.0%} of a core | {r.sentences_per_second / base:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="localhost:50051", help="server address")
    parser.add_argument("--model", default="", help="model name; empty: the server's default")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrent clients, one run each")
    parser.add_argument("--sentences", type=int, default=1000, help="sentences per run, from --input")
    parser.add_argument("--sentences-per-request", type=int, default=1, help="sentences each request carries (a client translating paragraphs sends several)")
    parser.add_argument("--input", type=Path, default=DEFAULT_SENTENCES, help="one sentence per line")
    args = parser.parse_args(argv)
    texts = [line for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()][: args.sentences]
    results = []
    for concurrency in args.concurrency:
        print(f"concurrency {concurrency}: {len(texts)} sentences ...", file=sys.stderr, flush=True)
        results.append(asyncio.run(run_load(args.target, texts, concurrency, args.model, sentences_per_request=args.sentences_per_request)))
    print(format_table(results))
    mean = statistics.mean(r.sentences_per_second for r in results)
    print(f"\nmean over runs: {mean:.1f} sentences/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
