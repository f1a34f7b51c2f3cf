"""The harmful fine-tuning benchmark on organism:aligned (small): every method x p x seed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_organism.py \
        --json benchmarks/results/finetune_organism.json --html benchmarks/results/finetune_organism.html \
        --md benchmarks/results/finetune_organism.md

Same as ``safecircuits bench finetune --model organism:aligned --json ...``. Each (method, p, seed)
fine-tunes on the same task data (reverse-steps, with a share p of harmful compliance pairs),
for the calibrated budget (safecircuits.finetune.benchmark.DEFAULTS), and is evaluated on the
held-out test split. Runs are written as they finish; a rerun skips finished runs. Pass
``--split val`` (and another --json) for tuning.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from safecircuits.finetune.benchmark import (
    DEFAULT_METHODS,
    DEFAULT_RATIOS,
    DEFAULT_SEEDS,
    BenchmarkConfig,
    markdown_table,
    run_benchmark,
)
from safecircuits.viz.finetune import write_benchmark_html


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism:aligned")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--ratios", default=",".join(str(r) for r in DEFAULT_RATIOS))
    ap.add_argument("--seeds", default=",".join(str(s) for s in DEFAULT_SEEDS))
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/finetune_organism.json"))
    ap.add_argument("--html", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    a = ap.parse_args()
    cfg = BenchmarkConfig(methods=tuple(a.methods.split(",")), ratios=tuple(float(x) for x in a.ratios.split(",")),
                          seeds=tuple(int(x) for x in a.seeds.split(",")), eval_split=a.split)
    res = run_benchmark(a.model, cfg, json_path=a.json)
    table = markdown_table(res)
    print(table)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}")
    if a.md:
        a.md.write_text(table + "\n")
    if a.html:
        write_benchmark_html(res, a.html, markdown=table)


if __name__ == "__main__":
    main()
