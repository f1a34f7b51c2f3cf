"""Selection protocols say when they fail: the refusal direction's layer filter on shallow models,
validation of the refusal direction and of SAE feature rankings, and the CLI's FAILED output.

Mechanics run on random-weight organism-shaped models (they refuse nothing, so validation must fail);
the behaviour checks that need a trained organism (a working direction passes, prompts that do not
differ fail although the model refuses) are slow."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from safecircuits.errors import InputError
from safecircuits.features import FeatureSet
from safecircuits.features.protocol import choose_k, default_sae_hooks, effect_of, validate_features
from safecircuits.subspaces import RefusalConfig, RefusalDirection, find_refusal_direction, score_candidates
from safecircuits.subspaces.refusal import compute_candidate_directions, default_positions, layer_cutoff


# -- the layer filter ---------------------------------------------------------------------------------
def test_layer_cutoff_fits_shallow_and_deep_models():
    # Arditi's rule on deep models: discard layers >= int(0.8 n)
    assert layer_cutoff(30) == 24 and layer_cutoff(8) == 6 and layer_cutoff(10, 0.5) == 5
    # shallow models: only the final residual stream (layer n_layers) goes
    assert layer_cutoff(3) == 3 and layer_cutoff(2) == 2 and layer_cutoff(7) == 7
    # the old rule on a 3-layer model discarded layers 2 and 3; prune_min_layers=1 restores it
    assert layer_cutoff(3, prune_min_layers=1) == 2
    assert layer_cutoff(30, 0.0) == 30  # nothing but the final stream
    with pytest.raises(InputError, match="prune_layer_fraction"):
        layer_cutoff(30, 1.0)
    with pytest.raises(InputError, match="prune_min_layers"):
        RefusalConfig(prune_min_layers=0)


def test_shallow_model_scores_its_last_block(random_aligned):
    """A 2-layer organism: the layer filter keeps layer 1 (Arditi's rule would drop it) and drops the final stream."""
    lm = random_aligned
    p = lm.profile
    h, b = p.prompts("train", "harmful", n=32), p.prompts("train", "harmless", n=32)
    hv, bv = p.prompts("val", "harmful", n=8), p.prompts("val", "harmless", n=8)
    c = compute_candidate_directions(lm.model, lm.chat, h, b, positions=[-1])
    new = score_candidates(lm.model, lm.chat, c, [-1], hv, bv, kl_threshold=1e9)
    old = score_candidates(lm.model, lm.chat, c, [-1], hv, bv, kl_threshold=1e9, prune_min_layers=1)
    by_new, by_old = {s["layer"]: s for s in new}, {s["layer"]: s for s in old}
    assert by_new[1]["kept"] and by_new[0]["kept"]
    assert not by_new[2]["kept"] and "final residual stream" in by_new[2]["reason"]
    assert not by_old[1]["kept"] and "last 20%" in by_old[1]["reason"]


def test_default_positions_extend_a_one_token_template(random_aligned):
    ps = random_aligned.profile.prompts("train", "harmful", n=16).prompts
    assert default_positions(random_aligned.chat, ps) == [-1]  # the template: "[assistant]"
    assert default_positions(random_aligned.chat, ps, min_positions=3) == [-3, -2, -1]


# -- refusal direction: failure is reported, saved and loaded -------------------------------------------
def test_random_model_fails_validation(random_aligned, tmp_path):
    lm = random_aligned
    p = lm.profile
    rd = find_refusal_direction(lm, p.prompts("train", "harmful", n=32), p.prompts("train", "harmless", n=32),
                                p.prompts("val", "harmful", n=16), p.prompts("val", "harmless", n=16),
                                RefusalConfig(kl_threshold=1e9, max_new_tokens=8))
    assert rd.validated is False
    assert "refuses only" in rd.reason  # a random model refuses nothing: there is no refusal to remove
    assert rd.validation["val_refusal_rate"] < 0.5 and "rule" in rd.validation
    for suffix in (".pt", ".safetensors"):
        rd.save(tmp_path / f"rd{suffix}")
        back = RefusalDirection.load(tmp_path / f"rd{suffix}")
        assert back.validated is False and back.reason == rd.reason and back.validation == rd.validation
    assert "NOT VALIDATED" in repr(rd)


@pytest.mark.slow
def test_prompts_that_do_not_differ_fail_validation(tiny_aligned):
    """'harmful' and 'harmless' both drawn from harmless prompts: a direction exists, ablating it bypasses nothing."""
    lm = tiny_aligned
    p = lm.profile
    harmless = p.prompts("train", "harmless")
    rd = find_refusal_direction(lm, harmless[:40], harmless[40:80], p.prompts("val", "harmful"), p.prompts("val", "harmless"),
                                RefusalConfig(max_new_tokens=12))
    assert rd.validated is False
    assert rd.validation["val_asr_ablated"] - rd.validation["val_asr"] < 0.5
    assert rd.validation["val_refusal_rate"] >= 0.9  # the model does refuse: the direction is what fails


def test_identical_prompts_are_an_input_error(random_aligned):
    ps = random_aligned.profile.prompts("train", "harmless", n=16)
    with pytest.raises(InputError, match="same"):
        find_refusal_direction(random_aligned, ps, ps, ps, ps, RefusalConfig(validate=False))


def test_validation_can_be_skipped(random_aligned):
    p = random_aligned.profile
    rd = find_refusal_direction(random_aligned, p.prompts("train", "harmful", n=32), p.prompts("train", "harmless", n=32),
                                p.prompts("val", "harmful", n=8), p.prompts("val", "harmless", n=8),
                                RefusalConfig(validate=False, prune_layer_fraction=0.0))
    assert rd.validated is None and "val_asr" not in rd.validation


def test_cli_refusal_reports_failure(tmp_path, random_organism_dirs):
    from safecircuits.cli.subspaces import app

    r = CliRunner().invoke(app, ["refusal", "--model", str(random_organism_dirs["aligned"]), "--out", str(tmp_path / "rd.pt"),
                                 "--json", str(tmp_path / "rd.json"), "--max-new-tokens", "6"])
    assert r.exit_code == 3, r.output
    assert "FAILED" in r.output and "did not pass validation" in r.output
    assert RefusalDirection.load(tmp_path / "rd.pt").validated is False  # the files are still written
    d = json.loads((tmp_path / "rd.json").read_text())
    assert d["validated"] is False and d["reason"]


# -- SAE features: the validation rule ----------------------------------------------------------------
def _fset(method: str = "diff") -> FeatureSet:
    return FeatureSet(None, "blocks.0.hook_resid_pre", method, torch.arange(8.0), torch.full((8,), 0.1))


def test_feature_validation_rule():
    base = {"asr": 0.0, "harmful_refusal": 1.0, "harmless_compliance": 1.0}
    ok = validate_features(_fset(), 5, base, {"asr": 0.6, "harmless_compliance": 0.96})
    assert ok.validated is True and ok.reason is None and ok.validation["effect"] == pytest.approx(0.6)
    weak = validate_features(_fset(), 5, base, {"asr": 0.3, "harmless_compliance": 1.0})
    assert weak.validated is False and "needs +50 points" in weak.reason
    broken = validate_features(_fset(), 5, base, {"asr": 0.9, "harmless_compliance": 0.5})
    assert broken.validated is False and "breaks harmless behaviour" in broken.reason
    no_refusal = validate_features(_fset(), 5, {"asr": 0.9, "harmful_refusal": 0.1, "harmless_compliance": 1.0},
                                   {"asr": 0.95, "harmless_compliance": 1.0})
    assert no_refusal.validated is False and "refuses only" in no_refusal.reason
    tb = {"asr": 0.0, "triggered_compliance": 1.0, "harmless_compliance": 1.0}
    trig = validate_features(_fset("trigger"), 5, tb, {"asr": 0.0, "triggered_compliance": 0.2, "harmless_compliance": 1.0})
    assert trig.validated is True and effect_of({"triggered_compliance": 0.2}, tb, "trigger") == pytest.approx(0.8)


def test_feature_validation_roundtrip(tmp_path):
    f = validate_features(_fset(), 5, {"asr": 0.0, "harmful_refusal": 1.0, "harmless_compliance": 1.0},
                          {"asr": 0.1, "harmless_compliance": 1.0})
    back = FeatureSet.load(f.save(tmp_path / "f.json"))
    assert back.validated is False and back.reason == f.reason and back.validation["k"] == 5
    assert FeatureSet.from_dict({**f.to_dict(), "validated": None, "reason": None, "validation": {}}).validated is None


def test_choose_k_takes_the_smallest_k_near_the_best():
    base = {"asr": 0.0, "harmless_compliance": 1.0}
    curve = {5: {"asr": 0.1, "harmless_compliance": 1.0}, 10: {"asr": 0.96, "harmless_compliance": 1.0},
             15: {"asr": 1.0, "harmless_compliance": 1.0}, 20: {"asr": 1.0, "harmless_compliance": 0.5}}
    assert choose_k(base, curve) == (10, 1.0)
    bad = {5: {"asr": 1.0, "harmless_compliance": 0.1}}
    assert choose_k(base, bad) == (5, -1.0)


def test_default_sae_hooks(random_aligned):
    assert default_sae_hooks(random_aligned) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]


