"""Which Transformer decoder layer's cross-attention aligns words best, measured on validation.

There are no gold word alignments for Multi30k; a small lexicon of caption words whose
translation is never in doubt (dog -> Hund, beach -> Strand) stands in: where a source word of
the lexicon occurs once in a sentence and its translation once in the model's output, the
target word should align to it. The share of such pairs a layer gets right is its accuracy."""

from __future__ import annotations

import re
from dataclasses import dataclass

from decoding.translator import Translator
from nmt_spec.alignment import word_alignment

# English caption word -> the start every German form of its translation shares.
LEXICONS: dict[tuple[str, str], dict[str, str]] = {
    ("en", "de"): {
        "dog": "hund", "dogs": "hunde", "man": "mann", "men": "männer", "woman": "frau", "women": "frauen",
        "girl": "mädchen", "boy": "junge", "child": "kind", "children": "kinder", "beach": "strand",
        "water": "wasser", "street": "straße", "ball": "ball", "bike": "fahrrad", "bicycle": "fahrrad",
        "car": "auto", "hat": "hut", "snow": "schnee", "shirt": "hemd", "grass": "gras", "horse": "pferd",
        "guitar": "gitarre", "table": "tisch", "camera": "kamera", "building": "gebäude", "wall": "wand",
        "red": "rot", "blue": "blau", "green": "grün", "black": "schwarz", "white": "weiß", "two": "zwei", "three": "drei",
    },
}
PUNCTUATION = re.compile(r"^\W+|\W+$")


@dataclass(frozen=True)
class LayerAlignment:
    layer: int  # from 1
    correct: int
    compared: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.compared if self.compared else 0.0


def bare(word: str) -> str:
    return PUNCTUATION.sub("", word).lower()


def lexicon_pairs(source_words: list[str], target_words: list[str], lexicon: dict[str, str]) -> list[tuple[int, int]]:
    """(target word, source word) index pairs the lexicon vouches for."""
    source, target = [bare(w) for w in source_words], [bare(w) for w in target_words]
    pairs = []
    for word, stem in lexicon.items():
        sources = [i for i, w in enumerate(source) if w == word]
        targets = [j for j, w in enumerate(target) if w.startswith(stem)]
        if len(sources) == 1 and len(targets) == 1:
            pairs.append((targets[0], sources[0]))
    return pairs


def measure_layers(translator: Translator, sentences: list[str], layers: int) -> list[LayerAlignment] | None:
    """Each layer's accuracy on the lexicon's pairs in greedy translations of the sentences;
    None where there is no lexicon for the language pair."""
    spec = translator.spec
    lexicon = LEXICONS.get((spec.source_language, spec.target_language))
    if lexicon is None:
        return None
    sources = [ids[: spec.max_source_length] for ids in translator.encode(sentences)]
    results = []
    for layer in range(layers):
        translator.model.attention_layer = layer
        hypotheses = translator.translate_ids(sources, translator.default_options(with_attention=True))
        correct = compared = 0
        for sentence, source, (best, *_) in zip(sentences, sources, hypotheses):
            aligned = dict(word_alignment(translator.tokenizer.id_pieces(source), translator.tokenizer.id_pieces(best.tokens), best.attention[:, : len(source)]))
            for target_word, source_word in lexicon_pairs(sentence.split(), best.text.split(), lexicon):
                compared += 1
                correct += aligned.get(target_word) == source_word
        results.append(LayerAlignment(layer + 1, correct, compared))
    return results
