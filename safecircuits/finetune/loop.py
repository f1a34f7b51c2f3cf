"""The one fine-tuning loop. Every method (``sft``, ``lora``, ``sct-*``, ``cwac*``, ``safelora``,
``csulora``, ``pact``) plugs into it through the hooks of :class:`safecircuits.finetune.base.Method`.

``finetune(lm, data, method, config)`` copies the model (the caller's ``lm`` is never touched),
builds a frozen reference copy, trains on response tokens only (AdamW, linear warmup then cosine,
gradient clipping, one thread, deterministic for a seed) and returns a :class:`FinetuneRun`.

Guarantees the tests check:

* **Gradient masks are exact.** Entries outside a method's 0/1 mask stay *bitwise* unchanged.
  Zeroing their gradient is not enough: AdamW's decoupled weight decay shrinks every entry of a
  parameter it holds, and momentum built up elsewhere does not apply here but would if a mask
  changed. So after each ``opt.step()`` the frozen entries are copied back from a snapshot taken
  just before it (``torch.where(mask, after, before)``). Gradients are also zeroed outside the mask
  (a hook), so clipping sees only the gradient that is applied.
* **Update transforms** (``method.transform_update``): the parameters are snapshotted before the
  step and each update ``after - before`` is replaced by the method's transform; masks are
  re-applied after the transform, so a transform can never move a frozen entry.
* **Exact resume.** Checkpoints (trainable tensors, optimizer, scheduler, RNG states, step, loss
  history) are written atomically every ``checkpoint_every`` steps; the batch order is a pure
  function of (seed, step), so a resumed run gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from safecircuits import runtime
from safecircuits.data.chat import IGNORE_INDEX, TokenBatch, encode_batch
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError, InputTypeError
from safecircuits.finetune.base import ARTIFACT_HELP, FinetuneContext, Method
from safecircuits.finetune.lora import add_lora, lora_deltas, lora_parameters, remove_lora
from safecircuits.finetune.lora import apply_deltas as _apply_deltas
from safecircuits.models.loaded import LoadedModel, cache_dir, weights_fingerprint
from safecircuits.models.weights import WEIGHT_KINDS

CHECKPOINT = "checkpoint.pt"


@dataclass
class FinetuneConfig:
    """Hyperparameters of the loop (a method's own hyperparameters live on the method)."""

    steps: int = 100
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0
    weight_decay: float = 0.0
    warmup: int = 0  # linear warmup steps, then cosine decay to 0
    grad_clip: float | None = 1.0  # max global grad norm; None = off
    mode: Literal["full", "lora"] | None = None  # override the method's mode
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out")
    checkpoint_every: int = 0  # steps between checkpoints (0 = only the time-based ones)
    checkpoint_seconds: float | None = 600.0  # also one every this many seconds (None = none); without out_dir they go to the cache
    max_len: int | None = None  # max tokens per example; None = the model context (n_ctx)
    progress: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    gradient_checkpointing: bool = False  # recompute block activations in backward (large models; same result)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "lora_rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"FinetuneConfig.{name} must be an integer >= 1, got {v!r}")
        for name in ("warmup", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise InputError(f"FinetuneConfig.{name} must be an integer >= 0, got {v!r}")
        if self.warmup >= self.steps and self.warmup > 0:
            raise InputError(f"FinetuneConfig.warmup ({self.warmup}) must be smaller than steps ({self.steps})")
        if not (isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"FinetuneConfig.lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0:
            raise InputError(f"FinetuneConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise InputError(f"FinetuneConfig.grad_clip must be > 0 or None (off), got {self.grad_clip}")
        if self.mode not in (None, "full", "lora"):
            raise InputError(f"FinetuneConfig.mode must be 'full', 'lora' or None (the method's own), got {self.mode!r}")
        if self.lora_alpha <= 0:
            raise InputError(f"FinetuneConfig.lora_alpha must be > 0, got {self.lora_alpha}")
        self.lora_targets = tuple(self.lora_targets)
        bad = set(self.lora_targets) - set(WEIGHT_KINDS)
        if bad or not self.lora_targets:
            raise InputError(f"FinetuneConfig.lora_targets: unknown {sorted(bad)}; use some of {', '.join(WEIGHT_KINDS)}")
        if self.max_len is not None and self.max_len < 2:
            raise InputError(f"FinetuneConfig.max_len must be >= 2 or None, got {self.max_len}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["betas"] = list(self.betas)
        return d


# -- the result --------------------------------------------------------------------------------

@dataclass
class FinetuneRun:
    """A fine-tuned model and how it was made. ``save(dir)`` writes a directory that
    ``safecircuits.models.load_model(dir)`` (and :meth:`load`) load back without the base run."""

    lm: LoadedModel
    provenance: dict[str, Any] = field(default_factory=dict)
    masters: dict[str, Tensor] | None = field(default=None, repr=False)  # float32 weights of a low-precision model

    @property
    def losses(self) -> list[dict[str, float | int]]:
        return self.provenance.get("losses", [])

    @property
    def final_loss(self) -> float | None:
        tail = [r["total"] for r in self.losses[-10:]]
        return sum(tail) / len(tail) if tail else None

    @property
    def trainable_share(self) -> float:
        return self.provenance["trainable_share"]

    def summary(self) -> dict[str, Any]:
        p = self.provenance
        return {"base_model": p["base_model"], "method": p["method"]["method"], "mode": p["mode"], "steps": p["config"]["steps"],
                "trainable_params": p["trainable_params"], "total_params": p["total_params"], "trainable_share": p["trainable_share"],
                "wall_seconds": p["wall_seconds"], "final_loss": self.final_loss}

    def save(self, path: str | Path) -> Path:
        """Write the model directory (``model.safetensors`` + ``config.json``) atomically; it loads
        back with ``load_model(path)``. A low-precision model saves its float32 master weights."""
        from safecircuits.models.saved import save_model_dir

        return save_model_dir(self.lm, path, self.provenance, weights=self.masters)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FinetuneRun:
        from safecircuits.models import load_model

        lm = load_model(str(path), device=device)
        return cls(lm, lm.info["finetune"])


# -- helpers -----------------------------------------------------------------------------------

def copy_loaded(lm: LoadedModel, name: str | None = None) -> LoadedModel:
    """A deep copy of the model sharing the (read-only) tokenizer and chat format."""
    memo = {id(lm.tokenizer): lm.tokenizer}
    model = copy.deepcopy(lm.model, memo)
    info = {k: v for k, v in lm.info.items() if k != "metrics"}
    return LoadedModel(model, lm.tokenizer, lm.chat, name=name or lm.name, info=info)


def lr_lambda(steps: int, warmup: int):
    """Linear warmup over `warmup` steps, then cosine decay to 0 at `steps`."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return f


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The example indices of `step`: epochs of seeded permutations, concatenated. A pure function
    of (n, batch_size, seed, step), so resuming needs no data-loader state."""
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        out.extend(perm[offset : offset + batch_size - len(out)])
    return out


def _slice_batch(full: TokenBatch, idx: list[int]) -> TokenBatch:
    ix = torch.tensor(idx, dtype=torch.long)
    attn = full.attention_mask[ix]
    width = int(attn.sum(1).max())
    return TokenBatch(full.tokens[ix, :width], attn[:, :width], full.labels[ix, :width], [full.prompt_lengths[i] for i in idx], "right")


def response_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Next-token CE on response tokens only (labels are -100 elsewhere)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)


def response_only_loss(model: Any, tokens: Tensor, labels: Tensor) -> Tensor:
    """:func:`response_loss` without the logits of prompt and padding positions.

    The unembedding of a chat model (49k tokens for SmolLM2) and its log-softmax are a third of a
    training step; only response positions enter the loss, so only they are unembedded. Hooks on
    ``ln_final`` / ``unembed`` see ``[1, n_response_tokens, ...]`` here.
    """
    resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    x = resid[:, :-1][keep][None]  # [1, n_response_tokens, d_model]
    logits = model.unembed(model.ln_final(x))[0]
    return F.cross_entropy(logits.float(), target[keep])


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


# -- the loop ----------------------------------------------------------------------------------

def finetune(
    lm: LoadedModel,
    data: PromptSet,
    method: Method,
    config: FinetuneConfig | None = None,
    artifacts: dict[str, Any] | None = None,
    safety_prompts: PromptSet | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
) -> FinetuneRun:
    """Fine-tune a copy of `lm` on `data` (prompt -> target response pairs) with `method`.

    ``artifacts`` holds what the method declares in ``needs`` (``circuit``, ``subspace``,
    ``features``, ``base``). With ``out_dir``, checkpoints go there every
    ``config.checkpoint_every`` steps and the final model is saved there; with ``resume`` an
    existing checkpoint of the same run (same model, data, method and config) is continued.
    """
    config = config or FinetuneConfig()
    if not isinstance(method, Method):
        raise InputTypeError(f"method must be a safecircuits.finetune.base.Method (get one with get_method(name)), got {type(method).__name__}")
    if not isinstance(data, PromptSet):
        raise InputTypeError(f"data must be a PromptSet of (prompt, response) pairs, got {type(data).__name__}")
    data.require_nonempty()
    missing_resp = sum(r is None for r in data.responses)
    if missing_resp:
        raise InputError(f"{data.name}: {missing_resp} of {len(data)} records have no response; fine-tuning needs target responses")
    artifacts = dict(artifacts or {})
    missing = [a for a in method.required_artifacts() if artifacts.get(a) is None]
    if missing:
        a = missing[0]
        raise InputError(f"method {method.name!r} needs the artifact {a!r}: pass artifacts={{{a!r}: ...}}, "
                         f"made with {ARTIFACT_HELP.get(a, 'see docs/finetune.md')}")
    mode = config.mode or method.mode
    out = Path(out_dir) if out_dir is not None else None

    py_state = random.getstate()
    # Threads follow safecircuits.runtime's policy: one for a tiny model (bitwise-reproducible
    # for a seed, and no oversubscription), every free core for a real one. The caller's RNG
    # streams are left as they were.
    try:
        with runtime.compute_threads(lm.model) as threads, torch.random.fork_rng(devices=[]):
            return _finetune(lm, data, method, config, mode, artifacts, safety_prompts, out, resume, threads)
    finally:
        random.setstate(py_state)


class _Trainables:
    """The tensors the optimiser updates, by parameter name.

    A float32 model trains its parameters directly. A low-precision (bf16 / fp16) model computes
    in its own dtype, but the optimiser updates float32 *master* copies: after each step they are
    written back, rounded, into the model. Without masters an update smaller than half a bf16 ulp
    of its weight (most fine-tuning updates) would be lost entirely.
    """

    def __init__(self, named: Mapping[str, Tensor], names: list[str]):
        self.params: dict[str, Tensor] = {n: named[n] for n in names}
        low = any(p.dtype in (torch.bfloat16, torch.float16) for p in self.params.values())
        self.masters: dict[str, Tensor] | None = None
        if low:
            self.masters = {n: p.detach().float().clone().requires_grad_(True) for n, p in self.params.items()}

    @property
    def tensors(self) -> dict[str, Tensor]:
        return self.masters if self.masters is not None else self.params

    def grads_to_masters(self) -> None:
        if self.masters is None:
            return
        for n, p in self.params.items():
            g = p.grad
            self.masters[n].grad = None if g is None else g.float()
            p.grad = None

    @torch.no_grad()
    def sync(self, names: list[str] | None = None) -> None:
        """Write the masters back into the model's parameters."""
        if self.masters is None:
            return
        for n in names or list(self.params):
            self.params[n].copy_(self.masters[n])


def _finetune(lm, data, method, config, mode, artifacts, safety_prompts, out, resume, threads) -> FinetuneRun:
    t0 = time.time()
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    ft_name = f"{lm.name}+{method.name}"
    student = copy_loaded(lm, name=ft_name)
    student.info["base_model"] = lm.info.get("base_model", lm.name) if "finetune" in lm.info else lm.name
    # The caller's model is the frozen reference (the aligned model before fine-tuning): the loop
    # never writes to it, and methods read it under no_grad, so it needs no copy of its own.
    reference = lm
    model = student.model
    total_params = sum(p.numel() for p in model.parameters())

    if mode == "lora":
        add_lora(model, config.lora_rank, config.lora_alpha, config.lora_targets, seed=config.seed)

    ctx = FinetuneContext(lm=student, reference=reference, config=config, artifacts=artifacts, safety_prompts=safety_prompts)
    ctx.state["mode"] = mode
    method.setup(ctx)

    named = dict(model.named_parameters())
    spec = method.trainable(ctx)
    if spec is None:
        spec = dict.fromkeys(lora_parameters(model) if mode == "lora" else named)
    unknown = [n for n in spec if n not in named]
    if unknown:
        raise InputError(f"method {method.name!r} marks unknown parameters trainable: {unknown[:5]}; "
                         f"names must be model.named_parameters() names (e.g. {next(iter(named))!r})")
    masks: dict[str, Tensor] = {}
    for n, m in spec.items():
        if m is not None:
            if m.shape != named[n].shape:
                raise InputError(f"mask for {n!r} has shape {tuple(m.shape)}, the parameter has {tuple(named[n].shape)}")
            masks[n] = m.detach().to(named[n].device).bool()
    train_names = [n for n in named if n in spec and (n not in masks or bool(masks[n].any()))]
    if not train_names:
        raise InputError(f"method {method.name!r} leaves nothing to train (every mask is empty)")
    for n, p in named.items():
        p.requires_grad_(n in train_names)
    hooks = [named[n].register_hook(lambda g, m=masks[n]: g * m) for n in train_names if n in masks]
    trainable_params = sum(int(masks[n].sum()) if n in masks else named[n].numel() for n in train_names)
    train = _Trainables(named, train_names)
    tensors = train.tensors
    params = [tensors[n] for n in train_names]

    # The fused AdamW kernel is ~10x faster than the per-tensor loop on a real model's 100M+
    # parameters (measured on CPU). Tiny models keep the loop implementation, whose results the
    # organism figures were measured with.
    fused = not runtime.is_tiny(model) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas, fused=fused or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(config.steps, config.warmup))

    device = next(model.parameters()).device
    max_len = config.max_len or model.cfg.n_ctx
    full = encode_batch(lm.chat, data.prompts, data.responses, max_len=max_len, source=data.name)
    n = len(data)

    # what determines the weights (not progress bars or checkpoint spacing)
    result_cfg = {k: v for k, v in config.to_dict().items()
                  if k not in ("progress", "checkpoint_every", "checkpoint_seconds", "gradient_checkpointing")}
    fingerprint = _fingerprint(lm.name, weights_fingerprint(lm.model), data.content_hash, method.config(), result_cfg, mode)
    start_step, history = 0, []
    # Checkpoints go to out_dir when there is one; otherwise, for time-based checkpoints, to the cache
    # (named by the run's fingerprint, removed when the run finishes).
    ckpt = out / CHECKPOINT if out is not None else (
        cache_dir("checkpoints/finetune") / f"{fingerprint}.pt" if config.checkpoint_seconds is not None else None)
    if ckpt is not None and resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise InputError(f"{ckpt} belongs to a different run (model, data, method or config differ); "
                             "delete it, use another out_dir, or pass resume=False")
        with torch.no_grad():
            for name, t in state["trainable"].items():
                tensors[name].copy_(t)
        train.sync()
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        ctx.state.update(state.get("method_state", {}))
        start_step, history = state["step"], state["losses"]
        if config.progress:
            tqdm.write(f"finetune {method.name}: resuming from step {start_step} of {config.steps} ({ckpt})")

    transform = method.has_update_transform()
    last_save = time.monotonic()
    in_update = False

    def checkpoint(done: int) -> None:
        _save_checkpoint(ckpt, {  # type: ignore[arg-type]
            "fingerprint": fingerprint, "step": done, "losses": history,
            "trainable": {nm: tensors[nm].detach().clone() for nm in train_names},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
            "method_state": {k: v for k, v in ctx.state.items() if k.startswith("ckpt_")},
        })

    # AdamW leaves an entry whose gradient was always zero exactly where it was, unless weight
    # decay shrinks it: only then do frozen entries need restoring, and only they are kept.
    restore_frozen = config.weight_decay > 0
    # Real models unembed response positions only; a method that reads the logits (PACT), and the
    # tiny organisms (whose figures were measured with full logits), get them all.
    full_logits = method.needs_logits or runtime.is_tiny(model)
    model.train()
    checkpointed = _gradient_checkpointing(model) if config.gradient_checkpointing else []
    t_loop = time.time()
    bar = tqdm(range(start_step, config.steps), desc=f"finetune {method.name}" + (f" ({mode})" if mode != method.mode else ""), disable=not config.progress,
               initial=start_step, total=config.steps, leave=False)
    try:
        for step in bar:
            threads.refresh()
            batch = _slice_batch(full, batch_indices(n, config.batch_size, config.seed, step)).to(device)
            # right padding + causal attention: pads never reach response tokens
            if full_logits:
                logits = model(batch.tokens)
                ce = response_loss(logits, batch.labels)
            else:
                logits = None
                ce = response_only_loss(model, batch.tokens, batch.labels)
            opt.zero_grad(set_to_none=True)
            if method.extra_loss_needs_train_graph():
                extra = method.extra_loss(ctx, step, batch, logits)
                loss = ce + sum(extra.values()) if extra else ce
                loss.backward()
            else:  # free the training graph first; the extra loss's gradients accumulate on top
                ce.backward()
                extra = method.extra_loss(ctx, step, batch, logits.detach() if logits is not None else None)
                if extra:
                    sum(extra.values()).backward()
                loss = ce.detach() + sum(v.detach() for v in extra.values()) if extra else ce
            del logits
            train.grads_to_masters()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            with torch.no_grad():
                before = {nm: tensors[nm].detach().clone() for nm in train_names} if transform else {}
                frozen = {nm: tensors[nm].detach()[~masks[nm]] for nm in masks} if restore_frozen and not transform else {}
            lr_used = sched.get_last_lr()[0]
            in_update = True  # from here to the end of the step the weights are half-updated
            opt.step()
            sched.step()
            with torch.no_grad():
                for nm, b in before.items():
                    t = tensors[nm]
                    new = b + method.transform_update(ctx, nm, t.detach() - b)
                    if nm in masks:
                        new = torch.where(masks[nm], new, b)
                    t.copy_(new)
                for nm, vals in frozen.items():
                    tensors[nm].detach()[~masks[nm]] = vals
            train.sync()
            in_update = False
            rec = {"step": step, "total": float(loss.detach()), "ce": float(ce.detach()),
                   **{k: float(v.detach()) for k, v in extra.items()}, "lr": lr_used}
            history.append(rec)
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k not in ("step", "lr")})
            due = (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0) or (
                config.checkpoint_seconds is not None and time.monotonic() - last_save >= config.checkpoint_seconds)
            if ckpt is not None and due and step + 1 < config.steps:
                checkpoint(step + 1)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if ckpt is not None and not in_update:  # history holds one record per finished step, resumed ones included
            checkpoint(len(history))
            tqdm.write(f"finetune {method.name}: interrupted after step {len(history)} of {config.steps}; checkpoint saved to {ckpt}: "
                       "run the same call again to resume")
        elif ckpt is not None:
            tqdm.write(f"finetune {method.name}: interrupted during a weight update; the last checkpoint ({ckpt}) is kept: "
                       "run the same call again to resume from it")
        raise
    finally:
        for h in hooks:
            h.remove()
        for block, fwd in checkpointed:
            if fwd is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = fwd
        model.eval()
    train_seconds = time.time() - t_loop

    post_hoc_applied = False
    if mode == "lora":
        deltas = lora_deltas(model)
        new_deltas = method.post_hoc(ctx, deltas)
        post_hoc_applied = new_deltas is not deltas
        remove_lora(model)
        _apply_deltas(model, new_deltas)
    for p in model.parameters():
        p.requires_grad_(True)

    wall = time.time() - t0
    prov = {
        "base_model": student.info["base_model"],
        "base": {k: v for k, v in lm.provenance().items() if k != "metrics"},
        "method": method.config(),
        "method_source": method.source,
        "mode": mode,
        "config": config.to_dict(),
        "data": data.provenance(),
        "safety_prompts": safety_prompts.provenance() if safety_prompts is not None else None,
        "artifacts": {k: _artifact_summary(v) for k, v in artifacts.items()},
        "seed": config.seed,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "trainable_share": trainable_params / total_params,
        "post_hoc": post_hoc_applied,
        "resumed_from": start_step,
        "wall_seconds": round(wall, 2),
        "setup_seconds": round(t_loop - t0, 3),
        "train_seconds": round(train_seconds, 3),
        "step_seconds": train_seconds / max(1, config.steps - start_step),
        "threads": threads.threads,
        "dtype": runtime.dtype_name(next(model.parameters()).dtype),
        "master_weights": "float32" if train.masters is not None else None,
        "losses": history,
    }
    student.info["finetune"] = {k: v for k, v in prov.items() if k != "losses"}
    run = FinetuneRun(student, prov, masters=train.masters if mode == "full" else None)
    if out is None and ckpt is not None:
        ckpt.unlink(missing_ok=True)  # the finished run supersedes its cache checkpoint
    if out is not None:
        run.save(out)  # replaces the directory: the finished model supersedes the checkpoint
    return run


def _gradient_checkpointing(model: Any) -> list[tuple[Any, Any]]:
    """Recompute each block's activations in the backward pass instead of keeping them
    (``torch.utils.checkpoint``): activation memory of one block instead of all, for one more
    forward per step. Returns what to undo."""
    from torch.utils.checkpoint import checkpoint

    undo = []
    for block in model.blocks:
        fwd = block.__dict__.get("forward")
        inner = block.forward

        def run(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = run
        undo.append((block, fwd))
    return undo


def _artifact_summary(v: Any) -> Any:
    prov = getattr(v, "provenance", None)
    if isinstance(prov, dict):
        return {"type": type(v).__name__, "provenance": prov, **({"sparsity": v.sparsity} if hasattr(v, "sparsity") else {})}
    if isinstance(v, str | Path | int | float):
        return str(v)
    return type(v).__name__


__all__ = ["FinetuneConfig", "FinetuneRun", "batch_indices", "copy_loaded", "finetune", "lr_lambda", "response_loss"]
