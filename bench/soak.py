"""Soak: N concurrent clients for T seconds against a server, every answer compared with the
expected greedy translation of its sentence (computed here by the decoding module, on the variant
the server serves). Reports requests sent, answered, wrong, lost (neither an answer nor an
error), errors by status code, latency and the server's memory. Exit status 1 if any answer was
wrong or lost, if the server was not SERVING at the end, or if memory trended up by more than 5%
after warm-up in a run of 5 minutes or more (the median of the last third of the samples against
the first third's: a leak lifts the whole later curve, a large answer in flight one sample). With --hostile, hostile and heavy requests are mixed in
(bench/hostile_load.py) and reported per kind.

    python -m bench.soak --clients 64 --duration 600        # starts its own server
    python -m bench.soak --clients 16 --duration 120 --hostile
    python -m bench.soak --target host:50051 --server-pid 1234 --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.engines import ROOT, Layout, ServerProcess, free_port
from bench.hostile_load import TABLE_HEAD, Expected, KindResult, expected_answers, hostile_clients
from bench.load import percentile
from decoding.runtime import RuntimeConfig
from decoding.translator import Translator
from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from nmt_spec.manifest import latest_version

RSS_BAR = 0.05
RSS_SAMPLES = 10
WARM_UP_FRACTION = 0.2  # memory is compared from the end of the first fifth of the run


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class SoakResult:
    sent: int = 0
    answered: int = 0
    wrong: int = 0
    lost: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    rss_after_warm_up: int = 0
    rss_end: int = 0
    duration: float = 0.0
    kinds: dict[str, KindResult] = field(default_factory=dict)  # the hostile and heavy requests, with --hostile
    serving_at_end: bool = True
    rss_samples: list[int] = field(default_factory=list)  # after warm-up, every tenth of the run

    @property
    def rss_growth(self) -> float:
        return self.rss_end / self.rss_after_warm_up - 1 if self.rss_after_warm_up else 0.0

    @property
    def rss_trend(self) -> float:
        """The median RSS of the last third of the samples (the end included) over the first third's."""
        samples = self.rss_samples + [self.rss_end]
        third = max(1, len(samples) // 3)
        return statistics.median(samples[-third:]) / statistics.median(samples[:third]) - 1 if samples[0] else 0.0

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)

    @property
    def failed(self) -> bool:
        """Anything wrong or lost, of any kind, or the server no longer SERVING."""
        kinds = self.kinds.values()
        return bool(self.wrong or self.lost or any(kind.wrong or kind.lost for kind in kinds)) or not self.serving_at_end

    def kinds_table(self) -> str:
        return "\n".join([TABLE_HEAD, *(kind.row(name) for name, kind in self.kinds.items())])

    def table(self) -> str:
        errors = ", ".join(f"{code} {count}" for code, count in sorted(self.errors.items())) or "none"
        return "\n".join(
            [
                "| duration | sent | answered | wrong | lost | errors | p50 ms | p95 ms | p99 ms | max ms | RSS after warm-up | RSS at end | growth | trend |",
                "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {self.duration:.0f} s | {self.sent} | {self.answered} | {self.wrong} | {self.lost} | {errors} | {1000 * self.percentile(0.5):.0f} | "
                f"{1000 * self.percentile(0.95):.0f} | {1000 * self.percentile(0.99):.0f} | {1000 * max(self.latencies, default=0.0):.0f} | "
                f"{self.rss_after_warm_up / 2**20:.0f} MiB | {self.rss_end / 2**20:.0f} MiB | {self.rss_growth:+.1%} | {self.rss_trend:+.1%} |",
            ]
        )


async def soak(
    target: str, pid: int, pairs: list[tuple[str, str]], clients: int, duration: float, deadline: float, model: str, hostile: Expected | None = None
) -> SoakResult:
    """`clients` light clients (one sentence a request), and with `hostile` one client of each
    hostile or heavy kind (bench/hostile_load.py) beside them."""
    result = SoakResult()
    began = time.monotonic()
    stop_at = began + duration
    warm_up_at = began + WARM_UP_FRACTION * duration

    async with grpc.aio.insecure_channel(target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)

        async def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                source, expected = pairs[rng.randrange(len(pairs))]
                result.sent += 1
                started = time.perf_counter()
                call = stub.Translate(pb.TranslateRequest(model=model, texts=[source]), timeout=deadline)
                try:
                    # a call that neither answers nor fails within its deadline (plus slack) is lost
                    response = await asyncio.wait_for(call, deadline + 10)
                except TimeoutError:
                    call.cancel()
                    result.lost += 1
                    continue
                except grpc.aio.AioRpcError as error:
                    result.errors[error.code().name] += 1
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.answered += 1
                if response.translations[0].text != expected:
                    result.wrong += 1

        async def watch_memory() -> None:
            await asyncio.sleep(max(0.0, warm_up_at - time.monotonic()))
            result.rss_after_warm_up = rss_bytes(pid)
            while (left := stop_at - time.monotonic()) > 0:  # the curve: growth that levels off is no leak
                result.rss_samples.append(rss_bytes(pid))
                await asyncio.sleep(min(left, duration / RSS_SAMPLES))

        async def hostile_kinds() -> None:
            if hostile is not None:
                result.kinds = await hostile_clients(channel, model, hostile, stop_at, deadline)

        await asyncio.gather(watch_memory(), hostile_kinds(), *[client(seed) for seed in range(clients)])
        health = health_pb2_grpc.HealthStub(channel)
        status = (await health.Check(health_pb2.HealthCheckRequest(service="nmt.v1.Translator"), timeout=10)).status
        result.serving_at_end = status == health_pb2.HealthCheckResponse.SERVING
    result.rss_end = rss_bytes(pid)
    result.duration = time.monotonic() - began
    return result


