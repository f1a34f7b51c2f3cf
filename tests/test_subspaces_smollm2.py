"""The refusal direction end to end on the real SmolLM2-135M-Instruct, with a tiny budget (slow)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from safecircuits.models import load_model

    # float32: the orthogonalised model is checked against hook ablation to float32 rounding below
    return load_model("smollm2-135m-instruct", dtype="float32", progress=False)


def test_refusal_direction_smollm2(smollm2, tmp_path):
    from safecircuits.data.chat import encode_batch
    from safecircuits.data.loaders import load_prompts
    from safecircuits.evaluation.generate import generate
    from safecircuits.subspaces import RefusalConfig, RefusalDirection, find_refusal_direction
    from safecircuits.subspaces.refusal import post_instruction_len

    m, chat = smollm2.model, smollm2.chat
    harmful, harmless = load_prompts("synthetic:harmful:16"), load_prompts("synthetic:harmless:16")
    # "<|im_end|>\n<|im_start|>assistant\n" follows every user turn
    assert post_instruction_len(chat, harmful.prompts + harmless.prompts) >= 3
    # budget: 2 layers x 2 post-instruction positions; 8 prompts per class for the means and 8 for selection.
    # The KL filter is relaxed: with 8 harmless prompts it is noisy, and selection quality is not what this test checks.
    rd = find_refusal_direction(smollm2, harmful[:8], harmless[:8], harmful[8:], harmless[8:],
                                RefusalConfig(positions=(-2, -1), layers=(10, 14), kl_threshold=10.0, prune_layer_fraction=0.0))
    assert rd.direction.shape == (m.cfg.d_model,) and rd.layer in (10, 14) and rd.pos in (-2, -1)
    assert len(rd.candidates) == 4 and rd.candidate_directions.shape == (2, m.cfg.n_layers + 1, m.cfg.d_model)
    assert all(c["kl"] >= 0 for c in rd.candidates)
    rd.save(tmp_path / "rd.safetensors")
    back = RefusalDirection.load(tmp_path / "rd.safetensors")
    assert torch.equal(back.direction, rd.direction) and back.candidates == rd.candidates
    assert back.provenance["model"] == "smollm2-135m-instruct" and back.provenance["harmful"]["hash"] == harmful[:8].content_hash

    before = {n: p.detach().clone() for n, p in list(m.named_parameters())[:5]}
    ortho = rd.orthogonalize(m)
    assert all(torch.equal(p, before[n]) for n, p in list(m.named_parameters())[:5])
    b = encode_batch(chat, harmful.prompts[8:12] + harmless.prompts[8:12], padding_side="left", max_len=m.cfg.n_ctx)
    with torch.no_grad():
        plain = m(b.tokens, attention_mask=b.attention_mask)[:, -1]
        with rd.ablate(m):
            hooked = m(b.tokens, attention_mask=b.attention_mask)[:, -1]
        orth = ortho(b.tokens, attention_mask=b.attention_mask)[:, -1]
    # The two computations differ only in float32 rounding order (the r-component is removed from each
    # write before vs. after it is summed into the residual stream, over 30 layers): measured max |diff|
    # is about 5e-5 on logits of magnitude ~30. 1e-3 leaves 20x headroom yet is ~1/5000 of the
    # ablation's own effect on the logits (checked to be > 0.5 below), so a wrong edit fails.
    assert float((plain - hooked).abs().max()) > 0.5
    assert torch.allclose(orth, hooked, atol=1e-3, rtol=0), float((orth - hooked).abs().max())
    prompts = harmful.prompts[8:10]
    with rd.ablate(m):
        want = generate(m, chat, prompts, max_new_tokens=6)
    assert generate(ortho, chat, prompts, max_new_tokens=6) == want
