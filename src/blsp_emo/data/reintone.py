"""Re-intoned real speech: clean human recordings rendered in each emotion's prosody, for evaluation only.

No labelled emotional speech ships in a package, and a model that has only heard synthetic voices must
still be tested on a human voice. ``data reintone`` takes real recordings (e.g. the LibriVox and AN4
clips of pocketsphinx-testdata, via ``data import sphinx``) and renders each one in every emotion by
moving its prosody in the directions the speech-science literature gives (``synth.EMOTION_PROSODY``):
F0 range (the voice's own contour widened or flattened), F0 level and tempo with pitch kept
(``synth_engines.move_with_sox``), the end contour (a final bend) and loudness.
The words, the voice and the recording stay those of the person. Rows are labelled by construction,
belong to split "test" and carry ``engine: "real-reintoned"``: they must never be trained on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav
from blsp_emo.data.manifest import read_manifest, write_manifest
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS

ENGINE = "real-reintoned"


def reintone(audio: np.ndarray, emotion: str, expressiveness: float = 2.0, seed: int = 0) -> np.ndarray:
    """``audio`` (16 kHz mono, a neutral human reading) rendered with ``emotion``'s class prosody."""
    from blsp_emo.data.synth import _end_bend, _level, class_prosody
    from blsp_emo.data.synth_engines import move_with_sox

    if emotion not in EMOTIONS:
        raise UserError(f"unknown emotion {emotion!r} (expected one of {', '.join(EMOTIONS)})")
    prosody = class_prosody(emotion, expressiveness)
    out = move_with_sox(audio.astype(np.float32), SAMPLE_RATE, prosody.pitch, prosody.range, prosody.rate)
    out = _end_bend(out, SAMPLE_RATE, prosody.end_cents)
    return _level(out, prosody.gain_db, np.random.default_rng(seed)).astype(np.float32)


def build_reintoned(
    manifest: str | Path,
    out: str | Path,
    emotions: tuple[str, ...] = EMOTIONS,
    expressiveness: float = 2.0,
) -> Path:
    """Render every row of ``manifest`` in every emotion into ``out``; returns the manifest path.

    Resumable: a clip whose file exists is not rendered again.
    """
    out = Path(out)
    rows = list(read_manifest(manifest))
    if not rows:
        raise UserError(f"{manifest}: no rows to re-intone")
    written: list[dict[str, Any]] = []
    for row in rows:
        audio = load_audio(row.audio_path)
        source = row.id or row.audio_path.stem
        for emotion in emotions:
            uid = f"{source}-{emotion}"
            relative = f"audio/{uid}.wav"
            path = out / relative
            seed = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "little")
            if not path.is_file():
                save_wav(path, reintone(audio, emotion, expressiveness, seed), SAMPLE_RATE)
            seconds = len(load_audio(path)) / SAMPLE_RATE
            written.append(
                {
                    "id": uid,
                    "audio": relative,
                    "text": row.text,
                    "emotion": emotion,
                    "language": row.language,
                    "speaker": row.speaker or source,
                    "duration": round(seconds, 3),
                    "split": "test",
                    "engine": ENGINE,
                    "source": str(row.audio_path),
                    "expressiveness": expressiveness,
                }
            )
    path = out / "reintoned.jsonl"
    write_manifest(path, written)
    return path
