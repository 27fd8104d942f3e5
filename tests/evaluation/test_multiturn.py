"""Task multiturn: the conversation builder, the consistency measure, how systems see the history, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.cli import main
from blsp_emo.errors import UserError
from blsp_emo.evaluation.dataset import Utterance, load_utterances
from blsp_emo.evaluation.systems import Query, load_system
from blsp_emo.evaluation.tasks.empathy import emotion_agreement
from blsp_emo.evaluation.tasks.multiturn import Conversation, build_conversations, consistency
from blsp_emo.prompts import EMOTIONS, SYSTEM_PROMPTS

FAST = ["--max-new-tokens", "8", "--teacher-max-new-tokens", "6", "--batch-size", "5"]
SENTENCES = (
    "I am graduating from school next week.",
    "They moved the meeting to tomorrow morning.",
    "My brother called me last night.",
    "The results came in this afternoon.",
    "We are going to the lake on Sunday.",
    "The neighbours painted their fence blue.",
    "Our train leaves at seven tonight.",
    "She finally answered my letter.",
    "The shop on the corner has closed.",
    "I found my old guitar in the attic.",
)


def _fake(n: int, speakers: int = 2) -> list[Utterance]:
    """``n`` hand-made utterances: emotions cycle through all five, every transcript differs."""
    return [
        Utterance(
            id=f"u{i:02d}",
            audio_path=Path(f"/nonexistent/u{i:02d}.wav"),
            text=f"sentence number {i}",
            emotion=EMOTIONS[i % len(EMOTIONS)],
            speaker=f"s{i % speakers}",
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def dialogue_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten synthetic clips, two per emotion, ten different sentences, two voices (test-split voices)."""
    from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav
    from blsp_emo.data.synth import list_voices, synthesize

    folder = tmp_path_factory.mktemp("dialogue")
    voices = list(list_voices("test"))[:2]
    rows = []
    for i, text in enumerate(SENTENCES):
        emotion = EMOTIONS[i % len(EMOTIONS)]
        samples, rate = synthesize(text, emotion=emotion, voice=voices[i % 2], seed=i)
        audio = load_audio(samples, sampling_rate=rate)
        save_wav(folder / f"d{i:02d}.wav", audio)
        rows.append(
            {
                "audio": f"d{i:02d}.wav",
                "text": text,
                "emotion": emotion,
                "speaker": voices[i % 2],
                "split": "test",
                "id": f"d{i:02d}",
                "duration": round(len(audio) / SAMPLE_RATE, 3),
            }
        )
    manifest = folder / "dialogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.mark.parametrize("turns", [2, 3, 4])
def test_conversations_are_seeded_and_end_in_each_utterance(turns: int) -> None:
    utterances = _fake(40)  # eight per emotion, four of each speaker
    conversations = build_conversations(utterances, turns, seed=3)
    assert build_conversations(utterances, turns, seed=3) == conversations
    assert build_conversations(utterances, turns, seed=4) != conversations
    # One conversation per utterance, in order, ending in it; arcs alternate steady / shift.
    assert [c.last for c in conversations] == utterances
    assert [c.arc for c in conversations] == ["steady", "shift"] * 20
    for c in conversations:
        assert len(c.turns) == turns
        assert len({u.id for u in c.turns}) == turns and len({u.text for u in c.turns}) == turns
        moods = {u.emotion for u in c.earlier}
        assert len(moods) == 1  # the earlier turns share one emotion
        assert (moods == {c.last.emotion}) == (c.arc == "steady")
        # The utterances of the last turn's speaker come first (here every emotion has enough of them).
        assert all(u.speaker == c.last.speaker for u in c.earlier)


def test_conversation_builder_refuses_what_it_cannot_build() -> None:
    with pytest.raises(UserError, match="--turns must be between 2 and 4, got 5"):
        build_conversations(_fake(20), 5)
    with pytest.raises(UserError, match="--turns must be between 2 and 4, got 1"):
        build_conversations(_fake(20), 1)
    # Five clips, one per emotion: a steady conversation has no other clip in its emotion.
    with pytest.raises(UserError, match="2-turn steady conversation ending in 'u00' needs 1 other"):
        build_conversations(_fake(5), 2)


def _conversation(arc: str, earlier: str, last: str) -> Conversation:
    turns = (
        Utterance("a", Path("a.wav"), "first", earlier),
        Utterance("b", Path("b.wav"), "second", earlier),
        Utterance("c", Path("c.wav"), "third", last),
    )
    return Conversation(f"conv-{arc}", turns, arc)


def test_consistency_differs_from_agreement_where_the_reply_keeps_the_earlier_mood() -> None:
    conversations = [
        _conversation("shift", "sad", "happy"),  # reply in the earlier mood: consistent, not in agreement
        _conversation("steady", "happy", "happy"),  # reply in the last turn's emotion: both
        _conversation("shift", "sad", "happy"),  # reply in an emotion never shown: neither
        _conversation("shift", "sad", "happy"),  # reply tied between happy and angry: half of each
    ]
    closest_to = [["sad"], ["happy"], ["angry"], ["happy", "angry"]]
    # Teacher embeddings: one basis vector per emotion; a reply is the mean of its closest emotions' vectors.
    teachers = np.tile(np.eye(len(EMOTIONS)), (len(conversations), 1, 1))
    replies = np.stack(
        [np.mean([np.eye(len(EMOTIONS))[EMOTIONS.index(e)] for e in c], 0) for c in closest_to]
    )
    summary, rows = emotion_agreement(replies, teachers, [c.last.emotion for c in conversations])
    assert [sorted(r["closest"]) for r in rows] == [sorted(c) for c in closest_to]
    assert [r["credit"] for r in rows] == [0.0, 1.0, 0.0, 0.5]
    result, credits = consistency([r["closest"] for r in rows], conversations)
    assert credits == [1.0, 1.0, 0.0, 0.5]
    assert result["consistency"] == pytest.approx(2.5 / 4)
    assert summary["emotion_agreement"] == pytest.approx(1.5 / 4)
    assert result["per_arc"] == {"steady": 1.0, "shift": pytest.approx(1.5 / 3)}
    assert result["carry_over"] == pytest.approx(1.0 / 3)  # only the first shift reply is in the earlier mood
    assert result["chance"] == pytest.approx((2 + 1 + 2 + 2) / 4 / 5)


