"""Shared plumbing: the cache root is read at call time, an atomic write is all or nothing, one device resolver, progress bars."""

from pathlib import Path

import pytest

from nas_common import atomic_write, cache_root


def test_cache_root_follows_the_environment_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("SHUFFLENAS_CACHE", str(tmp_path / "a"))
    assert cache_root("latency") == tmp_path / "a" / "latency"
    monkeypatch.setenv("SHUFFLENAS_CACHE", str(tmp_path / "b"))
    assert cache_root("supernets", "k") == tmp_path / "b" / "supernets" / "k"
    monkeypatch.delenv("SHUFFLENAS_CACHE")
    assert cache_root() == Path.home() / ".cache" / "shufflenas"


def test_an_atomic_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "model.pt2"
    atomic_write(target, lambda p: p.write_text("old"))
    assert target.read_text() == "old"

    def broken(p: Path) -> None:
        assert p.name == "model.tmp.pt2"  # the temporary file keeps the suffix
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and sorted(x.name for x in target.parent.iterdir()) == ["model.pt2"]


def test_one_device_resolver_for_training_evaluation_and_latency():
    import torch

    from nas_common import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"device: unknown device 'tpu0'; available: \['cpu'"):
        resolve_device("tpu0")
    with pytest.raises(ValueError, match=r"device: unsupported device 'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device: 'cuda' requested but no CUDA GPU is available; available: \['cpu'\]"):
            resolve_device("cuda")


def test_progress_bar_is_none_when_off():
    from nas_common import progress_bar

    assert progress_bar(10, "x", "step", enabled=False) is None
    bar = progress_bar(10, "x", "step")
    bar.update(3)
    assert bar.n == 3 and bar.total == 10 and bar.unit == "step"
    bar.close()
