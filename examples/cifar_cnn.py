"""A small VGG-style CNN with batch norm and augmentation, on CIFAR-10 when its files are there,
on Fashion-MNIST otherwise.

    python examples/cifar_cnn.py                          # 5 epochs, batch 128, Adam 2e-3 with cosine decay
    python examples/cifar_cnn.py --epochs 1 --limit 5000  # a quick look
    python examples/cifar_cnn.py --dataset fashion-mnist --width 8 --threads 2

Data (never downloaded here, never synthesized): CIFAR-10's binary batches (the folder
cifar-10-batches-bin) in --data, $FASTNN_DATA, ../shared/data or ~/.cache/fastnn; else
Fashion-MNIST's four IDX files in --data, $FASTNN_DATA/fashion-mnist,
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist) or ~/.cache/fastnn.
Without either it exits and says how to get them.

Model: three blocks of [Conv2d 3x3 pad 1 (no bias) -> BatchNorm2d -> ReLU] x 2 with width, 2x and
4x width channels (32-64-128 for CIFAR-10, 16-32-64 for Fashion-MNIST); the first two blocks end
in MaxPool2d(2) (32 -> 16 -> 8, or 28 -> 14 -> 7), the last in AdaptiveAvgPool2d(1); then
Flatten and Linear to 10 classes. Augmentation, per batch and seeded (fastnn.data.transforms):
RandomCrop with zero padding (4 pixels for 32x32, 2 for 28x28) and RandomHorizontalFlip on the
uint8 images, then ToFloat and Normalize with the training set's per-channel mean and std.
Trained the Keras way, model.fit on a DataLoader whose collate_fn applies the augmentation, with
Adam and a cosine learning-rate decay per epoch. Prints per epoch the training loss and accuracy
(on augmented batches), the test accuracy and the seconds of training; then the final test accuracy.
Fashion-MNIST with the defaults: 91.0% test accuracy, 17-22 s per epoch on 2 cores.
"""
import re
import sys
import time
from collections import namedtuple

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.data import DataLoader, TensorDataset
from fastnn.data import transforms as T
from fastnn.datasets import CIFAR10_CLASSES, load_cifar10, load_fashion_mnist
from _common import EpochTimer, example_parser, fastnn_info, setup

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
DATASETS = ("auto", "cifar10", "fashion-mnist")

# x_train: uint8 (N, C, H, W), augmented per batch; x_test: float32 (N, C, H, W), normalized once;
# labels int64; mean, std: per channel, on the 0..1 scale.
Data = namedtuple("Data", "name x_train y_train x_test y_test mean std classes")

HOW_TO_GET = {
    "CIFAR-10": (
        "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and unpack it into\n"
        "    $FASTNN_DATA (or the folder given with --data), which then holds cifar-10-batches-bin/; or let\n"
        "    fastnn download and check it into ~/.cache/fastnn:\n"
        "    python -c \"import fastnn; fastnn.datasets.load_cifar10()\""),
    "Fashion-MNIST": (
        "apt-get install dataset-fashion-mnist (Debian/Ubuntu: /usr/share/datasets/fashion-mnist),\n"
        "    or put the four *-ubyte.gz files in $FASTNN_DATA/fashion-mnist, or let fastnn download and\n"
        "    check them into ~/.cache/fastnn: python -c \"import fastnn; fastnn.datasets.load_fashion_mnist()\""),
}


# ---- the model ---------------------------------------------------------------------------------

