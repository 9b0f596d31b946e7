"""fastnn.datasets: the real MNIST files (found through $FASTNN_DATA, by default ../shared/data
next to the repository), gzipped and raw, the IDX checks on truncated, corrupted and wrong
files, where the files are looked for, and the download path against a local HTTP server on
127.0.0.1 (mirror fallback, SHA-256 mismatch, unreachable mirrors)."""
import gzip
import hashlib
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

import fastnn.datasets as D
from helpers import QuietHandler

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
REPO = Path(__file__).resolve().parent.parent


def shared_mnist_dir():
    """The directory holding the four .gz files: $FASTNN_DATA(/mnist), else ../shared/data/mnist."""
    env = os.environ.get("FASTNN_DATA")
    base = Path(env).resolve() if env else REPO.parent / "shared" / "data"
    for directory in (base / "mnist", base):
        if all((directory / (name + ".gz")).is_file() for name in FILES):
            return directory
    return None


MNIST_DIR = shared_mnist_dir()
NO_MNIST = "MNIST files not found: set FASTNN_DATA to the directory holding mnist/ (default ../shared/data)"
needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason=NO_MNIST)


@pytest.fixture(scope="module")
def mnist():
    if MNIST_DIR is None:
        pytest.skip(reason=NO_MNIST)
    return D.load_mnist(MNIST_DIR)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    """The four files decompressed, written once for the module (raw files read fast)."""
    if MNIST_DIR is None:
        pytest.skip(reason=NO_MNIST)
    directory = tmp_path_factory.mktemp("raw")
    for name in FILES:
        with gzip.open(MNIST_DIR / (name + ".gz"), "rb") as src:
            (directory / name).write_bytes(src.read())
    return directory


