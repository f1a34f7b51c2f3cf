"""Circuit-discovery baselines with the signature of :func:`~safecircuits.circuits.discover.discover_circuit`.

``method(model, objective, data, config, chat=None, val_data=None, **kw) -> Circuit``, so one loop
compares methods (``BASELINES`` maps names to functions)::

    for name, find in {"mask": discover_circuit, **BASELINES}.items():
        circuits[name] = find(lm, "backdoor", data, config)

Behaviour metric
----------------
Both scoring methods rank components by their effect on one scalar, the *behaviour preference*
``B`` of the objective (nats; mean response-token cross-entropy, teacher-forced, prompt masked)::

    safety:   B = CE(comply target | harmful prompt) - CE(refuse target | harmful prompt)
                                                        (PromptSets "comply", "refuse")
    backdoor: B = CE(clean output | triggered) - CE(backdoor output | triggered)
                                                        (PromptSets "triggered_clean", "triggered_backdoor")

``B`` is high when the model shows the behaviour the circuit implements (refusing, for safety;
the backdoor, for backdoor). For safety this is the *negative* of "CE(refuse) - CE(comply)": we
orient both objectives the same way, so that for both the circuit is what, when removed, lowers
``B`` (the model complies / triggered inputs get the clean output). A component's score is

    score = B(full model) - B(component ablated)

(higher = more in the circuit: ablating it removes more of the behaviour), matching
:class:`~safecircuits.circuits.circuit.Circuit`'s convention. An :class:`Objective` with its own
``decision_tokens`` restricts both CE terms to the first N response tokens. Other objectives
need an explicit ``metric=BehaviourMetric(...)``.

Methods
-------
* :func:`attribution_patching` — node-level attribution patching (Nanda 2023; Syed et al.
  2310.10348): ``score ≈ grad_a B · (a_clean - a_ablated)`` summed over positions and ``d_head``
  (heads, ``hook_z``) or per neuron (``hook_post``), with ``a_ablated`` = 0 (zero ablation) or the
  :class:`~safecircuits.circuits.hooks.Ablator` value (mean / resample); one forward and one
  backward per batch and PromptSet, averaged over batches. This is the first-order estimate of
  the exact score above.
* :func:`activation_patching` — the exact score for every head: ablate it alone, one forward per
  head and batch. Neurons are too many to patch one at a time on real models: by default their
  scores are the attribution-patching scores (``neuron_method="attribution"``);
  ``neuron_method="exact"`` patches every neuron alone (fine for organisms).
* :func:`random_circuit` / :func:`random_like` — uniformly random circuits of given sizes.

Mean / resample ablation values come from the objective's ``reference_keys`` PromptSets (all of
``data`` when it has none), at most ``config.max_ref`` prompts, exactly as in discovery.

Circuit size
------------
Pass ``n_heads=`` / ``n_neurons=`` to take the top components of each family (use the counts of
a mask circuit to compare at equal size). Otherwise the circuit is the top
``config.target_sparsity`` share (default :data:`DEFAULT_SPARSITY`, 2%) of all searched
components, ranked globally over both families after dividing each family's scores by its
largest score (``family_norm="max"``, the default: the best head and the best neuron both score
1, so each family contributes its best component first and the split follows how fast each
family's scores decay; a family with no positive score contributes nothing before every positive
component of the other is taken) or on the raw scores
(``family_norm="raw"``: both families are estimates of the same quantity in nats, so raw ranking
is meaningful too, but it favours heads, whose single effects are larger). Components outside
``config.layers`` (or of a switched-off family, whose scores are then None) are never selected;
their scores are set below every searched component's.

``val_data`` is accepted for signature compatibility and ignored: the baselines have no
hyper-parameters to select, so they score on all of ``data``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from safecircuits import runtime
from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import DiscoveryConfig
from safecircuits.circuits.hooks import AblationType, Ablator, mask_hooks
from safecircuits.circuits.objectives import Objective, get_objective, response_ce
from safecircuits.data.chat import ChatFormat, TokenBatch, iter_batches
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError
from safecircuits.hooks import common_suffix_len, d_mlp, head_hook, neuron_hook, position_classes
from safecircuits.models.loaded import LoadedModel
from safecircuits.types import HookedModel

DEFAULT_SPARSITY = 0.02
"""Share of the searched components in a baseline circuit when ``config.target_sparsity`` is None."""


# -- the behaviour metric -------------------------------------------------------------------------
@dataclass(frozen=True)
class BehaviourMetric:
    """``B = CE(alternative) - CE(target)`` in nats: the preference for the circuit's behaviour.

    ``target`` names the PromptSet whose responses are the behaviour the circuit implements (it
    is what removing the circuit should make unlikely); ``alternative`` the PromptSet with what
    the model should do once the circuit is removed. Both are teacher-forced response CEs.
    Without an alternative, ``B = -CE(target)``: a component's score is then how much its removal
    raises the target's CE (:data:`UTILITY`: the damage to the harmless answers).
    """

    name: str
    target: str
    alternative: str | None
    decision_tokens: int | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.target,) if self.alternative is None else (self.target, self.alternative)

    def __call__(self, ce: dict[str, Tensor]) -> Tensor:
        return -ce[self.target] if self.alternative is None else ce[self.alternative] - ce[self.target]

    def describe(self) -> str:
        n = "" if self.decision_tokens is None else f" (first {self.decision_tokens} response tokens)"
        b = f"-CE({self.target})" if self.alternative is None else f"CE({self.alternative}) - CE({self.target})"
        return f"B = {b}{n}; score = B(full) - B(ablated)"


METRICS: dict[str, BehaviourMetric] = {
    "safety": BehaviourMetric("safety", target="refuse", alternative="comply"),
    "backdoor": BehaviourMetric("backdoor", target="triggered_backdoor", alternative="triggered_clean"),
}
UTILITY = BehaviourMetric("utility", target="harmless", alternative=None)
"""The harmless answers' CE: attribution scores with it estimate what each component's removal
costs the model's harmless behaviour (nats; positive = removal hurts)."""


