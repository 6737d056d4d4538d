"""Each engine translating the same sentences with the same weights, greedy, timed the same way:
PyTorch eager (the training code's search), CTranslate2, our decoding module in-process, and
our gRPC server end to end under a load generator."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.load import percentile, run_load
from bench.thread_cpu import seconds_outside_decode_workers, thread_cpu_seconds

if TYPE_CHECKING:
    from decoding.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
FIXED_STEP = "fixed-shape step"


@dataclass(frozen=True)
class Layout:
    """How an engine spends the machine's threads: `workers` batches decoded at once, each
    operation of a batch on `threads` threads (CTranslate2's inter_threads x intra_threads,
    the server's --decode-workers x --intra-op-threads)."""

    workers: int
    threads: int

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads}"

    @classmethod
    def parse(cls, text: str) -> Layout:
        workers, threads = text.split("x")
        return cls(int(workers), int(threads))


@dataclass
class Measurement:
    engine: str  # e.g. "pytorch", "ctranslate2", "onnx", "server"
    model: str
    setting: str  # variant, compute type or batching policy
    concurrency: int  # clients (server) or 0 for an in-process batch call
    seconds: float
    translations: list[str]
    latencies: list[float] = field(default_factory=list)  # per request (server)
    client_cpu_share: float | None = None  # cores the load generator took (server)
    layout: str = ""  # str(Layout)
    sentences_per_request: int = 1  # (server) a client translating paragraphs sends several
    precision: str = "fp32"  # of the arithmetic: "fp32", "fp16" or "int8", for ratios at the same precision
    # (server) CPU seconds per request of the server's threads other than its decode workers
    # (gRPC, protobuf, tokenization, metrics); None where /proc cannot tell
    serving_cpu_per_request: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str, int, int]:
        return self.engine, self.model, self.setting, self.layout, self.concurrency, self.sentences_per_request

    def percentile(self, fraction: float) -> float | None:
        return percentile(self.latencies, fraction) if self.latencies else None


def pytorch_greedy(
    checkpoint: Path, texts: list[str], threads: int, model_name: str, max_batch_size: int, device: str = "cpu", precision: str = "fp32", where: str | None = None
) -> Measurement:
    import torch

    from nmt_spec import Tokenizer
    from training.checkpoint import load_model
    from training.evaluate import translate

    torch.set_num_threads(threads)
    spec, model, _ = load_model(checkpoint, device)
    if precision == "fp16":
        model = model.half()
    tokenizer = Tokenizer(checkpoint.parent / spec.tokenizer_file, spec.special_ids)

    def run(batch: list[str]) -> list[str]:
        # batches of max_batch_size sentences, as CTranslate2's: not bounded by tokens as well
        return translate(model, tokenizer, spec, batch, max_batch_tokens=max_batch_size * spec.max_source_length, device=device, max_batch_size=max_batch_size)

    run(texts[: 2 * max_batch_size])  # warm-up
    began = time.perf_counter()
    translations = run(texts)
    seconds = time.perf_counter() - began
    return Measurement("pytorch", model_name, f"{precision} eager", 0, seconds, translations, layout=where or str(Layout(1, threads)), precision=precision)


ARRIVAL_ORDER = "in arrival order"
MODEL_DEFAULT = "model's default decoding"


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ctranslate2_greedy(
    model_directory: Path, tokenizer_file: Path, texts: list[str], layout: Layout, compute_type: str, model_name: str, max_batch_size: int, arrival_order: bool = False
) -> Measurement:
    """translate_batch on all the texts sorts them by length before it cuts batches, which a
    server cannot do: with arrival_order, each batch is the next max_batch_size texts as they
    come (the order the load generator sends them), decoded by the workers in parallel."""
    import ctranslate2
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_file))
    eos = processor.id_to_piece(processor.eos_id())
    translator = ctranslate2.Translator(str(model_directory), device="cpu", compute_type=compute_type, inter_threads=layout.workers, intra_threads=layout.threads)
    tokens = [processor.encode(text, out_type=str) + [eos] for text in texts]
    options = {"beam_size": 1, "max_decoding_length": 128, "max_batch_size": max_batch_size}
    translator.translate_batch(tokens[:8], beam_size=1)  # warm-up
    began = time.perf_counter()
    if arrival_order:
        pending = [translator.translate_batch(batch, asynchronous=True, **options) for batch in chunks(tokens, max_batch_size)]
        results = [future.result() for batch in pending for future in batch]
    else:
        results = translator.translate_batch(tokens, **options)
    seconds = time.perf_counter() - began
    translations = [processor.decode_pieces(result.hypotheses[0]) for result in results]
    precision = {"float32": "fp32", "float16": "fp16"}.get(compute_type, compute_type)
    return Measurement("ctranslate2", model_name, compute_type + (f", {ARRIVAL_ORDER}" if arrival_order else ""), 0, seconds, translations, layout=str(layout), precision=precision)