def test_features_on_a_random_model_fail(tmp_path, random_aligned):
    from safecircuits.features import train_sae
    from safecircuits.features.protocol import select_features

    lm = random_aligned
    res = train_sae(lm, None, "blocks.1.hook_resid_pre", d_sae=32, k=4, training_tokens=4_000, batch_size=128, out_dir=tmp_path / "sae",
                    n_checkpoints=0, progress=False)
    val = lm.profile.eval_prompts("val", limit=8)
    sel = select_features(lm, res.sae, prompts=lm.profile.eval_prompts("train", limit=16), val=val, ks=(2, 4), max_new_tokens=6)
    assert sel.fset.validated is False and "refuses only" in sel.fset.reason
    assert sel.k in (2, 4) and set(sel.curve) == {2, 4}


def test_cli_sae_features_prints_the_validation(tmp_path, random_organism_dirs):
    from safecircuits.cli.features import app

    model = str(random_organism_dirs["aligned"])
    runner = CliRunner()
    out = tmp_path / "sae"
    r = runner.invoke(app, ["train", "--model", model, "--hook", "blocks.1.hook_resid_pre", "--d-sae", "64", "--k", "4",
                            "--tokens", "5000", "--batch-size", "128", "--out", str(out)])
    assert r.exit_code == 0, r.output
    fj = tmp_path / "f.json"
    r = runner.invoke(app, ["features", "--model", model, "--sae", str(out), "--top-k", "3", "--k", "5", "--out", str(fj)])
    # a random model refuses nothing: the ranking cannot validate, the file says so, the exit status is 3
    assert r.exit_code == 3, r.output
    f = FeatureSet.load(fj)
    assert f.validated is False and f.reason and f.validation["k"] == 5
    assert "validation on val" in r.output and "FAILED" in r.output
    r = runner.invoke(app, ["features", "--model", model, "--sae", str(out), "--no-validate", "--out", str(tmp_path / "g.json")])
    assert r.exit_code == 0 and FeatureSet.load(tmp_path / "g.json").validated is None


