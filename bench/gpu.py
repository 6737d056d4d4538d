"""python -m bench.gpu: our decoding module and gRPC server on a GPU (ONNX Runtime's CUDA provider,
tensors kept on the device with IOBinding), fp32 and fp16, batches of 1 to 256 sentences, against
PyTorch eager on the same GPU and our module on the same machine's CPU. Writes
docs/BENCHMARKS-GPU.md and a plot. `--device cpu --smoke` runs the same code without a GPU (CI).

CTranslate2 is not measured here: its PyPI wheels load CUDA 12's cuBLAS, which a CUDA 13
machine does not have."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.__main__ import MODELS, cpu_name, progress
from bench.engines import (
    ARRIVAL_ORDER,
    FIXED_STEP,
    ROOT,
    Layout,
    Measurement,
    ServerProcess,
    free_port,
    onnx_greedy,
    pytorch_greedy,
    server_load,
)
from bench.flops import flops_per_generated_token
from bench.report import RatioTable, Report
from nmt_spec.manifest import Manifest, latest_version

# A lone sentence per batch (or per client) is slow: such levels run on this many sentences per
# row of the batch, so every level takes seconds, not minutes.
SENTENCES_PER_ROW = 100
CPU_REFERENCE = "CPU, batches of 64"


def gpu_description() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        name, memory, driver = subprocess.run(query, capture_output=True, text=True, check=True).stdout.splitlines()[0].split(", ")
        return f"{name} ({memory}, driver {driver})"
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return "no GPU"


def machine_description(device: str) -> str:
    import onnxruntime

    where = gpu_description() if device == "cuda" else "no GPU (the smoke run on the CPU)"
    return f"{where}; {cpu_name()}, {os.cpu_count()} cores; onnxruntime {onnxruntime.__version__} ({onnxruntime.get_device()}), Python {platform.python_version()}"


def fp16_matmul_peak(device: str) -> float:
    """FLOP/s of an 8192^3 fp16 matrix product on the GPU (PyTorch's cuBLAS); 0 without one."""
    import torch

    if device != "cuda" or not torch.cuda.is_available():
        return 0.0
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (start.elapsed_time(end) / 1000)


@dataclass
class GpuReport(Report):
    device: str = "cuda"
    batch_sizes: list[int] = field(default_factory=list)  # in-process batch sizes measured

    def at_batch(self, model: str, engine: str, setting: str, batch: int) -> Measurement | None:
        return next((m for m in self.measurements if (m.model, m.engine, m.setting, m.layout) == (model, engine, setting, where(self.device, batch))), None)

    def ratios(self) -> str:
        table = RatioTable(self.sentences_per_second)
        ratio = table.add

        for model in dict.fromkeys(m.model for m in self.measurements):
            for batch in self.batch_sizes:
                ratio(model, f"ONNX fp16 / fp32, batches of {batch}", self.at_batch(model, "onnx", "fp16", batch), self.at_batch(model, "onnx", "fp32", batch))
            largest = max(self.batch_sizes)
            fixed_variants = [v for v in ("fp32", "fp16") if self.at_batch(model, "onnx", f"{v}, {FIXED_STEP}", largest)]
            for variant in fixed_variants:
                for batch in self.batch_sizes:
                    ratio(model, f"ONNX {variant}, batches of {batch}: {FIXED_STEP} / step loop", self.at_batch(model, "onnx", f"{variant}, {FIXED_STEP}", batch), self.at_batch(model, "onnx", variant, batch))
                if variant == "fp32":
                    continue  # the line above already says it
                ratio(
                    model, f"ONNX {variant} {FIXED_STEP} / ONNX fp32 step loop, batches of {largest}", self.at_batch(model, "onnx", f"{variant}, {FIXED_STEP}", largest), self.at_batch(model, "onnx", "fp32", largest)
                )  # fmt: skip
            for variant in ("fp32", "fp16"):
                ratio(model, f"ONNX {variant}: batches of {largest} / of {min(self.batch_sizes)}", self.at_batch(model, "onnx", variant, largest), self.at_batch(model, "onnx", variant, min(self.batch_sizes)))
                arrival = self.at_batch(model, "onnx", f"{variant}, {ARRIVAL_ORDER}", largest)
                ratio(model, f"ONNX {variant}, batches of {largest}: {ARRIVAL_ORDER} / sorted by length", arrival, self.at_batch(model, "onnx", variant, largest))
            on_gpu = [m for m in self.measurements if m.model == model and m.engine == "onnx" and m.layout != CPU_REFERENCE]
            best = max(on_gpu, key=self.sentences_per_second, default=None)
            if best is None:
                continue
            label = f"ONNX at its best ({best.setting}, {best.layout})"
            ratio(model, f"{label} / ONNX fp32 on this machine's {os.cpu_count()} CPU cores", best, self.best(model, "onnx", "fp32", CPU_REFERENCE))
            ratio(model, f"{label} / PyTorch eager fp32 at its best", best, self.best(model, "pytorch", "fp32 eager"))
            ratio(model, f"{label} / PyTorch eager fp16 at its best", best, self.best(model, "pytorch", "fp16 eager"))
            for batch in self.batch_sizes:
                ratio(model, f"ONNX fp32 / PyTorch eager fp32, batches of {batch}", self.at_batch(model, "onnx", "fp32", batch), self.at_batch(model, "pytorch", "fp32 eager", batch))
            for layout in dict.fromkeys(m.layout for m in self.measurements if m.model == model and m.engine == "server"):
                server = self.best(model, "server", layout=layout)
                variant = layout.split(", ")[1]
                same = max((m for m in on_gpu if m.setting == variant), key=self.sentences_per_second, default=None)
                if same is not None:
                    ratio(model, f"server {layout} at its best ({server.setting}, {server.concurrency} clients) / ONNX {variant} in-process at its best ({same.layout})", server, same)
                arrival = self.at_batch(model, "onnx", f"{variant}, {ARRIVAL_ORDER}", largest)
                fixed_arrival = self.at_batch(model, "onnx", f"{variant}, {FIXED_STEP}, {ARRIVAL_ORDER}", largest)
                in_process = max([m for m in (arrival, fixed_arrival) if m is not None], key=self.sentences_per_second, default=None)
                ratio(model, f"server {layout} at its best / ONNX {variant} in-process, batches of {largest} {ARRIVAL_ORDER}, its faster form (the cost of serving)", server, in_process)
                for measured in [m for m in self.measurements if m.model == model and m.engine == "server" and m.layout == layout and m.setting.startswith("dynamic")]:
                    if measured.concurrency == max(m.concurrency for m in self.measurements if m.engine == "server"):
                        ratio(model, f"server {layout}, {measured.setting}, {measured.concurrency} clients / ONNX {variant} in-process {ARRIVAL_ORDER}, its faster form", measured, in_process)
                self.policy_ratios(table, model, layout)
        return str(table)

    def utilisation(self) -> str:
        if not self.peak_flops:
            return "No GPU: no peak measured."
        lines = [
            f"Measured fp16 matmul peak (8192^3, PyTorch's cuBLAS): {self.peak_flops / 1e12:.0f} TFLOP/s.",
            "",
            "| model | engine | GFLOP per 1,000 target tokens | achieved GFLOP/s | fraction of fp16 peak |",
            "|---|---|---:|---:|---:|",
        ]  # fmt: skip
        for model, function in self.flops.items():
            for m in [m for m in self.measurements if m.model == model and m.layout != CPU_REFERENCE]:
                per_token = function(self.source_tokens(model) / len(self.texts), self.target_tokens(m) / len(m.translations))
                achieved = per_token * self.tokens_per_second(m)
                clients = f", {m.concurrency} clients" if m.concurrency else ""
                lines.append(f"| {model} | {m.engine} ({m.setting}, {m.layout}{clients}) | {per_token * 1000 / 1e9:.2f} | {achieved / 1e9:.1f} | {achieved / self.peak_flops:.3%} |")
        return "\n".join(lines)

    def plot(self, directory: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        models = list(dict.fromkeys(m.model for m in self.measurements))
        figure, axes = plt.subplots(len(models), 3, figsize=(17, 4.8 * len(models)), squeeze=False)
        for (batches, throughput, latency), model in zip(axes, models):
            for engine, setting in dict.fromkeys((m.engine, m.setting) for m in self.measurements if m.model == model and m.engine != "server" and m.layout != CPU_REFERENCE):
                runs = [(b, self.at_batch(model, engine, setting, b)) for b in self.batch_sizes]
                runs = [(b, m) for b, m in runs if m is not None]
                batches.plot([b for b, _ in runs], [self.sentences_per_second(m) for _, m in runs], marker="o", label=f"{engine} {setting}")
            cpu = self.best(model, "onnx", "fp32", CPU_REFERENCE)
            if cpu is not None:
                batches.axhline(self.sentences_per_second(cpu), linestyle="--", color="grey", linewidth=1, label=f"onnx fp32 on {os.cpu_count()} CPU cores")
            batches.set_xlabel("sentences per batch (in-process)")
            batches.set_ylabel("sentences/s")
            batches.set_title(f"{model}: in-process throughput vs batch size")
            server_layouts = list(dict.fromkeys(m.layout for m in self.measurements if m.model == model and m.engine == "server"))
            if not server_layouts:
                throughput.set_visible(False)
                latency.set_visible(False)
            for layout in server_layouts:
                for policy, style in (("dynamic", "-"), ("inflight", "--")):
                    runs = sorted((m for m in self.measurements if m.model == model and m.engine == "server" and (m.setting, m.layout) == (policy, layout)), key=lambda m: m.concurrency)
                    if runs:
                        levels = [m.concurrency for m in runs]
                        label = f"{policy}, {layout.split(', up to')[0]}"
                        throughput.plot(levels, [self.sentences_per_second(m) for m in runs], style, marker="o", label=label)
                        latency.plot(levels, [1000 * m.percentile(0.99) for m in runs], style, marker="o", label=label)
            throughput.set_ylabel("sentences/s")
            throughput.set_title(f"{model}: gRPC server throughput")
            latency.set_ylabel("p99 latency per request, ms")
            latency.set_yscale("log")
            latency.set_title(f"{model}: gRPC server p99 latency")
            for axis in (throughput, latency):
                axis.set_xlabel("concurrent clients (one sentence per request)")
            for axis in (batches, throughput, latency):
                axis.set_xscale("log", base=2)
                axis.grid(alpha=0.3)
                axis.legend(fontsize=7)
        figure.tight_layout()
        path = directory / "bench-gpu.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return [path]


def missing_variants(repository: Path, models: list[str], variants: set[str]) -> list[str]:
    """'<model> <version> <variant>' for each asked variant that a model's latest version lacks:
    found before any measurement, not when a server started on it never comes up."""
    missing = []
    for name in models:
        version = latest_version(repository / name)
        held = Manifest.load(version, verify_files=False).variants
        missing += [f"{name} {version.name} {variant}" for variant in sorted(variants) if variant not in held]
    return missing


def fixed_step_runs(version: Path, variant: str, device: str) -> bool:
    """Whether the variant has the fixed-shape step and it runs on this device (on CUDA in fp16
    only: ONNX Runtime's GroupQueryAttention has no fp32 CUDA kernel)."""
    graphs = Manifest.load(version, verify_files=False).variants.get(variant)
    return graphs is not None and graphs.fixed_step is not None and (device == "cpu" or variant != "fp32")


def where(device: str, batch: int) -> str:
    return f"{'GPU' if device == 'cuda' else 'CPU'}, batches of {batch}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the same measurements without a GPU (a smoke run; the numbers mean nothing)")
    parser.add_argument("--sentences", type=int, default=1000, help="first N sentences of data/multi30k/test2016.en")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repository", type=Path, default=ROOT / "models", help="model repository: the latest version of each model must hold the variants asked for")
    parser.add_argument("--variants", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256], help="sentences per batch, in-process")
    parser.add_argument("--pytorch", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16"], help="PyTorch eager precisions (batches of 64 and the largest)")
    parser.add_argument("--server-models", nargs="*", default=["transformer-en-de"], choices=list(MODELS), help="models measured through the gRPC server too")
    parser.add_argument("--server-variants", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16"])
    parser.add_argument("--server-workers", type=int, nargs="+", default=[1, 2], help="decode workers: threads that each run a batch, so one's Python overlaps the other's GPU work")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256], help="server load levels")
    parser.add_argument("--policies", nargs="+", default=["dynamic", "inflight"], choices=["dynamic", "inflight"])
    parser.add_argument("--paragraph", type=int, default=8, help="dynamic batching at the most clients: also requests of this many sentences each; 1: not")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS-GPU.md", help="markdown report; the plot is written beside it")
    parser.add_argument("--smoke", action="store_true", help="8 sentences, small batches, fp32 only (the shipped repository has no fp16 graphs): checks the benchmark runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sentences, args.batch_sizes, args.concurrency, args.models = 8, [1, 4], [1, 4], args.models[:1]
        args.variants, args.pytorch, args.server_variants, args.server_workers, args.paragraph = ["fp32"], ["fp32"], ["fp32"], [2], 2
    missing = missing_variants(args.repository, args.models, {*args.variants, *args.server_variants})
    if missing:
        parser.error(f"the repository lacks {', '.join(missing)}: export them (python -m export --variants fp32 fp16) or name only the variants it has")
    if args.device == "cuda":
        from decoding.runtime import RuntimeConfig, uses_cuda

        if not uses_cuda(RuntimeConfig(device="auto")):
            parser.error("no CUDA device or no CUDA-enabled onnxruntime here; --device cpu runs the smoke version")

    data = ROOT / "data" / "multi30k"
    texts = (data / "test2016.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    references = (data / "test2016.de").read_text(encoding="utf-8").splitlines()[: args.sentences]
    command = "python -m bench.gpu " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = GpuReport(
        texts, references, machine_description(args.device), command,
        layout_header="where", reference_label=f"ONNX fp32 on the CPU ({CPU_REFERENCE})", title="Benchmarks on a GPU",
        device=args.device, batch_sizes=args.batch_sizes, repository=args.repository,
    )  # fmt: skip
    report.peak_flops = fp16_matmul_peak(args.device)
    threads = os.cpu_count() or 1

    def level(rows: int) -> list[str]:
        return texts[: SENTENCES_PER_ROW * rows]

    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            version = latest_version(args.repository / name)
            progress(f"{name}: ONNX Runtime fp32 on {threads} CPU cores (the reference outputs)")
            report.add(onnx_greedy(version, "fp32", texts, threads, name, 64, "cpu", CPU_REFERENCE))
            for variant in args.variants:
                forms = [False] + ([True] if fixed_step_runs(version, variant, args.device) else [])
                for fixed_step in forms:
                    form = f", {FIXED_STEP}" if fixed_step else ""
                    for batch in args.batch_sizes:
                        progress(f"{name}: ONNX Runtime {variant}{form} on {args.device}, batches of {batch}")
                        report.add(onnx_greedy(version, variant, level(batch), threads, name, batch, args.device, where(args.device, batch), fixed_step=fixed_step))
                    batch = max(args.batch_sizes)
                    progress(f"{name}: ONNX Runtime {variant}{form} on {args.device}, batches of {batch} {ARRIVAL_ORDER}")
                    report.add(onnx_greedy(version, variant, level(batch), threads, name, batch, args.device, where(args.device, batch), arrival_order=True, fixed_step=fixed_step))
            for precision in args.pytorch:
                for batch in dict.fromkeys([min(64, max(args.batch_sizes)), max(args.batch_sizes)]):
                    progress(f"{name}: PyTorch eager {precision} on {args.device}, batches of {batch}")
                    report.add(pytorch_greedy(ROOT / MODELS[name], level(batch), threads, name, batch, args.device, precision, where(args.device, batch)))
            if name in args.server_models:
                batch = max(args.batch_sizes)
                for variant in args.server_variants:
                    for workers in args.server_workers:
                        layout = f"{'GPU' if args.device == 'cuda' else 'CPU'}, {variant}, {workers} worker{'s' if workers > 1 else ''}, up to {batch} per batch"
                        # the GPU form wherever it runs (auto: on CUDA; the CPU run exercises it too)
                        fixed = "on" if args.device == "cpu" else "auto"
                        extra = ["--device", args.device, "--variant", variant, "--max-batch-size", str(batch), "--max-batch-tokens", str(batch * 256), "--model-repository", str(args.repository), "--fixed-step", fixed]
                        for policy in args.policies:
                            log = Path(scratch) / f"server-{name}-{variant}-{workers}-{policy}.log"
                            with ServerProcess(name, policy, Layout(workers, min(threads, 4)), free_port(), log, extra) as server:
                                most = max(args.concurrency)
                                for concurrency, paragraph in [(c, 1) for c in args.concurrency] + ([(most, args.paragraph)] if policy == "dynamic" and args.paragraph > 1 else []):
                                    progress(f"{name}: server, {layout}, {policy} batching, {concurrency} clients x {paragraph} sentence(s) per request")
                                    measured = server_load(server, level(concurrency * paragraph), concurrency, name, policy, sentences_per_request=paragraph)
                                    measured.layout, measured.precision = layout, variant  # the layout names the variant
                                    report.add(measured)
        for name in args.models:
            spec = Manifest.load(latest_version(args.repository / name), verify_files=False).spec
            report.set_flops(name, lambda source, target, spec=spec: flops_per_generated_token(spec, source, target))

    output = args.output if not args.smoke else Path(tempfile.mkdtemp(prefix="bench-gpu-smoke-")) / "BENCHMARKS-GPU.md"
    report.write(output)
    print(report.table())
    print(report.ratios())
    progress(f"wrote {output} and its plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
