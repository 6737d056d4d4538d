"""A Hugging Face MarianMT directory (OPUS-MT's layout) -> models/<name>/<version>/, with the
same graph builder, graph names, variants and manifest as our own Transformer.

Like CTranslate2's converters, this only maps names: Marian's post-norm layers, its sinusoidal
positions (sines then cosines), swish feed-forward, final_logits_bias and shared embeddings are
options of our Transformer spec; the decoder starts from the pad token (decoder_start_token_id),
which generation never produces (bad_words_ids). Nothing is downloaded: the directory is read
as it is on disk."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig
from decoding.translator import Translator
from export.cpu_choice import choose_cpu_variant
from export.pipeline import Choices, Publication, build, publish, staging, verify
from nmt_spec import ModelSpec, SpecialIds, TransformerConfig
from nmt_spec.manifest import DecodingDefaults, Manifest, ManifestError, sha256_of
from nmt_spec.tokenizer import load_tokenizer
from nmt_spec.weights import WeightError, fill

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SOURCE_SPM, TARGET_SPM, VOCABULARY = "source.spm", "target.spm", "vocab.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ACTIVATIONS = {"swish": "swish", "silu": "swish", "relu": "relu", "gelu": "gelu"}
LANGUAGE_TOKEN = re.compile(r"^>>.+<<$")
OPUS_MT_NAME = re.compile(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})$")


class ImportRefused(ManifestError):
    """The directory is not a model this importer can serve; the message names the file or field."""


@dataclass(kw_only=True)
class MarianImport(Publication):
    directory: Path
    variants: tuple[str, ...] = ("fp32", "int8")
    source_language: str = ""  # empty: from tokenizer_config.json or an opus-mt-xx-yy name
    target_language: str = ""
    parity_texts: list[str] = field(default_factory=list)  # compared with transformers, when installed


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportRefused(f"{path}: missing; a MarianMT directory holds {CONFIG_FILE}, the weights, {SOURCE_SPM}, {TARGET_SPM} and {VOCABULARY}") from None
    except json.JSONDecodeError as error:
        raise ImportRefused(f"{path}: not valid JSON ({error})") from None


def marian_spec(directory: Path, config: dict, generation: dict, vocabulary: dict[str, int], languages: tuple[str, str]) -> ModelSpec:
    """Our Transformer spec for a Marian config, or ImportRefused naming the field it cannot map."""
    where = directory / CONFIG_FILE
    if config.get("model_type") != "marian" or "MarianMTModel" not in (config.get("architectures") or ["MarianMTModel"]):
        raise ImportRefused(f"{where}: model_type {config.get('model_type')!r}, architectures {config.get('architectures')}: only MarianMTModel (model_type 'marian') is supported")
    for ours, theirs in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if config.get(ours) != config.get(theirs):
            raise ImportRefused(f"{where}: {ours} {config.get(ours)} and {theirs} {config.get(theirs)} differ; our Transformer has one of each")
    if config.get("decoder_vocab_size", config["vocab_size"]) != config["vocab_size"]:
        raise ImportRefused(f"{where}: decoder_vocab_size {config['decoder_vocab_size']} differs from vocab_size {config['vocab_size']}: separate vocabularies are not supported")
    activation = ACTIVATIONS.get(config.get("activation_function", "swish"))
    if activation is None:
        raise ImportRefused(f"{where}: activation_function {config.get('activation_function')!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    if config.get("normalize_before") or config.get("add_final_layer_norm"):
        raise ImportRefused(f"{where}: normalize_before/add_final_layer_norm (pre-norm Marian) is not supported")
    if len(vocabulary) != config["vocab_size"]:
        raise ImportRefused(f"{directory / VOCABULARY}: {len(vocabulary)} entries, but {where} says vocab_size {config['vocab_size']}")
    if "<unk>" not in vocabulary:
        raise ImportRefused(f"{directory / VOCABULARY}: no <unk> entry")
    pad = config["pad_token_id"]
    start = generation.get("decoder_start_token_id", config.get("decoder_start_token_id", pad))
    positions = config["max_position_embeddings"]
    transformer = TransformerConfig(
        vocab_size=config["vocab_size"],
        d_model=config["d_model"],
        n_heads=config["encoder_attention_heads"],
        n_encoder_layers=config["encoder_layers"],
        n_decoder_layers=config["decoder_layers"],
        d_ff=config["encoder_ffn_dim"],
        dropout=0.0,
        activation=activation,
        positional="sinusoidal_split",
        max_positions=positions,
        norm="post",
        tie_embeddings=config.get("share_encoder_decoder_embeddings", True) and config.get("tie_word_embeddings", True),
        scale_embeddings=config.get("scale_embedding", False),
        output_bias=True,
    )
    # transformers' max_length counts the decoder start token; ours counts generated tokens only
    max_target = min(generation.get("max_length", config.get("max_length", positions)) - 1, positions)
    return ModelSpec(
        architecture="transformer",
        config=transformer,
        tokenizer_file=SOURCE_SPM,
        target_tokenizer_file=TARGET_SPM,
        vocabulary_file=VOCABULARY,
        special_ids=SpecialIds(pad=pad, unk=vocabulary["<unk>"], bos=start, eos=config["eos_token_id"]),
        max_source_length=min(positions, 512),
        max_target_length=max_target,
        source_language=languages[0],
        target_language=languages[1],
    )


def marian_languages(directory: Path, config: dict, job: MarianImport) -> tuple[str, str]:
    tokenizer_config = read_json(directory / TOKENIZER_CONFIG_FILE) if (directory / TOKENIZER_CONFIG_FILE).exists() else {}
    if tokenizer_config.get("separate_vocabs"):
        raise ImportRefused(f"{directory / TOKENIZER_CONFIG_FILE}: separate_vocabs is true: a vocabulary per side is not supported")
    found = OPUS_MT_NAME.search(str(config.get("_name_or_path", "")).rstrip("/")) or OPUS_MT_NAME.search(directory.resolve().name)
    source = job.source_language or tokenizer_config.get("source_lang") or (found.group(1) if found else "")
    target = job.target_language or tokenizer_config.get("target_lang") or (found.group(2) if found else "")
    if not source or not target:
        raise ImportRefused(f"{directory}: the languages are in neither {TOKENIZER_CONFIG_FILE} (source_lang, target_lang) nor an opus-mt-xx-yy name: pass --source-language and --target-language")
    return source, target


def marian_weights(directory: Path, config: dict, spec: ModelSpec) -> tuple[dict[str, np.ndarray], Path]:
    """Our Transformer's spec (nmt_spec/weights.py) filled with Marian's weights, and the file
    they were read from."""
    path = next((directory / name for name in WEIGHT_FILES if (directory / name).exists()), None)
    if path is None:
        raise ImportRefused(f"{directory}: no weights: neither of {list(WEIGHT_FILES)}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        theirs = load_file(path)
    else:
        import torch

        theirs = {name: value.float().numpy() for name, value in torch.load(path, map_location="cpu", weights_only=True).items()}
    theirs = {name.removeprefix("model."): value.astype(np.float32) for name, value in theirs.items()}
    shared = theirs.get("shared.weight", theirs.get("encoder.embed_tokens.weight"))
    ours = {"src_embed.weight": theirs.get("encoder.embed_tokens.weight", shared)}
    assert isinstance(spec.config, TransformerConfig)
    if not spec.config.tie_embeddings:
        ours["tgt_embed.weight"] = theirs.get("decoder.embed_tokens.weight", shared)
        ours["output_proj.weight"] = theirs.get("lm_head.weight", ours["tgt_embed.weight"])
    ours["output_proj.bias"] = theirs.get("final_logits_bias", np.zeros((1, config["vocab_size"]), np.float32)).reshape(-1)
    if ours["src_embed.weight"] is None:
        raise ImportRefused(f"{path}: no shared.weight or encoder.embed_tokens.weight")

    def attention(theirs_prefix: str, ours_prefix: str) -> None:
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            for kind in ("weight", "bias"):
                ours[f"{ours_prefix}.{projection}.{kind}"] = theirs[f"{theirs_prefix}.{projection}.{kind}"]

    def norm(theirs_name: str, ours_name: str) -> None:
        for kind in ("weight", "bias"):
            ours[f"{ours_name}.norm.{kind}"] = theirs[f"{theirs_name}.{kind}"]

    def feed_forward(theirs_prefix: str, ours_prefix: str) -> None:
        for theirs_name, ours_name in (("fc1", "linear_in"), ("fc2", "linear_out")):
            for kind in ("weight", "bias"):
                ours[f"{ours_prefix}.feed_forward.{ours_name}.{kind}"] = theirs[f"{theirs_prefix}.{theirs_name}.{kind}"]

    try:
        for i in range(spec.config.n_encoder_layers):
            attention(f"encoder.layers.{i}.self_attn", f"encoder_layers.{i}.self_attn")
            norm(f"encoder.layers.{i}.self_attn_layer_norm", f"encoder_layers.{i}.attn_sublayer")
            feed_forward(f"encoder.layers.{i}", f"encoder_layers.{i}")
            norm(f"encoder.layers.{i}.final_layer_norm", f"encoder_layers.{i}.ff_sublayer")
        for i in range(spec.config.n_decoder_layers):
            attention(f"decoder.layers.{i}.self_attn", f"decoder_layers.{i}.self_attn")
            norm(f"decoder.layers.{i}.self_attn_layer_norm", f"decoder_layers.{i}.self_sublayer")
            attention(f"decoder.layers.{i}.encoder_attn", f"decoder_layers.{i}.cross_attn")
            norm(f"decoder.layers.{i}.encoder_attn_layer_norm", f"decoder_layers.{i}.cross_sublayer")
            feed_forward(f"decoder.layers.{i}", f"decoder_layers.{i}")
            norm(f"decoder.layers.{i}.final_layer_norm", f"decoder_layers.{i}.ff_sublayer")
    except KeyError as missing:
        raise ImportRefused(f"{path}: no weight {missing.args[0]!r}, which {CONFIG_FILE}'s layer counts call for") from None
    try:
        return fill(spec, ours, str(path)), path
    except WeightError as error:
        raise ImportRefused(str(error)) from None


def import_marian(job: MarianImport, progress: Callable[[str], None] = print) -> Manifest:
    """The directory through the four steps of export/pipeline.py: built from the spec its
    weights fill, verified against transformers (with parity texts), the CPU variant chosen on
    them, published; the decoding defaults are its generation config's."""
    directory = job.directory
    config = read_json(directory / CONFIG_FILE)
    generation = read_json(directory / GENERATION_CONFIG_FILE) if (directory / GENERATION_CONFIG_FILE).exists() else {}
    for name in (SOURCE_SPM, TARGET_SPM, VOCABULARY):
        if not (directory / name).exists():
            raise ImportRefused(f"{directory / name}: missing; a MarianMT directory holds {SOURCE_SPM}, {TARGET_SPM} and {VOCABULARY} beside {CONFIG_FILE}")
    vocabulary = read_json(directory / VOCABULARY)
    language_tokens = sorted(piece for piece in vocabulary if LANGUAGE_TOKEN.match(piece))
    if language_tokens:
        raise ImportRefused(
            f"{directory / VOCABULARY}: target-language tokens {language_tokens[:4]}: a multilingual model needs one in front of every text, which the server does not add"
        )
    spec = marian_spec(directory, config, generation, vocabulary, marian_languages(directory, config, job))
    weights, weight_file = marian_weights(directory, config, spec)
    choices = Choices(
        decoding=DecodingDefaults(
            # No bound from the source's length beyond max_length: the training data's length
            # ratios are not known here (set max_length_a/b in the manifest to have one).
            max_length_a=0.0,
            max_length_b=0,
            beam_size=int(generation.get("num_beams", config.get("num_beams", 1)) or 1),
            suppressed_ids=sorted({ids[0] for ids in generation.get("bad_words_ids", config.get("bad_words_ids")) or [] if len(ids) == 1} | {spec.special_ids.pad}),
        )
    )
    with staging(job) as staged:
        variants = build(spec, weights, staged, job.variants, {name: directory / name for name in (SOURCE_SPM, TARGET_SPM, VOCABULARY)}, progress)
        tokenizer = load_tokenizer(staged, spec)
        report: dict = {}

        def check(name: str, onnx_model: OnnxSeq2Seq) -> tuple[dict, dict] | None:
            if name != "fp32" or not job.parity_texts:
                return None
            progress(f"[3/4] parity with transformers on {len(job.parity_texts)} sentences")
            report.update(transformers_parity(directory, onnx_model, spec, choices.decoding, tokenizer, job.parity_texts))
            return dict(report), {}

        parity_ids = [ids[: spec.max_source_length] for ids in tokenizer.encode_batch(job.parity_texts)] if job.parity_texts else None
        verify(staged, variants, RuntimeConfig(device="cpu"), check, progress, spec, parity_ids)
        # the parity sentences, when given, also time fp32 against int8 for the CPU default
        choices.cpu_default_variant, cpu_report = choose_cpu_variant(staged, spec, tokenizer, variants, job.parity_texts, progress)
        if cpu_report:
            choices.report["cpu_default_variant"] = cpu_report
        origin = {"format": "transformers MarianMTModel", "config": str(config.get("_name_or_path") or directory), "checkpoint": weight_file.name, "checkpoint_sha256": sha256_of(weight_file)}
        manifest = publish(staged, job, spec, SOURCE_SPM, variants, choices, report, created_by="python -m export --from-transformers", origin=origin)
    progress(f"[4/4] wrote {job.target}" + (f": {json.dumps(report)}" if report else ""))
    return manifest