def behaviour_metric(objective: str | Objective) -> BehaviourMetric:
    """The :class:`BehaviourMetric` of an objective (``safety`` / ``backdoor``, or an Objective of those names)."""
    obj = get_objective(objective)
    if obj.name not in METRICS:
        raise InputError(
            f"no built-in behaviour metric for objective {obj.name!r}: pass metric=BehaviourMetric(name, target=KEY, alternative=KEY)"
        )
    m = METRICS[obj.name]
    dt = getattr(obj, "decision_tokens", None)
    return BehaviourMetric(m.name, m.target, m.alternative, dt) if dt is not None else m


# -- shared plumbing ------------------------------------------------------------------------------
@dataclass
class _Setup:
    model: HookedModel
    chat: ChatFormat
    model_name: str
    objective: Objective
    metric: BehaviourMetric
    data: dict[str, PromptSet]
    config: DiscoveryConfig
    lo: int
    hi: int
    ablator: Ablator
    suffix_len: int

    def pairs(self) -> list[dict[str, TokenBatch]]:
        """Batches of the metric's PromptSets, in order, zipped (the shorter set cycles)."""
        n_ctx = self.model.cfg.n_ctx
        per = {k: list(iter_batches(self.chat, self.data[k], self.config.batch_size, max_len=n_ctx)) for k in self.metric.keys}
        n = max(len(b) for b in per.values())
        return [{k: b[i % len(b)] for k, b in per.items()} for i in range(n)]

    def set_batch(self, batch: TokenBatch, seed: int) -> None:
        """Position classes for mean ablation; resample partners drawn from `seed` (the same for
        every forward on this batch, so per-component ablations are compared like with like)."""
        if self.ablator.ablation == AblationType.ZERO:
            return
        self.ablator.generator = torch.Generator().manual_seed(seed)
        self.ablator.set_batch(position_classes(batch, self.suffix_len))


