"""Command line: python -m training {train,evaluate,translate,length-bound,average} --help."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from decoding.constraints import LengthBound
from nmt_spec import ModelSpec, Tokenizer
from nmt_spec.alignment import word_alignment
from nmt_spec.manifest import DecodingDefaults
from nmt_spec.scores import score
from training.checkpoint import average_checkpoints, load_model
from training.config import DataConfig, load_config
from training.data import read_parallel
from training.evaluate import best_hypotheses, translate
from training.models import Seq2SeqModel


def _add_decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, type=Path, nargs="+",
        help="a best.pt, last.pt, epochN.pt or averaged .pt file; its tokenizer must lie beside it. "
        "Several (one tokenizer): their ensemble decodes, e.g. a teacher for distillation",
    )
    parser.add_argument("--beam-size", type=int, default=1, help="1 is greedy search (default: %(default)s)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam scores are divided by length**length_penalty (default: %(default)s)")
    parser.add_argument("--max-batch-tokens", type=int, default=4000, help="padded source tokens x beam per decoding batch (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate and use the PyTorch translation models (attention RNN, Transformer).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model from a config file",
        description="Train a model. Writes into --out: config.yaml, tokenizer.model, model_spec.json, "
        "last.pt (resumable, every checkpoint_every steps), epochN.pt, best.pt (best validation BLEU), "
        "train_log.jsonl, history.json and curves.png. Under torchrun, trains with DDP.",
    )
    train.add_argument("--config", type=Path, default=None, help="YAML config (see configs/); defaults apply to what it leaves out")
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument("--resume", action="store_true", help="continue exactly from <out>/last.pt")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.OPTION=VALUE", help="override a config value, e.g. --set epochs=2 --set optim.learning_rate=5e-4 (repeatable)")

    evaluate = commands.add_parser("evaluate", help="translate a corpus split and score it with sacreBLEU and chrF")
    _add_decoding_options(evaluate)
    evaluate.add_argument("--split", default="test2016", help="file stem in --data-dir (default: %(default)s)")
    evaluate.add_argument("--data-dir", default=DataConfig.directory, help="corpus directory (default: %(default)s)")
    evaluate.add_argument("--hypotheses", type=Path, default=None, help="also write the translations here, one per line")

    translate_command = commands.add_parser("translate", help="translate sentences given as arguments, or stdin lines")
    _add_decoding_options(translate_command)
    translate_command.add_argument("texts", nargs="*", help="sentences to translate; none: read stdin")
    translate_command.add_argument(
        "--attention", action="store_true", help="after each translation, a JSON line with its source and target pieces, attention rows and word alignment (as the server's return_attention)"
    )
    translate_command.add_argument("--attention-layer", type=int, default=0, help="Transformer decoder layer (from 1) whose attention --attention shows; 0: the last (default: %(default)s)")

    bound = commands.add_parser(
        "length-bound",
        help="target/source length ratios of a corpus split, and how many pairs an output bound a x source + b would cut",
        description="Measures, with a run's tokenizer, the target/source token ratios of a split (eos counted on both sides) "
        "and counts the pairs longer than a x source + b for the bound the manifest's decoding defaults hold.",
    )
    bound.add_argument("--tokenizer", required=True, type=Path, help="a tokenizer.model (of a run or a model version)")
    bound.add_argument("--split", default=DataConfig.train_split, help="file stem in --data-dir (default: %(default)s)")
    bound.add_argument("--data-dir", default=DataConfig.directory, help="corpus directory (default: %(default)s)")
    bound.add_argument("-a", type=float, default=DecodingDefaults.max_length_a, help="(default: %(default)s)")
    bound.add_argument("-b", type=int, default=DecodingDefaults.max_length_b, help="(default: %(default)s)")

    average = commands.add_parser("average", help="average the weights of several checkpoints of one run")
    average.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint files, e.g. runs/x/epoch*.pt")
    average.add_argument("--output", required=True, type=Path, help="where to write the averaged checkpoint (beside its tokenizer)")
    average.add_argument("--half", action="store_true", help="store the weights as fp16 (half the bytes; loading casts them back to fp32)")

    sweep = commands.add_parser(
        "sweep",
        help="train the runs of a plan file (a base config and each run's overrides) one after another, resuming any that stopped, then print their table and plot their curves",
        description="A plan (YAML): base: a config file; runs: name -> {section.option: value}. Each run trains into OUT/<name>; "
        "running the same command again continues where it stopped. On a GPU a sweep of small models takes minutes per run.",
    )
    sweep.add_argument("--plan", required=True, type=Path, help="the plan file, e.g. configs/sweep-transformer.yaml")
    sweep.add_argument("--out", required=True, type=Path, help="directory of the runs (one subdirectory each) and validation-bleu.png")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.OPTION=VALUE", help="applied to every run after its own overrides (e.g. threads=2)")

    runs = commands.add_parser("runs-report", help="a markdown table of training runs (shape, recipe, parameters, updates, tokens, best validation BLEU) and their validation curves as a PNG")
    runs.add_argument("runs", nargs="+", type=Path, help="run directories (as written by train)")
    runs.add_argument("--plot", type=Path, help="PNG of validation BLEU against updates, one line per run")
    return parser


def _load(args: argparse.Namespace) -> tuple[ModelSpec, list[Seq2SeqModel], Tokenizer]:
    """The checkpoints' models; the first one's spec and tokenizer, which the others must share."""
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = [load_model(path) for path in args.checkpoint]
    tokenizer_files = [path.parent / spec.tokenizer_file for path, (spec, _, _) in zip(args.checkpoint, loaded)]
    if any(file.read_bytes() != tokenizer_files[0].read_bytes() for file in tokenizer_files[1:]):
        raise SystemExit(f"an ensemble needs one tokenizer; these differ: {', '.join(map(str, tokenizer_files))}")
    spec = loaded[0][0]
    return spec, [model for _, model, _ in loaded], Tokenizer(tokenizer_files[0], spec.special_ids)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "train":
        from training.train import train

        config = load_config(args.config, args.overrides)
        state = train(config, args.out, resume=args.resume)
        print(json.dumps({"step": state.step, "best_valid_bleu": state.best_bleu, "run": str(args.out)}))
    elif args.command == "evaluate":
        spec, models, tokenizer = _load(args)
        data = DataConfig(directory=args.data_dir, source_language=spec.source_language, target_language=spec.target_language)
        sources, references = read_parallel(data, args.split)
        hypotheses = translate(models, tokenizer, spec, sources, args.beam_size, args.length_penalty, args.max_batch_tokens, progress=True)
        if args.hypotheses:
            args.hypotheses.write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
        search = "greedy" if args.beam_size == 1 else f"beam {args.beam_size}, length_penalty {args.length_penalty}"
        print(json.dumps({"split": args.split, "sentences": len(sources), "search": search, **score(hypotheses, references).as_dict()}))
    elif args.command == "translate":
        spec, models, tokenizer = _load(args)
        texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
        layer = args.attention_layer - 1 if args.attention else None
        best = best_hypotheses(models, tokenizer, spec, texts, args.beam_size, args.length_penalty, args.max_batch_tokens, attention_layer=layer)
        for text, hypothesis in zip(texts, best):
            print(tokenizer.decode(hypothesis.tokens))
            if args.attention:
                source = tokenizer.encode(text)[: spec.max_source_length]
                source_pieces, target_pieces = tokenizer.id_pieces(source), tokenizer.id_pieces(hypothesis.tokens)
                weights = hypothesis.attention[:, : len(source)]
                alignment = word_alignment(source_pieces, target_pieces, weights)
                print(json.dumps({"source_tokens": source_pieces, "target_tokens": target_pieces, "weights": np.round(weights.astype(np.float64), 6).tolist(), "alignment": alignment}, ensure_ascii=False))
    elif args.command == "length-bound":
        tokenizer = Tokenizer(args.tokenizer)
        sources, targets = read_parallel(DataConfig(directory=args.data_dir), args.split)
        source_lengths = np.array([len(ids) for ids in tokenizer.encode_batch(sources)])
        target_lengths = np.array([len(ids) for ids in tokenizer.encode_batch(targets)])
        ratios = target_lengths / source_lengths
        limits = LengthBound(args.a, args.b).limits(source_lengths.tolist(), int(target_lengths.max()) + 1)
        print(json.dumps({
            "split": args.split, "pairs": len(sources), "ratio_mean": round(float(ratios.mean()), 3),
            "ratio_p99": round(float(np.percentile(ratios, 99)), 3), "ratio_p99.9": round(float(np.percentile(ratios, 99.9)), 3),
            "ratio_max": round(float(ratios.max()), 3), "bound": f"{args.a} x source + {args.b}", "pairs_over_the_bound": int((target_lengths > limits).sum()),
        }))  # fmt: skip
    elif args.command == "sweep":
        from training.sweep import run_sweep

        print(run_sweep(args.plan, args.out, args.overrides))
    elif args.command == "runs-report":
        from training.runs_report import report

        print(report(args.runs, args.plot))
    elif args.command == "average":
        average_checkpoints(args.checkpoints, args.output, args.half)
        print(f"averaged {len(args.checkpoints)} checkpoints into {args.output}")
    return 0
