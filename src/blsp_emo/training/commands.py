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
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``blsp-emo train``: load the config, train, print where the model went."""
    from blsp_emo.training.config import load_config
    from blsp_emo.training.trainer import train

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
    return 0
