"""python -m bench: every engine on the same weights and sentences, a table of ratios
(docs/BENCHMARKS.md) and plots. `--smoke` runs a handful of sentences, for CI."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from bench.engines import (
    ARRIVAL_ORDER,
    ROOT,
    Layout,
    ServerProcess,
    ctranslate2_greedy,
    free_port,
    onnx_greedy,
    pytorch_greedy,
    server_load,
)
from bench import host_time
from bench.flops import flops_per_generated_token, matmul_peak_flops
from bench.report import Report
from nmt_spec.manifest import latest_version

HOST_TIME_TITLE = "Host time per decoder step (compute-free Transformer: 1 layer, d_model 16; `python -m bench.host_time`)"
MODELS = {"transformer-en-de": "checkpoints/transformer-en-de/model.pt", "rnn-en-de": "checkpoints/rnn-en-de/model.pt"}


def converts_to_ctranslate2(model: str) -> bool:
    return model.startswith("transformer")  # bench.ctranslate2_converter fills a Transformer spec


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())


def machine_description(threads: int) -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores visible, {threads} threads per engine, Python {platform.python_version()}, no GPU"


def measure_model(report: Report, name: str, args: argparse.Namespace, scratch: Path, converted: dict[str, Path], label: str) -> None:
    """Every engine once on one model."""
    texts = report.texts
    checkpoint = ROOT / MODELS[name]
    version = latest_version(ROOT / "models" / name)
    progress(f"{label}: PyTorch eager")
    report.add(pytorch_greedy(checkpoint, texts, args.threads, name, args.max_batch_size))
    if converts_to_ctranslate2(name):
        from bench.ctranslate2_converter import convert

        if name not in converted:
            progress(f"{label}: converting to CTranslate2 through its spec API")
            converted[name] = convert(checkpoint, scratch / name)
        for compute_type, arrival_order in (("float32", False), ("float32", True), ("int8", False)):
            for layout in args.layouts:
                order = f", {ARRIVAL_ORDER}" if arrival_order else ""
                progress(f"{label}: CTranslate2 {compute_type}{order}, {layout.workers} batch(es) at once x {layout.threads} thread(s)")
                report.add(ctranslate2_greedy(converted[name], checkpoint.parent / "tokenizer.model", texts, layout, compute_type, name, args.max_batch_size, arrival_order))
    for variant, arrival_order in (("fp32", False), ("fp32", True), ("int8", False)):
        for layout in args.layouts:  # every layout: each precision is compared with CTranslate2 at its best
            progress(f"{label}: ONNX Runtime in-process, {variant}" + (f", {ARRIVAL_ORDER}" if arrival_order else "") + f", {layout} workers x threads")
            report.add(onnx_greedy(version, variant, texts, layout.threads, name, args.max_batch_size, arrival_order=arrival_order, workers=layout.workers))
    for variant in ("fp32", "int8"):
        progress(f"{label}: ONNX Runtime in-process, {variant}, the model's default decoding, {args.layouts[0]} workers x threads")
        report.add(onnx_greedy(version, variant, texts, args.layouts[0].threads, name, args.max_batch_size, workers=args.layouts[0].workers, model_default=True))
    for layout in args.layouts:
        # A second worker only has work once the clients keep two batches busy: below 16
        # clients it would idle, so those levels are measured with one worker only.
        levels = args.concurrency if layout.workers == 1 or args.smoke else [c for c in args.concurrency if c >= 16]
        for policy in args.policies:
            measure_server(report, name, args, scratch, label, layout, policy, "fp32", levels)
    if "dynamic" in args.policies:
        # int8 against CTranslate2 int8: where the fp32 server does best (dynamic batching, the
        # most clients, one batch per core)
        measure_server(report, name, args, scratch, label, args.layouts[-1], "dynamic", "int8", [max(args.concurrency)])


def measure_server(report: Report, name: str, args: argparse.Namespace, scratch: Path, label: str, layout: Layout, policy: str, variant: str, levels: list[int]) -> None:
    """One server process: clients sending one sentence per request at each level and, with
    dynamic batching, clients sending paragraphs."""
    log = scratch / f"server-{name}-{policy}-{variant}-{layout}.log"
    with ServerProcess(name, policy, layout, free_port(), log, ["--max-batch-size", str(args.max_batch_size), "--variant", variant]) as server:
        for concurrency in levels:
            progress(f"{label}: server {variant}, {policy} batching, {layout} workers x threads, {concurrency} clients")
            report.add(server_load(server, report.texts, concurrency, name, policy, variant=variant))
        if policy == "dynamic" and args.paragraph > 1:
            # as many sentences in flight as the most clients send one by one
            clients = max(1, max(args.concurrency) // args.paragraph)
            progress(f"{label}: server {variant}, {policy} batching, {layout} workers x threads, {clients} clients of {args.paragraph} sentences per request")
            report.add(server_load(server, report.texts, clients, name, policy, args.paragraph, variant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sentences", type=int, default=1000, help="first N sentences of data/multi30k/<split>.en")
    parser.add_argument("--split", default="test2016")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64, 256], help="server load levels (clients, one sentence per request)")
    parser.add_argument(
        "--paragraph", type=int, default=8,
        help="also load the server (dynamic batching) with clients sending this many sentences per request, as a client translating paragraphs does; 1: not",
    )  # fmt: skip
    parser.add_argument("--policies", nargs="+", default=["dynamic", "inflight"], choices=["dynamic", "inflight"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads each engine may use")
    parser.add_argument(
        "--layouts", type=Layout.parse, nargs="+", default=None,
        help="how engines that can decode several batches at once (CTranslate2, the server) spend the threads: WORKERSxTHREADS; default 1xN and Nx1 for N = --threads",
    )  # fmt: skip
    parser.add_argument("--max-batch-size", type=int, default=64, help="sentences per batch for every engine (CTranslate2's max_batch_size, the batches of PyTorch and of our module in-process, the server's --max-batch-size)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md", help="markdown report; plots are written beside it")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over every engine, interleaved; the fastest of each is reported")
    parser.add_argument("--smoke", action="store_true", help="8 sentences, concurrency 1 and 4: checks the benchmark runs, measures nothing")
    args = parser.parse_args(argv)
    args.layouts = args.layouts or list(dict.fromkeys([Layout(1, args.threads), Layout(args.threads, 1)]))
    if args.smoke:
        args.sentences, args.concurrency, args.repeats, args.paragraph = 8, [1, 4], 1, min(args.paragraph, 2)

    data = ROOT / "data" / "multi30k"
    texts = (data / f"{args.split}.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    references = (data / f"{args.split}.de").read_text(encoding="utf-8").splitlines()[: args.sentences]
    report = Report(texts, references, machine_description(args.threads), "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]))
    report.repeats = args.repeats
    progress("host time per decoder step outside ONNX Runtime's run: the step loop against the fixed-shape form ...")
    report.sections[HOST_TIME_TITLE] = host_time.table(*host_time.compare(64 if args.smoke else 512, rounds=1 if args.smoke else 3))
    progress(f"matmul peak ({args.threads} threads) ...")
    report.peak_flops = matmul_peak_flops(512 if args.smoke else 1024)

    with tempfile.TemporaryDirectory() as scratch:
        converted = {}
        for round_number in range(1, args.repeats + 1):
            for name in args.models:
                measure_model(report, name, args, Path(scratch), converted, f"round {round_number}/{args.repeats}: {name}")
        for name in args.models:
            from nmt_spec.manifest import Manifest

            spec = Manifest.load(latest_version(ROOT / "models" / name), verify_files=False).spec
            report.set_flops(name, lambda source, target, spec=spec: flops_per_generated_token(spec, source, target))

    output = args.output if not args.smoke else Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "BENCHMARKS.md"
    report.write(output)
    print(report.table())
    progress(f"wrote {output} and its plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