def translator_of(model: str, variant: str) -> Translator:
    return Translator.from_repository(latest_version(ROOT / "models" / model), variant, RuntimeConfig(device="cpu"))


def expected_translations(model: str, variant: str, sentences: list[str]) -> list[tuple[str, str]]:
    translator = translator_of(model, variant)
    return list(zip(sentences, translator.translate(sentences, translator.default_options(beam_size=1))))  # as ServerProcess serves: greedy


def cpu_variant(model: str, wanted: str) -> str:
    from nmt_spec.manifest import Manifest
    from server.models import choose_variant

    return choose_variant(Manifest.load(latest_version(ROOT / "models" / model), verify_files=False), wanted, on_cuda=False)


def served_variant(target: str, model: str) -> str:
    from server.client import TranslatorClient

    served = {m.name: m.variant for m in TranslatorClient(target).list_models().models}
    if model not in served:
        raise SystemExit(f"{target} does not serve {model}; it serves {sorted(served)}")
    return served[model]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients, each one sentence per request")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--model", default="transformer-en-de")
    parser.add_argument("--sentences", type=int, default=1000, help="the pool: first N of data/multi30k/test2016.en")
    parser.add_argument("--deadline", type=float, default=30.0, help="per-request deadline in seconds")
    parser.add_argument("--target", default="", help="a running server (with --server-pid); empty: start one")
    parser.add_argument("--server-pid", type=int, default=0, help="its process id, for its memory")
    parser.add_argument("--batching", default="dynamic", choices=["dynamic", "inflight"], help="policy of the server this command starts")
    parser.add_argument("--layout", type=Layout.parse, default=Layout(1, 0), help="its decode workers x ONNX Runtime threads (0: ONNX Runtime's default)")
    parser.add_argument("--hostile", action="store_true", help="mix hostile and heavy requests into the load (bench/hostile_load.py): 1 MB texts, a 300-sentence document at beam 8, a stream pushing 1,000 requests")
    parser.add_argument("--variant", default="auto", help="what the server this command starts serves (auto: its choice on a CPU); a --target is asked (ListModels)")
    args = parser.parse_args(argv)

    sentences = (ROOT / "data" / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    variant = served_variant(args.target, args.model) if args.target else cpu_variant(args.model, args.variant)
    print(f"expected translations of {len(sentences)} sentences ({variant}) ...", file=sys.stderr, flush=True)
    pairs = expected_translations(args.model, variant, sentences)
    hostile = expected_answers(translator_of(args.model, variant), sentences, dict(pairs)) if args.hostile else None
    if args.target:
        result = asyncio.run(soak(args.target, args.server_pid, pairs, args.clients, args.duration, args.deadline, args.model, hostile))
    else:
        import tempfile

        log = Path(tempfile.mkdtemp(prefix="soak-")) / "server.log"
        with ServerProcess(args.model, args.batching, args.layout, free_port(), log, ["--variant", variant]) as server:
            print(f"soak: {args.clients} clients for {args.duration:.0f} s against {server.target} ({args.batching} batching, {args.layout})", file=sys.stderr, flush=True)
            result = asyncio.run(soak(server.target, server.process.pid, pairs, args.clients, args.duration, args.deadline, args.model, hostile))
    if result.kinds:
        print(result.kinds_table() + "\n\nLight requests (one sentence each), meanwhile:\n")
    print(result.table())
    print("\nRSS after warm-up, every tenth of the run: " + ", ".join(f"{rss / 2**20:.0f}" for rss in result.rss_samples + [result.rss_end]) + " MiB")
    memory_failed = args.duration >= 300 and result.rss_trend > RSS_BAR
    return 1 if result.failed or memory_failed else 0


if __name__ == "__main__":
    sys.exit(main())
