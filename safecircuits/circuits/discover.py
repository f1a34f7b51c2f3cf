"""The mask-optimisation loop: ``discover_circuit(model, objective, data, config) -> Circuit``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from safecircuits import runtime
from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.hooks import AblationType, Ablator, mask_hooks
from safecircuits.circuits.masks import ComponentMask, MaskSpec, make_mask
from safecircuits.circuits.objectives import Objective, get_objective
from safecircuits.data.chat import ChatFormat, TokenBatch, encode_batch
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.hooks import common_suffix_len, d_mlp, position_classes
from safecircuits.io import save_with
from safecircuits.models.loaded import LoadedModel, cache_dir, weights_fingerprint
from safecircuits.provenance import provenance
from safecircuits.types import HookedModel


@dataclass
class DiscoveryConfig:
    """Hyper-parameters of mask discovery (defaults follow SafeSeek's code where it has one)."""

    mask: str = "sigmoid-ste"
    init_logit: float = 1.0
    temperature: float = 1.0
    init_log_alpha: float = 3.0
    ablation: str = "zero"
    heads: bool = True
    neurons: bool = True
    layers: tuple[int, int] | None = None  # [start, end) layer range to search; None = all
    lr: float = 0.05
    epochs: int = 20
    max_steps: int | None = None
    batch_size: int = 8
    seed: int = 0
    val_every: int = 25
    patience: int = 8  # validation checks without improvement before stopping
    target_sparsity: float | None = None  # discretise to this share of dropped components (one threshold over both families)
    # Size cap (head share, neuron share): of the dropped components, the circuit keeps at most
    # these shares of all heads / neurons, the most strongly dropped first (a SafeSeek-sized circuit
    # on a model whose mask drops many components together; None = no cap).
    max_share: tuple[float, ...] | None = None
    checkpoint_dir: str | None = "auto"  # "auto" = $SAFECIRCUITS_CACHE/checkpoints/discovery; None = no checkpoints
    checkpoint_every: int = 100  # steps between checkpoints (also one every `checkpoint_seconds`)
    checkpoint_seconds: float = 60.0
    max_ref: int = 128  # reference prompts for mean / resample ablation
    # "layer-mean": SafeSeek's sum over layers of the mean dropped share, per family, so one head
    # costs 1/n_heads and one neuron 1/d_mlp. "component": every component costs 1/n_heads, so
    # heads and neurons compete on equal terms.
    penalty_norm: str = "layer-mean"
    progress: bool = True
    # Activation patching: components ablated per forward (the batch is replicated once per
    # component, each copy with its own component ablated). None = 16 on CUDA, 8 for tiny models on the CPU, else 1
    # (measured: the patch_batch ratios of benchmarks/results/patch_batch_cpu.json).
    patch_batch: int | None = None

    def __post_init__(self) -> None:
        AblationType.parse(self.ablation)
        if self.mask not in ("sigmoid-ste", "hard-concrete"):
            raise InputError(f"unknown mask type {self.mask!r}: use sigmoid-ste or hard-concrete")
        if not (self.heads or self.neurons):
            raise InputError("nothing to search: enable heads or neurons (or both)")
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise InputError("batch_size and epochs must be >= 1 and lr > 0")
        if self.layers is not None:
            layers = tuple(self.layers)  # a list from JSON or the CLI
            if len(layers) != 2 or layers[0] >= layers[1] or layers[0] < 0:
                raise InputError(f"layers must be a [start, end) range with 0 <= start < end, got {layers}")
            self.layers = (layers[0], layers[1])
        if self.patch_batch is not None and self.patch_batch < 1:
            raise InputError(f"patch_batch must be >= 1 (components per forward) or None (by device), got {self.patch_batch}")
        if self.penalty_norm not in ("layer-mean", "component"):
            raise InputError(f"penalty_norm must be 'layer-mean' or 'component', got {self.penalty_norm!r}")
        if self.target_sparsity is not None and not 0 <= self.target_sparsity <= 1:
            raise InputError(f"target_sparsity must be in [0, 1], got {self.target_sparsity}")
        if self.max_share is not None:
            cap = tuple(self.max_share)  # a list from JSON or the CLI
            if len(cap) != 2 or not all(0 <= float(x) <= 1 for x in cap):
                raise InputError(f"max_share must be (head share, neuron share), each in [0, 1], got {self.max_share}")
            self.max_share = (float(cap[0]), float(cap[1]))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("progress")
        d.pop("checkpoint_dir")
        d.pop("checkpoint_every")
        d.pop("checkpoint_seconds")
        d.pop("patch_batch")  # how the forwards are grouped, not what is computed
        return d

    def mask_spec(self) -> MaskSpec:
        return MaskSpec(self.mask, self.init_logit, self.temperature, self.init_log_alpha)


class _MaskSet(nn.Module):
    def __init__(self, heads: ComponentMask | None, neurons: ComponentMask | None, norm: str = "layer-mean", unit: int = 1):
        super().__init__()
        self.heads = heads
        self.neurons = neurons
        self.norm, self.unit = norm, unit

    def families(self) -> list[ComponentMask]:
        return [m for m in (self.heads, self.neurons) if m is not None]

    def penalty(self) -> Tensor:
        if self.norm == "component":
            return sum((1 - m.probabilities()).sum() for m in self.families()) / self.unit  # type: ignore[return-value]
        return sum(m.penalty() for m in self.families())  # type: ignore[return-value]

    def kept_share(self) -> Tensor:
        return torch.stack([m.probabilities().mean() for m in self.families()]).mean()


def _tokenize(chat: ChatFormat, ps: PromptSet, bs: int, n_ctx: int, rng: random.Random) -> list[TokenBatch]:
    ps = ps.shuffle(rng.randrange(1 << 30))
    return [
        encode_batch(chat, ps[i : i + bs].prompts, ps[i : i + bs].responses, max_len=n_ctx, source=f"{ps.name}[{i}]")
        for i in range(0, len(ps), bs)
    ]


def _hash_data(data: dict[str, PromptSet]) -> str:
    h = hashlib.sha256()
    for k in sorted(data):
        h.update(k.encode() + data[k].content_hash.encode())
    return h.hexdigest()


class CircuitDiscovery:
    """Holds the masks and runs the optimisation; `discover_circuit` is the one-call entry point."""

    def __init__(self, model: HookedModel, chat: ChatFormat, objective: Objective, data: dict[str, PromptSet],
                 config: DiscoveryConfig, val_data: dict[str, PromptSet] | None = None, model_name: str | None = None,
                 lm: LoadedModel | None = None):
        self.model, self.chat, self.objective, self.cfg = model, chat, objective, config
        self.lm = lm
        objective.check_data(data)
        if val_data is None:
            data, val_data = _split_val(data, config.seed)
        objective.check_data(val_data)
        self.data, self.val_data = data, val_data
        self.model_name = model_name or model.cfg.model_name
        c = model.cfg
        lo, hi = config.layers or (0, c.n_layers)
        if hi > c.n_layers:
            raise InputError(f"layer range {config.layers} exceeds the model's {c.n_layers} layers")
        self.layer_range = (lo, hi)
        n = hi - lo
        gen = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        spec = config.mask_spec()
        self.masks = nn.ModuleDict({
            s: _MaskSet(
                make_mask((n, c.n_heads), spec, gen) if config.heads else None,
                make_mask((n, d_mlp(model)), spec, gen) if config.neurons else None,
                config.penalty_norm,
                c.n_heads,
            )
            for s in objective.mask_sets
        }).to(runtime.device_of(model))  # learned float32 logits live on the model's device
        ref = objective.reference_set(data)
        self.reference = ref
        self.ablator = Ablator.build(model, chat, config.ablation, ref if config.ablation != "zero" else None,
                                     layers_heads=list(range(lo, hi)), layers_neurons=list(range(lo, hi)),
                                     max_ref=config.max_ref, seed=config.seed)
        self.suffix_len = common_suffix_len(chat)
        self._cur: dict[str, tuple[Tensor | None, Tensor | None]] = {}
        self.history: list[dict[str, float]] = []

    # -- the mask sets (nn.ModuleDict types its values as Module) ---------------------------------
    def _mask_set(self, name: str) -> _MaskSet:
        return cast(_MaskSet, self.masks[name])

    def _mask_sets(self) -> list[tuple[str, _MaskSet]]:
        return [(s, cast(_MaskSet, ms)) for s, ms in self.masks.items()]

    # -- masked forward -----------------------------------------------------------------------
    def _full(self, m: Tensor | None, width: int, invert: bool) -> Tensor | None:
        if m is None:
            return None
        if invert:
            m = 1 - m
        lo, hi = self.layer_range
        L = self.model.cfg.n_layers
        if (lo, hi) == (0, L):
            return m
        full = torch.ones((L, width), dtype=m.dtype, device=m.device)
        return torch.cat([full[:lo], m, full[hi:]])

    def _run(self, batch: TokenBatch, mask_set: str, invert: bool) -> Tensor:
        h, n = self._cur[mask_set]
        c = self.model.cfg
        heads = self._full(h, c.n_heads, invert)
        neurons = self._full(n, d_mlp(self.model), invert) if n is not None else None
        self.ablator.set_batch(position_classes(batch, self.suffix_len) if self.ablator.ablation != AblationType.ZERO else None)
        hooks = mask_hooks(heads, neurons, self.ablator)
        tokens = batch.tokens.to(c.device)
        with self.model.hooks(fwd_hooks=hooks):  # type: ignore[arg-type]
            return self.model(tokens)

    def _sample_masks(self, hard: bool) -> None:
        dev = self.model.cfg.device
        self._cur = {}
        for s, ms in self._mask_sets():
            if hard:
                h = ms.heads.hard().to(dev) if ms.heads is not None else None
                n = ms.neurons.hard().to(dev) if ms.neurons is not None else None
            else:
                h = ms.heads.sample().to(dev) if ms.heads is not None else None
                n = ms.neurons.sample().to(dev) if ms.neurons is not None else None
            self._cur[s] = (h, n)

    def _overlap(self) -> Tensor | None:
        if "circuit" not in self.masks:
            return None
        terms = []
        for fam in ("heads", "neurons"):
            a, b = getattr(self.masks["main"], fam), getattr(self.masks["circuit"], fam)
            if a is None:
                continue
            pa, pb = a.probabilities(), b.probabilities()
            terms.append(((pa * pb).sum(1) / pa.sum(1).clamp(min=1e-6)).mean())
        return torch.stack(terms).mean()

    def _loss(self, batches: dict[str, TokenBatch]) -> dict[str, Tensor]:
        pens = {s: ms.penalty() for s, ms in self._mask_sets()}
        if "circuit" in self.masks:
            pens["circuit_kept"] = self._mask_set("circuit").kept_share()
        return self.objective.loss(self._run, batches, pens, self._overlap())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.masks.eval()
        self._sample_masks(hard=True)
        rng = random.Random(0)
        batches = {k: _tokenize(self.chat, ps, 64, self.model.cfg.n_ctx, rng) for k, ps in self.val_data.items()}
        n = max(len(b) for b in batches.values())
        acc: dict[str, float] = {}
        for i in range(n):
            terms = self._loss({k: b[i % len(b)] for k, b in batches.items()})
            terms["behaviour"] = self.objective.behaviour(terms)  # type: ignore[attr-defined]
            for k, v in terms.items():
                acc[k] = acc.get(k, 0.0) + float(v) / n
        self.masks.train()
        return acc

    # -- loop -----------------------------------------------------------------------------------
    def _config_hash(self) -> str:
        d = {"config": self.cfg.to_dict(), "objective": self.objective.config(), "data": _hash_data(self.data),
             "val": _hash_data(self.val_data), "model": self.model_name, "weights": weights_fingerprint(self.model)}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _ckpt_path(self) -> Path | None:
        if not self.cfg.checkpoint_dir:
            return None
        p = cache_dir("checkpoints/discovery") if self.cfg.checkpoint_dir == "auto" else Path(self.cfg.checkpoint_dir)
        p.mkdir(parents=True, exist_ok=True)
        return p / f"masks-{self._config_hash()}.pt"

    def _save_ckpt(self, path: Path, state: dict[str, Any]) -> None:
        save_with(path, lambda tmp: torch.save(state, tmp))

    def run(self) -> Circuit:
        cfg = self.cfg
        t0 = time.time()
        model = self.model
        was_training = model.training
        grads = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        opt = torch.optim.Adam(self.masks.parameters(), lr=cfg.lr)
        rng = random.Random(cfg.seed)
        steps_per_epoch = max(-(-len(ps) // cfg.batch_size) for ps in self.data.values())
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        step, best, best_state, since_best = 0, float("inf"), None, 0
        epoch_rng = rng.getstate()  # rng state at the start of the current epoch
        ckpt = self._ckpt_path()
        if ckpt is not None and ckpt.exists():
            st = torch.load(ckpt, weights_only=False, map_location=runtime.device_of(model))
            self.masks.load_state_dict(st["masks"])
            opt.load_state_dict(st["opt"])
            step, best, best_state, since_best, self.history = st["step"], st["best"], st["best_state"], st["since_best"], st["history"]
            epoch_rng = st["epoch_rng"]
            torch.set_rng_state(st["torch_rng"])
            t0 -= st.get("seconds", 0.0)  # the time spent before the checkpoint counts too
            if cfg.progress and 0 < step < total:
                tqdm.write(f"discovering the {self.objective.name} circuit: resuming from step {step} of {total} ({ckpt})")

        step_rng = torch.get_rng_state()  # at the start of the step in progress, so an interrupted step reruns exactly

        def state() -> dict[str, Any]:
            return {"step": step, "masks": self.masks.state_dict(), "opt": opt.state_dict(), "best": best, "best_state": best_state,
                    "since_best": since_best, "history": self.history, "epoch_rng": epoch_rng, "torch_rng": step_rng,
                    "seconds": time.time() - t0}

        threads = runtime.compute_threads(model)
        policy = threads.__enter__()
        last_save = time.monotonic()
        try:
            bar = tqdm(total=total, initial=step, desc=f"discovering {self.objective.name} circuit", disable=not cfg.progress, leave=False)
            stop = step >= total
            while not stop:
                # Batches of an epoch are a function of the rng state at its start, so a resumed
                # run regenerates them and skips what was done: resume is exact.
                rng.setstate(epoch_rng)
                epoch_batches = {k: _tokenize(self.chat, ps, cfg.batch_size, model.cfg.n_ctx, rng) for k, ps in self.data.items()}
                next_epoch_rng = rng.getstate()
                for i in range(step % steps_per_epoch, steps_per_epoch):
                    policy.refresh()
                    step_rng = torch.get_rng_state()
                    self._sample_masks(hard=False)
                    terms = self._loss({k: b[i % len(b)] for k, b in epoch_batches.items()})
                    opt.zero_grad(set_to_none=True)
                    terms["total"].backward()
                    opt.step()
                    step += 1
                    bar.update(1)
                    if step % cfg.val_every == 0 or step == total:
                        val = self.validate()
                        rec = {"step": step, **{f"train/{k}": v.item() for k, v in terms.items()}, **{f"val/{k}": v for k, v in val.items()}}
                        rec["circuit_size"] = self._n_dropped()
                        self.history.append(rec)
                        bar.set_postfix({k.split("/")[1]: f"{v:.3f}" for k, v in rec.items() if k.startswith("train/") and k != "train/total"} | {"size": rec["circuit_size"]})
                        if val["behaviour"] < best - 1e-4:
                            best, since_best = val["behaviour"], 0
                            best_state = {k: v.detach().clone() for k, v in self.masks.state_dict().items()}
                        else:
                            since_best += 1
                            stop = since_best >= cfg.patience
                    if step % steps_per_epoch == 0:
                        epoch_rng = next_epoch_rng
                    if ckpt is not None and (step % cfg.checkpoint_every == 0 or stop or step >= total
                                             or time.monotonic() - last_save >= cfg.checkpoint_seconds):
                        self._save_ckpt(ckpt, state())
                        last_save = time.monotonic()
                    if stop or step >= total:
                        stop = True
                        break
            bar.close()
        except KeyboardInterrupt:
            if ckpt is not None:
                self._save_ckpt(ckpt, state())
                tqdm.write(f"interrupted at step {step} of {total}; checkpoint saved to {ckpt}: run the same call again to resume")
            raise
        finally:
            threads.__exit__(None, None, None)
            for p, g in zip(model.parameters(), grads, strict=True):
                p.requires_grad_(g)
            model.train(was_training)
        if best_state is not None:
            self.masks.load_state_dict(best_state)
        return self.to_circuit(time.time() - t0, step)

    def _n_dropped(self) -> int:
        ms = self._mask_set(self.objective.circuit_mask_set())
        return int(sum((m.hard() == 0).sum() for m in ms.families()))

    def to_circuit(self, seconds: float = 0.0, steps: int = 0) -> Circuit:
        c = self.model.cfg
        lo, hi = self.layer_range
        ms = self._mask_set(self.objective.circuit_mask_set())
        width = d_mlp(self.model)
        heads = torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool)
        neurons = torch.zeros(c.n_layers, width, dtype=torch.bool)
        hs = torch.zeros(c.n_layers, c.n_heads)
        ns = torch.zeros(c.n_layers, width)
        n_total = sum(m.probabilities().numel() for m in ms.families())
        n_drop_total = None
        if self.cfg.target_sparsity is not None:
            n_drop_total = round(self.cfg.target_sparsity * n_total)
        if n_drop_total is not None:
            # one threshold over both families: rank every component by its keep score
            scores = torch.cat([m.ranking_scores().detach().flatten() for m in ms.families()])
            order = torch.argsort(scores, stable=True)[:n_drop_total]
            drop = torch.zeros_like(scores, dtype=torch.bool)
            drop[order] = True
            off = 0
            parts = []
            for m in ms.families():
                k = m.probabilities().numel()
                parts.append(drop[off : off + k].view(m.shape))
                off += k
            drops = iter(parts)
        for i, (fam, mem, sc) in enumerate(((ms.heads, heads, hs), (ms.neurons, neurons, ns))):
            if fam is None:
                continue
            dropped = next(drops) if n_drop_total is not None else (fam.hard() == 0)
            if self.cfg.max_share is not None:
                dropped = _cap(dropped, fam.ranking_scores().detach(), round(self.cfg.max_share[i] * dropped.numel()))
            mem[lo:hi] = dropped.cpu()
            sc[lo:hi] = (1 - fam.probabilities().detach()).float().cpu()
        prov = provenance(
            self.lm, data=self.data, seed=self.cfg.seed, config=self.cfg,
            model=self.model_name,
            model_shape={"n_layers": c.n_layers, "n_heads": c.n_heads, "d_mlp": c.d_mlp, "d_model": c.d_model},
            objective=self.objective.name,
            objective_config=self.objective.config(),
            mask=self.cfg.mask,
            ablation=AblationType.parse(self.cfg.ablation).value,
            val_data={k: v.provenance() for k, v in self.val_data.items()},
            steps=steps,
            seconds=round(seconds, 1),
            history=self.history,
        )
        return Circuit(heads, neurons, hs if self.cfg.heads else None, ns if self.cfg.neurons else None, prov)


def _cap(dropped: Tensor, keep_scores: Tensor, k: int) -> Tensor:
    """At most `k` of the `dropped` components: those with the lowest keep scores."""
    if int(dropped.sum()) <= k:
        return dropped
    s = torch.where(dropped, keep_scores.float(), torch.full_like(keep_scores, float("inf"), dtype=torch.float32)).flatten()
    out = torch.zeros(s.numel(), dtype=torch.bool, device=dropped.device)
    out[torch.argsort(s, stable=True)[:k]] = True
    return out.view(dropped.shape)


def _split_val(data: dict[str, PromptSet], seed: int) -> tuple[dict[str, PromptSet], dict[str, PromptSet]]:
    tr, va = {}, {}
    for k, ps in data.items():
        if len(ps) < 5:
            raise InputError(f"{k!r} has {len(ps)} records: give at least 5, or pass val_data explicitly")
        tr[k], va[k] = ps.split(0.8, seed)
    return tr, va


def discover_circuit(
    model: HookedModel | LoadedModel,
    objective: str | Objective,
    data: dict[str, PromptSet],
    config: DiscoveryConfig | None = None,
    chat: ChatFormat | None = None,
    val_data: dict[str, PromptSet] | None = None,
) -> Circuit:
    """Learn binary masks over heads and neurons and return the circuit they remove.

    Model weights stay frozen (their ``requires_grad`` is restored afterwards); only mask logits
    train. The mask with the best validation behaviour is kept; training stops early after
    ``patience`` validations without improvement. The mask logits, optimiser and RNG state are
    checkpointed atomically (into the cache unless ``config.checkpoint_dir`` says otherwise: every
    ``checkpoint_every`` steps, every ``checkpoint_seconds`` and on Ctrl-C), so a rerun of the same
    discovery on the same model and data resumes where it stopped, or returns at once when it had
    finished.
    """
    config = config or DiscoveryConfig()
    name, lm = None, None
    if isinstance(model, LoadedModel):
        lm = model
        chat = chat or model.chat
        name = model.name
        model = model.model
    if chat is None:
        raise InputError("discover_circuit needs the model's chat format: pass a LoadedModel or chat=...")
    obj = get_objective(objective)
    return CircuitDiscovery(model, chat, obj, data, config, val_data, model_name=name, lm=lm).run()
