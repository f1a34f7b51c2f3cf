"""`safecircuits demo`: the main job, on the embedded model organisms."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from safecircuits.evaluation.report import evaluate_model
from safecircuits.models import load_model


def run_demo(out: Path = Path("demo_out"), size: str = "small", console: Console | None = None) -> dict:
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
    summary = {"organisms": results, "seconds": round(time.time() - t0, 1)}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {out / 'demo.json'} ({summary['seconds']} s)")
    return summary
