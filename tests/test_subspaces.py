"""Subspaces: refusal direction, interventions, weight-delta subspace, geometry, CLI.

Every test here checks mechanics (shapes, hooks, exact equalities, saving, errors, CLI plumbing),
so it runs on random-weight organism-shaped models (``random_aligned`` = ``random_base`` plus a small
update) and trains nothing; what the methods find on trained organisms is in the slow figure tests
(tests/test_subspaces_figures.py, tests/test_selection_validation.py)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from safecircuits.cli.subspaces import app
from safecircuits.evaluation.generate import generate
from safecircuits.models.language import Language
from safecircuits.subspaces import (
    ActivationSubspace,
    GeometryReport,
    RefusalConfig,
    RefusalDirection,
    ShapeMismatchError,
    WeightDeltaSubspace,
    activation_addition,
    apply_delta_projection,
    collect_activations_at,
    compute_activation_subspace,
    compute_activation_subspaces,
    compute_candidate_directions,
    directional_ablation,
    find_refusal_direction,
    geometry_report,
    orthogonalize_weights,
    overlap,
    principal_angles,
    safelora_cosines,
    safelora_project,
)
from safecircuits.subspaces.refusal import post_instruction_len


@pytest.fixture(scope="module")
def sets(random_aligned):
    lang = Language(random_aligned.info["organism"]["split_seed"])
    return {s: (lang.prompt_set(s, "harmful")[:48], lang.prompt_set(s, "harmless")[:48]) for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def rd(random_aligned, sets):
    (h, b), (hv, bv) = sets["train"], sets["val"]
    # random weights: keep every candidate (no KL filter) so that selection has something to choose
    return find_refusal_direction(random_aligned, h, b, hv[:16], bv[:16], RefusalConfig(prune_layer_fraction=0.0, kl_threshold=1e9,
                                                                                      max_new_tokens=6))


def test_post_instruction_positions(random_aligned, sets):
    # "<bos> [user] ... [assistant]": only "[assistant]" is shared once the prompts end with "?" or "."
    h, b = sets["train"]
    assert post_instruction_len(random_aligned.chat, h.prompts + b.prompts) == 1
    c = compute_candidate_directions(random_aligned.model, random_aligned.chat, h, b)
    assert c.shape == (1, random_aligned.model.cfg.n_layers + 1, random_aligned.model.cfg.d_model)
    assert c.dtype == torch.float64


def test_refusal_direction_selection_and_roundtrip(rd, random_aligned, tmp_path):
    m = random_aligned.model
    assert rd.direction.shape == (m.cfg.d_model,)
    assert abs(float(rd.direction.norm()) - 1) < 1e-5
    assert rd.positions == [-3, -2, -1]  # a one-token template: the last 3 positions are scored
    assert len(rd.candidates) == len(rd.positions) * (m.cfg.n_layers + 1)
    assert rd.validated is not None and "val_asr_ablated" in rd.validation
    kept = [c for c in rd.candidates if c["kept"]]
    assert rd.layer == min(kept, key=lambda c: c["refusal_score"])["layer"]
    assert rd.provenance["harmful"]["hash"] and rd.provenance["model"] == random_aligned.name
    for suffix in (".pt", ".safetensors"):
        rd.save(tmp_path / f"rd{suffix}")
        back = RefusalDirection.load(tmp_path / f"rd{suffix}")
        assert torch.equal(back.direction, rd.direction) and back.layer == rd.layer and back.pos == rd.pos
        assert back.candidates == rd.candidates and back.provenance == rd.provenance
        assert back.validated == rd.validated and back.reason == rd.reason and back.validation == rd.validation
        assert torch.equal(back.candidate_directions, rd.candidate_directions)
    torch.save({"x": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not a safecircuits refusal direction"):
        RefusalDirection.load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not a safecircuits weight-delta subspace"):
        WeightDeltaSubspace.load(tmp_path / "rd.pt")
    with pytest.raises(FileNotFoundError):
        RefusalDirection.load(tmp_path / "missing.pt")


def test_ablation_removes_component_and_orthogonalized_equals_hooks(rd, random_aligned, sets):
    m, chat = random_aligned.model, random_aligned.chat
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    ortho = orthogonalize_weights(m, rd.direction)
    for n, p in m.named_parameters():  # the original is untouched
        assert torch.equal(p, before[n]), n
    tokens = torch.tensor([chat.prompt_ids(p) for p in sets["test"][0].prompts[:8] if len(chat.prompt_ids(p)) == 9][:4])
    r = rd.direction
    seen = {}
    with directional_ablation(m, r):
        logits_hook, cache = m.run_with_cache(tokens, names_filter=lambda n: "resid" in n)
        for n, act in cache.items():
            seen[n] = float((act @ r).abs().max())
    assert max(seen.values()) < 1e-4, seen
    logits_plain = m(tokens)
    logits_ortho = ortho(tokens)
    assert torch.allclose(logits_ortho, logits_hook, atol=1e-4), float((logits_ortho - logits_hook).abs().max())
    assert not torch.allclose(logits_plain, logits_hook, atol=1e-2)  # the ablation does something
    prompts = sets["test"][0].prompts[:16] + sets["test"][1].prompts[:16]
    with directional_ablation(m, r):
        a = generate(m, chat, prompts, max_new_tokens=12)
    assert generate(ortho, chat, prompts, max_new_tokens=12) == a


def test_hooks_removed_after_exception(rd, random_aligned):
    m = random_aligned.model
    tokens = torch.tensor([random_aligned.chat.prompt_ids("how do i bake the bread ?")])
    ref = m(tokens)
    for ctx in (lambda: directional_ablation(m, rd.direction), lambda: activation_addition(m, rd.raw, rd.layer, 2.0)):
        with pytest.raises(RuntimeError, match="boom"), ctx():
            assert not torch.allclose(m(tokens), ref)
            raise RuntimeError("boom")
        assert all(not hp.fwd_hooks for hp in m.hook_dict.values())
        assert torch.equal(m(tokens), ref)


def test_activation_addition_changes_only_selected_layer(rd, random_aligned):
    m = random_aligned.model
    tokens = torch.tensor([random_aligned.chat.prompt_ids("how do i bake the bread ?")])
    name = "blocks.0.hook_resid_pre"
    _, c0 = m.run_with_cache(tokens, names_filter=lambda n: n == name)
    with activation_addition(m, rd.raw, 0, coeff=2.0):
        _, c1 = m.run_with_cache(tokens, names_filter=lambda n: n == name)
    assert torch.allclose(c1[name] - c0[name], 2.0 * rd.raw.expand_as(c0[name]), atol=1e-5)
    with pytest.raises(ValueError, match="d_model"):
        with directional_ablation(m, torch.ones(3)):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with activation_addition(m, rd.raw, 99):
            pass


def test_activation_subspace(random_aligned, sets, rd, tmp_path):
    (h, b) = sets["train"]
    sub = compute_activation_subspace(random_aligned.model, random_aligned.chat, h, b, k=3, layer=1, model_name=random_aligned.name)
    assert sub.basis.shape == (random_aligned.model.cfg.d_model, 3)
    assert torch.allclose(sub.basis.T @ sub.basis, torch.eye(3), atol=1e-5)
    ev = sub.explained_variance
    assert bool((ev[:-1] >= ev[1:]).all()) and 0 < float(ev.sum()) <= 1 + 1e-6
    # uncentred PCA of the differences D (each example against the other class's mean): component 1
    # captures ev[0] of ||D||^2, no other direction more (the mean difference, the candidate at this
    # layer and position, included), and points from harmless to harmful
    hook = "blocks.1.hook_resid_pre"
    ah = collect_activations_at(random_aligned.model, random_aligned.chat, h, [hook])[hook].double()
    ab = collect_activations_at(random_aligned.model, random_aligned.chat, b, [hook])[hook].double()
    cand = rd.candidate_directions[rd.positions.index(-1), 1].double()
    assert torch.allclose(cand, ah.mean(0) - ab.mean(0), atol=1e-4)
    d = torch.cat([ah - ab.mean(0), ah.mean(0) - ab])
    share = lambda v: float((d @ (v / v.norm())).pow(2).sum() / d.pow(2).sum())  # noqa: E731
    assert share(sub.basis[:, 0].double()) == pytest.approx(float(ev[0]), abs=1e-4)
    assert share(cand) <= float(ev[0]) + 1e-6 and float(sub.basis[:, 0].double() @ cand) > 0
    sub.save(tmp_path / "a.safetensors")
    back = ActivationSubspace.load(tmp_path / "a.safetensors")
    assert torch.equal(back.basis, sub.basis) and back.provenance == sub.provenance
    with pytest.raises(ValueError, match="k must be"):
        compute_activation_subspace(random_aligned.model, random_aligned.chat, h, b, k=10_000, layer=0)
    with pytest.raises(ValueError, match="paired"):
        compute_activation_subspace(random_aligned.model, random_aligned.chat, h, b[:5], k=2, layer=0, pairing="paired")


def test_activation_subspaces_of_every_layer_match_one_layer_at_a_time(random_aligned, sets):
    (h, b) = sets["train"]
    m, chat = random_aligned.model, random_aligned.chat
    subs = compute_activation_subspaces(m, chat, h, b, k=2)  # one forward per batch, all residual layers
    assert len(subs) == m.cfg.n_layers + 1
    for layer, sub in enumerate(subs):
        one = compute_activation_subspace(m, chat, h, b, k=2, layer=layer)
        assert sub.provenance["hook"] == one.provenance["hook"]
        assert torch.allclose(sub.basis, one.basis, atol=1e-6) and torch.allclose(sub.explained_variance, one.explained_variance)
    with pytest.raises(ValueError, match="not a hook"):
        collect_activations_at(m, chat, h, ["blocks.0.hook_resid_pre", "blocks.9.nope"])


@pytest.fixture(scope="module")
def wsub(random_aligned, random_base):
    return WeightDeltaSubspace.from_models(random_aligned, random_base, rank=4)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_weight_subspace_projections(wsub, random_aligned):
    g = torch.Generator().manual_seed(0)
    for name in wsub.names[:4]:
        d_out, d_in = wsub.matrix_shape(name)
        delta = torch.randn(d_out, d_in, generator=g)
        for side in ("out", "in", "both"):
            p, q = wsub.project(name, delta, side), wsub.project_out(name, delta, side)
            assert torch.allclose(p + q, delta, atol=1e-5)
        u, vh = wsub.basis(name), wsub.input_basis(name)
        assert float((u.T @ wsub.project_out(name, delta, "out")).abs().max()) < 1e-4
        assert float((wsub.project_out(name, delta, "in") @ vh.T).abs().max()) < 1e-4
        p = wsub.project(name, delta, "out")
        assert torch.allclose(wsub.project(name, p, "out"), p, atol=1e-5)  # idempotent
        assert float(p.norm()) < float(delta.norm())
        # the TransformerLens-layout helper agrees with the matrix view
        from safecircuits.models.weights import as_matrix

        param = dict(random_aligned.model.named_parameters())[name]
        t = torch.randn(param.shape, generator=g)
        assert torch.allclose(as_matrix(name, wsub.project_param(name, t, complement=True)), wsub.project_out(name, as_matrix(name, t)), atol=1e-6)
    # projections are differentiable (usable inside a loss) and never touch their input
    n0 = wsub.names[0]
    x = torch.randn(*wsub.matrix_shape(n0), generator=g, requires_grad=True)
    x0 = x.detach().clone()
    wsub.project_out(n0, x).pow(2).sum().backward()
    assert torch.allclose(x.grad, 2 * wsub.project_out(n0, x0), atol=1e-5) and torch.equal(x.detach(), x0)
    with pytest.raises(ShapeMismatchError, match="matrix view"):
        wsub.project(wsub.names[0], torch.zeros(3, 3))
    with pytest.raises(KeyError, match="not in this subspace"):
        wsub.basis("blocks.9.attn.W_Q")


def test_weight_subspace_errors_and_roundtrip(wsub, random_aligned, random_base, tmp_path):
    from conftest import random_organism

    with pytest.raises(ValueError, match="rank 1000 is larger"):
        WeightDeltaSubspace.from_models(random_aligned, random_base, rank=1000)
    with pytest.raises(ValueError, match="positive integer"):
        WeightDeltaSubspace.from_models(random_aligned, random_base, rank=0)
    small = random_organism("base", size="small")
    with pytest.raises(ShapeMismatchError, match="shape"):
        WeightDeltaSubspace.from_models(random_aligned, small, rank=2, layers=[0])
    for suffix in (".pt", ".safetensors"):
        wsub.save(tmp_path / f"w{suffix}")
        back = WeightDeltaSubspace.load(tmp_path / f"w{suffix}")
        assert back.names == wsub.names and back.energy == wsub.energy and back.provenance == wsub.provenance
        for n in wsub.names:
            assert all(torch.equal(x, y) for x, y in zip(back.factors[n], wsub.factors[n], strict=True))
    assert wsub.provenance["aligned"] == random_aligned.name and wsub.provenance["base"] == random_base.name
    assert all(0 < e <= 1 + 1e-6 for e in wsub.energy.values())


def test_safelora_never_mutates(random_aligned, random_base):
    before_a, before_b = _snapshot(random_aligned.model), _snapshot(random_base.model)
    sub = WeightDeltaSubspace.from_models(random_aligned, random_base, rank=4)
    g = torch.Generator().manual_seed(1)
    deltas = {n: torch.randn(*sub.matrix_shape(n), generator=g) for n in sub.names}
    copies = {n: d.clone() for n, d in deltas.items()}
    cos = safelora_cosines(sub, deltas)
    new, report = safelora_project(sub, deltas, k=3)
    new2, report2 = safelora_project(sub, deltas, tau=1.0, projector="orthogonal")
    apply_delta_projection(random_aligned, random_base, sub, "keep")
    for n in deltas:
        assert torch.equal(deltas[n], copies[n])
    for m, before in ((random_aligned.model, before_a), (random_base.model, before_b)):
        for n, p in m.named_parameters():
            assert torch.equal(p, before[n]), n
    assert len(report["projected"]) == 3
    assert set(report["projected"]) == set(sorted(cos, key=cos.get)[:3])
    for n in sub.names:
        if n in report["projected"]:
            assert not torch.equal(new[n], deltas[n])
        else:
            assert torch.equal(new[n], deltas[n]) and new[n].data_ptr() != deltas[n].data_ptr()
    assert report2["projected"] == sorted(sub.names)
    # a delta inside the subspace has cosine 1 for the orthogonal projector and is unchanged by it
    n0 = sub.names[0]
    inside = sub.basis(n0) @ torch.randn(sub.rank, sub.matrix_shape(n0)[1], generator=g)
    assert torch.allclose(safelora_project(sub, {n0: inside}, tau=1.0, projector="orthogonal")[0][n0], inside, atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        safelora_project(sub, deltas)


def test_safelora_c_matches_dense_at_full_rank(random_aligned, random_base):
    from safecircuits.models.weights import as_matrix

    sub = WeightDeltaSubspace.from_models(random_aligned, random_base, rank=32, kinds=("W_O",), layers=[0])
    n = sub.names[0]
    a, b = dict(random_aligned.model.named_parameters())[n], dict(random_base.model.named_parameters())[n]
    v = (as_matrix(n, a) - as_matrix(n, b)).double().detach()
    c = v @ v.T / v.norm()
    d = torch.randn(*sub.matrix_shape(n), generator=torch.Generator().manual_seed(2)).double()
    cd = c @ d
    dense = float((cd * d).sum() / (cd.norm() * d.norm()))
    assert abs(safelora_cosines(sub, {n: d})[n] - dense) < 1e-5


def test_apply_delta_projection_endpoints(wsub, random_aligned, random_base):
    full = WeightDeltaSubspace.from_models(random_aligned, random_base, rank=32)
    keep_all = apply_delta_projection(random_aligned, random_base, full, "keep")
    remove_all = apply_delta_projection(random_aligned, random_base, full, "remove")
    keep_none = apply_delta_projection(random_aligned, random_base, full.truncate(0), "keep")
    pa, pb = dict(random_aligned.model.named_parameters()), dict(random_base.model.named_parameters())
    n = full.names[0]
    assert torch.allclose(dict(keep_all.named_parameters())[n], pa[n], atol=1e-5)  # full rank keeps all of V
    assert torch.allclose(dict(remove_all.named_parameters())[n], pb[n], atol=1e-5)
    assert torch.equal(dict(keep_none.named_parameters())[n], pb[n])
    with pytest.raises(ValueError, match="mode"):
        apply_delta_projection(random_aligned, random_base, wsub, "drop")


def test_geometry(tmp_path, rd, wsub):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 3, generator=g)
    cos, ang = principal_angles(a, a @ torch.randn(3, 3, generator=g))
    assert torch.allclose(cos, torch.ones(3, dtype=cos.dtype), atol=1e-6) and float(ang.max()) < 1e-2
    e = torch.eye(16)
    assert overlap(e[:, :2], e[:, 2:4]) == pytest.approx(0.0, abs=1e-12)
    assert overlap(e[:, :2], e[:, 1:3]) == pytest.approx(0.5)
    spaces = {"refusal": rd.direction, "W_out": wsub.output_directions(("W_out",), layers=[1]), "random": torch.randn(32, 4, generator=g)}
    rep = geometry_report(spaces, provenance={"model": "tiny"})
    assert rep.names == list(spaces) and rep.overlap[0][0] == pytest.approx(1.0)
    assert rep.pair("refusal", "W_out") == rep.pair("W_out", "refusal")
    rep.save(tmp_path / "g.json")
    back = GeometryReport.load(tmp_path / "g.json")
    assert back.overlap == rep.overlap and back.cosines == rep.cosines
    from safecircuits.viz.subspaces import write_geometry_html

    html = write_geometry_html(rep, tmp_path / "g.html").read_text()
    assert "plotly" in html and len(html) > 1_000_000  # self-contained: plotly.js embedded
    with pytest.raises(ValueError, match="different spaces"):
        geometry_report({"a": torch.randn(8, 2), "b": torch.randn(9, 2)})


def test_cli(tmp_path, random_organism_dirs):
    from conftest import random_organism

    from safecircuits.models.organisms import OrganismConfig, save_organism

    aligned, base = str(random_organism_dirs["aligned"]), str(random_organism_dirs["base"])
    small_lm = random_organism("base", size="small")
    small = str(save_organism(small_lm.model, OrganismConfig(**small_lm.info["organism"]), {}, tmp_path / "small-base"))
    runner = CliRunner()
    r = runner.invoke(app, ["refusal", "--model", aligned, "--out", str(tmp_path / "rd.pt"), "--json",
                            str(tmp_path / "rd.json"), "--prune", "0", "--max-new-tokens", "6"])
    # random weights refuse nothing: the direction cannot validate; every file is written, the exit status is 3
    assert r.exit_code == 3, r.output
    assert "refusal direction of " in r.output and "directional ablation" in r.output and "FAILED" in r.output
    back = RefusalDirection.load(tmp_path / "rd.pt")
    assert back.d_model == 32 and back.validated is False
    assert "activation addition x" in r.output
    assert json.loads((tmp_path / "rd.json").read_text())["addition_val_grid"]  # the addition was chosen on val (the protocol)
    r = runner.invoke(app, ["weights", "--base", base, "--aligned", aligned, "--rank", "2", "--out", str(tmp_path / "w.safetensors")])
    assert r.exit_code == 0, r.output
    assert WeightDeltaSubspace.load(tmp_path / "w.safetensors").rank == 2
    r = runner.invoke(app, ["weights", "--base", base, "--aligned", aligned, "--out", str(tmp_path / "wa.safetensors"),
                            "--json", str(tmp_path / "wa.json")])
    assert r.exit_code in (0, 3), r.output
    d = json.loads((tmp_path / "wa.json").read_text())
    assert "rank choice on val" in r.output and (r.exit_code == 0) == d["validated"]
    assert (tmp_path / "wa.safetensors").exists() and d["curve"]
    for args, msg in (
        (["weights", "--base", small, "--aligned", aligned, "--rank", "2", "--out", str(tmp_path / "x.pt")], "shape"),
        (["weights", "--base", base, "--aligned", aligned, "--rank", "999", "--out", str(tmp_path / "x.pt")], "rank 999 is larger"),
        (["weights", "--base", base, "--aligned", aligned, "--rank", "0", "--out", str(tmp_path / "x.pt")], "--rank must be"),
        (["refusal", "--model", "organism:nonsense", "--out", str(tmp_path / "x.pt")], "unknown organism kind 'nonsense'"),
        (["refusal", "--model", aligned, "--out", str(tmp_path / "x.txt")], "--out must end"),
        (["refusal", "--model", aligned, "--out", str(tmp_path / "x.pt"), "--positions", "all"], "give --coeff"),
        (["weights", "--base", base, "--aligned", aligned, "--rank", "x", "--out", str(tmp_path / "x.pt")], "--rank must be"),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output, r.output
