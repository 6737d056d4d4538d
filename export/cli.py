"""Command line: python -m export --checkpoint runs/x/best.pt --name transformer-en-de --version 2, or
python -m export --from-transformers DIR --name opus-mt-en-de --version 1."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from export.exporter import ExportConfig, export_model
from export.marian import ImportRefused, MarianImport, import_marian
from export.variants import VARIANTS


def build_parser() -> argparse.ArgumentParser:
    defaults = ExportConfig(checkpoint=Path(), name="")
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a trained checkpoint to ONNX (encoder + incremental decoder step, with fused "
        "MultiHeadAttention and LayerNormalization nodes), check it against PyTorch, measure BLEU, and write "
        "models/<name>/<version>/ with manifest.json for the server.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="best.pt or an averaged checkpoint; its tokenizer must lie beside it")
    source.add_argument(
        "--from-transformers", type=Path, metavar="DIR", help="a local Hugging Face MarianMT directory (OPUS-MT: config.json, model.safetensors or pytorch_model.bin, source.spm, target.spm, vocab.json)"
    )
    parser.add_argument("--source-language", default="", help="--from-transformers: the source language, where tokenizer_config.json and the directory name do not say")
    parser.add_argument("--target-language", default="", help="--from-transformers: the target language, likewise")
    parser.add_argument("--parity-file", type=Path, help="--from-transformers: sentences (one per line) to compare with transformers' own output (needs transformers installed)")
    parser.add_argument("--name", required=True, help="model name in the repository, e.g. transformer-en-de")
    parser.add_argument("--version", default=defaults.version, help="version directory, a whole number (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=defaults.output_root, help="model repository root (default: %(default)s)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(defaults.variants), help="precisions to write (default: %(default)s); fp32 is always written")
    parser.add_argument("--data-dir", default=defaults.data_directory, help="corpus directory for parity and BLEU (default: %(default)s)")
    parser.add_argument("--parity-sentences", type=int, default=defaults.parity_sentences, help="validation sentences compared with PyTorch (default: %(default)s)")
    parser.add_argument("--bleu-split", default=defaults.bleu_split, help="split to measure BLEU on; 'none' skips it (default: %(default)s)")
    parser.add_argument("--decoding-split", default=defaults.decoding_split, help="split on which the default decoding (beam size, length penalty) is chosen by BLEU; 'none': greedy (default: %(default)s)")
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=list(defaults.beam_sizes), help="beam sizes tried for the default decoding; 1 is greedy (default: %(default)s)")
    parser.add_argument("--length-penalties", type=float, nargs="+", default=list(defaults.length_penalties), help="length penalties tried with each beam over 1 (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.version.isdigit():
        raise SystemExit(f"--version must be a whole number, got {args.version!r}")
    variants = tuple(dict.fromkeys(["fp32", *args.variants]))
    if args.from_transformers:
        texts = args.parity_file.read_text(encoding="utf-8").splitlines() if args.parity_file else []
        job = MarianImport(
            directory=args.from_transformers, name=args.name, version=args.version, output_root=args.out, variants=variants, overwrite=args.overwrite,
            source_language=args.source_language, target_language=args.target_language, parity_texts=[t for t in texts if t.strip()],
        )  # fmt: skip
        try:
            import_marian(job)
        except ImportRefused as refused:
            raise SystemExit(f"refused: {refused}") from None
        return 0
    config = ExportConfig(
        checkpoint=args.checkpoint,
        name=args.name,
        version=args.version,
        output_root=args.out,
        variants=variants,
        data_directory=args.data_dir,
        parity_sentences=args.parity_sentences,
        bleu_split=None if args.bleu_split.lower() == "none" else args.bleu_split,
        decoding_split=None if args.decoding_split.lower() == "none" else args.decoding_split,
        beam_sizes=tuple(args.beam_sizes),
        length_penalties=tuple(args.length_penalties),
        overwrite=args.overwrite,
    )
    export_model(config)
    return 0
