"""Small pieces the example scripts share: the command-line options and setup of a run, where MNIST
is, a per-epoch training timer, and writing a grid of images as a picture."""
import argparse
import os
import time

import numpy as np

import fastnn


def example_parser(description, epochs, batch_size, lr, data_help="directory with the MNIST IDX files"):
    """An ArgumentParser with the options every training example has: --data, --epochs, --batch-size,
    --lr (with this script's defaults), --seed (default 0) and --threads; the script adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default=None, help=data_help)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p


def setup(args):
    """Apply --threads (when given) and --seed; returns the data directory, data_dir(args.data)."""
    if args.threads:
        fastnn.set_num_threads(args.threads)
    fastnn.manual_seed(args.seed)
    return data_dir(args.data)


def fastnn_info():
    """'fastnn <version>, <n> thread(s)': what a run reports it runs on, once the threads are set."""
    return f"fastnn {fastnn.__version__}, {fastnn.get_num_threads()} thread(s)"


def data_dir(explicit=None):
    """The directory to read MNIST from: the --data option, else $FASTNN_DATA, else ../shared/data
    beside the repository (where this project keeps it); None lets fastnn.datasets look in its cache
    and download."""
    if explicit:
        return explicit
    if os.environ.get("FASTNN_DATA"):
        return os.environ["FASTNN_DATA"]
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))
    return candidate if os.path.isdir(candidate) else None


class EpochTimer(fastnn.callbacks.Callback):
    """Training time of each epoch, without the validation pass."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_batch_end(self, batch, logs=None):
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self.last - self.start)


def image_grid(images, columns, pad=2):
    """Images (n, h, w) with values in [0, 1] tiled into one (rows*(h+pad)+pad, ...) grey image."""
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return grid


def save_image(grid, stem, quiet=False):
    """Write grid as stem.png with matplotlib, else as stem.npy (with a note on how to see it, unless
    quiet); returns the path written. matplotlib is imported here, only when a picture is saved."""
    try:
        from matplotlib import image
    except ImportError:
        path = stem + ".npy"
        np.save(path, grid)
        if not quiet:
            print(f"matplotlib is not installed: wrote {path}, a grey image in [0, 1]. For PNGs, "
                  f"pip install matplotlib (or fastnn[plot]) and run again, or show it with "
                  f"matplotlib.pyplot.imshow(numpy.load('{path}'), cmap='gray')")
        return path
    path = stem + ".png"
    image.imsave(path, grid.repeat(2, axis=0).repeat(2, axis=1), cmap="gray", vmin=0.0, vmax=1.0)  # 2x: easier to see
    return path
