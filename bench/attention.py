"""python -m bench.attention: what return_attention costs, and that it costs nothing when not
asked. In one run, interleaved rounds, our module in-process on the same sentences, greedy:

- the Transformer's decoder graph without its attention branch (the graph as it was before
  return_attention: the If node, its input and its output taken out),
- the graph as exported, attention not asked (the If takes its empty branch),
- the graph as exported, attention asked for every sentence,
- and the RNN, whose attention is part of its step, asked and not asked.

Writes docs/BENCHMARKS-ATTENTION.md."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnx

from bench.__main__ import machine_description, progress
from bench.engines import ROOT, in_process_translator
from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session
from decoding.translator import Translator
from nmt_spec.graph_names import CROSS_ATTENTIONS, OUTPUT_ATTENTIONS
from nmt_spec.manifest import Manifest, latest_version


def without_attention_branch(version_directory: Path, scratch: Path) -> Path:
    """The decoder graph less its attention If node: what it was before return_attention."""
    manifest = Manifest.load(version_directory)
    decoder = onnx.load(version_directory / manifest.variants["fp32"].decoder.file)
    graph = decoder.graph
    for node in [n for n in graph.node if CROSS_ATTENTIONS in n.output or (n.op_type == "If" and OUTPUT_ATTENTIONS in n.input)]:
        graph.node.remove(node)
    for values, name in ((graph.input, OUTPUT_ATTENTIONS), (graph.output, CROSS_ATTENTIONS)):
        for value in [v for v in values if v.name == name]:
            values.remove(value)
    path = scratch / "decoder_without_attention.onnx"
    onnx.save(decoder, path)
    return path


def timed(translate: Callable[[], list[str]]) -> tuple[float, list[str]]:
    began = time.perf_counter()
    translations = translate()
    return time.perf_counter() - began, translations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1000, help="test2016 sentences (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is kept (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS-ATTENTION.md", help="report (default: %(default)s)")
    args = parser.parse_args(argv)
    texts = (ROOT / "data" / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    scratch = Path(tempfile.mkdtemp(prefix="bench-attention-"))
    try:
        engines: dict[str, Callable[[], list[str]]] = {}
        for model in ("transformer-en-de", "rnn-en-de"):
            version = latest_version(ROOT / "models" / model)
            translator = in_process_translator(version, "fp32", args.threads, args.batch_size)
            if model.startswith("transformer"):
                runtime = RuntimeConfig(device="cpu", intra_op_threads=args.threads)
                encoder = translator.model.encoder
                stripped = OnnxSeq2Seq(encoder, create_session(str(without_attention_branch(version, scratch)), runtime), pad_id=translator.model.pad_id)
                before = Translator(stripped, translator.spec, translator.tokenizer, translator.max_batch_tokens, translator.max_batch_size, translator.decoding)
                engines[f"{model} | graph without the attention branch"] = lambda t=before: t.translate(texts)
            engines[f"{model} | attention not asked"] = lambda t=translator: t.translate(texts)
            engines[f"{model} | attention asked"] = lambda t=translator: t.translate(texts, t.default_options(with_attention=True))
        best: dict[str, float] = {}
        outputs: dict[str, list[str]] = {}
        for round_number in range(1, args.rounds + 1):
            for name, translate in engines.items():
                seconds, outputs[name] = timed(translate)
                best[name] = min(best.get(name, seconds), seconds)
                progress(f"round {round_number}/{args.rounds}: {name}: {len(texts) / seconds:.0f} sentences/s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = ["| model | graph and request | sentences/s | against not asked | same translations |", "|---|---|---:|---:|---:|"]
    for name, seconds in best.items():
        model = name.split(" | ")[0]
        reference = f"{model} | attention not asked"
        same = sum(a == b for a, b in zip(outputs[name], outputs[reference]))
        rows.append(f"| {name} | {len(texts) / seconds:.0f} | {best[reference] / seconds:.2f}x | {same} / {len(texts)} |")
    report = [
        "# What return_attention costs",
        "",
        f"`python -m bench.attention --sentences {args.sentences} --threads {args.threads} --rounds {args.rounds}`: our module in-process,",
        f"greedy fp32, batches of {args.batch_size} sorted by length, the best of {args.rounds} interleaved rounds. {machine_description(args.threads)}.",
        "",
        *rows,
        "",
        "Not asked, the Transformer's step runs the If node's empty branch: its speed against the",
        "graph without the branch is the cost of having it. Asked, every step also computes each",
        "decoder layer's attention probabilities and copies one layer's out; the RNN computes its",
        "attention in any case, and only copies it out when asked.",
    ]
    args.out.write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n".join(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
