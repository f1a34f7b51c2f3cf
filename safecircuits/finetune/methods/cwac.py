"""CWAC: Coupled Weight and Activation Constraints (arXiv 2604.12384, ACL 2026; no public code).

The paper couples (1) a precomputed safety subspace enforced on the weight updates and
(2) targeted regularisation of safety-critical SAE features. Its formulas are not public; this is
our design (docs/finetune.md, "CWAC"):

(1) **Update projection** (``transform_update``). After every optimiser step the update
``Δ = W_after - W_before`` of each subspace weight is replaced by its component orthogonal to
the safety subspace, in the ``[d_out, d_in]`` matrix view (``safecircuits.models.weights``):

* ``basis="weights"``: U (output) and V (input) are the top-``rank`` singular vectors of the
  alignment delta ``W_aligned - W_base`` (``ctx.artifacts["subspace"]``);
  ``side="out"``: ``Δ <- (I - U U^T) Δ``; ``side="in"``: ``Δ <- Δ (I - V V^T)``;
  ``side="both"`` (default): ``Δ <- (I - U U^T) Δ (I - V V^T)``.
* ``basis="activations"`` (default, tuned on val): a residual-stream basis ``B [d_model, k]``
  (``ctx.artifacts["activation_subspace"]``: an ActivationSubspace, refusal direction or tensor;
  without it, the top-2 output directions of every W_O / W_out alignment delta) is removed from
  the residual side of every parameter touching the residual stream: the update can no longer
  write into B (W_O, W_out, W_E, W_pos, b_O, b_out: ``Δ <- (I - B B^T) Δ``) nor read from B
  (W_Q, W_K, W_V, W_in, W_U: ``Δ <- Δ (I - B B^T)``).

The projection is applied to the realised update, so it holds for any optimiser (AdamW's
weight decay included) and the weights stay at ``W_aligned + (I - P) (sum of updates)``.

(2) **Feature anchoring** (``extra_loss``). With S the top-``k`` safety SAE features
(``ctx.artifacts["features"]``), every step draws a batch of safety prompts (``ctx.safety_prompts``;
by default only the harmful ones with their refusals, ``anchor_on="harmful"``; ``"all"`` adds the
harmless ones with their answers, which fights any task that changes harmless answers),
teacher-forced, and adds

    λ · Σ_{x,t} ||f_S(x_t; θ) - f_S(x_t; θ_ref)||² / Σ_{x,t} ||f_S(x_t; θ_ref)||²

over post-instruction positions t (the last prompt token and every response token).
The aligned values f_S(x; θ_ref) are computed once in ``setup`` from ``ctx.reference``.
Normalising by the reference energy makes λ scale-free (a relative drift). ``anchor_every = m``
applies the anchor every m-th step with weight m·λ (same expected pull, 1/m of its cost).
``anchor_source="train"`` is the cheap variant: no safety batch; the loop's own training
forward is captured at the SAE hook and the features at each training example's last prompt
token (the decision point) are anchored to the reference's (cached per prompt), with λ = 15.
It costs ~nothing but, with no harmful prompt in the data (p = 0), it suppresses the harm
features on harmless prompts and with them refusal (docs/finetune.md), so it is not the default.

``cwac`` = (1) + (2); ``cwac-weights-only`` = (1); ``cwac-acts-only`` = (2). Full fine-tuning, so
accuracy is comparable with ``sft``. Defaults (val-tuned on organism:aligned): ``basis="activations"``,
``anchor_source="safety"``, ``lam=50``, ``k=16``, ``safety_batch=16``; measured figures in docs/finetune.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from safecircuits.data.chat import TokenBatch, encode_batch
from safecircuits.errors import InputError
from safecircuits.finetune.base import FinetuneContext, Method
from safecircuits.finetune.methods.posthoc import factors_for, residual_basis
from safecircuits.models.weights import as_matrix, from_matrix, weight_kind

__all__ = ["CWAC", "CWACActsOnly", "CWACConfig", "CWACWeightsOnly", "project_matrix", "project_residual"]

_READS_RESIDUAL = ("W_Q", "W_K", "W_V", "W_in", "W_gate")
_WRITES_RESIDUAL = ("W_O", "W_out")


def project_matrix(
    m: Float[Tensor, "d_out d_in"],
    u: Float[Tensor, "d_out r"] | None,
    v: Float[Tensor, "d_in r2"] | None,
    side: str = "both",
) -> Float[Tensor, "d_out d_in"]:
    """``(I - U U^T) M``, ``M (I - V V^T)`` or both, for orthonormal U, V (never forms d x d)."""
    if side not in ("out", "in", "both"):
        raise InputError(f"side must be 'out', 'in' or 'both', got {side!r}")
    out = m
    if side in ("out", "both") and u is not None:
        out = out - u @ (u.T @ out)
    if side in ("in", "both") and v is not None:
        out = out - (out @ v) @ v.T
    return out


# Non-layer parameters that touch the residual stream, and which axis is d_model.
_RESIDUAL_LAST = ("embed.W_E", "pos_embed.W_pos", ".attn.b_O", ".mlp.b_out")  # write to the residual (d_model last)
_RESIDUAL_FIRST = ("unembed.W_U",)  # reads the residual (d_model first)


def project_residual(name: str, delta: Tensor, basis: Float[Tensor, "d_model k"]) -> Tensor:
    """Remove the residual-stream basis from the side of `name` that touches the residual stream
    (layer weights, and the embeddings, unembedding and output biases); other parameters pass."""
    b = basis.to(delta.dtype).to(delta.device)
    if name.endswith(_RESIDUAL_LAST):
        return delta - (delta @ b) @ b.T
    if name.endswith(_RESIDUAL_FIRST):
        return delta - b @ (b.T @ delta)
    try:
        kind = weight_kind(name)
    except ValueError:
        return delta
    m = as_matrix(name, delta)
    if kind in _WRITES_RESIDUAL:
        m = m - b @ (b.T @ m)
    elif kind in _READS_RESIDUAL:
        m = m - (m @ b) @ b.T
    else:  # pragma: no cover - weight_kind only returns the kinds above
        return delta
    return from_matrix(name, m, delta.shape)


@dataclass
class CWACConfig:
    """CWAC's hyperparameters (module docstring; defaults val-tuned on organism:aligned)."""

    rank: int = 8  # basis="weights": singular directions of the alignment delta per weight
    side: str = "both"  # basis="weights": project the output side, the input side or both
    basis: str = "activations"  # "activations" (a residual-stream basis) or "weights" (per-weight delta subspaces)
    lam: float | None = None  # feature-anchor weight; None = the tuned default of the anchor source (50, or 15 for "train")
    k: int = 16  # top safety features anchored
    safety_batch: int = 16  # safety prompts per anchor step
    anchor_on: str = "harmful"  # anchor on the harmful safety prompts only, or on "all"
    anchor_every: int = 1  # anchor every m-th step with weight m * lam
    anchor_source: str = "safety"  # "safety": a safety batch per step; "train": the training batch's decision points
    # a saved FeatureSet (FeatureSet.save; its SAE at sae_path) to anchor instead of ctx.artifacts["features"]:
    # how a benchmark or tuning grid chooses the anchor layer (e.g. an SAE trained at an intermediate layer);
    # "{fingerprint}" in the path stands for the first 8 hex digits of the fine-tuned model's weights fingerprint
    features: str | None = None
    # basis="activations": build B from the per-layer bases (ctx.artifacts["activation_bases"],
    # [n_layers + 1, d_model, k]) at these residual streams only ("20-26", "24,26"; None = every
    # one) and with the first basis_k PCs of each (None = all): the basis size the tuning varies
    basis_layers: str | None = None
    basis_k: int | None = None

    def __post_init__(self) -> None:
        if self.lam is None:
            self.lam = 15.0 if self.anchor_source == "train" else 50.0
        if self.side not in ("out", "in", "both"):
            raise InputError(f"cwac: side must be 'out', 'in' or 'both', got {self.side!r}")
        if self.basis not in ("weights", "activations"):
            raise InputError(f"cwac: basis must be 'weights' or 'activations', got {self.basis!r}")
        if self.anchor_on not in ("harmful", "all"):
            raise InputError(f"cwac: anchor_on must be 'harmful' (refusal prompts only) or 'all' safety prompts, got {self.anchor_on!r}")
        if self.anchor_source not in ("safety", "train"):
            raise InputError(f"cwac: anchor_source must be 'safety' (a safety batch per step) or 'train' "
                             f"(the training batch's decision points), got {self.anchor_source!r}")
        if self.basis_k is not None and int(self.basis_k) < 1:
            raise InputError(f"cwac: basis_k must be >= 1 (PCs per layer), got {self.basis_k}")
        if self.basis_layers is not None:
            parse_layers(self.basis_layers)  # fails early on a malformed spec
        if int(self.rank) < 1 or int(self.k) < 1 or float(self.lam) < 0 or int(self.anchor_every) < 1 or int(self.safety_batch) < 1:
            raise InputError(f"cwac: need rank, k, safety_batch, anchor_every >= 1 and lam >= 0, got {self}")

    @property
    def anchor_weight(self) -> float:
        """``lam`` as a float (``__post_init__`` has replaced None by the anchor source's default)."""
        if self.lam is None:
            raise InputError("cwac: lam is None (it was reset after the config was built)")
        return float(self.lam)


