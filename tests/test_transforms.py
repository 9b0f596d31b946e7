"""fastnn.data.transforms: shapes and dtypes kept, seeded reproducibility, each transform against
a plain numpy reference (flip, crop at a fixed offset, rotation by 0 and 90 degrees and a
per-pixel bilinear loop, normalization), Compose order, the DataLoader hook, bad arguments."""
import math

import numpy as np
import pytest

import fastnn
from fastnn.data import DataLoader, TensorDataset
from fastnn.data import transforms as T


def batch(n=6, c=3, h=9, w=7, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(dtype)


RANDOM = [
    lambda seed: T.RandomHorizontalFlip(seed=seed),
    lambda seed: T.RandomCrop((9, 7), padding=2, seed=seed),
    lambda seed: T.RandomRotation(30, seed=seed),
]


# ---------------------------------------------------------------------------------------------
# common behaviour

@pytest.mark.parametrize("make", RANDOM + [lambda seed: T.Normalize(0.5, 0.25),
                                           lambda seed: T.Compose([T.RandomCrop(5, padding=1, seed=seed),
                                                                   T.RandomHorizontalFlip(seed=seed)])])
def test_shape_dtype_kind_and_input_untouched(make):
    x = batch()
    before = x.copy()
    t = make(3)
    y = t(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape == (x.shape if not isinstance(t, T.Compose) else (6, 3, 5, 5))
    assert np.array_equal(x, before)
    out = t(fastnn.from_numpy(x))  # Tensor in, Tensor out
    assert isinstance(out, fastnn.Tensor) and out.shape == y.shape and not out.requires_grad
    assert np.array_equal(x, before)
    assert t(x[:0]).shape == (0,) + y.shape[1:]  # an empty batch
    x64 = x.astype(np.float64)
    assert t(x64).dtype == np.float64


@pytest.mark.parametrize("make", RANDOM)
def test_seeded_reproducible_and_seed_dependent(make):
    x = batch(n=16)
    a, b, c = make(7), make(7), make(8)
    ya = [a(x), a(x)]
    assert np.array_equal(ya[0], b(x)) and np.array_equal(ya[1], b(x))  # same seed, same sequence
    assert not np.array_equal(ya[0], ya[1])  # a new draw per call
    assert not np.array_equal(ya[0], c(x))  # another seed, other results


@pytest.mark.parametrize("make", RANDOM)
def test_unseeded_transforms_follow_manual_seed(make):
    x = batch(n=16)
    t = make(None)
    fastnn.manual_seed(123)
    first = t(x)
    fastnn.manual_seed(123)
    assert np.array_equal(first, t(x))
    assert not np.array_equal(first, t(x))


def test_geometric_transforms_keep_integer_dtypes():
    x = (batch() * 255).astype(np.uint8)
    for t in (T.RandomHorizontalFlip(seed=0), T.RandomCrop(8, padding=1, fill=255, seed=0)):
        y = t(x)
        assert y.dtype == np.uint8
    with pytest.raises(ValueError, match=r"fill=300 cannot be stored in a uint8 batch"):
        T.RandomCrop(8, padding=1, fill=300)(x)
    with pytest.raises(TypeError, match=r"RandomRotation: expected a floating-point batch .* ToFloat"):
        T.RandomRotation(10)(x)


# ---------------------------------------------------------------------------------------------
# each transform against numpy

def test_flip_mirrors_exactly_the_drawn_images():
    x = batch(n=64)
    y = T.RandomHorizontalFlip(p=0.5, seed=1)(x)
    flipped = np.array([np.array_equal(y[i], x[i, :, :, ::-1]) for i in range(64)])
    kept = np.array([np.array_equal(y[i], x[i]) for i in range(64)])
    assert np.all(flipped ^ kept) and 10 < flipped.sum() < 54
    draws = np.random.default_rng(1).random(64) < 0.5  # the documented draw: one coin per image
    assert np.array_equal(flipped, draws)
    assert np.array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    assert np.array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)


@pytest.mark.parametrize("padding, pad_width", [
    (2, ((2, 2), (2, 2))),
    ((1, 3), ((3, 3), (1, 1))),             # (left/right, top/bottom)
    ((1, 2, 3, 4), ((2, 4), (1, 3))),       # (left, top, right, bottom)
    (0, ((0, 0), (0, 0))),
])
def test_crop_equals_numpy_pad_and_slice(padding, pad_width):
    x = batch(n=5, c=2, h=6, w=5)
    size = (5, 4)
    t = T.RandomCrop(size, padding=padding, fill=-1.0, seed=4)
    y = t(x)
    padded = np.pad(x, ((0, 0), (0, 0)) + pad_width, constant_values=-1.0)
    rng = np.random.default_rng(4)  # the documented draws: all row offsets, then all column offsets
    rows = rng.integers(0, padded.shape[2] - size[0] + 1, size=5)
    cols = rng.integers(0, padded.shape[3] - size[1] + 1, size=5)
    for i in range(5):
        np.testing.assert_array_equal(y[i], padded[i, :, rows[i]:rows[i] + size[0], cols[i]:cols[i] + size[1]])


def test_crop_covers_every_offset_and_per_channel_fill():
    x = np.zeros((400, 3, 4, 4), np.float32)
    y = T.RandomCrop(4, padding=1, fill=(1, 2, 3), seed=0)(x)
    # with padding 1 there are 3x3 offsets; each leaves a distinct pattern of border pixels
    patterns = {tuple((y[i, 0] != 0).ravel()) for i in range(400)}
    assert len(patterns) == 9
    assert set(np.unique(y[:, 1])) <= {0.0, 2.0} and set(np.unique(y[:, 2])) <= {0.0, 3.0}
    assert np.array_equal(T.RandomCrop(4)(x), x)  # size of the image, no padding: identity


def bilinear_reference(image, degrees, fill):
    """One image (C, H, W), float64, a loop over output pixels: inverse-rotate the position about
    ((H-1)/2, (W-1)/2), blend the four neighbours, outside ones being `fill`."""
    c, h, w = image.shape
    theta = math.radians(degrees)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out = np.empty((c, h, w))

    def pixel(r, q):
        return image[:, r, q] if 0 <= r < h and 0 <= q < w else np.full(c, fill)

    for i in range(h):
        for j in range(w):
            sx = math.cos(theta) * (j - cx) - math.sin(theta) * (i - cy) + cx
            sy = math.sin(theta) * (j - cx) + math.cos(theta) * (i - cy) + cy
            x0, y0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - x0, sy - y0
            out[:, i, j] = ((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1)) +
                            fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)))
    return out


