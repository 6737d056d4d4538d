"""Input as users send it: paragraphs and documents split into sentences and joined back in
their layout, streams that answer a bad request in its own response and go on, output bounded
by the input, text normalized the way training saw it."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest

from nmt.v1 import translator_pb2 as pb
from server.client import TranslatorClient
from tests.server.conftest import DEFAULT_MODELS, TEST_SENTENCES, greedy
from tests.server.running_server import RunningServer

ROOT = Path(__file__).resolve().parents[2]
# Sentences a segmenter can find: test2017 captions that end like sentences (a quarter do not).
TEST2017 = [line for line in (ROOT / "data" / "multi30k" / "test2017.en").read_text(encoding="utf-8").splitlines() if line.rstrip()[-1] in ".!?"]
# Whitespace between sentences as people type it: one space, two, a line break, a blank line.
SEPARATORS = [" ", "  ", "\n", "\n\n", " \t"]


def layout(sentences: list[str], separators: list[str], before: str = "", after: str = "") -> str:
    return before + "".join(s + gap for s, gap in zip(sentences[:-1], separators)) + sentences[-1] + after


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_a_paragraph_comes_back_as_its_sentences_translated_one_by_one_in_its_layout(server: RunningServer, direct: dict, model: str) -> None:
    paragraphs = [TEST2017[i : i + 5] for i in range(0, 25, 5)]
    texts = [layout(sentences, SEPARATORS[k:] + SEPARATORS[:k], before=" " * (k % 2), after="\n" * (k % 2)) for k, sentences in enumerate(paragraphs)]
    response = TranslatorClient(server.target).translate(texts, model=model)
    for k, (sentences, translation) in enumerate(zip(paragraphs, response.translations)):
        expected = layout(greedy(direct[model], sentences), SEPARATORS[k:] + SEPARATORS[:k], before=" " * (k % 2), after="\n" * (k % 2))
        assert translation.text == expected
        assert translation.sentences == 5
        assert translation.input_tokens == sum(len(ids) for ids in direct[model].encode(sentences))


def test_a_2000_token_document_in_one_text_is_translated_sentence_by_sentence(server: RunningServer, direct: dict) -> None:
    translator = direct["transformer-en-de"]
    sentences, tokens = [], 0
    for sentence in TEST2017[25:]:
        sentences.append(sentence)
        tokens += len(translator.encode([sentence])[0])
        if tokens >= 2000:
            break
    lines = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    response = TranslatorClient(server.target).translate(["\n".join(lines)])
    (translation,) = response.translations
    assert translation.sentences == len(sentences) and translation.input_tokens >= 2000
    expected = greedy(translator, sentences)
    assert translation.text == "\n".join(" ".join(expected[i : i + 4]) for i in range(0, len(expected), 4))


def test_a_sentence_over_the_input_limit_is_cut_at_clauses_and_refused_only_unsplit(server: RunningServer) -> None:
    clauses = [sentence.rstrip(".").lower() for sentence in TEST_SENTENCES[:30]]
    run_on = "While " + ", ".join(clauses) + "."  # one sentence of about 400 tokens
    client = TranslatorClient(server.target)
    (translation,) = client.translate([run_on]).translations
    assert translation.sentences >= 4 and translation.input_tokens > 128
    assert translation.text.count(", ") >= translation.sentences - 1, "pieces are joined with the spacing they were cut at"
    with pytest.raises(grpc.RpcError) as refused:
        client.stub.Translate(pb.TranslateRequest(texts=[run_on], split_sentences=False), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 128" in refused.value.details()


def test_split_sentences_false_translates_each_text_as_one_segment(server: RunningServer, direct: dict) -> None:
    text = "A dog runs. A cat sleeps."
    client = TranslatorClient(server.target)
    (whole,) = client.stub.Translate(pb.TranslateRequest(texts=[text], split_sentences=False), timeout=30).translations
    assert whole.sentences == 1 and whole.text == greedy(direct["transformer-en-de"], [text])[0]
    (split,) = client.translate([text]).translations
    assert split.sentences == 2 and split.text == " ".join(greedy(direct["transformer-en-de"], ["A dog runs.", "A cat sleeps."]))


BAD_IN_A_STREAM = [
    (pb.TranslateRequest(texts=[""]), grpc.StatusCode.INVALID_ARGUMENT, "texts[0] is empty"),
    (pb.TranslateRequest(texts=["A dog."], options=pb.DecodingOptions(beam_size=99)), grpc.StatusCode.INVALID_ARGUMENT, "beam_size"),
    (pb.TranslateRequest(model="klingon", texts=["A dog."]), grpc.StatusCode.NOT_FOUND, "'klingon' is not served"),
    (pb.TranslateRequest(texts=["A dog."], options=pb.DecodingOptions(repetition_penalty=-1)), grpc.StatusCode.INVALID_ARGUMENT, "repetition_penalty"),
    (pb.TranslateRequest(texts=[]), grpc.StatusCode.INVALID_ARGUMENT, "texts is empty"),
]


def test_a_stream_answers_bad_requests_with_their_error_and_goes_on_in_order(server: RunningServer, direct: dict) -> None:
    requests, expected = [], []
    for index in range(100):
        if index % 10 == 3:
            bad, code, message = BAD_IN_A_STREAM[(index // 10) % len(BAD_IN_A_STREAM)]
            requests.append(bad)
            expected.append((code, message))
        else:
            model = DEFAULT_MODELS[index % 2]
            requests.append(pb.TranslateRequest(model=model, texts=[TEST_SENTENCES[300 + index]]))
            expected.append((model, TEST_SENTENCES[300 + index]))
    errors_before = server.scrape()
    stream = TranslatorClient(server.target).stub.TranslateStream(iter(requests), timeout=120)
    responses = list(stream)
    assert stream.code() == grpc.StatusCode.OK
    assert len(responses) == 100
    for response, want in zip(responses, expected):
        if isinstance(want[0], grpc.StatusCode):
            code, message = want
            assert not response.translations and response.error.code == code.value[0] and message in response.error.message
        else:
            model, text = want
            assert not response.HasField("error") and response.model == model
            assert [t.text for t in response.translations] == greedy(direct[model], [text])
    errors = sum(v - errors_before.get(k, 0.0) for k, v in server.scrape().items() if k.startswith("nmt_stream_errors_total"))
    assert errors == 10


def bound(input_tokens: int) -> int:
    return math.floor(1.5 * input_tokens + 10)  # the shipped manifests' max_length_a and max_length_b


DEGENERATE = ["\U0001f41d" * 50, "a " * 60, "!!!!!!!!!!!!!!!!!!!!", "1234567890 " * 8, "xqzvkj", "A A A A A A A A A A A A A A A A A A A A A A.", "\u00e9\u0301\u0302" * 20]


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_no_output_is_longer_than_the_bound_of_its_source_and_degenerate_input_comes_back_short(server: RunningServer, model: str) -> None:
    client = TranslatorClient(server.target)
    models = {m.name: m for m in client.stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
    assert (models[model].max_length_a, models[model].max_length_b) == (1.5, 10)
    texts = DEGENERATE + TEST_SENTENCES[400:440]
    for options in (None, pb.DecodingOptions(beam_size=4, num_hypotheses=2)):
        for translation in client.translate(texts, model=model, options=options, split_sentences=False).translations:
            assert translation.output_tokens <= bound(translation.input_tokens), translation
            assert all(h.output_tokens <= bound(translation.input_tokens) for h in translation.hypotheses)
    (emoji,) = client.translate([DEGENERATE[0]], model=model).translations
    assert emoji.output_tokens <= 16


def test_decoding_options_shape_the_output(server: RunningServer) -> None:
    client = TranslatorClient(server.target)
    (short,) = client.translate(["A dog."]).translations
    (longer,) = client.translate(["A dog."], options=pb.DecodingOptions(min_decoding_length=short.output_tokens + 5)).translations
    assert longer.output_tokens >= short.output_tokens + 5
    repetitive = "A man and a man and a man and a man and a man and a man."
    greedy = {"beam_size": 1}  # the rules against the model's own choice, one token at a time
    (free,) = client.translate([repetitive], options=pb.DecodingOptions(**greedy)).translations
    (unique,) = client.translate([repetitive], options=pb.DecodingOptions(no_repeat_ngram_size=1, **greedy)).translations
    assert len(set(free.text.split())) < len(free.text.split()), "the model repeats words here; the option must stop that"
    assert unique.text != free.text
    (scored,) = client.translate([repetitive], options=pb.DecodingOptions(return_scores=True, **greedy)).translations
    (penalized,) = client.translate([repetitive], options=pb.DecodingOptions(repetition_penalty=3.0, return_scores=True, **greedy)).translations
    # a confident model may keep its words; the repeated ones still cost it more
    assert penalized.text != free.text or penalized.score < scored.score - 1e-3


@pytest.mark.parametrize(
    "noisy",
    ["A\u200b man is riding a\u00a0bike.", "A man  is riding\ta bike.", "\ufeffA man is riding a bike.\u200d", "A man is riding a bike\x07.", "\uff21 man is riding a bike."],
)
def test_text_is_normalized_as_training_saw_it_and_the_spacing_around_it_kept(server: RunningServer, noisy: str) -> None:
    client = TranslatorClient(server.target)
    (clean,) = client.translate(["A man is riding a bike."]).translations
    (translation,) = client.translate(["  " + noisy + "\n"]).translations
    assert translation.text == "  " + clean.text + "\n"
    assert translation.input_tokens == clean.input_tokens


def test_sentences_per_text_are_counted(server: RunningServer) -> None:
    before = server.scrape()
    TranslatorClient(server.target).translate(["One dog runs. Two dogs run. Three dogs run."])
    after = server.scrape()
    key = 'nmt_sentences_per_text_sum{model="transformer-en-de"}'
    assert after[key] - before.get(key, 0.0) == 3
