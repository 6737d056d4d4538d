"""Where the time goes: ONNX Runtime's kernel time per operator in our decoding module
in-process, and the server's CPU time per thread under load (decode workers against the event
loop that runs gRPC, protobuf and tokenization), and what decoding would have to reach to match
CTranslate2 on the same cores.

    python -m bench.profile --model transformer-en-de --layout 2x1 --clients 256
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.__main__ import MODELS, converts_to_ctranslate2, progress
from bench.engines import ROOT, Layout, ServerProcess, ctranslate2_greedy, free_port, in_process_translator
from bench.flops import flops_per_generated_token, matrix_product_flops, one_core_matmul_peak_flops
from bench.load import run_load
from bench.thread_cpu import DECODE_THREAD, thread_cpu_seconds, thread_cpu_spent
from nmt_spec.manifest import latest_version

MATRIX_PRODUCTS = ("MatMul", "Gemm", "FusedGemm")
LOAD_GENERATOR = "the load generator (another process on the same cores)"
MAIN_THREAD = "main thread (asyncio event loop: gRPC, protobuf, tokenization)"


@dataclass
class KernelProfile:
    seconds: dict[str, collections.Counter]  # graph -> operator type -> kernel seconds
    matrix_flops: dict[str, collections.Counter]  # graph -> MatMul/Gemm type -> FLOPs done
    model_flops: float  # what the translations cost by bench.flops: no padding, no finished rows

    def matrix_products(self) -> tuple[float, float]:
        """FLOPs and kernel seconds of every MatMul and Gemm of both graphs."""
        flops = sum(sum(counter.values()) for counter in self.matrix_flops.values())
        seconds = sum(counter[op] for counter in self.seconds.values() for op in MATRIX_PRODUCTS)
        return flops, seconds


def operator_times(model: str, texts: list[str], threads: int, max_batch_size: int, scratch: Path) -> KernelProfile:
    """Kernel seconds per operator type, for the encoder and the decoder step, translating
    `texts` in batches of max_batch_size sentences sorted by length."""
    translator = in_process_translator(latest_version(ROOT / "models" / model), "fp32", threads, max_batch_size, profile_prefix=str(scratch / "ort"))
    translations = translator.translate(texts)
    source_tokens = sum(len(ids) for ids in translator.encode(texts))
    target_tokens = sum(len(ids) for ids in translator.encode(translations))  # eos included: the steps taken
    per_token = flops_per_generated_token(translator.spec, source_tokens / len(texts), target_tokens / len(texts))
    profile = KernelProfile({}, {}, per_token * target_tokens)
    for graph, session in (("encoder", translator.model.encoder), ("decoder step", translator.model.decoder)):
        kernels: collections.Counter = collections.Counter()
        flops: collections.Counter = collections.Counter()
        for event in json.loads(Path(session.end_profiling()).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                operator = event["args"]["op_name"]
                kernels[operator] += event["dur"] / 1e6
                if operator in MATRIX_PRODUCTS:
                    # the shapes list the activations only: weights, prepacked, are left out
                    (output,) = event["args"]["output_type_shape"][0].values()
                    (activations,) = event["args"]["input_type_shape"][0].values()
                    flops[operator] += matrix_product_flops(output, activations[-1])
        profile.seconds[graph], profile.matrix_flops[graph] = kernels, flops
    return profile


def server_threads(model: str, texts: list[str], layout: Layout, clients: int, scratch: Path, sentences_per_request: int = 1) -> tuple[float, float, list[tuple[str, float]]]:
    """Wall seconds of one load run, the load generator's CPU seconds, and the CPU seconds each
    server thread spent in it."""
    with ServerProcess(model, "dynamic", layout, free_port(), scratch / "server.log", ["--variant", "fp32"]) as server:  # as the kernel profile
        asyncio.run(run_load(server.target, texts[:200], clients))  # warm-up
        pid = server.process.pid
        before = thread_cpu_seconds(pid)
        result = asyncio.run(run_load(server.target, texts, clients, sentences_per_request=sentences_per_request))
        after = thread_cpu_seconds(pid)
    spent = [
        (MAIN_THREAD if tid == pid else name, seconds)
        for tid, (name, seconds) in thread_cpu_spent(before, after).items()
    ]
    spent.sort(key=lambda entry: -entry[1])
    return result.seconds, result.client_cpu_seconds, spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="transformer-en-de")
    parser.add_argument("--sentences", type=int, default=1000, help="first N of data/multi30k/test2016.en")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the in-process operator profile")
    parser.add_argument("--max-batch-size", type=int, default=64, help="sentences per batch, in-process and in the server")
    parser.add_argument("--layout", type=Layout.parse, default=Layout(2, 1), help="the server's decode workers x ONNX Runtime threads")
    parser.add_argument("--clients", type=int, default=256, help="concurrent clients of the load run")
    parser.add_argument("--sentences-per-request", type=int, default=1, help="sentences each client request carries")
    args = parser.parse_args(argv)
    texts = (ROOT / "data" / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        progress(f"ONNX Runtime profile, {len(texts)} sentences in-process ...")
        kernels = operator_times(args.model, texts, args.threads, args.max_batch_size, scratch)
        progress(f"server ({args.layout}) under {args.clients} clients ...")
        wall, client_cpu, threads = server_threads(args.model, texts, args.layout, args.clients, scratch, args.sentences_per_request)
        progress("one core's matmul peak ...")
        peak = one_core_matmul_peak_flops()
        ctranslate2_seconds = None
        if converts_to_ctranslate2(args.model):
            progress(f"CTranslate2 float32 translate_batch ({args.layout}) ...")
            ctranslate2_seconds = cores * ctranslate2_time(args.model, texts, args.layout, args.max_batch_size, scratch)
    print_kernels(kernels, args, len(texts))
    print(
        f"\n## Server CPU per thread, {len(texts)} sentences, {args.clients} clients x {args.sentences_per_request} sentence(s) per request, {args.layout} workers x threads:"
        f" {wall:.2f} s of wall time, {cores * wall:.2f} core-seconds on {cores} cores\n"
    )
    print("| thread | CPU seconds | per sentence |\n|---|---:|---:|")
    for label, seconds in [*threads, (LOAD_GENERATOR, client_cpu)]:
        # /proc counts in 10 ms ticks: on a short run the event loop may read 0.00, and it is listed
        # even then, beside the decode workers, so the table always tells the server's own threads
        if seconds >= 0.01 or label == MAIN_THREAD or label.startswith(DECODE_THREAD):
            print(f"| {label} | {seconds:.2f} | {1000 * seconds / len(texts):.2f} ms |")
    decoding = sum(seconds for label, seconds in threads if label.startswith(DECODE_THREAD))
    serving = sum(seconds for label, seconds in threads if not label.startswith(DECODE_THREAD)) + client_cpu
    print_the_bar(kernels, peak, decoding, serving, ctranslate2_seconds, args, len(texts))
    return 0


def ctranslate2_time(model: str, texts: list[str], layout: Layout, max_batch_size: int, scratch: Path) -> float:
    """Seconds CTranslate2's float32 translate_batch takes for the texts (converted weights)."""
    from bench.ctranslate2_converter import convert

    checkpoint = ROOT / MODELS[model]
    converted = convert(checkpoint, scratch / "ctranslate2")
    return ctranslate2_greedy(converted, checkpoint.parent / "tokenizer.model", texts, layout, "float32", model, max_batch_size).seconds


