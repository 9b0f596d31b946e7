"""Autoencoders on MNIST: dense (784-256-64-256-784) or convolutional, sigmoid output, binary cross-entropy, Adam.

    python examples/autoencoder.py                     # dense, 10 epochs, batch 128, Adam 1e-3
    python examples/autoencoder.py --model conv        # strided convolutions down, transposed up
    python examples/autoencoder.py --epochs 3 --out runs/ae

dense: 784-256-64-256-784 with ReLU inside. conv: two stride-2 3x3 convolutions (28x28 -> 14x14
-> 7x7, 16 and 32 channels), a 64-number code through Linear layers, and two stride-2 transposed
convolutions back up to 28x28. Both take and return flat (N, 784) images.

Finds MNIST in --data, $FASTNN_DATA, ../shared/data or ~/.cache/fastnn (see fastnn.datasets).
Prints the reconstruction loss (binary cross-entropy per pixel) on the training and test sets
after each epoch, and writes a grid of test digits beside their reconstructions: a PNG when
matplotlib is installed, otherwise a .npy image and a note on how to see it.
"""
import time

import numpy as np

import fastnn
import fastnn.nn.functional as F
from fastnn import nn, optim
from fastnn.datasets import load_mnist
from _common import example_parser, fastnn_info, image_grid, save_image, setup

MODEL_KINDS = ("dense", "conv")


def build_model(kind="dense", code=64):
    """The autoencoder of the given kind, 'dense' or 'conv', with a code of `code` numbers;
    inputs and outputs are flat images (N, 784) in [0, 1]."""
    if kind == "dense":
        encoder = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, code), nn.ReLU())
        decoder = nn.Sequential(nn.Linear(code, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())
        return nn.Sequential(encoder, decoder)
    if kind == "conv":
        encoder = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),           # 16 x 14 x 14
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),          # 32 x 7 x 7
            nn.Flatten(), nn.Linear(32 * 7 * 7, code), nn.ReLU())
        decoder = nn.Sequential(
            nn.Linear(code, 32 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # 16 x 14 x 14
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),  # 1 x 28 x 28
            nn.Flatten())
        return nn.Sequential(encoder, decoder)
    raise ValueError(f"build_model: kind must be one of {MODEL_KINDS}, got {kind!r}")


def load_data(path):
    """MNIST pixels scaled to [0, 1], flattened: x_train (60000, 784), x_test (10000, 784), float32."""
    (x_train, _), (x_test, _) = load_mnist(path)
    return (x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0,
            x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0)


def train_epoch(model, optimizer, x, batch_size, seed):
    """One pass over x in shuffled batches; returns the mean of the batch losses."""
    model.train()
    loader = fastnn.data.DataLoader(fastnn.data.TensorDataset(x), batch_size=batch_size, shuffle=True, seed=seed)
    total, count = 0.0, 0
    for (xb,) in loader:
        xb = fastnn.tensor(xb)
        loss = F.binary_cross_entropy(model(xb), xb)  # the input is its own target
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / count


def reconstruct(model, x, batch_size=1000):
    model.eval()
    with fastnn.no_grad():
        return np.concatenate([model(fastnn.tensor(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])


def evaluate(model, x):
    """The mean binary cross-entropy per pixel between x and its reconstruction."""
    r = np.clip(reconstruct(model, x).astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(x * np.log(r) + (1 - x) * np.log1p(-r)))


def comparison_grid(originals, reconstructions, columns=10):
    """Rows of originals, each followed by the row of their reconstructions."""
    pairs = []
    for i in range(0, len(originals), columns):
        pairs += [originals[i:i + columns], reconstructions[i:i + columns]]
    return image_grid(np.concatenate(pairs).reshape(-1, 28, 28), columns)


def main():
    p = example_parser(__doc__.splitlines()[0], epochs=10, batch_size=128, lr=1e-3)
    p.add_argument("--model", choices=MODEL_KINDS, default="dense", help="dense or convolutional (default dense)")
    p.add_argument("--out", default="autoencoder", help="file name stem of the picture (.png or .npy)")
    args = p.parse_args()

    data = setup(args)
    x_train, x_test = load_data(data)
    model = build_model(args.model)
    print(model)
    print(f"{fastnn_info()}, {len(x_train)} training and {len(x_test)} test images")

    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    seconds = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        train_loss = train_epoch(model, optimizer, x_train, args.batch_size, seed=args.seed + epoch)
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds[-1]:.2f} s, training loss {train_loss:.4f}, "
              f"test loss {evaluate(model, x_test):.4f} (binary cross-entropy per pixel)", flush=True)
    print(f"training time {sum(seconds):.2f} s")

    originals = x_test[:50]
    path = save_image(comparison_grid(originals, reconstruct(model, originals)), args.out)
    print(f"wrote {path}: rows of test digits, each followed by its reconstruction")


if __name__ == "__main__":
    main()
