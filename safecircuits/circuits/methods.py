"""Every circuit-discovery method behind one signature, in one registry.

A method is a :class:`CircuitMethod`: ``method(model, objective, data, config=None, chat=None,
val_data=None, **options) -> Circuit``, where ``model`` is a LoadedModel (or a HookedTransformer
with ``chat``), ``objective`` a registered objective name or an :class:`Objective`, and ``data``
the objective's PromptSets. So a comparison is one loop::

    for name in sc.circuits.CIRCUIT_METHODS:
        circuits[name] = sc.circuits.get_method(name)(lm, "backdoor", data, config)

Built in: ``mask`` (learned binary masks, :func:`discover_circuit`), ``attribution``
(attribution patching), ``activation`` (activation patching) and ``random``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from safecircuits.circuits.baselines import activation_patching, attribution_patching, random_circuit
from safecircuits.circuits.circuit import Circuit
from safecircuits.circuits.discover import discover_circuit
from safecircuits.errors import InputError

__all__ = ["CIRCUIT_METHODS", "CircuitMethod", "get_method", "register_method"]


@runtime_checkable
class CircuitMethod(Protocol):
    """The shared signature. A method may take further keyword-only options of its own (such as
    ``n_heads=``), which are not part of the protocol: a caller passes them to a method it knows."""

    def __call__(self, model: Any, objective: Any, data: dict[str, Any], config: Any = None, chat: Any = None,
                 val_data: dict[str, Any] | None = None) -> Circuit: ...


CIRCUIT_METHODS: dict[str, CircuitMethod] = {
    "mask": discover_circuit,
    "attribution": attribution_patching,
    "activation": activation_patching,
    "random": random_circuit,
}


def register_method(name: str, method: CircuitMethod, replace: bool = False) -> None:
    """Add a circuit-discovery method under `name` (a duplicate name is refused unless `replace`)."""
    if not callable(method):
        raise InputError(f"a circuit method must be callable with discover_circuit's signature, got {type(method).__name__}")
    if name in CIRCUIT_METHODS and not replace:
        raise InputError(f"a circuit method named {name!r} is registered already; pass replace=True to override it")
    CIRCUIT_METHODS[name] = method


def get_method(name: str) -> CircuitMethod:
    if name not in CIRCUIT_METHODS:
        raise InputError(f"unknown circuit method {name!r}: use one of {', '.join(CIRCUIT_METHODS)}")
    return CIRCUIT_METHODS[name]
