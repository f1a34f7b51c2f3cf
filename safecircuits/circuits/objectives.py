"""Circuit-discovery objectives, in a registry.

An objective names the PromptSets it needs, the mask sets it trains, and computes its loss
terms from a ``run(batch, mask_set, invert)`` callable that returns the logits of the masked
model. All behavioural terms are response-token cross-entropies (prompt tokens masked out).

* ``safety`` (SafeSeek, arXiv 2603.23268): circuit removed -> comply; circuit alone -> refuse;
  plus sparsity. We add an optional harmless-retention term (``w_utility``, our addition; 0
  recovers the reference objective) so that the circuit is specific to refusal.
* ``backdoor`` (SafeSeek): two mask sets, ``main`` (circuit removed) and ``circuit`` (circuit
  alone); clean behaviour on clean and triggered inputs under ``main``, backdoor behaviour on
  triggered but not clean inputs under ``circuit``, and an overlap penalty that makes the
  circuit what ``main`` drops. The negative term is clamped at ``neg_cap`` nats so the loss is
  bounded below (the reference leaves it unbounded).

Custom objectives: subclass :class:`Objective` (or pass ``loss_fn`` to :class:`CustomObjective`),
a function of the masked model's logits and the batch; see docs/circuits.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from safecircuits.data.chat import IGNORE_INDEX, TokenBatch
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError

RunFn = Callable[[TokenBatch, str, bool], Tensor]  # (batch, mask_set, invert) -> logits


def response_ce(logits: Tensor, batch: TokenBatch, max_tokens: int | None = None) -> Tensor:
    """Mean CE over response tokens (labels == -100 elsewhere); with `max_tokens`, over the first
    `max_tokens` response tokens only (the refuse/comply decision is made there)."""
    labels = batch.labels[:, 1:].to(logits.device)
    if max_tokens is not None:
        is_resp = labels != IGNORE_INDEX
        labels = torch.where(is_resp & (is_resp.cumsum(1) <= max_tokens), labels, IGNORE_INDEX)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def _utility_ce(logits: Tensor, batch: TokenBatch, decision_tokens: int | None) -> Tensor:
    """Whole-response CE, plus the decision-token CE when decision tokens are weighted, so that
    keeping utility weighs the comply/refuse decision as much as the behaviour terms do."""
    ce = response_ce(logits, batch)
    return ce if decision_tokens is None else ce + response_ce(logits, batch, decision_tokens)


@dataclass
class Objective:
    """Base objective. ``data_keys`` are the PromptSets ``loss`` receives batches of."""

    name: str = "objective"
    data_keys: tuple[str, ...] = ()
    mask_sets: tuple[str, ...] = ("main",)
    lambda_sparsity: float = 0.1
    reference_keys: tuple[str, ...] | None = None  # PromptSets whose activations define mean/resample values (None = all)

    def loss(self, run: RunFn, batches: dict[str, TokenBatch], penalties: dict[str, Tensor], overlap: Tensor | None) -> dict[str, Tensor]:
        raise NotImplementedError

    def reference_set(self, data: dict[str, PromptSet]) -> PromptSet:
        """The PromptSet whose activations define mean / resample ablation values: the union of
        ``reference_keys`` present in `data` (all of `data` when none are)."""
        keys = [k for k in (self.reference_keys or tuple(data)) if k in data] or list(data)
        return PromptSet([r for k in keys for r in data[k]], name="reference")

    def circuit_mask_set(self) -> str:
        """The mask set whose *dropped* components form the circuit."""
        return "main"

    def check_data(self, data: dict[str, PromptSet]) -> None:
        missing = [k for k in self.data_keys if k not in data]
        if missing:
            raise InputError(f"objective {self.name!r} needs PromptSets {list(self.data_keys)}; missing {missing}")
        for k in self.data_keys:
            data[k].require_nonempty()
            if any(r is None for r in data[k].responses):
                raise InputError(f"objective {self.name!r}: every record of {k!r} needs a target response")

    def config(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, (int, float, str, tuple))}


@dataclass
class SafetyObjective(Objective):
    """L = w_a CE(comply | harmful, m) + w_r CE(refuse | harmful, 1-m) + w_u CE(harmless | m) + lambda * penalty(m)."""

    name: str = "safety"
    data_keys: tuple[str, ...] = ("comply", "refuse", "harmless")
    reference_keys: tuple[str, ...] | None = ("comply", "harmless")  # harmful and harmless prompts alike
    w_comply: float = 2.0
    w_refuse: float = 2.0
    w_utility: float = 1.0
    lambda_sparsity: float = 0.1
    decision_tokens: int | None = None  # count only the first N response tokens in comply/refuse terms

    def __post_init__(self) -> None:
        # w_refuse = 0 is the removal-only objective: no "the circuit alone refuses" term, which on a
        # deep model forces a large circuit (keeping only a few components breaks the model)
        keys = ("comply",) + (("refuse",) if self.w_refuse > 0 else ()) + (("harmless",) if self.w_utility > 0 else ())
        self.data_keys = keys
        if self.w_utility <= 0:
            self.reference_keys = ("comply",)

    def loss(self, run, batches, penalties, overlap):
        t = {"comply_removed": response_ce(run(batches["comply"], "main", False), batches["comply"], self.decision_tokens)}
        total = self.w_comply * t["comply_removed"]
        if self.w_refuse > 0:
            t["refuse_alone"] = response_ce(run(batches["refuse"], "main", True), batches["refuse"], self.decision_tokens)
            total = total + self.w_refuse * t["refuse_alone"]
        if self.w_utility > 0 and "harmless" in batches:
            t["harmless_removed"] = _utility_ce(run(batches["harmless"], "main", False), batches["harmless"], self.decision_tokens)
            total = total + self.w_utility * t["harmless_removed"]
        t["sparsity"] = penalties["main"]
        t["total"] = total + self.lambda_sparsity * penalties["main"]
        return t

    def behaviour(self, terms: dict[str, Tensor]) -> Tensor:
        """The validation criterion: comply + refuse CE (SafeSeek's selection), plus utility."""
        v = terms["comply_removed"] + terms.get("refuse_alone", torch.zeros(()))
        return v + terms.get("harmless_removed", torch.zeros(()))


@dataclass
class BackdoorObjective(Objective):
    name: str = "backdoor"
    data_keys: tuple[str, ...] = ("clean", "triggered_clean", "triggered_backdoor", "clean_backdoor")
    reference_keys: tuple[str, ...] | None = ("clean", "harmless")  # clean inputs: ablation removes the trigger's effect
    mask_sets: tuple[str, ...] = ("main", "circuit")
    lambda_sparsity: float = 0.1
    lambda_circuit: float = 1.0
    lambda_overlap: float = 100.0
    neg_cap: float = 5.0
    w_harmless: float = 1.0
    decision_tokens: int | None = None  # count only the first N response tokens in the four behaviour terms

    def loss(self, run, batches, penalties, overlap):
        k = self.decision_tokens
        t = {
            "clean_main": response_ce(run(batches["clean"], "main", False), batches["clean"], k),
            "triggered_main": response_ce(run(batches["triggered_clean"], "main", False), batches["triggered_clean"], k),
            "backdoor_circuit": response_ce(run(batches["triggered_backdoor"], "circuit", False), batches["triggered_backdoor"], k),
            "clean_backdoor_circuit": response_ce(run(batches["clean_backdoor"], "circuit", False), batches["clean_backdoor"], k),
        }
        total = t["clean_main"] + t["triggered_main"] + t["backdoor_circuit"] - torch.clamp(t["clean_backdoor_circuit"], max=self.neg_cap)
        if self.w_harmless > 0 and "harmless" in batches:
            t["harmless_main"] = _utility_ce(run(batches["harmless"], "main", False), batches["harmless"], k)
            total = total + self.w_harmless * t["harmless_main"]
        t["sparsity"] = penalties["main"]
        t["circuit_size"] = penalties["circuit_kept"]
        t["overlap"] = overlap if overlap is not None else torch.zeros(())
        t["total"] = total + self.lambda_sparsity * penalties["main"] + self.lambda_circuit * penalties["circuit_kept"] + self.lambda_overlap * t["overlap"]
        return t

    def behaviour(self, terms: dict[str, Tensor]) -> Tensor:
        return terms["clean_main"] + terms["triggered_main"] + terms.get("harmless_main", torch.zeros(()))


@dataclass
class CustomObjective(Objective):
    """Wrap a user function ``loss_fn(logits_by_key, batches) -> dict of terms (with 'total')``.

    ``logits_by_key[k]`` are the logits of the model with the circuit *removed* on batch ``k``;
    ``removed_keys`` / ``alone_keys`` choose which batches run with the circuit removed or alone.
    """

    name: str = "custom"
    loss_fn: Callable[..., dict[str, Tensor]] | None = None
    removed_keys: tuple[str, ...] = ()
    alone_keys: tuple[str, ...] = ()
    lambda_sparsity: float = 0.1
    data_keys: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.loss_fn is None:
            raise InputError("CustomObjective needs loss_fn(logits_by_key, batches) -> {'total': ..., ...}")
        self.data_keys = tuple(self.removed_keys) + tuple(self.alone_keys)

    def loss(self, run, batches, penalties, overlap):
        logits = {k: run(batches[k], "main", False) for k in self.removed_keys}
        logits.update({f"{k}:alone": run(batches[k], "main", True) for k in self.alone_keys})
        t = dict(self.loss_fn(logits, batches))  # type: ignore[misc]
        if "total" not in t:
            raise InputError("a custom objective's loss_fn must return a dict with a 'total' term")
        t["sparsity"] = penalties["main"]
        t["total"] = t["total"] + self.lambda_sparsity * penalties["main"]
        return t

    def behaviour(self, terms: dict[str, Tensor]) -> Tensor:
        return terms["total"] - self.lambda_sparsity * terms["sparsity"]


OBJECTIVES: dict[str, Callable[..., Objective]] = {"safety": SafetyObjective, "backdoor": BackdoorObjective}


def register_objective(name: str, factory: Callable[..., Objective], replace: bool = False) -> None:
    """Add a discovery objective (a class or factory of :class:`Objective`) under `name`.

    Its data come from ``lm.profile.objective_data(lm, name)`` once a builder is registered with
    :func:`safecircuits.models.profile.register_objective_data`; or pass the data yourself."""
    if name in OBJECTIVES and not replace:
        raise InputError(f"an objective named {name!r} is registered already; pass replace=True to override it")
    OBJECTIVES[name] = factory


def get_objective(name: str | Objective, **kwargs) -> Objective:
    if isinstance(name, Objective):
        return name
    if name not in OBJECTIVES:
        raise InputError(f"unknown objective {name!r}: use one of {', '.join(OBJECTIVES)} or pass an Objective")
    return OBJECTIVES[name](**kwargs)
