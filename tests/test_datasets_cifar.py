"""fastnn.datasets.load_cifar10 on small files written in the exact CIFAR-10 binary format (values
and labels round-trip, truncated files and bad labels are refused, where the files are looked
for), its download path against a local HTTP server on 127.0.0.1 serving a small tarball built
here (mirror fallback, MD5 mismatch, unsafe archive members), and load_fashion_mnist on Debian's
real Fashion-MNIST files when the dataset-fashion-mnist package is installed."""
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

import fastnn.datasets as D
from helpers import QuietHandler

TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST = ["test_batch.bin"]
RECORD = 3073


@pytest.fixture(autouse=True)
def no_user_locations(monkeypatch, tmp_path):
    """No test reads $FASTNN_DATA or writes the user's cache unless it says so."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_CIFAR10_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def records(count, seed):
    """(bytes in the CIFAR-10 binary layout, images (count, 3, 32, 32), labels (count,)), written
    record by record from the definition: 1 label byte, then the R, G and B planes row by row."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    out = bytearray()
    for image, label in zip(images, labels):
        out.append(int(label))
        for plane in image:  # red, green, blue
            for row in plane:
                out += bytes(int(v) for v in row)
    return bytes(out), images, labels


@pytest.fixture(scope="module")
def cifar_files():
    """{file name: (bytes, images, labels)} for a tiny data set: 2, 3, 1, 2, 2 train records, 3 test."""
    counts = dict(zip(TRAIN + TEST, (2, 3, 1, 2, 2, 3)))
    return {name: records(count, seed) for seed, (name, count) in enumerate(counts.items())}


def write_cifar(directory, files, replace=None):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (data, _, _) in files.items():
        (directory / name).write_bytes((replace or {}).get(name, data))
    return directory


def expected(files, names):
    return (np.concatenate([files[n][1] for n in names]), np.concatenate([files[n][2] for n in names]))


def check(result, files):
    (x_train, y_train), (x_test, y_test) = result
    ex_train, ey_train = expected(files, TRAIN)
    ex_test, ey_test = expected(files, TEST)
    assert x_train.shape == (10, 3, 32, 32) and x_train.dtype == np.uint8 and x_train.flags.c_contiguous
    assert y_train.shape == (10,) and y_train.dtype == np.uint8  # like load_mnist's labels
    assert np.array_equal(x_train, ex_train) and np.array_equal(y_train, ey_train)
    assert np.array_equal(x_test, ex_test) and np.array_equal(y_test, ey_test)


# ---------------------------------------------------------------------------------------------
# reading

