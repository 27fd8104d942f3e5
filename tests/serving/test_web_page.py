"""The web page in real headless Chromium: record from the (fake) microphone, send, watch the reply stream
in with an emotion badge and a spoken reply; then a second turn from an uploaded file."""

from __future__ import annotations

from pathlib import Path

from webfix import artifacts_dir, run_page_conversation, streamed_prefixes

from blsp_emo.prompts import EMOTIONS


def test_record_send_stream_badge_and_spoken_reply(server, speech_files: list[Path]) -> None:
    shown = run_page_conversation(
        server.url, speech_files[0], speech_files[5], artifacts_dir() / "web_page_random_tiny.png"
    )
    assert not shown["errors"]
    assert len(shown["badges"]) == 2 and all(b in EMOTIONS for b in shown["badges"])
    assert len(shown["replies"]) == 2 and all(shown["replies"])
    # Each reply only ever grew towards its final text. (The random model's replies have no spaces, so the
    # streamer may hand each over in one piece: test_embedded_serving checks that a reply arrives in pieces.)
    assert len(shown["reply_texts"]) == 2
    for texts, final in zip(shown["reply_texts"], shown["replies"]):
        streamed_prefixes(texts, final)
    first, second = shown["requests"]
    assert first["stream"] and first["modalities"] == ["text", "audio"] and first["max_tokens"] == 24
    # The settings bar: the temperature (started from the URL's), "avoid repeats" on (the server's defaults),
    # then off for the second turn.
    assert (
        first["temperature"] == 0
        and "repetition_penalty" not in first
        and "no_repeat_ngram_size" not in first
    )
    assert (second["temperature"], second["repetition_penalty"], second["no_repeat_ngram_size"]) == (0, 1, 0)
    assert first["messages"][1]["content"][0]["input_audio"]["format"] == "webm"  # MediaRecorder output
    # The page holds the conversation: the second request resends the first turn and its answer.
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == shown["replies"][0]
    assert second["messages"][3]["content"][0] == {"type": "text", "text": "And how about this one?"}
    assert "And how about this one?" in shown["user_text"]
