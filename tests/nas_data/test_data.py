import numpy as np
import pytest
import torch
from PIL import Image

from nas_data import load_data, parse_spec


def _folder(root, classes=("cat", "dog"), n=12, size=(20, 24)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for k in range(n):
            arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}_{k:03d}.png")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_CACHE", str(tmp_path / "cache"))


def test_digits_is_embedded_and_fixed():
    d = load_data("digits")
    assert d.train_x.shape == (1438, 3, 32, 32) and d.val_x.shape == (359, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.num_classes == 10
    assert sorted(torch.bincount(d.val_y).tolist())[0] >= 35  # stratified
    d2 = load_data("digits")
    assert torch.equal(d.val_x, d2.val_x) and torch.equal(d.train_y, d2.train_y)


def test_batches_are_deterministic_under_a_generator():
    d = load_data("digits")
    a = [x for x, _ in d.batches("train", batch_size=64, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1), max_batches=3)]
    b = [x for x, _ in d.batches("train", batch_size=64, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1), max_batches=3)]
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and len(a) == 3
    x, y = next(d.batches("val", batch_size=359))
    assert x.shape == (359, 3, 32, 32) and abs(float(x.mean())) < 0.2
    with pytest.raises(ValueError, match="generator"):
        next(d.batches("train", shuffle=True))
    with pytest.raises(ValueError, match="split"):
        next(d.batches("test"))


def test_augmentation_crops_with_padding():
    d = load_data("digits")
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32).to(torch.uint8)
    out = d.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # every crop is a shifted window of the zero-padded image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for k in range(2):
        assert any(torch.equal(out[k], padded[k, :, i:i + 32, j:j + 32]) for i in range(5) for j in range(5))


def test_imagefolder_split_is_deterministic(tmp_path):
    root = _folder(tmp_path / "imgs", n=30)
    d = load_data(f"imagefolder:{root}")
    assert d.classes == ["cat", "dog"] and d.image_size == 32
    assert d.train_y.numel() + d.val_y.numel() == 60 and 0 < d.val_y.numel() < 20
    d2 = load_data(f"imagefolder:{root}")  # from the on-disk cache
    assert torch.equal(d.train_x, d2.train_x) and torch.equal(d.val_y, d2.val_y)
    capped = load_data(f"imagefolder:{root}@10")
    assert capped.train_y.numel() + capped.val_y.numel() == 20


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("imagenet", "unknown dataset 'imagenet'"),
        ("", "expected"),
        ("digits:foo", "takes no argument"),
        ("imagefolder", "needs a path"),
        ("imagefolder:/nonexistent/path", "does not exist"),
    ],
)
def test_bad_specs(spec, msg):
    with pytest.raises(ValueError, match=msg):
        load_data(spec)


def test_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        load_data(f"imagefolder:{tmp_path / 'empty'}")
    one = _folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ValueError, match="at least 2"):
        load_data(f"imagefolder:{one}")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        load_data(f"imagefolder:{f}")
    bad = _folder(tmp_path / "bad")
    (bad / "dog" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.jpg"):
        load_data(f"imagefolder:{bad}")
    holes = _folder(tmp_path / "holes")
    (holes / "bird").mkdir()
    with pytest.raises(ValueError, match=r"\['bird'\].*contain no images"):
        load_data(f"imagefolder:{holes}")
    with pytest.raises(ValueError, match="positive image count"):
        load_data(f"imagefolder:{holes}@x")


def test_cifar10_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match=r"CIFAR-10 not found .*python -m nas_data download cifar10"):
        load_data(f"cifar10:{tmp_path / 'nothing'}")
    assert parse_spec("cifar10") == ("cifar10", None)