def test_values_and_labels_round_trip(cifar_files, tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-bin", cifar_files)
    check(D.load_cifar10(folder), cifar_files)
    check(D.load_cifar10(str(tmp_path), download=False), cifar_files)  # or its parent
    # the first pixel bytes of the first record, read by hand
    data = cifar_files["data_batch_1.bin"][0]
    (x, y), _ = D.load_cifar10(folder)
    assert y[0] == data[0] and x[0, 0, 0, 0] == data[1] and x[0, 0, 0, 1] == data[2]
    assert x[0, 1, 0, 0] == data[1 + 1024] and x[0, 2, 31, 31] == data[RECORD - 1]
    assert D.CIFAR10_CLASSES[0] == "airplane" and len(D.CIFAR10_CLASSES) == 10


def test_truncated_or_padded_file_is_refused(cifar_files, tmp_path):
    data = cifar_files["data_batch_3.bin"][0]
    folder = write_cifar(tmp_path / "c", cifar_files, {"data_batch_3.bin": data[:-5]})
    with pytest.raises(ValueError, match=r"data_batch_3\.bin: wrong length: .* found 3068 bytes \(0 whole records "
                                         r"and 3068 bytes more\); the file is truncated"):
        D.load_cifar10(folder)
    write_cifar(folder, cifar_files, {"test_batch.bin": cifar_files["test_batch.bin"][0] + b"\0"})
    write_cifar(folder, {"data_batch_3.bin": cifar_files["data_batch_3.bin"]})
    with pytest.raises(ValueError, match=r"test_batch\.bin: wrong length: .* \(3 whole records and 1 bytes more\)"):
        D.load_cifar10(folder)
    write_cifar(folder, cifar_files, {"data_batch_5.bin": b""})
    with pytest.raises(ValueError, match=r"data_batch_5\.bin: wrong length: .* \(an empty file\)"):
        D.load_cifar10(folder)


def test_bad_label_is_refused(cifar_files, tmp_path):
    data = bytearray(cifar_files["data_batch_2.bin"][0])
    data[RECORD] = 10  # the label byte of record 1
    folder = write_cifar(tmp_path / "c", cifar_files, {"data_batch_2.bin": bytes(data)})
    with pytest.raises(ValueError, match=r"data_batch_2\.bin: record 1 has label 10; expected labels in 0\.\.9"):
        D.load_cifar10(folder)


def test_lookup_order_and_missing_files(cifar_files, tmp_path, monkeypatch):
    cache = write_cifar(tmp_path / "xdg-cache" / "fastnn" / "cifar-10-batches-bin", cifar_files)
    check(D.load_cifar10(download=False), cifar_files)
    other = dict(cifar_files)
    other["test_batch.bin"] = records(4, seed=99)
    write_cifar(tmp_path / "data" / "cifar-10-batches-bin", other)  # $FASTNN_DATA wins over the cache
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "data"))
    assert len(D.load_cifar10(download=False)[1][1]) == 4
    monkeypatch.delenv("FASTNN_DATA")
    (cache / "data_batch_4.bin").unlink()  # an incomplete folder is skipped
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 files were not found \(looked in .*xdg-cache.*\) and "
                                                r"download=False\. Put the CIFAR-10 binary batches"):
        D.load_cifar10(download=False)


# ---------------------------------------------------------------------------------------------
# download from a local HTTP server

# The `server` fixture (tests/conftest.py) serves tmp_path/www on 127.0.0.1; QuietHandler records
# the requests.