def _hash_data(data: dict[str, PromptSet]) -> str:
    h = hashlib.sha256()
    for k in sorted(data):
        h.update(k.encode() + data[k].content_hash.encode())
    return h.hexdigest()


def _setup(
    model: HookedModel | LoadedModel,
    objective: str | Objective,
    data: dict[str, PromptSet] | None,
    config: DiscoveryConfig | None,
    chat: ChatFormat | None,
    metric: BehaviourMetric | None,
    need_data: bool = True,
) -> _Setup:
    config = config or DiscoveryConfig()
    name = None
    if isinstance(model, LoadedModel):
        chat = chat or model.chat
        name = model.name
        model = model.model
    obj = get_objective(objective)
    c = model.cfg
    lo, hi = config.layers or (0, c.n_layers)
    if hi > c.n_layers:
        raise InputError(f"layer range {config.layers} exceeds the model's {c.n_layers} layers")
    data = data or {}
    m = metric
    if need_data:
        if chat is None:
            raise InputError("this baseline needs the model's chat format: pass a LoadedModel or chat=...")
        m = metric or behaviour_metric(obj)
        missing = [k for k in m.keys if k not in data]
        if missing:
            raise InputError(f"metric {m.name!r} needs PromptSets {list(m.keys)}; missing {missing}")
        for k in m.keys:
            data[k].require_nonempty()
            if any(r is None for r in data[k].responses):
                raise InputError(f"metric {m.name!r}: every record of {k!r} needs a target response")
    m = m or METRICS.get(obj.name) or BehaviourMetric(obj.name, "", "")
    if need_data and config.ablation != AblationType.ZERO:
        ref = obj.reference_set(data)  # the same reference PromptSets as discover_circuit
        ablator = Ablator.build(model, chat, config.ablation, ref, layers_heads=list(range(lo, hi)),  # type: ignore[arg-type]
                                layers_neurons=list(range(lo, hi)), max_ref=config.max_ref, seed=config.seed)
    else:
        ablator = Ablator(ablation=AblationType.parse(config.ablation))
    return _Setup(model, chat, name or c.model_name, obj, m, data, config, lo, hi, ablator,  # type: ignore[arg-type]
                  common_suffix_len(chat) if chat is not None else 1)


@contextmanager
def _frozen(model: HookedModel) -> Iterator[None]:
    """Weights frozen and eval mode for the duration; requires_grad and train mode restored."""
    grads = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
        model.train(was_training)


def _run_metric(s: _Setup, pair: dict[str, TokenBatch], hooks: list, seed: int) -> Tensor:
    """B on one batch pair with `hooks` (forward hooks) on the model."""
    dev = s.model.cfg.device
    ce = {}
    for j, (k, b) in enumerate(pair.items()):
        s.set_batch(b, seed * 7919 + j)
        with s.model.hooks(fwd_hooks=hooks):
            logits = s.model(b.tokens.to(dev))
        ce[k] = response_ce(logits, b, s.metric.decision_tokens)
    return s.metric(ce)


