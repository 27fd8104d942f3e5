"""``blsp-emo train``: run stage 1 (semantic) or stage 2 (emotion) from a YAML recipe."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train stage 1 (semantic) or stage 2 (emotion) from a YAML config",
        description=(
            "Train a BLSP-Emo stage. Single process: `blsp-emo train --config C.yaml`; several GPUs: "
            "`torchrun --nproc_per_node=N -m blsp_emo.cli train ...` or `accelerate launch --config_file "
            "configs/accelerate/deepspeed-zero2.yaml -m blsp_emo.cli train ...`."
        ),
    )
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. configs/tiny-stage1.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optim.lr=3e-4 run.output_dir=runs/x",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in run.output_dir"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the base LLM run code shipped with its files (transformers trust_remote_code); "
        "never taken from a checkpoint or config",
    )
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``blsp-emo train``: load the config, train, print where the model went."""
    from blsp_emo.model.loading import set_trust_remote_code
    from blsp_emo.training.config import load_config
    from blsp_emo.training.trainer import train

    # model.init_from is loaded deep inside the trainer: the flag reaches it as a process setting.
    set_trust_remote_code(args.trust_remote_code)
    config = load_config(args.config, args.overrides)
    result = train(config, resume=args.resume)
    if not result.is_main:
        return 0
    if result.final_dir is not None:
        print(
            f"trained model: {result.final_dir} ({result.global_step} steps, {result.samples_per_second:.2f} samples/s)"
        )
    else:
        print(f"stopped at step {result.global_step}; checkpoint {result.checkpoint}; continue with --resume")
    if result.dev_losses:
        curve = ", ".join(f"step {step}: {loss:.4g}" for step, loss in result.dev_losses[-3:])
        print(f"dev loss ({config.dev_source}): {curve}")
    return 0
