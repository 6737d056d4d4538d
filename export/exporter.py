"""Our checkpoint -> models/<name>/<version>/, through the four steps of export/pipeline.py:
built from the filled weight spec, verified against PyTorch (parity, BLEU), the decoding
defaults, CPU variant and attention layer chosen on validation, published."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig
from decoding.translator import Translator
from export.alignment import measure_layers
from export.cpu_choice import choose_cpu_variant
from export.decoding_choice import best_trial, decoding_trials, trials_report
from export.pipeline import Choices, Publication, build, open_variant, publish, staging, verify
from export.pytorch_source import load_checkpoint, measure_parity
from nmt_spec import ModelSpec, Tokenizer, TransformerConfig
from nmt_spec.corpus import DEFAULT_DIRECTORY, read_parallel
from nmt_spec.manifest import DecodingDefaults, Manifest, Variant
from nmt_spec.model_spec import TOKENIZER_FILE
from nmt_spec.scores import score


@dataclass(kw_only=True)
class ExportConfig(Publication):
    checkpoint: Path
    data_directory: str = DEFAULT_DIRECTORY
    parity_split: str = "val"
    parity_sentences: int = 200
    bleu_split: str | None = "test2016"  # None skips the BLEU measurement
    # The manifest's default decoding: the best of these on this split by BLEU (None: greedy).
    decoding_split: str | None = "val"
    beam_sizes: tuple[int, ...] = (1, 4, 5)
    length_penalties: tuple[float, ...] = (0.6, 1.0, 1.4)
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu"))

    def read(self, split: str, spec: ModelSpec, limit: int | None = None) -> tuple[list[str], list[str]]:
        """(sources, references) of a split of the corpus, in the model's languages."""
        return read_parallel(self.data_directory, split, spec.source_language, spec.target_language, limit)


def export_model(config: ExportConfig, progress: Callable[[str], None] = print) -> Manifest:
    source = load_checkpoint(config.checkpoint)
    spec = source.spec
    tokenizer_path = config.checkpoint.parent / spec.tokenizer_file
    tokenizer = Tokenizer(tokenizer_path, spec.special_ids)

    parity_sources, parity_targets = config.read(config.parity_split, spec, config.parity_sentences)
    source_ids = [ids[: spec.max_source_length] for ids in tokenizer.encode_batch(parity_sources)]
    target_ids = [ids[: spec.max_target_length - 1] for ids in tokenizer.encode_batch(parity_targets)]
    bleu_data = config.read(config.bleu_split, spec) if config.bleu_split else None

    with staging(config) as staged:
        variants = build(spec, source.weights, staged, config.variants, {TOKENIZER_FILE: tokenizer_path}, progress)
        reference_bleu = None
        if bleu_data:
            progress(f"[3/4] PyTorch greedy BLEU on {config.bleu_split} ({len(bleu_data[0])} sentences)")
            reference_bleu = score(source.translate(tokenizer, bleu_data[0]), bleu_data[1])

        def check(name: str, onnx_model: OnnxSeq2Seq) -> tuple[dict, dict]:
            progress(f"[3/4] {name}: parity on {len(source_ids)} {config.parity_split} sentences" + (f", BLEU on {config.bleu_split}" if bleu_data else ""))
            parity = measure_parity(source.model, onnx_model, spec, source_ids, target_ids).as_dict()
            if not bleu_data:
                return parity, {}
            scores = score(Translator(onnx_model, spec, tokenizer).translate(bleu_data[0]), bleu_data[1])
            return parity, {"split": config.bleu_split, "search": "greedy", **scores.as_dict(), "bleu_change_vs_pytorch": round(scores.bleu - reference_bleu.bleu, 2)}

        sessions = verify(staged, variants, config.runtime, check, progress, spec, source_ids)
        fp32 = sessions.get("fp32") or open_variant(staged, "fp32", config.runtime)
        choices = choose(config, spec, tokenizer, fp32, staged, variants, bleu_data[0] if bleu_data else parity_sources, parity_sources, progress)
        report = {name: {"parity": variant.parity, "evaluation": variant.evaluation} for name, variant in variants.items()}
        report["pytorch"] = {"evaluation": {"split": config.bleu_split, "search": "greedy", **reference_bleu.as_dict()}} if reference_bleu else {}
        manifest = publish(staged, config, spec, TOKENIZER_FILE, variants, choices, report)
    progress(format_report(report | choices.report))
    progress(f"wrote {config.target}")
    return manifest


