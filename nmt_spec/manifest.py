"""The model repository manifest: models/<name>/<version>/manifest.json.

Written once by export, read by the server: which graphs make up each variant, what the model
is (its spec), the files' sha256, and what was measured at export (parity, BLEU)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt_spec.model_spec import ModelSpec
from nmt_spec.tokenizer import tokenizer_files

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT_VERSION = 1


class ManifestError(ValueError):
    """A model directory that cannot be served; the message names the file and the problem."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: list[int | str]


@dataclass
class GraphInfo:
    file: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


@dataclass
class Variant:
    """One precision of the model: its two graphs and what was measured on them."""

    encoder: GraphInfo
    decoder: GraphInfo
    intended_device: str  # "cpu", "cuda" or "any"
    # A sentence's translation is the same alone and in any batch. Manifests written before this
    # field hold int8 graphs whose activation scales were per batch.
    batch_invariant: bool = True
    parity: dict[str, Any] = field(default_factory=dict)  # against PyTorch, see export/pytorch_source.py
    evaluation: dict[str, Any] = field(default_factory=dict)  # e.g. test2016 BLEU of these graphs
    # Greedy decoding on the CPU where the export ran: sentences, seconds (export/cpu_choice.py)
    cpu_speed: dict[str, Any] = field(default_factory=dict)
    # The decoder step in its fixed-shape form (caches of fixed capacity written in place, greedy
    # search in the graph), which CUDA graphs replay; None where the architecture has none.
    fixed_step: GraphInfo | None = None

    @property
    def graphs(self) -> list[GraphInfo]:
        return [self.encoder, self.decoder] + ([self.fixed_step] if self.fixed_step else [])


@dataclass
class DecodingDefaults:
    """How the model decodes what a request leaves unset."""

    # Output at most a x source tokens + b (eos counted on both sides; fairseq's max_len_a/b).
    # On Multi30k's 29,000 training pairs the target/source ratio has a mean of 1.04, a 99.9th
    # percentile of 1.85 and a maximum of 2.27 (on 10-token sources), and 1.5 x + 10 holds every
    # pair: `python -m training length-bound` measures a corpus.
    max_length_a: float = 1.5
    max_length_b: int = 10
    # The Transformer decoder layer (from 1) whose cross-attention, averaged over heads, requests
    # with return_attention get; 0, as in manifests written before it was chosen: the last.
    attention_layer: int = 0
    beam_size: int = 1  # what a request that sets none gets
    length_penalty: float = 1.0
    suppressed_ids: list[int] = field(default_factory=list)  # never generated (Marian: its pad)


@dataclass
class Manifest:
    name: str
    version: str
    spec: ModelSpec
    tokenizer_file: str
    opset: int
    variants: dict[str, Variant]
    files: dict[str, str]  # file name -> sha256
    created_by: str = "python -m export"
    decoding: DecodingDefaults = field(default_factory=DecodingDefaults)  # absent in older manifests
    # Where an imported model came from: its format, its config's name or path, the sha256 of
    # the checkpoint it was read from.
    origin: dict[str, str] = field(default_factory=dict)
    # What `--variant auto` serves on a CPU: int8 where the export measured it faster than fp32
    # (export/cpu_choice.py); fp32 in manifests written before it was measured.
    cpu_default_variant: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["spec"] = self.spec.to_dict()
        return {"format_version": MANIFEST_FORMAT_VERSION, **values}

    def save(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = MANIFEST_FILE) -> Manifest:
        try:
            values = dict(values)
            version = values.pop("format_version")
            if version != MANIFEST_FORMAT_VERSION:
                raise ManifestError(f"{where}: format_version {version} is not supported (want {MANIFEST_FORMAT_VERSION})")
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ManifestError(f"{where}: unknown field(s) {unknown}")

            def graph(info: dict[str, Any]) -> GraphInfo:
                return GraphInfo(info["file"], [TensorInfo(**t) for t in info["inputs"]], [TensorInfo(**t) for t in info["outputs"]])

            values["spec"] = ModelSpec.from_dict(values["spec"])
            values["decoding"] = DecodingDefaults(**values.get("decoding", {}))
            values["variants"] = {
                name: Variant(
                    encoder=graph(v["encoder"]),
                    decoder=graph(v["decoder"]),
                    intended_device=v["intended_device"],
                    batch_invariant=v.get("batch_invariant", name != "int8"),
                    parity=v.get("parity", {}),
                    evaluation=v.get("evaluation", {}),
                    cpu_speed=v.get("cpu_speed", {}),
                    fixed_step=graph(v["fixed_step"]) if v.get("fixed_step") else None,
                )
                for name, v in values["variants"].items()
            }
            return cls(**values)
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"{where}: malformed manifest ({type(error).__name__}: {error})") from error

    @classmethod
    def load(cls, directory: Path, verify_files: bool = True) -> Manifest:
        """Read a model version directory; with verify_files, every listed file must exist and
        match its sha256."""
        path = directory / MANIFEST_FILE
        if not path.exists():
            raise ManifestError(f"{path}: no manifest; a model version directory holds manifest.json and the files it lists")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ManifestError(f"{path}: not valid JSON ({error})") from error
        manifest = cls.from_dict(values, str(path))
        if verify_files:
            manifest.verify(directory)
        return manifest

    def verify(self, directory: Path) -> None:
        referenced = {self.tokenizer_file, *tokenizer_files(self.spec)} | {g.file for v in self.variants.values() for g in v.graphs}
        missing_from_list = sorted(referenced - set(self.files))
        if missing_from_list:
            raise ManifestError(f"{directory / MANIFEST_FILE}: files {missing_from_list} are used but have no sha256 entry")
        for file_name, expected in self.files.items():
            path = directory / file_name
            if not path.exists():
                raise ManifestError(f"{path}: listed in the manifest but missing")
            actual = sha256_of(path)
            if actual != expected:
                raise ManifestError(f"{path}: sha256 {actual} does not match the manifest's {expected}")


def latest_version(model_directory: Path) -> Path:
    """The highest numeric version directory of a model (models/<name>/<version>/)."""
    versions = [p for p in model_directory.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise ManifestError(f"{model_directory}: no numeric version directory")
    return max(versions, key=lambda p: int(p.name))