def in_process_translator(
    version_directory: Path, variant: str, threads: int, max_batch_size: int, profile_prefix: str = "", device: str = "cpu", model_default: bool = False, fixed_step: bool = False
) -> Translator:
    """Our decoding module in batches of max_batch_size sentences (as CTranslate2's: not bounded
    by tokens as well), greedy unless model_default (the manifest's beam and length penalty);
    fixed_step: greedy on the fixed-shape step (the GPU form)."""
    from decoding.runtime import RuntimeConfig
    from decoding.translator import Translator

    runtime = RuntimeConfig(device=device, intra_op_threads=threads, profile_prefix=profile_prefix)
    translator = Translator.from_repository(version_directory, variant, runtime, fixed_step=fixed_step)
    translator.max_batch_size, translator.max_batch_tokens = max_batch_size, max_batch_size * translator.spec.max_source_length
    if not model_default:
        translator.decoding = dataclasses.replace(translator.decoding, beam_size=1)
    return translator


def onnx_greedy(
    version_directory: Path,
    variant: str,
    texts: list[str],
    threads: int,
    model_name: str,
    max_batch_size: int,
    device: str = "cpu",
    where: str | None = None,
    arrival_order: bool = False,
    workers: int = 1,
    model_default: bool = False,
    fixed_step: bool = False,
) -> Measurement:
    """Batches of max_batch_size texts, sorted by length (as translate_batch sorts them) or in
    arrival order; `workers` threads each decode one batch at a time (one session, `threads`
    threads per operation). Greedy, or with model_default the manifest's decoding; fixed_step:
    greedy on the fixed-shape step."""
    translator = in_process_translator(version_directory, variant, threads, max_batch_size, device=device, model_default=model_default, fixed_step=fixed_step)
    translator.translate(texts[: 2 * max_batch_size])  # warm-up: on a GPU, the first run of each shape costs more
    if arrival_order:
        order = list(range(len(texts)))
    else:
        lengths = [len(ids) for ids in translator.encode(texts)]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
    batches = iter(chunks(order, max_batch_size))
    translations = [""] * len(texts)
    taking = threading.Lock()

    def work() -> None:
        while True:
            with taking:
                batch = next(batches, None)
            if batch is None:
                return
            for index, translation in zip(batch, translator.translate([texts[i] for i in batch])):
                translations[index] = translation

    began = time.perf_counter()
    running = [threading.Thread(target=work) for _ in range(workers)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    setting = variant + (f", {FIXED_STEP}" if fixed_step else "") + (f", {ARRIVAL_ORDER}" if arrival_order else "")
    if model_default:
        setting += f", {MODEL_DEFAULT} (beam {translator.decoding.beam_size}, length penalty {translator.decoding.length_penalty:g})"
    return Measurement("onnx", model_name, setting, 0, time.perf_counter() - began, translations, layout=where or str(Layout(workers, threads)), precision=variant)


SERVER_START_SECONDS = 180  # loading and warming up every bucket of a model


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """python -m server on loopback ports, for one model and policy; greedy unless `extra` sets
    --default-beam-size (the engines it is compared with decode greedily)."""

    def __init__(self, model: str, policy: str, layout: Layout, port: int, log: Path, extra: list[str]) -> None:
        command = [
            sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0", "--http-port", "0",
            "--models", model, "--default-model", model, "--batching", policy, "--default-beam-size", "1",
            "--decode-workers", str(layout.workers), "--intra-op-threads", str(layout.threads), *extra,
        ]  # fmt: skip
        self.layout = layout
        self.target = f"127.0.0.1:{port}"
        self.log = log
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def __enter__(self) -> ServerProcess:
        from server.client import TranslatorClient

        client = TranslatorClient(self.target)
        deadline = time.monotonic() + SERVER_START_SECONDS
        try:
            while True:
                try:
                    client.wait_until_serving(1)
                    return self
                except TimeoutError:
                    # a server that exited never answers: say why now, not after the deadline
                    if self.process.poll() is not None:
                        tail = self.log.read_text(encoding="utf-8", errors="replace")[-2000:]
                        raise RuntimeError(f"the server exited with status {self.process.returncode} before serving:\n{tail}") from None
                    if time.monotonic() >= deadline:
                        raise
        finally:
            client.close()

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(60)


def server_load(
    server: ServerProcess, texts: list[str], concurrency: int, model_name: str, policy: str, sentences_per_request: int = 1, variant: str = "fp32"
) -> Measurement:
    """`variant`: the one the server was started with (its --variant); a variant other than fp32
    is named in the setting."""
    asyncio.run(run_load(server.target, texts[:8], min(concurrency, 8)))  # warm-up
    before = thread_cpu_seconds(server.process.pid)
    result = asyncio.run(run_load(server.target, texts, concurrency, sentences_per_request=sentences_per_request))
    # ONNX Runtime's intra-op threads decode too, but carry no name of their own: with more
    # than one thread per worker they cannot be told apart from gRPC's, so no figure then
    serving = seconds_outside_decode_workers(before, thread_cpu_seconds(server.process.pid)) if server.layout.threads == 1 else None
    if result.errors:
        raise RuntimeError(f"{result.errors} sentences failed at concurrency {concurrency}")
    setting = policy + ("" if variant == "fp32" else f", {variant}") + ("" if sentences_per_request == 1 else f", {sentences_per_request} sentences per request")
    return Measurement(
        "server", model_name, setting, concurrency, result.seconds, result.translations, result.latencies, result.client_cpu_share, str(server.layout), sentences_per_request, variant,
        serving_cpu_per_request=None if serving is None or not result.latencies else serving / len(result.latencies),
    )  # fmt: skip