def print_kernels(kernels: KernelProfile, args: argparse.Namespace, sentences: int) -> None:
    total = sum(sum(counter.values()) for counter in kernels.seconds.values())
    print(f"## ONNX Runtime kernel time, {args.model}, {sentences} sentences in batches of {args.max_batch_size} sorted by length, {args.threads} thread(s)\n")
    print("| graph | operator | seconds | share of all kernel time | GFLOP/s (matrix products) |\n|---|---|---:|---:|---:|")
    for graph, counter in kernels.seconds.items():
        for operator, seconds in counter.most_common():
            if seconds / total >= 0.005:
                speed = f"{kernels.matrix_flops[graph][operator] / seconds / 1e9:.1f}" if operator in MATRIX_PRODUCTS else ""
                print(f"| {graph} | {operator} | {seconds:.3f} | {seconds / total:.1%} | {speed} |")


def print_the_bar(kernels: KernelProfile, peak: float, decoding: float, serving: float, ctranslate2_seconds: float | None, args: argparse.Namespace, sentences: int) -> None:
    """What decoding would have to reach for the server to match CTranslate2 on these cores."""
    flops, products = kernels.matrix_products()  # the server's decoding does them at about this speed
    speed = flops / products
    other_kernels = sum(sum(counter.values()) for counter in kernels.seconds.values()) - products
    print(f"\n## The server against CTranslate2, in arithmetic ({sentences} sentences)\n")
    print("| | |\n|---|---:|")
    print(f"| one core's fp32 matmul peak (numpy, 1024x1024) | {peak / 1e9:.1f} GFLOP/s |")
    print(f"| the model's arithmetic for these translations (bench.flops: no padding) | {kernels.model_flops / 1e9:.1f} GFLOP |")
    print(f"| matrix products (MatMul, Gemm) of the in-process run above, padding included: about the least a server's batches need | {flops / 1e9:.1f} GFLOP |")
    print(f"| their speed in ONNX Runtime, {args.threads} thread(s) | {speed / 1e9:.1f} GFLOP/s ({speed / peak:.0%} of one core's peak) |")
    print(f"| the other kernels of the in-process run (attention, recurrent cells, log-softmax, norms, ...) | {other_kernels:.2f} core-seconds |")
    print(f"| the server's decode workers under load | {decoding:.2f} core-seconds: {products:.2f} in matrix products at that speed, {decoding - products:.2f} besides |")
    print(f"| the server's other threads and the load generator | {serving:.2f} core-seconds |")
    if ctranslate2_seconds is None:
        print("| CTranslate2 | runs the Transformer only |")
        return
    left = ctranslate2_seconds - serving
    print(f"| CTranslate2 float32 translate_batch, {args.layout}, everything (wall time x cores) | {ctranslate2_seconds:.2f} core-seconds |")
    if left <= 0:
        print("| left to the decode workers to match CTranslate2 | nothing |")
        return
    print(f"| left to the decode workers to match CTranslate2 | {left:.2f} core-seconds ({left / decoding:.2f}x what they take now) |")
    print(f"| ... besides the matrix products at their speed now | {left - products:.2f} core-seconds (now {decoding - products:.2f}; the other kernels alone: {other_kernels:.2f}) |")
    needed = flops / left
    print(
        f"| the matrix products alone, with no time left for anything else, would need | {needed / 1e9:.1f} GFLOP/s per core"
        f" ({needed / speed:.2f}x their speed now, {needed / peak:.0%} of one core's peak) |"
    )

if __name__ == "__main__":
    sys.exit(main())
