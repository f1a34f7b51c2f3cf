"""The device, dtype and thread policy (safecircuits.runtime)."""

from __future__ import annotations

import pytest
import torch

from safecircuits import runtime


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch):
    monkeypatch.delenv("SAFECIRCUITS_THREADS", raising=False)
    saved = (runtime.settings.device, runtime.settings.dtype, runtime.settings.threads, runtime.settings.deterministic)
    prev = torch.get_num_threads()
    yield
    runtime.settings.device, runtime.settings.dtype, runtime.settings.threads = saved[:3]
    runtime.set_deterministic(saved[3])
    torch.set_num_threads(prev)


def test_resolve_device():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    auto = runtime.resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        runtime.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU.*--device cpu"):
            runtime.resolve_device("cuda")


def test_resolve_dtype_names_and_defaults():
    assert runtime.resolve_dtype("bf16") is torch.bfloat16
    assert runtime.resolve_dtype("float32") is torch.float32
    assert runtime.resolve_dtype(torch.float16) is torch.float16
    assert runtime.resolve_dtype(None, "cpu", tiny=True) is torch.float32
    expected = torch.bfloat16 if runtime.cpu_has_fast_bf16() else torch.float32
    assert runtime.resolve_dtype(None, "cpu", tiny=False) is expected
    with pytest.raises(ValueError, match="unknown dtype 'int8'.*float32, bfloat16 or float16"):
        runtime.resolve_dtype("int8")
    runtime.settings.dtype = "float16"
    assert runtime.resolve_dtype(None, "cpu") is torch.float16


def test_tiny_models_use_one_thread_and_pins_win():
    from conftest import random_lm

    lm = random_lm("gpt")
    assert runtime.is_tiny(lm.model)
    assert runtime.threads_for(lm.model) == 1
    runtime.set_threads(3)
    assert runtime.threads_for(lm.model) == 3
    runtime.set_threads(None)
    runtime.set_deterministic(True)
    assert runtime.threads_for(None) == 1
    runtime.set_deterministic(False)
    with pytest.raises(ValueError, match="whole number >= 1"):
        runtime.set_threads(0)


def test_env_pin_is_checked(monkeypatch):
    monkeypatch.setenv("SAFECIRCUITS_THREADS", "2")
    assert runtime.threads_for(None) == 2
    monkeypatch.setenv("SAFECIRCUITS_THREADS", "many")
    with pytest.raises(ValueError, match="SAFECIRCUITS_THREADS='many'"):
        runtime.threads_for(None)


def test_free_cores_is_within_the_machine():
    n = runtime.free_cores(0.05)
    assert 1 <= n <= runtime._cpu_count()


def test_compute_threads_sets_and_restores_and_nests():
    torch.set_num_threads(2)
    runtime.set_threads(1)
    with runtime.compute_threads(None) as outer:
        assert torch.get_num_threads() == 1 == outer.threads
        with runtime.compute_threads(None) as inner:
            assert inner is outer  # one policy per job
    assert torch.get_num_threads() == 2


def test_cpu_name_reads_the_model_name(tmp_path, monkeypatch):
    import builtins

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B45\nflags\t: fpu avx512_bf16\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(info if p == "/proc/cpuinfo" else p, *a, **k))
    assert runtime.cpu_name() == "AMD EPYC 9B45"
    info.write_text("processor\t: 0\n")
    assert runtime.cpu_name() == "unknown"