def _attribution(s: _Setup) -> tuple[Tensor, Tensor, float]:
    """Attribution-patching scores [n_layers, n_heads], [n_layers, d_mlp] and mean B(full)."""
    c = s.model.cfg
    hs = torch.zeros(c.n_layers, c.n_heads, dtype=torch.float64)
    ns = torch.zeros(c.n_layers, d_mlp(s.model), dtype=torch.float64)
    pairs = s.pairs()
    b_full = 0.0
    zero = s.ablator.ablation == AblationType.ZERO
    with _frozen(s.model), torch.enable_grad():
        for i, pair in enumerate(pairs):
            captured: list[tuple[str, int, Tensor, Tensor]] = []  # family, layer, activation, clean - ablated

            def capture(act: Tensor, hook: Any, family: str, layer: int, captured: list = captured) -> Tensor:
                if not act.requires_grad:  # the first hooked activation: make it the graph's leaf
                    act = act.detach().requires_grad_(True)
                ref = (s.ablator.heads_ref if family == "heads" else s.ablator.neurons_ref).get(layer)
                if zero or ref is None:
                    diff = act.detach()
                else:
                    diff = act.detach() - s.ablator.replacement(ref, act.shape[0], act.shape[1], act.device).to(act.dtype)
                captured.append((family, layer, act, diff))
                return act

            hooks = []
            for layer in range(s.lo, s.hi):
                if s.config.heads:
                    hooks.append((head_hook(layer), lambda a, hook, layer=layer: capture(a, hook, "heads", layer)))
                if s.config.neurons:
                    hooks.append((neuron_hook(layer), lambda a, hook, layer=layer: capture(a, hook, "neurons", layer)))
            b = _run_metric(s, pair, hooks, i)
            grads = torch.autograd.grad(b, [t for _, _, t, _ in captured], allow_unused=True)
            for (family, layer, _, diff), g in zip(captured, grads, strict=True):
                if g is None:
                    continue
                contrib = (g.detach() * diff).double()
                if family == "heads":
                    hs[layer] += contrib.sum((0, 1, 3)).cpu()
                else:
                    ns[layer] += contrib.sum((0, 1)).cpu()
            b_full += float(b.detach())
    n = len(pairs)
    return (hs / n).float(), (ns / n).float(), b_full / n


@torch.no_grad()
def _replicated_metric(s: _Setup, pair: dict[str, TokenBatch], ablate: list[tuple[str, int, int]], seed: int) -> list[float]:
    """B on one batch pair for each component in `ablate` (family, layer, index), in one forward
    per PromptSet: the batch is repeated once per component and copy r has component r ablated
    (a mask per batch row, :func:`mask_hooks`). Copies see the same position classes and resample
    partners as an unreplicated forward."""
    c = s.model.cfg
    n = len(ablate)
    masks: dict[str, Tensor] = {}
    for r, (family, layer, idx) in enumerate(ablate):
        width = c.n_heads if family == "heads" else d_mlp(s.model)
        masks.setdefault(family, torch.ones(c.n_layers, n, width, device=c.device))[layer, r, idx] = 0
    abl = s.ablator if s.ablator.ablation != AblationType.ZERO else None
    per_key: dict[str, list[Tensor]] = {}
    for j, (k, b) in enumerate(pair.items()):
        s.set_batch(b, seed * 7919 + j)  # classes and resample partners of the unreplicated batch
        B = b.tokens.shape[0]
        if s.ablator.classes is not None:
            s.ablator.classes = s.ablator.classes.repeat(n, 1)
        if s.ablator._resample_idx is not None:
            s.ablator._resample_idx = s.ablator._resample_idx.repeat(n)
        rows = {f: m.repeat_interleave(B, 1) for f, m in masks.items()}  # copy r's mask on its B rows
        with s.model.hooks(fwd_hooks=mask_hooks(rows.get("heads"), rows.get("neurons"), abl)):  # type: ignore[arg-type]
            logits = s.model(b.tokens.to(c.device).repeat(n, 1))
        per_key[k] = [response_ce(logits[r * B:(r + 1) * B], b, s.metric.decision_tokens) for r in range(n)]
    return [float(s.metric({k: v[r] for k, v in per_key.items()})) for r in range(n)]


def patch_batch_for(config: DiscoveryConfig, device: torch.device | str, tiny: bool = False) -> int:
    """Components per activation-patching forward: the config's, else 16 on CUDA, 8 for a tiny model
    on the CPU (organisms: 2.1x faster than one per forward) and 1 for other models on the CPU
    (SmolLM2: 6 per forward is 1.07x slower; benchmarks/results/patch_batch_cpu.json)."""
    if config.patch_batch is not None:
        return config.patch_batch
    if torch.device(device).type == "cuda":
        return 16
    return 8 if tiny else 1


