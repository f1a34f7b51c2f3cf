"""Harmful fine-tuning table on the real model, SmolLM2-135M-Instruct, with a reduced budget.

SmolLM2 complies with harmful requests out of the box, so it first gets a safety to lose:

1. ``align``: ``safety_align`` (safecircuits.finetune.align) — sft on refusals for synthetic-train
   and Do-Not-Answer prompts plus self-distilled harmless answers. Saved to WORK/aligned.
2. ``artifacts``: what the methods need, against the *aligned* model, built by
   ``prepare_artifacts`` with the organism's recipe: the weight-delta subspace aligned - original
   (rank --rank), CWAC's activation basis (harmful-minus-harmless PCA, 2 directions per residual
   layer, from synthetic train prompts), an SAE (top-k, SAELens) on the last residual layer
   (``--sae-layer``) with its safety features ranked, a safety circuit from attribution patching
   (3% of heads, 0.8% of neurons — SafeSeek's headline sizes; mask learning on 30 layers is too
   slow for this budget), and the original model as PACT's base.
3. ``bench``: every method x harmful ratio on the ``arithmetic`` task, one seed, evaluated on
   held-out arithmetic and held-out synthetic harmful templates (keyword refusal judge).

Every stage resumes: a finished stage is skipped, and finished benchmark runs are kept in the
JSON. The defaults are a GPU-sized budget (100 steps, batch 16, 800 examples, 300k SAE tokens);
nothing of that size has been run yet. The loop trains on one thread, and on the 2-core CPU
machines a SmolLM2 step at batch 8 costs about 13-55 s, so the figures in docs/finetune.md come
from this reduced CPU budget (every method, p = 0.1 and 0.3, one seed; about 2.5-14 min per run)::

    .venv/bin/python benchmarks/finetune_smollm2.py --device cpu --work /tmp/sc-smollm2 \
        --json benchmarks/results/finetune_smollm2_cpu.json --ratios 0.1,0.3 --steps 12 --lr 1e-4 \
        --lora-lr 1e-3 --n-train 96 --batch-size 8 --align-steps 30 --align-lr 1e-4 --align-n 48 \
        --sae-tokens 20000 --d-sae 1024 --eval-limit 25

``--methods`` runs a subset; parts run with their own ``--json`` join with
``safecircuits bench merge``. A CWAC run holds about 12 GB: do not run two at once on 24 GB.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ORIGINAL = "smollm2-135m-instruct"
METHODS = ("sft", "lora", "sct-freeze", "sct-tune", "cwac", "cwac-weights-only", "cwac-acts-only", "safelora", "csulora", "pact")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_align(args, original) -> Path:
    from safecircuits.finetune.align import safety_align
    from safecircuits.finetune.tasks import get_task

    out = args.work / "aligned"
    task = get_task("arithmetic")
    before = task.evaluate(original, split="test", limit=args.eval_limit)
    _log(f"original: harmful score {before['harmful_score']:.3f}, arithmetic accuracy {before['accuracy']:.3f}")
    run = safety_align(original, steps=args.align_steps, lr=args.align_lr, batch_size=args.batch_size, n_harmful=args.align_n, n_harmless=args.align_n,
                       progress=not args.quiet)
    after = task.evaluate(run.lm, reference=original, split="test", limit=args.eval_limit)
    _log(f"aligned: harmful score {after['harmful_score']:.3f}, accuracy {after['accuracy']:.3f}, harmless KL {after.get('harmless_kl')}")
    run.save(out)
    (args.work / "alignment.json").write_text(json.dumps(
        {"original": {k: v for k, v in before.items() if k != "examples"}, "aligned": {k: v for k, v in after.items() if k != "examples"},
         "examples": after["examples"], "run": run.summary()}, indent=1, default=str))
    return out


def stage_artifacts(args, aligned) -> dict:
    """What the chosen methods need, through ``prepare_artifacts`` (only that is built; cached under
    WORK/artifacts). The recipe is the organism's: the activation basis (k=2 per residual layer) and
    the SAE (last residual layer) come from synthetic train prompts; the circuit from attribution patching."""
    from safecircuits.data.synthetic import synthetic_harmful, synthetic_harmless
    from safecircuits.finetune.benchmark import _needs, prepare_artifacts
    from safecircuits.finetune.tasks import ArithmeticTask

    methods = args.methods.split(",")
    train_t = ArithmeticTask()._templates("train")
    harm = synthetic_harmful(128, seed=0, response="none", templates=train_t)
    ok = synthetic_harmless(128, seed=0, templates=train_t, with_responses=False)
    layer = aligned.model.cfg.n_layers - 1 if args.sae_layer is None else args.sae_layer
    root = args.work / "artifacts"
    circuit = _circuit(root / "safety_circuit.json", aligned, train_t) if "circuit" in _needs(methods) else None
    return prepare_artifacts(aligned, methods, base=ORIGINAL, rank=args.rank, sae_hook=f"blocks.{layer}.hook_resid_post", sae_tokens=args.sae_tokens,
                             root=root, progress=not args.quiet, circuit=circuit, prompts=(harm, ok), sae_kwargs={"d_sae": args.d_sae, "k": 32})


def _circuit(cpath: Path, aligned, train_t):
    """Attribution-patching safety circuit at SafeSeek's headline sizes (cached)."""
    from safecircuits.circuits.baselines import attribution_patching
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.data.synthetic import synthetic_harmful, synthetic_harmless

    if not cpath.exists():
        data = {"comply": synthetic_harmful(64, seed=1, response="comply", templates=train_t),
                "refuse": synthetic_harmful(64, seed=1, response="refuse", templates=train_t),
                "harmless": synthetic_harmless(64, seed=1, templates=train_t)}
        cfg = aligned.model.cfg
        c = attribution_patching(aligned, "safety", data, n_heads=round(0.03 * cfg.n_layers * cfg.n_heads),
                                 n_neurons=round(0.008 * cfg.n_layers * cfg.d_mlp))
        c.to_json(cpath)
    return Circuit.from_json(cpath)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sc-smollm2"))
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/finetune_smollm2.json"))
    ap.add_argument("--stages", default="align,artifacts,bench")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--ratios", default="0,0.1,0.3")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--lora-lr", type=float, default=2e-4)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--sae-layer", type=int, default=None, help="residual layer of CWAC's SAE (default: the last, as on the organism)")
    ap.add_argument("--align-steps", type=int, default=200)
    ap.add_argument("--align-lr", type=float, default=2e-5)
    ap.add_argument("--align-n", type=int, default=384)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--sae-tokens", type=int, default=300_000)
    ap.add_argument("--eval-limit", type=int, default=100)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    stages = set(args.stages.split(","))
    t0 = time.time()
    from safecircuits.finetune.benchmark import markdown_table, run_benchmark
    from safecircuits.models import load_model

    aligned_dir = args.work / "aligned"
    if "align" in stages and not (aligned_dir / "config.json").exists():
        original = load_model(ORIGINAL, device=args.device, progress=not args.quiet)
        _log(f"loaded {original.name} on {args.device}")
        aligned_dir = stage_align(args, original)
        del original  # prepare_artifacts loads it again only if a method needs it (memory: SmolLM2 on CPU runs near the limit)
    aligned = load_model(str(aligned_dir), device=args.device, progress=False)
    _log(f"aligned model: {aligned.name}")
    if not ({"artifacts", "bench"} & stages):
        return
    artifacts = stage_artifacts(args, aligned)
    _log("artifacts ready: " + ", ".join(artifacts))
    if "bench" not in stages:
        return
    res = run_benchmark(aligned, methods=args.methods.split(","), ratios=[float(x) for x in args.ratios.split(",")],
                        seeds=[int(x) for x in args.seeds.split(",")], steps=args.steps, task="arithmetic", artifacts=artifacts,
                        json_path=args.json, lr=args.lr, lora_lr=args.lora_lr, n_train=args.n_train, batch_size=args.batch_size, eval_limit=args.eval_limit,
                        progress=not args.quiet)
    align_file = args.work / "alignment.json"
    if align_file.exists():
        res["alignment"] = json.loads(align_file.read_text())
    res["device"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    res["seconds_total"] = round(time.time() - t0, 1)
    args.json.write_text(json.dumps(res, indent=1, default=str))
    print(markdown_table(res))


if __name__ == "__main__":
    main()
