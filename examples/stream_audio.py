"""Stream a spoken reply from `blsp-emo serve` with the official openai client, then continue by audio id.

blsp-emo serve --port 8765 &
python examples/stream_audio.py [AUDIO.wav] [--base-url http://localhost:8765/v1]
"""

import argparse
import base64
import time
import wave

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "audio",
    nargs="?",
    default="/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
)
parser.add_argument("--base-url", default="http://localhost:8765/v1")
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key="unused")
with open(args.audio, "rb") as f:
    question = {
        "role": "user",
        "content": [
            {
                "type": "input_audio",
                "input_audio": {"data": base64.b64encode(f.read()).decode(), "format": "wav"},
            },
        ],
    }

start, pcm, audio_id, seen = time.monotonic(), bytearray(), None, {}
stream = client.chat.completions.create(
    model="blsp-emo",
    messages=[question],
    max_tokens=64,
    temperature=0,
    stream=True,
    modalities=["text", "audio"],
    audio={"voice": "joe", "format": "pcm16"},
)
for chunk in stream:
    audio = chunk.choices[0].delta.audio if chunk.choices else None
    if audio is None:
        continue
    audio_id = audio.id or audio_id
    if audio.transcript:
        print(audio.transcript, end="", flush=True)
        seen.setdefault("first words", time.monotonic() - start)
        seen["last words"] = time.monotonic() - start
    if audio.data:
        pcm += base64.b64decode(audio.data)  # 16-bit mono at 24 kHz
        seen.setdefault("first speech", time.monotonic() - start)
print("\n" + ", ".join(f"{name} after {t:.1f} s" for name, t in seen.items()))
print(
    f"{len(pcm) / 48000:.1f} s of speech in {chunk.model_extra['speech_style']!r} style, "
    f"done after {time.monotonic() - start:.1f} s"
)

with wave.open("reply.wav", "wb") as out:
    out.setnchannels(1), out.setsampwidth(2), out.setframerate(24000), out.writeframes(pcm)

# The next turn names the spoken reply by its id, as OpenAI clients do (the server keeps it for an hour).
follow = client.chat.completions.create(
    model="blsp-emo",
    max_tokens=40,
    temperature=0,
    messages=[
        question,
        {"role": "assistant", "audio": {"id": audio_id}},
        {"role": "user", "content": "Why do you think so?"},
    ],
)
print(follow.choices[0].message.content)
