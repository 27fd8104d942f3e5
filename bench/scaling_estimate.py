"""What BLSP-Emo costs at the paper's scale, from FLOP counts (no GPU needed): README "Scaling on paper".

Paper scale (docs/method.md §4): whisper-large-v2's encoder (637 M parameters, 32 layers, width 1280) and a
7.6 B LLM (Qwen2.5-7B-Instruct); stage 1 on 1.9 M ASR clips, one epoch; stage 2 on 70 k emotion clips,
three epochs, encoder trained. FLOPs per token: 2 x parameters forward; a backward pass that needs only
activation gradients (frozen LLM, adapter / LoRA upstream) costs about one more forward, a full backward
two. Attention adds 4 x layers x frames^2 x width in the encoder (the LLM's sequences are short).

Paths compared:
- paper: every clip padded to 30 s (1500 encoder frames, 187.5 speech embeddings), stage 1 as KL only;
- fast (this project): true lengths (stage-1 ASR clips about 12 s, emotion clips about 4 s) and the
  token-space pre-alignment, which trains on the encoder and adapter alone (no LLM pass).

Usage: python bench/scaling_estimate.py [--gpus 4] [--peak 312e12] [--mfu 0.4]
"""

from __future__ import annotations

import argparse

ENCODER_PARAMS, ENCODER_LAYERS, ENCODER_WIDTH = 0.637e9, 32, 1280
LLM_PARAMS = 7.6e9
PROMPT, TRANSCRIPT, RESPONSE = 30, 35, 48  # tokens: instruction + chat template, a transcript, a reply
EMBEDDINGS_PER_SECOND = 6.25  # 50 encoder frames/s, adapter 8x shorter


def encoder_forward(seconds: float) -> float:
    """FLOPs of one forward pass of the encoder on ``seconds`` of audio."""
    frames = 50 * seconds
    return 2 * ENCODER_PARAMS * frames + 4 * ENCODER_LAYERS * frames**2 * ENCODER_WIDTH


def stage1_kl(seconds: float) -> float:
    """Frozen encoder forward + student LLM forward/backward (activation gradients) + teacher forward."""
    speech = EMBEDDINGS_PER_SECOND * seconds
    student = 4 * LLM_PARAMS * (PROMPT + speech + RESPONSE)
    teacher = 2 * LLM_PARAMS * (PROMPT + TRANSCRIPT + RESPONSE)
    return encoder_forward(seconds) + student + teacher


def stage2(seconds: float) -> float:
    """Trained encoder (forward + full backward) + LLM forward/backward with PLoRA."""
    speech = EMBEDDINGS_PER_SECOND * seconds
    return 3 * encoder_forward(seconds) + 4 * LLM_PARAMS * (10 + PROMPT + speech + RESPONSE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--peak", type=float, default=312e12, help="bf16 peak FLOP/s per GPU (A100: 312e12)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed")
    args = parser.parse_args()
    rate = args.gpus * args.peak * args.mfu
    rows = [
        ("stage 1 (KL), paper path: 30 s padding", stage1_kl(30.0), 1.9e6),
        ("stage 1 (KL), fast path: true length, 12 s", stage1_kl(12.0), 1.9e6),
        ("pre-alignment (CTC, no LLM pass), 12 s", encoder_forward(12.0), 1.9e6),
        ("stage 2, paper path: 30 s padding", stage2(30.0), 3 * 70e3),
        ("stage 2, fast path: true length, 4 s", stage2(4.0), 3 * 70e3),
    ]
    print(f"{args.gpus} GPUs x {args.peak:.3g} FLOP/s x MFU {args.mfu}")
    print(f"{'what':<46} {'FLOPs/clip':>11} {'clips':>9} {'FLOPs':>9} {'hours':>7}")
    for name, per_clip, clips in rows:
        total = per_clip * clips
        print(f"{name:<46} {per_clip:>11.2e} {clips:>9.3g} {total:>9.2e} {total / rate / 3600:>7.2f}")
    reported = stage1_kl(30.0) * 1.9e6 / (2.5 * 86400 * 4 * args.peak)
    print(f"the paper's stage 1 (2.5 days on 4 A100) is then at MFU {reported:.3f}")


if __name__ == "__main__":
    main()
