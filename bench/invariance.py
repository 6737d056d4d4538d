"""Does a sentence's translation depend on its batch-mates? The first N test sentences translated
alone, then each inside batches of 63 other sentences drawn at random, in a shuffled order
(several trials), for each model and CPU variant: how many translations changed.

    python -m bench.invariance --sentences 100 --trials 3
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from bench.engines import in_process_translator
from nmt_spec.manifest import Manifest, latest_version

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("transformer-en-de", "rnn-en-de")


def changed_translations(version: Path, variant: str, texts: list[str], probes: int, trials: int, batch_size: int) -> int:
    translator = in_process_translator(version, variant, threads=1, max_batch_size=batch_size)
    alone = [translator.translate([text])[0] for text in texts[:probes]]
    changed = 0
    for trial in range(trials):
        rng = random.Random(trial)
        for index, text in enumerate(texts[:probes]):
            batch = rng.sample(texts[probes:], batch_size - 1) + [text]
            rng.shuffle(batch)
            changed += translator.translate(batch)[batch.index(text)] != alone[index]
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.invariance", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sentences", type=int, default=100, help="sentences translated alone and in batches")
    parser.add_argument("--trials", type=int, default=3, help="random batches per sentence")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--split", default="test2016")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    texts = (ROOT / "data" / "multi30k" / f"{args.split}.en").read_text(encoding="utf-8").splitlines()
    print(f"| model | version | variant | batch-invariant (manifest) | translations changed in batches of {args.batch_size} |\n|---|---|---|---|---:|")
    for model in args.models:
        version = latest_version(args.repository / model)
        manifest = Manifest.load(version, verify_files=False)
        for variant in ("fp32", "int8"):
            if variant in manifest.variants:
                changed = changed_translations(version, variant, texts, args.sentences, args.trials, args.batch_size)
                print(f"| {model} | {version.name} | {variant} | {manifest.variants[variant].batch_invariant} | {changed} of {args.sentences * args.trials} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
