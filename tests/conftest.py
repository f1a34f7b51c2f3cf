"""Shared fixtures: trained organisms are cached on disk (SAFECIRCUITS_CACHE) and per session."""

from __future__ import annotations

import pytest
import torch

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


def random_lm(arch: str = "llama", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight HookedTransformer with the organism tokenizer and chat format: trains nothing,
    loads in milliseconds. ``arch="llama"`` has grouped-query attention, RoPE, RMSNorm and a gated
    MLP (SmolLM2's architecture, scaled down); ``"gpt"`` has the organisms' (LayerNorm, GELU)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from safecircuits.models.loaded import LoadedModel
    from safecircuits.models.organisms import build_tokenizer, organism_chat

    tok = build_tokenizer()
    common = {"d_vocab": len(tok), "n_ctx": 64, "default_prepend_bos": False, "seed": seed, "device": "cpu"}
    if arch == "llama":
        cfg = HookedTransformerConfig(n_layers=2, d_model=48, n_heads=6, n_key_value_heads=2, d_head=8, d_mlp=96, act_fn="silu",
                                      gated_mlp=True, normalization_type="RMS", final_rms=True, positional_embedding_type="rotary",
                                      rotary_dim=8, rotary_adjacent_pairs=False, **common)
    else:
        cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, act_fn="gelu", normalization_type="LN",
                                      positional_embedding_type="standard", **common)
    torch.manual_seed(seed)
    model = HookedTransformer(cfg, move_to_device=False)
    model.tokenizer = tok
    if dtype != torch.float32:
        model.to(dtype)
    model.eval()
    return LoadedModel(model, tok, organism_chat(tok), name=f"random:{arch}", info={"source": "random", "seed": seed})
