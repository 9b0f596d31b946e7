"""Standard data sets: MNIST and Fashion-MNIST, read from their IDX files, and CIFAR-10 from
its binary batches.

    (x_train, y_train), (x_test, y_test) = fastnn.datasets.load_mnist()

IDX format (LeCun's): a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order, big-endian. MNIST
images are magic 2051 (0x00000803: unsigned bytes, 3 dimensions), labels 2049 (0x00000801).
`read_idx` reads any IDX file, gzipped or not (told apart by the gzip signature, not the name),
and checks the header and that the byte length is exactly what the header announces.

Where the files are looked for (DESIGN.md, "Data sets"), first match wins:
  1. `path`, when given (the directory holding the four files, or its `mnist` subdirectory);
  2. `$FASTNN_DATA` and `$FASTNN_DATA/mnist`;
  3. the cache, `$XDG_CACHE_HOME/fastnn/mnist` (by default `~/.cache/fastnn/mnist`).
Each file may be there as `name` or `name.gz`. When a file is missing everywhere and
download=True, it is downloaded into `path` (when given) or into the cache, from the mirrors in
`MNIST_MIRRORS` (or the comma-separated base URLs in `$FASTNN_MNIST_MIRROR`), with a progress
line on stderr. The download is written to a temporary file, its SHA-256 compared with the
known digests in `MNIST_SHA256`, and only then renamed into place. Any failure raises
DownloadError saying where to put the files by hand.

Checksums. `MNIST_SHA256` accepts two digests per file: that of the files the mirrors serve,
and that of the gzip re-compression of the same bytes kept in this project's shared data
directory (`../shared/data/mnist/SHA256SUMS`); both decompress to identical IDX files.
Files found on disk are not hashed; they are validated structurally as they are read.

Fashion-MNIST works the same way with the subdirectory `fashion-mnist`, also looks in
`/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist` package), and downloads
from `FASHION_MNIST_MIRRORS` (or `$FASTNN_FASHION_MNIST_MIRROR`), checked against
`FASHION_MNIST_SHA256` (the digests published with the data set).

CIFAR-10 (`load_cifar10`) reads the "binary version": the folder `cifar-10-batches-bin` holding
`data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`, each a sequence of 3073-byte
records (1 label byte, then the 32x32 red, green and blue planes, row-major), 10000 per file. It
is looked for in `path` (that folder or its parent), `$FASTNN_DATA/cifar-10-batches-bin`, then
the cache. The download is the one official tarball `cifar-10-binary.tar.gz` from
`CIFAR10_MIRRORS` (or `$FASTNN_CIFAR10_MIRROR`); its publisher gives an MD5, not a SHA-256, so it
is checked against `CIFAR10_MD5` (a dict, like the SHA-256 tables, that tests may patch). The
tarball is then unpacked member by member into a temporary folder (absolute paths, '..'
components, links and special files refuse the whole archive), the six batches moved into
place, and the tarball deleted.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar10", "read_idx", "cache_dir", "DownloadError",
           "MNIST_MIRRORS", "MNIST_SHA256", "FASHION_MNIST_MIRRORS", "FASHION_MNIST_SHA256",
           "CIFAR10_MIRRORS", "CIFAR10_MD5", "CIFAR10_CLASSES"]

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                   "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64"),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                   "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e"),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                                  "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341"),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                                  "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6"),
}

FASHION_MNIST_MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]

FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",),
    "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",),
    "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",),
    "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",),
}

CIFAR10_MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]

CIFAR10_MD5 = {"cifar-10-binary.tar.gz": ("c32a1d4ab5d03f1284b67883e8d87530",)}  # as published

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The four files of an MNIST-like data set, in the order load_* returns them.
_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

DOWNLOAD_TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 256 * 2 ** 20  # far above any file here; stops a runaway response

# IDX type code -> numpy dtype (big-endian where it matters)
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DownloadError(OSError):
    """A data set file could not be downloaded (network failure, HTTP error, checksum mismatch)."""


# ---------------------------------------------------------------------------------------------
# IDX reader

def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = _IDX_TYPES.get(code)
    if magic >> 16 or kind is None:
        return f"{magic} (0x{magic:08x}, not an IDX header)"
    return f"{magic} (0x{magic:08x}: {kind.name} values, {ndim} dimension{'s' if ndim != 1 else ''})"


def _read_exactly(stream, buffer: memoryview) -> int:
    """Fill buffer from stream; return how many bytes were read (less at end of file)."""
    filled = 0
    while filled < len(buffer):
        n = stream.readinto(buffer[filled:])
        if not n:
            break
        filled += n
    return filled


def read_idx(path, expected_magic: int | None = None, expected_shape: tuple | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array.

    expected_magic: the magic number the file must carry (2051 for MNIST images, 2049 for labels).
    expected_shape: the dimensions it must have, None for any size along an axis.
    Raises ValueError naming the file, what was expected and what was found, for a wrong magic
    number, wrong dimensions, a byte length other than the header's, or corrupt gzip data.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        where = f"{path}{' (after decompression)' if compressed else ''}"
        try:
            return _read_idx_stream(stream, path, where, expected_magic, expected_shape)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise ValueError(f"{path}: corrupt gzip data ({error}); the file is damaged or truncated: "
                             f"delete it and fetch it again") from None


def _read_idx_stream(stream, path: Path, where: str, expected_magic, expected_shape) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4:
        raise ValueError(f"{where}: too short for an IDX header: expected at least 4 bytes, found {len(head)}")
    magic = int.from_bytes(head, "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: wrong magic number: expected {_describe_magic(expected_magic)}, found "
                         f"{_describe_magic(magic)}; is this the right file?")
    code, ndim = head[2], head[3]
    if head[0] or head[1] or code not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file: found magic number {_describe_magic(magic)}")
    dtype = _IDX_TYPES[code]
    dims_bytes = stream.read(4 * ndim)
    header_size = 4 + 4 * ndim
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(f"{where}: truncated header: expected {header_size} bytes for {ndim} dimensions, "
                         f"found {4 + len(dims_bytes)} bytes in the whole file")
    shape = tuple(int.from_bytes(dims_bytes[4 * i:4 * i + 4], "big") for i in range(ndim))
    if expected_shape is not None:
        ok = len(shape) == len(expected_shape) and all(e is None or e == s for e, s in zip(expected_shape, shape))
        if not ok:
            wanted = "(" + ", ".join("any" if e is None else str(e) for e in expected_shape) + \
                     ("," if len(expected_shape) == 1 else "") + ")"
            raise ValueError(f"{path}: wrong dimensions in the header: expected {wanted}, found {shape}")
    data_size = math.prod(shape) * dtype.itemsize
    expected_total = header_size + data_size
    if data_size > 2 ** 40:
        raise ValueError(f"{path}: the header announces dimensions {shape} ({data_size} bytes); "
                         f"not a plausible IDX file")
    array = np.empty(shape, dtype=dtype)
    got = _read_exactly(stream, memoryview(array.reshape(-1).view(np.uint8)))
    if got < data_size:
        raise ValueError(f"{where}: truncated: expected {expected_total} bytes ({header_size}-byte header + "
                         f"{data_size} bytes of data for dimensions {shape}), found {header_size + got}; "
                         f"delete the file and fetch it again")
    extra = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        extra += len(chunk)
    if extra:
        raise ValueError(f"{where}: wrong length: expected {expected_total} bytes ({header_size}-byte header + "
                         f"{data_size} bytes of data for dimensions {shape}), found {expected_total + extra} "
                         f"({extra} bytes too many); is this the right file?")
    if not dtype.isnative and dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


# ---------------------------------------------------------------------------------------------
# locations

def cache_dir() -> Path:
    """fastnn's download cache: `$XDG_CACHE_HOME/fastnn`, by default `~/.cache/fastnn`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastnn"


