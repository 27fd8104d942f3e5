"""``blsp-emo train``: run stage 1 (semantic) or stage 2 (emotion) from a YAML recipe."""

from __future__ import annotations

import argparse
from pathlib import Path


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

    refit = subparsers.add_parser(
        "refit-head",
        help="fit a checkpoint's layer-mixed emotion head again on its own (frozen encoder statistics)",
        description=(
            "Refit the layer-mixed emotion head of a stage-2 checkpoint on the frozen encoder's statistics of "
            "a manifest's train rows, choose the step count on its dev rows (against the checkpoint's own "
            "head), and write a checkpoint with only the head replaced."
        ),
    )
    refit.add_argument("checkpoint", help="a stage-2 checkpoint folder with model.emotion_features=layer_mix")
    refit.add_argument("--data", required=True, type=Path, help="manifest with emotion labels")
    refit.add_argument("-o", "--output", required=True, type=Path, help="folder of the new checkpoint")
    refit.add_argument("--train-split", default="train", help="split to fit on")
    refit.add_argument("--dev-split", default="dev", help="split to choose the step count on")
    refit.add_argument(
        "--steps", type=int, nargs="+", default=[100, 200, 400, 800], help="candidate step counts"
    )
    refit.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    refit.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    refit.add_argument("--seed", type=int, default=0, help="seed of the fresh head")
    refit.add_argument("--batch-size", type=int, default=8, help="clips per encoder batch")
    refit.set_defaults(func=run_refit_head)


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


def run_refit_head(args: argparse.Namespace) -> int:
    """Handler of ``blsp-emo refit-head``: files first, then the refit; prints the dev scores and the choice."""
    from blsp_emo.clitools import check_input_file, check_output_dir
    from blsp_emo.errors import UserError

    check_input_file(args.data, "manifest", "--data")
    out = check_output_dir(args.output, "-o")
    if (out / "model.safetensors").exists():
        raise UserError(f"{out}: already holds a checkpoint (choose another -o)")
    if any(s <= 0 for s in args.steps):
        raise UserError("--steps: every candidate must be a positive number of steps")

    from blsp_emo.training.head_refit import refit_emotion_head

    report = refit_emotion_head(
        args.checkpoint,
        args.data,
        out,
        train_split=args.train_split,
        dev_split=args.dev_split,
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
    )
    print(f"{report.train_rows} train / {report.dev_rows} dev clips; dev UAR / accuracy:")
    for name, value in report.dev_uar.items():
        mark = "  <- chosen" if name == report.chosen else ""
        print(f"  {name:<12} {value:.3f} / {report.dev_accuracy[name]:.3f}{mark}")
    if report.changes_replies and report.chosen != "current":
        print(
            "note: this model's LLM reads the head's probabilities (emotion token), so the new head changes "
            "its replies and answers too: evaluate the new checkpoint before using it"
        )
    print(f"wrote {out} ({report.seconds:.0f} s)")
    return 0
