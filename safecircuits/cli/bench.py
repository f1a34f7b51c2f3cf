"""``safecircuits bench finetune``: the harmful fine-tuning benchmark from the command line;
``safecircuits bench merge``: one results file from parts run separately."""

from __future__ import annotations

from pathlib import Path

import typer

from safecircuits.cli._common import DeviceOpt, DtypeOpt, command, fail, load, split_values

app = typer.Typer(help="Benchmarks.", no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _bench() -> None:
    """Benchmarks (a group, so `bench finetune` keeps its name even with one command)."""


@command(app, "finetune")
def finetune_bench(
    model: str = typer.Option(..., help="aligned model name, e.g. organism:aligned"),
    methods: list[str] | None = typer.Option(None, help="methods (repeat or comma-separate); default: all registered benchmark methods"),
    ratios: list[str] | None = typer.Option(None, help="harmful ratios p in [0, 1] (repeat or comma-separate); default 0,0.05,0.1,0.2,0.3"),
    seeds: list[str] | None = typer.Option(None, help="seeds (repeat or comma-separate); default 0,1,2"),
    steps: int | None = typer.Option(None, help="optimiser steps per run (default: the calibrated budget)"),
    task: str | None = typer.Option(None, help="fine-tuning task (default: reverse-steps for organisms, arithmetic otherwise)"),
    eval_split: str = typer.Option("test", help="split the figures are measured on (val for tuning)"),
    json_path: Path = typer.Option(..., "--json", help="results JSON; written after every run, finished runs are skipped on rerun"),
    html: Path | None = typer.Option(None, help="self-contained HTML figure (harmful score vs accuracy per method, a panel per p)"),
    md: Path | None = typer.Option(None, help="markdown tables"),
    progress: bool = typer.Option(True, help="tqdm progress bars"),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Fine-tune MODEL with every method x ratio x seed on the same data; report harmful score and accuracy."""
    from safecircuits.finetune.benchmark import (
        DEFAULT_METHODS,
        DEFAULT_RATIOS,
        DEFAULT_SEEDS,
        run_benchmark,
    )

    m = split_values(methods, str, "methods") or list(DEFAULT_METHODS)
    r = split_values(ratios, float, "ratios") or list(DEFAULT_RATIOS)
    s = split_values(seeds, int, "seeds") or list(DEFAULT_SEEDS)
    if steps is not None and steps < 1:
        fail(f"--steps must be a positive integer, got {steps}")
    lm = load(model, device, dtype)
    results = run_benchmark(lm, m, r, s, steps=steps, task=task, json_path=json_path, eval_split=eval_split, progress=progress)
    _report(results, json_path, html, md)


def _report(results: dict, json_path: Path, html: Path | None, md: Path | None) -> None:
    from safecircuits.finetune.benchmark import markdown_table

    table = markdown_table(results)
    typer.echo(table)
    if md is not None:
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(table + "\n")
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