def _find(directory: Path) -> dict | None:
    """{name: path} when directory holds all four files (raw preferred over .gz), else None."""
    found = {}
    for name in _FILES:
        for candidate in (directory / name, directory / (name + ".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _mirrors(env_var: str, default: list) -> list:
    value = os.environ.get(env_var, "").strip()
    if value:
        return [m for m in value.replace(",", " ").split() if m]
    return list(default)


class _Spec:
    def __init__(self, title, function, subdir, env_mirror, mirrors_attr, sha_attr, also_here, data_dirs_self):
        self.title = title
        self.function = function
        self.subdir = subdir
        self.env_mirror = env_mirror
        self.mirrors_attr = mirrors_attr
        self.sha_attr = sha_attr
        self.also_here = also_here            # extra directories searched when no path is given
        self.data_dirs_self = data_dirs_self  # may $FASTNN_DATA itself hold the files?


_MNIST = _Spec("MNIST", "load_mnist", "mnist", "FASTNN_MNIST_MIRROR", "MNIST_MIRRORS", "MNIST_SHA256",
               (), True)
_FASHION = _Spec("Fashion-MNIST", "load_fashion_mnist", "fashion-mnist", "FASTNN_FASHION_MNIST_MIRROR",
                 "FASHION_MNIST_MIRRORS", "FASHION_MNIST_SHA256",
                 (Path("/usr/share/datasets/fashion-mnist"),), False)


def _where_to_put(spec: _Spec, target: Path) -> str:
    names = ", ".join(n + ".gz" for n in _FILES)
    env = (f"$FASTNN_DATA (or its '{spec.subdir}' subdirectory)" if spec.data_dirs_self
           else f"$FASTNN_DATA/{spec.subdir}")
    return (f"Put the four {spec.title} files ({names}; gzipped or not) in {target}, or in {env}, "
            f"or pass their directory as {spec.function}(path=...).")


def _resolve(spec: _Spec, path, download: bool) -> dict:
    if path is not None:
        root = Path(os.fspath(path)).expanduser()
        candidates, target = [root, root / spec.subdir], root
    else:
        candidates = []
        env = os.environ.get("FASTNN_DATA")
        if env:
            env_dir = Path(env).expanduser()
            candidates += ([env_dir] if spec.data_dirs_self else []) + [env_dir / spec.subdir]
        candidates += list(spec.also_here)
        target = cache_dir() / spec.subdir
        candidates.append(target)
    for directory in candidates:
        found = _find(directory)
        if found is not None:
            return found
    if not download:
        searched = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"{spec.function}: the {spec.title} files were not found (looked in {searched}) "
                                f"and download=False. {_where_to_put(spec, target)}")
    module = sys.modules[__name__]
    mirrors = _mirrors(spec.env_mirror, getattr(module, spec.mirrors_attr))
    digests = getattr(module, spec.sha_attr)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{spec.function}: cannot create the directory {target} to download "
                            f"{spec.title} into ({error}). {_where_to_put(spec, target)}") from None
    for name in _FILES:
        if (target / name).is_file() or (target / (name + ".gz")).is_file():
            continue
        _download(spec, name + ".gz", target, mirrors, digests.get(name + ".gz", ()))
    return _find(target)