def choose(
    config: ExportConfig,
    spec: ModelSpec,
    tokenizer: Tokenizer,
    fp32: OnnxSeq2Seq,
    staged: Path,
    variants: dict[str, Variant],
    timing_texts: list[str],
    parity_sources: list[str],
    progress: Callable[[str], None],
) -> Choices:
    """Step 3 for our checkpoints: the CPU variant by speed (on `timing_texts`), the default
    decoding by BLEU on --decoding-split, the Transformer's attention layer by how well it
    aligns words (on `parity_sources`)."""
    choices = Choices(decoding=DecodingDefaults())
    choices.cpu_default_variant, cpu_report = choose_cpu_variant(staged, spec, tokenizer, variants, timing_texts, progress)
    if cpu_report:
        choices.report["cpu_default_variant"] = cpu_report
    if config.decoding_split:
        sources, references = config.read(config.decoding_split, spec)
        progress(f"[3/4] default decoding: BLEU on {config.decoding_split} ({len(sources)} sentences) of beams {config.beam_sizes} x length penalties {config.length_penalties}")
        trials = decoding_trials(Translator(fp32, spec, tokenizer, decoding=choices.decoding), sources, references, config.beam_sizes, config.length_penalties, progress)
        chosen = best_trial(trials)
        choices.decoding.beam_size, choices.decoding.length_penalty = chosen.beam_size, chosen.length_penalty
        choices.report["decoding_choice"] = trials_report(trials, config.decoding_split)
    if isinstance(spec.config, TransformerConfig):
        progress(f"[3/4] which decoder layer's attention aligns words best, on {len(parity_sources)} {config.parity_split} sentences")
        layers = measure_layers(Translator(fp32, spec, tokenizer), parity_sources, spec.config.n_decoder_layers)
        if layers:
            # the latest of the best: ties go to the layer nearest the output, as fairseq's default
            choices.decoding.attention_layer = max(layers, key=lambda m: (m.accuracy, m.layer)).layer
            choices.report["attention_alignment"] = {f"layer {m.layer}": f"{m.correct}/{m.compared}" for m in layers} | {"chosen": choices.decoding.attention_layer}
    return choices


def format_report(report: dict[str, dict]) -> str:
    lines = ["variant  on    max|dlogit|  greedy identical  BLEU    chrF   dBLEU vs PyTorch"]
    for name, entry in report.items():
        if name in ("attention_alignment", "decoding_choice", "cpu_default_variant"):
            continue
        parity, evaluation = entry.get("parity", {}), entry.get("evaluation", {})
        identical = f"{parity['greedy_identical']}/{parity['greedy_compared']}" if "greedy_compared" in parity else "-"
        difference = f"{parity['max_abs_logit_diff']:.2e}" if "max_abs_logit_diff" in parity else parity.get("status", "-")[:40]
        lines.append(
            f"{name:<8} {parity.get('device', '-'):<5} {difference:>11}  {identical:>16}  {evaluation.get('bleu', '-'):>6}  {evaluation.get('chrf', '-'):>6}  {evaluation.get('bleu_change_vs_pytorch', '-'):>6}"
        )
    for name, entry in report.items():
        for agreement in entry.get("parity", {}).get("greedy_vs_cpu_fp32", []) if isinstance(entry, dict) else []:
            lines.append(f"{name} {agreement['graph']} on {agreement['device']}: greedy as the CPU's fp32 on {agreement['identical']}/{agreement['compared']}")
    if "decoding_choice" in report:
        choice = report["decoding_choice"]
        lines.append(f"default decoding (best {choice['split']} BLEU of {len(choice['trials'])}): beam {choice['chosen']['beam_size']}, length penalty {choice['chosen']['length_penalty']}")
    if "cpu_default_variant" in report:
        speeds = report["cpu_default_variant"]
        lines.append(f"CPU default: {speeds['chosen']} (greedy, {speeds['fp32']['sentences']} sentences: fp32 {speeds['fp32']['seconds']} s, int8 {speeds['int8']['seconds']} s)")
    if "attention_alignment" in report:
        lines.append(f"attention: lexicon words aligned right per decoder layer {report['attention_alignment']}")
    return "\n".join(lines)