def tarball(members):
    """A .tar.gz in memory; members: (name, bytes) for files, (name, None) for directories,
    (name, ('symlink', target)) for links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def official_layout(files):
    return ([("cifar-10-batches-bin", None)] +
            [(f"cifar-10-batches-bin/{name}", data) for name, (data, _, _) in files.items()] +
            [("cifar-10-batches-bin/batches.meta.txt", "\n".join(D.CIFAR10_CLASSES).encode())])


def serve(root, archive, monkeypatch, subdir="kriz"):
    (root / subdir).mkdir(exist_ok=True)
    (root / subdir / "cifar-10-binary.tar.gz").write_bytes(archive)
    monkeypatch.setitem(D.CIFAR10_MD5, "cifar-10-binary.tar.gz", (hashlib.md5(archive).hexdigest(),))


def test_download_into_the_cache_with_mirror_fallback(cifar_files, server, tmp_path, monkeypatch, capsys):
    base, root = server
    serve(root, tarball(official_layout(cifar_files)), monkeypatch)
    monkeypatch.setenv("FASTNN_CIFAR10_MIRROR", f"{base}/nothing-here/, {base}/kriz")
    check(D.load_cifar10(), cifar_files)
    cache = tmp_path / "xdg-cache" / "fastnn"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-bin"]  # no tarball, no temporaries
    unpacked = sorted(p.name for p in (cache / "cifar-10-batches-bin").iterdir())
    assert unpacked == sorted(TRAIN + TEST + ["batches.meta.txt"])
    assert "downloading cifar-10-binary.tar.gz from 127.0.0.1" in capsys.readouterr().err
    assert QuietHandler.requests == [("/nothing-here/cifar-10-binary.tar.gz", 404),
                                     ("/kriz/cifar-10-binary.tar.gz", 200)]
    check(D.load_cifar10(), cifar_files)  # found in the cache now: no request
    assert len(QuietHandler.requests) == 2


def test_download_into_an_explicit_path(cifar_files, server, tmp_path, monkeypatch):
    base, root = server
    serve(root, tarball(official_layout(cifar_files)), monkeypatch)
    monkeypatch.setattr(D, "CIFAR10_MIRRORS", [base + "/kriz/"])  # the module attribute, without the env var
    check(D.load_cifar10(tmp_path / "mine"), cifar_files)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["cifar-10-batches-bin"]


def test_md5_mismatch_is_refused_and_leaves_nothing(cifar_files, server, tmp_path, monkeypatch):
    base, root = server
    archive = tarball(official_layout(cifar_files))
    serve(root, archive, monkeypatch)
    monkeypatch.setitem(D.CIFAR10_MD5, "cifar-10-binary.tar.gz", ("0" * 32,))
    monkeypatch.setenv("FASTNN_CIFAR10_MIRROR", base + "/kriz")
    with pytest.raises(D.DownloadError) as info:
        D.load_cifar10(tmp_path / "target")
    message = str(info.value)
    assert "could not download cifar-10-binary.tar.gz" in message
    assert f"MD5 mismatch: expected {'0' * 32}, got {hashlib.md5(archive).hexdigest()}" in message
    assert "Put the CIFAR-10 binary batches" in message and str(tmp_path / "target") in message
    assert list((tmp_path / "target").iterdir()) == []


@pytest.mark.parametrize("bad_member, reason", [
    ("/tmp/evil.bin", "an absolute path"),
    ("cifar-10-batches-bin/../../evil.bin", "a '..' component"),
    ("../evil.bin", "a '..' component"),
])
def test_unsafe_archive_members_refuse_the_archive(cifar_files, server, tmp_path, monkeypatch, bad_member, reason):
    base, root = server
    serve(root, tarball(official_layout(cifar_files) + [(bad_member, b"x")]), monkeypatch)
    monkeypatch.setenv("FASTNN_CIFAR10_MIRROR", base + "/kriz")
    target = tmp_path / "deep" / "target"
    with pytest.raises(D.DownloadError, match=rf"could not unpack .*cifar-10-binary\.tar\.gz: refusing the "
                                              rf"archive: member '{bad_member}' has {reason}"):
        D.load_cifar10(target)
    assert list(target.iterdir()) == []  # nothing unpacked, tarball removed
    assert not (tmp_path / "deep" / "evil.bin").exists() and not (tmp_path / "evil.bin").exists()


def test_links_and_incomplete_archives_are_refused(cifar_files, server, tmp_path, monkeypatch):
    base, root = server
    monkeypatch.setenv("FASTNN_CIFAR10_MIRROR", base + "/kriz")
    serve(root, tarball(official_layout(cifar_files) + [("cifar-10-batches-bin/link", ("symlink", "/etc/passwd"))]),
          monkeypatch)
    with pytest.raises(D.DownloadError, match=r"member 'cifar-10-batches-bin/link' has a link or special file"):
        D.load_cifar10(tmp_path / "a")
    without_test = [m for m in official_layout(cifar_files) if not m[0].endswith("test_batch.bin")]
    serve(root, tarball(without_test), monkeypatch)
    with pytest.raises(D.DownloadError, match=r"the archive lacks cifar-10-batches-bin/test_batch\.bin"):
        D.load_cifar10(tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


def test_published_checksum_is_well_formed():
    assert D.CIFAR10_MD5 == {"cifar-10-binary.tar.gz": ("c32a1d4ab5d03f1284b67883e8d87530",)}
    assert D.CIFAR10_MIRRORS == ["https://www.cs.toronto.edu/~kriz/"]


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST from Debian's package

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    (x_train, y_train), (x_test, y_test) = D.load_fashion_mnist(DEBIAN_FASHION, download=False)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28) and x_train.dtype == np.uint8
    assert np.array_equal(np.bincount(y_train), [6000] * 10) and np.array_equal(np.bincount(y_test), [1000] * 10)
    assert y_train[:5].tolist() == [9, 0, 0, 3, 0] and y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert 70 < x_train.mean() < 75  # about 72.9: mostly dark background
    # found there without a path as well (after $FASTNN_DATA, before the cache)
    assert np.array_equal(D.load_fashion_mnist(download=False)[1][1], y_test)
