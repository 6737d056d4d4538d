"""The models a server holds: loaded from the model repository as their manifests describe,
each with its ONNX Runtime sessions and its batcher."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from decoding.batching import SearchOptions, pad_ids
from decoding.fixed_running import FixedRunningBatch
from decoding.runtime import RuntimeConfig, uses_cuda
from decoding.translator import Translator
from nmt_spec.manifest import DecodingDefaults, Manifest, ManifestError, latest_version
from server.batcher import Batcher, BatcherConfig
from server.config import ServerConfig
from server.errors import ModelNotFound
from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass
class ServedModel:
    """What the server needs of a loaded model, and nothing to reach through: text to ids and
    back, its decoding defaults and capabilities, its batcher."""

    name: str
    version: str
    manifest: Manifest
    translator: Translator
    variant: str
    device: str  # the execution provider the decoder runs on
    batcher: Batcher

    @property
    def max_input_tokens(self) -> int:
        return self.manifest.spec.max_source_length

    @property
    def max_output_tokens(self) -> int:
        return self.manifest.spec.max_target_length

    @property
    def decoding(self) -> DecodingDefaults:
        """The manifest's defaults, with the attention layer this server serves."""
        return self.translator.decoding

    @property
    def has_attention(self) -> bool:
        return self.translator.model.has_attention

    @property
    def gpu_device_id(self) -> int | None:
        """The CUDA device it decodes on; None on a CPU."""
        if self.device != CUDA_PROVIDER:
            return None
        return int(self.translator.model.decoder.get_provider_options()[self.device]["device_id"])

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, eos last."""
        return self.translator.encode(texts)

    def encode_one(self, text: str) -> list[int]:
        return self.translator.tokenizer.encode(text)

    def decode(self, batch: list[list[int]]) -> list[str]:
        return self.translator.tokenizer.decode_batch(batch)

    def pieces(self, ids: list[int]) -> list[str]:
        """The subword piece of each id (eos as </s>)."""
        return self.translator.tokenizer.id_pieces(ids)

    def search_options(self, **chosen) -> SearchOptions:
        """The model's own decoding with `chosen` set (Translator.default_options: the defaults
        are computed in that one place)."""
        return self.translator.default_options(**chosen)


def choose_variant(manifest: Manifest, wanted: str, on_cuda: bool, allow_batch_dependent: bool = False) -> str:
    """The variant to serve: the one asked for; with auto, fp16 on CUDA (where the model has it),
    on a CPU the manifest's CPU default (int8 where the export measured it faster than fp32,
    export/cpu_choice.py), else fp32. A client's answer must not depend on other clients'
    traffic: a batch-dependent int8 needs the operator's consent, and auto never picks one."""
    where = f"model {manifest.name} version {manifest.version}"
    if wanted != "auto":
        if wanted not in manifest.variants:
            raise ManifestError(f"{where} has no {wanted} variant; it has {sorted(manifest.variants)}")
        if not manifest.variants[wanted].batch_invariant and not allow_batch_dependent:
            raise ManifestError(
                f"{where}: its {wanted} variant is not batch-invariant (its answers may depend on the requests batched with it); "
                "export it again for per-row activation scales, or pass --allow-batch-dependent-variants 1"
            )
        return wanted
    if on_cuda:
        return "fp16" if "fp16" in manifest.variants else "fp32"
    preferred = manifest.variants.get(manifest.cpu_default_variant)
    return manifest.cpu_default_variant if preferred is not None and preferred.batch_invariant else "fp32"


def batcher_config(config: ServerConfig) -> BatcherConfig:
    return BatcherConfig(
        policy=config.batching,
        max_batch_size=config.max_batch_size,
        max_batch_tokens=config.max_batch_tokens,
        max_queue_delay_seconds=config.max_queue_delay_microseconds / 1e6,
        max_queue_size=config.max_queue_size,
        workers=config.decode_workers,
    )


def load_model(version_directory: Path, config: ServerConfig, metrics: ServerMetrics) -> ServedModel:
    manifest = Manifest.load(version_directory)  # every file checked against its sha256
    runtime = RuntimeConfig(device=config.device, intra_op_threads=config.intra_op_threads, spin_wait=config.spin_wait)
    variant = choose_variant(manifest, config.variant, uses_cuda(runtime), bool(config.allow_batch_dependent_variants))
    on_cuda = uses_cuda(runtime)
    # on CUDA, GroupQueryAttention runs in fp16 only: an fp32 variant keeps the step loop there
    has_fixed_step = manifest.variants[variant].fixed_step is not None and not (on_cuda and variant == "fp32")
    fixed_step = has_fixed_step and (config.fixed_step == "on" or (config.fixed_step == "auto" and on_cuda))
    translator = Translator.from_repository(version_directory, variant, runtime, manifest, config.attention_layer, fixed_step=fixed_step)
    if fixed_step and config.fixed_step == "auto" and not fixed_step_works(translator, f"{manifest.name} version {manifest.version}", config.batching == "inflight"):
        fixed_step, translator.fixed_greedy = False, None
    device = translator.model.decoder.get_providers()[0]
    special = manifest.spec.special_ids
    engines = translator.fixed_greedy.twin if translator.fixed_greedy is not None else None  # one per decode worker: each has its own buffers
    batcher = Batcher(manifest.name, lambda sources: translator.model.start(pad_ids(sources, special.pad)), special, batcher_config(config), metrics, engines)
    log.info(
        "loaded model %s version %s: %s variant on %s (%s batching, %d decode worker(s) x %s ONNX Runtime thread(s)%s)",
        manifest.name, manifest.version, variant, device, config.batching, config.decode_workers, config.intra_op_threads or "default",
        ", greedy on the fixed-shape step" if fixed_step else "",
    )  # fmt: skip
    metrics.model_info.labels(model=manifest.name, version=manifest.version, variant=variant, architecture=manifest.spec.architecture, device=device).set(1)
    return ServedModel(manifest.name, manifest.version, manifest, translator, variant, device, batcher)


