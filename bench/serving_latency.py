"""Benchmark: reply latency of BLSP-Emo vs the ASR cascade, and requests/s of the server under load.

1. Time to first token and total latency for one 4 s spoken utterance, on the same embedded models, three
   systems, all greedy with the same system prompt and token cap, streamed:
   - BLSP-Emo: speech -> Whisper encoder (true length) -> adapter -> LLM;
   - the cascade as deployed (``blsp_emo.assets.transcribe``: Whisper pads the utterance to 30 s), then
     the same SmolLM2 answers the transcript;
   - the same cascade with Whisper's encoder on the utterance's true length (the masked encoder BLSP-Emo
     uses), so the architecture's gain shows apart from the encoder's.
   One warm-up run each, then ``--repeats`` rounds, each running the three in turn (rotating which goes
   first); it prints medians with their range and the medians of the per-round ratios.
2. Requests per second through the real HTTP server (uvicorn on localhost, the batching engine) at 1, 4 and
   16 concurrent clients, each sending different real speech; ``--throughput-repeats`` rounds over the
   levels, medians and ranges.

The torch threads are pinned here (``--threads``, default 1; on a shared 2-core machine two threads mostly
measure contention). The machines are shared and noisy: the ratios and the trend matter, not the absolute
numbers. Usage: python bench/serving_latency.py [--model tiny] [--max-new-tokens 48] [--clients 1,4,16]
[--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from blsp_emo.audio import SAMPLE_RATE, load_audio, wav_bytes
from blsp_emo.model.types import Conversation, DecodingOptions
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
    messages = Conversation(system=SYSTEM_PROMPTS["empathetic"]).speech(audio)
    started = time.perf_counter()
    stream = chat.stream(messages, DecodingOptions(max_new_tokens=max_new_tokens))
    first, total, text = time_stream(stream, started)
    return first, total, text, stream.reply.completion_tokens if stream.reply else 0


def cascade_run(
    whisper, llm, tokenizer, audio: np.ndarray, max_new_tokens: int, true_length: bool = False
) -> tuple[float, float, str, int]:
    """One streamed cascade reply: Whisper transcript, then the LLM answers it. ``true_length``: Whisper's
    encoder runs on the utterance's own length (masked), not on 30 s."""
    import torch
    from transformers import TextIteratorStreamer

    from blsp_emo.assets import transcribe

    started = time.perf_counter()
    if true_length:
        transcript = transcribe_true_length(whisper[0], whisper[1], audio)
    else:
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


