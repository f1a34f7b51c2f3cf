"""The [d_out, d_in] matrix view of TransformerLens weights is exact and follows y = M x."""

import torch

from safecircuits.models.weights import as_matrix, from_matrix, head_rows, weight_names


def test_round_trip_and_linear_convention(random_aligned):
    m = random_aligned.model
    params = dict(m.named_parameters())
    names = weight_names(m)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"W_Q", "W_K", "W_V", "W_O", "W_in", "W_out"}
    for n in names:
        assert torch.equal(from_matrix(n, as_matrix(n, params[n]), params[n].shape), params[n])
    x = torch.randn(m.cfg.d_model)
    wq = m.blocks[0].attn.W_Q
    assert torch.allclose(as_matrix("blocks.0.attn.W_Q", wq) @ x, torch.einsum("d,hde->he", x, wq).reshape(-1), atol=1e-5)
    wo = m.blocks[0].attn.W_O
    z = torch.randn(m.cfg.n_heads, m.cfg.d_head)
    assert torch.allclose(as_matrix("blocks.0.attn.W_O", wo) @ z.reshape(-1), torch.einsum("he,hed->d", z, wo), atol=1e-5)
    w_in = m.blocks[0].mlp.W_in
    assert torch.allclose(as_matrix("blocks.0.mlp.W_in", w_in) @ x, x @ w_in, atol=1e-5)
    side, sl = head_rows("blocks.0.attn.W_Q", 1, wq.shape)
    assert side == "rows" and sl == slice(m.cfg.d_head, 2 * m.cfg.d_head)


def test_unknown_kind_is_named():
    import pytest

    with pytest.raises(ValueError, match="W_foo"):
        weight_names(torch.nn.Linear(2, 2), kinds=["W_foo"])
