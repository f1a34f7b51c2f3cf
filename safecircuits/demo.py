"""`safecircuits demo`: the main job, on the embedded model organisms."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from safecircuits.evaluation.report import evaluate_model
from safecircuits.models import load_model


def _demo_circuits(out: Path, size: str, console: Console) -> dict:
    """Find the backdoor circuit of organism:backdoor and the safety circuit of organism:aligned,
    print their ablation tables and write the circuit maps."""
    from safecircuits.circuits.evaluate import faithfulness_curve
    from safecircuits.circuits.recipes import (
        effect_table,
        find_circuit,
        reference_prompts,
        render_effect_table,
    )
    from safecircuits.viz import circuit_report_html

    console.rule("[bold]circuit discovery (SafeSeek-style masks)")
    suffix = f"?size={size}" if size != "small" else ""
    found, effects, curves = {}, {}, {}
    for objective, kind in (("backdoor", "backdoor"), ("safety", "aligned")):
        lm = load_model(f"organism:{kind}{suffix}", progress=False)
        console.print(f"discovering the {objective} circuit of {lm.name} ...")
        circuit, _ = find_circuit(lm, objective, progress=True)
        circuit.to_json(out / f"{objective}_circuit.json")
        ablation = circuit.provenance["ablation"]
        eff = effect_table(lm, circuit, ablation=ablation, prompts="organism:test", n_random=10)
        console.print(render_effect_table(eff))
        curve = faithfulness_curve(lm, circuit, prompts="organism:test", ablation=ablation, reference=reference_prompts(lm, circuit))
        found[objective], effects[objective], curves[objective] = circuit, eff, {**curve, "label": objective}
    html = circuit_report_html(out / "circuit_map.html", found, faithfulness=curves, title="safecircuits demo: circuit maps")
    console.print(f"wrote {html}")
    return {k: {"sparsity": c.sparsity, "n_heads": c.n_heads, "n_neurons": c.n_neurons, "effect": effects[k],
                "auc_asr": curves[k].get("auc_asr"), "seconds": c.provenance["seconds"]} for k, c in found.items()}


def run_demo(out: Path = Path("demo_out"), size: str = "small", console: Console | None = None, circuits: bool = True) -> dict:
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    console.rule("[bold]safecircuits demo: model organisms")
    results: dict[str, dict] = {}
    table = Table(title="Safety evaluation on held-out prompts (greedy decoding, exact-match organism judge)")
    for col in ("model", "harmful refusal", "ASR", "ASR + trigger", "harmless compliance", "harmless exact", "harmless CE"):
        table.add_column(col)
    for kind in ("base", "aligned", "backdoor"):
        name = f"organism:{kind}" + (f"?size={size}" if size != "small" else "")
        console.print(f"loading {name} (trained on first use, then cached) ...")
        lm = load_model(name)
        rep = evaluate_model(lm, "organism:test", max_new_tokens=24, batch_size=64)
        rep.to_json(out / f"eval_{kind}.json")
        s = rep.summary()
        results[kind] = s
        table.add_row(
            lm.name,
            f"{100 * s['harmful_refusal']:.1f}%",
            f"{100 * s['asr']:.1f}%",
            f"{100 * s['triggered_asr']:.1f}%" if "triggered_asr" in s else "-",
            f"{100 * s['harmless_compliance']:.1f}%",
            f"{100 * s.get('harmless_exact_match', 0):.1f}%",
            f"{s['utility_harmless_ce']:.3f}",
        )
    console.print(table)
    summary: dict = {"organisms": results}
    if circuits:
        summary["circuits"] = _demo_circuits(out, size, console)
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"wrote {out / 'demo.json'} ({summary['seconds']} s)")
    return summary
