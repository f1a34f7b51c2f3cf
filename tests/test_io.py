"""safecircuits.io: atomic writes leave either the finished file or nothing (never a temp file or a
half-written target), and results get the user's normal permissions, not a temp file's 0600."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from safecircuits.errors import DataFormatError, MissingFileError
from safecircuits.io import atomic_dir, atomic_file, read_json, save_with, write_json, write_text


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_files_and_dirs_get_normal_permissions(tmp_path, umask):
    f = write_text(tmp_path / "a.txt", "hi")
    assert mode(f) == 0o666 & ~umask
    j = write_json(tmp_path / "sub" / "b.json", {"x": 1})
    assert mode(j) == 0o666 & ~umask
    s = save_with(tmp_path / "t.pt", lambda p: torch.save({"a": torch.ones(2)}, p))
    assert mode(s) == 0o666 & ~umask
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "inner").mkdir()
        (tmp / "inner" / "x.txt").write_text("x")
    d = tmp_path / "d"
    assert mode(d) == 0o777 & ~umask and mode(d / "inner") == 0o777 & ~umask
    assert mode(d / "inner" / "x.txt") == 0o666 & ~umask


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failed_file_write_leaves_nothing(tmp_path, exc):
    target = tmp_path / "out.json"
    with pytest.raises(exc), atomic_file(target) as tmp:
        tmp.write_text('{"half": ')
        raise exc("stopped mid-write")
    assert list(tmp_path.iterdir()) == []
    # an existing file is kept unchanged
    write_text(target, "old")
    with pytest.raises(exc), atomic_file(target) as tmp:
        tmp.write_text("new, half")
        raise exc("stopped")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_writer_and_unserialisable_payload_leave_nothing(tmp_path):
    def writer(p):
        p.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_with(tmp_path / "m.pt", writer)

    class Boom:
        def tolist(self):
            raise ValueError("cannot serialise")

    with pytest.raises(ValueError, match="cannot serialise"):
        write_json(tmp_path / "r.json", {"x": Boom()})
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_write_keeps_the_old_dir(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2, half")
        raise KeyboardInterrupt
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # a finished write replaces the directory whole (files of the old one do not linger)
    with atomic_dir(target) as tmp:
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_write_json_handles_result_types(tmp_path):
    @dataclasses.dataclass
    class R:
        a: int
        p: Path

    payload = {"t": torch.tensor([1.5, 2.0]), "s": torch.tensor(3), "path": Path("/x/y"), "r": R(1, Path("z")), "set": {4},
               "tuple": (1, 2)}
    back = json.loads(write_json(tmp_path / "r.json", payload).read_text())
    assert back == {"t": [1.5, 2.0], "s": 3, "path": "/x/y", "r": {"a": 1, "p": "z"}, "set": [4], "tuple": [1, 2]}


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="results file .*nope.json does not exist; run it first"):
        read_json(tmp_path / "nope.json", "results file", "run it first")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(DataFormatError, match="bad.json: is not a valid results file") as e:
        read_json(bad, "results file", "write it again")
    assert e.value.path == bad and "write it again" in str(e.value)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFormatError):
        read_json(binary)
    assert read_json(write_json(tmp_path / "ok.json", [1, 2])) == [1, 2]


def test_results_written_by_the_package_get_normal_permissions(tmp_path, umask, random_aligned, random_base):
    """Writers that stage through their own temporary files or directories: a saved organism, a
    circuit, a subspace, a fine-tuned model directory."""
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.finetune import FinetuneConfig, finetune, get_method
    from safecircuits.models.language import Language
    from safecircuits.models.organisms import OrganismConfig, save_organism
    from safecircuits.subspaces import WeightDeltaSubspace

    org = save_organism(random_aligned.model, OrganismConfig(**random_aligned.info["organism"]), {}, tmp_path / "organism")
    assert mode(org) == 0o777 & ~umask and mode(org / "model.safetensors") == 0o666 & ~umask
    c = Circuit(torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 128, dtype=torch.bool))
    assert mode(c.to_json(tmp_path / "c.json")) == 0o666 & ~umask
    assert mode(c.save(tmp_path / "c.pt")) == 0o666 & ~umask
    sub = WeightDeltaSubspace.from_models(random_aligned, random_base, rank=1)
    assert mode(sub.save(tmp_path / "w.pt")) == 0o666 & ~umask
    assert mode(sub.save(tmp_path / "w.safetensors")) == 0o666 & ~umask
    from sae_lens import StandardSAE, StandardSAEConfig

    from safecircuits.features.sae import TrainedSAE

    sae_dir = TrainedSAE(StandardSAE(StandardSAEConfig(d_in=32, d_sae=64)), None, {"hook": "blocks.0.hook_resid_pre"}).save(tmp_path / "sae")
    assert mode(sae_dir) == 0o777 & ~umask
    assert all(mode(p) == 0o666 & ~umask for p in sae_dir.iterdir()), {p.name: oct(mode(p)) for p in sae_dir.iterdir()}
    run = finetune(random_aligned, Language(0).prompt_set("train", "harmless")[:8], get_method("sft"),
                   FinetuneConfig(steps=1, batch_size=4, progress=False))
    out = run.save(tmp_path / "ft")
    assert mode(out) == 0o777 & ~umask
    assert all(mode(p) == 0o666 & ~umask for p in out.iterdir() if p.is_file())
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")], "temporary files left"


def test_json_record_is_json_ready_and_cuts_examples():
    import torch

    from safecircuits.io import json_record

    class Result:
        def to_dict(self):
            return {"asr": torch.tensor(0.25), "path": Path("/x"), "examples": {"harmful": list(range(10)), "note": "kept"}}

    rec = json_record(Result())
    assert rec == {"asr": 0.25, "path": "/x", "examples": {"harmful": [0, 1, 2], "note": "kept"}}
    assert json_record(Result(), max_examples=None)["examples"]["harmful"] == list(range(10))


def test_empty_cache_variable_means_the_default_cache(monkeypatch, tmp_path):
    from safecircuits.models.loaded import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SAFECIRCUITS_CACHE", "")
    assert cache_dir("x") == tmp_path / ".cache" / "safecircuits" / "x"
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