def test_rotation_against_a_per_pixel_bilinear_loop():
    x = batch(n=3, c=2, h=7, w=10)
    angles = [17.0, -123.5, 61.0]
    y = T.rotate(x, angles, fill=0.5)
    for i, a in enumerate(angles):
        np.testing.assert_allclose(y[i], bilinear_reference(x[i].astype(np.float64), a, 0.5), atol=1e-5)
    # RandomRotation draws one uniform angle per image in [-d, d]
    drawn = np.random.default_rng(9).uniform(-40, 40, size=3)
    np.testing.assert_allclose(T.RandomRotation(40, fill=0.5, seed=9)(x), T.rotate(x, drawn, fill=0.5), atol=1e-6)


def test_rotation_by_0_is_identity_and_by_90_is_rot90():
    x = batch(n=4, c=3, h=8, w=8)
    np.testing.assert_array_equal(T.RandomRotation((0, 0), seed=0)(x), x)
    turned = T.RandomRotation((90, 90), seed=0)(x)  # counter-clockwise, like np.rot90(k=1)
    np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(2, 3)), atol=1e-6)
    np.testing.assert_allclose(T.rotate(x, [-90, 180, 270, 360]),
                               np.stack([np.rot90(x[0], -1, (1, 2)), np.rot90(x[1], 2, (1, 2)),
                                         np.rot90(x[2], 3, (1, 2)), x[3]]), atol=1e-6)
    # a non-square image turned 90 degrees: the corners come from outside and take the fill
    wide = batch(n=1, c=1, h=4, w=8)
    out = T.rotate(wide, [90], fill=-7.0)
    assert np.all(out[0, 0, :, 0] == -7.0) and np.all(out[0, 0, :, -1] == -7.0)


