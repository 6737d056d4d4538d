"""Checkpoint -> models/<name>/<version>/: graphs, variants, tokenizer, parity, BLEU, manifest."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session, uses_cuda
from decoding.translator import Translator
from export.alignment import measure_layers
from export.graph_builder import OPSET
from export.graphs import DECODER_FILE, ENCODER_FILE, build_graphs
from export.pytorch_source import load_checkpoint, measure_parity
from export.cpu_choice import choose_cpu_variant
from export.decoding_choice import best_trial, decoding_trials, trials_report
from export.shared_weights import SHARED_WEIGHTS_FILE, store_shared_weights_once
from export.variants import VARIANTS, VariantRecipe, write_variant
from nmt_spec.model_spec import TOKENIZER_FILE
from nmt_spec import ModelSpec, Tokenizer, TransformerConfig
from nmt_spec.manifest import DecodingDefaults, GraphInfo, Manifest, TensorInfo, Variant, sha256_of
from nmt_spec.corpus import DEFAULT_DIRECTORY, read_parallel
from nmt_spec.scores import score

PARITY_REPORT_FILE = "parity_report.json"


@dataclass
class ExportConfig:
    checkpoint: Path
    name: str
    version: str = "1"
    output_root: Path = Path("models")
    variants: tuple[str, ...] = ("fp32", "int8", "fp16")
    data_directory: str = DEFAULT_DIRECTORY
    parity_split: str = "val"
    parity_sentences: int = 200
    bleu_split: str | None = "test2016"  # None skips the BLEU measurement
    # The manifest's default decoding: the best of these on this split by BLEU (None: greedy).
    decoding_split: str | None = "val"
    beam_sizes: tuple[int, ...] = (1, 4, 5)
    length_penalties: tuple[float, ...] = (0.6, 1.0, 1.4)
    overwrite: bool = False
    # The Transformer's self-attention caches as buffers each step writes one slot of, in place
    # (DecoderMaskedMultiHeadAttention), instead of a cache one slot longer each step.
    in_place_caches: bool = False
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu"))


def parity_runtime(recipe: VariantRecipe, default: RuntimeConfig) -> RuntimeConfig:
    """A variant made for GPUs (fp16) is checked on one when this machine has one: its CPU
    kernels are not the ones it will be served with."""
    if recipe.intended_device == "cuda" and uses_cuda(RuntimeConfig(device="auto")):
        return RuntimeConfig(device="cuda")
    return default


def graph_info(path: Path) -> GraphInfo:
    graph = onnx.load(path, load_external_data=False).graph

    def describe(values) -> list[TensorInfo]:
        return [
            TensorInfo(
                name=v.name,
                dtype=onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                shape=[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    return GraphInfo(path.name, describe(graph.input), describe(graph.output))


def export_model(config: ExportConfig, progress: Callable[[str], None] = print) -> Manifest:
    target = version_directory(config.output_root, config.name, config.version, config.overwrite)
    source = load_checkpoint(config.checkpoint)
    spec, model, weights = source.spec, source.model, source.weights
    tokenizer = Tokenizer(config.checkpoint.parent / spec.tokenizer_file, spec.special_ids)

    def data(split: str, limit: int | None = None) -> tuple[list[str], list[str]]:
        return read_parallel(config.data_directory, split, spec.source_language, spec.target_language, limit)

    parity_sources, parity_targets = data(config.parity_split, config.parity_sentences)
    source_ids = [ids[: spec.max_source_length] for ids in tokenizer.encode_batch(parity_sources)]
    target_ids = [ids[: spec.max_target_length - 1] for ids in tokenizer.encode_batch(parity_targets)]
    bleu_data = data(config.bleu_split) if config.bleu_split else None

    staging = staging_beside(target)
    try:
        stage_graphs(spec, weights, staging, config.variants, progress, config.in_place_caches)
        shutil.copyfile(config.checkpoint.parent / spec.tokenizer_file, staging / TOKENIZER_FILE)

        reference_bleu = None
        if bleu_data:
            progress(f"[3/4] PyTorch greedy BLEU on {config.bleu_split} ({len(bleu_data[0])} sentences)")
            reference_bleu = score(source.translate(tokenizer, bleu_data[0]), bleu_data[1])

        variants: dict[str, Variant] = {}
        report: dict[str, dict] = {}
        sessions: dict[str, OnnxSeq2Seq] = {}  # of the variants that run here
        for name in config.variants:
            recipe = VARIANTS[name]
            encoder_path = staging / ENCODER_FILE.format(suffix=recipe.file_suffix)
            decoder_path = staging / DECODER_FILE.format(suffix=recipe.file_suffix)
            variant = Variant(graph_info(encoder_path), graph_info(decoder_path), recipe.intended_device, recipe.batch_invariant)
            runtime = parity_runtime(recipe, config.runtime)
            try:
                onnx_model = OnnxSeq2Seq(create_session(str(encoder_path), runtime), create_session(str(decoder_path), runtime))
            except Exception as error:  # e.g. fp16 kernels that exist only on CUDA
                variant.parity = {"status": f"not measured on {runtime.device}: {str(error).splitlines()[0][:200]}"}
                progress(f"[4/4] {name}: cannot run here ({variant.parity['status']})")
            else:
                sessions[name] = onnx_model
                progress(f"[4/4] {name}: parity on {len(source_ids)} {config.parity_split} sentences on {runtime.device}" + (f", BLEU on {config.bleu_split}" if bleu_data else ""))
                variant.parity = {**measure_parity(model, onnx_model, spec, source_ids, target_ids).as_dict(), "device": runtime.device}
                if bleu_data:
                    translations = Translator(onnx_model, spec, tokenizer).translate(bleu_data[0])
                    scores = score(translations, bleu_data[1])
                    variant.evaluation = {
                        "split": config.bleu_split,
                        "search": "greedy",
                        **scores.as_dict(),
                        "bleu_change_vs_pytorch": round(scores.bleu - reference_bleu.bleu, 2),
                    }
            variants[name] = variant
            report[name] = {"parity": variant.parity, "evaluation": variant.evaluation}

        cpu_variant, cpu_report = choose_cpu_variant(staging, spec, tokenizer, variants, bleu_data[0] if bleu_data else parity_sources, progress)
        if cpu_report:
            report["cpu_default_variant"] = cpu_report
        decoding = DecodingDefaults()
        fp32 = sessions.get("fp32") or OnnxSeq2Seq(*(create_session(str(staging / pattern.format(suffix="")), config.runtime) for pattern in (ENCODER_FILE, DECODER_FILE)))
        if config.decoding_split:
            sources, references = data(config.decoding_split)
            progress(f"[4/4] default decoding: BLEU on {config.decoding_split} ({len(sources)} sentences) of beams {config.beam_sizes} x length penalties {config.length_penalties}")
            trials = decoding_trials(Translator(fp32, spec, tokenizer, decoding=decoding), sources, references, config.beam_sizes, config.length_penalties, progress)
            chosen = best_trial(trials)
            decoding.beam_size, decoding.length_penalty = chosen.beam_size, chosen.length_penalty
            report["decoding_choice"] = trials_report(trials, config.decoding_split)
        if isinstance(spec.config, TransformerConfig):
            progress(f"[4/4] which decoder layer's attention aligns words best, on {len(parity_sources)} {config.parity_split} sentences")
            layers = measure_layers(Translator(fp32, spec, tokenizer), parity_sources, spec.config.n_decoder_layers)
            if layers:
                # the latest of the best: ties go to the layer nearest the output, as fairseq's default
                decoding.attention_layer = max(layers, key=lambda m: (m.accuracy, m.layer)).layer
                report["attention_alignment"] = {f"layer {m.layer}": f"{m.correct}/{m.compared}" for m in layers} | {"chosen": decoding.attention_layer}
        files = {path.name: sha256_of(path) for path in sorted(staging.iterdir()) if path.is_file()}
        manifest = Manifest(config.name, config.version, spec, TOKENIZER_FILE, OPSET, variants, files, decoding=decoding, cpu_default_variant=cpu_variant)
        manifest.save(staging)
        report["pytorch"] = {"evaluation": {"split": config.bleu_split, "search": "greedy", **reference_bleu.as_dict()}} if reference_bleu else {}
        (staging / PARITY_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(format_report(report))
    progress(f"wrote {target}")
    return manifest


def version_directory(output_root: Path, name: str, version: str, overwrite: bool) -> Path:
    target = output_root / name / version
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pick another --version or pass --overwrite")
    return target


def staging_beside(target: Path) -> Path:
    """A private directory to write a version into before it replaces `target` in one rename."""
    root = target.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.parent.name}-{target.name}-", dir=root))


def stage_graphs(spec: ModelSpec, weights: dict, staging: Path, variants: tuple[str, ...], progress: Callable[[str], None], in_place_caches: bool = False) -> None:
    """The fp32 graphs and each variant of them, written into `staging`."""
    progress(f"[1/4] building ONNX graphs of the {spec.architecture} (opset {OPSET})" + (", caches written in place" if in_place_caches else ""))
    encoder, decoder = build_graphs(spec, weights, in_place_caches)
    onnx.save(encoder, staging / ENCODER_FILE.format(suffix=""))
    onnx.save(decoder, staging / DECODER_FILE.format(suffix=""))
    progress(f"[2/4] writing variants {', '.join(variants)}")
    for name in variants:
        recipe = VARIANTS[name]
        if recipe.file_suffix:
            for pattern in (ENCODER_FILE, DECODER_FILE):
                write_variant(recipe, staging / pattern.format(suffix=""), staging / pattern.format(suffix=recipe.file_suffix))
    graphs = [staging / pattern.format(suffix=VARIANTS[name].file_suffix) for name in dict.fromkeys(["fp32", *variants]) for pattern in (ENCODER_FILE, DECODER_FILE)]
    shared = store_shared_weights_once(graphs)
    if shared:
        progress(f"      stored once for the graphs that hold them, in {SHARED_WEIGHTS_FILE}: {', '.join(shared)}")


def publish(staging: Path, target: Path) -> None:
    """The staged version takes the place of the version directory, in one rename."""
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    staging.rename(target)


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
    if "decoding_choice" in report:
        choice = report["decoding_choice"]
        lines.append(f"default decoding (best {choice['split']} BLEU of {len(choice['trials'])}): beam {choice['chosen']['beam_size']}, length penalty {choice['chosen']['length_penalty']}")
    if "cpu_default_variant" in report:
        speeds = report["cpu_default_variant"]
        lines.append(f"CPU default: {speeds['chosen']} (greedy, {speeds['fp32']['sentences']} sentences: fp32 {speeds['fp32']['seconds']} s, int8 {speeds['int8']['seconds']} s)")
    if "attention_alignment" in report:
        lines.append(f"attention: lexicon words aligned right per decoder layer {report['attention_alignment']}")
    return "\n".join(lines)