def test_systems_see_earlier_turns_in_order(dialogue_manifest: Path) -> None:
    utterances = load_utterances(dialogue_manifest)
    first, second, last = utterances[0], utterances[5], utterances[3]
    query = Query(
        SYSTEM_PROMPTS["empathetic"], "", last, history=((first, "reply one"), (second, "reply two"))
    )
    speech = load_system("random-tiny")
    [messages], _ = speech.conversations([query])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [messages[2]["content"], messages[4]["content"]] == ["reply one", "reply two"]
    for message, utterance in zip([messages[1], messages[3], messages[5]], [first, second, last]):
        [part] = message["content"]  # every user turn is its speech, in the conversation's order
        assert part["type"] == "audio" and np.array_equal(part["audio"], utterance.load())
    cascade = load_system("cascade-text@random-tiny")
    [messages], [shown_last] = cascade.conversations([query])
    assert shown_last == last.text  # what the cascade heard in the scored turn
    assert [m["content"] for m in messages[1:]] == [
        first.text,
        "reply one",
        second.text,
        "reply two",
        last.text,
    ]
    # A batch mixing conversations of different lengths keeps each one's turns apart.
    batch, shown = cascade.conversations([Query(None, "", first), query, Query(None, "", second)])
    assert [len(m) for m in batch] == [1, 6, 1] and shown == [first.text, last.text, second.text]
    assert batch[2][0]["content"] == second.text


def test_multiturn_task_writes_conversations_and_recomputable_scores(
    dialogue_manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mt"
    argv = ["eval", "multiturn", "--model", "random-tiny", "--data", str(dialogue_manifest), "--turns", "2"]
    assert main([*argv, "-o", str(out), *FAST]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["turns"] == 2 and results["metrics"]["conversations"]["n"] == 10
    assert {"emotion_agreement", "consistency", "carry_over", "margin", "repeat4"} == set(results["headline"])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    teacher = {
        (r["user"].rsplit(": ", 1)[-1], r["user"].split("'")[1]): r["text"]
        for r in map(json.loads, (out / "cache" / "text-random-tiny.jsonl").read_text().splitlines())
    }
    credits = []
    for row in rows:
        *earlier, last = row["turns"]
        assert last["id"] == row["id"].split("-", 1)[1] and "assistant" not in last
        for turn in earlier:  # the earlier assistant turn is the teacher text for that turn's emotion
            assert turn["assistant"] == teacher[(turn["text"], turn["emotion"])]
        shown = {t["emotion"] for t in row["turns"]}
        credits.append(sum(e in shown for e in row["closest"]) / len(row["closest"]))
        assert row["consistency"] == pytest.approx(credits[-1])
    assert results["headline"]["consistency"] == pytest.approx(sum(credits) / len(credits), abs=1e-6)
    assert results["headline"]["emotion_agreement"] == pytest.approx(
        sum(r["credit"] for r in rows) / len(rows), abs=1e-6
    )
    # Too few utterances for the conversations is a one-line error before any model is loaded.
    assert main([*argv[:-1], "3", "-o", str(tmp_path / "bad"), *FAST]) == 2
    assert main([*argv[:-1], "5", "-o", str(tmp_path / "bad"), *FAST]) == 2


@pytest.mark.integration
def test_eval_all_runs_multiturn_beside_empathy_for_the_model_and_a_cascade(
    dialogue_manifest: Path, tmp_path: Path
) -> None:
    """The real embedded models (Whisper base, SmolLM2-135M-Instruct): ten 2-turn conversations."""
    out = tmp_path / "all"
    argv = ["eval", "all", "--model", "tiny", "cascade-asr", "--data", str(dialogue_manifest)]
    argv += ["--tasks", "empathy", "multiturn", "--turns", "2", "-o", str(out), *FAST]
    assert main(argv) == 0
    table = json.loads((out / "comparison.json").read_text())
    assert table["systems"] == ["tiny", "cascade-asr"]
    for system in table["systems"]:
        values = table["values"][system]
        assert 0.0 <= values["multiturn.emotion_agreement"] <= values["multiturn.consistency"] <= 1.0
        assert 0.0 <= values["empathy.emotion_agreement"] <= 1.0
        single = [
            json.loads(x) for x in (out / system / "empathy" / "predictions.jsonl").read_text().splitlines()
        ]
        multi = [
            json.loads(x) for x in (out / system / "multiturn" / "predictions.jsonl").read_text().splitlines()
        ]
        assert all(r["reply"] for r in multi)
        # The earlier turns reach the LLM: some last-turn replies differ from the single-turn reply to that clip.
        alone = {r["id"]: r["reply"] for r in single}
        assert any(r["reply"] != alone[r["turns"][-1]["id"]] for r in multi)
    # The cascade heard the last turn through Whisper, as in the single-turn task.
    heard = {r["id"]: r["user_text"] for r in single}
    assert all(r["user_text"] == heard[r["turns"][-1]["id"]] for r in multi)
    assert "multiturn.consistency" in (out / "comparison.md").read_text()