def test_rotation_angles_stay_in_range():
    x = np.zeros((200, 1, 5, 5), np.float32)
    x[:, :, 2, 4] = 1.0  # one pixel right of centre; its rotated position tells the angle's sign
    y = T.RandomRotation((10, 20), seed=3)(x)
    assert np.all(y[:, 0, 1, 4] + y[:, 0, 1, 3] > 0)  # moved up (counter-clockwise) for all
    assert np.all(y[:, 0, 3, :] == 0)


def test_normalize_against_numpy():
    x = batch(n=4, c=3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    expected = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_allclose(T.Normalize(mean, std)(x), expected, rtol=1e-6)
    np.testing.assert_allclose(T.Normalize(0.5, 2.0)(x), (x - 0.5) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match=r"Normalize: mean has 3 values but the batch has 2 channels"):
        T.Normalize(mean, 1.0)(x[:, :2])


def test_to_float():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    y = T.ToFloat()(images)
    assert y.dtype == np.float32 and y.shape == (2, 1, 3, 4)
    np.testing.assert_allclose(y[:, 0], images / 255.0, rtol=1e-6)
    assert T.ToFloat(scale=1.0)(images[:, None]).max() == 23.0
    with pytest.raises(TypeError, match=r"ToFloat: expected integer images"):
        T.ToFloat()(y)
    with pytest.raises(TypeError, match=r"got a Tensor"):
        T.ToFloat()(fastnn.zeros(2, 1, 3, 4))
    with pytest.raises(ValueError, match=r"shape \(N, H, W\) or \(N, C, H, W\), got shape \(24,\)"):
        T.ToFloat()(images.reshape(-1))


def test_compose_applies_in_order_and_repr():
    x = batch(n=2, c=1, h=4, w=4)
    t = T.Compose([T.Normalize(1.0, 2.0), T.Normalize(0.0, 0.5)])  # (x - 1) / 2 / 0.5 = x - 1
    np.testing.assert_allclose(t(x), x - 1, rtol=1e-6)
    other = T.Compose([T.Normalize(0.0, 0.5), T.Normalize(1.0, 2.0)])  # (2x - 1) / 2 = x - 0.5
    np.testing.assert_allclose(other(x), x - 0.5, rtol=1e-6)
    assert len(t) == 2 and isinstance(t[0], T.Normalize)
    steps = []
    T.Compose([lambda b: steps.append("a") or b, lambda b: steps.append("b") or b])(x)
    assert steps == ["a", "b"]
    text = repr(T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(seed=1),
                           T.RandomRotation(15), T.Normalize((0.5, 0.4), (0.2, 0.2)), T.ToFloat()]))
    assert text == ("Compose([\n    RandomCrop(size=32, padding=4, fill=0, seed=None),\n"
                    "    RandomHorizontalFlip(p=0.5, seed=1),\n"
                    "    RandomRotation(degrees=(-15, 15), fill=0, seed=None),\n"
                    "    Normalize(mean=(0.5, 0.4), std=(0.2, 0.2)),\n    ToFloat(scale=1/255),\n])")
    assert repr(T.RandomCrop((3, 4), padding=(1, 2))) == \
        "RandomCrop(size=(3, 4), padding=(1, 2, 1, 2), fill=0, seed=None)"


