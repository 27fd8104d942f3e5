"""Benchmark: reply latency of BLSP-Emo vs the ASR cascade, and requests/s of the server under load.

1. Time to first token and total latency for one 4 s spoken utterance, on the same embedded models:
   BLSP-Emo (speech -> Whisper encoder -> adapter -> LLM, streamed) vs the cascade (Whisper base transcribes,
   then the same SmolLM2 answers the transcript, streamed). Both greedy, same system prompt and token cap,
   one warm-up run each, then one measured run; the ratio is cascade / BLSP-Emo.
2. Requests per second through the real HTTP server (uvicorn on localhost, the batching engine) at 1, 4 and
   16 concurrent clients, each sending different real speech.

The machines are shared and noisy: the ratio and the trend matter, not the absolute numbers.
Usage: python bench/serving_latency.py [--model tiny] [--max-new-tokens 48] [--clients 1,4,16]
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from blsp_emo.audio import SAMPLE_RATE, load_audio, wav_bytes
from blsp_emo.prompts import SYSTEM_PROMPTS

SPEECH = Path("/usr/share/pocketsphinx/test/data")
UTTERANCE = SPEECH / "librivox/sense_and_sensibility_01_austen_64kb-0930.wav"  # 3.3 s of read speech


def four_second_utterance() -> np.ndarray:
    """'He might even have been made amiable himself' (LibriVox), padded with silence to exactly 4.0 s."""
    audio = load_audio(UTTERANCE)[: 4 * SAMPLE_RATE]
    return np.pad(audio, (0, 4 * SAMPLE_RATE - audio.size))


def time_stream(pieces, started: float) -> tuple[float, float, str]:
    """Consume a stream of text pieces; returns (time to first piece, total time, text)."""
    first = None
    text = ""
    for piece in pieces:
        if piece and first is None:
            first = time.perf_counter() - started
        text += piece
    total = time.perf_counter() - started
    return (first if first is not None else total), total, text


def blsp_emo_run(chat, audio: np.ndarray, max_new_tokens: int) -> tuple[float, float, str, int]:
    """One streamed BLSP-Emo reply to the utterance."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPTS["empathetic"]},
        {"role": "user", "content": [{"type": "audio", "audio": audio}]},
    ]
    started = time.perf_counter()
    stream = chat.stream(messages, max_new_tokens=max_new_tokens)
    first, total, text = time_stream(stream, started)
    return first, total, text, stream.reply.completion_tokens if stream.reply else 0


def cascade_run(
    whisper, llm, tokenizer, audio: np.ndarray, max_new_tokens: int
) -> tuple[float, float, str, int]:
    """One streamed cascade reply: Whisper transcript, then the LLM answers it."""
    import torch
    from transformers import TextIteratorStreamer

    from blsp_emo.assets import transcribe

    started = time.perf_counter()
    transcript = transcribe([audio], model=whisper[0], processor=whisper[1])[0]
    asr_seconds = time.perf_counter() - started
    messages = [
        {"role": "system", "content": SYSTEM_PROMPTS["empathetic"]},
        {"role": "user", "content": transcript},
    ]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    out: dict = {}

    def generate() -> None:
        with torch.no_grad():
            out["ids"] = llm.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )  # fmt: skip

    worker = threading.Thread(target=generate)
    worker.start()
    first, total, text = time_stream(streamer, started)
    worker.join()
    total = time.perf_counter() - started
    reply = f"[ASR {asr_seconds:.2f} s: {transcript}] -> {text}"
    return first, total, reply, int(out["ids"].shape[1] - ids["input_ids"].shape[1])


