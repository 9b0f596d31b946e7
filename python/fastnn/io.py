"""save/load of state dicts in the safetensors format, written by our own code (no dependency).

A safetensors file is: 8 bytes, the little-endian unsigned length N of the header; N bytes of
UTF-8 JSON, an object mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
plus an optional "__metadata__" object of string -> string; then the byte buffer, each tensor's
raw little-endian C-order bytes at its offsets (relative to the buffer's start). The header is
padded with spaces so the buffer starts at a multiple of 8 bytes.

Saving writes a temporary file in the target's directory, flushes and fsyncs it, then renames it
onto the target (and fsyncs the directory), so a crash leaves either the old file or the new one.
Tensors are written largest item size first, then by name, so every tensor is aligned to its item
size in the file (readers that map the file can use it in place).

Loading parses JSON only (no pickle: nothing in the file is executed) and checks everything before
it reads a byte of data: every format error is a ValueError naming the file and the fault. The
policy is the reference implementation's, strict: the tensors' byte ranges must tile the buffer
exactly, from 0 to the end of the file, without gaps, overlaps or trailing bytes.
"""
from __future__ import annotations

import json
import math
import os
import secrets

import numpy as np

__all__ = ["save", "load", "load_metadata", "save_model", "load_model"]

# safetensors dtype name <-> numpy dtype (stored little-endian)
_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {(dtype.kind, dtype.itemsize): name for name, dtype in _DTYPES.items()}
# Formats numpy has no dtype for. BF16 is read as float32 (exact: a bfloat16 is the top half of a
# float32); the others are refused with a message that says so.
_UNSUPPORTED = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "C128"}

_MAX_HEADER = 100 * 2 ** 20  # the reference implementation's limit: a header is never this large
_MAX_DIM = 2 ** 62           # larger sizes cannot be numpy shapes
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_CHUNK = 64 * 2 ** 20        # bytes written per call, so a huge array is not copied in one piece


# ---------------------------------------------------------------------------------------------
# save

def _as_array(name, value) -> np.ndarray:
    from fastnn._tensor import Tensor  # here, so this module imports without the extension
    if isinstance(value, Tensor):
        value = value.data  # parameters require grad; their data is what gets saved
    if not isinstance(value, (np.ndarray, np.generic)):
        raise TypeError(f"save: state_dict[{name!r}] must be a numpy array or a fastnn Tensor, "
                        f"got {type(value).__name__}")
    array = np.asarray(value)
    if (array.dtype.kind, array.dtype.itemsize) not in _NAMES:
        raise TypeError(f"save: state_dict[{name!r}] has dtype {array.dtype}, which safetensors cannot "
                        f"hold; expected one of float16/32/64, int8/16/32/64, uint8/16/32/64 or bool")
    # C order, little-endian (a copy only when the array is not so already)
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")


def _header_bytes(arrays: dict, metadata) -> bytes:
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, array in arrays.items():
        header[name] = {"dtype": _NAMES[array.dtype.kind, array.dtype.itemsize],
                        "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return text + b" " * (-len(text) % 8)


def _write_array(file, array: np.ndarray) -> None:
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _CHUNK):
        file.write(flat[start:start + _CHUNK].data)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable. POSIX only: Windows cannot open a directory.
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support it; the data itself was synced
    finally:
        os.close(fd)


def save(state_dict, path, metadata=None) -> None:
    """Write state_dict (name -> numpy array or Tensor) to path in the safetensors format.

    metadata, when given, is a dict of str -> str stored in the header's "__metadata__" (read it
    back with load_metadata). The write is atomic: the previous file at path stays intact until
    the new one is complete on disk.
    """
    if not hasattr(state_dict, "items"):
        raise TypeError(f"save: state_dict must be a dict of name -> array, got {type(state_dict).__name__}")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"save: metadata must be a dict of str -> str, got {metadata!r:.200}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save: state_dict keys must be str, got {name!r} ({type(name).__name__})")
        if name == "__metadata__":
            raise ValueError("save: '__metadata__' is reserved by the format and cannot name a tensor; "
                             "pass metadata=... instead")
        arrays[name] = _as_array(name, value)
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    arrays = {name: arrays[name] for name in order}
    header = _header_bytes(arrays, metadata)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:  # a fresh name beside the target; 0o666 lets the umask decide the mode, as open() does
        temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(len(header).to_bytes(8, "little"))
            file.write(header)
            for array in arrays.values():
                _write_array(file, array)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


# ---------------------------------------------------------------------------------------------
# load

def _reject_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _FormatError(f"duplicate key {key!r} in the header")
        result[key] = value
    return result


def _reject_constant(token):
    raise _FormatError(f"the header holds {token}, which is not valid JSON")


