"""The fast forward (safecircuits.models.fastpath) computes what TransformerLens computes."""

from __future__ import annotations

import copy

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, TransformerLensKeyValueCache

from safecircuits.models.fastpath import accelerate, is_accelerated, restore

LLAMA_LIKE = dict(n_layers=2, d_model=48, n_heads=6, n_key_value_heads=2, d_head=8, d_mlp=96, d_vocab=61, n_ctx=64,
                  act_fn="silu", gated_mlp=True, normalization_type="RMS", final_rms=True, positional_embedding_type="rotary",
                  rotary_dim=8, rotary_adjacent_pairs=False, rotary_base=10000.0, default_prepend_bos=False)
GPT_LIKE = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=40, act_fn="gelu",
                normalization_type="LN", positional_embedding_type="standard", default_prepend_bos=False)
HOOKS = ("hook_q", "hook_k", "hook_v", "hook_rot_q", "hook_rot_k", "hook_z", "hook_pre", "hook_pre_linear", "hook_post",
         "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "ln_final.hook_normalized")


def _model(cfg: dict, seed: int = 0) -> HookedTransformer:
    torch.manual_seed(seed)
    m = HookedTransformer(HookedTransformerConfig(**cfg, seed=seed, device="cpu"), move_to_device=False)
    with torch.no_grad():  # biases are zero at init; random ones exercise the bias paths too
        for name, p in m.named_parameters():
            if ".b_" in name or name.endswith("b_U"):
                p.normal_(0, 0.1)
    return m.eval()


def _batch(vocab: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, vocab, (3, 11), generator=g)
    mask = torch.ones_like(toks)
    mask[0, :4] = 0  # left padding
    mask[1, :1] = 0
    return toks, mask


def _names(n: str) -> bool:
    return n.endswith(HOOKS)


@pytest.mark.parametrize("cfg", [LLAMA_LIKE, GPT_LIKE], ids=["llama-like", "gpt-like"])
def test_fast_forward_matches_transformer_lens_logits_and_every_hook(cfg):
    ref = _model(cfg)
    fast = accelerate(copy.deepcopy(ref))
    assert is_accelerated(fast) and not is_accelerated(ref)
    toks, mask = _batch(cfg["d_vocab"])
    with torch.no_grad():
        l_ref, c_ref = ref.run_with_cache(toks, attention_mask=mask, names_filter=_names)
        l_fast, c_fast = fast.run_with_cache(toks, attention_mask=mask, names_filter=_names)
    valid = mask.bool()
    torch.testing.assert_close(l_fast[valid], l_ref[valid], rtol=1e-4, atol=1e-4)
    assert set(c_fast.keys()) == set(c_ref.keys()) and len(c_ref.keys()) >= 10
    for k in c_ref.keys():
        torch.testing.assert_close(c_fast[k][valid], c_ref[k][valid], rtol=1e-4, atol=1e-4, msg=k)
    # padding positions: TransformerLens gives them a zero attention output; so does the fast path
    z_pad = c_fast["blocks.0.attn.hook_z"][0, :4]
    assert torch.equal(z_pad, c_ref["blocks.0.attn.hook_z"][0, :4]) and float(z_pad.abs().sum()) == 0.0


@pytest.mark.parametrize("cfg", [LLAMA_LIKE, GPT_LIKE], ids=["llama-like", "gpt-like"])
def test_fast_forward_gradients_match(cfg):
    ref = _model(cfg)
    fast = accelerate(copy.deepcopy(ref))
    toks, _ = _batch(cfg["d_vocab"])
    for m in (ref, fast):
        m.zero_grad()
        m(toks, return_type="loss").backward()
    for (n, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_kv_cache_decode_matches_full_forward():
    model = accelerate(_model(LLAMA_LIKE))
    toks, mask = _batch(LLAMA_LIKE["d_vocab"])
    with torch.no_grad():
        full = model(toks, attention_mask=mask)
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, toks.shape[0])
        first = model(toks[:, :-1], attention_mask=mask[:, :-1], past_kv_cache=cache)
        last = model(toks[:, -1:], attention_mask=torch.ones_like(toks[:, -1:]), past_kv_cache=cache)
    torch.testing.assert_close(first[:, -1], full[:, -2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last[:, -1], full[:, -1], rtol=1e-4, atol=1e-4)


def test_pattern_hooks_fall_back_to_transformer_lens():
    """A pattern hook sees the same pattern and can change the output, exactly as without the fast path."""
    ref = _model(LLAMA_LIKE)
    fast = accelerate(copy.deepcopy(ref))
    toks, _ = _batch(LLAMA_LIKE["d_vocab"])

    def zero_head(pattern, hook):
        pattern[:, 1] = 0.0
        return pattern

    with torch.no_grad():
        _, c_ref = ref.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
        _, c_fast = fast.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
        patched_ref = ref.run_with_hooks(toks, fwd_hooks=[("blocks.0.attn.hook_pattern", zero_head)])
        patched_fast = fast.run_with_hooks(toks, fwd_hooks=[("blocks.0.attn.hook_pattern", zero_head)])
        plain = fast(toks)
    for k in c_ref.keys():
        torch.testing.assert_close(c_fast[k], c_ref[k])
    torch.testing.assert_close(patched_fast, patched_ref, rtol=1e-4, atol=1e-4)
    assert (patched_fast - plain).abs().max() > 1e-3  # the hook really changed the output


def test_packed_weights_follow_in_place_updates_and_restore():
    model = accelerate(_model(LLAMA_LIKE))
    toks, _ = _batch(LLAMA_LIKE["d_vocab"])
    with torch.no_grad():
        before = model(toks)
        model.blocks[0].attn.W_Q.mul_(2.0)  # bumps the version counter: the packed copy is stale
        after = model(toks)
        plain = restore(copy.deepcopy(model))(toks)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, plain, rtol=1e-4, atol=1e-4)
    assert not is_accelerated(restore(model))


def test_deepcopy_keeps_the_fast_forward():
    model = accelerate(_model(LLAMA_LIKE))
    clone = copy.deepcopy(model)
    assert is_accelerated(clone)
    attn = clone.blocks[0].attn
    assert attn.forward.__self__ is attn  # bound to the copy, not to the original


def test_bf16_unembed_backward_survives_the_onednn_sigfpe_shape():
    """32 rows x d_vocab 49152 in bf16 on a CPU: autograd's own backward of the unembed dies with
    SIGFPE inside oneDNN on AMX / AVX512-BF16 CPUs (benchmarks/onednn_sigfpe.py); the fast unembed
    must finish it, with gradients close to float32's. Run in a subprocess, so a crash fails this
    test instead of killing the session."""
    import subprocess
    import sys

    from benchmarks.onednn_sigfpe import UNEMBED

    r = subprocess.run([sys.executable, "-c", UNEMBED], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), f"exit status {r.returncode}: {r.stderr[-2000:]}"
