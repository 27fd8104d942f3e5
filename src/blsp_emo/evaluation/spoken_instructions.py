"""Our SpeechAlpaca: spoken instructions in cheerful, sad, angry and neutral prosody.

The paper's SpeechAlpaca speaks Alpaca instructions in cheerful, sad and angry TTS voices; ours speaks
the 40 instructions below (everyday requests of the Alpaca kind, short enough to say in one breath, and
neutral in their words so that only the voice carries the emotion) with the project's synthesiser
(:func:`blsp_emo.data.synth.synthesize`) in four prosodies. The builder writes a manifest whose rows
carry the instruction as ``text``, the intended emotion as ``emotion`` (cheerful is ``happy``), the voice
as ``speaker`` and the prosody word as ``source_label``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from blsp_emo.errors import UserError

log = logging.getLogger(__name__)

SPOKEN_INSTRUCTIONS: tuple[str, ...] = (
    "Tell me what I should cook for dinner tonight.",
    "Give me three tips for sleeping better.",
    "What should I do this weekend?",
    "Explain how a rainbow forms.",
    "Write a short message to my best friend.",
    "Suggest a good book to read next.",
    "How can I get better at public speaking?",
    "My exam results came out today. What should I do now?",
    "Tell me a fun fact about the ocean.",
    "Help me plan a trip to the mountains.",
    "What is a good way to start running?",
    "Describe the perfect morning routine.",
    "I just moved to a new city. How do I meet people?",
    "Give me a name for my new puppy.",
    "Explain what a black hole is in simple words.",
    "Write two lines of a poem about the rain.",
    "How do I ask my boss for a day off?",
    "My phone screen cracked this morning. What are my options?",
    "What should I say at my sister's wedding?",
    "Recommend a movie for tonight.",
    "How do plants make their own food?",
    "Give me an idea for a birthday present for my dad.",
    "I have a job interview tomorrow. How should I prepare?",
    "Summarize why people enjoy gardening.",
    "How can I save more money each month?",
    "Tell me how to make a cup of tea.",
    "What is the best way to learn a new language?",
    "My team lost the final game today. What do you think?",
    "Describe a quiet beach at sunset.",
    "How should I reply to a message from an old friend?",
    "Give me a quick exercise I can do at my desk.",
    "Why is the sky blue?",
    "My flight was moved to tomorrow. What should I do tonight?",
    "Plan a simple picnic for four people.",
    "What are some ways to stay focused while studying?",
    "Tell me about the history of chocolate.",
    "My neighbor is painting his house bright orange. What do you think?",
    "Suggest a song to listen to right now.",
    "How do I fix a squeaky door?",
    "I got a letter from the bank today. How do I read my statement?",
)

# The prosodies spoken, and the label each one carries (the paper's "cheerful" voice is our "happy").
PROSODIES: dict[str, str] = {"cheerful": "happy", "sad": "sad", "angry": "angry", "neutral": "neutral"}

# How the teacher LLM is told the emotion when it writes the reference replies for agreement.
INSTRUCTION_TEACHER_PROMPT = (
    "The following request is spoken in a '{emotion}' emotion tone. Respond to it with empathy toward "
    "that tone: "
)


def build_spoken_instructions(
    out_dir: str | Path,
    prosodies: list[str] | None = None,
    voices: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> Path:
    """Synthesise every instruction in every prosody; write ``out_dir/manifest.jsonl`` and the wav files.

    Voices default to the synthesiser's voices reserved for ``split``; instruction ``i`` is spoken by
    voice ``i mod len(voices)`` in every prosody, so emotion is not confounded with the speaker. Files
    already written are kept (the builder resumes).
    """
    from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav
    from blsp_emo.data.manifest import ManifestRow, write_manifest
    from blsp_emo.data.synth import list_voices, synthesize

    out = Path(out_dir)
    prosodies = prosodies or list(PROSODIES)
    unknown = [p for p in prosodies if p not in PROSODIES]
    if unknown:
        raise UserError(f"unknown prosody {unknown[0]!r}; choose from {', '.join(PROSODIES)}")
    voices = voices or list(list_voices(split)) or list(list_voices(None))
    if not voices:
        raise UserError("the synthesiser offers no voices")
    instructions = list(SPOKEN_INSTRUCTIONS[:limit] if limit else SPOKEN_INSTRUCTIONS)
    rows: list[ManifestRow] = []
    jobs = [(i, text, p) for i, text in enumerate(instructions) for p in prosodies]
    for i, text, prosody in tqdm(jobs, desc="speaking instructions", unit="utt"):
        emotion, voice = PROSODIES[prosody], voices[i % len(voices)]
        utt_id = f"instr{i:03d}-{prosody}"
        path = out / "audio" / f"{utt_id}.wav"
        if path.is_file():
            audio = load_audio(path)
        else:
            samples, rate = synthesize(text, emotion=emotion, voice=voice, seed=seed + i)
            audio = load_audio(samples, sampling_rate=rate)
            save_wav(path, audio)
        rows.append(
            ManifestRow(
                audio=f"audio/{utt_id}.wav",
                text=text,
                emotion=emotion,
                language="en",
                speaker=voice,
                duration=round(len(audio) / SAMPLE_RATE, 3),
                split=split,
                source_label=prosody,
                corpus="spoken-instructions",
                id=utt_id,
            )
        )
    manifest = out / "manifest.jsonl"
    write_manifest(manifest, rows)
    log.info("wrote %d spoken instructions to %s", len(rows), manifest)
    return manifest
