"""A GAN on MNIST: MLP generator 100-256-512-1024-784 (tanh) and discriminator 784-512-256-1 (dropout
0.3), trained with binary_cross_entropy_with_logits and two Adam optimizers (lr 2e-4, betas (0.5, 0.999)).

    python examples/gan.py                     # 10 epochs, batch 32
    python examples/gan.py --epochs 3 --out runs/gan

Finds MNIST in --data, $FASTNN_DATA, ../shared/data or ~/.cache/fastnn (see fastnn.datasets).
Each step updates the discriminator on a real and a generated batch, then the generator (the
non-saturating loss: generated images labelled real). After each epoch it prints both losses and
D's mean outputs, and writes an 8x8 grid of samples from a fixed noise batch, <out>_epochNN.png
(a .npy image when matplotlib is not installed), so the grids show the digits forming. The digit
score puts a number on "recognisable": the share of 1000 samples that an MLP classifier trained
on real digits assigns to one class with probability >= 0.9, and how many kinds of digit those are.
"""
import time

import numpy as np

import fastnn
import fastnn.nn.functional as F
from fastnn import nn, optim
from fastnn.datasets import load_mnist
from _common import example_parser, fastnn_info, image_grid, save_image, setup

NOISE = 100


def build_generator(noise=NOISE):
    """z (N, noise) -> images (N, 784) in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(noise, 256), nn.LeakyReLU(0.2),
        nn.Linear(256, 512), nn.LeakyReLU(0.2),
        nn.Linear(512, 1024), nn.LeakyReLU(0.2),
        nn.Linear(1024, 784), nn.Tanh(),
    )


def build_discriminator(dropout=0.3):
    """images (N, 784) -> one logit per image: > 0 means 'real'. The dropout keeps the
    discriminator from winning too early, when the generator still needs its gradients."""
    return nn.Sequential(
        nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Dropout(dropout),
        nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(dropout),
        nn.Linear(256, 1),
    )


def load_data(path):
    """The MNIST training and test images scaled to [-1, 1], the generator's range, (N, 784)
    float32, with their labels (only the digit score uses them)."""
    (x_train, y_train), (x_test, y_test) = load_mnist(path)
    scale = lambda x: x.reshape(len(x), -1).astype(np.float32) / 127.5 - 1.0  # noqa: E731
    return (scale(x_train), y_train.astype(np.int64)), (scale(x_test), y_test.astype(np.int64))


def noise(n, rng):
    return fastnn.tensor(rng.standard_normal((n, NOISE), dtype=np.float32))


def set_requires_grad(module, flag):
    for p in module.parameters():
        p.requires_grad = flag


def train_epoch(generator, discriminator, opt_g, opt_d, x, batch_size, rng):
    """One pass over x: per batch, a discriminator step then a generator step.
    Returns the mean discriminator loss, generator loss, D(real) and D(fake) (sigmoid outputs)."""
    generator.train()
    discriminator.train()
    order = rng.permutation(len(x))
    totals = np.zeros(4)
    batches = 0
    for i in range(0, len(x) - batch_size + 1, batch_size):  # whole batches only
        real = fastnn.tensor(x[order[i:i + batch_size]])
        ones = fastnn.ones(batch_size, 1)
        zeros = fastnn.zeros(batch_size, 1)
        fake = generator(noise(batch_size, rng))

        # Discriminator: real -> 1, fake -> 0; fake.detach() keeps the generator out of this step.
        real_logits = discriminator(real)
        fake_logits = discriminator(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(real_logits, ones) + \
            F.binary_cross_entropy_with_logits(fake_logits, zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

        # Generator: make the (just updated) discriminator call the same fakes real. D's weights
        # are frozen meanwhile, so backward computes no weight gradients it would not use.
        set_requires_grad(discriminator, False)
        loss_g = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        set_requires_grad(discriminator, True)

        totals += (loss_d.item(), loss_g.item(), _mean_sigmoid(real_logits), _mean_sigmoid(fake_logits))
        batches += 1
    return tuple(totals / max(batches, 1))


def _mean_sigmoid(logits):
    return float(np.mean(1 / (1 + np.exp(-logits.detach().numpy()))))


def sample(generator, z):
    """Images (N, 28, 28) in [0, 1] from the noise batch z."""
    generator.eval()
    with fastnn.no_grad():
        return (generator(z).numpy().reshape(-1, 28, 28) + 1) / 2


def train_scorer(x, y, seed=0):
    """A 784-256-10 MLP classifier of real digits (about 98% test accuracy after 5 epochs): the
    judge of how recognisable the generated digits are."""
    scorer = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    scorer.compile(optimizer=optim.Adam(scorer.parameters(), lr=2e-3), loss="cross_entropy")
    scorer.fit(x, y, batch_size=128, epochs=5, seed=seed, verbose=0)
    return scorer


def digit_score(scorer, images):
    """(share of images (N, 784) in [-1, 1] the scorer classifies with probability >= 0.9,
    number of digits that are at least 2% of those): recognisable, and of many kinds."""
    scorer.eval()
    with fastnn.no_grad():
        probs = F.softmax(scorer(fastnn.tensor(images)), dim=1).numpy()
    confident = probs.max(axis=1) >= 0.9
    counts = np.bincount(probs.argmax(axis=1)[confident], minlength=10)
    return float(confident.mean()), int(np.sum(counts >= 0.02 * max(confident.sum(), 1)))


def main():
    p = example_parser(__doc__.splitlines()[0], epochs=10, batch_size=32, lr=2e-4)
    p.add_argument("--no-score", action="store_true", help="skip the digit score (a classifier judging samples)")
    p.add_argument("--out", default="gan", help="file name stem of the sample grids (<out>_epochNN.png or .npy)")
    args = p.parse_args()

    data = setup(args)
    rng = np.random.default_rng(args.seed)
    (x_train, y_train), (x_test, y_test) = load_data(data)
    generator, discriminator = build_generator(), build_discriminator()
    print("generator:", generator)
    print("discriminator:", discriminator)
    print(f"{fastnn_info()}, {len(x_train)} training images")

    opt_g = optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    fixed_z = noise(64, np.random.default_rng(args.seed + 1))  # the same 64 points every epoch
    score_z = noise(1000, np.random.default_rng(args.seed + 2))
    if not args.no_score:
        scorer = train_scorer(x_train, y_train, args.seed)
        share, kinds = digit_score(scorer, x_test[:1000])
        print(f"digit score of 1000 real test digits: {share:.0%} classified with probability >= 0.9, "
              f"{kinds} kinds of digit")
    seconds = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        loss_d, loss_g, d_real, d_fake = train_epoch(generator, discriminator, opt_g, opt_d, x_train,
                                                     args.batch_size, rng)
        seconds.append(time.perf_counter() - start)
        path = save_image(image_grid(sample(generator, fixed_z), columns=8), f"{args.out}_epoch{epoch + 1:02d}",
                          quiet=epoch > 0)
        score = ""
        if not args.no_score:
            share, kinds = digit_score(scorer, sample(generator, score_z).reshape(-1, 784) * 2 - 1)
            score = f", digit score {share:.0%} ({kinds} kinds)"
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds[-1]:.2f} s, loss D {loss_d:.3f}, loss G {loss_g:.3f}, "
              f"D(real) {d_real:.2f}, D(fake) {d_fake:.2f}{score}; wrote {path}", flush=True)
    print(f"training time {sum(seconds):.2f} s")


if __name__ == "__main__":
    main()