def transformers_parity(directory: Path, onnx_model: OnnxSeq2Seq, spec: ModelSpec, decoding: DecodingDefaults, tokenizer, texts: list[str]) -> dict:
    """Our fp32 graphs against transformers' MarianMTModel on the same sentences: the largest
    log-probability difference, step by step along transformers' greedy output, and how many of
    our greedy and beam outputs equal generate()'s."""
    from transformers import MarianMTModel

    model = MarianMTModel.from_pretrained(directory).eval()
    translator = Translator(onnx_model, spec, tokenizer, decoding=decoding)
    report: dict = {"sentences": len(texts), "max_abs_log_prob_diff": 0.0}
    for beam_size in (1, 4):
        identical = 0
        for text in texts:
            source = tokenizer.encode(text)
            generated = generate(model, source, spec, decoding, beam_size)
            (ours,) = translator.translate_ids([source], translator.default_options(beam_size=beam_size, length_penalty=1.0))
            identical += ours[0].tokens == generated[1:]
            if beam_size == 1:
                report["max_abs_log_prob_diff"] = max(report["max_abs_log_prob_diff"], step_difference(model, onnx_model, source, generated + [spec.special_ids.eos]))
        report[f"beam {beam_size}: identical to generate()"] = f"{identical}/{len(texts)}"
    return report


