"""BLEU and chrF of a running server on a test set (cased, detokenized sacreBLEU), with the
decoding the server gives requests that set no options. When that is greedy, the figure is set
next to the one the export measured on the same graphs (manifest.json): serving must not change
the translations.

    python -m bench.bleu --target localhost:50051 --model transformer-en-de
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import sacrebleu

from bench.load import run_load
from nmt_spec.manifest import Manifest, latest_version
from server.client import TranslatorClient

DATA = Path(__file__).resolve().parents[1] / "data" / "multi30k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bleu", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="localhost:50051", help="server address")
    parser.add_argument("--model", default="transformer-en-de", help="model name, as served and in --model-repository")
    parser.add_argument("--model-repository", type=Path, default=Path("models"), help="where the manifest is read")
    parser.add_argument("--split", default="test2016", help="data/multi30k/<split>.en and .de")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    args = parser.parse_args(argv)

    sources = (DATA / f"{args.split}.en").read_text(encoding="utf-8").splitlines()
    references = (DATA / f"{args.split}.de").read_text(encoding="utf-8").splitlines()
    served_model = next(m for m in TranslatorClient(args.target).list_models().models if m.name == args.model)
    result = asyncio.run(run_load(args.target, sources, args.concurrency, args.model))
    if result.errors:
        print(f"{result.errors} requests failed", file=sys.stderr)
        return 1
    bleu = sacrebleu.corpus_bleu(result.translations, [references]).score
    chrf = sacrebleu.corpus_chrf(result.translations, [references]).score
    decoding = "greedy" if served_model.default_beam_size <= 1 else f"beam {served_model.default_beam_size}, length penalty {served_model.default_length_penalty:g}"
    line = f"{args.model} {served_model.variant} {args.split} {decoding}: BLEU through the server {bleu:.2f}, chrF {chrf:.2f}"
    exported = None
    if served_model.default_beam_size <= 1:
        manifest = Manifest.load(latest_version(args.model_repository / args.model), verify_files=False)
        exported = manifest.variants[served_model.variant].evaluation.get("bleu") if manifest.variants[served_model.variant].evaluation.get("split") == args.split else None
        line += f", measured at export {exported}"
    print(f"{line} ({len(sources)} sentences, {result.sentences_per_second:.0f} sentences/s)")
    return 0 if exported is None or abs(bleu - exported) < 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
