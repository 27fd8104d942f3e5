"""Start-up time of the ``blsp-emo`` command: wall time of ``--help``, a sub-command's ``--help`` and an
argument error, each the median of several fresh interpreter runs, and the heavy modules each one imports.

    .venv/bin/python bench/cli_startup.py [--repeats 7] [--src OTHER/src]

``--src`` times another copy of the package (e.g. an older commit unpacked with ``git archive``) under
the same interpreter, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = (
    ("blsp-emo --help", ["--help"]),
    ("blsp-emo eval ser --help", ["eval", "ser", "--help"]),
    ("blsp-emo serve --help", ["serve", "--help"]),
    ("blsp-emo generate --audio missing.wav", ["generate", "--audio", "missing.wav"]),
    ("blsp-emo trian (a typo)", ["trian"]),
)
HEAVY = ("torch", "transformers", "numpy")
PROBE = (
    "import sys, runpy; sys.argv = ['blsp-emo', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('blsp_emo.cli', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    f"sys.stderr.write('HEAVY ' + ' '.join(m for m in {HEAVY!r} if m in sys.modules) + '\\n')\n"
)


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=300
    )
    elapsed = time.perf_counter() - started
    heavy = next((line[6:] for line in result.stderr.splitlines() if line.startswith("HEAVY ")), "?")
    return elapsed, heavy.strip() or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per case (median reported)")
    parser.add_argument("--src", help="the src/ folder of another copy of the package to time instead")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.src:
        env["PYTHONPATH"] = os.path.abspath(args.src)
    print(f"| command | median s ({args.repeats} runs) | min s | heavy modules imported |")
    print("| --- | ---: | ---: | --- |")
    for label, argv in CASES:
        runs = [run_once(argv, env) for _ in range(args.repeats)]
        times = [t for t, _ in runs]
        print(f"| `{label}` | {statistics.median(times):.2f} | {min(times):.2f} | {runs[-1][1]} |")


if __name__ == "__main__":
    main()
