"""Text in, translations out, on one variant of an exported model (no torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from decoding.batching import SearchOptions, fixed_greedy_batches, search_batches
from decoding.constraints import LengthBound, TokenRules
from decoding.fixed_greedy import FixedShapeGreedy
from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session, uses_cuda
from nmt_spec import ModelSpec, Tokenizer, TransformerConfig
from nmt_spec.tokenizer import VocabularyTokenizer, load_tokenizer
from nmt_spec.manifest import DecodingDefaults, GraphInfo, Manifest, ManifestError

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}


def check_io(session: ort.InferenceSession, declared: GraphInfo, path: Path) -> None:
    """The graph's inputs and outputs are those the manifest describes: names, types, shapes."""

    def actual(values) -> list[tuple[str, str, list]]:
        return [(v.name, ORT_TYPES.get(v.type, v.type), [d if d is not None else "?" for d in v.shape]) for v in values]

    for kind, graph_values, manifest_values in (("inputs", session.get_inputs(), declared.inputs), ("outputs", session.get_outputs(), declared.outputs)):
        expected = [(t.name, t.dtype, list(t.shape)) for t in manifest_values]
        found = actual(graph_values)
        if expected != found:
            difference = sorted(set(map(str, expected)) ^ set(map(str, found)))[:4]
            raise ManifestError(f"{path}: the graph's {kind} differ from the manifest's: {difference}")


def _open_graph(version_directory: Path, info: GraphInfo, runtime: RuntimeConfig) -> ort.InferenceSession:
    path = version_directory / info.file
    try:
        session = create_session(str(path), runtime)
    except Exception as error:  # ORT's own message says what is wrong with the bytes
        raise ManifestError(f"{path}: ONNX Runtime cannot load it: {str(error).strip()[:300]}") from error
    check_io(session, info, path)
    return session


@dataclass
class TranslationHypothesis:
    text: str
    tokens: list[int]  # target token ids, without bos and eos
    score: float  # sum of token log-probabilities
    normalized_score: float
    attention: np.ndarray | None = None  # (tokens, S) when the options asked for it


class Translator:
    def __init__(
        self,
        model: OnnxSeq2Seq,
        spec: ModelSpec,
        tokenizer: Tokenizer | VocabularyTokenizer,
        max_batch_tokens: int = 4000,
        max_batch_size: int | None = None,
        decoding: DecodingDefaults = DecodingDefaults(),
        fixed_greedy: FixedShapeGreedy | None = None,
    ) -> None:
        """fixed_greedy: the fixed-shape form, which then decodes every greedy search that needs
        nothing else of a step (no attention, no token rules)."""
        self.model = model
        self.fixed_greedy = fixed_greedy
        self.spec = spec
        self.tokenizer = tokenizer
        self.decoding = decoding
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size  # sentences per batch; None: bounded by tokens only

    @classmethod
    def from_repository(
        cls,
        version_directory: Path,
        variant: str = "fp32",
        runtime: RuntimeConfig = RuntimeConfig(),
        manifest: Manifest | None = None,
        attention_layer: int = 0,
        fixed_step: bool = False,
    ) -> Translator:
        """Load models/<name>/<version>/ as its manifest describes (files verified by sha256).
        attention_layer: the decoder layer (from 1) whose attention is returned; 0: the manifest's.
        fixed_step: greedy searches run on the variant's fixed-shape step (the GPU form), replayed
        as CUDA graphs on CUDA."""
        manifest = manifest or Manifest.load(version_directory)
        if variant not in manifest.variants:
            raise ManifestError(f"{version_directory}: no variant {variant!r}; it has {sorted(manifest.variants)}")
        graphs = manifest.variants[variant]
        tokenizer = load_tokenizer(version_directory, manifest.spec)
        if fixed_step and graphs.fixed_step is None:
            raise ManifestError(f"{version_directory}: variant {variant!r} has no fixed-shape decoder step")
        if fixed_step and uses_cuda(runtime) and variant == "fp32":
            # ONNX Runtime's GroupQueryAttention has fp16 and bf16 CUDA kernels only
            raise ManifestError(f"{version_directory}: the fixed-shape step runs on CUDA in fp16; its fp32 variant runs on the CPU")
        sessions = [_open_graph(version_directory, info, runtime) for info in (graphs.encoder, graphs.decoder)]
        fixed_greedy = None
        if fixed_step:
            step = _open_graph(version_directory, graphs.fixed_step, dataclasses.replace(runtime, cuda_graph=True))
            fixed_greedy = FixedShapeGreedy.for_model(sessions[0], step, manifest.spec, cuda_graphs=uses_cuda(runtime))
        layer = 1  # the RNN has one attention
        if isinstance(manifest.spec.config, TransformerConfig):
            layers = manifest.spec.config.n_decoder_layers
            layer = attention_layer or manifest.decoding.attention_layer or layers
            if not 1 <= layer <= layers:
                raise ManifestError(f"{version_directory}: attention layer {layer} asked for; the model's decoder has layers 1 to {layers}")
        model = OnnxSeq2Seq(*sessions, pad_id=manifest.spec.special_ids.pad, attention_layer=layer - 1)
        return cls(model, manifest.spec, tokenizer, decoding=dataclasses.replace(manifest.decoding, attention_layer=layer), fixed_greedy=fixed_greedy)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch(texts)

    def translate_ids(self, sources: list[list[int]], options: SearchOptions) -> list[list[TranslationHypothesis]]:
        if self.fixed_greedy is not None and options.plain_greedy:
            nbest = fixed_greedy_batches(sources, self.fixed_greedy, options, self.max_batch_tokens, self.max_batch_size)
        else:
            nbest = search_batches(sources, self.model.start, self.spec.special_ids, options, self.max_batch_tokens, self.max_batch_size)
        texts = self.tokenizer.decode_batch([h.tokens for hypotheses in nbest for h in hypotheses])
        results, position = [], 0
        for hypotheses in nbest:
            results.append([TranslationHypothesis(texts[position + i], h.tokens, h.score, h.normalized_score, h.attention) for i, h in enumerate(hypotheses)])
            position += len(hypotheses)
        return results

    def default_options(self, **chosen) -> SearchOptions:
        """The model's own decoding (the manifest's beam and length penalty, output bounded by
        the source, its suppressed tokens never generated), with `chosen` set."""
        defaults = {
            "beam_size": self.decoding.beam_size,
            "length_penalty": self.decoding.length_penalty,
            "max_decoding_length": self.spec.max_target_length,
            "length_bound": LengthBound(self.decoding.max_length_a, self.decoding.max_length_b),
            "rules": TokenRules(suppressed=tuple(self.decoding.suppressed_ids)),
        }
        return SearchOptions(**{**defaults, **chosen})

    def translate(self, texts: list[str], options: SearchOptions | None = None) -> list[str]:
        """Best translation of each text (the model's default decoding unless told), sources cut
        at the model's maximum."""
        options = options or self.default_options()
        sources = [ids[: self.spec.max_source_length] for ids in self.encode(texts)]
        return [hypotheses[0].text for hypotheses in self.translate_ids(sources, options)]