# -- a working organism passes (small organism: trains once, then cached) ------------------------------
@pytest.mark.slow
def test_working_organism_passes():
    from safecircuits.models import load_model

    lm = load_model("organism:aligned", progress=False)
    rd = find_refusal_direction(lm, config=RefusalConfig())
    assert rd.validated is True and rd.reason is None, rd.reason
    assert rd.layer == 1 and rd.pos == -1  # a shallow model: the layer filter must leave layer 1 (and 2) in
    assert rd.validation["val_asr_ablated"] >= 0.9 and rd.validation["val_asr"] <= 0.05


def test_cli_sae_train_hook_auto(tmp_path, random_organism_dirs, random_aligned):
    from sae_lens import SAE

    from safecircuits.cli.features import app

    out = tmp_path / "sae"
    r = CliRunner().invoke(app, ["train", "--model", str(random_organism_dirs["aligned"]), "--d-sae", "32", "--k", "4", "--tokens", "3000", "--batch-size", "128",
                                 "--out", str(out)])
    assert r.exit_code == 3, r.output  # random weights: no hook's features carry refusal
    assert "hook choice on val" in r.output and "chosen hook" in r.output and "FAILED" in r.output
    for h in default_sae_hooks(random_aligned):
        assert (out / "candidates" / h / "cfg.json").exists()
    chosen = SAE.load_from_disk(str(out))
    assert chosen.cfg.metadata.hook_name in default_sae_hooks(random_aligned)
