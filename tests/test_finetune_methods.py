"""The safety-preserving fine-tuning methods: CWAC, SafeLoRA, CSULoRA, PACT (mechanics on random-weight
organism-shaped models, where the aligned one is the base plus a small update; PACT's safety tokens on the
trained organisms, slow)."""

from __future__ import annotations

import pytest
import torch

from safecircuits.finetune.base import FinetuneContext
from safecircuits.finetune.loop import FinetuneConfig, copy_loaded, finetune
from safecircuits.finetune.methods import METHODS, get_method
from safecircuits.finetune.methods.cwac import project_matrix, project_residual
from safecircuits.finetune.methods.pact import pact_kl, safety_tokens
from safecircuits.finetune.methods.posthoc import csulora_matrix, csulora_parts
from safecircuits.finetune.tasks import get_task
from safecircuits.models.weights import as_matrix


@pytest.fixture(scope="module")
def subspace(random_aligned, random_base):
    from safecircuits.subspaces import WeightDeltaSubspace

    return WeightDeltaSubspace.from_models(random_aligned, random_base, rank=4)


@pytest.fixture(scope="module")
def features(random_aligned):
    """A random (untrained) SAELens SAE at the last residual stream and a FeatureSet ranking its features."""
    from sae_lens import StandardSAE, StandardSAEConfig

    from safecircuits.features import FeatureSet

    torch.manual_seed(0)
    d = random_aligned.model.cfg.d_model
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=4 * d))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.3)
        sae.b_enc.fill_(0.1)
    hook = f"blocks.{random_aligned.model.cfg.n_layers - 1}.hook_resid_post"
    fs = FeatureSet(None, hook, "diff", torch.rand(4 * d), torch.rand(4 * d))
    return fs, sae


@pytest.fixture(scope="module")
def safety(random_aligned):
    return get_task("reverse-steps").safety_data(random_aligned, n=8, seed=0)


def _ctx(lm, artifacts, safety_prompts=None):
    return FinetuneContext(lm=copy_loaded(lm), reference=copy_loaded(lm), config=FinetuneConfig(steps=2), artifacts=artifacts,
                           safety_prompts=safety_prompts)


def test_registry_has_the_safety_finetuning_methods():
    for name in ("pact", "cwac", "cwac-weights-only", "cwac-acts-only", "safelora", "csulora"):
        cls = METHODS[name]
        assert cls.name == name and cls.mode in ("full", "lora") and cls.source and isinstance(cls.needs, tuple)