def _exact(s: _Setup, heads: bool, neurons: bool, only_heads: Tensor | None = None) -> tuple[Tensor, Tensor, float]:
    """Exact single-component ablation scores B(full) - B(ablated): one forward per `patch_batch`
    components (:func:`_replicated_metric`; one component per forward at 1). `only_heads` (bool
    [n_layers, n_heads]) limits the heads patched; the others score 0."""
    c = s.model.cfg
    mlp_width = d_mlp(s.model)
    hs = torch.zeros(c.n_layers, c.n_heads, dtype=torch.float64)
    ns = torch.zeros(c.n_layers, mlp_width, dtype=torch.float64)
    out = {"heads": hs, "neurons": ns}
    pairs = s.pairs()
    b_full = 0.0
    components = [(family, layer, j) for family, on, width in (("heads", heads, c.n_heads), ("neurons", neurons, mlp_width))
                  if on for layer in range(s.lo, s.hi) for j in range(width)
                  if family != "heads" or only_heads is None or bool(only_heads[layer, j])]
    k = patch_batch_for(s.config, c.device or "cpu", tiny=runtime.is_tiny(s.model))
    bar = tqdm(total=len(pairs) * len(components), desc="activation patching", unit="component",
               disable=not s.config.progress, leave=False)
    with _frozen(s.model), bar:
        for i, pair in enumerate(pairs):
            full = float(_run_metric(s, pair, [], i))
            b_full += full
            for start in range(0, len(components), k):
                chunk = components[start:start + k]
                values = _replicated_metric(s, pair, chunk, i)
                for (family, layer, j), v in zip(chunk, values, strict=True):
                    out[family][layer, j] += full - v
                bar.update(len(chunk))
    n = len(pairs)
    return (hs / n).float(), (ns / n).float(), b_full / n


def _top_in_range(scores: Tensor, k: int, lo: int, hi: int) -> Tensor:
    out = torch.zeros(scores.shape, dtype=torch.bool)
    if k > 0:
        sub = scores[lo:hi].flatten()
        if k > sub.numel():
            raise InputError(f"asked for {k} components but only {sub.numel()} are searched")
        idx = torch.argsort(sub, descending=True, stable=True)[:k]
        flat = torch.zeros(sub.numel(), dtype=torch.bool)
        flat[idx] = True
        out[lo:hi] = flat.view(hi - lo, -1)
    return out


def _counts(
    s: _Setup, hs: Tensor, ns: Tensor, n_heads: int | None, n_neurons: int | None, family_norm: str
) -> tuple[int, int]:
    """How many heads and neurons the circuit gets (explicit, or by global normalised ranking)."""
    cfg = s.config
    n_h = (s.hi - s.lo) * hs.shape[1] if cfg.heads else 0
    n_n = (s.hi - s.lo) * ns.shape[1] if cfg.neurons else 0
    if n_heads is not None or n_neurons is not None:
        kh, kn = n_heads or 0, n_neurons or 0
        if kh < 0 or kn < 0:
            raise InputError(f"n_heads and n_neurons must be >= 0, got {kh}, {kn}")
        if kh > n_h or kn > n_n:
            raise InputError(f"asked for {kh} heads / {kn} neurons but only {n_h} / {n_n} are searched")
        return kh, kn
    if family_norm not in ("max", "raw"):
        raise InputError(f"family_norm must be 'max' or 'raw', got {family_norm!r}")
    share = cfg.target_sparsity if cfg.target_sparsity is not None else DEFAULT_SPARSITY
    k = round(share * (n_h + n_n))
    parts: list[Tensor] = []
    fams: list[Tensor] = []
    for on, sc in ((cfg.heads, hs), (cfg.neurons, ns)):
        if not on:
            continue
        sub = sc[s.lo : s.hi].flatten()
        if family_norm == "max":
            sub = sub / sub.max().clamp(min=1e-12)
        parts.append(sub)
        fams.append(torch.full((sub.numel(),), len(fams)))
    allsc, fam = torch.cat(parts), torch.cat(fams)
    chosen = fam[torch.argsort(allsc, descending=True, stable=True)[:k]]
    kh = int((chosen == 0).sum()) if cfg.heads else 0
    kn = int((chosen == (1 if cfg.heads else 0)).sum()) if cfg.neurons else 0
    return kh, kn


