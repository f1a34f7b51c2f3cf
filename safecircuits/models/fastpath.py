"""A faster forward for TransformerLens 3.x components, with the same hook points and outputs.

TransformerLens 3.9 is written for readability, and three of its choices cost real models a lot:

* every forward copies every weight matrix (``W_gate.T.contiguous()``, ``einops.rearrange(W_O)
  .contiguous()``; under autocast a second copy for the cast). On SmolLM2 that is a copy of the
  whole model per forward, and its backward;
* the pre-norm block normalises its input three times (once each for Q, K and V);
* attention materialises scores and patterns in the model's dtype and repeats grouped K/V heads,
  where PyTorch's fused ``scaled_dot_product_attention`` needs neither.

:func:`accelerate` swaps the classes of a model's attention, gated-MLP and block modules for
subclasses whose ``forward`` computes the same thing without those costs. Every hook point is
still called, in the same order and with the same shapes (``hook_q``/``hook_k``/``hook_v``,
``hook_rot_q``/``hook_rot_k``, ``hook_z``, ``hook_pre``/``hook_pre_linear``/``hook_post``, ...),
so ablations, caches and interventions behave as before. Only ``hook_attn_scores`` and
``hook_pattern`` need the materialised pattern: whenever either has a hook (a cache of
patterns, an attention-pattern intervention), that layer runs TransformerLens's own forward.
Configurations the fast forward does not cover (ALiBi, soft-capping, local attention, attention
sinks, QK-norm, split QKV inputs, 4-bit weights, ...) keep TransformerLens's forward entirely.

Results equal TransformerLens's own to float rounding (tests/test_fastpath.py checks logits and
every hook against the original forward, with and without a KV cache and padding).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens.components import AbstractAttention, GroupedQueryAttention, TransformerBlock, Unembed
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

__all__ = ["accelerate", "is_accelerated", "restore"]

# Projection weights reshaped once and reused while the parameter is frozen (no autograd, and the
# parameter unchanged). Keyed by the parameter object; a changed version counter invalidates.
_PACKED_ATTR = "_safecircuits_packed"


def _packed(module: nn.Module, name: str, param: Tensor, make) -> Tensor:
    """``make(param)``, cached on `module` while `param` cannot change under autograd."""
    if not isinstance(param, nn.Parameter) or (param.requires_grad and torch.is_grad_enabled()):
        return make(param)  # a computed weight (a LoRA parametrization) or one that trains now
    cache = module.__dict__.setdefault(_PACKED_ATTR, {})
    key = (id(param), param.data_ptr(), param._version, param.dtype, param.device)
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = make(param).contiguous()
    cache[name] = (key, value)
    return value


def _qkv_weight(w: Tensor) -> Tensor:
    """[heads, d_model, d_head] -> [d_model, heads * d_head]."""
    return w.permute(1, 0, 2).reshape(w.shape[1], w.shape[0] * w.shape[2])


def _has_hooks(hp: nn.Module) -> bool:
    return bool(hp._forward_hooks or hp._backward_hooks or hp._forward_pre_hooks)


def _attention_supported(attn: AbstractAttention) -> bool:
    cfg = attn.cfg
    return (
        cfg.positional_embedding_type in ("standard", "rotary", "shortformer")
        and attn.attn_type == "global"
        and cfg.attention_dir == "causal"
        and (cfg.attn_scores_soft_cap or 0) <= 0
    ) and not (
        cfg.use_split_qkv_input or cfg.use_attn_in or cfg.use_attn_result or cfg.load_in_4bit or cfg.use_qk_norm
        or cfg.use_attention_sinks or cfg.use_logn_attn or cfg.clip_qkv is not None or cfg.use_dynamic_ntk_rope
        or getattr(attn, "_attention_dir_override", None) not in (None, "causal")
        or cfg.original_architecture in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
    )


class _FastAttention:
    """Attention through ``scaled_dot_product_attention`` when no pattern hook is attached."""

    @staticmethod
    def forward(self, query_input, key_input, value_input, past_kv_cache_entry=None, additive_attention_mask=None,
                attention_mask=None, position_bias=None):
        if (additive_attention_mask is not None or position_bias is not None or query_input.ndim != 3
                or _has_hooks(self.hook_attn_scores) or _has_hooks(self.hook_pattern)):
            return type(self).forward(self, query_input, key_input, value_input, past_kv_cache_entry,
                                      additive_attention_mask, attention_mask, position_bias)
        cfg = self.cfg
        grouped = isinstance(self, GroupedQueryAttention) and not cfg.ungroup_grouped_query_attention
        B, P, _ = query_input.shape
        q = self.hook_q(_project(self, query_input, "W_Q", self.W_Q, self.b_Q))
        if grouped:
            k = self.hook_k(_project(self, key_input, "W_K", self._W_K, self._b_K))
            v = self.hook_v(_project(self, value_input, "W_V", self._W_V, self._b_V))
        else:
            k = self.hook_k(_project(self, key_input, "W_K", self.W_K, self.b_K))
            v = self.hook_v(_project(self, value_input, "W_V", self.W_V, self.b_V))
        if past_kv_cache_entry is not None:
            offset = past_kv_cache_entry.past_keys.size(1)
            k, v = past_kv_cache_entry.append(k, v)
        else:
            offset = 0
        if cfg.positional_embedding_type == "rotary":
            q = self.hook_rot_q(self.apply_rotary(q, offset, attention_mask))
            k = self.hook_rot_k(self.apply_rotary(k, 0, attention_mask))
        z = self.hook_z(_attend(q, k, v, offset, attention_mask, 1.0 / float(self.attn_scale)))
        w_o = self.W_O.reshape(-1, self.W_O.shape[-1])  # [heads * d_head, d_model]: a view, no copy
        return F.linear(z.reshape(B, P, -1), w_o.T, self.b_O)


def _project(module: nn.Module, x: Tensor, name: str, w: Tensor, b: Tensor) -> Tensor:
    """x [batch, pos, d_model] through per-head weights w [heads, d_model, d_head] -> [batch, pos, heads, d_head]."""
    out = F.linear(x, _packed(module, name, w, _qkv_weight).T, b.reshape(-1))
    return out.view(x.shape[0], x.shape[1], w.shape[0], w.shape[2])


def _attend(q: Tensor, k: Tensor, v: Tensor, offset: int, attention_mask: Tensor | None, scale: float) -> Tensor:
    """Causal attention of q [batch, pos, heads, d_head] over k, v [batch, key_pos, kv_heads, d_head]
    (grouped heads are shared, not repeated); keys outside `attention_mask` are ignored."""
    P, K = q.shape[1], k.shape[1]
    dev = q.device
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    gqa = kh.shape[1] != qh.shape[1]
    if attention_mask is None and offset == 0 and P == K:
        z = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=scale, enable_gqa=gqa)
        return z.transpose(1, 2)
    key_pos = torch.arange(K, device=dev)
    query_pos = torch.arange(K - P, K, device=dev)
    mask = (key_pos[None, :] <= query_pos[:, None])[None, None]  # [1, 1, P, K]
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, -K:].to(device=dev, dtype=torch.bool)
    # A query that may attend to nothing (a left-padding position) gets a zero output, as in
    # TransformerLens (which sets its NaN pattern row to 0). It attends to itself here, so no NaN
    # reaches the backward pass, and its output is zeroed afterwards.
    row_ok = mask.any(-1, keepdim=True)  # [batch, 1, P, 1]
    all_ok = bool(row_ok.all())
    if not all_ok:
        mask = mask | (~row_ok & (key_pos[None, :] == query_pos[:, None]))
    z = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale, enable_gqa=gqa)
    if not all_ok:
        z = z * row_ok.to(z.dtype)
    return z.transpose(1, 2)


class _FastGatedMLP:
    """``x @ W`` on the stored layout instead of ``F.linear(x, W.T.contiguous())``."""

    @staticmethod
    def forward(self, x: Tensor) -> Tensor:
        if self.cfg.is_layer_norm_activation():
            return type(self).forward(self, x)
        pre_act = self.hook_pre(F.linear(x, self.W_gate.T))
        pre_linear = self.hook_pre_linear(F.linear(x, self.W_in.T))
        post_act = self.hook_post(self.act_fn(pre_act) * pre_linear + self.b_in)
        return F.linear(post_act, self.W_out.T, self.b_out)


class _UnembedCpuLowPrecision(torch.autograd.Function):
    """``residual @ W_U + b_U`` whose input gradient multiplies by a contiguous copy of W_U^T.

    PyTorch 2.13's CPU bf16 matmul (oneDNN's AMX brgemm) dies with SIGFPE, an integer division by
    zero in its blocking heuristic, for ``[32, 49152] @ W^T`` when ``W^T`` is a transposed view of
    a ``[576, 49152]`` weight: exactly the backward of SmolLM2's unembed over 32 response tokens
    (``benchmarks/onednn_sigfpe.py`` reproduces it). Autograd's own backward of ``F.linear`` takes
    that path; with a contiguous right operand the same product runs, so this backward makes one
    (cached while W_U is unchanged, like the forward's packed weights).
    """

    @staticmethod
    def forward(ctx, residual: Tensor, W_U: Tensor, b_U: Tensor, module: nn.Module) -> Tensor:
        ctx.module = module
        ctx.save_for_backward(residual, W_U)
        return F.linear(residual, W_U.T, b_U)

    @staticmethod
    def backward(ctx, grad: Tensor):
        residual, W_U = ctx.saved_tensors
        g_res = g_w = g_b = None
        if ctx.needs_input_grad[0]:
            w = ctx.module.W_U if ctx.module.W_U.data_ptr() == W_U.data_ptr() else W_U  # the Parameter: cacheable
            g_res = grad @ _packed(ctx.module, "W_U_T", w, lambda t: t.T.contiguous())
        flat = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            g_w = residual.reshape(-1, residual.shape[-1]).T @ flat
        if ctx.needs_input_grad[2]:
            g_b = flat.sum(0)
        return g_res, g_w, g_b, None


class _FastUnembed:
    """``residual @ W_U`` on the stored [d_model, d_vocab] layout (TransformerLens copies W_U^T,
    the largest matrix of a chat model, on every forward to match HF's bf16 accumulation order).
    On a CPU in bf16/fp16, a backward through it goes through :class:`_UnembedCpuLowPrecision`."""

    @staticmethod
    def forward(self, residual: Tensor) -> Tensor:
        residual = self.hook_in(residual)
        W_U, b_U = self.W_U, self.b_U
        if (residual.device.type == "cpu" and W_U.dtype in (torch.bfloat16, torch.float16) and torch.is_grad_enabled()
                and (residual.requires_grad or W_U.requires_grad or b_U.requires_grad)):
            return self.hook_out(_UnembedCpuLowPrecision.apply(residual, W_U, b_U, self))
        return self.hook_out(F.linear(residual, W_U.T, b_U))


class _FastBlock:
    """A pre-norm block normalises its input once, not once each for Q, K and V."""

    @staticmethod
    def forward(self, resid_pre, shortformer_pos_embed=None, past_kv_cache_entry=None, attention_mask=None):
        cfg = self.cfg
        if (shortformer_pos_embed is not None or cfg.use_attn_in or cfg.use_split_qkv_input
                or cfg.original_architecture in POST_NORM_ARCHITECTURES or cfg.use_normalization_before_and_after
                or cfg.parallel_attn_mlp or cfg.attn_only or cfg.use_hook_mlp_in):
            return type(self).forward(self, resid_pre, shortformer_pos_embed, past_kv_cache_entry, attention_mask)
        resid_pre = self.hook_resid_pre(resid_pre)
        normed = self.ln1(resid_pre)
        attn_out = self.hook_attn_out(self.attn(query_input=normed, key_input=normed, value_input=normed,
                                                past_kv_cache_entry=past_kv_cache_entry, attention_mask=attention_mask))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.apply_mlp(self.ln2(resid_mid))
        return self.hook_resid_post(resid_mid + mlp_out)


def accelerate(model: nn.Module) -> nn.Module:
    """Give `model`'s supported modules the fast forward (in place; returns `model`).

    The fast forward is set on each module instance (``module.forward``), so ``copy.deepcopy``
    keeps it and :func:`restore` removes it; the module classes are TransformerLens's own.
    """
    for module in model.modules():
        if "forward" in module.__dict__:
            continue
        fast: Callable[..., Any] | None = None
        if isinstance(module, AbstractAttention) and _attention_supported(module):
            fast = _FastAttention.forward
        elif type(module) is GatedMLP:
            fast = _FastGatedMLP.forward
        elif type(module) is TransformerBlock:
            fast = _FastBlock.forward
        elif type(module) is Unembed:
            fast = _FastUnembed.forward
        if fast is not None:
            module.forward = types.MethodType(fast, module)
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undo :func:`accelerate` (TransformerLens's own forward everywhere)."""
    for module in model.modules():
        module.__dict__.pop("forward", None)
        module.__dict__.pop(_PACKED_ATTR, None)
    return model


def is_accelerated(model: nn.Module) -> bool:
    return any("forward" in m.__dict__ for m in model.modules())
