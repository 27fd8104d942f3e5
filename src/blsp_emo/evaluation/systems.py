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
``blsp_emo.model.SpeechChat`` in every case, with the same :class:`~blsp_emo.model.types.DecodingOptions`,
so differences come from the input; answers are :class:`~blsp_emo.model.types.Reply` objects (a cascade's
``user_text`` holds what it showed the LLM in place of the speech).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from blsp_emo.errors import UserError
from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.model.types import Conversation, DecodingOptions, Reply
from blsp_emo.prompts import EMOTIONS

if TYPE_CHECKING:
    from blsp_emo.evaluation.ser_classifier import EmotionClassifier, ProsodyFeatures, WhisperFeatures
    from blsp_emo.model.inference import SpeechChat
    from blsp_emo.model.modeling import BlspEmoModel
    from blsp_emo.model.processor import BlspEmoProcessor

log = logging.getLogger(__name__)

CASCADES: tuple[str, ...] = ("cascade-text", "cascade-asr", "cascade-asr-ser", "cascade-asr-prosody")
# How the strong cascade tells the LLM the predicted emotion: a prefix of the user's words.
EMOTION_HINT = "[The speaker's emotion tone: {emotion}] "
EMOTION_BATCH = 8  # clips per emotion-head call


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


def emotion_from_prediction(prediction: str | dict[str, float] | None) -> str | None:
    """One emotion prediction as a label: a label (kept when it is one of ``EMOTIONS``), emotion-head
    scores (the best-scoring emotion), or None (no prediction)."""
    if prediction is None:
        return None
    if isinstance(prediction, str):
        return prediction if prediction in EMOTIONS else None
    return max(prediction, key=lambda label: prediction[label]) if prediction else None


@dataclass
class System:
    """Base class: a named system that answers queries with a SpeechChat over its LLM."""

    name: str
    chat: SpeechChat
    llm_name: str  # the model name whose LLM answers (teacher caches are keyed by it)
    info: dict[str, Any] = field(default_factory=dict)

    def answers(
        self, queries: list[Query], options: DecodingOptions, batch_size: int = 4, desc: str = ""
    ) -> list[Reply]:
        """Answer every query, ``batch_size`` conversations per generate call, with a progress bar."""
        out: list[Reply] = []
        bar = tqdm(total=len(queries), desc=desc or self.name, unit="utt")
        for start in range(0, len(queries), batch_size):
            batch = queries[start : start + batch_size]
            conversations, shown = self.conversations(batch)
            replies = self.chat.respond(conversations, options)
            out.extend(dataclasses.replace(r, user_text=s) for r, s in zip(replies, shown))
            bar.update(len(batch))
        bar.close()
        return out

    def text_answers(
        self,
        system_prompt: str | None,
        user_texts: list[str],
        options: DecodingOptions,
        batch_size: int = 4,
        desc: str = "",
    ) -> list[Reply]:
        """The system's LLM answering plain text user turns (the text reference / teacher)."""
        out: list[Reply] = []
        bar = tqdm(total=len(user_texts), desc=desc or f"{self.llm_name} (text)", unit="utt")
        for start in range(0, len(user_texts), batch_size):
            batch = user_texts[start : start + batch_size]
            out.extend(self.chat.respond([text_conversation(system_prompt, t) for t in batch], options))
            bar.update(len(batch))
        bar.close()
        return out

    def predict_emotions(self, utterances: list[Utterance]) -> list[str | None] | None:
        """Emotion predictions that do not go through text (emotion head or classifier); None if absent."""
        return None

    def describe(self) -> dict[str, Any]:
        """What this system is, for results.json."""
        return {"name": self.name, "llm": self.llm_name, **self.info}

    def conversations(self, batch: list[Query]) -> tuple[list[Conversation], list[str | None]]:
        """The conversations this system gives its LLM for ``batch``, and for each the text it showed in
        place of the speech (None when the speech itself goes in)."""
        raise NotImplementedError


def text_conversation(system_prompt: str | None, user_text: str) -> Conversation:
    """A system prompt (if any) and one text user turn."""
    return Conversation(system=system_prompt).user(user_text)