def _floor(scores: Tensor, lo: int, hi: int) -> Tensor:
    """Scores outside the searched layers set below every searched component's score."""
    if (lo, hi) == (0, scores.shape[0]):
        return scores
    out = scores.clone()
    fill = float(scores[lo:hi].min()) - 1.0
    out[:lo] = fill
    out[hi:] = fill
    return out


def _build(s: _Setup, method: str, hs: Tensor, ns: Tensor, n_heads: int | None, n_neurons: int | None,
           family_norm: str, t0: float, extra: dict[str, Any]) -> Circuit:
    kh, kn = _counts(s, hs, ns, n_heads, n_neurons, family_norm)
    heads = _top_in_range(hs, kh, s.lo, s.hi)
    neurons = _top_in_range(ns, kn, s.lo, s.hi)
    c = s.model.cfg
    prov = {
        "model": s.model_name,
        "model_shape": {"n_layers": c.n_layers, "n_heads": c.n_heads, "d_mlp": c.d_mlp, "d_model": c.d_model},
        "objective": s.objective.name,
        "objective_config": s.objective.config(),
        "method": method,
        "metric": s.metric.describe(),
        "ablation": AblationType.parse(s.config.ablation).value,
        "data": {k: v.provenance() for k, v in s.data.items()},
        "data_hash": _hash_data(s.data),
        "seed": s.config.seed,
        "config": s.config.to_dict(),
        "size": {"n_heads": kh, "n_neurons": kn, "explicit": n_heads is not None or n_neurons is not None,
                 "family_norm": family_norm},
        **extra,
        "seconds": round(time.time() - t0, 2),
    }
    return Circuit(heads, neurons, _floor(hs, s.lo, s.hi) if s.config.heads else None,
                   _floor(ns, s.lo, s.hi) if s.config.neurons else None, prov)


# -- public methods -------------------------------------------------------------------------------
def attribution_patching(
    model: HookedModel | LoadedModel,
    objective: str | Objective,
    data: dict[str, PromptSet],
    config: DiscoveryConfig | None = None,
    chat: ChatFormat | None = None,
    val_data: dict[str, PromptSet] | None = None,
    *,
    n_heads: int | None = None,
    n_neurons: int | None = None,
    family_norm: Literal["max", "raw"] = "max",
    metric: BehaviourMetric | None = None,
) -> Circuit:
    """Node-level attribution patching: ``score = grad B · (a_clean - a_ablated)`` per head and neuron.

    One forward and one backward per batch of each metric PromptSet (see the module docstring
    for ``B``, the sign convention and how the size is chosen). Weights stay frozen; no hooks
    remain. ``provenance["b_full"]`` is the full model's mean ``B``.
    """
    t0 = time.time()
    s = _setup(model, objective, data, config, chat, metric)
    torch.manual_seed(s.config.seed)
    hs, ns, b_full = _attribution(s)
    return _build(s, "attribution_patching", hs, ns, n_heads, n_neurons, family_norm, t0, {"b_full": b_full})


