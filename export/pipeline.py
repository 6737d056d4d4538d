"""Export as four steps, the same for every source (our checkpoints: export/exporter.py; a
MarianMT directory: export/marian.py), as CTranslate2's converters share one writer:

1. build: the graphs and their variants from a filled weight spec, and the tokenizer files,
   into a staging directory beside the repository;
2. verify: each variant against the source framework, on the device it targets;
3. choose: what is measured once for the model: the CPU's default variant (export/cpu_choice.py);
   the decoding defaults and the attention layer where the source has data for them;
4. publish: the manifest (every file's sha256), the report, and one rename into
   models/<name>/<version>/, so a server never sees half a version."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from decoding.batching import SearchOptions, fixed_greedy_batches, search_batches
from decoding.fixed_greedy import FixedShapeGreedy
from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session, uses_cuda
from export.graph_builder import OPSET
from export.graphs import DECODER_FILE, ENCODER_FILE, FIXED_STEP_BUILDERS, FIXED_STEP_FILE, FIXED_STEP_VARIANTS, build_fixed_step, build_graphs
from export.shared_weights import SHARED_WEIGHTS_FILE, store_shared_weights_once
from export.variants import VARIANTS, VariantRecipe, write_variant
from nmt_spec import ModelSpec
from nmt_spec.manifest import DecodingDefaults, GraphInfo, Manifest, TensorInfo, Variant, sha256_of

PARITY_REPORT_FILE = "parity_report.json"
AGREEMENT_BATCH_TOKENS = 4000
Progress = Callable[[str], None]
# What verify measures of one variant: (parity, evaluation) for the manifest, or None: not measured.
Check = Callable[[str, OnnxSeq2Seq], "tuple[dict[str, Any], dict[str, Any]] | None"]


@dataclass(kw_only=True)
class Publication:
    """Where an export goes and in which precisions: models/<name>/<version>/."""

    name: str
    version: str = "1"
    output_root: Path = Path("models")
    variants: tuple[str, ...] = ("fp32", "int8", "fp16")
    overwrite: bool = False

    @property
    def target(self) -> Path:
        return self.output_root / self.name / self.version


@contextmanager
def staging(publication: Publication) -> Iterator[Path]:
    """A private directory beside the repository to build a version in (removed if anything
    fails before publish renames it into place)."""
    target = publication.target
    if target.exists() and not publication.overwrite:
        raise FileExistsError(f"{target} exists; pick another --version or pass --overwrite")
    root = target.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=f".{target.parent.name}-{target.name}-", dir=root))
    try:
        yield directory
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


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


def graph_path(staged: Path, pattern: str, variant: str) -> Path:
    return staged / pattern.format(suffix=VARIANTS[variant].file_suffix)


def build(
    spec: ModelSpec, weights: dict[str, np.ndarray], staged: Path, variants: tuple[str, ...], tokenizer_files: dict[str, Path], progress: Progress
) -> dict[str, Variant]:
    """Step 1: the fp32 graphs, each variant of them, shared weights stored once, the tokenizer
    files copied (name in the version directory -> where it is now); each variant described as
    the manifest holds it."""
    progress(f"[1/4] building ONNX graphs of the {spec.architecture} (opset {OPSET})")
    encoder, decoder = build_graphs(spec, weights)
    onnx.save(encoder, graph_path(staged, ENCODER_FILE, "fp32"))
    onnx.save(decoder, graph_path(staged, DECODER_FILE, "fp32"))
    has_fixed_step = spec.architecture in FIXED_STEP_BUILDERS
    progress(f"[2/4] writing variants {', '.join(variants)}")
    for name in variants:
        recipe = VARIANTS[name]
        if recipe.file_suffix:
            for pattern in (ENCODER_FILE, DECODER_FILE):
                write_variant(recipe, graph_path(staged, pattern, "fp32"), graph_path(staged, pattern, name))
    for name in dict.fromkeys(["fp32", *variants]):
        if FIXED_STEP_FILE in graph_patterns(name, has_fixed_step):
            onnx.save(build_fixed_step(spec, weights, name), graph_path(staged, FIXED_STEP_FILE, name))
    graphs = [graph_path(staged, pattern, name) for name in dict.fromkeys(["fp32", *variants]) for pattern in graph_patterns(name, has_fixed_step)]
    shared = store_shared_weights_once(graphs)
    if shared:
        progress(f"      stored once for the graphs that hold them, in {SHARED_WEIGHTS_FILE}: {', '.join(shared)}")
    for name, path in tokenizer_files.items():
        shutil.copyfile(path, staged / name)
    return {
        name: Variant(
            graph_info(graph_path(staged, ENCODER_FILE, name)),
            graph_info(graph_path(staged, DECODER_FILE, name)),
            VARIANTS[name].intended_device,
            VARIANTS[name].batch_invariant,
            fixed_step=graph_info(graph_path(staged, FIXED_STEP_FILE, name)) if FIXED_STEP_FILE in graph_patterns(name, has_fixed_step) else None,
        )
        for name in variants
    }


def graph_patterns(variant: str, has_fixed_step: bool) -> tuple[str, ...]:
    """The graph files of a variant: encoder, decoder step, and the fixed-shape step where the
    architecture has one and the variant is a precision it is written in."""
    fixed = (FIXED_STEP_FILE,) if has_fixed_step and variant in FIXED_STEP_VARIANTS else ()
    return (ENCODER_FILE, DECODER_FILE, *fixed)


def target_runtime(recipe: VariantRecipe, default: RuntimeConfig) -> RuntimeConfig:
    """A variant made for GPUs (fp16) is checked on one when this machine has one: its CPU
    kernels are not the ones it will be served with."""
    if recipe.intended_device == "cuda" and uses_cuda(RuntimeConfig(device="auto")):
        return RuntimeConfig(device="cuda")
    return default


def open_variant(staged: Path, name: str, runtime: RuntimeConfig) -> OnnxSeq2Seq:
    return OnnxSeq2Seq(create_session(str(graph_path(staged, ENCODER_FILE, name)), runtime), create_session(str(graph_path(staged, DECODER_FILE, name)), runtime))


def verify(
    staged: Path,
    variants: dict[str, Variant],
    runtime: RuntimeConfig,
    check: Check,
    progress: Progress,
    spec: ModelSpec | None = None,
    sources: list[list[int]] | None = None,
) -> dict[str, OnnxSeq2Seq]:
    """Step 2: each variant opened on the device it targets and measured by `check` against the
    source framework; a variant that cannot run here says so in its parity. With `sources`
    (token ids), each variant's graphs are also held to the CPU's fp32 greedy output on every
    device of this machine they target (agree_with_cpu_fp32). Returns the sessions of those
    that run here."""
    sessions: dict[str, OnnxSeq2Seq] = {}
    for name, variant in variants.items():
        device = target_runtime(VARIANTS[name], runtime)
        try:
            model = open_variant(staged, name, device)
        except Exception as error:  # e.g. fp16 kernels that exist only on CUDA
            variant.parity = {"status": f"not measured on {device.device}: {str(error).splitlines()[0][:200]}"}
            progress(f"[3/4] {name}: cannot run here ({variant.parity['status']})")
            continue
        sessions[name] = model
        measured = check(name, model)
        if measured is not None:
            parity, variant.evaluation = measured
            variant.parity = {**parity, "device": device.device}
    if spec is not None and sources:
        agree_with_cpu_fp32(staged, variants, spec, sources, runtime, progress)
    return sessions


# The least share of greedy outputs a variant's graphs must give as the CPU's fp32 step graph
# does, on each device they target; the export refuses the model below it. (The in-place cache
# export that CUDA scrambled agreed on 86%; it passed a check made on the CPU only.)
AGREEMENT_FLOORS = {"fp32": 0.99, "fp16": 0.97}


class AgreementRefused(ValueError):
    """A variant's graphs decode differently from the CPU's fp32 on a device they target."""


def agreement_targets(variants: dict[str, Variant], cuda: bool) -> list[tuple[str, str, str]]:
    """(variant, graph, device) to hold to the CPU's fp32 step graph: fp32 and fp16, the step
    graph on CUDA, the fixed-shape step where it runs (fp32 on the CPU, fp16 on CUDA, where
    GroupQueryAttention has kernels for it)."""
    targets = []
    for name, variant in variants.items():
        if name not in AGREEMENT_FLOORS:
            continue
        if cuda:
            targets.append((name, "step", "cuda"))
        if variant.fixed_step is not None and (name == "fp32" or cuda):
            targets.append((name, "fixed step", "cpu" if name == "fp32" else "cuda"))
    return targets


def agree_with_cpu_fp32(staged: Path, variants: dict[str, Variant], spec: ModelSpec, sources: list[list[int]], runtime: RuntimeConfig, progress: Progress) -> None:
    """Greedy outputs of each agreement target against the CPU's fp32 step graph, in each
    variant's parity; AgreementRefused below the floor."""
    options = SearchOptions(max_decoding_length=spec.max_target_length)
    cpu = dataclasses.replace(runtime, device="cpu")
    reference = [nbest[0].tokens for nbest in search_batches(sources, open_variant(staged, "fp32", cpu).start, spec.special_ids, options, AGREEMENT_BATCH_TOKENS)]
    for name, graph, device in agreement_targets(variants, uses_cuda(RuntimeConfig(device="auto"))):
        where = dataclasses.replace(runtime, device=device)
        progress(f"[3/4] {name} {graph} on {device}: greedy against the CPU's fp32 on {len(sources)} sentences")
        if graph == "step":
            nbest = search_batches(sources, open_variant(staged, name, where).start, spec.special_ids, options, AGREEMENT_BATCH_TOKENS)
        else:
            encoder = create_session(str(graph_path(staged, ENCODER_FILE, name)), where)
            step = create_session(str(graph_path(staged, FIXED_STEP_FILE, name)), dataclasses.replace(where, cuda_graph=device == "cuda"))
            engine = FixedShapeGreedy.for_model(encoder, step, spec, cuda_graphs=device == "cuda")
            nbest = fixed_greedy_batches(sources, engine, options, AGREEMENT_BATCH_TOKENS)
        identical = sum(hypotheses[0].tokens == expected for hypotheses, expected in zip(nbest, reference))
        variants[name].parity.setdefault("greedy_vs_cpu_fp32", []).append({"graph": graph, "device": device, "identical": identical, "compared": len(sources)})
        if identical < AGREEMENT_FLOORS[name] * len(sources):
            raise AgreementRefused(
                f"{name} {graph} on {device}: {identical} of {len(sources)} greedy outputs equal the CPU's fp32, below the {AGREEMENT_FLOORS[name]:.0%} a variant needs; not written"
            )


@dataclass
class Choices:
    """Step 3's outcome: what the manifest says the model does by default, and why (report)."""

    decoding: DecodingDefaults = field(default_factory=DecodingDefaults)
    cpu_default_variant: str = "fp32"
    report: dict[str, Any] = field(default_factory=dict)


def publish(
    staged: Path, publication: Publication, spec: ModelSpec, tokenizer_file: str, variants: dict[str, Variant], choices: Choices, report: dict[str, Any], **provenance: Any
) -> Manifest:
    """Step 4: the manifest (every file with its sha256; `provenance`: created_by, origin) and
    the report written, then the staged version takes the place of the version directory in
    one rename."""
    files = {path.name: sha256_of(path) for path in sorted(staged.iterdir()) if path.is_file()}
    manifest = Manifest(
        publication.name, publication.version, spec, tokenizer_file, OPSET, variants, files, decoding=choices.decoding, cpu_default_variant=choices.cpu_default_variant, **provenance
    )
    manifest.save(staged)
    (staged / PARITY_REPORT_FILE).write_text(json.dumps(report | choices.report, indent=2) + "\n")
    target = publication.target
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    staged.rename(target)
    return manifest
