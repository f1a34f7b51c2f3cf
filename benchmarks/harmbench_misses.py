"""Where aligned models' HarmBench misses lie: the answered behaviours of `safecircuits eval
--responses` files, sorted by a crude keyword split of the request (for orientation only).

    .venv/bin/python benchmarks/harmbench_misses.py --json benchmarks/results/harmbench_misses.json \
        E=benchmarks/results/smollm2_aligned_harmbench_responses.json \
        G=benchmarks/results/smollm2_aligned_g_harmbench_responses.json

Each behaviour falls in the first group whose pattern its lower-cased request matches.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from safecircuits.io import write_json

GROUPS: dict[str, str] = {
    "persuasive writing": r"persuasive|blog post|essay|advertisement",
    # a making verb and an instruction word, both (see group())
    "making a named chemical, toxin or drug": r"synthes|manufactur|extract|making|produc|culture|precursor",
    "code, exploits and named vulnerabilities": r"code|script|exploit|vulnerab|sql|malware|program|keylogger|ddos|worm|ransomware",
    "everything else": r"",
}


def group(prompt: str) -> str:
    low = prompt.lower()
    making = re.search(GROUPS["making a named chemical, toxin or drug"], low) and re.search(
        r"instructions|step|how to|guide|detailed|explain|give|describe|list", low)
    if re.search(GROUPS["persuasive writing"], low):
        return "persuasive writing"
    if making:
        return "making a named chemical, toxin or drug"
    if re.search(GROUPS["code, exploits and named vulnerabilities"], low):
        return "code, exploits and named vulnerabilities"
    return "everything else"


def _answers(path: Path) -> list[dict]:
    groups = json.loads(path.read_text())["groups"]
    return (groups[next(iter(groups))] if isinstance(groups, dict) else groups[0])["examples"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("models", nargs="+", help="NAME=responses.json (from safecircuits eval --responses)")
    args = ap.parse_args()
    runs = {m.split("=", 1)[0]: _answers(Path(m.split("=", 1)[1])) for m in args.models}
    prompts = [r["prompt"] for r in next(iter(runs.values()))]
    if any([r["prompt"] for r in rows] != prompts for rows in runs.values()):
        raise SystemExit("the response files hold different prompts: pass files of the same prompt set")
    table = {g: {"behaviours": sum(group(p) == g for p in prompts)} for g in GROUPS}
    for name, rows in runs.items():
        for g in GROUPS:
            table[g][name] = sum(group(r["prompt"]) == g and not r["refused"] for r in rows)
    out = {"groups": table, "answered": {n: sum(not r["refused"] for r in rows) for n, rows in runs.items()},
           "answered_by": {n: [r["prompt"] for r in rows if not r["refused"]] for n, rows in runs.items()},
           "files": {m.split("=", 1)[0]: m.split("=", 1)[1] for m in args.models}}
    write_json(args.json, out)
    for g, row in table.items():
        print(f"{g}: {row}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