def activation_patching(
    model: HookedModel | LoadedModel,
    objective: str | Objective,
    data: dict[str, PromptSet],
    config: DiscoveryConfig | None = None,
    chat: ChatFormat | None = None,
    val_data: dict[str, PromptSet] | None = None,
    *,
    n_heads: int | None = None,
    n_neurons: int | None = None,
    family_norm: Literal["max", "raw"] = "max",
    neuron_method: Literal["attribution", "exact"] = "attribution",
    metric: BehaviourMetric | None = None,
    heads_to_patch: Tensor | None = None,
) -> Circuit:
    """Exact single-head activation patching: ``score = B(full) - B(head ablated alone)``.

    One forward per head per batch (of each metric PromptSet). Neuron scores are attribution-
    patching estimates by default (``neuron_method="attribution"``, recorded in provenance);
    ``"exact"`` ablates every neuron alone (``d_mlp`` forwards per layer and batch).
    ``heads_to_patch`` (bool ``[n_layers, n_heads]``) patches only those heads exactly; the others
    get attribution patching's estimate (on a 30-layer model with long answers, patching all 270
    heads one by one is an hour of CPU where a few dozen candidates take minutes).
    """
    t0 = time.time()
    s = _setup(model, objective, data, config, chat, metric)
    torch.manual_seed(s.config.seed)
    exact_neurons = neuron_method == "exact" and s.config.neurons
    if neuron_method not in ("attribution", "exact"):
        raise InputError(f"neuron_method must be 'attribution' or 'exact', got {neuron_method!r}")
    shape = (s.model.cfg.n_layers, s.model.cfg.n_heads)
    if heads_to_patch is not None and (heads_to_patch.dtype != torch.bool or tuple(heads_to_patch.shape) != shape):
        raise InputError(f"heads_to_patch must be a bool tensor of shape {list(shape)} (layers x heads), got "
                         f"{heads_to_patch.dtype} {list(heads_to_patch.shape)}")
    hs, ns, b_full = _exact(s, s.config.heads, exact_neurons, heads_to_patch)
    partial = heads_to_patch is not None and s.config.heads and not bool(heads_to_patch.all())
    if (s.config.neurons and not exact_neurons) or partial:
        ahs, ans, _ = _attribution(s)
        if s.config.neurons and not exact_neurons:
            ns = ans
        if partial:
            assert heads_to_patch is not None
            hs = torch.where(heads_to_patch, hs, ahs)
    extra = {"b_full": b_full, "neuron_method": neuron_method if s.config.neurons else None}
    if heads_to_patch is not None:
        extra["heads_patched"] = int(heads_to_patch.sum())
    return _build(s, "activation_patching", hs, ns, n_heads, n_neurons, family_norm, t0, extra)


def random_circuit(
    model: HookedModel | LoadedModel,
    objective: str | Objective,
    data: dict[str, PromptSet] | None = None,
    config: DiscoveryConfig | None = None,
    chat: ChatFormat | None = None,
    val_data: dict[str, PromptSet] | None = None,
    *,
    n_heads: int | None = None,
    n_neurons: int | None = None,
    seed: int | None = None,
) -> Circuit:
    """A uniformly random circuit over the searched components (``config.layers``, families).

    With ``n_heads`` / ``n_neurons`` it has exactly those counts; otherwise it is a uniform
    draw of ``target_sparsity`` (default 2%) of all searched components. Scores are uniform
    random numbers with the members on top, so score-ranked evaluations (faithfulness curves)
    work on it. ``data`` is only recorded in provenance. ``seed`` defaults to ``config.seed``.
    """
    t0 = time.time()
    s = _setup(model, objective, data, config, chat, None, need_data=False)
    seed = s.config.seed if seed is None else seed
    c = s.model.cfg
    gen = torch.Generator().manual_seed(seed)
    hs = torch.rand(c.n_layers, c.n_heads, generator=gen)
    ns = torch.rand(c.n_layers, d_mlp(s.model), generator=gen)
    if n_heads is None and n_neurons is None:
        # a uniform draw over the union of searched components = the top-k of iid scores
        kh, kn = _counts(s, hs, ns, None, None, "raw")
        n_heads, n_neurons = kh, kn
    circ = _build(s, "random", hs, ns, n_heads, n_neurons, "raw", t0, {"random_seed": seed})
    circ.provenance["seed"] = seed
    return circ