# ---------------------------------------------------------------------------------------------
# download

def _download(spec: _Spec, filename: str, target: Path, mirrors: list, digests: tuple) -> None:
    if not mirrors:
        raise DownloadError(f"{spec.function}: {filename} is missing and no download mirror is configured. "
                            f"{_where_to_put(spec, target)}")
    failures = []
    for base in mirrors:
        url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", filename)
        try:
            _fetch(url, target / filename, digests)
            return
        except (OSError, ValueError, http.client.HTTPException) as error:  # URLError, HTTPError: OSErrors
            failures.append(f"  {url}: {error}")
    raise DownloadError(f"{spec.function}: could not download {filename}:\n" + "\n".join(failures) +
                        f"\n{_where_to_put(spec, target)}")


_DIGEST_NAMES = {"sha256": "SHA-256", "md5": "MD5"}


def _new_hash(algorithm: str):
    if algorithm == "md5":  # a checksum here, not security; allowed on FIPS systems this way
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(algorithm)


def _fetch(url: str, destination: Path, digests: tuple, algorithm: str = "sha256") -> None:
    """Download url to destination through a temporary file; check its digest (SHA-256 unless
    told otherwise) against `digests` (any of them; none: unchecked) before renaming."""
    fd, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"the server announces {total} bytes, more than the limit of {MAX_DOWNLOAD_BYTES}")
            progress = _Progress(destination.name, url, total)
            sha = _new_hash(algorithm)
            done = 0
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                done += len(chunk)
                if done > MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"the response exceeds the limit of {MAX_DOWNLOAD_BYTES} bytes")
                sha.update(chunk)
                out.write(chunk)
                progress.update(done)
            progress.finish(done)
            if total is not None and done != total:
                raise ValueError(f"incomplete download: expected {total} bytes, received {done}")
        digest = sha.hexdigest()
        if digests and digest not in digests:
            raise ValueError(f"{_DIGEST_NAMES.get(algorithm, algorithm)} mismatch: expected "
                             f"{' or '.join(digests)}, got {digest} "
                             f"(a damaged or different file)")
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class _Progress:
    """One progress line on stderr: redrawn in place on a terminal, start and end lines otherwise."""

    def __init__(self, name: str, url: str, total: int | None):
        self.name, self.total = name, total
        self.live = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.last = 0.0
        host = urllib.parse.urlsplit(url).netloc or url
        self.prefix = f"downloading {name} from {host}"
        if not self.live:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            print(f"{self.prefix}{size} ...", file=sys.stderr, flush=True)

    def _line(self, done: int) -> str:
        if self.total:
            return f"\r{self.prefix}: {done / 1e6:5.1f} / {self.total / 1e6:.1f} MB ({100 * done / self.total:3.0f}%)"
        return f"\r{self.prefix}: {done / 1e6:5.1f} MB"

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.live and now - self.last >= 0.1:
            self.last = now
            sys.stderr.write(self._line(done))
            sys.stderr.flush()

    def finish(self, done: int) -> None:
        if self.live:
            sys.stderr.write(self._line(done) + "\n")
        else:
            sys.stderr.write(f"{self.prefix}: done, {done / 1e6:.1f} MB\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# loaders

def _load(spec: _Spec, path, download: bool, num_classes: int = 10):
    files = _resolve(spec, path, download)
    arrays = {}
    for name in _FILES:
        if "images" in name:
            arrays[name] = read_idx(files[name], IMAGES_MAGIC, (None, 28, 28))
        else:
            arrays[name] = read_idx(files[name], LABELS_MAGIC, (None,))
    result = []
    for split, count in (("train", 60000), ("t10k", 10000)):
        images_name, labels_name = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
        images, labels = arrays[images_name], arrays[labels_name]
        if len(images) != len(labels):
            raise ValueError(f"{files[images_name]} holds {len(images)} images but {files[labels_name]} holds "
                             f"{len(labels)} labels; expected the same count ({count})")
        if len(images) != count:
            raise ValueError(f"{files[images_name]}: expected {count} {spec.title} images, found {len(images)}; "
                             f"is this the right file?")
        if labels.size and labels.max() >= num_classes:
            raise ValueError(f"{files[labels_name]}: expected labels in 0..{num_classes - 1}, found "
                             f"{int(labels.max())}")
        result.append((images, labels))
    return tuple(result)


def load_mnist(path=None, download: bool = True):
    """MNIST as `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shapes (60000, 28, 28),
    (60000,), (10000, 28, 28), (10000,); pixels 0..255, labels 0..9.

    path: a directory holding the four IDX files (gzipped or not), or its parent when they sit in
    an `mnist` subdirectory. Without it: $FASTNN_DATA, then the cache (see the module docstring).
    download: fetch missing files from the mirrors (into path, or the cache).
    """
    return _load(_MNIST, path, download)


def load_fashion_mnist(path=None, download: bool = True):
    """Fashion-MNIST (Zalando), same layout and return value as load_mnist; labels 0..9 are
    T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.

    Without path: $FASTNN_DATA/fashion-mnist, /usr/share/datasets/fashion-mnist, then the cache.
    """
    return _load(_FASHION, path, download)


# ---------------------------------------------------------------------------------------------
# CIFAR-10

CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = ("test_batch.bin",)
_CIFAR10_EXTRAS = ("batches.meta.txt", "readme.html")  # also unpacked when in the archive
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes of 32x32


def _cifar10_where_to_put(target: Path) -> str:
    return (f"Put the CIFAR-10 binary batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin: "
            f"the {CIFAR10_DIR} folder of {CIFAR10_ARCHIVE}) in {target / CIFAR10_DIR}, or in "
            f"$FASTNN_DATA/{CIFAR10_DIR}, or pass their folder as load_cifar10(path=...).")


def _cifar10_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in CIFAR10_TRAIN + CIFAR10_TEST)