@dataclass
class BlspEmoSystem(System):
    """A BLSP-Emo model: speech embeddings in the user turn."""

    def conversations(self, batch: list[Query]) -> tuple[list[Conversation], list[str | None]]:
        """Each earlier user turn as speech followed by its assistant text, then the instruction and the
        speech of the last turn."""
        out = []
        for q in batch:
            conversation = Conversation(system=q.system_prompt)
            for utterance, reply in q.history:
                conversation.speech(utterance.load()).assistant(reply)
            out.append(conversation.speech(q.utterance.load(), q.instruction))
        return out, [None] * len(batch)

    def predict_emotions(self, utterances: list[Utterance]) -> list[str | None] | None:
        """The model's emotion head, when it has one (None otherwise)."""
        if self.chat.model.emotion_head is None:
            return None
        predictions: list[str | None] = []
        for start in range(0, len(utterances), EMOTION_BATCH):
            batch = utterances[start : start + EMOTION_BATCH]
            scores = self.chat.recognize_emotion([u.load() for u in batch])
            predictions.extend(emotion_from_prediction(p) for p in scores)
        return predictions


@dataclass
class CascadeSystem(System):
    """Transcript (ground truth or Whisper ASR) [+ predicted emotion] -> the chat LLM."""

    kind: str = "cascade-text"
    asr_name: str = "tiny"
    classifier: EmotionClassifier | None = None  # cascade-asr-ser and cascade-asr-prosody
    features: WhisperFeatures | ProsodyFeatures | None = None  # what the classifier reads
    whisper: tuple[Any, Any] | None = None  # (Whisper model, processor) shared by ASR and the features
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
        """The emotion classifier's predictions (cascade-asr-ser and cascade-asr-prosody only)."""
        if self.classifier is None or self.features is None:
            return None
        missing = [u for u in utterances if u.id not in self._emotions]
        if missing:
            # A bar of its own only for the whole set (inside an answer batch the outer bar suffices).
            predicted = self.classifier.predict(self.features(missing, progress=len(missing) > 8))
            self._emotions.update({u.id: e for u, e in zip(missing, predicted)})
        return [self._emotions[u.id] for u in utterances]

    def conversations(self, batch: list[Query]) -> tuple[list[Conversation], list[str | None]]:
        """Every user turn as the text this cascade hears (transcript [+ emotion hint]); the last one
        after the instruction."""
        utterances = [u for q in batch for u in (*(h[0] for h in q.history), q.utterance)]
        texts = self.transcripts(utterances)
        emotions = self.predict_emotions(utterances) or [None] * len(utterances)
        heard = [(EMOTION_HINT.format(emotion=e) if e else "") + t for t, e in zip(texts, emotions)]
        out: list[Conversation] = []
        shown: list[str | None] = []
        at = 0
        for q in batch:
            conversation = Conversation(system=q.system_prompt)
            for _, reply in q.history:
                conversation.user(heard[at]).assistant(reply)
                at += 1
            out.append(conversation.user(q.instruction + heard[at]))
            shown.append(heard[at])
            at += 1
        return out, shown


_MODEL_CACHE: dict[str, tuple[BlspEmoModel, BlspEmoProcessor]] = {}


def _load(name: str) -> tuple[BlspEmoModel, BlspEmoProcessor]:
    """Load a BLSP-Emo model once per process (``eval all`` shares it between systems)."""
    if name not in _MODEL_CACHE:
        from blsp_emo.model.loading import load_model

        _MODEL_CACHE[name] = load_model(name)
    return _MODEL_CACHE[name]


def _speech_chat(name: str) -> SpeechChat:
    from blsp_emo.model.inference import SpeechChat

    model, processor = _load(name)
    return SpeechChat(model, processor)


def _base_llm(chat: SpeechChat) -> str:
    """The name of the chat LLM under a speech model (its config's ``llm_name``)."""
    return str(chat.model.config.llm_name or "llm")


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
    classifier: EmotionClassifier | None = None
    features: WhisperFeatures | ProsodyFeatures | None = None
    whisper: tuple[Any, Any] | None = None
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
