"""Where the time goes: ONNX Runtime's kernel time per operator in our decoding module
in-process, and the server's CPU time per thread under load (decode workers against the event
loop that runs gRPC, protobuf and tokenization).

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
from pathlib import Path

from bench.__main__ import progress
from bench.engines import ROOT, Layout, ServerProcess, free_port, in_process_translator
from bench.load import run_load

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def operator_times(model: str, texts: list[str], threads: int, max_batch_size: int, scratch: Path) -> dict[str, collections.Counter]:
    """Kernel seconds per operator type, for the encoder and the decoder step, translating
    `texts` in batches of max_batch_size sentences."""
    translator = in_process_translator(ROOT / "models" / model / "1", "fp32", threads, max_batch_size, profile_prefix=str(scratch / "ort"))
    translator.translate(texts)
    times = {}
    for graph, session in (("encoder", translator.model.encoder), ("decoder step", translator.model.decoder)):
        kernels: collections.Counter = collections.Counter()
        for event in json.loads(Path(session.end_profiling()).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                kernels[event["args"]["op_name"]] += event["dur"] / 1e6
        times[graph] = kernels
    return times


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """thread id -> (its name, user + system CPU seconds so far)."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(tid)] = (stat[stat.index("(") + 1 : stat.rindex(")")], (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND)
    return threads


def server_threads(model: str, texts: list[str], layout: Layout, clients: int, scratch: Path, sentences_per_request: int = 1) -> tuple[float, float, list[tuple[str, float]]]:
    """Wall seconds of one load run, the load generator's CPU seconds, and the CPU seconds each
    server thread spent in it."""
    with ServerProcess(model, "dynamic", layout, free_port(), scratch / "server.log", []) as server:
        asyncio.run(run_load(server.target, texts[:200], clients))  # warm-up
        pid = server.process.pid
        before = thread_cpu_seconds(pid)
        result = asyncio.run(run_load(server.target, texts, clients, sentences_per_request=sentences_per_request))
        after = thread_cpu_seconds(pid)
    spent = []
    for tid, (name, seconds) in after.items():
        label = "main thread (asyncio event loop: gRPC, protobuf, tokenization)" if tid == pid else name
        spent.append((label, seconds - before.get(tid, (name, 0.0))[1]))
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
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        progress(f"ONNX Runtime profile, {len(texts)} sentences in-process ...")
        times = operator_times(args.model, texts, args.threads, args.max_batch_size, scratch)
        progress(f"server ({args.layout}) under {args.clients} clients ...")
        wall, client_cpu, threads = server_threads(args.model, texts, args.layout, args.clients, scratch, args.sentences_per_request)
    total = sum(sum(kernels.values()) for kernels in times.values())
    print(f"## ONNX Runtime kernel time, {args.model}, {len(texts)} sentences in batches of {args.max_batch_size}, {args.threads} thread(s)\n")
    print("| graph | operator | seconds | share of all kernel time |\n|---|---|---:|---:|")
    for graph, kernels in times.items():
        for operator, seconds in kernels.most_common():
            if seconds / total >= 0.005:
                print(f"| {graph} | {operator} | {seconds:.3f} | {seconds / total:.1%} |")
    cores = os.cpu_count() or 1
    print(
        f"\n## Server CPU per thread, {len(texts)} sentences, {args.clients} clients x {args.sentences_per_request} sentence(s) per request, {args.layout} workers x threads:"
        f" {wall:.2f} s of wall time, {cores * wall:.2f} core-seconds on {cores} cores\n"
    )
    print("| thread | CPU seconds | per sentence |\n|---|---:|---:|")
    for label, seconds in [*threads, ("the load generator (another process on the same cores)", client_cpu)]:
        if seconds >= 0.01:
            print(f"| {label} | {seconds:.2f} | {1000 * seconds / len(texts):.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
