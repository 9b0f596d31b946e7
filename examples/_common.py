"""Small pieces the example scripts share: where MNIST is, and a per-epoch training timer."""
import os
import time

import fastnn


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
