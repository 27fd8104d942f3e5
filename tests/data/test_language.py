"""Languages through the data path: manifests, `data check`, importers, prompt sets, teacher targets,
the training prompts, Whisper's language token and Mandarin synthesis."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from datafix import write_wav

from blsp_emo.cli import main
from blsp_emo.data.manifest import (
    ManifestRow,
    check_manifest,
    read_manifest,
    write_manifest,
)
from blsp_emo.data.target_backends import teacher_reply
from blsp_emo.data.targets import TargetOptions, generate_targets
from blsp_emo.errors import UserError
from blsp_emo.io import read_jsonl_dicts
from blsp_emo.prompts import PROMPT_SETS, Stage, is_refusal, prompt_set


class _EchoTeacher:
    """Answers every conversation with its system prompt and user text, recording what it was asked."""

    name = "echo-teacher"

    def __init__(self) -> None:
        self.asked: list[list[dict]] = []

    def count_tokens(self, text: str) -> int | None:
        return None

    def generate(self, conversations, options):
        self.asked += conversations
        yield [teacher_reply(m[0]["content"] + "|" + m[-1]["content"], False, 3) for m in conversations]


def test_rows_without_language_load_as_english_and_check_names_unknown_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_wav(tmp_path / "a.wav")
    lines = [
        {"audio": "a.wav", "text": "old row"},  # written before the field existed
        {"audio": "a.wav", "text": "null", "language": None},
        {"audio": "a.wav", "text": "我下个星期就要毕业了。", "language": "zh"},
        {"audio": "a.wav", "text": "a name, not a code", "language": "english"},
        {"audio": "a.wav", "text": "upper case", "language": "EN"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    assert [r.language for r in read_manifest(path)] == ["en", "en", "zh", "english", "EN"]
    report = check_manifest(path)
    assert len(report.problems) == 2
    assert report.problems[0].startswith(f"{path}:4: unknown language code 'english'")
    assert report.problems[1].startswith(f"{path}:5: unknown language code 'EN'")
    assert main(["data", "check", str(path)]) == 1
    assert "ISO 639-1" in capsys.readouterr().out


def test_importers_validate_the_language(tmp_path: Path) -> None:
    from blsp_emo.data.importers import run_import

    write_wav(tmp_path / "a.wav", seconds=0.5)
    write_wav(tmp_path / "b.wav", seconds=0.5)
    table = tmp_path / "t.csv"
    table.write_text("audio,text,language\na.wav,hello,en\nb.wav,bonjour,French\n")
    report = run_import("generic", table, tmp_path / "out.jsonl")
    assert [r.language for r in report.rows] == ["en"]
    assert report.dropped["unknown language code 'French' (not ISO 639-1)"] == 1
    assert check_manifest(tmp_path / "out.jsonl").ok
    report = run_import("generic", table, tmp_path / "fr.jsonl", language="fr")
    assert {r.language for r in report.rows} == {"fr"}
    with pytest.raises(UserError, match="unknown language code 'french'"):
        run_import("generic", table, tmp_path / "x.jsonl", language="french")


def test_prompt_sets_english_is_the_spec_chinese_its_own_and_fallback_warns() -> None:
    en = Stage.EMOTION.teacher_conversation("I'm graduating soon.", "sad", language="en")
    assert en == Stage.EMOTION.teacher_conversation(
        "I'm graduating soon.", "sad"
    )  # the default stays English
    assert en[1]["content"].startswith("Continue the following sentence that reflects a 'sad' emotion")
    zh = Stage.EMOTION.teacher_conversation("我下个星期就要毕业了。", "sad", language="zh")
    assert zh[0]["content"] == PROMPT_SETS["zh"].system["empathetic"]
    assert zh[1]["content"] == "请以连贯的风格续写下面这个体现‘难过’情绪语气的句子：我下个星期就要毕业了。"
    semantic = Stage.SEMANTIC.teacher_conversation("今天下雨了。", language="zh")
    assert semantic == [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "请以连贯的风格续写下面的句子：今天下雨了。"},
    ]
    assert Stage.EMOTION.teacher_conversation("x", "happy", "reply", "zh")[1]["content"] == "我感到开心。x"
    # Every prompt set covers every emotion and every stage's prompt.
    for prompts in PROMPT_SETS.values():
        assert set(prompts.emotion_words) == {"neutral", "happy", "angry", "sad", "surprise"}
        assert set(prompts.instructions) == {"continue", "continue_emotion"}
        assert set(prompts.system) == {"default", "empathetic"} and set(prompts.emotion_targets) >= {
            "continue"
        }
    # A known language without its own set: the English prompts, with one warning; a bad code: an error.
    with pytest.warns(UserWarning, match="no prompt set for language 'ru'"):
        assert prompt_set("ru") is PROMPT_SETS["en"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prompt_set("ru")  # warned once per language
    with pytest.raises(UserError, match="unknown language code 'cn'"):
        Stage.SEMANTIC.teacher_conversation("x", language="cn")


def test_chinese_refusals_are_filtered() -> None:
    assert is_refusal("抱歉，我无法继续这个句子。")
    assert is_refusal("作为一个人工智能语言模型，我没有情绪。")
    assert not is_refusal("我真为你感到高兴！")


def _mixed_manifest(tmp_path: Path, extra: list[ManifestRow] = ()) -> Path:
    rows = [
        ManifestRow(audio="a.wav", text="I'm graduating soon.", emotion="happy", duration=2.0, id="en1"),
        ManifestRow(audio="b.wav", text="我下个星期就要毕业了。", emotion="happy", language="zh", duration=2.0, id="zh1"),
        ManifestRow(audio="c.wav", text="Θα αποφοιτήσω σύντομα.", emotion="sad", language="el", duration=2.0, id="el1"),
        *extra,
    ]  # fmt: skip
    path = tmp_path / "mixed.jsonl"
    write_manifest(path, rows)
    return path


def test_targets_ask_each_row_in_its_language_and_record_the_prompts(tmp_path: Path) -> None:
    manifest, out = _mixed_manifest(tmp_path), tmp_path / "t.jsonl"
    teacher = _EchoTeacher()
    with pytest.warns(UserWarning, match="'el'"):
        generate_targets(manifest, out, TargetOptions(stage="emotion", progress=False), backend=teacher)
    rows = {d["id"]: d for _, d in read_jsonl_dicts(out)}
    assert rows["zh1"]["language"] == "zh"
    assert rows["zh1"]["target"].startswith(PROMPT_SETS["zh"].system["empathetic"] + "|请以连贯的风格续写")
    assert rows["en1"]["target"].endswith("|Continue the following sentence that reflects a 'happy' emotion "
                                          "tone in a coherent style: I'm graduating soon.")  # fmt: skip
    assert "|Continue the following sentence that reflects a 'sad'" in rows["el1"]["target"]  # fallback
    provenance = json.loads((tmp_path / "t.jsonl.provenance.json").read_text())
    assert provenance["prompts"]["user"].startswith("Continue the following")  # English: as before
    assert set(provenance["language_prompts"]) == {"el", "zh"}
    assert provenance["language_prompts"]["zh"]["user"].startswith("请以连贯的风格续写")
    assert "sad=难过" in provenance["language_prompts"]["zh"]["emotion_words"]
    # A rerun resumes; a row with an unknown code fails before the teacher is asked, naming the row.
    again = _EchoTeacher()
    assert (
        generate_targets(manifest, out, TargetOptions(stage="emotion", progress=False), again).already_done
        == 3
    )
    bad = _mixed_manifest(
        tmp_path, [ManifestRow(audio="d.wav", text="x", emotion="sad", language="zz", id="bad")]
    )
    with pytest.raises(UserError, match=r"row 4 \(bad\): unknown language code 'zz'"):
        generate_targets(bad, tmp_path / "bad.jsonl", TargetOptions(stage="emotion"), backend=again)
    assert again.asked == []


def test_training_prompts_follow_the_row_language_unless_the_config_names_a_text() -> None:
    from blsp_emo.training.data import TrainingCollator

    audio = np.zeros(1600, np.float32)
    stage2 = TrainingCollator(None, "emotion")
    zh = stage2.student_messages(audio, "", "zh")
    assert zh[0]["content"] == PROMPT_SETS["zh"].system["empathetic"]
    assert zh[1]["content"][0]["text"] == "请根据所传达的情绪语气，以连贯的风格续写下面的句子："
    en = stage2.student_messages(audio, "", "en")
    assert en[1]["content"][0]["text"].startswith("Continue the following sentence based on the conveyed")
    # The recognition question stays the English prompt of docs/method.md §5 (its answer is an English label word).
    assert stage2.student_messages(audio, "recognition", "zh")[1]["content"][0]["text"].startswith(
        "Please identify the emotion tone"
    )
    stage1 = TrainingCollator(None, "semantic")
    assert (
        stage1.teacher_messages("今天下雨了。", "zh")[-1]["content"]
        == "请以连贯的风格续写下面的句子：今天下雨了。"
    )
    custom = TrainingCollator(None, "semantic", system="default", instruction_text="Repeat: ")
    messages = custom.teacher_messages("今天下雨了。", "zh")
    assert messages == [
        {"role": "system", "content": "你是一个乐于助人的助手。"},  # a preset name: the row's language
        {"role": "user", "content": "Repeat: 今天下雨了。"},  # a configured text: as written
    ]


def test_whisper_prompt_carries_the_row_language() -> None:
    from blsp_emo.assets.loading import load_whisper
    from blsp_emo.assets.transcribe import _prompt_ids

    _, processor = load_whisper("tiny")
    tokenizer = processor.tokenizer
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("<|zh|>", "<|en|>", "<|el|>", "<|jw|>")}
    assert _prompt_ids(tokenizer, "zh")[1] == ids["<|zh|>"]
    assert _prompt_ids(tokenizer, "el")[1] == ids["<|el|>"]
    assert _prompt_ids(tokenizer, "jv")[1] == ids["<|jw|>"]  # ISO 639-1 jv, Whisper's jw
    assert len(_prompt_ids(tokenizer, None)) == 2  # no language: Whisper detects it
    with pytest.raises(UserError, match="unknown language code 'chinese'"):
        _prompt_ids(tokenizer, "chinese")


def test_mandarin_plan_voices_and_rows(tmp_path: Path) -> None:
    from blsp_emo.data.synth import voice_split
    from blsp_emo.data.synth_corpus import SynthOptions, build_corpus, plan_jobs
    from blsp_emo.data.synth_language import count_words, error_units

    options = SynthOptions(utterances=40, general=20, engines=("espeak",), language="zh", plot=False)
    jobs = plan_jobs(options)
    assert len(jobs) == 60 and {j.language for j in jobs} == {"zh"}
    assert all(j.voice.startswith("espeak:cmn-latn-pinyin+") for j in jobs)
    assert all(count_words(j.text, "zh") >= 4 for j in jobs)  # Chinese text: Han characters throughout
    by_split = {s: {j.text for j in jobs if j.split == s} for s in ("train", "dev", "test")}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["dev"])
    voices = {s: {j.voice for j in jobs if j.split == s} for s in ("train", "dev", "test")}
    assert not (voices["train"] & voices["test"]) and not (voices["train"] & voices["dev"])
    assert (
        voice_split("espeak:cmn-latn-pinyin+m3") == "test"
        and voice_split("espeak:cmn-latn-pinyin+m6") == "dev"
    )
    with pytest.raises(UserError, match="only espeak-ng speaks Mandarin"):
        plan_jobs(SynthOptions(utterances=5, engines=("espeak", "flite"), language="zh"))
    assert count_words("我下个星期就要毕业了。", "zh") == 10 and count_words("I'm off.", "en") == 2
    assert error_units("我下个 星期。", "zh") == list("我下个星期")
    # Two utterances rendered for real: Mandarin audio, rows in language zh, a valid manifest.
    out = tmp_path / "zh"
    small = SynthOptions(utterances=2, general=0, workers=1, engines=("espeak",), language="zh", plot=False,
                         progress=False)  # fmt: skip
    assert not build_corpus(out, small)["failures"]
    rows = list(read_manifest(out / "emotion.jsonl"))
    assert [r.language for r in rows] == ["zh", "zh"] and check_manifest(out / "emotion.jsonl").ok
    assert all(1.0 < r.duration < 8.0 for r in rows)
    assert json.loads((out / "plan.json").read_text())["language"] == "zh"
    with pytest.raises(UserError, match="language"):  # the same folder refuses English
        build_corpus(out, SynthOptions(**{**vars(small), "language": "en"}))


def test_mandarin_voice_speaks_syllables_not_spelled_pinyin() -> None:
    # espeak-ng's plain "cmn" voice reads the dictionary's tone-numbered pinyin as English ("ni three hao
    # three"); the Mandarin voice we use must produce two tonal syllables for 你好.
    import subprocess

    from blsp_emo.data.synth_language import ESPEAK_MANDARIN

    phonemes = subprocess.run(
        ["espeak-ng", "-v", ESPEAK_MANDARIN, "-x", "-q", "--stdin"],
        input="你好",
        capture_output=True,
        text=True,
    ).stdout
    assert "(en)" not in phonemes and phonemes.count("_|") == 2, phonemes


def test_target_diversity_counts_chinese_characters() -> None:
    from blsp_emo.data.target_scoring import diversity_report, is_echo, words

    transcript = "我妈妈把我的房间改成了书房。"
    assert words("我妈妈 said 好") == ["我", "妈", "妈", "said", "好"]
    assert is_echo(transcript + "这是一个体现惊讶情绪的句子。", transcript)
    assert not is_echo("真没想到！你一定很意外吧。", transcript)
    rows = [{"text": transcript, "target": transcript + "然后", "target_emotion": "happy"},
            {"text": "今天下雨了。", "target": "记得带伞，别着凉。", "target_emotion": "sad"}]  # fmt: skip
    report = diversity_report(rows)
    assert report["all"]["echo_rate"] == 0.5 and report["all"]["distinct_2"] > 0