class _FormatError(Exception):
    """A fault in the file; load turns it into ValueError naming the file."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_header(file, size: int):
    """Parse and check the header; returns (metadata, entries, buffer_start) where entries is a
    list of (name, dtype name, shape, begin, end) sorted by begin."""
    if size < 8:
        raise _FormatError(f"the file has {size} bytes, fewer than the 8 of the header length; "
                           f"it is truncated or not a safetensors file")
    n = int.from_bytes(file.read(8), "little")
    if n > size - 8:
        raise _FormatError(f"the header length is {n} bytes but the file has only {size - 8} after it; "
                           f"the file is truncated or not a safetensors file")
    if n > _MAX_HEADER:
        raise _FormatError(f"the header length is {n} bytes, more than the limit of {_MAX_HEADER}")
    raw = file.read(n)
    if len(raw) != n:
        raise _FormatError(f"could read only {len(raw)} of the header's {n} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _FormatError(f"the header is not valid UTF-8 ({error})") from None
    if not text.startswith("{"):
        raise _FormatError("the header does not start with '{'; not a safetensors file")
    try:
        header = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise _FormatError(f"the header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise _FormatError("the header is not a JSON object")

    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise _FormatError(f"'__metadata__' must map strings to strings, got {metadata!r:.200}")

    entries = []
    for name, info in header.items():
        where = f"tensor {name!r}"
        if not isinstance(info, dict):
            raise _FormatError(f"{where}: expected an object with dtype, shape and data_offsets, got {info!r:.100}")
        if set(info) != _ENTRY_KEYS:
            missing, extra = _ENTRY_KEYS - set(info), set(info) - _ENTRY_KEYS
            raise _FormatError(f"{where}: expected the keys dtype, shape and data_offsets"
                               + (f"; missing {sorted(missing)}" if missing else "")
                               + (f"; unknown {sorted(extra)}" if extra else ""))
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype in _UNSUPPORTED:
            raise _FormatError(f"{where}: dtype {dtype} has no numpy equivalent; fastnn cannot load it")
        if dtype not in _DTYPES and dtype != "BF16":
            raise _FormatError(f"{where}: unknown dtype {dtype!r}; expected one of "
                               f"{', '.join(sorted(_DTYPES) + ['BF16'])}")
        if not (isinstance(shape, list) and all(_is_int(d) and 0 <= d <= _MAX_DIM for d in shape)):
            raise _FormatError(f"{where}: shape must be a list of non-negative ints, got {shape!r:.100}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _FormatError(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                               f"got {offsets!r:.100}")
        begin, end = offsets
        itemsize = 2 if dtype == "BF16" else _DTYPES[dtype].itemsize
        expected = math.prod(shape) * itemsize
        if end - begin != expected:
            raise _FormatError(f"{where}: shape {tuple(shape)} of {dtype} needs {expected} bytes but "
                               f"data_offsets {offsets} hold {end - begin}")
        entries.append((name, dtype, tuple(shape), begin, end))

    buffer_start = 8 + n
    buffer_size = size - buffer_start
    entries.sort(key=lambda e: (e[3], e[4]))
    position, previous = 0, None
    for name, _, _, begin, end in entries:
        if end > buffer_size:
            raise _FormatError(f"tensor {name!r}: data_offsets [{begin}, {end}] run past the end of the "
                               f"data ({buffer_size} bytes); the file is truncated")
        if begin < position:
            raise _FormatError(f"tensor {name!r}: data_offsets [{begin}, {end}] overlap those of {previous!r}")
        if begin > position:
            raise _FormatError(f"tensor {name!r}: data_offsets start at {begin}, leaving a gap of "
                               f"{begin - position} unused bytes after {position}")
        position, previous = end, name
    if position != buffer_size:
        raise _FormatError(f"{buffer_size - position} trailing bytes after the last tensor's data "
                           f"(the tensors end at {position} of {buffer_size}); the file is damaged")
    return metadata, entries, buffer_start


def _read_array(file, dtype: str, shape: tuple) -> np.ndarray:
    stored = np.dtype("<u2") if dtype == "BF16" else _DTYPES[dtype]
    try:
        array = np.empty(shape, dtype=stored)
    except (ValueError, MemoryError) as error:
        raise _FormatError(f"cannot allocate an array of shape {shape} ({error})") from None
    view = array.reshape(-1).view(np.uint8)
    done = 0
    while done < view.size:
        count = file.readinto(view[done:done + _CHUNK].data)
        if not count:
            raise _FormatError("the file ended before its data did (it changed while being read?)")
        done += count
    if dtype == "BOOL" and view.size and view.max() > 1:
        raise _FormatError("a BOOL tensor holds bytes other than 0 and 1")
    if dtype == "BF16":
        widened = np.empty(shape, dtype=np.float32)
        bits = widened.view(np.uint32)
        bits[...] = array
        bits <<= 16
        return widened
    if not stored.isnative:
        array = array.astype(stored.newbyteorder("="))
    return array


def _open_checked(path):
    path = os.fspath(path)
    file = open(path, "rb")
    try:
        size = os.fstat(file.fileno()).st_size
        return path, file, _read_header(file, size)
    except _FormatError as error:
        file.close()
        raise ValueError(f"load: {path!r} is not a valid safetensors file: {error}") from None
    except BaseException:
        file.close()
        raise


def load(path, return_metadata: bool = False):
    """Read a safetensors file: a dict name -> numpy array (C-contiguous, writable, own memory),
    in the file's order of data. With return_metadata=True, returns (tensors, metadata), metadata
    being the header's "__metadata__" dict (empty when absent). BF16 tensors load as float32.

    Raises ValueError, naming the file and the fault, for any malformed, truncated or inconsistent file.
    """
    path, file, (metadata, entries, start) = _open_checked(path)
    with file:
        file.seek(start)
        tensors = {}
        try:
            for name, dtype, shape, _, _ in entries:
                tensors[name] = _read_array(file, dtype, shape)
        except _FormatError as error:
            raise ValueError(f"load: {path!r}: tensor {name!r}: {error}") from None
    return (tensors, dict(metadata or {})) if return_metadata else tensors


def load_metadata(path) -> dict:
    """The header's "__metadata__" dict of a safetensors file (empty when absent), reading no data."""
    _, file, (metadata, _, _) = _open_checked(path)
    file.close()
    return dict(metadata or {})


