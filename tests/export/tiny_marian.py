"""A tiny MarianMT model in the Hugging Face layout, made here from nothing: SentencePiece models
trained on a few hundred Multi30k lines, a joint vocab.json as OPUS-MT's (</s> 0, <unk> 1, <pad>
last), and a few hundred training steps on a handful of pairs so that it stops with eos. Like
OPUS-MT, its pad embedding is all zeros (the decoder starts from it)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch

DATA = Path(__file__).resolve().parents[2] / "data" / "multi30k"
PAIRS = 8  # what it is trained on: it learns these by heart
STEPS = 150


def _train_spm(lines: list[str], path: Path, vocab_size: int) -> None:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="unigram", character_coverage=1.0, num_threads=1, minloglevel=2)
    path.write_bytes(model.getvalue())


def training_pairs() -> list[tuple[str, str]]:
    english = (DATA / "train.en").read_text(encoding="utf-8").splitlines()
    german = (DATA / "train.de").read_text(encoding="utf-8").splitlines()
    short = [(e, g) for e, g in zip(english, german) if len(e.split()) <= 8]
    return short[:PAIRS]


def build_tiny_marian(directory: Path) -> Path:
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    english = (DATA / "train.en").read_text(encoding="utf-8").splitlines()[:400]
    german = (DATA / "train.de").read_text(encoding="utf-8").splitlines()[:400]
    _train_spm(english, directory / "source.spm", 160)
    _train_spm(german, directory / "target.spm", 160)
    pieces: list[str] = []
    for name in ("source.spm", "target.spm"):
        processor = spm.SentencePieceProcessor(model_file=str(directory / name))
        pieces += [processor.id_to_piece(i) for i in range(processor.get_piece_size()) if not processor.is_control(i) and not processor.is_unknown(i)]
    vocabulary = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocabulary.setdefault(piece, len(vocabulary))
    pad = vocabulary.setdefault("<pad>", len(vocabulary))
    (directory / "vocab.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"source_lang": "en", "target_lang": "de", "model_max_length": 64}), encoding="utf-8")

    config = MarianConfig(
        vocab_size=len(vocabulary), decoder_vocab_size=len(vocabulary), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0, activation_function="swish",
        scale_embedding=True, dropout=0.0, share_encoder_decoder_embeddings=True, architectures=["MarianMTModel"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = MarianMTModel(config)
    with torch.no_grad():
        model.model.shared.weight[pad].zero_()
    tokenizer = MarianTokenizer(str(directory / "source.spm"), str(directory / "target.spm"), str(directory / "vocab.json"), source_lang="en", target_lang="de")
    sources, targets = zip(*training_pairs())
    batch = tokenizer(list(sources), text_target=list(targets), padding=True, return_tensors="pt")
    batch["labels"][batch["labels"] == pad] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(STEPS):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():  # the output projection, tied to it, moved it in training
        model.model.shared.weight[pad].zero_()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad, eos_token_id=0, pad_token_id=pad, forced_eos_token_id=0, bad_words_ids=[[pad]], num_beams=4, max_length=64
    )
    model.save_pretrained(directory)
    return directory
