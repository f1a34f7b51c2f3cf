"""``import safecircuits as sc`` reaches the whole workflow, and the registries refuse duplicates."""

from __future__ import annotations

import importlib

import pytest

import safecircuits as sc


def test_every_exported_name_resolves():
    for name in sc.__all__:
        assert getattr(sc, name) is not None, name
    for pkg in ("models", "data", "evaluation", "circuits", "features", "subspaces", "finetune", "viz", "runtime", "errors", "io"):
        mod = getattr(sc, pkg)
        assert mod is importlib.import_module(f"safecircuits.{pkg}"), pkg
        for name in getattr(mod, "__all__", []):
            assert getattr(mod, name) is not None, f"{pkg}.{name}"


def test_workflow_names_are_where_a_notebook_looks():
    assert sc.fine_tune is sc.finetune.finetune
    assert callable(sc.load_model) and callable(sc.find_circuit) and callable(sc.find_refusal_direction)
    assert callable(sc.train_sae) and callable(sc.rank_features) and callable(sc.run_benchmark) and callable(sc.safety_align)
    assert issubclass(sc.errors.InputError, sc.SafecircuitsError) and issubclass(sc.errors.InputError, ValueError)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sc.nope  # noqa: B018


def test_registries_refuse_duplicates_and_accept_new_names(monkeypatch):
    from safecircuits.circuits import methods, objectives
    from safecircuits.evaluation import judges
    from safecircuits.finetune import methods as ft_methods
    from safecircuits.finetune.methods.basic import SFT

    monkeypatch.setattr(methods, "CIRCUIT_METHODS", dict(methods.CIRCUIT_METHODS))
    monkeypatch.setattr(objectives, "OBJECTIVES", dict(objectives.OBJECTIVES))
    monkeypatch.setattr(judges, "JUDGES", dict(judges.JUDGES))
    monkeypatch.setattr(ft_methods, "METHODS", dict(ft_methods.METHODS))
    for register, name, thing in ((sc.circuits.register_method, "mask", methods.CIRCUIT_METHODS["mask"]),
                                  (sc.circuits.register_objective, "safety", objectives.SafetyObjective),
                                  (sc.evaluation.register_judge, "organism", judges.OrganismJudge),
                                  (sc.finetune.register_method, "sft", SFT)):
        with pytest.raises(ValueError, match="registered already"):
            register(name, thing)
        register(name + "-copy", thing)
        register(name, thing, replace=True)
    assert sc.circuits.get_method("mask-copy") is methods.CIRCUIT_METHODS["mask"]
    assert isinstance(sc.finetune.get_method("sft-copy"), SFT)
    with pytest.raises(ValueError, match="Method subclass"):
        sc.finetune.register_method("bad", object)  # type: ignore[arg-type]
