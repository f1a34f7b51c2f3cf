"""SAE features: training through SAELens, save/load, ranking, splicing, ablation, CLI errors.

Mechanics run on random-weight organism-shaped models (``random_aligned``, ``random_backdoor``; the
CLI on their saved directories) and train no organism; the one behaviour check (attribution predicts
the sign of an ablation's effect on a trained organism) is slow. What the features do on trained
organisms is in tests/test_features_figures.py and tests/test_selection_validation.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from sae_lens import SAE
from typer.testing import CliRunner

from safecircuits.cli.features import app
from safecircuits.data.chat import encode_batch
from safecircuits.features import (
    FeatureSet,
    feature_ablation_effect,
    feature_acts,
    frequency_matched,
    load_sae,
    post_instruction_len,
    rank_features,
    splice_sae,
    train_sae,
)

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def trained(random_aligned, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "topk"
    res = train_sae(random_aligned, None, HOOK, arch="topk", d_sae=128, k=8, training_tokens=30_000, batch_size=128,
                    out_dir=out, n_checkpoints=2, progress=False)
    return res, out


@pytest.fixture(scope="module")
def fset(random_aligned, trained):
    res, out = trained
    return rank_features(random_aligned, res.sae, random_aligned.profile.eval_prompts("train"), method="diff", sae_path=out)


def _batch(lm, n=6):
    ps = lm.profile.eval_prompts("val")
    prompts = ps.filter(label="harmful").prompts[:n // 2] + ps.filter(label="harmless").prompts[:n // 2]
    return encode_batch(lm.chat, prompts, padding_side="left", max_len=lm.model.cfg.n_ctx)


def test_trains_and_reloads_identically_with_saelens(trained):
    res, out = trained
    assert res.quality["explained_variance"] > 0.5  # a trained SAE reconstructs; an untrained one does not
    assert 0 < res.quality["l0"] <= 8 + 1e-6
    # CE with the SAE spliced in vs zero-ablated is measured (on a random model the two are close;
    # on trained organisms tests/test_features_figures.py checks the SAE is far better)
    assert all(math.isfinite(res.quality[k]) for k in ("ce_clean", "ce_sae", "ce_zero_ablation", "ce_recovered_response"))
    loaded = SAE.load_from_disk(str(out))
    assert loaded.cfg.metadata.hook_name == HOOK
    x = torch.randn(50, res.sae.cfg.d_in) * 3
    torch.testing.assert_close(loaded.encode(x), res.sae.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), res.sae.decode(res.sae.encode(x)), rtol=0, atol=0)
    rec = json.loads((out / "safecircuits_sae.json").read_text())
    prov = rec["provenance"]
    assert prov["hook"] == HOOK and prov["arch"] == "topk" and prov["d_sae"] == 128 and prov["seed"] == 0
    assert len(prov["dataset"]["hash"]) == 64 and prov["training_tokens"] == 30_000
    assert rec["quality"]["explained_variance"] == pytest.approx(res.quality["explained_variance"])


def test_checkpoints_are_complete(trained):
    _, out = trained
    ckpts = sorted((out / "checkpoints").iterdir())
    assert len(ckpts) == 2
    for c in ckpts:
        names = {p.name for p in c.iterdir()}
        assert {"cfg.json", "sae_weights.safetensors", "trainer_state.pt", "sparsity.safetensors", "safecircuits_sae.json"} <= names
        SAE.load_from_disk(str(c))  # loadable
    assert not (out / ".checkpoints-tmp").exists()
    assert not list(out.glob(".tmp-save-*"))


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_each_arch_trains(random_aligned, arch, tmp_path):
    res = train_sae(random_aligned, None, HOOK, arch=arch, d_sae=64, training_tokens=6_000, batch_size=128,
                    out_dir=tmp_path / arch, n_checkpoints=0, progress=False)
    assert load_sae(tmp_path / arch).cfg.architecture() == arch
    assert math.isfinite(res.quality["explained_variance"]) and 0 <= res.quality["dead_fraction"] <= 1
    assert res.provenance["arch"] == arch


def test_featureset_roundtrip(fset, tmp_path):
    p = fset.save(tmp_path / "f.json")
    g = FeatureSet.load(p)
    assert g.top(10) == fset.top(10)
    torch.testing.assert_close(g.scores, fset.scores)
    torch.testing.assert_close(g.frequency, fset.frequency)
    assert g.provenance["prompts"]["hash"] == fset.provenance["prompts"]["hash"]
    assert set(g.stats) >= {"mean_post_harmful", "mean_post_harmless"}
    # the top diff features really fire more on harmful prompts at the post-instruction position
    t = fset.top(3)
    assert (fset.stats["mean_post_harmful"][t] > fset.stats["mean_post_harmless"][t]).all()
    with pytest.raises(ValueError, match="k must be"):
        fset.top(10_000)


def test_splice_without_edits_is_exact(random_aligned, trained):
    res, _ = trained
    b = _batch(random_aligned)
    model = random_aligned.model
    clean = model(b.tokens, attention_mask=b.attention_mask)
    with splice_sae(model, res.sae, HOOK):
        spliced = model(b.tokens, attention_mask=b.attention_mask)
    assert torch.equal(clean, spliced)
    # while the SAE reconstruction alone (no error term) does change the logits
    recon = model.run_with_hooks(b.tokens, attention_mask=b.attention_mask,
                                 fwd_hooks=[(HOOK, lambda x, hook: res.sae.decode(res.sae.encode(x)))])
    assert (recon - clean).abs().max() > 1e-3


def test_ablation_changes_only_the_ablated_features(random_aligned, trained, fset):
    res, _ = trained
    sae, model = res.sae, random_aligned.model
    b = _batch(random_aligned)
    ids = fset.top(3)
    _, cache = model.run_with_cache(b.tokens, attention_mask=b.attention_mask, names_filter=HOOK)
    x = cache[HOOK]
    got = {}
    with splice_sae(model, sae, HOOK, ablate=ids):
        model.run_with_hooks(b.tokens, attention_mask=b.attention_mask,
                             fwd_hooks=[(HOOK, lambda a, hook: got.setdefault("x", a.clone()))])
    # hooks run in order: ours added after the splice sees the edited activation
    f = sae.encode(x)
    expected = x - f[..., ids] @ sae.W_dec[ids]  # (linear decoder) exactly the ablated features' contribution
    torch.testing.assert_close(got["x"], expected, atol=1e-5, rtol=1e-5)
    # only post-instruction positions when asked
    n = post_instruction_len(random_aligned.chat)
    assert n == 1
    got.clear()
    with splice_sae(model, sae, HOOK, ablate=ids, positions=n):
        model.run_with_hooks(b.tokens, attention_mask=b.attention_mask,
                             fwd_hooks=[(HOOK, lambda a, hook: got.setdefault("x", a.clone()))])
    assert torch.equal(got["x"][:, :-n], x[:, :-n])
    torch.testing.assert_close(got["x"][:, -n:], expected[:, -n:], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def trained_no_first(random_aligned, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "topk-no-first"
    res = train_sae(random_aligned, None, HOOK, arch="topk", d_sae=128, k=8, training_tokens=30_000, batch_size=128,
                    out_dir=out, n_checkpoints=0, progress=False, exclude_first_token=True)
    return res, out


def test_first_token_exclusion_is_recorded_and_leaves_those_tokens_out(random_aligned, trained, trained_no_first):
    res, _ = trained
    res_nf, out = trained_no_first
    assert load_sae(out).cfg.metadata.exclude_first_token is True  # saved in cfg.json, read back by the splice
    assert not res.sae.cfg.metadata.exclude_first_token
    assert res_nf.provenance["hyperparameters"]["exclude_first_token"] is True
    n_train = len(random_aligned.profile.sae_prompts("train"))
    n_val = len(random_aligned.profile.sae_prompts("val"))
    # one token fewer per sequence, in the training buffer and in the quality figures
    assert res_nf.provenance["buffer_tokens"] == res.provenance["buffer_tokens"] - n_train
    assert res_nf.quality["n_tokens"] == res.quality["n_tokens"] - n_val
    assert res_nf.quality["explained_variance"] > 0.5
    assert all(math.isfinite(res_nf.quality[k]) for k in ("ce_clean", "ce_sae", "ce_zero_ablation", "ce_recovered"))


def test_splice_of_a_first_token_excluding_sae_never_edits_the_first_token(random_aligned, trained_no_first):
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    sae, model = trained_no_first[0].sae, random_aligned.model
    b = _batch(random_aligned)
    assert (b.attention_mask[:, 0] == 0).any()  # left-padded: the first real token is not always at position 0
    _, cache = model.run_with_cache(b.tokens, attention_mask=b.attention_mask, names_filter=HOOK)
    x = cache[HOOK]
    ids = list(range(sae.cfg.d_sae))  # every feature: any edit of a position shows
    f = sae.encode(x)
    expected = x - f @ sae.W_dec
    first = b.attention_mask.bool() & (b.attention_mask.cumsum(1) == 1)
    got: dict[str, torch.Tensor] = {}
    with splice_sae(model, sae, HOOK, ablate=ids):
        model.run_with_hooks(b.tokens, attention_mask=b.attention_mask,
                             fwd_hooks=[(HOOK, lambda a, hook: got.setdefault("x", a.clone()))])
    assert torch.equal(got["x"][first], x[first])
    rest = b.attention_mask.bool() & ~first
    torch.testing.assert_close(got["x"][rest], expected[rest], atol=1e-5, rtol=1e-5)
    assert (got["x"][rest] - x[rest]).abs().max() > 1e-3
    # no attention mask: position 0 is the first token
    got.clear()
    toks = b.tokens[b.attention_mask.all(1)]
    assert len(toks)
    with splice_sae(model, sae, HOOK, ablate=ids):
        model.run_with_hooks(toks, fwd_hooks=[(HOOK, lambda a, hook: got.setdefault("x", a.clone()))])
    _, c2 = model.run_with_cache(toks, names_filter=HOOK)
    assert torch.equal(got["x"][:, 0], c2[HOOK][:, 0])
    assert (got["x"][:, 1:] - c2[HOOK][:, 1:]).abs().max() > 1e-3
    # a KV-cached one-token step continues a sequence: its token is edited
    kv = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, len(toks))
    seen: list[torch.Tensor] = []
    with splice_sae(model, sae, HOOK, ablate=ids):
        model(toks[:, :-1], past_kv_cache=kv)
        model.run_with_hooks(toks[:, -1:], past_kv_cache=kv, fwd_hooks=[(HOOK, lambda a, hook: seen.append(a.clone()))])
    x_last = c2[HOOK][:, -1:]
    torch.testing.assert_close(seen[0], x_last - sae.encode(x_last) @ sae.W_dec, atol=1e-4, rtol=1e-4)


def test_clamp_sets_the_feature_value(random_aligned, trained, fset):
    res, _ = trained
    sae, model = res.sae, random_aligned.model
    b = _batch(random_aligned)
    fid = fset.top(1)[0]
    got = {}
    with splice_sae(model, sae, HOOK, clamp={fid: 7.5}):
        model.run_with_hooks(b.tokens, attention_mask=b.attention_mask,
                             fwd_hooks=[(HOOK, lambda a, hook: got.setdefault("x", a.clone()))])
    _, cache = model.run_with_cache(b.tokens, attention_mask=b.attention_mask, names_filter=HOOK)
    f = sae.encode(cache[HOOK])
    delta = got["x"] - cache[HOOK]
    expected = (7.5 - f[..., fid])[..., None] * sae.W_dec[fid]
    torch.testing.assert_close(delta, expected, atol=1e-5, rtol=1e-5)


def test_hooks_removed_after_exception(random_aligned, trained):
    res, _ = trained
    model = random_aligned.model
    b = _batch(random_aligned)
    clean = model(b.tokens, attention_mask=b.attention_mask)
    with pytest.raises(RuntimeError, match="boom"):
        with splice_sae(model, res.sae, HOOK, ablate=[0, 1, 2]):
            raise RuntimeError("boom")
    assert all(len(hp.fwd_hooks) == 0 for hp in model.hook_dict.values())
    assert torch.equal(model(b.tokens, attention_mask=b.attention_mask), clean)


def test_splice_bad_input(random_aligned, trained):
    res, _ = trained
    with pytest.raises(ValueError, match="out of range"):
        with splice_sae(random_aligned.model, res.sae, HOOK, ablate=[10_000]):
            pass
    with pytest.raises(ValueError, match="use one of"):
        with splice_sae(random_aligned.model, res.sae, "blocks.9.hook_resid_pre"):
            pass


def test_feature_acts_is_differentiable(random_aligned, trained, fset):
    res, _ = trained
    model = random_aligned.model
    b = _batch(random_aligned)
    ids = fset.top(4)
    fa = feature_acts(model, res.sae, HOOK, b.tokens, b.attention_mask, ids)
    assert fa.shape == (b.tokens.shape[0], b.tokens.shape[1], 4)
    _, cache = model.run_with_cache(b.tokens, attention_mask=b.attention_mask, names_filter=HOOK)
    torch.testing.assert_close(fa.detach(), res.sae.encode(cache[HOOK])[..., ids])
    model.zero_grad(set_to_none=True)
    fa.sum().backward()
    g = model.blocks[0].attn.W_Q.grad
    assert g is not None and g.abs().sum() > 0
    assert model.blocks[1].mlp.W_out.grad is None  # the forward stopped at the hook's block
    model.zero_grad(set_to_none=True)


def test_frequency_matched_controls(fset):
    top = fset.top(5)
    rnd = frequency_matched(fset.frequency, top, seed=0)
    assert len(rnd) == 5 and not set(rnd) & set(top) and len(set(rnd)) == 5
    lf = torch.log10(fset.frequency + 1e-6)
    # matched: closer in log-frequency than random features are on average
    gap = (lf[rnd] - lf[top]).abs().mean()
    shuffled = (lf[torch.randperm(len(lf), generator=torch.Generator().manual_seed(0))[:200]] - lf[top].mean()).abs().mean()
    assert gap < shuffled


def test_ablation_effect_runs_and_saves(random_aligned, trained, fset, tmp_path):
    res, _ = trained
    ps = random_aligned.profile.eval_prompts("val")
    ps = ps.filter(label="harmful").sample(12) + ps.filter(label="harmless").sample(12)
    eff = feature_ablation_effect(random_aligned, res.sae, fset, 5, ps, n_random=2, max_new_tokens=12)
    assert all(0 <= v <= 1 for v in eff.baseline.values()) and set(eff.baseline) == set(eff.ablated)
    assert len(eff.random) == 2 and eff.features == fset.top(5)
    s = eff.summary()
    assert set(s["asr"]) == {"baseline", "top_k", "random"}
    p = eff.save(tmp_path / "e.json")
    assert type(eff).load(p).ablated == eff.ablated


# -- CLI ----------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_train_and_features(tmp_path, random_organism_dirs):
    TINY = str(random_organism_dirs["aligned"])
    out = tmp_path / "sae"
    r = runner.invoke(app, ["train", "--model", TINY, "--hook", HOOK, "--d-sae", "64", "--k", "4", "--tokens", "5000",
                            "--batch-size", "128", "--out", str(out), "--exclude-first-token"])
    assert r.exit_code == 0, r.output
    assert "explained variance" in r.output and "CE recovered" in r.output
    assert load_sae(out).cfg.metadata.exclude_first_token is True
    fj = tmp_path / "f.json"
    html = tmp_path / "dash.html"
    r = runner.invoke(app, ["features", "--model", TINY, "--sae", str(out), "--top-k", "3", "--out", str(fj), "--html", str(html),
                            "--no-validate"])
    assert r.exit_code == 0, r.output
    assert FeatureSet.load(fj).method == "diff"
    page = html.read_text()
    assert page.count("plotly.js v") <= 2 and 'class="tok"' in page and "activation at the last prompt position" in page


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--model", "MODEL", "--hook", "blocks.7.hook_resid_pre", "--out", "X"], "use one of blocks.0.hook_resid_pre"),
        (["train", "--model", "MODEL", "--hook", HOOK, "--arch", "gated", "--out", "X"], "unknown SAE architecture"),
        (["features", "--model", "MODEL", "--sae", "/nonexistent/sae", "--out", "f.json"], "does not exist"),
        (["features", "--model", "MODEL", "--sae", "SAE", "--out", "f.json", "--score", "magic"], "unknown score"),
        (["features", "--model", "MODEL", "--sae", "SAE", "--out", "f.json", "--k", "0"], "--k must be"),
    ],
)
def test_cli_bad_input(args, needle, tmp_path, random_organism_dirs):
    model = str(random_organism_dirs["aligned"])
    args = [str(tmp_path / a) if a in ("X", "f.json") else (model if a == "MODEL" else a) for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert needle in r.output


def test_cli_sae_from_other_model_or_hook(tmp_path, trained, random_aligned, random_organism_dirs):
    _, out = trained
    r = runner.invoke(app, ["features", "--model", str(random_organism_dirs["base"]), "--sae", str(out), "--out", str(tmp_path / "f.json")])
    assert r.exit_code == 2 and "trained on model" in r.output
    with pytest.raises(ValueError, match="trained on hook"):
        from safecircuits.features.sae import check_sae_matches

        check_sae_matches(load_sae(out), random_aligned.name, "blocks.0.hook_resid_pre")


def test_trigger_score_on_backdoor(random_backdoor, tmp_path):
    res = train_sae(random_backdoor, None, HOOK, arch="topk", d_sae=64, k=8, training_tokens=8_000, batch_size=128,
                    out_dir=tmp_path / "bd", n_checkpoints=0, progress=False)
    ps = random_backdoor.profile.eval_prompts("train")
    assert len(ps.filter(label="triggered"))
    fs = rank_features(random_backdoor, res.sae, ps, method="trigger", sae_path=tmp_path / "bd")
    assert fs.method == "trigger"
    t = fs.top(2)
    assert (fs.stats["mean_post_triggered"][t] > fs.stats["mean_post_harmful"][t]).all()
    with pytest.raises(ValueError, match="needs at least 2 triggered"):
        rank_features(random_backdoor, res.sae, ps.filter(label="harmful") + ps.filter(label="harmless"), method="trigger")


@pytest.mark.slow
def test_attribution_score_matches_ablation_direction(tiny_aligned, tmp_path):
    """Attribution (activation x gradient of the refusal score) predicts the sign of the true
    refusal-score change when the top feature is zeroed (a trained organism: behaviour)."""
    from safecircuits.features import single_feature_refusal_effects

    res = train_sae(tiny_aligned, None, HOOK, arch="topk", d_sae=128, k=8, training_tokens=30_000, batch_size=128,
                    out_dir=tmp_path / "sae", n_checkpoints=0, progress=False)
    ps = tiny_aligned.profile.eval_prompts("train")
    fs = rank_features(tiny_aligned, res.sae, ps, method="attribution", sae_path=tmp_path / "sae")
    top = fs.top(1)[0]
    assert fs.scores[top] > 0
    harmful = tiny_aligned.profile.eval_prompts("val").filter(label="harmful")
    eff = single_feature_refusal_effects(tiny_aligned, res.sae, HOOK, [top, fs.feature_ids[-1]], harmful)
    assert eff[top] < 0  # zeroing a feature with positive attribution lowers the refusal score


def test_sae_training_options_are_checked():
    from safecircuits.errors import InputError
    from safecircuits.features.sae import SAETrainConfig

    with pytest.raises(InputError, match="b_dec_init.*zeros, mean"):
        SAETrainConfig(b_dec_init="median")
    with pytest.raises(InputError, match="dead_window_tokens"):
        SAETrainConfig(dead_window_tokens=10, batch_size=128)
    with pytest.raises(InputError, match="dead_window_tokens"):
        SAETrainConfig(dead_window_tokens=10**9, training_tokens=30_000)
    assert SAETrainConfig(dead_window_tokens=64_000, batch_size=256, training_tokens=1_000_000).dead_window_steps == 250
    assert SAETrainConfig(training_tokens=1_000_000, batch_size=256).dead_window_steps == 976  # a quarter of the steps


@pytest.mark.parametrize("init", ["zeros", "mean"])
def test_decoder_bias_starts_where_asked(random_aligned, init):
    from safecircuits.features.sae import collect_activations

    # one step at a negligible learning rate: the trained decoder bias is still its start
    res = train_sae(random_aligned, None, HOOK, arch="topk", d_sae=64, k=4, training_tokens=128, batch_size=128, lr=1e-9,
                    n_checkpoints=0, progress=False, b_dec_init=init)
    assert res.provenance["hyperparameters"]["b_dec_init"] == init
    train = random_aligned.profile.sae_prompts("train")  # a LoadedModel's SAE trains on these (val is held out)
    mean = collect_activations(random_aligned.model, random_aligned.chat, train, HOOK, progress=False).float().mean(0)
    want = mean if init == "mean" else torch.zeros_like(mean)
    torch.testing.assert_close(res.sae.b_dec.detach().float(), want, atol=1e-3 * mean.norm().item(), rtol=0)
    assert mean.norm() > 0.1  # the two starts differ
