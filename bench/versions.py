"""Two versions of a model side by side, in one run: parameters, FLOPs per generated token, and
our decoding module's in-process sentences/s (greedy and each version's default decoding, fp32
and int8), rounds interleaved so that both see the same machine.

    python -m bench.versions models/transformer-en-de/1 models/transformer-en-de/2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
import sacrebleu
from onnx import numpy_helper

from bench.engines import ROOT, onnx_greedy
from bench.flops import flops_per_generated_token
from nmt_spec.manifest import Manifest
from nmt_spec.tokenizer import load_tokenizer


def parameters(version: Path, manifest: Manifest) -> int:
    """From the fp32 graphs' initializers (no torch): each weight once, a shared one once."""
    seen: dict[str, int] = {}
    for graph in (manifest.variants["fp32"].encoder, manifest.variants["fp32"].decoder):
        for tensor in onnx.load(version / graph.file).graph.initializer:
            seen.setdefault(tensor.name, int(numpy_helper.to_array(tensor).size))
    return sum(seen.values())


def mean_tokens(version: Path, manifest: Manifest, texts: list[str]) -> float:
    """Subword tokens per text, eos included, with this version's tokenizer."""
    return sum(len(ids) for ids in load_tokenizer(version, manifest.spec).encode_batch(texts)) / len(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versions", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("versions", nargs=2, type=Path, help="two model version directories")
    parser.add_argument("--sentences", type=int, default=1000, help="first N test2016 sentences")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest of each is kept")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    texts = (ROOT / "data" / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    references = (ROOT / "data" / "multi30k" / "test2016.de").read_text(encoding="utf-8").splitlines()[: args.sentences]
    manifests = [Manifest.load(version, verify_files=False) for version in args.versions]
    settings = [(variant, default) for variant in ("fp32", "int8") for default in (False, True)]
    best: dict[tuple[int, str, bool], float] = {}
    bleu: dict[tuple[int, str, bool], float] = {}
    outputs: dict[int, list[str]] = {}
    for _ in range(args.rounds):
        for index, version in enumerate(args.versions):
            for variant, default in settings:
                if variant not in manifests[index].variants:
                    continue
                measured = onnx_greedy(version, variant, texts, args.threads, version.parent.name, args.batch_size, model_default=default)
                key = (index, variant, default)
                best[key] = max(best.get(key, 0.0), len(texts) / measured.seconds)
                bleu[key] = sacrebleu.corpus_bleu(measured.translations, [references]).score
                if (variant, default) == ("fp32", False):
                    outputs[index] = measured.translations
    print(f"{args.sentences} test2016 sentences, batches of {args.batch_size}, {args.threads} ONNX Runtime threads, best of {args.rounds} interleaved rounds\n")
    print("| version | weights in its fp32 graphs (each once) | GFLOP per generated token | variant | decoding | sentences/s | test2016 BLEU |\n|---|---:|---:|---|---|---:|---:|")
    for index, (version, manifest) in enumerate(zip(args.versions, manifests)):
        # the arithmetic of its own greedy translations of these sentences, padding aside
        flops = flops_per_generated_token(manifest.spec, mean_tokens(version, manifest, texts), mean_tokens(version, manifest, outputs[index]))
        for variant, default in settings:
            key = (index, variant, default)
            if key in best:
                decoding = f"default (beam {manifest.decoding.beam_size}, penalty {manifest.decoding.length_penalty:g})" if default else "greedy"
                print(f"| {version} | {parameters(version, manifest) / 1e6:.2f}M | {flops / 1e9:.4f} | {variant} | {decoding} | {best[key]:.0f} | {bleu[key]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
