"""Shared fixtures: trained organisms are cached on disk (SAFECIRCUITS_CACHE) and per session."""

from __future__ import annotations

import pytest

from safecircuits.models import load_model


@pytest.fixture(scope="session")
def tiny_aligned():
    """A tiny aligned organism (2 layers, d_model 64); trains in about a minute the first time."""
    return load_model("organism:aligned?size=tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_backdoor():
    return load_model("organism:backdoor?size=tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_base():
    return load_model("organism:base?size=tiny", progress=False)
