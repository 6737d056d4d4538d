"""BLEU of a running server on a test set, next to the figure the export measured on the same
graphs (manifest.json): serving must not change the translations.

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

DATA = Path(__file__).resolve().parents[1] / "data" / "multi30k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bleu", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--target", default="localhost:50051", help="server address")
    parser.add_argument("--model", default="transformer-en-de", help="model name, as served and in --model-repository")
    parser.add_argument("--variant", default="fp32", help="the variant the server runs (its export figure is compared)")
    parser.add_argument("--model-repository", type=Path, default=Path("models"), help="where the manifest is read")
    parser.add_argument("--split", default="test2016", help="data/multi30k/<split>.en and .de")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    args = parser.parse_args(argv)

    sources = (DATA / f"{args.split}.en").read_text(encoding="utf-8").splitlines()
    references = (DATA / f"{args.split}.de").read_text(encoding="utf-8").splitlines()
    result = asyncio.run(run_load(args.target, sources, args.concurrency, args.model))
    if result.errors:
        print(f"{result.errors} requests failed", file=sys.stderr)
        return 1
    served = sacrebleu.corpus_bleu(result.translations, [references]).score
    manifest = Manifest.load(latest_version(args.model_repository / args.model), verify_files=False)
    exported = manifest.variants[args.variant].evaluation.get("bleu")
    print(f"{args.model} {args.variant} {args.split}: BLEU through the server {served:.2f}, measured at export {exported} ({len(sources)} sentences, {result.sentences_per_second:.0f} sentences/s)")
    return 0 if exported is None or abs(served - exported) < 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