def conv_bn_relu(in_channels, out_channels):
    return [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


def build_model(in_channels, width=None, convs_per_block=2, num_classes=10):
    """The VGG-style CNN for images with in_channels channels (any size divisible by 4).

    width: channels of the first block (the others have 2x and 4x); default 32 for colour images
    (32-64-128, CIFAR-10) and 16 for grey ones (16-32-64, Fashion-MNIST).
    convs_per_block: 3x3 convolutions (each with batch norm and ReLU) per block, 1 or more.
    """
    if width is None:
        width = 32 if in_channels == 3 else 16
    if width < 1 or convs_per_block < 1:
        raise ValueError(f"build_model: width and convs_per_block must be positive, got width={width}, "
                         f"convs_per_block={convs_per_block}")
    layers, channels = [], in_channels
    for block, multiple in enumerate((1, 2, 4)):
        for _ in range(convs_per_block):
            layers += conv_bn_relu(channels, width * multiple)
            channels = width * multiple
        # 32 -> 16 -> 8 (CIFAR-10) or 28 -> 14 -> 7 (Fashion-MNIST); the last block averages each plane
        layers.append(nn.MaxPool2d(2) if block < 2 else nn.AdaptiveAvgPool2d(1))
    layers += [nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


# ---- the data ----------------------------------------------------------------------------------

def channel_stats(images):
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), on the 0..1 scale,
    computed exactly from each channel's 256-bin histogram (no float copy of the images)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].reshape(-1), minlength=256).astype(np.float64)
        mean = counts @ values / counts.sum()
        means.append(mean)
        stds.append(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
    return tuple(float(m) for m in means), tuple(float(s) for s in stds)


def _try_load(loader, path):
    """loader(path, download=False), then loader(None, download=False) (its own standard places:
    $FASTNN_DATA, for Fashion-MNIST /usr/share/datasets/fashion-mnist, the cache). Returns the
    arrays, or None and the places looked in."""
    searched = []
    for where in dict.fromkeys([path, None]):  # path first, each place once
        try:
            return loader(where, download=False), searched
        except FileNotFoundError as error:
            looked = re.search(r"\(looked in (.*?)\)", str(error))
            searched.append(looked.group(1) if looked else str(error))
    return None, searched


def load_data(path=None, dataset="auto", limit=None):
    """The data set as a Data tuple: CIFAR-10 when found (dataset "auto" or "cifar10"), else
    Fashion-MNIST (dataset "auto" or "fashion-mnist"). limit: keep only the first `limit` training
    images. Raises FileNotFoundError saying where it looked and how to get the files when none is found."""
    if dataset not in DATASETS:
        raise ValueError(f"load_data: dataset must be one of {DATASETS}, got {dataset!r}")
    found, missing = None, {}
    if dataset in ("auto", "cifar10"):
        arrays, missing["CIFAR-10"] = _try_load(load_cifar10, path)
        if arrays is not None:
            found = ("CIFAR-10", arrays, CIFAR10_CLASSES)
    if found is None and dataset in ("auto", "fashion-mnist"):
        arrays, missing["Fashion-MNIST"] = _try_load(load_fashion_mnist, path)
        if arrays is not None:
            (x_train, y_train), (x_test, y_test) = arrays
            found = ("Fashion-MNIST", ((x_train[:, None], y_train), (x_test[:, None], y_test)),
                     FASHION_MNIST_CLASSES)
    if found is None:
        lines = [f"found no {' and no '.join(missing)} files (this example does not download):"]
        for title, searched in missing.items():
            places = dict.fromkeys(place for text in searched for place in text.split(", "))
            lines += [f"  {title}: looked in {', '.join(places)}.", f"    To get it: {HOW_TO_GET[title]}"]
        raise FileNotFoundError("\n".join(lines))
    name, ((x_train, y_train), (x_test, y_test)), classes = found
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    mean, std = channel_stats(x_train)
    x_test = preprocess(x_test, mean, std)
    return Data(name, np.ascontiguousarray(x_train), y_train.astype(np.int64), x_test, y_test.astype(np.int64),
                mean, std, classes)


def preprocess(x, mean, std):
    """uint8 images (N, C, H, W) as float32 normalized per channel: what the model sees at test time."""
    return T.Compose([T.ToFloat(), T.Normalize(mean, std)])(np.ascontiguousarray(x))


def augmentation(image_size, mean, std, seed=0):
    """The training transform of a batch of uint8 images (N, C, S, S): a random S x S crop of the
    image zero-padded by 4 pixels (S >= 32, CIFAR-10) or 2 (smaller, Fashion-MNIST's 28), a random
    left-right flip, then float32 normalized per channel. Seeded: the same seed, the same draws."""
    padding = 4 if image_size >= 32 else 2
    return T.Compose([
        T.RandomCrop(image_size, padding=padding, seed=seed),
        T.RandomHorizontalFlip(seed=seed + 1),
        T.ToFloat(),
        T.Normalize(mean, std),
    ])


def make_loader(x, y, augment, batch_size, seed=0):
    """Shuffled (seeded) batches of (x, y) with `augment` applied to each batch of inputs."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, seed=seed,
                      collate_fn=T.collate_with(augment))


# ---- training and evaluation -------------------------------------------------------------------

class EpochReport(EpochTimer):
    """EpochTimer that also prints one line per epoch: training time, loss and accuracy, test accuracy."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        logs = logs or {}
        line = (f"epoch {epoch + 1}/{self.params.get('epochs')}: {self.seconds[-1]:.1f} s, "
                f"training loss {logs.get('loss', float('nan')):.4f}, "
                f"training accuracy {logs.get('accuracy', float('nan')):.4f}")
        if "val_accuracy" in logs:
            line += f", test accuracy {logs['val_accuracy']:.4f}"
        if "lr" in logs:
            line += f", lr {logs['lr']:.2e}"
        print(line, flush=True)


def train(model, data, epochs, batch_size=128, lr=2e-3, seed=0, validate=True, verbose=0, report=True):
    """Compile model with Adam(lr) and cross-entropy, and fit it for `epochs` on data's augmented
    training images, the rate following a cosine from lr towards 0 over the epochs (set per epoch).
    Returns (history, seconds of training per epoch). validate: evaluate on data's test set after
    each epoch; report: print one line per epoch."""
    optimizer = optim.Adam(model.parameters(), lr=lr)
    model.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy"])
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    timer = EpochReport() if report else EpochTimer()
    augment = augmentation(data.x_train.shape[-1], data.mean, data.std, seed=seed + 1)
    loader = make_loader(data.x_train, data.y_train, augment, batch_size, seed=seed)
    # The scheduler's callback comes first: it adds the epoch's "lr" to the logs that the report prints.
    history = model.fit(loader, epochs=epochs, verbose=verbose,
                        validation_data=(data.x_test, data.y_test) if validate else None,
                        callbacks=[fastnn.callbacks.LearningRateScheduler(schedule), timer])
    return history, timer.seconds


def evaluate(model, x, y, batch_size=500):
    """(mean cross-entropy, accuracy) of model on float32 images x (normalized as for training)
    and int labels y, in eval mode (batch norm uses its running statistics)."""
    logits = model.predict(x, batch_size=batch_size).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    y = np.asarray(y, dtype=np.int64)
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    accuracy = float((logits.argmax(axis=1) == y).mean())
    return loss, accuracy


def main():
    p = example_parser(__doc__.splitlines()[0], epochs=5, batch_size=128, lr=2e-3,
                       data_help="folder holding cifar-10-batches-bin/ or the Fashion-MNIST files")
    p.add_argument("--dataset", default="auto", choices=DATASETS,
                   help="auto: CIFAR-10 when found, else Fashion-MNIST (default)")
    p.add_argument("--width", type=int, default=None,
                   help="channels of the first block, then 2x and 4x (default 32 for CIFAR-10, 16 for Fashion-MNIST)")
    p.add_argument("--convs-per-block", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="fit's own progress output")
    args = p.parse_args()
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be a positive number of images, got {args.limit}")

    folder = setup(args)
    try:
        data = load_data(folder, args.dataset, args.limit)
    except FileNotFoundError as error:
        sys.exit(f"cifar_cnn.py: {error}")
    channels, size = data.x_train.shape[1:3]
    print(f"data set: {data.name}, {len(data.x_train)} training and {len(data.x_test)} test images of "
          f"{channels}x{size}x{size}; per-channel mean {', '.join(f'{m:.4f}' for m in data.mean)}, "
          f"std {', '.join(f'{s:.4f}' for s in data.std)}")
    model = build_model(channels, width=args.width, convs_per_block=args.convs_per_block)
    print(model)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    print(f"{fastnn_info()}, {n_params} parameters")

    start = time.perf_counter()
    _, seconds = train(model, data, args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       verbose=args.verbose)
    total = time.perf_counter() - start
    loss, accuracy = evaluate(model, data.x_test, data.y_test)
    print(f"time per epoch: {', '.join(f'{s:.1f} s' for s in seconds)}; training time {sum(seconds):.1f} s "
          f"({total:.1f} s with the test passes)")
    print(f"test loss {loss:.4f}, test accuracy: {accuracy:.4f} ({data.name})")


if __name__ == "__main__":
    main()