@pytest.fixture(autouse=True)
def no_user_locations(monkeypatch, tmp_path):
    """No test reads $FASTNN_DATA or writes the user's cache unless it says so."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_MNIST_MIRROR", raising=False)
    monkeypatch.delenv("FASTNN_FASHION_MNIST_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Nor the system's copy (Debian's dataset-fashion-mnist), which may or may not be installed.
    monkeypatch.setattr(D._FASHION, "also_here", ())


def linked_copy(source_dir, target_dir, replace=None, suffix=""):
    """target_dir with links to source_dir's files (name + suffix), except those in replace
    ({name: bytes}), which are written."""
    target_dir.mkdir(parents=True, exist_ok=True)
    replace = replace or {}
    for name in FILES:
        if name in replace:
            (target_dir / name).write_bytes(replace[name])
        else:
            os.symlink(source_dir / (name + suffix), target_dir / (name + suffix))
    return target_dir


# ---------------------------------------------------------------------------------------------
# the real files

def test_real_mnist(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert all(a.dtype == np.uint8 and a.flags.c_contiguous and a.flags.writeable
               for a in (x_train, y_train, x_test, y_test))
    # the checks published with the files (../shared/data/mnist/README.md)
    assert int(x_train.sum(dtype=np.int64)) == 1567298545 and int(x_test.sum(dtype=np.int64)) == 264923200
    assert int(y_train.sum()) == 267236 and int(y_test.sum()) == 44434
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_raw_and_mixed_files_read_the_same(mnist, raw_dir, tmp_path):
    (x_train, y_train), (x_test, y_test) = D.load_mnist(raw_dir)
    assert np.array_equal(x_train, mnist[0][0]) and np.array_equal(y_test, mnist[1][1])
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, name in enumerate(FILES):
        source = MNIST_DIR / (name + ".gz") if i % 2 else raw_dir / name  # gzipped labels, raw images
        os.symlink(source, mixed / source.name)
    (a, b), (c, d) = D.load_mnist(mixed)
    assert np.array_equal(b, y_train) and np.array_equal(c, x_test) and np.array_equal(d, y_test)


def test_gzip_is_recognised_by_content_not_name(raw_dir, tmp_path):
    plain = tmp_path / "labels.gz"  # a raw file with a .gz name
    shutil.copyfile(raw_dir / "t10k-labels-idx1-ubyte", plain)
    packed = tmp_path / "labels"   # a gzipped file without one
    shutil.copyfile(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", packed)
    np.testing.assert_array_equal(D.read_idx(plain), D.read_idx(packed))


def test_fashion_mnist_reads_the_same_format(raw_dir, tmp_path, monkeypatch):
    fashion = linked_copy(raw_dir, tmp_path / "data" / "fashion-mnist")
    (x, y), (xt, yt) = D.load_fashion_mnist(tmp_path / "data")  # the fashion-mnist subdirectory
    assert x.shape == (60000, 28, 28) and yt.shape == (10000,)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "data"))
    assert D.load_fashion_mnist(download=False)[1][1].shape == (10000,)
    # $FASTNN_DATA itself holding MNIST files is not taken for Fashion-MNIST
    shutil.rmtree(fashion)
    linked_copy(raw_dir, tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"Fashion-MNIST files were not found.*\$FASTNN_DATA/fashion-mnist"):
        D.load_fashion_mnist(download=False)


# ---------------------------------------------------------------------------------------------
# IDX checks, file by file

def idx_bytes(magic, dims, payload):
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def test_read_idx_other_types_and_big_endian(tmp_path):
    values = np.arange(-3, 3, dtype=">i4").reshape(2, 3)
    path = tmp_path / "ints"
    path.write_bytes(idx_bytes(0x0C02, [2, 3], values.tobytes()))
    out = D.read_idx(path, expected_magic=0x0C02, expected_shape=(None, 3))
    assert out.dtype == np.int32 and out.dtype.isnative and out.tolist() == values.tolist()
    path.write_bytes(gzip.compress(idx_bytes(0x0D01, [2], np.array([1.5, -2], ">f4").tobytes())))
    assert D.read_idx(path).tolist() == [1.5, -2.0]


LABELS = idx_bytes(2049, [5], bytes([3, 1, 4, 1, 5]))


@pytest.mark.parametrize("content, match", [
    (LABELS[:-2], r"truncated: expected 13 bytes \(8-byte header \+ 5 bytes of data for dimensions \(5,\)\), "
                  r"found 11"),
    (LABELS + b"\x00" * 3, r"wrong length: expected 13 bytes .*found 16 \(3 bytes too many\)"),
    (LABELS[:6], r"truncated header: expected 8 bytes for 1 dimensions, found 6"),
    (LABELS[:2], r"too short for an IDX header: expected at least 4 bytes, found 2"),
    (b"", r"too short for an IDX header"),
    (idx_bytes(2051, [1, 28, 28], bytes(784)),
     r"wrong magic number: expected 2049 \(0x00000801: uint8 values, 1 dimension\), "
     r"found 2051 \(0x00000803: uint8 values, 3 dimensions\)"),
    (b"PK\x03\x04" + bytes(20), r"wrong magic number: expected 2049 .* found .*not an IDX header"),
    (gzip.compress(LABELS[:-1]), r"\(after decompression\): truncated: expected 13 bytes .* found 12"),
    (gzip.compress(LABELS * 200)[:40], r"corrupt gzip data"),
])
def test_read_idx_rejects_bad_files(tmp_path, content, match):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        D.read_idx(path, expected_magic=2049, expected_shape=(None,))
    assert str(path) in str(info.value)


def test_read_idx_rejects_wrong_dimensions_and_unknown_types(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(2051, [2, 27, 28], bytes(2 * 27 * 28)))
    expected = r"wrong dimensions in the header: expected \(any, 28, 28\), found \(2, 27, 28\)"
    with pytest.raises(ValueError, match=expected):
        D.read_idx(path, 2051, (None, 28, 28))
    path.write_bytes(idx_bytes(0x0701, [1], b"\x00"))
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(path)


def test_corrupted_real_gzip_file(tmp_path):
    if MNIST_DIR is None:
        pytest.skip(reason=NO_MNIST)
    data = bytearray((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt gzip data"):
        D.read_idx(path, 2049)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError, match=f"{path}: corrupt gzip data"):
        D.read_idx(path, 2049)


# ---------------------------------------------------------------------------------------------
# load_mnist on damaged copies of the real files

@needs_mnist
@pytest.mark.parametrize("broken, make, match", [
    ("train-images-idx3-ubyte", lambda raw: (raw / "train-labels-idx1-ubyte").read_bytes(),
     r"train-images-idx3-ubyte: wrong magic number: expected 2051"),
    ("t10k-labels-idx1-ubyte", lambda raw: (raw / "t10k-labels-idx1-ubyte").read_bytes()[:-100],
     r"t10k-labels-idx1-ubyte: truncated: expected 10008 bytes .* found 9908"),
    ("t10k-images-idx3-ubyte", lambda raw: gzip.compress((raw / "t10k-images-idx3-ubyte").read_bytes()[:-1], 1),
     r"t10k-images-idx3-ubyte \(after decompression\): truncated: expected 7840016 bytes .* found 7840015"),
    ("t10k-labels-idx1-ubyte",
     lambda raw: idx_bytes(2049, [9999], (raw / "t10k-labels-idx1-ubyte").read_bytes()[8:-1]),
     r"holds 10000 images but .*t10k-labels-idx1-ubyte holds 9999 labels"),
    ("t10k-labels-idx1-ubyte", lambda raw: (raw / "t10k-labels-idx1-ubyte").read_bytes()[:-1] + b"\x0a",
     r"t10k-labels-idx1-ubyte: expected labels in 0..9, found 10"),
    ("train-images-idx3-ubyte", lambda raw: (raw / "t10k-images-idx3-ubyte").read_bytes(),
     r"holds 10000 images but .*train-labels-idx1-ubyte holds 60000 labels"),
])
def test_load_mnist_names_the_bad_file(raw_dir, tmp_path, broken, make, match):
    directory = linked_copy(raw_dir, tmp_path / "mnist", replace={broken: make(raw_dir)})
    with pytest.raises(ValueError, match=match):
        D.load_mnist(directory)


@needs_mnist
def test_a_split_with_the_wrong_count_is_refused(raw_dir, tmp_path):
    images = idx_bytes(2051, [3, 28, 28], bytes(3 * 784))
    labels = idx_bytes(2049, [3], bytes(3))
    directory = linked_copy(raw_dir, tmp_path / "mnist", replace={"t10k-images-idx3-ubyte": images,
                                                                  "t10k-labels-idx1-ubyte": labels})
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: expected 10000 MNIST images, found 3"):
        D.load_mnist(directory)


# ---------------------------------------------------------------------------------------------
# where the files are looked for

@pytest.fixture
def recorded_reads(monkeypatch):
    """Replace read_idx by a recorder returning blank arrays of the right shapes (no real reads)."""
    reads = []

    def fake_read_idx(path, expected_magic=None, expected_shape=None):
        reads.append(Path(path))
        count = 60000 if Path(path).name.startswith("train") else 10000
        return np.zeros((count,) + tuple(expected_shape[1:]), np.uint8)

    monkeypatch.setattr(D, "read_idx", fake_read_idx)
    return reads


def make_files(directory, suffix=".gz"):
    directory.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (directory / (name + suffix)).write_bytes(b"")
    return directory


def test_lookup_order(tmp_path, monkeypatch, recorded_reads):
    cache = make_files(tmp_path / "xdg-cache" / "fastnn" / "mnist")
    assert D.cache_dir() == tmp_path / "xdg-cache" / "fastnn"
    D.load_mnist(download=False)
    assert recorded_reads[-1].parent == cache

    data = make_files(tmp_path / "data" / "mnist")  # $FASTNN_DATA/mnist wins over the cache
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "data"))
    D.load_mnist(download=False)
    assert recorded_reads[-1].parent == data

    direct = make_files(tmp_path / "direct", suffix="")  # $FASTNN_DATA holding the files itself
    monkeypatch.setenv("FASTNN_DATA", str(direct))
    D.load_mnist(download=False)
    assert [p.name for p in recorded_reads[-4:]] == FILES and recorded_reads[-1].parent == direct

    explicit = make_files(tmp_path / "explicit")  # an explicit path wins over everything
    D.load_mnist(str(explicit), download=False)
    assert recorded_reads[-1].parent == explicit
    D.load_mnist(tmp_path / "data", download=False)  # or the parent of its mnist subdirectory
    assert recorded_reads[-1].parent == data

    (cache / "t10k-labels-idx1-ubyte.gz").unlink()  # an incomplete directory is skipped
    monkeypatch.delenv("FASTNN_DATA")
    with pytest.raises(FileNotFoundError, match=r"MNIST files were not found \(looked in .*xdg-cache.*\) and "
                                                r"download=False\. Put the four MNIST files"):
        D.load_mnist(download=False)


# ---------------------------------------------------------------------------------------------
# downloads from a local HTTP server

# The `server` fixture (tests/conftest.py) serves tmp_path/www on 127.0.0.1; QuietHandler records
# the requests.


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@needs_mnist
def test_download_into_the_cache_with_mirror_fallback(server, tmp_path, monkeypatch, capsys, mnist):
    base, root = server
    (root / "mnist").mkdir()
    for name in FILES:
        shutil.copyfile(MNIST_DIR / (name + ".gz"), root / "mnist" / (name + ".gz"))
    # the first mirror answers 404, the second has the files
    monkeypatch.setenv("FASTNN_MNIST_MIRROR", f"{base}/nothing-here/, {base}/mnist")
    (x_train, y_train), (x_test, y_test) = D.load_mnist()
    assert np.array_equal(x_train, mnist[0][0]) and np.array_equal(y_test, mnist[1][1])
    cache = tmp_path / "xdg-cache" / "fastnn" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in FILES)  # no temporary left
    err = capsys.readouterr().err
    assert "downloading train-images-idx3-ubyte.gz from 127.0.0.1" in err and "done" in err
    assert sorted(QuietHandler.requests) == sorted([(f"/nothing-here/{n}.gz", 404) for n in FILES] +
                                                   [(f"/mnist/{n}.gz", 200) for n in FILES])
    served = len(QuietHandler.requests)
    D.load_mnist()  # found in the cache now: no request
    assert len(QuietHandler.requests) == served


@needs_mnist
def test_checksum_mismatch_is_refused_and_leaves_nothing(server, tmp_path, monkeypatch):
    base, root = server
    target = tmp_path / "target"
    target.mkdir()
    for name in FILES[:2]:  # the train files are already there; only t10k is fetched
        os.symlink(MNIST_DIR / (name + ".gz"), target / (name + ".gz"))
    shutil.copyfile(MNIST_DIR / "t10k-images-idx3-ubyte.gz", root / "t10k-images-idx3-ubyte.gz")
    tampered = gzip.compress(gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(tampered)  # same content, other bytes: other digest
    monkeypatch.setattr(D, "MNIST_MIRRORS", [base])  # the module attribute, without the env var
    with pytest.raises(D.DownloadError) as info:
        D.load_mnist(target)
    message = str(info.value)
    assert "could not download t10k-labels-idx1-ubyte.gz" in message
    assert f"SHA-256 mismatch: expected {D.MNIST_SHA256['t10k-labels-idx1-ubyte.gz'][0]}" in message
    assert hashlib.sha256(tampered).hexdigest() in message
    assert "Put the four MNIST files" in message and str(target) in message
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [FILES[0] + ".gz", FILES[1] + ".gz", "t10k-images-idx3-ubyte.gz"])  # verified one kept, no .part


def test_unreachable_mirrors_say_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_MNIST_MIRROR", closed_port_url())
    with pytest.raises(D.DownloadError, match=r"(?s)could not download train-images-idx3-ubyte\.gz:.*127\.0\.0\.1.*"
                                              r"Put the four MNIST files .* in .*xdg-cache/fastnn/mnist"):
        D.load_mnist()
    assert not any((tmp_path / "xdg-cache" / "fastnn" / "mnist").iterdir())
    monkeypatch.setenv("FASTNN_FASHION_MNIST_MIRROR", closed_port_url())
    with pytest.raises(OSError, match=r"(?s)Fashion-MNIST files .*\$FASTNN_DATA/fashion-mnist"):
        D.load_fashion_mnist(tmp_path / "fm")


def test_published_checksums_are_well_formed():
    for table in (D.MNIST_SHA256, D.FASHION_MNIST_SHA256):
        assert sorted(table) == sorted(n + ".gz" for n in FILES)
        for digests in table.values():
            assert digests and all(len(d) == 64 and int(d, 16) >= 0 for d in digests)
    sums = (MNIST_DIR / "SHA256SUMS") if MNIST_DIR is not None else None
    if sums is not None and sums.is_file():  # the shared copy's digests are accepted
        for line in sums.read_text().split("\n"):
            if line.strip():
                digest, name = line.split()
                assert digest in D.MNIST_SHA256[name]