# ---------------------------------------------------------------------------------------------
# whole models: the architecture as JSON in the metadata, the weights as the tensors

_ARCHITECTURE_KEY = "fastnn.architecture"


def save_model(model, path, metadata=None) -> None:
    """Save a model that can describe itself (`get_config()`, as Sequential of built-in layers
    does) in one safetensors file: its state dict as the tensors, and {"class_name", "config"}
    as JSON under the metadata key "fastnn.architecture". Same atomic write as save()."""
    if not callable(getattr(model, "get_config", None)) or not callable(getattr(model, "state_dict", None)):
        raise TypeError(f"save_model: expected a fastnn.nn.Module such as Sequential, got {type(model).__name__}")
    try:
        config = model.get_config()
    except NotImplementedError as error:
        raise TypeError(f"save_model: {error}; save the weights with fastnn.save(model.state_dict(), path) "
                        f"and rebuild the model in code") from None
    try:
        architecture = json.dumps({"class_name": type(model).__name__, "config": config}, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"save_model: {type(model).__name__}.get_config() must return plain JSON values "
                        f"(dict, list, str, finite numbers, bool, None): {error}") from None
    extra = dict(metadata or {})
    if _ARCHITECTURE_KEY in extra:
        raise ValueError(f"save_model: metadata key {_ARCHITECTURE_KEY!r} is reserved for the architecture")
    extra[_ARCHITECTURE_KEY] = architecture
    save(model.state_dict(), path, metadata=extra)


def load_model(path, custom_objects=None):
    """Rebuild a model saved by save_model / model.save: the class from the JSON architecture
    (Sequential and the layers of fastnn.nn, or classes in custom_objects), then its weights
    (strict: every key, every shape). Nothing in the file is executed."""
    from fastnn import nn
    tensors, metadata = load(path, return_metadata=True)
    if _ARCHITECTURE_KEY not in metadata:
        raise ValueError(f"load_model: {path!r} holds weights but no architecture (it was written by "
                         f"fastnn.save, not model.save); build the model in code and call "
                         f"model.load_state_dict(fastnn.load(path))")
    try:
        architecture = json.loads(metadata[_ARCHITECTURE_KEY])
        class_name, config = architecture["class_name"], architecture["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"load_model: {path!r}: malformed architecture JSON ({error})") from None
    if not isinstance(class_name, str) or not isinstance(config, dict):
        raise ValueError(f"load_model: {path!r}: malformed architecture: expected a str class_name and an "
                         f"object config, got {class_name!r:.100} and {type(config).__name__}")
    classes = dict(custom_objects or {})
    model_class = classes.get(class_name)
    if model_class is None and not class_name.startswith("_"):
        model_class = getattr(nn, class_name, None)  # public names of fastnn.nn only
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        raise ValueError(f"load_model: {path!r}: unknown model class {class_name!r}; pass "
                         f"custom_objects={{{class_name!r}: TheClass}}")
    # A tampered or foreign config makes the constructors fail in many ways: all are a bad file.
    try:
        if issubclass(model_class, nn.Sequential):
            model = model_class.from_config(config, custom_objects=custom_objects)
        else:
            model = model_class.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        raise ValueError(f"load_model: {path!r}: cannot rebuild the {class_name} its architecture describes "
                         f"({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except ValueError as error:
        raise ValueError(f"load_model: {path!r}: the weights do not fit the architecture: {error}") from None
    return model