def transcribe_true_length(model, processor, audio: np.ndarray, max_new_tokens: int = 224) -> str:
    """Greedy Whisper transcript of one clip (<= 30 s) with the encoder on its true length: the masked
    encoder of ``blsp_emo.model.encoder``; the decoder cross-attends to those frames only. Decoding rules
    as ``blsp_emo.assets.transcribe`` (text tokens and end-of-text only, never an empty transcript)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    from blsp_emo.assets.transcribe import _prompt_ids
    from blsp_emo.model.encoder import encode_windows, mel_frames

    tokenizer = processor.tokenizer
    feats = processor.feature_extractor(
        audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding="longest"
    ).input_features
    with torch.no_grad():
        states, _ = encode_windows(model.model.encoder, feats, torch.tensor([mel_frames(len(audio))]))
        encoder_out = BaseModelOutput(last_hidden_state=states)
        eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        step_ids, past, generated = torch.tensor([_prompt_ids(tokenizer, "en")]), None, []
        for _ in range(max_new_tokens):
            out = model(
                encoder_outputs=encoder_out, decoder_input_ids=step_ids, past_key_values=past, use_cache=True
            )
            logits = out.logits[0, -1, :].float()
            logits[eot + 1 :] = -torch.inf
            if not generated:
                logits[eot] = -torch.inf
            token = int(logits.argmax())
            if token == eot:
                break
            generated.append(token)
            step_ids, past = torch.tensor([[token]]), out.past_key_values
    return tokenizer.decode(generated, skip_special_tokens=True).strip()


def spread(values: list[float], unit: str = "") -> str:
    """``median (min-max)`` of ``values``."""
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f}{unit})"


def latency(args: argparse.Namespace, chat) -> dict:
    """Part 1: BLSP-Emo vs the cascade (30 s and true-length Whisper encoder) on the 4 s utterance."""
    from blsp_emo.assets import load_llm, load_whisper

    audio = four_second_utterance()
    whisper = load_whisper(args.model)
    llm, tokenizer = load_llm(args.model)
    systems = {
        "blsp_emo": lambda: blsp_emo_run(chat, audio, args.max_new_tokens),
        "cascade": lambda: cascade_run(whisper, llm, tokenizer, audio, args.max_new_tokens),
        "cascade_true_length": lambda: cascade_run(
            whisper, llm, tokenizer, audio, args.max_new_tokens, true_length=True
        ),
    }
    for run in systems.values():  # warm-up
        run()
    runs: dict[str, list[tuple]] = {name: [] for name in systems}
    names = list(systems)
    for round_ in range(args.repeats):
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            runs[name].append(systems[name]())
    print(
        f"\n== latency: one 4.0 s utterance, {args.model} models, greedy, <= {args.max_new_tokens} new tokens, "
        f"{args.repeats} interleaved rounds, medians (range) =="
    )
    print(f"{'system':<20} {'first token':>22} {'total':>22} {'tokens':>7}  reply (last round)")
    for name, results in runs.items():
        first = [r[0] for r in results]
        total = [r[1] for r in results]
        print(f"{name:<20} {spread(first, ' s'):>22} {spread(total, ' s'):>22} {results[-1][3]:>7}  "
              f"{results[-1][2][:100]!r}")  # fmt: skip
    summary: dict = {
        name: {
            "first_token_s": [r[0] for r in results],
            "total_s": [r[1] for r in results],
            "tokens": results[-1][3],
            "reply": results[-1][2],
        }
        for name, results in runs.items()
    }
    for slow in ("cascade", "cascade_true_length"):
        for index, what in ((0, "first_token"), (1, "total")):
            ratios = [c[index] / b[index] for c, b in zip(runs[slow], runs["blsp_emo"])]
            summary[f"ratio_{what}_{slow}"] = ratios
            print(f"{what.replace('_', ' '):<12} {slow} / blsp_emo: {spread(ratios, 'x')} (per-round ratios)")
    return summary


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
    engine = ServingEngine(
        chat, model_name=f"blsp-emo-{args.model}"
    )  # ServingLimits: batches of 16, 10 ms wait
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
        rates: dict[int, list[float]] = {clients: [] for clients in args.clients}
        waits: dict[int, list[float]] = {clients: [] for clients in args.clients}
        for _ in range(args.throughput_repeats):
            for clients in args.clients:
                engine.stats["largest_batch"] = 0
                count = clients * args.requests_per_client
                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    latencies = list(pool.map(one, range(count)))
                seconds = time.perf_counter() - started
                rates[clients].append(count / seconds)
                waits[clients].append(float(np.mean(latencies)))
                print(f"{clients:>7} {count:>9} {seconds:>8.1f} {count / seconds:>7.2f} "
                      f"{np.mean(latencies):>11.2f} s {engine.stats['largest_batch']:>14}")  # fmt: skip
        for clients in args.clients:
            results[clients] = {"requests_per_s": rates[clients], "mean_latency_s": waits[clients]}
            print(f"{clients:>3} clients: {spread(rates[clients])} req/s, mean latency {spread(waits[clients], ' s')}"
                  f" (median, range over {args.throughput_repeats} rounds)")  # fmt: skip
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
    parser.add_argument("--repeats", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--throughput-repeats", type=int, default=2, help="rounds over the client levels")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned for every system")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",") if c]
    if (
        min([args.repeats, args.throughput_repeats, args.threads, args.requests_per_client, *args.clients])
        < 1
    ):
        parser.error(
            "--repeats, --throughput-repeats, --threads, --requests-per-client and clients must be >= 1"
        )

    import torch

    from blsp_emo.model import SpeechChat, load_model

    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()} (pinned)")

    chat = SpeechChat(*load_model(args.model))
    results: dict = {"model": args.model, "max_new_tokens": args.max_new_tokens, "threads": args.threads}
    if not args.skip_latency:
        results["latency"] = latency(args, chat)
    if not args.skip_throughput:
        results["throughput"] = throughput(args, chat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
