"""fastnn.io: safetensors save/load — bit-exact round trips, atomic saves, every corruption rejected."""
import json
import os
import struct

import numpy as np
import pytest

import fastnn
from fastnn import io

DTYPES = ["float64", "float32", "float16", "int64", "int32", "int16", "int8",
          "uint64", "uint32", "uint16", "uint8", "bool"]
SHAPES = [(), (0,), (3, 0, 2), (1,), (7,), (3, 5), (2, 3, 5, 7)]


def random_array(dtype, shape, rng):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind == "f":  # every bit pattern, NaN payloads and infinities included
        bits = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
        return bits.view(dtype).reshape(shape)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def write_raw(path, header, data=b"", pad=True):
    """A file with the given header (dict or bytes) and data, for building corrupt files."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(text)) + text + data)
    return path


# ---------------------------------------------------------------------------------------------
# round trips

@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_bit_exact_for_every_dtype_and_shape(tmp_path, dtype):
    rng = np.random.default_rng(0)
    state = {f"t{i}": random_array(dtype, shape, rng) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "w.safetensors"
    io.save(state, path)
    loaded = io.load(path)
    assert set(loaded) == set(state)
    for name, array in state.items():
        got = loaded[name]
        assert got.dtype == array.dtype and got.shape == array.shape
        assert got.tobytes() == array.tobytes()
        assert got.flags.c_contiguous and got.flags.writeable and got.flags.owndata


def test_round_trip_mixed_dtypes_tensors_views_and_big_endian(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    state = {
        "weight": fastnn.tensor(base, requires_grad=True),  # a parameter: saved from its data
        "transposed": base.T,                                # not C-contiguous
        "strided": base[::2, 1::3],
        "big_endian": np.arange(5, dtype=">i4"),
        "flag": np.bool_(True),
        "scalar": np.float64(2.5),
        "ids": np.arange(11, dtype=np.int64),
        "bytes": np.arange(3, dtype=np.uint8),
        "name with spaces and ünïcode": np.ones(2, np.float16),
    }
    path = tmp_path / "mixed.safetensors"
    io.save(state, path)
    loaded = io.load(path)
    np.testing.assert_array_equal(loaded["weight"], base)
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["strided"], base[::2, 1::3])
    assert loaded["big_endian"].dtype == np.int32 and loaded["big_endian"].dtype.isnative
    np.testing.assert_array_equal(loaded["big_endian"], np.arange(5))
    assert loaded["flag"].shape == () and loaded["flag"].dtype == np.bool_ and loaded["flag"]
    assert loaded["scalar"].shape == () and loaded["scalar"] == 2.5
    assert loaded["name with spaces and ünïcode"].dtype == np.float16
    loaded["weight"][0, 0] = 99.0  # writable, and its own memory
    assert io.load(path)["weight"][0, 0] == base[0, 0]


def test_file_layout_follows_the_format(tmp_path):
    path = tmp_path / "layout.safetensors"
    io.save({"b": np.zeros(3, np.uint8), "a": np.ones((2, 2), np.float64)}, path, metadata={"format": "np"})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert (8 + n) % 8 == 0                                  # padded: the data starts 8-aligned
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"format": "np"}
    assert header["a"] == {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]}  # widest first
    assert header["b"] == {"dtype": "U8", "shape": [3], "data_offsets": [32, 35]}
    assert len(raw) == 8 + n + 35
    assert raw[8 + n:8 + n + 32] == np.ones(4, "<f8").tobytes()


def test_metadata_round_trip_and_empty_state_dict(tmp_path):
    path = tmp_path / "meta.safetensors"
    io.save({}, path, metadata={"arch": '{"layers": []}', "ünï": "cödé"})
    assert io.load(path) == {}
    assert io.load_metadata(path) == {"arch": '{"layers": []}', "ünï": "cödé"}
    tensors, metadata = io.load(path, return_metadata=True)
    assert tensors == {} and metadata["ünï"] == "cödé"
    io.save({"x": np.zeros(1)}, path)
    assert io.load_metadata(path) == {}


def test_bf16_loads_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, np.inf], np.float32)
    top_halves = (values.view(np.uint32) >> 16).astype("<u2")
    path = write_raw(tmp_path / "bf16.safetensors",
                     {"x": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}, top_halves.tobytes())
    got = io.load(path)["x"]
    assert got.dtype == np.float32 and got.flags.owndata
    np.testing.assert_array_equal(got, values)


# ---------------------------------------------------------------------------------------------
# bad inputs to save

@pytest.mark.parametrize("state, error, match", [
    ({"x": [1.0, 2.0]}, TypeError, "numpy array or a fastnn Tensor"),
    ({"x": np.array(["a"])}, TypeError, "dtype <U1"),
    ({"x": np.array([1j])}, TypeError, "complex128"),
    ({"x": np.array([object()])}, TypeError, "dtype object"),
    ({1: np.zeros(1)}, TypeError, "keys must be str"),
    ({"__metadata__": np.zeros(1)}, ValueError, "reserved"),
    ([np.zeros(1)], TypeError, "dict of name -> array"),
])
def test_save_rejects_bad_state_dicts_before_touching_the_file(tmp_path, state, error, match):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(error, match=match):
        io.save(state, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("metadata", [{"a": 1}, {1: "a"}, ["a"]])
def test_save_rejects_bad_metadata(tmp_path, metadata):
    with pytest.raises(TypeError, match="metadata must be a dict of str -> str"):
        io.save({"x": np.zeros(1)}, tmp_path / "m.safetensors", metadata=metadata)


# ---------------------------------------------------------------------------------------------
# atomic saves

def _previous(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    io.save({"w": np.arange(4, dtype=np.float32)}, path)
    return path, path.read_bytes()


def test_failing_rename_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)

    def crash(*args):
        raise OSError("simulated crash before the rename")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        io.save({"w": np.zeros(1000, np.float32)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_failure_mid_write_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)
    calls = []

    def write_then_fail(file, array):
        if calls:
            raise MemoryError("simulated failure while writing the second tensor")
        calls.append(array)
        file.write(array.tobytes())
    monkeypatch.setattr(io, "_write_array", write_then_fail)
    with pytest.raises(MemoryError, match="second tensor"):
        io.save({"a": np.zeros(10, np.float32), "b": np.ones(10, np.float32)}, path)
    assert calls, "the failure must come after part of the data was written"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_failing_fsync_keeps_previous_file(tmp_path, monkeypatch):
    path, before = _previous(tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save({"w": np.zeros(3, np.float32)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_save_replaces_existing_file_and_keeps_normal_permissions(tmp_path):
    path, _ = _previous(tmp_path)
    io.save({"w": np.full(2, 7, np.int8)}, path)
    np.testing.assert_array_equal(io.load(path)["w"], [7, 7])
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open(path, "w") would make it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


# ---------------------------------------------------------------------------------------------
# corrupt files: each fault is a ValueError naming the file and the fault

def good_entry(**change):
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    entry.update(change)
    return entry


CORRUPT = [
    # (name, header, data, pad, message)
    ("duplicate", b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                  b'"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"ab", True, "duplicate key 'x'"),
    ("not_utf8", b'{"\xff\xfe":1}', b"", True, "not valid UTF-8"),
    ("not_json", b'{"x": [1, 2', b"", True, "not valid JSON"),
    ("nan", b'{"x": NaN}', b"", True, "NaN"),
    ("not_object", b"[1, 2, 3]", b"", True, "does not start with"),
    ("json_string", b'{"x": "y"}', b"", True, "expected an object"),
    ("unknown_dtype", {"x": good_entry(dtype="F33")}, bytes(8), True, "unknown dtype 'F33'"),
    ("fp8", {"x": good_entry(dtype="F8_E4M3", shape=[8])}, bytes(8), True, "no numpy equivalent"),
    ("missing_key", {"x": {"dtype": "F32", "shape": [2]}}, bytes(8), True, "missing \\['data_offsets'\\]"),
    ("extra_key", {"x": good_entry(code="import os")}, bytes(8), True, "unknown \\['code'\\]"),
    ("negative_dim", {"x": good_entry(shape=[-2])}, bytes(8), True, "non-negative ints"),
    ("float_dim", {"x": good_entry(shape=[2.0])}, bytes(8), True, "non-negative ints"),
    ("bool_dim", {"x": good_entry(shape=[True, 2])}, bytes(8), True, "non-negative ints"),
    ("shape_mismatch", {"x": good_entry(shape=[3])}, bytes(8), True, "needs 12 bytes"),
    ("reversed_offsets", {"x": good_entry(data_offsets=[8, 0])}, bytes(8), True, "0 <= begin <= end"),
    ("three_offsets", {"x": good_entry(data_offsets=[0, 4, 8])}, bytes(8), True, "data_offsets must be"),
    ("out_of_range", {"x": good_entry(shape=[4], data_offsets=[0, 16])}, bytes(8), True, "run past the end"),
    ("overlap", {"x": good_entry(), "y": good_entry(data_offsets=[4, 12])}, bytes(12), True, "overlap"),
    ("gap", {"x": good_entry(data_offsets=[4, 12])}, bytes(12), True, "gap of 4"),
    ("trailing", {"x": good_entry()}, bytes(8) + b"junk", True, "4 trailing bytes"),
    ("bad_metadata", {"__metadata__": {"a": 1}}, b"", True, "'__metadata__' must map"),
    ("bool_values", {"x": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07", True,
     "other than 0 and 1"),
]


@pytest.mark.parametrize("name, header, data, pad, message", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_file_raises_value_error_naming_file_and_fault(tmp_path, name, header, data, pad, message):
    path = write_raw(tmp_path / f"{name}.safetensors", header, data, pad)
    with pytest.raises(ValueError, match=message) as info:
        io.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, message", [
    (b"", "fewer than the 8"),
    (b"\x08\x00\x00", "fewer than the 8"),
    (struct.pack("<Q", 1000) + b"{}      ", "header length is 1000"),
    (struct.pack("<Q", 2 ** 64 - 1) + b"{}", "header length"),
])
def test_truncated_file_raises_value_error(tmp_path, content, message):
    path = tmp_path / "short.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        io.load(path)


def test_every_truncation_of_a_valid_file_is_rejected(tmp_path):
    path = tmp_path / "whole.safetensors"
    io.save({"a": np.arange(6, dtype=np.float32), "b": np.arange(3, dtype=np.int16)}, path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for size in range(len(raw)):
        cut.write_bytes(raw[:size])
        with pytest.raises(ValueError, match="cut.safetensors"):
            io.load(cut)


def test_load_metadata_validates_too(tmp_path):
    path = write_raw(tmp_path / "t.safetensors", {"x": good_entry()}, bytes(9))
    with pytest.raises(ValueError, match="1 trailing bytes"):
        io.load_metadata(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "nope.safetensors")


def test_loading_never_executes_code(tmp_path, monkeypatch):
    # A pickle payload renamed as a checkpoint, and a header carrying code-like strings: both are
    # only data to load, which rejects the first and returns the second's tensors untouched.
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Boom()))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("load used pickle"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("load used pickle"))
    with pytest.raises(ValueError):
        io.load(evil)
    sneaky = tmp_path / "sneaky.safetensors"
    io.save({"__import__('os').system('x')": np.zeros(1)}, sneaky, metadata={"__reduce__": "os.system"})
    tensors, metadata = io.load(sneaky, return_metadata=True)
    assert list(tensors) == ["__import__('os').system('x')"] and metadata == {"__reduce__": "os.system"}
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# the reference implementation, when installed

def test_cross_check_with_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="safetensors not installed")
    rng = np.random.default_rng(2)
    state = {f"{dtype}_{i}": random_array(dtype, shape, rng)
             for dtype in DTYPES for i, shape in enumerate([(), (0,), (3, 5)])}
    ours = tmp_path / "ours.safetensors"
    io.save(state, ours, metadata={"k": "v"})
    theirs_read = st.load_file(str(ours))
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(state, str(theirs), metadata={"k": "v"})
    ours_read = io.load(theirs)
    assert io.load_metadata(theirs) == {"k": "v"}
    for name, array in state.items():
        for got in (theirs_read[name], ours_read[name]):
            assert got.dtype == array.dtype and got.shape == array.shape
            assert got.tobytes() == array.tobytes()