# -- CWAC -------------------------------------------------------------------------------------
def test_project_matrix_is_orthogonal_and_idempotent():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 9, generator=g, dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(12, 3, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(9, 2, generator=g, dtype=torch.float64))
    p = project_matrix(m, u, v, "both")
    assert torch.allclose(u.T @ p, torch.zeros(3, 9, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(p @ v, torch.zeros(12, 2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(project_matrix(p, u, v, "both"), p, atol=1e-12)
    assert not torch.allclose(p, m)
    assert torch.allclose(u.T @ project_matrix(m, u, v, "out"), torch.zeros(3, 9, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="side"):
        project_matrix(m, u, v, "left")  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["out", "in", "both"])
def test_cwac_transform_update_orthogonal_to_subspace(random_aligned, subspace, side):
    method = get_method("cwac-weights-only", basis="weights", side=side, rank=4)
    ctx = _ctx(random_aligned, {"subspace": subspace})
    method.setup(ctx)
    name = "blocks.0.attn.W_O"
    delta = torch.randn(subspace.shapes[name], generator=torch.Generator().manual_seed(1))
    before = delta.clone()
    out = as_matrix(name, method.transform_update(ctx, name, delta))
    assert torch.equal(delta, before)  # input untouched
    u, vh = subspace.basis(name), subspace.input_basis(name)
    if side in ("out", "both"):
        assert (u.T @ out).abs().max() < 1e-5
    if side in ("in", "both"):
        assert (out @ vh.T).abs().max() < 1e-5
    assert (u.T @ as_matrix(name, delta)).abs().max() > 1e-2  # the raw update was not orthogonal
    emb = torch.randn_like(random_aligned.model.W_E)
    assert torch.equal(method.transform_update(ctx, "embed.W_E", emb), emb)  # non-subspace parameters pass


def test_cwac_activation_basis_blocks_residual_reads_and_writes(random_aligned, subspace):
    d = random_aligned.model.cfg.d_model
    basis, _ = torch.linalg.qr(torch.randn(d, 3, generator=torch.Generator().manual_seed(2)))
    g = torch.Generator().manual_seed(3)
    w_o = project_residual("blocks.0.attn.W_O", torch.randn(4, d // 4, d, generator=g), basis)
    assert (as_matrix("blocks.0.attn.W_O", w_o).T @ basis).abs().max() < 1e-5  # writes nothing into B
    w_q = project_residual("blocks.1.attn.W_Q", torch.randn(4, d, d // 4, generator=g), basis)
    assert (as_matrix("blocks.1.attn.W_Q", w_q) @ basis).abs().max() < 1e-5  # reads nothing from B
    w_u = project_residual("unembed.W_U", torch.randn(d, 7, generator=g), basis)
    assert (basis.T @ w_u).abs().max() < 1e-5
    w_e = project_residual("embed.W_E", torch.randn(7, d, generator=g), basis)
    assert (w_e @ basis).abs().max() < 1e-5
    ln = torch.randn(d, generator=g)
    assert torch.equal(project_residual("blocks.0.ln1.w", ln, basis), ln)
    # without an activation basis artifact, CWAC derives one from the weight-delta subspace
    method = get_method("cwac-weights-only")
    ctx = _ctx(random_aligned, {"subspace": subspace})
    method.setup(ctx)
    b = ctx.state["cwac_basis"]
    assert b.shape[0] == d and torch.allclose(b.T @ b, torch.eye(b.shape[1]), atol=1e-5)


def test_cwac_through_the_loop_keeps_total_update_orthogonal(random_aligned, subspace):
    data = get_task("reverse-steps").train_data(random_aligned, 0.2, 32, 0)
    run = finetune(random_aligned, data, get_method("cwac-weights-only", basis="weights", side="both", rank=4),
                   FinetuneConfig(steps=3, lr=1e-2, batch_size=8, progress=False), artifacts={"subspace": subspace})
    after, before = dict(run.lm.model.named_parameters()), dict(random_aligned.model.named_parameters())
    for name in ("blocks.0.attn.W_V", "blocks.1.mlp.W_out"):
        total = as_matrix(name, (after[name] - before[name]).detach())
        assert total.abs().max() > 1e-4  # it did train
        assert (subspace.basis(name).T @ total).abs().max() < 1e-5
        assert (total @ subspace.input_basis(name).T).abs().max() < 1e-5


def test_cwac_feature_anchor_zero_at_reference_and_differentiable(random_aligned, features, safety):
    from safecircuits.data.chat import encode_batch

    batch = encode_batch(random_aligned.chat, safety.prompts[:2], safety.responses[:2])
    logits = torch.zeros(2, batch.tokens.shape[1], random_aligned.model.cfg.d_vocab)  # unused by CWAC
    method = get_method("cwac-acts-only", lam=2.0, k=8, safety_batch=4, anchor_source="safety")
    ctx = _ctx(random_aligned, {"features": features}, safety)
    method.setup(ctx)
    assert len(ctx.state["cwac_batches"]) == 2  # only the 8 harmful prompts (anchor_on="harmful"), batches of 4
    loss = method.extra_loss(ctx, 0, batch, logits)["feature_anchor"]
    assert float(loss) == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        ctx.lm.model.blocks[0].mlp.W_out.add_(0.2 * torch.randn_like(ctx.lm.model.blocks[0].mlp.W_out))
    loss = method.extra_loss(ctx, 1, batch, logits)["feature_anchor"]
    assert float(loss) > 1e-4
    loss.backward()
    assert ctx.lm.model.blocks[0].mlp.W_out.grad.abs().sum() > 0
    assert all(p.grad is None for p in features[1].parameters())  # the SAE is frozen


def test_cwac_anchor_backward_after_the_task_loss_gives_the_same_update(random_aligned, features, safety, monkeypatch):
    """The safety-batch anchor does not need the training graph, so the loop frees it first (half the
    peak memory); the result must equal one backward of the summed loss."""
    from safecircuits.finetune.methods.cwac import CWACActsOnly

    method = get_method("cwac-acts-only", lam=5.0, k=8, safety_batch=4)
    assert not method.extra_loss_needs_train_graph()
    assert get_method("cwac", anchor_source="train").extra_loss_needs_train_graph()
    data = get_task("reverse-steps").train_data(random_aligned, 0.2, 32, 0)
    cfg = FinetuneConfig(steps=3, lr=1e-2, batch_size=8, progress=False)
    split = finetune(random_aligned, data, method, cfg, artifacts={"features": features}, safety_prompts=safety)
    monkeypatch.setattr(CWACActsOnly, "extra_loss_needs_train_graph", lambda self: True)
    joint = finetune(random_aligned, data, get_method("cwac-acts-only", lam=5.0, k=8, safety_batch=4), cfg, artifacts={"features": features},
                     safety_prompts=safety)
    assert split.losses[-1]["feature_anchor"] > 0
    assert split.losses[-1]["total"] == pytest.approx(joint.losses[-1]["total"], rel=1e-5)
    a, b = dict(split.lm.model.named_parameters()), dict(joint.lm.model.named_parameters())
    moved = sum(float((a[n] - p).pow(2).sum()) for n, p in random_aligned.model.named_parameters()) ** 0.5
    apart = sum(float((a[n] - b[n]).pow(2).sum()) for n in a) ** 0.5
    assert moved > 1e-2  # it trained
    # equal up to float summation order (AdamW's normalisation magnifies it in near-zero-gradient entries)
    assert apart < 1e-3 * moved, (apart, moved)


def test_cwac_rejects_bad_hparams_and_missing_artifacts(random_aligned):
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        get_method("cwac", lamda=1.0)
    with pytest.raises(ValueError, match="side"):
        get_method("cwac", side="left")
    with pytest.raises(ValueError, match="safety_prompts"):
        get_method("cwac-acts-only", anchor_source="safety").setup(_ctx(random_aligned, {"features": object()}))


# -- SafeLoRA / CSULoRA -----------------------------------------------------------------------
def _deltas(subspace, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in subspace.names[:6]:
        d_out, d_in = subspace.matrix_shape(n)
        m = torch.randn(d_out, 2, generator=g) @ torch.randn(2, d_in, generator=g)  # low rank, like B A
        m = m + 2.0 * subspace.basis(n)[:, :1] @ subspace.input_basis(n)[:1]  # some aligned energy
        from safecircuits.models.weights import from_matrix

        out[n] = from_matrix(n, m, subspace.shapes[n]).contiguous()
    return out


@pytest.mark.parametrize("name,hp", [("safelora", {"tau": 0.9}), ("safelora", {"k": 2}), ("csulora", {}), ("csulora", {"keep": "aligned"})])
def test_posthoc_never_mutates_input(random_aligned, subspace, name, hp):
    deltas = _deltas(subspace)
    copies = {n: d.clone() for n, d in deltas.items()}
    method = get_method(name, rank=4, **hp)
    out = method.post_hoc(_ctx(random_aligned, {"subspace": subspace}), deltas)
    for n in deltas:
        assert torch.equal(deltas[n], copies[n])  # bitwise
        assert out[n].shape == deltas[n].shape and out[n].data_ptr() != deltas[n].data_ptr()
    assert any(not torch.allclose(out[n], deltas[n]) for n in deltas)  # it did change something


def test_safelora_k_projects_the_lowest_cosines(random_aligned, subspace):
    deltas = _deltas(subspace, seed=1)
    method = get_method("safelora", k=2, rank=4)
    ctx = _ctx(random_aligned, {"subspace": subspace})
    out = method.post_hoc(ctx, deltas)
    rep = ctx.state["safelora"]
    lowest = sorted(rep["cosines"], key=rep["cosines"].get)[:2]
    assert sorted(rep["projected"]) == sorted(lowest)
    for n in deltas:
        assert torch.equal(out[n], deltas[n]) == (n not in lowest)


def test_csulora_parts_are_an_orthogonal_split():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(10, 8, generator=g, dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(10, 3, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(8, 2, generator=g, dtype=torch.float64))
    parts = csulora_parts(m, u, v)
    assert torch.allclose(sum(parts.values()), m, atol=1e-12)
    keys = list(parts)
    for i in range(3):
        for j in range(i + 1, 3):
            assert abs(float((parts[keys[i]] * parts[keys[j]]).sum())) < 1e-10
    assert torch.allclose(u.T @ parts["O"], torch.zeros(3, 8, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(parts["F"], u @ u.T @ m @ v @ v.T, atol=1e-12)


@pytest.mark.parametrize("keep", ["off", "aligned"])
def test_csulora_closed_form_is_the_minimiser(keep):
    g = torch.Generator().manual_seed(1)
    m = torch.randn(10, 8, generator=g, dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(10, 3, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(8, 2, generator=g, dtype=torch.float64))
    mu = 7.0
    parts0 = csulora_parts(m, u, v)
    total = float((m**2).sum())
    rho = {k: float((x**2).sum()) / total for k, x in parts0.items()}
    attenuated = [k for k in parts0 if k != ("O" if keep == "off" else "F")]

    def objective(x: torch.Tensor) -> torch.Tensor:
        p = csulora_parts(x, u, v)
        return ((x - m) ** 2).sum() + mu * sum(rho[k] * (p[k] ** 2).sum() for k in attenuated)

    sol, factors = csulora_matrix(m, u, v, mu=mu, keep=keep)
    assert factors["O" if keep == "off" else "F"] == 1.0 and all(factors[k] < 1.0 for k in attenuated)
    x = sol.clone().requires_grad_(True)
    objective(x).backward()
    assert x.grad.abs().max() < 1e-9  # stationary point of a strictly convex objective
    j0 = float(objective(sol))
    for s in range(20):
        e = torch.randn(m.shape, generator=torch.Generator().manual_seed(100 + s), dtype=torch.float64)
        assert float(objective(sol + 1e-3 * e)) > j0
    # gradient descent from the input converges to the closed form
    y = m.clone().requires_grad_(True)
    opt = torch.optim.SGD([y], lr=0.05)
    for _ in range(2000):
        opt.zero_grad()
        objective(y).backward()
        opt.step()
    assert torch.allclose(y.detach(), sol, atol=1e-6)


# -- PACT -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pact_safety_tokens_include_refusal_tokens(tiny_aligned, tiny_base):
    """Slow: which tokens alignment made likelier is a property of the trained organisms."""
    safety = get_task("reverse-steps").safety_data(tiny_aligned, n=8, seed=0)
    st = safety_tokens(tiny_aligned, tiny_base, safety.filter(label="harmful"), k=100)
    words = set(tiny_aligned.tokenizer.convert_ids_to_tokens(st["ids"].tolist()))
    assert {"sorry", "cannot"} <= words
    assert st["k"] == tiny_aligned.model.cfg.d_vocab // 10  # k capped at 10% of the organism vocabulary
    assert float(st["v"].norm()) == pytest.approx(1.0, abs=1e-5) and abs(float(st["v"].mean())) < 1e-5
    v = dict(zip(tiny_aligned.tokenizer.convert_ids_to_tokens(st["ids"].tolist()), st["v"].tolist(), strict=True))
    assert v["sorry"] > 0 and v["cannot"] > 0  # refusal words gain probability through alignment


def test_pact_kl_matches_formula_and_gates():
    g = torch.Generator().manual_seed(0)
    stud, full, post = (torch.randn(2, 12, 5, generator=g) for _ in range(3))
    v = torch.tensor([0.5, -0.2, 0.3, 0.0, 0.7])
    mask = torch.ones(2, 12)
    kl = pact_kl(stud, full, post, v, mask)
    # identical reference (full == post): the gate does not matter; check the formula by hand
    kl_same = pact_kl(stud, full, full, v, mask)
    q = torch.softmax(full / 2, -1) * v.clamp_min(0)
    q = q / q.sum(-1, keepdim=True)
    ref = (q * (q.clamp_min(1e-12).log() - torch.log_softmax(stud / 2, -1))).sum(-1).mean() * 4
    assert float(kl_same) == pytest.approx(float(ref), rel=1e-5)
    assert float(kl) != pytest.approx(float(kl_same))
    # the gate decays after 8 steps: with masks only on late steps, ref_post barely matters
    late = torch.zeros(2, 12)
    late[:, 11] = 1
    a, b = pact_kl(stud, full, post, v, late, tau=1e-3), pact_kl(stud, full, full, v, late, tau=1e-3)
    assert float(a) == pytest.approx(float(b), rel=1e-4)


def test_pact_through_the_loop(random_aligned, random_base, safety):
    data = get_task("reverse-steps").train_data(random_aligned, 0.1, 16, 0)
    method = get_method("pact")
    run = finetune(random_aligned, data, method, FinetuneConfig(steps=2, batch_size=4, progress=False, lora_targets=method.lora_targets),
                   artifacts={"base": random_base}, safety_prompts=safety)
    assert all("pact_kl" in r and r["pact_kl"] >= 0 for r in run.losses)
    changed = [n for n, p in run.lm.model.named_parameters() if not torch.equal(p, dict(random_aligned.model.named_parameters())[n])]
    assert changed and all(n.endswith(("W_Q", "W_V")) for n in changed)  # LoRA on W_Q, W_V only


def test_cwac_train_anchor_reads_the_training_forward_and_leaves_no_hook(random_aligned, subspace, features, safety):
    data = get_task("reverse-steps").train_data(random_aligned, 0.3, 16, 0)
    method = get_method("cwac", k=8, anchor_source="train")
    assert method.hparams["lam"] == 15.0
    run = finetune(random_aligned, data, method, FinetuneConfig(steps=3, lr=1e-2, batch_size=8, progress=False),
                   artifacts={"subspace": subspace, "features": features}, safety_prompts=safety)
    anchors = [r["feature_anchor"] for r in run.losses]
    assert anchors[0] == pytest.approx(0.0, abs=1e-10)  # step 0: the student is the reference
    assert anchors[-1] > 1e-6  # it moved, and the anchor saw it
    hook = features[0].hook
    assert not run.lm.model.hook_dict[hook]._forward_hooks  # the capture hook is gone from the returned model
    assert get_method("cwac").hparams["anchor_source"] == "safety" and get_method("cwac").hparams["lam"] == 50.0
    with pytest.raises(ValueError, match="anchor_source"):
        get_method("cwac", anchor_source="both")


def test_cwac_in_lora_mode_keeps_the_update_off_the_residual_basis():
    """CWAC's projection on LoRA factors: every merged update neither reads from nor writes into B."""
    from conftest import random_lm

    from safecircuits.models.language import Language
    from safecircuits.models.weights import as_matrix, weight_kind

    lm = random_lm("llama")
    lang = Language(0)
    data = lang.prompt_set("train", "harmless")[:32]
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(lm.model.cfg.d_model, 5, generator=g))
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    method = get_method("cwac-weights-only")
    cfg = FinetuneConfig(steps=4, batch_size=8, lr=1e-2, progress=False, mode="lora")
    run = finetune(lm, data, method, cfg, artifacts={"subspace": object(), "activation_subspace": basis})
    checked = 0
    for n, p in run.lm.model.named_parameters():
        try:
            kind = weight_kind(n)
        except ValueError:
            continue
        delta = as_matrix(n, p.detach() - before[n])
        assert float(delta.abs().max()) > 1e-6, f"{n} did not train"
        if kind in ("W_O", "W_out"):
            leak = basis.T @ delta
        else:
            leak = delta @ basis
        assert float(leak.abs().max()) < 1e-5 * float(delta.abs().max()) + 1e-7, f"{n}: the update touches the basis"
        checked += 1
    assert checked == 2 * 7
    # without the projection the same run does touch the basis (the check can fail)
    free = finetune(lm, data, get_method("lora"), cfg)
    w = "blocks.0.mlp.W_in"
    delta = as_matrix(w, dict(free.lm.model.named_parameters())[w].detach() - before[w])
    assert float((delta @ basis).abs().max()) > 1e-3 * float(delta.abs().max())


def test_cwac_features_file_chooses_the_anchor_layer(random_aligned, features, safety, tmp_path):
    """``features=PATH`` anchors the saved FeatureSet's SAE (here at the first block) instead of the
    benchmark's (the last block): a change after the first block moves only the latter's anchor."""
    from sae_lens import StandardSAE, StandardSAEConfig

    from safecircuits.data.chat import encode_batch
    from safecircuits.features import FeatureSet

    d = random_aligned.model.cfg.d_model
    torch.manual_seed(1)
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=4 * d))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.3)
        sae.b_enc.fill_(0.1)
    sae.save_model(str(tmp_path / "sae"))
    FeatureSet(str(tmp_path / "sae"), "blocks.0.hook_resid_post", "diff", torch.rand(4 * d), torch.rand(4 * d)).save(tmp_path / "f.json")
    batch = encode_batch(random_aligned.chat, safety.prompts[:2], safety.responses[:2])
    logits = torch.zeros(2, batch.tokens.shape[1], random_aligned.model.cfg.d_vocab)
    loss = {}
    for name, hp in (("file", {"features": str(tmp_path / "f.json")}), ("artifact", {})):
        method = get_method("cwac-acts-only", lam=2.0, k=8, safety_batch=4, **hp)
        ctx = _ctx(random_aligned, {"features": features}, safety)
        method.setup(ctx)
        with torch.no_grad():
            last = ctx.lm.model.blocks[-1].mlp.W_out
            last.add_(0.5 * torch.randn(last.shape, generator=torch.Generator().manual_seed(2)))
        loss[name] = float(method.extra_loss(ctx, 0, batch, logits)["feature_anchor"].detach())
    assert loss["file"] == pytest.approx(0.0, abs=1e-10) and loss["artifact"] > 1e-4, loss
    # through the loop with no features artifact at all: the file is enough
    data = get_task("reverse-steps").train_data(random_aligned, 0.2, 16, 0)
    run = finetune(random_aligned, data, get_method("cwac-acts-only", lam=5.0, k=8, safety_batch=4, features=str(tmp_path / "f.json")),
                   FinetuneConfig(steps=2, lr=1e-2, batch_size=8, progress=False), artifacts={}, safety_prompts=safety)
    assert run.losses[-1]["feature_anchor"] > 0
    with pytest.raises(ValueError, match="needs the artifact 'features'"):
        finetune(random_aligned, data, get_method("cwac-acts-only"), FinetuneConfig(steps=1, progress=False), artifacts={}, safety_prompts=safety)
    with pytest.raises(FileNotFoundError, match="feature set file .* does not exist"):
        get_method("cwac-acts-only", features=str(tmp_path / "missing.json")).setup(_ctx(random_aligned, {"features": features}, safety))


def test_cwac_features_path_names_the_build_and_refuses_other_weights(random_aligned, safety, tmp_path):
    """``{fingerprint}`` in a features path is the fine-tuned model's weights fingerprint, so one
    config serves every build; a feature set ranked on other weights is a clear error, not a silent
    anchor on the wrong model's features."""
    from sae_lens import StandardSAE, StandardSAEConfig

    from safecircuits.features import FeatureSet
    from safecircuits.models.loaded import weights_fingerprint

    d = random_aligned.model.cfg.d_model
    StandardSAE(StandardSAEConfig(d_in=d, d_sae=4 * d)).save_model(str(tmp_path / "sae"))
    fp = weights_fingerprint(random_aligned.model)

    def save(path, fingerprint):
        path.parent.mkdir(parents=True, exist_ok=True)
        FeatureSet(str(tmp_path / "sae"), "blocks.0.hook_resid_post", "diff", torch.rand(4 * d), torch.rand(4 * d),
                   provenance={"weights_fingerprint": fingerprint}).save(path)

    save(tmp_path / fp[:8] / "f.json", fp)
    method = get_method("cwac-acts-only", k=8, safety_batch=4, features=str(tmp_path / "{fingerprint}" / "f.json"))
    method.setup(_ctx(random_aligned, {}, safety))  # found under this model's fingerprint
    save(tmp_path / "other" / "f.json", "0123456789abcdef")
    with pytest.raises(ValueError, match=f"ranked on weights 01234567, but the model being fine-tuned is {fp[:8]}"):
        get_method("cwac-acts-only", k=8, safety_batch=4, features=str(tmp_path / "other" / "f.json")).setup(_ctx(random_aligned, {}, safety))
    with pytest.raises(FileNotFoundError, match="does not exist"):  # another model's fingerprint names no file
        get_method("cwac-acts-only", features=str(tmp_path / "{fingerprint}" / "g.json")).setup(_ctx(random_aligned, {}, safety))


def test_rank_features_records_the_weights_it_ranked_on(random_aligned, features):
    from safecircuits.features import rank_features
    from safecircuits.models.loaded import weights_fingerprint

    fs, sae = features
    ps = random_aligned.profile.eval_prompts("val", limit=4)
    ranked = rank_features(random_aligned, sae, ps, hook=fs.hook)
    assert ranked.provenance["weights_fingerprint"] == weights_fingerprint(random_aligned.model)


def test_benchmark_builds_no_sae_when_every_cwac_label_brings_features():
    from safecircuits.finetune.benchmark import BenchmarkConfig

    hp = {"cwac@f": {"method": "cwac", "features": "f.json"}, "acts@f": {"method": "cwac-acts-only", "features": "g.json"}}
    assert BenchmarkConfig(methods=["sft", "cwac@f", "acts@f"], method_hparams=hp).artifacts_given() == ["features"]
    assert BenchmarkConfig(methods=["cwac@f", "cwac-acts-only"], method_hparams=hp).artifacts_given() == []
    assert BenchmarkConfig(methods=["sft", "lora"]).artifacts_given() == []


def test_cwac_basis_layers_and_k_choose_the_blocked_directions(random_aligned, subspace):
    """basis_layers / basis_k block only the chosen streams' first PCs: a fine-tuning update may
    then write along another stream's PC, but not along the chosen one."""
    d = random_aligned.model.cfg.d_model
    n = random_aligned.model.cfg.n_layers + 1
    bases = torch.linalg.qr(torch.randn(n, d, 2, generator=torch.Generator().manual_seed(4)))[0]
    full = torch.linalg.qr(bases.permute(1, 0, 2).reshape(d, -1))[0]
    data = get_task("reverse-steps").train_data(random_aligned, 0.2, 16, 0)
    cfg = FinetuneConfig(steps=2, lr=1e-2, batch_size=8, progress=False)
    run = finetune(random_aligned, data, get_method("cwac-weights-only", basis_layers="1", basis_k=1), cfg,
                   artifacts={"subspace": subspace, "activation_subspace": full, "activation_bases": bases})
    name = "blocks.0.mlp.W_out"
    delta = as_matrix(name, dict(run.lm.model.named_parameters())[name] - dict(random_aligned.model.named_parameters())[name]).detach().float()
    chosen, other = bases[1, :, 0], bases[2, :, 0]
    assert float(delta.norm()) > 1e-3  # it trained
    assert float((chosen @ delta).norm()) < 1e-4 * float(delta.norm())  # nothing written along the chosen PC
    assert float((other @ delta).norm()) > 1e-2 * float(delta.norm())  # another stream's PC is free
    with pytest.raises(ValueError, match="basis_layers must look like"):
        get_method("cwac", basis_layers="late")
    with pytest.raises(ValueError, match=r"basis_layers \[99\] out of range"):
        get_method("cwac-weights-only", basis_layers="99").setup(_ctx(random_aligned, {"subspace": subspace, "activation_bases": bases}))
    with pytest.raises(ValueError, match="basis_k=3 but the per-layer bases hold 2"):
        get_method("cwac-weights-only", basis_k=3).setup(_ctx(random_aligned, {"subspace": subspace, "activation_bases": bases}))
    with pytest.raises(ValueError, match="need ctx.artifacts\\['activation_bases'\\]"):
        get_method("cwac-weights-only", basis_k=1).setup(_ctx(random_aligned, {"subspace": subspace}))
