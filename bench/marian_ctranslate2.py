"""python -m bench.marian_ctranslate2: an imported MarianMT model against a converter nobody here
wrote. The same Hugging Face directory is converted by CTranslate2's TransformersConverter;
greedy and beam-4 translations of the same sentences from CTranslate2, from transformers'
generate() and from our import are compared token by token. Where CTranslate2 differs, the first
differing step is found, and our decoder is run again with CTranslate2's decoder start token to
see whether that convention explains it. Writes docs/MARIAN-IMPORT.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import ctranslate2
from ctranslate2.converters import TransformersConverter
from transformers import MarianMTModel

from bench.engines import ROOT
from decoding.runtime import RuntimeConfig
from decoding.translator import Translator
from export.marian import generate


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first step at which two outputs differ (a length difference counts at its end)."""
    for step, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return step
    return None if len(a) == len(b) else min(len(a), len(b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.marian_ctranslate2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformers-dir", type=Path, required=True, help="the MarianMT directory that was imported")
    parser.add_argument("--imported", type=Path, required=True, help="its version directory in the model repository")
    parser.add_argument("--texts", type=Path, required=True, help="source sentences, one per line")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "MARIAN-IMPORT.md", help="report (default: %(default)s)")
    args = parser.parse_args(argv)
    texts = [line for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = Translator.from_repository(args.imported, "fp32", RuntimeConfig(device="cpu"))
    spec, tokenizer = ours.spec, ours.tokenizer
    model = MarianMTModel.from_pretrained(args.transformers_dir).eval()
    converted = Path(tempfile.mkdtemp(prefix="ctranslate2-marian-"))
    TransformersConverter(str(args.transformers_dir)).convert(str(converted), force=True)
    start_piece = json.loads((converted / "config.json").read_text())["decoder_start_token"]
    ctranslate2_start = tokenizer.vocabulary[start_piece]
    # Our decoder, started as CTranslate2 starts it: whether that alone explains a difference.
    restarted = Translator(ours.model, dataclasses.replace(spec, special_ids=dataclasses.replace(spec.special_ids, bos=ctranslate2_start)), tokenizer, decoding=ours.decoding)
    engine = ctranslate2.Translator(str(converted), device="cpu")
    sources = [tokenizer.encode(text) for text in texts]
    rows, notes = [], []
    for beam_size in (1, 4):
        options = ours.default_options(beam_size=beam_size, length_penalty=1.0)
        mine = [nbest[0].tokens for nbest in ours.translate_ids(sources, options)]
        restarted_outputs = [nbest[0].tokens for nbest in restarted.translate_ids(sources, options)]
        theirs = [generate(model, source, spec, ours.decoding, beam_size)[1:] for source in sources]
        results = engine.translate_batch([tokenizer.id_pieces(s) for s in sources], beam_size=beam_size, length_penalty=1.0, max_decoding_length=spec.max_target_length)
        ct2 = [[tokenizer.vocabulary.get(piece, spec.special_ids.unk) for piece in result.hypotheses[0]] for result in results]
        explained = 0
        for text, c, m, r in zip(texts, ct2, mine, restarted_outputs):
            step = first_difference(c, m)
            if step is not None:
                explained += c == r
                if len(notes) < 6:
                    notes.append(f"- beam {beam_size}, \"{text}\": first difference at step {step} (CTranslate2 {tokenizer.id_pieces(c[step:step + 1])}, ours {tokenizer.id_pieces(m[step:step + 1])}); ours started from {start_piece}: {'the same as CTranslate2' if c == r else 'still different'}")
        differing = sum(c != m for c, m in zip(ct2, mine))
        rows.append(
            f"| {beam_size} | {sum(m == t for m, t in zip(mine, theirs))} / {len(texts)} | {sum(c == m for c, m in zip(ct2, mine))} / {len(texts)} | "
            f"{sum(c == t for c, t in zip(ct2, theirs))} / {len(texts)} | {sum(r == m for r, m in zip(restarted_outputs, mine))} / {len(texts)} | {explained} / {differing} |"
        )
    report = [
        "# An imported MarianMT model against transformers and CTranslate2",
        "",
        f"`python -m bench.marian_ctranslate2`: {len(texts)} sentences; the tiny MarianMT model the tests build (`tests/export/tiny_marian.py`),",
        "imported with `python -m export --from-transformers`, converted by CTranslate2's own `TransformersConverter`",
        f"(ctranslate2 {ctranslate2.__version__}); transformers' `generate()` with `early_stopping=True` (our and CTranslate2's",
        "beam search end once beam_size hypotheses have), length penalty 1, the pad token suppressed.",
        "",
        f"| beam | ours = transformers | CTranslate2 = ours | CTranslate2 = transformers | ours from {start_piece} = ours | CTranslate2's differences explained by its decoder start |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"CTranslate2's converted config names `{start_piece}` as decoder_start_token; transformers and our import start",
        f"from the model's `decoder_start_token_id` (`{tokenizer.id_pieces([spec.special_ids.bos])[0]}`, whose embedding OPUS-MT keeps at zero).",
        f"The column \"ours from {start_piece}\" runs our decoder from that token instead: where it changes our output but",
        "CTranslate2 still equals ours, CTranslate2 does not start from it in fact. The last column counts the differences",
        "from CTranslate2 that starting from its token reproduces. Other conventions checked by construction: positions",
        "(Marian's sines-then-cosines table from 0 on both sides), final_logits_bias, the length limit (transformers'",
        "max_length counts the start token, ours and CTranslate2's do not; the sentences here end well before it).",
        "",
        *notes,
    ]
    args.out.write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