def test_collate_with_in_a_dataloader():
    x = (np.random.default_rng(0).random((10, 1, 6, 6)) * 255).astype(np.uint8)
    y = np.arange(10)
    augment = T.Compose([T.ToFloat(), T.RandomHorizontalFlip(p=1.0)])
    loader = DataLoader(TensorDataset(x, y), batch_size=4, collate_fn=T.collate_with(augment))
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 1, 6, 6), (4, 1, 6, 6), (2, 1, 6, 6)]
    np.testing.assert_allclose(batches[0][0], x[:4, :, :, ::-1] / np.float32(255), rtol=1e-6)
    assert np.array_equal(batches[2][1], [8, 9])
    as_dicts = T.collate_with(T.ToFloat(), field="image")([{"image": x[0], "label": 1}, {"image": x[1], "label": 2}])
    assert as_dicts["image"].dtype == np.float32 and as_dicts["label"].tolist() == [1, 2]
    assert T.collate_with(T.ToFloat())([x[0], x[1]]).shape == (2, 1, 6, 6)  # a bare batch
    with pytest.raises(ValueError, match=r"collate_with: the collated batch has no field 2"):
        T.collate_with(T.ToFloat(), field=2)([(x[0], 1)])
    with pytest.raises(TypeError, match=r"collate_with: transform must be callable"):
        T.collate_with(3)


# ---------------------------------------------------------------------------------------------
# bad arguments and inputs

@pytest.mark.parametrize("make, error, match", [
    (lambda: T.RandomHorizontalFlip(p=1.5), ValueError, r"p must be in \[0, 1\], got p=1.5"),
    (lambda: T.RandomHorizontalFlip(p="half"), TypeError, r"p must be a real number"),
    (lambda: T.RandomHorizontalFlip(seed=-1), ValueError, r"seed must be a non-negative int or None, got seed=-1"),
    (lambda: T.RandomHorizontalFlip(seed=1.5), TypeError, r"seed must be an int"),
    (lambda: T.RandomCrop(0), ValueError, r"size must be positive, got size=\(0, 0\)"),
    (lambda: T.RandomCrop((1, 2, 3)), ValueError, r"size must be an int or a sequence of 1 or 2 ints"),
    (lambda: T.RandomCrop(4, padding=-1), ValueError, r"padding must be non-negative, got padding=-1"),
    (lambda: T.RandomCrop(4, padding=(1, 2, 3)), ValueError, r"padding must be an int or a sequence of 1 or 2 or 4"),
    (lambda: T.RandomCrop(4, fill=float("nan")), ValueError, r"fill must be finite"),
    (lambda: T.RandomRotation(-5), ValueError, r"degrees must be non-negative .* got degrees=-5"),
    (lambda: T.RandomRotation((20, 10)), ValueError, r"needs min <= max, got degrees=\(20, 10\)"),
    (lambda: T.RandomRotation((1, 2, 3)), ValueError, r"degrees must be a number or a pair"),
    (lambda: T.RandomRotation(True), TypeError, r"degrees must be a real number"),
    (lambda: T.Normalize((0.5,), (0.0,)), ValueError, r"std must be positive, got std=0"),
    (lambda: T.Normalize((0.5, 0.5), (1, 1, 1)), ValueError, r"mean and std must have the same number of channels"),
    (lambda: T.Normalize([], 1), ValueError, r"mean must be a number or one number per channel"),
    (lambda: T.ToFloat(scale=0), ValueError, r"scale must be positive, got scale=0"),
    (lambda: T.Compose([T.ToFloat(), 3]), TypeError, r"transforms\[1\] is not callable"),
    (lambda: T.Compose(T.ToFloat()), TypeError, r"transforms must be a list of callables"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_batches():
    x = batch()
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, C, H, W\), got shape \(6, 9, 7\): "
                                         r".* x\[:, None\]"):
        T.RandomHorizontalFlip()(x[:, 0])
    with pytest.raises(TypeError, match=r"RandomCrop: expected a batch as a numpy array or a fastnn Tensor"):
        T.RandomCrop(3)(x.tolist())
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(12, 12\) is larger than the padded image \(11, 9\)"):
        T.RandomCrop(12, padding=1)(x)
    with pytest.raises(ValueError, match=r"RandomCrop: fill has 2 values but the batch has 3 channels"):
        T.RandomCrop(3, padding=1, fill=(0, 1))(x)
    with pytest.raises(TypeError, match=r"Normalize: expected a floating-point batch"):
        T.Normalize(0, 1)(x.astype(np.int32))
    with pytest.raises(TypeError, match=r"expected a numeric batch, got dtype bool"):
        T.RandomHorizontalFlip()(x > 0.5)