def fixed_step_works(translator: Translator, model: str, inflight: bool) -> bool:
    """Whether the fixed-shape step decodes here: its first runs are where ONNX Runtime captures
    CUDA graphs, and a graph it cannot capture (a node placed off the GPU) fails only then; for
    in-flight batching also whether rows written in place into its slots give the batch's tokens.
    With --fixed-step auto a failure leaves the model on the step loop, logged, rather than unserved."""
    sources = translator.encode(["Warm-up.", "A second sentence, somewhat longer."])
    options = translator.default_options(beam_size=1, max_decoding_length=12)
    try:
        batch = [nbest[0].tokens for nbest in translator.translate_ids(sources, options)]
        if inflight:
            slots = FixedRunningBatch(translator.fixed_greedy.twin(), 2)
            slots.join(sources[:1], options.max_lengths(sources[:1]), [0])
            slots.step()  # the second joins a running batch, as in service
            slots.join(sources[1:], options.max_lengths(sources[1:]), [1])
            found: dict = {}
            while slots.size:
                found.update(slots.step())
            if [found[0].tokens, found[1].tokens] != batch:
                log.error("model %s: rows joining the fixed-shape step's slots decode otherwise than a batch; serving greedy on the step loop", model)
                return False
        return True
    except Exception:  # whatever the runtime raised: the step loop still serves
        log.exception("model %s: the fixed-shape step failed its first batch; serving greedy on the step loop", model)
        return False


def warm_up(model: ServedModel) -> None:
    """One greedy and one beam search through the batcher, so the first client request does not
    pay for ONNX Runtime's lazy initialisation."""
    sources = model.encode(["Warm-up."])
    loop = asyncio.new_event_loop()  # this thread's own: loading runs beside the server's loop
    try:
        for beam_size in (1, 2):
            options = SearchOptions(beam_size=beam_size, max_decoding_length=8)
            loop.run_until_complete(model.batcher.submit(sources, options, loop).future)
    finally:
        loop.close()


def load_and_warm_up(version_directory: Path, config: ServerConfig, metrics: ServerMetrics) -> ServedModel:
    model = load_model(version_directory, config, metrics)
    try:
        warm_up(model)
    except BaseException:
        model.batcher.stop()
        raise
    return model


class ModelRegistry:
    """name -> the latest version of each model in the repository, loaded and warmed up."""

    def __init__(self, models: dict[str, ServedModel], default_model: str) -> None:
        self.models = models
        self.default_model = default_model

    @classmethod
    def load(cls, config: ServerConfig, metrics: ServerMetrics) -> ModelRegistry:
        root = Path(config.model_repository)
        if not root.is_dir():
            raise ManifestError(f"model repository {root} is not a directory")
        available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        names = config.model_names or available
        missing = sorted(set(names) - set(available))
        if missing:
            raise ManifestError(f"model repository {root} has no model(s) {missing}; it has {available}")
        if not names:
            raise ManifestError(f"model repository {root} holds no model")
        models: dict[str, ServedModel] = {}
        try:
            for name in names:
                try:
                    models[name] = load_and_warm_up(latest_version(root / name), config, metrics)
                except ManifestError as error:
                    if not config.skip_broken_models:
                        raise
                    log.error("model %s is left out: %s", name, error)
        except BaseException:
            for model in models.values():
                model.batcher.stop()
            raise
        if not models:
            raise ManifestError(f"no model of {root} could be loaded")
        default = config.default_model if config.default_model in models else next(iter(models))
        if config.default_model and default != config.default_model:
            log.warning("default model %s is not served; %s is the default instead", config.default_model, default)
        return cls(models, default)

    def resolve(self, name: str, version: str) -> ServedModel:
        model = self.models.get(name or self.default_model)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not served here; served models: {sorted(self.models)} (empty means {self.default_model})")
        if version and version != model.version:
            raise ModelNotFound(f"model {model.name} version {version!r} is not loaded; loaded: {model.version} (empty means the latest)")
        return model

    def newer_versions(self, root: Path, skipped: set[Path]) -> dict[str, Path]:
        """Models whose repository directory holds a higher version than the one served."""
        newer = {}
        for name, model in self.models.items():
            try:
                latest = latest_version(root / name)
            except (ManifestError, OSError):
                continue
            if int(latest.name) > int(model.version) and latest not in skipped:
                newer[name] = latest
        return newer

    def replace(self, new: ServedModel) -> ServedModel:
        """Requests resolved from now on go to the new version; the old one is returned."""
        old, self.models[new.name] = self.models[new.name], new
        return old

    def stop(self) -> None:
        for model in self.models.values():
            model.batcher.stop()