def generate(model, source: list[int], spec: ModelSpec, decoding: DecodingDefaults, beam_size: int) -> list[int]:
    """transformers' MarianMTModel.generate() on one sentence, in our settings: the start token
    and the generated tokens, eos and padding left out."""
    import torch
    from transformers import GenerationConfig

    special = spec.special_ids
    # CTranslate2's and our beam search end once beam_size hypotheses have; transformers' does
    # with early_stopping=True (which generate() ignores as a keyword argument: set it here).
    settings = GenerationConfig(
        decoder_start_token_id=special.bos, eos_token_id=special.eos, pad_token_id=special.pad, num_beams=beam_size, do_sample=False,
        early_stopping=True, length_penalty=1.0, max_length=spec.max_target_length + 1, bad_words_ids=[[t] for t in decoding.suppressed_ids] or None,
    )  # fmt: skip
    with torch.no_grad():
        generated = model.generate(torch.tensor([source]), generation_config=settings)[0].tolist()
    return [generated[0]] + [token for token in generated[1:] if token not in (special.eos, special.pad)]


def step_difference(model, onnx_model: OnnxSeq2Seq, source: list[int], generated: list[int]) -> float:
    """The largest |log p| difference over the steps of feeding `generated` (start token first)."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([generated[:-1]])).logits[0]
    expected = torch.log_softmax(logits.double(), dim=-1).numpy()
    decoder = onnx_model.start(np.array([source], dtype=np.int64))
    largest = 0.0
    for step, token in enumerate(generated[:-1]):
        log_probs = decoder.step(np.array([token], dtype=np.int64))[0]
        finite = np.isfinite(expected[step])
        largest = max(largest, float(np.abs(log_probs[finite] - expected[step][finite]).max()))
    return largest