class CWAC(Method):
    """Coupled weight (update projection) and activation (SAE feature anchoring) constraints."""

    name: ClassVar[str] = "cwac"
    mode: ClassVar[Literal["full", "lora"]] = "full"
    needs: ClassVar[tuple[str, ...]] = ("subspace", "features")
    source: ClassVar[str] = "arXiv 2604.12384 (CWAC, ACL 2026); formulas are ours (no public code), see docs/finetune.md"
    use_weights: ClassVar[bool] = True
    use_acts: ClassVar[bool] = True

    def __init__(self, config: CWACConfig | None = None, **hparams: Any):
        if config is not None and hparams:
            raise InputError(f"{self.name}: pass either a CWACConfig or keyword hyperparameters, not both")
        if config is None:
            fields = {f.name for f in dataclasses.fields(CWACConfig)}
            bad = set(hparams) - fields
            if bad:
                raise InputError(f"{self.name}: unknown hyperparameters {sorted(bad)}; use some of {sorted(fields)}")
            config = CWACConfig(**hparams)
        self.cfg = config
        super().__init__(**dataclasses.asdict(config))

    def required_artifacts(self) -> tuple[str, ...]:
        return tuple(a for a in self.needs if not (a == "features" and self.cfg.features))

    # -- (1) update projection ------------------------------------------------------------------
    def _setup_weights(self, ctx: FinetuneContext) -> None:
        h = self.cfg
        if h.basis == "activations":
            art = ctx.artifacts.get("activation_subspace")
            if h.basis_layers is not None or h.basis_k is not None:
                ctx.state["cwac_basis"] = layer_basis(ctx.artifacts.get("activation_bases"), h.basis_layers, h.basis_k, self.name)
            elif art is not None:
                ctx.state["cwac_basis"] = residual_basis(art)
            else:  # derive it from the weight-delta subspace: the residual directions the alignment delta writes
                sub = ctx.artifacts.get("subspace")
                if sub is None:
                    raise InputError(f"{self.name}: basis='activations' needs ctx.artifacts['activation_subspace'] (a [d_model, k] basis, "
                                     "ActivationSubspace or RefusalDirection) or ctx.artifacts['subspace'] to derive one from")
                ctx.state["cwac_basis"] = residual_basis(sub.truncate(min(2, sub.rank)).output_directions())
            ctx.state["cwac_factors"] = {}
            return
        sub = ctx.artifacts.get("subspace")
        if sub is None:
            raise InputError(f"{self.name}: needs ctx.artifacts['subspace'] (a WeightDeltaSubspace of aligned vs base)")
        names = [n for n, _ in ctx.lm.model.named_parameters()]
        names += [f[0] for f in map(lora_factor, names) if f is not None]
        ctx.state["cwac_factors"] = factors_for(sub, list(dict.fromkeys(names)), int(h.rank))

    @staticmethod
    def _to_device(ctx: FinetuneContext) -> None:
        """The bases live on the model's device, in float32 (moved once, not at every step)."""
        dev = next(ctx.lm.model.parameters()).device
        if ctx.state.get("cwac_basis") is not None:
            ctx.state["cwac_basis"] = ctx.state["cwac_basis"].to(device=dev, dtype=torch.float32)
        ctx.state["cwac_factors"] = {n: tuple(x.to(dev) for x in f) for n, f in ctx.state.get("cwac_factors", {}).items()}

    def transform_update(self, ctx: FinetuneContext, name: str, delta: Tensor) -> Tensor:
        if not self.use_weights:
            return delta
        factor = lora_factor(name)
        if factor is not None:
            return self._project_factor(ctx, factor, delta)
        basis = ctx.state.get("cwac_basis")
        if basis is not None:
            return project_residual(name, delta, basis)
        f = ctx.state.get("cwac_factors", {}).get(name)
        if f is None:
            return delta
        u, v = f
        m = as_matrix(name, delta)
        return from_matrix(name, project_matrix(m, u.to(m.dtype), v.to(m.dtype), self.cfg.side), delta.shape).contiguous()

    # In LoRA mode (``FinetuneConfig(mode="lora")``) the update of W is B @ A. Projecting the factors
    # keeps the product in the complement exactly: a weight that reads the residual stream gets
    # ``A <- A (I - P)`` (A itself is projected once at set-up, since it starts random), one that
    # writes to it gets ``B <- (I - P) B`` (B starts at zero). P is the residual basis, or the
    # weight-delta subspace's V (input side) / U (output side).
    def _sides(self, ctx: FinetuneContext, weight: str) -> tuple[Tensor | None, Tensor | None]:
        """(output-side basis, input-side basis) that constrain `weight`'s update; None = free."""
        basis = ctx.state.get("cwac_basis")
        if basis is not None:
            kind = weight_kind(weight)
            return (basis, None) if kind in _WRITES_RESIDUAL else ((None, basis) if kind in _READS_RESIDUAL else (None, None))
        f = ctx.state.get("cwac_factors", {}).get(weight)
        if f is None:
            return None, None
        side = self.cfg.side
        return (f[0] if side in ("out", "both") else None), (f[1] if side in ("in", "both") else None)

    def _project_factor(self, ctx: FinetuneContext, factor: tuple[str, str], t: Tensor) -> Tensor:
        weight, which = factor
        out_b, in_b = self._sides(ctx, weight)
        if which == "A" and in_b is not None:  # A [r, d_in]
            b = in_b.to(device=t.device, dtype=t.dtype)
            return t - (t @ b) @ b.T
        if which == "B" and out_b is not None:  # B [d_out, r]
            b = out_b.to(device=t.device, dtype=t.dtype)
            return t - b @ (b.T @ t)
        return t

    def _project_lora_init(self, ctx: FinetuneContext) -> None:
        with torch.no_grad():
            for name, p in ctx.lm.model.named_parameters():
                factor = lora_factor(name)
                if factor is not None and factor[1] == "A":
                    p.copy_(self._project_factor(ctx, factor, p))

    # -- (2) feature anchoring ------------------------------------------------------------------
    def _features(self, ctx: FinetuneContext) -> Any:
        """The anchored feature set: the ``features`` file when given, else ``ctx.artifacts["features"]``.

        In a ``features`` path, ``{fingerprint}`` stands for the first 8 hex digits of the weights
        fingerprint of the model being fine-tuned (``ctx.reference``, its weights before training), so
        one config serves every build of a model. A feature set that records the fingerprint of
        other weights is refused: its features were ranked on another model."""
        from safecircuits.models.loaded import weights_fingerprint

        fp = weights_fingerprint(ctx.reference.model)
        if self.cfg.features:
            from pathlib import Path

            from safecircuits.features import FeatureSet

            path = Path(self.cfg.features.replace("{fingerprint}", fp[:8])).expanduser()
            feats = FeatureSet.load(path)  # says how to write one when missing
        else:
            feats = ctx.artifacts.get("features")
            path = None
        if feats is None:
            raise InputError(f"{self.name}: needs ctx.artifacts['features'] (a FeatureSet with its SAE) or the hyperparameter "
                             "features=PATH (a saved FeatureSet)")
        ranked_on = getattr(feats, "provenance", {}).get("weights_fingerprint")
        if ranked_on is not None and ranked_on != fp:
            where = f" ({path})" if path is not None else ""
            raise InputError(f"{self.name}: the feature set{where} was ranked on weights {ranked_on[:8]}, but the model being "
                             f"fine-tuned is {fp[:8]} (another build or model): train its SAE and rank its features again "
                             "(docs/finetune.md, 'Real model: SmolLM2-135M-Instruct'), e.g. under a path with {fingerprint}")
        return feats

    def _setup_acts(self, ctx: FinetuneContext) -> None:
        feats = self._features(ctx)
        if self.cfg.anchor_source == "train":
            self._setup_train_anchor(ctx, feats)
            return
        if ctx.safety_prompts is None or len(ctx.safety_prompts) == 0:
            raise InputError(f"{self.name}: anchor_source='safety' needs ctx.safety_prompts (task.safety_data(lm, n))")
        reader = feature_reader(feats, int(self.cfg.k))
        lm = ctx.reference
        ps = ctx.safety_prompts.filter(has_response=True)
        if self.cfg.anchor_on == "harmful":
            ps = ps.filter(label="harmful")
        if len(ps) == 0:
            raise InputError(f"{self.name}: ctx.safety_prompts has no {self.cfg.anchor_on} prompts with target responses to anchor on")
        bs = int(self.cfg.safety_batch)
        batches, refs = [], []
        for i in range(0, len(ps), bs):
            chunk = ps[i : i + bs]
            b = encode_batch(lm.chat, chunk.prompts, chunk.responses, max_len=lm.model.cfg.n_ctx, padding_side="right", source="cwac safety prompts")
            mask = _post_instruction_mask(b)
            with torch.no_grad():
                ref = reader(lm.model, b.tokens, b.attention_mask)
            batches.append((b, mask))
            refs.append(ref.detach())
        energy = sum(float((r.pow(2).sum(-1) * m).sum()) for r, (_, m) in zip(refs, batches, strict=True))
        count = sum(float(m.sum()) for _, m in batches)
        ctx.state["cwac_reader"] = reader
        ctx.state["cwac_batches"] = batches
        ctx.state["cwac_refs"] = refs
        ctx.state["cwac_ref_energy"] = max(energy / max(count, 1.0), 1e-8)

    def _setup_train_anchor(self, ctx: FinetuneContext, feats: Any) -> None:
        """``anchor_source="train"``: capture the hook activation of the loop's own training forward
        (no extra student pass) and anchor the features at each example's last prompt token (the
        decision point); reference values are cached per prompt."""
        hook, sae, ids = feature_parts(feats, int(self.cfg.k))
        store: dict[str, Tensor] = {}
        handle = ctx.lm.model.hook_dict[hook].register_forward_hook(lambda mod, inp, out: store.__setitem__("x", out))
        ctx.state["cwac_train"] = {"hook": hook, "sae": sae, "ids": torch.as_tensor(ids), "store": store, "handle": handle, "cache": {}}

    def _train_anchor(self, ctx: FinetuneContext, step: int, batch: TokenBatch) -> dict[str, Tensor]:
        st = ctx.state["cwac_train"]
        x = st["store"].pop("x")
        sae, ids, cache = st["sae"], st["ids"], st["cache"]
        last = torch.tensor([pl - 1 for pl in batch.prompt_lengths], device=x.device)
        f = sae.encode(x[torch.arange(x.shape[0], device=x.device), last].float())[:, ids.to(x.device)]
        keys = [tuple(batch.tokens[i, : pl].tolist()) for i, pl in enumerate(batch.prompt_lengths)]
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            ref_model = ctx.reference.model
            n = max(len(k) for k in missing)
            toks = torch.zeros(len(missing), n, dtype=torch.long)
            att = torch.zeros(len(missing), n, dtype=torch.long)
            for i, k in enumerate(missing):
                toks[i, : len(k)], att[i, : len(k)] = torch.tensor(k), 1
            with torch.no_grad():
                from safecircuits.features import feature_acts

                r = feature_acts(ref_model, sae, st["hook"], toks.to(ref_model.cfg.device), att.to(ref_model.cfg.device), ids)
            for i, k in enumerate(missing):
                cache[k] = r[i, len(k) - 1].detach().cpu()
        ref = torch.stack([cache[k] for k in keys]).to(f.device)
        drift = (f - ref).pow(2).sum(-1).mean() / ref.pow(2).sum(-1).mean().clamp_min(1e-8)
        if step >= ctx.config.steps - 1:  # the last step: leave no hook on the returned model
            st["handle"].remove()
        return {"feature_anchor": self.cfg.anchor_weight * drift}

    def extra_loss(self, ctx: FinetuneContext, step: int, batch: TokenBatch, logits: Tensor | None) -> dict[str, Tensor]:
        every = int(self.cfg.anchor_every)
        if not self.use_acts or self.cfg.anchor_weight == 0.0 or step % every:
            return {}
        if "cwac_train" in ctx.state:
            return self._train_anchor(ctx, step, batch)
        batches = ctx.state["cwac_batches"]
        i = (step // every) % len(batches)
        b, mask = batches[i]
        model = ctx.lm.model
        dev = model.cfg.device
        acts = ctx.state["cwac_reader"](model, b.tokens.to(dev), b.attention_mask.to(dev))
        ref = ctx.state["cwac_refs"][i].to(acts.device)
        m = mask.to(acts.device).to(acts.dtype)
        drift = ((acts - ref).pow(2).sum(-1) * m).sum() / m.sum().clamp_min(1.0)
        return {"feature_anchor": self.cfg.anchor_weight * every * drift / ctx.state["cwac_ref_energy"]}

    def extra_loss_needs_train_graph(self) -> bool:
        # the safety-batch anchor runs its own forward; only the training-batch anchor reads the training graph
        return self.use_acts and self.cfg.anchor_source == "train"

    def setup(self, ctx: FinetuneContext) -> None:
        if self.use_weights:
            self._setup_weights(ctx)
            self._to_device(ctx)
            if ctx.state.get("mode") == "lora":
                self._project_lora_init(ctx)
        if self.use_acts:
            self._setup_acts(ctx)

    def has_update_transform(self) -> bool:
        return self.use_weights


class CWACWeightsOnly(CWAC):
    """CWAC's half (1): the update projection alone."""

    name: ClassVar[str] = "cwac-weights-only"
    needs: ClassVar[tuple[str, ...]] = ("subspace",)
    use_acts: ClassVar[bool] = False


class CWACActsOnly(CWAC):
    """CWAC's half (2): the SAE-feature anchor alone."""

    name: ClassVar[str] = "cwac-acts-only"
    needs: ClassVar[tuple[str, ...]] = ("features",)
    use_weights: ClassVar[bool] = False


def lora_factor(name: str) -> tuple[str, str] | None:
    """``blocks.3.attn.parametrizations.W_Q.0.A`` -> (``blocks.3.attn.W_Q``, ``"A"``); None for other names."""
    parts = name.split(".")
    if "parametrizations" not in parts or parts[-1] not in ("A", "B"):
        return None
    i = parts.index("parametrizations")
    return ".".join(parts[:i] + [parts[i + 1]]), parts[-1]


def parse_layers(spec: str | int | Sequence[int]) -> list[int]:
    """Residual stream indices from ``"20-26"``, ``"24,26"``, ``"3"``, an int or a list."""
    if isinstance(spec, int):
        return [spec]
    if not isinstance(spec, str):
        return [int(x) for x in spec]
    out: list[int] = []
    try:
        for part in spec.replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise InputError(f"cwac: basis_layers must look like '20-26' or '24,26' (residual stream indices), got {spec!r}") from None
    if not out or min(out) < 0:
        raise InputError(f"cwac: basis_layers must name residual streams >= 0, got {spec!r}")
    return out


def layer_basis(bases: Tensor | None, layers: str | None, k: int | None, name: str = "cwac") -> Float[Tensor, "d_model n"]:
    """The orthonormalised span of the first `k` PCs of the per-layer bases ``[n_streams, d_model,
    k_max]`` at `layers` (None: every stream; `k` None: every PC)."""
    if bases is None:
        raise InputError(f"{name}: basis_layers / basis_k need ctx.artifacts['activation_bases'] (the per-layer "
                         "activation bases [n_layers + 1, d_model, k] that prepare_artifacts builds)")
    n, _, k_max = bases.shape
    idx = list(range(n)) if layers is None else parse_layers(layers)
    bad = [i for i in idx if i >= n]
    if bad:
        raise InputError(f"{name}: basis_layers {bad} out of range: this model has residual streams 0..{n - 1}")
    kk = k_max if k is None else int(k)
    if kk > k_max:
        raise InputError(f"{name}: basis_k={kk} but the per-layer bases hold {k_max} PCs: use basis_k <= {k_max}")
    return residual_basis(torch.cat([bases[i, :, :kk] for i in idx], 1))


def feature_parts(feats: Any, k: int) -> tuple[str, Any, list[int]]:
    """(hook, SAE, top-`k` feature ids) from a FeatureSet (its SAE loaded from ``sae_path``), a
    ``(FeatureSet, SAE)`` pair, or a dict ``{"hook", "sae", "ids"}``. The SAE is frozen."""
    from safecircuits.features import load_sae

    sae = None
    if isinstance(feats, tuple):
        feats, sae = feats
    if isinstance(feats, dict):
        hook, sae, ids = feats["hook"], feats.get("sae", sae), [int(i) for i in list(feats["ids"])[:k]]
    else:
        hook, ids = feats.hook, feats.top(min(k, feats.d_sae))
        if sae is None:
            if not getattr(feats, "sae_path", None):
                raise InputError("the feature anchor needs the feature set's SAE: give (FeatureSet, SAE) or a FeatureSet with sae_path")
            sae = load_sae(feats.sae_path)
    if sae is None:
        raise InputError("the feature anchor needs an SAE: give {'hook', 'sae', 'ids'} or (FeatureSet, SAE)")
    for p in sae.parameters():
        p.requires_grad_(False)
    return hook, sae, ids


def feature_reader(feats: Any, k: int):
    """``reader(model, tokens, attention_mask) -> [batch, pos, k]``: differentiable activations of the
    top-`k` safety features (:func:`safecircuits.features.feature_acts`); `feats` as in :func:`feature_parts`."""
    from safecircuits.features import feature_acts

    hook, sae, ids = feature_parts(feats, k)

    def reader(model, tokens: Tensor, attention_mask: Tensor) -> Tensor:
        return feature_acts(model, sae, hook, tokens, attention_mask, ids)

    return reader


def _post_instruction_mask(b: TokenBatch) -> Tensor:
    """1 at the last prompt token and every response token (right padding), else 0."""
    pos = torch.arange(b.tokens.shape[1]).unsqueeze(0)
    start = torch.tensor([pl - 1 for pl in b.prompt_lengths]).unsqueeze(1)
    return ((pos >= start) & (b.attention_mask.bool())).float()
