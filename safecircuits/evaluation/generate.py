"""Batched greedy generation on HookedTransformers.

Prompts are left-padded, an explicit attention mask keeps padding out of attention (and gives
TransformerLens the position offsets for absolute positional embeddings), a key-value cache makes
each new token one forward of length 1, and every sequence stops at the chat format's EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, TransformerLensKeyValueCache

from safecircuits import runtime
from safecircuits.data.chat import ChatFormat, encode_batch
from safecircuits.errors import InputError
from safecircuits.types import HookedModel


@torch.no_grad()
def generate(
    model: HookedModel,
    chat: ChatFormat,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "generating",
) -> list[str]:
    """Greedy completions of `prompts` (chat-formatted with `chat`), decoded up to EOS.

    Hooks already on the model (e.g. an ablation context) stay active during generation.
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompts = list(prompts)
    if not prompts:
        return []
    out: list[str] = []
    device = model.cfg.device
    # Sort by length so each batch pads little; restore the order at the end.
    order = sorted(range(len(prompts)), key=lambda i: len(chat.prompt_ids(prompts[i])))
    results: dict[int, str] = {}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with runtime.compute_threads(model) as threads:
        for idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
            threads.refresh()
            batch = encode_batch(chat, [prompts[i] for i in idx], padding_side="left", max_len=model.cfg.n_ctx, source="generate")
            ids = generate_ids(model, batch.tokens.to(device), batch.attention_mask.to(device), chat.eos_token_id, max_new_tokens)
            for j, i in enumerate(idx):
                results[i] = chat.decode(ids[j].tolist())
    out = [results[i] for i in range(len(prompts))]
    return out


def _bridge_generate_ids(model: HookedModel, tokens: torch.Tensor, attention_mask: torch.Tensor, eos_token_id: int,
                         max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding on a TransformerBridge: one prompt at a time, unpadded, without a KV cache.

    TransformerLens 3.x's bridge gives wrong tokens on SmolLM2 both with its KV cache and with
    left-padded batches (Hugging Face's ``generate`` through the bridge as well), while its full
    forward pass matches HookedTransformer to 1e-3. So the bridge decodes each prompt by full
    forward passes: correct, hooks fire at every step, and slower than the HookedTransformer path.
    """
    rows = []
    for i in range(tokens.shape[0]):
        t = tokens[i : i + 1][:, attention_mask[i].bool()]
        # return_type="tokens": a tensor of token ids (generate's annotation also allows strings).
        gen = cast(torch.Tensor, model.generate(t, max_new_tokens=max_new_tokens, do_sample=False,
                                                eos_token_id=eos_token_id, use_past_kv_cache=False,
                                                return_type="tokens", verbose=False))
        new = gen[0, t.shape[1]:]
        hit = (new == eos_token_id).nonzero()
        if len(hit):
            new = new[: int(hit[0]) + 1]
        rows.append(new)
    width = max(1, max(len(r) for r in rows))
    out = torch.full((len(rows), width), eos_token_id, dtype=torch.long, device=tokens.device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@torch.no_grad()
def generate_ids(
    model: HookedModel,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    eos_token_id: int,
    max_new_tokens: int,
) -> torch.Tensor:
    """Greedy new token ids [batch, <=max_new_tokens] for left-padded `tokens`; EOS-padded after a stop."""
    B, T = tokens.shape
    if not isinstance(model, HookedTransformer):
        return _bridge_generate_ids(model, tokens, attention_mask, eos_token_id, max_new_tokens)
    max_new_tokens = min(max_new_tokens, model.cfg.n_ctx - T)
    if max_new_tokens < 1:
        raise InputError(f"prompts of {T} tokens leave no room to generate within the context of {model.cfg.n_ctx}")
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, B)
    # Unembed the last prompt position only: full-vocabulary logits for every prompt position
    # cost SmolLM2 (49k vocabulary) more than the whole transformer stack.
    resid = model(tokens, attention_mask=attention_mask, past_kv_cache=cache, stop_at_layer=model.cfg.n_layers)
    logits = model.unembed(model.ln_final(resid[:, -1:, :]))
    done = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    new = []
    for step in range(max_new_tokens):
        nxt = logits[:, -1, :].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
        new.append(nxt)
        done |= nxt == eos_token_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        logits = model(nxt[:, None], attention_mask=torch.ones_like(nxt[:, None]), past_kv_cache=cache)
    return torch.stack(new, dim=1)
