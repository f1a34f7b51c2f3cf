"""One-call evaluation of a model on a prompt source, as used by the CLI and the demo."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from safecircuits.data.promptset import Label, PromptSet
from safecircuits.evaluation.metrics import EvalReport, evaluate_behaviour, response_ce
from safecircuits.models import LoadedModel, load_model


def evaluate_model(
    model: str | LoadedModel,
    prompts: str | PromptSet = "auto",
    judge: str = "auto",
    limit: int | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    progress: bool = False,
    split: str = "test",
    n_examples: int | None = 3,
) -> EvalReport:
    """Refusal rate, ASR and utility of `model` on `prompts` (``auto``: the profile's `split` prompts).

    Each group keeps `n_examples` prompts with their responses and verdicts (``None``: all of them).
    """
    lm = model if isinstance(model, LoadedModel) else load_model(model, progress=progress)
    ps = prompts if isinstance(prompts, PromptSet) else lm.profile.resolve(prompts, split=split, limit=limit)
    j = lm.profile.judge(lm, judge)
    groups = evaluate_behaviour(lm.model, lm.chat, ps, j, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                progress=progress, n_examples=n_examples)
    utility: dict[str, float] = {}
    harmless = ps.filter(label=Label.HARMLESS, has_response=True)
    if len(harmless):
        utility["harmless_ce"] = response_ce(lm.model, lm.chat, harmless, batch_size=batch_size)
    prov: dict[str, Any] = lm.provenance()
    prov.pop("metrics", None)
    return EvalReport(model=lm.name, judge=j.name, prompts=ps.provenance(), groups=groups, utility=utility, provenance=prov)


def report_table(report: EvalReport, title: str | None = None) -> Table:
    t = Table(title=title or f"{report.model}  (judge: {report.judge}, prompts: {report.prompts['name']}, n={report.prompts['n']})")
    for col in ("prompts", "n", "refusal rate", "ASR / compliance", "exact match"):
        t.add_column(col)
    for lab, g in report.groups.items():
        name = {"harmful": "harmful (ASR)", "triggered": "harmful + trigger (ASR)", "harmless": "harmless (compliance)"}[lab]
        t.add_row(name, str(g.n), f"{100 * g.refusal_rate:.1f}%", f"{100 * g.compliance_rate:.1f}%",
                  "-" if g.exact_match is None else f"{100 * g.exact_match:.1f}%")
    if "harmless_ce" in report.utility:
        t.caption = f"utility: harmless response CE = {report.utility['harmless_ce']:.3f} nats/token"
    return t