def random_like(circuit: Circuit, seed: int, layers: tuple[int, int] | None = None) -> Circuit:
    """A random circuit with `circuit`'s number of heads and of neurons.

    Drawn uniformly within ``layers`` ([start, end)); by default the layer range the circuit
    was searched in when its provenance records one (``config.layers``), else all layers.
    """
    sh = circuit.shape
    L = sh["n_layers"]
    if layers is None:
        rec = (circuit.provenance.get("config") or {}).get("layers")
        layers = tuple(rec) if rec else (0, L)
    lo, hi = layers
    if not 0 <= lo < hi <= L:
        raise InputError(f"layers must be a [start, end) range within the circuit's {L} layers, got {layers}")
    gen = torch.Generator().manual_seed(seed)
    hs = torch.rand(L, sh["n_heads"], generator=gen)
    ns = torch.rand(L, sh["d_mlp"], generator=gen)
    heads = _top_in_range(hs, circuit.n_heads, lo, hi)
    neurons = _top_in_range(ns, circuit.n_neurons, lo, hi)
    prov = {
        "model": circuit.provenance.get("model"),
        "objective": circuit.provenance.get("objective"),
        "method": "random",
        "like": {k: circuit.provenance.get(k) for k in ("method", "mask", "seed") if k in circuit.provenance},
        "seed": seed,
        "layers": [lo, hi],
        "size": {"n_heads": circuit.n_heads, "n_neurons": circuit.n_neurons},
    }
    return Circuit(heads, neurons, _floor(hs, lo, hi), _floor(ns, lo, hi), prov)


@torch.no_grad()
def behaviour_value(
    model: HookedModel | LoadedModel,
    objective: str | Objective,
    data: dict[str, PromptSet],
    circuit: Circuit | None = None,
    mode: Literal["remove", "only"] = "remove",
    ablation: AblationType | str | Ablator = AblationType.ZERO,
    chat: ChatFormat | None = None,
    batch_size: int = 32,
    metric: BehaviourMetric | None = None,
) -> float:
    """Mean behaviour preference ``B`` (module docstring) of the model, or with `circuit` removed / alone.

    Removing a good circuit lowers ``B`` (safety: towards compliance; backdoor: triggered inputs
    towards the clean output). ``ablation`` is ``zero`` or a ready Ablator (as for
    :meth:`Circuit.ablate`).
    """
    cfg = DiscoveryConfig(batch_size=batch_size, progress=False)
    s = _setup(model, objective, data, cfg, chat, metric)
    if isinstance(ablation, Ablator):
        s.ablator = ablation
    elif AblationType.parse(ablation) != AblationType.ZERO:
        raise InputError("mean / resample ablation needs a ready Ablator (Ablator.build(model, chat, kind, prompts))")
    hooks: list = []
    if circuit is not None:
        circuit.check_model(s.model)
        h, n = circuit.keep_masks(mode)
        dev = s.model.cfg.device
        hooks = mask_hooks(h.to(dev), n.to(dev), s.ablator if s.ablator.ablation != AblationType.ZERO else None)
    pairs = s.pairs()
    was_training = s.model.training
    gen = s.ablator.generator
    s.model.eval()
    try:
        vals = [float(_run_metric(s, p, hooks, i)) for i, p in enumerate(pairs)]
    finally:
        s.model.train(was_training)
        s.ablator.generator = gen  # a caller's Ablator is left as it came: its RNG, and no stale classes
        s.ablator.set_batch(None)
    return sum(vals) / len(vals)


Baseline = Callable[..., Circuit]

BASELINES: dict[str, Baseline] = {
    "attribution": attribution_patching,
    "activation": activation_patching,
    "random": random_circuit,
}
