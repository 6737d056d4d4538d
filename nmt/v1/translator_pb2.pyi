from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranslateRequest(_message.Message):
    __slots__ = ("model", "texts", "options", "model_version", "split_sentences")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SENTENCES_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    options: DecodingOptions
    model_version: str
    split_sentences: bool
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[DecodingOptions, _Mapping]] = ..., model_version: _Optional[str] = ..., split_sentences: _Optional[bool] = ...) -> None: ...

class DecodingOptions(_message.Message):
    __slots__ = ("beam_size", "length_penalty", "max_decoding_length", "num_hypotheses", "return_scores", "min_decoding_length", "repetition_penalty", "no_repeat_ngram_size", "return_attention")
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_PENALTY_FIELD_NUMBER: _ClassVar[int]
    MAX_DECODING_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NUM_HYPOTHESES_FIELD_NUMBER: _ClassVar[int]
    RETURN_SCORES_FIELD_NUMBER: _ClassVar[int]
    MIN_DECODING_LENGTH_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    NO_REPEAT_NGRAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    RETURN_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    beam_size: int
    length_penalty: float
    max_decoding_length: int
    num_hypotheses: int
    return_scores: bool
    min_decoding_length: int
    repetition_penalty: float
    no_repeat_ngram_size: int
    return_attention: bool
    def __init__(self, beam_size: _Optional[int] = ..., length_penalty: _Optional[float] = ..., max_decoding_length: _Optional[int] = ..., num_hypotheses: _Optional[int] = ..., return_scores: _Optional[bool] = ..., min_decoding_length: _Optional[int] = ..., repetition_penalty: _Optional[float] = ..., no_repeat_ngram_size: _Optional[int] = ..., return_attention: _Optional[bool] = ...) -> None: ...

class SentenceAttention(_message.Message):
    __slots__ = ("source_tokens", "target_tokens", "weights", "alignment")
    SOURCE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TARGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    source_tokens: _containers.RepeatedScalarFieldContainer[str]
    target_tokens: _containers.RepeatedScalarFieldContainer[str]
    weights: _containers.RepeatedCompositeFieldContainer[AttentionRow]
    alignment: _containers.RepeatedCompositeFieldContainer[WordAlignment]
    def __init__(self, source_tokens: _Optional[_Iterable[str]] = ..., target_tokens: _Optional[_Iterable[str]] = ..., weights: _Optional[_Iterable[_Union[AttentionRow, _Mapping]]] = ..., alignment: _Optional[_Iterable[_Union[WordAlignment, _Mapping]]] = ...) -> None: ...

class AttentionRow(_message.Message):
    __slots__ = ("weights",)
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, weights: _Optional[_Iterable[float]] = ...) -> None: ...

class WordAlignment(_message.Message):
    __slots__ = ("target_word", "source_word")
    TARGET_WORD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_WORD_FIELD_NUMBER: _ClassVar[int]
    target_word: int
    source_word: int
    def __init__(self, target_word: _Optional[int] = ..., source_word: _Optional[int] = ...) -> None: ...

class Hypothesis(_message.Message):
    __slots__ = ("text", "score", "output_tokens", "attention")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    output_tokens: int
    attention: _containers.RepeatedCompositeFieldContainer[SentenceAttention]
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ..., output_tokens: _Optional[int] = ..., attention: _Optional[_Iterable[_Union[SentenceAttention, _Mapping]]] = ...) -> None: ...

class Translation(_message.Message):
    __slots__ = ("text", "score", "hypotheses", "input_tokens", "output_tokens", "sentences", "attention")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    hypotheses: _containers.RepeatedCompositeFieldContainer[Hypothesis]
    input_tokens: int
    output_tokens: int
    sentences: int
    attention: _containers.RepeatedCompositeFieldContainer[SentenceAttention]
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ..., hypotheses: _Optional[_Iterable[_Union[Hypothesis, _Mapping]]] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., sentences: _Optional[int] = ..., attention: _Optional[_Iterable[_Union[SentenceAttention, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("translations", "model", "model_version", "error")
    TRANSLATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    translations: _containers.RepeatedCompositeFieldContainer[Translation]
    model: str
    model_version: str
    error: Error
    def __init__(self, translations: _Optional[_Iterable[_Union[Translation, _Mapping]]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "versions", "source_language", "target_language", "architecture", "variant", "available_variants", "is_default", "max_input_tokens", "max_length_a", "max_length_b", "has_attention", "attention_layer", "default_beam_size", "default_length_penalty", "batch_invariant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_A_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_B_FIELD_NUMBER: _ClassVar[int]
    HAS_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_LAYER_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LENGTH_PENALTY_FIELD_NUMBER: _ClassVar[int]
    BATCH_INVARIANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    source_language: str
    target_language: str
    architecture: str
    variant: str
    available_variants: _containers.RepeatedScalarFieldContainer[str]
    is_default: bool
    max_input_tokens: int
    max_length_a: float
    max_length_b: int
    has_attention: bool
    attention_layer: int
    default_beam_size: int
    default_length_penalty: float
    batch_invariant: bool
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., source_language: _Optional[str] = ..., target_language: _Optional[str] = ..., architecture: _Optional[str] = ..., variant: _Optional[str] = ..., available_variants: _Optional[_Iterable[str]] = ..., is_default: _Optional[bool] = ..., max_input_tokens: _Optional[int] = ..., max_length_a: _Optional[float] = ..., max_length_b: _Optional[int] = ..., has_attention: _Optional[bool] = ..., attention_layer: _Optional[int] = ..., default_beam_size: _Optional[int] = ..., default_length_penalty: _Optional[float] = ..., batch_invariant: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
