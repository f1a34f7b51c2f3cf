"""Mask parameterisations over components, behind one interface.

A mask holds one logit per component in a tensor of shape ``[n_layers, n_per_layer]`` (heads or
neurons). Mask value 1 keeps a component, 0 ablates it. Every parameterisation offers:

* ``probabilities()`` — keep probabilities in [0, 1] (the "scores");
* ``sample()`` — the training-time mask (differentiable w.r.t. the logits);
* ``hard()`` — the final {0, 1} mask;
* ``penalty()`` — a differentiable measure of how many components the mask *drops*, i.e. the
  circuit size when the circuit is what the mask removes.

``sigmoid-ste`` is SafeSeek's (arXiv 2603.23268) deterministic sigmoid with a straight-through
estimator; ``hard-concrete`` is the L0 gate of Louizos et al. (1712.01312) as used by Edge Pruning
(2406.16778).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from safecircuits.errors import InputError


class ComponentMask(nn.Module):
    """Base class. Subclasses implement the five methods."""

    name: str = "mask"

    def __init__(self, shape: tuple[int, int]):
        super().__init__()
        self.shape = tuple(shape)

    def probabilities(self) -> Float[Tensor, "n_layers n"]:
        raise NotImplementedError

    def sample(self) -> Float[Tensor, "n_layers n"]:
        raise NotImplementedError

    def hard(self, n_drop: int | None = None) -> Float[Tensor, "n_layers n"]:
        """The {0,1} mask. With `n_drop`, drop exactly the `n_drop` lowest-scoring components."""
        raise NotImplementedError

    def penalty(self) -> Float[Tensor, ""]:
        raise NotImplementedError

    def ranking_scores(self) -> Float[Tensor, "n_layers n"]:
        """Higher = more strongly kept. Used to rank components."""
        return self.probabilities()

    def _drop_lowest(self, n_drop: int) -> Tensor:
        s = self.ranking_scores().detach().flatten()
        keep = torch.ones_like(s)
        if n_drop > 0:
            idx = torch.argsort(s, stable=True)[:n_drop]
            keep[idx] = 0.0
        return keep.view(self.shape)


class SigmoidSTEMask(ComponentMask):
    """m_soft = sigmoid(logit / T); forward uses m_hard = 1[m_soft > 0.5] with the gradient of m_soft."""

    name = "sigmoid-ste"

    def __init__(self, shape: tuple[int, int], init_logit: float = 1.0, temperature: float = 1.0):
        super().__init__(shape)
        if temperature <= 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.logits = nn.Parameter(torch.full(shape, float(init_logit)))

    def probabilities(self) -> Float[Tensor, "n_layers n"]:
        return torch.sigmoid(self.logits / self.temperature)

    def sample(self) -> Float[Tensor, "n_layers n"]:
        soft = self.probabilities()
        hard = (soft > 0.5).to(soft.dtype)
        return hard - soft.detach() + soft

    def hard(self, n_drop: int | None = None) -> Float[Tensor, "n_layers n"]:
        if n_drop is not None:
            return self._drop_lowest(n_drop)
        return (self.probabilities() > 0.5).to(self.logits.dtype).detach()

    def penalty(self) -> Float[Tensor, ""]:
        # SafeSeek: sum over layers of mean(1 - sigmoid(logit)) — the soft share of dropped components.
        return (1 - self.probabilities()).mean(dim=1).sum()


class HardConcreteMask(ComponentMask):
    """Stretched hard-concrete gates with an expected-L0 penalty on the *dropped* components."""

    name = "hard-concrete"

    def __init__(
        self,
        shape: tuple[int, int],
        init_log_alpha: float = 10.0,
        init_std: float = 0.01,
        beta: float = 2.0 / 3.0,
        limits: tuple[float, float] = (-0.1, 1.1),
        generator: torch.Generator | None = None,
    ):
        super().__init__(shape)
        self.beta = beta
        self.l, self.r = limits
        if not self.l < 0 < 1 < self.r:
            raise InputError(f"stretch limits must satisfy l < 0 < 1 < r, got {limits}")
        la = torch.randn(shape, generator=generator) * init_std + init_log_alpha
        self.log_alpha = nn.Parameter(la)

    def probabilities(self) -> Float[Tensor, "n_layers n"]:
        """P(gate != 0)."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.l / self.r))

    def sample(self) -> Float[Tensor, "n_layers n"]:
        if not self.training:
            return self.deterministic()
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (self.r - self.l) + self.l).clamp(0.0, 1.0)

    def deterministic(self) -> Float[Tensor, "n_layers n"]:
        return (torch.sigmoid(self.log_alpha) * (self.r - self.l) + self.l).clamp(0.0, 1.0)

    def ranking_scores(self) -> Float[Tensor, "n_layers n"]:
        return self.log_alpha

    def hard(self, n_drop: int | None = None) -> Float[Tensor, "n_layers n"]:
        if n_drop is None:
            n_drop = int((self.deterministic() < 0.5).sum())
        return self._drop_lowest(n_drop)

    def penalty(self) -> Float[Tensor, ""]:
        # expected number of closed gates, as a share per layer, summed over layers
        return (1 - self.probabilities()).mean(dim=1).sum()


def threshold_for_sparsity(scores: Tensor, target: float) -> float:
    """The score threshold below which a `target` share of components falls (round(target * n) of them).

    Found on the sorted scores (the exact answer a binary search over thresholds converges to),
    half-way between the last component dropped and the first kept.
    """
    if not 0.0 <= target <= 1.0:
        raise InputError(f"target sparsity must be in [0, 1], got {target}")
    s = torch.sort(scores.detach().flatten().double()).values
    k = round(target * s.numel())
    if k == 0:
        return float(s[0]) - 1.0
    if k >= s.numel():
        return float(s[-1]) + 1.0
    return float((s[k - 1] + s[k]) / 2)


@dataclass(frozen=True)
class MaskSpec:
    kind: str = "sigmoid-ste"
    init_logit: float = 1.0
    temperature: float = 1.0
    init_log_alpha: float = 3.0
    beta: float = 2.0 / 3.0


MASKS: dict[str, Callable[..., ComponentMask]] = {
    "sigmoid-ste": lambda shape, spec, gen=None: SigmoidSTEMask(shape, spec.init_logit, spec.temperature),
    "hard-concrete": lambda shape, spec, gen=None: HardConcreteMask(shape, spec.init_log_alpha, beta=spec.beta, generator=gen),
}


def make_mask(shape: tuple[int, int], spec: MaskSpec, generator: torch.Generator | None = None) -> ComponentMask:
    if spec.kind not in MASKS:
        raise InputError(f"unknown mask type {spec.kind!r}: use one of {', '.join(MASKS)}")
    return MASKS[spec.kind](shape, spec, generator)