def latency(args: argparse.Namespace, chat) -> dict:
    """Part 1: BLSP-Emo vs the cascade on the 4 s utterance."""
    from blsp_emo.assets import load_llm, load_whisper

    audio = four_second_utterance()
    whisper = load_whisper(args.model)
    llm, tokenizer = load_llm(args.model)
    blsp_emo_run(chat, audio, args.max_new_tokens)  # warm-up
    cascade_run(whisper, llm, tokenizer, audio, args.max_new_tokens)
    results = {
        "blsp_emo": blsp_emo_run(chat, audio, args.max_new_tokens),
        "cascade": cascade_run(whisper, llm, tokenizer, audio, args.max_new_tokens),
    }
    print(
        f"\n== latency: one 4.0 s utterance, {args.model} models, greedy, <= {args.max_new_tokens} new tokens =="
    )
    print(f"{'system':<10} {'first token':>12} {'total':>9} {'tokens':>7}  reply")
    for name, (first, total, text, tokens) in results.items():
        print(f"{name:<10} {first:>10.2f} s {total:>7.2f} s {tokens:>7}  {text[:110]!r}")
    b_first, b_total = results["blsp_emo"][:2]
    c_first, c_total = results["cascade"][:2]
    print(f"time to first token, cascade / BLSP-Emo: {c_first / b_first:.2f}x")
    print(f"total latency,       cascade / BLSP-Emo: {c_total / b_total:.2f}x")
    return {
        name: {"first_token_s": r[0], "total_s": r[1], "tokens": r[3], "reply": r[2]}
        for name, r in results.items()
    } | {"ratio_first_token": c_first / b_first, "ratio_total": c_total / b_total}


def http_stream_latency(http, max_new_tokens: int) -> tuple[float, float]:
    """Time to the first content chunk and to [DONE] for the 4 s utterance, streamed through the server."""
    wav = base64.b64encode(wav_bytes(four_second_utterance())).decode()
    body = {
        "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]}],
        "max_tokens": max_new_tokens,
        "stream": True,
    }  # fmt: skip
    started = time.perf_counter()
    first = None
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if (
                first is None
                and line.startswith("data: {")
                and json.loads(line[6:])["choices"][0]["delta"].get("content")
            ):
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    return (first or total), total


def throughput(args: argparse.Namespace, chat) -> dict:
    """Part 2: requests/s through the HTTP server at each number of concurrent clients."""
    import httpx

    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.engine import ServingEngine
    from blsp_emo.serving.server import BackgroundServer

    files = sorted((SPEECH / "librivox").glob("*.wav")) + sorted((SPEECH / "cards").glob("*.wav"))
    clips = [base64.b64encode(wav_bytes(load_audio(f))).decode() for f in files]
    engine = ServingEngine(chat, model_name=f"blsp-emo-{args.model}", max_batch_size=16, batch_wait_s=0.01)
    results = {}
    with (
        BackgroundServer(create_app(engine)) as server,
        httpx.Client(base_url=server.url, timeout=600) as http,
    ):

        def one(i: int) -> float:
            body = {
                "messages": [{"role": "user", "content": [
                    {"type": "input_audio", "input_audio": {"data": clips[i % len(clips)], "format": "wav"}}]}],
                "max_tokens": args.max_new_tokens,
            }  # fmt: skip
            started = time.perf_counter()
            http.post("/v1/chat/completions", json=body).raise_for_status()
            return time.perf_counter() - started

        one(0)  # warm-up
        first, total = http_stream_latency(http, args.max_new_tokens)
        results["http_stream_4s"] = {"first_token_s": first, "total_s": total}
        print(
            f"\nover HTTP, one streamed request with the 4 s utterance: first token {first:.2f} s, total {total:.2f} s"
        )
        print(
            f"\n== throughput: HTTP server, greedy, max_tokens {args.max_new_tokens}, different speech per client =="
        )
        print(
            f"{'clients':>7} {'requests':>9} {'seconds':>8} {'req/s':>7} {'mean latency':>13} {'largest batch':>14}"
        )
        for clients in args.clients:
            engine.stats["largest_batch"] = 0
            count = clients * args.requests_per_client
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(one, range(count)))
            seconds = time.perf_counter() - started
            results[clients] = {"requests": count, "seconds": seconds, "requests_per_s": count / seconds,
                                "mean_latency_s": float(np.mean(latencies)),
                                "largest_batch": engine.stats["largest_batch"]}  # fmt: skip
            print(f"{clients:>7} {count:>9} {seconds:>8.1f} {count / seconds:>7.2f} "
                  f"{np.mean(latencies):>11.2f} s {engine.stats['largest_batch']:>14}")  # fmt: skip
    engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="BLSP-Emo preset or checkpoint (cascade uses its bases)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",") if c]

    from blsp_emo.model import SpeechChat, load_model

    chat = SpeechChat(*load_model(args.model))
    results: dict = {"model": args.model, "max_new_tokens": args.max_new_tokens}
    if not args.skip_latency:
        results["latency"] = latency(args, chat)
    if not args.skip_throughput:
        results["throughput"] = throughput(args, chat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
