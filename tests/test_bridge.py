"""The bridge backend (TransformerBridge) exposes the hooks safecircuits uses, with HookedTransformer's numbers."""

from __future__ import annotations

import pytest
import torch

from safecircuits.errors import ModelNotAvailableError

pytestmark = [pytest.mark.slow, pytest.mark.network]


@pytest.fixture(scope="module")
def both():
    from safecircuits.models import load_model

    try:
        hooked = load_model("smollm2-135m-instruct", device="cpu", dtype="float32", progress=False)
        bridge = load_model("smollm2-135m-instruct", backend="bridge", device="cpu", dtype="float32", progress=False)
    except ModelNotAvailableError as e:  # offline with no cached wheel
        pytest.skip(str(e))
    return hooked, bridge


def test_same_hooks_same_numbers(both):
    from safecircuits.circuits.hooks import mask_hooks
    from safecircuits.data.chat import encode_batch
    from safecircuits.evaluation.metrics import next_token_logprobs

    hooked, bridge = both
    assert bridge.info["backend"] == "bridge" and bridge.model.cfg.n_layers == 30 and bridge.model.cfg.n_heads == 9
    prompts = ["Write a haiku about snow.", "How do I bake bread?", "What is 12 + 30? Answer with the number only."]
    lp_h = next_token_logprobs(hooked.model, hooked.chat, prompts)
    lp_b = next_token_logprobs(bridge.model, bridge.chat, prompts)
    assert float((lp_h - lp_b).abs().max()) < 1e-3
    b = encode_batch(hooked.chat, prompts[:1])
    names = lambda n: n in ("blocks.4.attn.hook_z", "blocks.4.mlp.hook_post", "blocks.4.hook_resid_pre")  # noqa: E731
    _, ch = hooked.model.run_with_cache(b.tokens, names_filter=names)
    _, cb = bridge.model.run_with_cache(b.tokens, names_filter=names)
    for k in ("blocks.4.attn.hook_z", "blocks.4.mlp.hook_post", "blocks.4.hook_resid_pre"):
        assert ch[k].shape == cb[k].shape, k
        torch.testing.assert_close(cb[k], ch[k], rtol=1e-3, atol=1e-3, msg=k)
    # a circuit mask (two heads and fifty neurons of layer 4 zeroed) changes both the same way
    heads = torch.ones(30, 9)
    heads[4, :2] = 0
    neurons = torch.ones(30, 1536)
    neurons[4, :50] = 0
    with hooked.model.hooks(fwd_hooks=mask_hooks(heads, neurons)):
        mh = next_token_logprobs(hooked.model, hooked.chat, prompts)
    with bridge.model.hooks(fwd_hooks=mask_hooks(heads, neurons)):
        mb = next_token_logprobs(bridge.model, bridge.chat, prompts)
    assert float((mh - lp_h).abs().max()) > 1e-3  # the mask matters
    assert float((mh - mb).abs().max()) < 1e-3


def test_generation_runs_through_hugging_face_with_hooks(both):
    from safecircuits.evaluation.generate import generate

    hooked, bridge = both
    prompts = ["Name three colours.", "What is the capital of France?"]
    out_h = generate(hooked.model, hooked.chat, prompts, max_new_tokens=8)
    out_b = generate(bridge.model, bridge.chat, prompts, max_new_tokens=8)
    assert out_b == out_h
    calls = []
    with bridge.model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: calls.append(1))]):
        generate(bridge.model, bridge.chat, prompts[:1], max_new_tokens=3)
    assert len(calls) >= 3  # the prompt and each new token went through the hooked blocks


def test_device_map_and_bad_options():
    from safecircuits.models import load_model

    with pytest.raises(ValueError, match="backend='bridge'"):
        load_model("smollm2-135m-instruct", device_map="auto")
    with pytest.raises(ValueError, match="unknown backend"):
        load_model("smollm2-135m-instruct", backend="vllm")
    with pytest.raises(ValueError, match="organisms and saved directories"):
        load_model("organism:aligned", backend="bridge")
    lm = load_model("smollm2-135m-instruct", backend="bridge", device_map={"": "cpu"}, dtype="float32", progress=False)
    assert lm.info["device_map"] is not None and next(lm.model.parameters()).device.type == "cpu"
