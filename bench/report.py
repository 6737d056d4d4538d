"""The benchmark's table, ratios and plots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sacrebleu

from bench.engines import ARRIVAL_ORDER, ROOT, Measurement
from nmt_spec import Tokenizer
from nmt_spec.manifest import latest_version

FlopsFunction = Callable[[float, float], float]


@dataclass
class RatioTable:
    """Ratios a / b as markdown rows, of `default` (e.g. sentences per second) unless a row says
    otherwise; a comparison with a side that was not measured is left out."""

    default: Callable[[Measurement], float]
    lines: list[str] = field(default_factory=lambda: ["| model | comparison | ratio |", "|---|---|---:|"])

    def add(self, model: str, label: str, a: Measurement | None, b: Measurement | None, value: Callable[[Measurement], float] | None = None) -> None:
        value = value or self.default
        if a is not None and b is not None:
            self.lines.append(f"| {model} | {label} | {value(a) / value(b):.2f}x |")

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Report:
    texts: list[str]
    references: list[str]
    machine: str
    command: str
    repeats: int = 1
    peak_flops: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    flops: dict[str, FlopsFunction] = field(default_factory=dict)
    tokenizers: dict[str, Tokenizer] = field(default_factory=dict)
    repository: Path = ROOT / "models"  # where each model's tokenizer is read (the benchmarked repository)
    layout_header: str = "batches at once x threads"
    reference_label: str = "ONNX fp32"  # the first measurement of our module in-process, fp32
    title: str = "Benchmarks"
    sections: dict[str, str] = field(default_factory=dict)  # more sections: title -> markdown

    def add(self, measurement: Measurement) -> None:
        """Of repeated measurements of the same thing, the fastest is kept: this machine's speed
        drifts by tens of percent over minutes, and the best run is the least disturbed one."""
        for index, kept in enumerate(self.measurements):
            if kept.key == measurement.key:
                if measurement.seconds < kept.seconds:
                    self.measurements[index] = measurement
                return
        self.measurements.append(measurement)

    def set_flops(self, model: str, function: FlopsFunction) -> None:
        self.flops[model] = function

    def tokenizer(self, model: str) -> Tokenizer:
        if model not in self.tokenizers:
            self.tokenizers[model] = Tokenizer(latest_version(self.repository / model) / "tokenizer.model")
        return self.tokenizers[model]

    def target_tokens(self, m: Measurement) -> int:
        """Subword tokens of the outputs, eos included: the decoder steps each sentence took."""
        return sum(len(ids) for ids in self.tokenizer(m.model).encode_batch(m.translations))

    def source_tokens(self, model: str) -> int:
        return sum(len(ids) for ids in self.tokenizer(model).encode_batch(self.texts))

    def sentences_per_second(self, m: Measurement) -> float:
        return len(m.translations) / m.seconds

    def tokens_per_second(self, m: Measurement) -> float:
        return self.target_tokens(m) / m.seconds

    def bleu(self, m: Measurement) -> float:
        return sacrebleu.corpus_bleu(m.translations, [self.references[: len(m.translations)]]).score

    def reference_outputs(self, model: str) -> list[str] | None:
        return next((m.translations for m in self.measurements if m.model == model and m.engine == "onnx" and m.setting == "fp32"), None)

    def table(self) -> str:
        lines = [
            f"| engine | model | setting | {self.layout_header} | clients | sentences | sentences/s | target tokens/s | p50 ms | p90 ms | p99 ms | load generator CPU | server CPU per request, not decoding | BLEU | same output as {self.reference_label} |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in self.measurements:
            reference = self.reference_outputs(m.model)
            compared = min(len(m.translations), len(reference)) if reference else 0
            same = f"{sum(a == b for a, b in zip(m.translations, reference)) / compared:.1%}" if compared else "-"
            percentiles = [m.percentile(q) for q in (0.5, 0.9, 0.99)]
            shown = " | ".join("-" if p is None else f"{1000 * p:.0f}" for p in percentiles)
            clients = (str(m.concurrency) if m.sentences_per_request == 1 else f"{m.concurrency} x {m.sentences_per_request} sentences") if m.concurrency else "batch"
            client_cpu = "-" if m.client_cpu_share is None else f"{m.client_cpu_share:.0%} of a core"
            serving_cpu = "-" if m.serving_cpu_per_request is None else f"{1000 * m.serving_cpu_per_request:.2f} ms"
            lines.append(
                f"| {m.engine} | {m.model} | {m.setting} | {m.layout} | {clients} | {len(m.translations)} | {self.sentences_per_second(m):.1f} | {self.tokens_per_second(m):.0f} | {shown} | {client_cpu} | {serving_cpu} | {self.bleu(m):.2f} | {same} |"
            )
        return "\n".join(lines)

    def best(
        self, model: str, engine: str, setting: str | None = None, layout: str | None = None, sentences_per_request: int = 1, precision: str | None = None
    ) -> Measurement | None:
        """The fastest measurement that matches; of the server, with one sentence per request
        unless asked otherwise."""
        candidates = [
            m for m in self.measurements
            if m.model == model and m.engine == engine and setting in (None, m.setting) and layout in (None, m.layout) and m.sentences_per_request == sentences_per_request
            and precision in (None, m.precision)
        ]  # fmt: skip
        return max(candidates, key=self.sentences_per_second, default=None)

    def at(self, model: str, policy: str, concurrency: int, layout: str) -> Measurement | None:
        return next((m for m in self.measurements if m.model == model and m.engine == "server" and (m.setting, m.concurrency, m.layout) == (policy, concurrency, layout)), None)

    def layouts(self, model: str) -> list[str]:
        return list(dict.fromkeys(m.layout for m in self.measurements if m.model == model and m.engine == "server"))

    def policy_ratios(self, table: RatioTable, model: str, layout: str) -> None:
        """The server's 64 clients against one, and in-flight against dynamic batching at each load."""
        for policy in ("dynamic", "inflight"):
            table.add(model, f"server {policy}, {layout}: 64 clients / 1 client", self.at(model, policy, 64, layout), self.at(model, policy, 1, layout))
        for concurrency in sorted({m.concurrency for m in self.measurements if m.model == model and m.engine == "server" and m.layout == layout}):
            inflight, dynamic = self.at(model, "inflight", concurrency, layout), self.at(model, "dynamic", concurrency, layout)
            table.add(model, f"in-flight / dynamic throughput, {layout}, {concurrency} clients", inflight, dynamic)
            table.add(model, f"in-flight / dynamic p99 latency, {layout}, {concurrency} clients (below 1: in-flight better)", inflight, dynamic, value=lambda m: m.percentile(0.99))

    def ratios(self) -> str:
        table = RatioTable(self.sentences_per_second)
        ratio = table.add
        for model in dict.fromkeys(m.model for m in self.measurements):
            server = self.best(model, "server", precision="fp32")
            if server is None:
                continue
            where = f"{server.setting}, {server.layout}, {server.concurrency} clients"
            ctranslate2 = self.best(model, "ctranslate2", "float32")
            if ctranslate2 is not None:
                ratio(model, f"server at its best ({where}) / CTranslate2 float32 translate_batch at its best ({ctranslate2.layout})", server, ctranslate2)
            for layout in self.layouts(model):
                same = self.best(model, "server", layout=layout, precision="fp32")
                ratio(model, f"server at its best with {layout} ({same.setting}, {same.concurrency} clients) / CTranslate2 float32 with {layout}", same, self.best(model, "ctranslate2", "float32", layout))
            arrival = self.best(model, "ctranslate2", f"float32, {ARRIVAL_ORDER}")
            if arrival is not None:
                ratio(model, f"server at its best ({where}) / CTranslate2 float32 on batches {ARRIVAL_ORDER} (not sorted by length) at its best ({arrival.layout})", server, arrival)
            for paragraph in sorted({m.sentences_per_request for m in self.measurements if m.model == model and m.engine == "server"} - {1}):
                batched = self.best(model, "server", sentences_per_request=paragraph, precision="fp32")
                ratio(
                    model,
                    f"server with {paragraph} sentences per request at its best ({batched.setting}, {batched.layout}, {batched.concurrency} clients) / CTranslate2 float32 translate_batch at its best",
                    batched,
                    ctranslate2,
                )
                ratio(model, f"server at its best: {paragraph} sentences per request / one", batched, server)
            ctranslate2_int8 = self.best(model, "ctranslate2", "int8")
            for paragraph in sorted({m.sentences_per_request for m in self.measurements if m.model == model and m.engine == "server" and m.precision == "int8"}):
                int8 = self.best(model, "server", sentences_per_request=paragraph, precision="int8")
                ratio(model, f"server int8 at its best ({int8.setting}, {int8.layout}, {int8.concurrency} clients) / CTranslate2 int8 translate_batch at its best", int8, ctranslate2_int8)
            ratio(model, f"server at its best ({where}) / PyTorch eager", server, self.best(model, "pytorch"))
            for layout in self.layouts(model):
                for order, setting in (("", ""), (f", both on batches {ARRIVAL_ORDER}", f", {ARRIVAL_ORDER}")):
                    ratio(
                        model,
                        f"ONNX in-process fp32 / CTranslate2 float32, both {layout}{order} (the model's computation alone)",
                        self.best(model, "onnx", f"fp32{setting}", layout),
                        self.best(model, "ctranslate2", f"float32{setting}", layout),
                    )
                ratio(model, f"ONNX in-process int8 / CTranslate2 int8, both {layout} (per-row int8 against per-row int8)", self.best(model, "onnx", "int8", layout), self.best(model, "ctranslate2", "int8", layout))
                ratio(model, f"ONNX in-process int8 / fp32, both {layout}", self.best(model, "onnx", "int8", layout), self.best(model, "onnx", "fp32", layout))
                for engine, setting in (("onnx", "fp32"), ("ctranslate2", "float32")):
                    ratio(model, f"{engine} {setting} {layout}: batches {ARRIVAL_ORDER} / sorted by length", self.best(model, engine, f"{setting}, {ARRIVAL_ORDER}", layout), self.best(model, engine, setting, layout))
                same = self.best(model, "server", layout=layout, precision="fp32")
                ratio(model, f"server at its best with {layout} ({same.setting}, {same.concurrency} clients) / ONNX in-process fp32 {layout} on batches {ARRIVAL_ORDER} (the cost of serving)", same, self.best(model, "onnx", f"fp32, {ARRIVAL_ORDER}", layout))
            for layout in self.layouts(model):
                self.policy_ratios(table, model, layout)
        return str(table)

    def utilisation(self) -> str:
        lines = [f"Measured fp32 matmul peak: {self.peak_flops / 1e9:.1f} GFLOP/s.", "", "| model | engine | GFLOP per 1,000 target tokens | achieved GFLOP/s | fraction of peak |", "|---|---|---:|---:|---:|"]
        for model, function in self.flops.items():
            for engine, setting in (("server", None), ("onnx", "fp32"), ("ctranslate2", "float32"), ("pytorch", None)):
                m = self.best(model, engine, setting, precision="fp32")
                if m is None:
                    continue
                per_token = function(self.source_tokens(model) / len(self.texts), self.target_tokens(m) / len(m.translations))
                achieved = per_token * self.tokens_per_second(m)
                lines.append(f"| {model} | {engine} ({m.setting}, {m.layout}) | {per_token * 1000 / 1e9:.2f} | {achieved / 1e9:.2f} | {achieved / self.peak_flops:.1%} |")
        return "\n".join(lines)

    def plot(self, directory: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        written = []
        for model in dict.fromkeys(m.model for m in self.measurements):
            figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
            for layout in self.layouts(model):
                for policy, marker in (("dynamic", "o"), ("inflight", "s")):
                    runs = sorted((m for m in self.measurements if m.model == model and m.engine == "server" and (m.setting, m.layout) == (policy, layout)), key=lambda m: m.concurrency)
                    if not runs:
                        continue
                    clients = [m.concurrency for m in runs]
                    throughput.plot(clients, [self.sentences_per_second(m) for m in runs], marker=marker, label=f"server, {policy}, {layout}")
                    for fraction, style in ((0.5, "-"), (0.9, "--"), (0.99, ":")):
                        latency.plot(clients, [1000 * m.percentile(fraction) for m in runs], style, marker=marker, label=f"{policy} {layout} p{round(fraction * 100)}")
            for m in self.measurements:
                if m.model == model and m.engine == "server" and (m.sentences_per_request > 1 or m.precision != "fp32"):  # at its sentences in flight
                    marker = "*" if m.sentences_per_request > 1 else "P"
                    throughput.plot([m.concurrency * m.sentences_per_request], [self.sentences_per_second(m)], marker=marker, markersize=11, linestyle="none", label=f"server, {m.setting}, {m.layout}")
                if m.model == model and m.engine != "server":
                    throughput.axhline(self.sentences_per_second(m), linestyle="--", linewidth=1, color="grey" if m.engine != "ctranslate2" else "black")
                    throughput.annotate(f"{m.engine} {m.setting} {m.layout}", (1, self.sentences_per_second(m)), fontsize=7, va="bottom")
            for axis, title, unit in ((throughput, "throughput", "sentences/s"), (latency, "latency per request", "ms")):
                axis.set_xscale("log", base=2)
                axis.set_xlabel("concurrent clients (one sentence per request; a star: sentences in flight)")
                axis.set_ylabel(unit)
                axis.set_title(f"{model}: {title}")
                axis.grid(alpha=0.3)
                axis.legend(fontsize=7)
            latency.set_yscale("log")
            figure.tight_layout()
            path = directory / f"bench-{model}.png"
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
        return written

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        plots = self.plot(path.parent)
        text = [
            f"# {self.title}",
            "",
            f"Machine: {self.machine}.",
            f"Command: `{self.command}` ({len(self.texts)} sentences of Multi30k test2016, greedy, same weights everywhere).",
            f"Each figure is the fastest of {self.repeats} interleaved rounds over all engines (this shared machine's speed drifts)."
            if self.repeats > 1
            else "Each figure is from one run.",
            "",
            "## Throughput and latency",
            "",
            self.table(),
            "",
            "## Ratios (measured in the same run)",
            "",
            self.ratios(),
            "",
            "## Arithmetic",
            "",
            self.utilisation(),
            "",
            *[part for title, body in self.sections.items() for part in (f"## {title}", "", body, "")],
            *[f"![{p.stem}]({p.name})" for p in plots],
            "",
        ]
        path.write_text("\n".join(text), encoding="utf-8")
