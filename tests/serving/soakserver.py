"""The soak test's server process: the real app on the tiny random model, bound to 127.0.0.1.

Run as ``python soakserver.py PORT``; prints ``ready`` when it answers. Audio URLs are allowed, and the
fetcher lets loopback through (the test-only option: the soak's slow audio server is on 127.0.0.1).
"""

from __future__ import annotations

import sys

from blsp_emo.model import SpeechChat, load_model
from blsp_emo.serving.api import create_app
from blsp_emo.serving.engine import ServingEngine
from blsp_emo.serving.fetch import AudioFetcher
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.server import BackgroundServer

LIMITS = ServingLimits(
    max_request_bytes=4 * 1024 * 1024, max_audio_seconds=20.0, max_new_tokens=256, max_text_chars=50_000,
    timeout_s=20, body_timeout_s=5.0, batch_wait_s=0.02, header_timeout_s=3.0, keep_alive_s=5, max_connections=128,
    fetch_timeout_s=2.0, fetch_concurrency=2,
)  # fmt: skip


def main(port: int) -> None:
    """Serve until stdin closes (the test ends it by closing the pipe or terminating the process)."""
    model, processor = load_model("random-tiny")
    engine = ServingEngine(SpeechChat(model, processor), model_name="soak", limits=LIMITS)
    fetcher = AudioFetcher.for_limits(LIMITS, queue_wait_s=1.0, allow_loopback_for_tests=True)
    app = create_app(engine, limits=LIMITS, allow_audio_urls=True, fetcher=fetcher, default_system=None)
    with BackgroundServer(app, port=port, limits=LIMITS):
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes the pipe
    engine.close()
    fetcher.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