def _resolve_cifar10(path, download: bool) -> Path:
    """The folder holding the six batches: found, or downloaded into `target`."""
    if path is not None:
        root = Path(os.fspath(path)).expanduser()
        candidates, target = [root, root / CIFAR10_DIR], root
    else:
        candidates = []
        env = os.environ.get("FASTNN_DATA")
        if env:
            candidates.append(Path(env).expanduser() / CIFAR10_DIR)
        target = cache_dir()
        candidates.append(target / CIFAR10_DIR)
    for directory in candidates:
        if _cifar10_complete(directory):
            return directory
    if not download:
        searched = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"load_cifar10: the CIFAR-10 files were not found (looked in {searched}) and "
                                f"download=False. {_cifar10_where_to_put(target)}")
    _download_cifar10(target)
    return target / CIFAR10_DIR


def _download_cifar10(target: Path) -> None:
    """Fetch the tarball into target, check its MD5, unpack the batches into target/CIFAR10_DIR."""
    mirrors = _mirrors("FASTNN_CIFAR10_MIRROR", CIFAR10_MIRRORS)
    if not mirrors:
        raise DownloadError(f"load_cifar10: the CIFAR-10 files are missing and no download mirror is configured. "
                            f"{_cifar10_where_to_put(target)}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"load_cifar10: cannot create the directory {target} to download CIFAR-10 into "
                            f"({error}). {_cifar10_where_to_put(target)}") from None
    archive = target / CIFAR10_ARCHIVE
    digests = CIFAR10_MD5.get(CIFAR10_ARCHIVE, ())
    failures = []
    for base in mirrors:
        url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", CIFAR10_ARCHIVE)
        try:
            _fetch(url, archive, digests, algorithm="md5")
            break
        except (OSError, ValueError, http.client.HTTPException) as error:
            failures.append(f"  {url}: {error}")
    else:
        raise DownloadError(f"load_cifar10: could not download {CIFAR10_ARCHIVE}:\n" + "\n".join(failures) +
                            f"\n{_cifar10_where_to_put(target)}")
    try:
        _unpack_cifar10(archive, target)
    except (OSError, tarfile.TarError, EOFError, zlib.error, ValueError) as error:
        raise DownloadError(f"load_cifar10: could not unpack {archive}: {error}. "
                            f"{_cifar10_where_to_put(target)}") from None
    finally:
        archive.unlink(missing_ok=True)


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be extracted, or None when it is a plain file or directory
    with a relative path inside the archive's root."""
    name = member.name
    if name.startswith(("/", "\\")) or (name[:1].isalpha() and name[1:2] == ":"):
        return "an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "a '..' component"
    if not (member.isreg() or member.isdir()):
        return "a link or special file"
    return None


