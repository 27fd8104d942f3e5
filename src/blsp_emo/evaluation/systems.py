"""The systems under evaluation behind one small interface, so every task is written once.

A *system* answers :class:`Query` objects (a system prompt, a text instruction and an utterance):

- ``BlspEmoSystem``: the speech-language model; the utterance's audio goes into the user turn right
  after the instruction, as speech embeddings.
- ``CascadeSystem``: a text pipeline over the SAME chat LLM. ``cascade-text`` puts the ground-truth
  transcript where the speech would be; ``cascade-asr`` puts a Whisper transcript; ``cascade-asr-ser``
  puts the Whisper transcript prefixed by the emotion that a classifier on Whisper-encoder features
  predicts (see :data:`EMOTION_HINT`), i.e. the LLM is told the emotion; ``cascade-asr-prosody`` does the
  same with a classifier on measured prosody alone (mean F0, F0 range and end rise, rate, loudness,
  voicing): the baseline that shows what plain prosody gets on a split.

Every system also answers plain text (:meth:`System.text_answers`) with its own LLM: that is the
reference for the semantic task and the teacher for the empathy task. Generation goes through
``blsp_emo.model.SpeechChat`` in every case, with the same decoding, so differences come from the input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from blsp_emo.errors import UserError
from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.model.types import DecodingOptions
from blsp_emo.prompts import EMOTIONS

log = logging.getLogger(__name__)

CASCADES: tuple[str, ...] = ("cascade-text", "cascade-asr", "cascade-asr-ser", "cascade-asr-prosody")
# How the strong cascade tells the LLM the predicted emotion: a prefix of the user's words.
EMOTION_HINT = "[The speaker's emotion tone: {emotion}] "


@dataclass(frozen=True)
class Query:
    """One request: system prompt (None = no system turn), text before the utterance, the utterance.

    ``history`` holds earlier turns of a multi-turn conversation, oldest first: (the user's utterance,
    the assistant's text reply). Each system renders an earlier user turn as it renders the last one
    (speech for BLSP-Emo, the text it hears for a cascade).
    """

    system_prompt: str | None
    instruction: str
    utterance: Utterance
    history: tuple[tuple[Utterance, str], ...] = ()


@dataclass
class Answer:
    """A generated answer with its token counts."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    user_text: str | None = None  # what a cascade showed the LLM in place of the speech


@dataclass
class GenerationSettings:
    """Decoding settings shared by every system in a run (greedy by default, as in the paper)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 4


def _messages(
    system_prompt: str | None, user_content: Any, earlier: list[tuple[Any, str]] | None = None
) -> list[dict]:
    messages: list[dict] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for content, reply in earlier or []:
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": reply}]
    messages.append({"role": "user", "content": user_content})
    return messages


def _reply_to_answer(reply: Any, user_text: str | None = None) -> Answer:
    return Answer(
        text=str(getattr(reply, "text", reply)).strip(),
        finish_reason=str(getattr(reply, "finish_reason", "stop")),
        prompt_tokens=int(getattr(reply, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(reply, "completion_tokens", 0) or 0),
        user_text=user_text,
    )


def emotion_from_prediction(prediction: Any) -> str | None:
    """Normalise one emotion-head prediction (a label, an id, a dict of scores or an object) to a label."""
    if prediction is None:
        return None
    if isinstance(prediction, str):
        return prediction if prediction in EMOTIONS else None
    if isinstance(prediction, (int, np.integer)):
        return EMOTIONS[int(prediction)]
    if isinstance(prediction, dict):
        if "emotion" in prediction:
            return emotion_from_prediction(prediction["emotion"])
        return max(prediction, key=prediction.get) if prediction else None
    for attr in ("emotion", "label"):
        if hasattr(prediction, attr):
            return emotion_from_prediction(getattr(prediction, attr))
    if isinstance(prediction, (tuple, list)) and prediction:
        return emotion_from_prediction(prediction[0])
    return None


@dataclass
class System:
    """Base class: a named system that answers queries with a SpeechChat over its LLM."""

    name: str
    chat: Any  # blsp_emo.model.SpeechChat
    llm_name: str  # the model name whose LLM answers (teacher caches are keyed by it)
    info: dict = field(default_factory=dict)

    def answers(self, queries: list[Query], settings: GenerationSettings, desc: str = "") -> list[Answer]:
        """Answer every query, in batches, with a progress bar."""
        out: list[Answer] = []
        bar = tqdm(total=len(queries), desc=desc or self.name, unit="utt")
        for start in range(0, len(queries), settings.batch_size):
            batch = queries[start : start + settings.batch_size]
            conversations, shown = self._conversations(batch)
            replies = self._respond(conversations, settings)
            out.extend(_reply_to_answer(r, s) for r, s in zip(replies, shown))
            bar.update(len(batch))
        bar.close()
        return out

    def text_answers(
        self, system_prompt: str | None, user_texts: list[str], settings: GenerationSettings, desc: str = ""
    ) -> list[Answer]:
        """The system's LLM answering plain text user turns (the text reference / teacher)."""
        out: list[Answer] = []
        bar = tqdm(total=len(user_texts), desc=desc or f"{self.llm_name} (text)", unit="utt")
        for start in range(0, len(user_texts), settings.batch_size):
            batch = user_texts[start : start + settings.batch_size]
            replies = self._respond([_messages(system_prompt, t) for t in batch], settings)
            out.extend(_reply_to_answer(r) for r in replies)
            bar.update(len(batch))
        bar.close()
        return out

    def predict_emotions(self, utterances: list[Utterance]) -> list[str | None] | None:
        """Emotion predictions that do not go through text (emotion head or classifier); None if absent."""
        return None

    def describe(self) -> dict:
        """What this system is, for results.json."""
        return {"name": self.name, "llm": self.llm_name, **self.info}

    def _respond(self, conversations: list[list[dict]], settings: GenerationSettings) -> list[Any]:
        options = DecodingOptions(
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
        )
        return self.chat.respond(conversations, options)

    def _conversations(self, batch: list[Query]) -> tuple[list[list[dict]], list[str | None]]:
        raise NotImplementedError


@dataclass
class BlspEmoSystem(System):
    """A BLSP-Emo model: speech embeddings in the user turn."""

    def _conversations(self, batch: list[Query]) -> tuple[list[list[dict]], list[str | None]]:
        conversations = []
        for q in batch:
            content: list[dict] = []
            if q.instruction:
                content.append({"type": "text", "text": q.instruction})
            content.append({"type": "audio", "audio": q.utterance.load()})
            earlier = [([{"type": "audio", "audio": u.load()}], reply) for u, reply in q.history]
            conversations.append(_messages(q.system_prompt, content, earlier))
        return conversations, [None] * len(batch)

    def predict_emotions(self, utterances: list[Utterance]) -> list[str | None] | None:
        """The model's emotion head, when it has one (None otherwise)."""
        if getattr(self.chat.model, "emotion_head", None) is None:
            return None
        predictions: list[str | None] = []
        for start in range(0, len(utterances), 8):
            batch = utterances[start : start + 8]
            predictions.extend(
                emotion_from_prediction(p) for p in self.chat.recognize_emotion([u.load() for u in batch])
            )
        return predictions


@dataclass
class CascadeSystem(System):
    """Transcript (ground truth or Whisper ASR) [+ predicted emotion] -> the chat LLM."""

    kind: str = "cascade-text"
    asr_name: str = "tiny"
    classifier: Any = None  # ser_classifier.EmotionClassifier for cascade-asr-ser
    features: Any = None  # ser_classifier.WhisperFeatures for cascade-asr-ser
    whisper: tuple[Any, Any] | None = None  # (model, processor) shared by ASR and the features
    _transcripts: dict[str, str] = field(default_factory=dict)
    _emotions: dict[str, str] = field(default_factory=dict)

    def transcripts(self, utterances: list[Utterance]) -> list[str]:
        """The text this cascade hears: the ground truth, or Whisper's transcript (cached per utterance)."""
        if self.kind == "cascade-text":
            return [u.text for u in utterances]
        missing = [u for u in utterances if u.id not in self._transcripts]
        if missing:
            from blsp_emo.assets.loading import load_whisper
            from blsp_emo.assets.transcribe import transcribe

            if self.whisper is None:
                self.whisper = load_whisper(self.asr_name)
            model, processor = self.whisper
            bar = tqdm(total=len(missing), desc=f"{self.name} ASR", unit="utt")
            for start in range(0, len(missing), 8):
                batch = missing[start : start + 8]
                # Whisper's language token from each row's language (transcribe batches per language).
                languages = [u.language or None for u in batch]
                texts = transcribe(
                    [u.load() for u in batch], language=languages, model=model, processor=processor
                )
                self._transcripts.update({u.id: t for u, t in zip(batch, texts)})
                bar.update(len(batch))
            bar.close()
        return [self._transcripts[u.id] for u in utterances]

    def predict_emotions(self, utterances: list[Utterance]) -> list[str | None] | None:
        """The emotion classifier on Whisper-encoder features (cascade-asr-ser only)."""
        if self.classifier is None:
            return None
        missing = [u for u in utterances if u.id not in self._emotions]
        if missing:
            # A bar of its own only for the whole set (inside an answer batch the outer bar suffices).
            predicted = self.classifier.predict(self.features(missing, progress=len(missing) > 8))
            self._emotions.update({u.id: e for u, e in zip(missing, predicted)})
        return [self._emotions[u.id] for u in utterances]

    def _conversations(self, batch: list[Query]) -> tuple[list[list[dict]], list[str | None]]:
        # Earlier user turns of a conversation are heard like the last one (transcript [+ emotion]).
        utterances = [u for q in batch for u in (*(h[0] for h in q.history), q.utterance)]
        texts = self.transcripts(utterances)
        emotions = self.predict_emotions(utterances) or [None] * len(utterances)
        heard = [(EMOTION_HINT.format(emotion=e) if e else "") + t for t, e in zip(texts, emotions)]
        conversations, shown, at = [], [], 0
        for q in batch:
            earlier = [(h, reply) for h, (_, reply) in zip(heard[at:], q.history)]
            at += len(q.history)
            conversations.append(_messages(q.system_prompt, q.instruction + heard[at], earlier))
            shown.append(heard[at])
            at += 1
        return conversations, shown


_MODEL_CACHE: dict[str, tuple[Any, Any]] = {}


def _load(name: str) -> tuple[Any, Any]:
    """Load a BLSP-Emo model once per process (``eval all`` shares it between systems)."""
    if name not in _MODEL_CACHE:
        from blsp_emo.model import load_model

        _MODEL_CACHE[name] = load_model(name)
    return _MODEL_CACHE[name]


def _speech_chat(name: str):
    from blsp_emo.model import SpeechChat

    model, processor = _load(name)
    return SpeechChat(model, processor)


def _base_llm(chat: Any) -> str:
    """The name of the chat LLM under a speech model (its config's ``llm_name``)."""
    return str(getattr(chat.model.config, "llm_name", None) or "llm")


def split_system_name(spec: str, default_llm: str) -> tuple[str, str | None]:
    """``cascade-asr@random-tiny`` -> ("cascade-asr", "random-tiny"); a model name -> (name, None)."""
    base, _, llm = spec.partition("@")
    if base in CASCADES:
        return base, llm or default_llm
    if llm:
        raise UserError(f"{spec!r}: only the cascades ({', '.join(CASCADES)}) take an @LLM suffix")
    return spec, None


def load_system(
    spec: str,
    llm: str = "tiny",
    asr: str = "tiny",
    ser_train: str | Path | None = None,
    ser_cache: Path | None = None,
    seed: int = 0,
) -> System:
    """Build a system from its command-line name.

    ``spec`` is a BLSP-Emo model (a preset such as "tiny" or "random-tiny", or a checkpoint folder) or
    a cascade name, optionally with ``@LLM`` naming the model whose LLM the cascade uses (default ``llm``).
    ``asr`` names the Whisper for cascade transcription and the classifier's features; ``ser_train`` is
    the manifest the cascade-asr-ser emotion classifier is trained on.
    """
    kind, cascade_llm = split_system_name(spec, llm)
    if cascade_llm is None:
        chat = _speech_chat(spec)
        # Text-only turns never touch the speech parts (partial LoRA acts at speech positions only), so
        # the text answers are the base LLM's: keyed by its name, they are shared with the cascades.
        return BlspEmoSystem(name=spec, chat=chat, llm_name=_base_llm(chat), info={"kind": "blsp-emo"})
    info: dict[str, Any] = {"kind": kind}
    classifier = features = whisper = None
    if kind != "cascade-text":
        info["asr"] = asr
    if kind in ("cascade-asr-ser", "cascade-asr-prosody"):
        if ser_train is None:
            raise UserError(f"{kind} needs --ser-train MANIFEST (emotion-labelled training speech)")
        from blsp_emo.assets import load_whisper
        from blsp_emo.evaluation.ser_classifier import ProsodyFeatures, WhisperFeatures, train_or_load

        whisper = load_whisper(asr)
        features = WhisperFeatures(asr, *whisper) if kind == "cascade-asr-ser" else ProsodyFeatures()
        classifier = train_or_load(ser_train, features, cache=ser_cache, seed=seed)
        info["emotion_classifier"] = {k: v for k, v in classifier.info.items() if k != "train_audio"}
    chat = _speech_chat(cascade_llm)
    return CascadeSystem(
        name=spec,
        chat=chat,
        llm_name=_base_llm(chat),
        info=info,
        kind=kind,
        asr_name=asr,
        classifier=classifier,
        features=features,
        whisper=whisper,
    )