def _unpack_cifar10(archive: Path, target: Path) -> None:
    """Unpack the CIFAR-10 files of archive into target/CIFAR10_DIR through a temporary folder.

    The archive is read once as a stream; every member is checked (_unsafe_member) and any unsafe
    one refuses the whole archive. Only the known file names under CIFAR10_DIR/ are written, by
    this code, under names it chooses; the rest (directories) is skipped.
    """
    wanted = set(CIFAR10_TRAIN + CIFAR10_TEST + _CIFAR10_EXTRAS)
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-unpack.", dir=target))
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                reason = _unsafe_member(member)
                if reason is not None:
                    raise ValueError(f"refusing the archive: member {member.name!r} has {reason}")
                parts = [p for p in member.name.replace("\\", "/").split("/") if p not in ("", ".")]
                if member.isreg() and len(parts) == 2 and parts[0] == CIFAR10_DIR and parts[1] in wanted:
                    source = tar.extractfile(member)
                    with source, open(staging / parts[1], "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
        missing = [n for n in CIFAR10_TRAIN + CIFAR10_TEST if not (staging / n).is_file()]
        if missing:
            raise ValueError(f"the archive lacks {', '.join(CIFAR10_DIR + '/' + n for n in missing)}; "
                             f"is it the binary version of CIFAR-10?")
        destination = target / CIFAR10_DIR
        destination.mkdir(exist_ok=True)
        for name in sorted(p.name for p in staging.iterdir()):
            os.replace(staging / name, destination / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_cifar10_batches(directory: Path, names: tuple, num_classes: int = 10):
    """(images uint8 (N, 3, 32, 32), labels uint8 (N,)) of the named batch files, in order."""
    records = []
    for name in names:
        file = directory / name
        size = file.stat().st_size
        if size == 0 or size % CIFAR10_RECORD:
            whole, rest = divmod(size, CIFAR10_RECORD)
            detail = "an empty file" if size == 0 else f"{whole} whole records and {rest} bytes more"
            raise ValueError(f"{file}: wrong length: a CIFAR-10 batch is a non-empty sequence of "
                             f"{CIFAR10_RECORD}-byte records (1 label byte + 3x32x32 pixel bytes), 10000 "
                             f"per file; found {size} bytes ({detail}); the file is truncated or not a "
                             f"CIFAR-10 binary batch: delete it and fetch it again")
        data = np.fromfile(file, dtype=np.uint8)
        if data.size != size:  # changed under us
            raise ValueError(f"{file}: expected {size} bytes, read {data.size}")
        batch = data.reshape(-1, CIFAR10_RECORD)
        bad = np.flatnonzero(batch[:, 0] >= num_classes)
        if bad.size:
            raise ValueError(f"{file}: record {int(bad[0])} has label {int(batch[bad[0], 0])}; expected labels "
                             f"in 0..{num_classes - 1}; is this the CIFAR-10 (not CIFAR-100) binary version?")
        records.append(batch)
    labels = np.concatenate([r[:, 0] for r in records])
    images = np.concatenate([r[:, 1:] for r in records]).reshape(-1, 3, 32, 32)
    return images, labels


def load_cifar10(path=None, download: bool = True):
    """CIFAR-10 as `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 3, 32, 32) (channels
    R, G, B; 50000 train, 10000 test in the official files) and uint8 labels (N,) in 0..9, naming
    CIFAR10_CLASSES (uint8 like load_mnist's; `.astype(np.int64)` where an index type is needed).

    path: the `cifar-10-batches-bin` folder of the binary version, or its parent. Without it:
    $FASTNN_DATA/cifar-10-batches-bin, then the cache (see the module docstring).
    download: when the files are missing, fetch and unpack the official tarball (into path, or the
    cache). Every file's length must be a whole number of 3073-byte records and every label < 10;
    the number of records per file is not fixed (10000 in the official files).
    """
    directory = _resolve_cifar10(path, download)
    train = _read_cifar10_batches(directory, CIFAR10_TRAIN)
    test = _read_cifar10_batches(directory, CIFAR10_TEST)
    return train, test
