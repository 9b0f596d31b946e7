"""A deep belief network on MNIST: greedy layer-wise pre-training of a stack of RBMs (784-500-500) with
contrastive divergence, then fine-tuning the stack as a sigmoid MLP classifier with backprop.

    python examples/dbn.py                            # CD-1, 5 epochs per RBM, 5 fine-tuning epochs
    python examples/dbn.py --hidden 256 128 --pcd --pretrain-epochs 3
    python examples/dbn.py --no-pretrain              # the same MLP from a random start, for comparison

Finds MNIST in --data, $FASTNN_DATA, ../shared/data or ~/.cache/fastnn (see fastnn.datasets).
Each RBM learns from the hidden probabilities of the one below (the first from the pixels in
[0, 1]) with SGD + momentum on the contrastive-divergence loss; it prints each RBM's
reconstruction error per epoch. Then a softmax layer is trained on the frozen top features (the
"before" accuracy), and the whole stack, Linear + Sigmoid layers initialised from the RBMs'
weights plus that softmax layer, is fine-tuned with Adam (the "after" accuracy).
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import load_mnist
from _common import fastnn_info, setup


def load_data(path):
    """Pixels in [0, 1], flattened (N, 784) float32, and int64 labels."""
    (x_train, y_train), (x_test, y_test) = load_mnist(path)
    return ((x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0, y_train.astype(np.int64)),
            (x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0, y_test.astype(np.int64)))


def features(module, x, batch_size=1000):
    """module(x) in batches, without a graph: (N, out) float32."""
    with fastnn.no_grad():
        return np.concatenate([module(fastnn.tensor(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])


def train_rbm(rbm, x, epochs, batch_size=100, lr=0.1, momentum=0.9, seed=0, log=None):
    """Contrastive divergence on x (N, n_visible) in [0, 1]; returns the reconstruction error of
    x (or of its first 10000 rows) before training and after each epoch."""
    optimizer = optim.SGD(rbm.parameters(), lr=lr, momentum=momentum)
    probe = x[:10000]
    errors = [rbm.reconstruction_error(probe)]
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch_size):
            loss = rbm.contrastive_divergence(x[order[i:i + batch_size]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        errors.append(rbm.reconstruction_error(probe))
        if log:
            log(f"  epoch {epoch + 1}/{epochs}: {time.perf_counter() - start:.2f} s, "
                f"reconstruction error {errors[-1]:.4f}")
    return errors


def pretrain(sizes, x, epochs, k=1, persistent=False, batch_size=100, lr=0.1, momentum=0.9, seed=0, log=None):
    """Greedy layer-wise pre-training: RBM(sizes[0], sizes[1]) on x, then each next RBM on the
    hidden probabilities of the one below. Returns the RBMs and their reconstruction errors."""
    rbms, errors, inputs = [], [], x
    for i, (n_visible, n_hidden) in enumerate(zip(sizes[:-1], sizes[1:])):
        rbm = nn.RBM(n_visible, n_hidden, k=k, persistent=persistent)
        if log:
            log(f"RBM {i + 1}: {rbm}")
        errors.append(train_rbm(rbm, inputs, epochs, batch_size, lr, momentum, seed=seed + i, log=log))
        rbms.append(rbm)
        inputs = features(rbm, inputs)  # p(h = 1 | v): the next RBM's data
    return rbms, errors


def build_classifier(rbms, sizes=None, n_classes=10):
    """Linear + Sigmoid per RBM (weights and hidden biases copied from it) and a Linear output
    layer of n_classes logits; with no RBMs, the same MLP freshly initialised from `sizes`."""
    layers = []
    if rbms:
        for rbm in rbms:
            layers += [rbm.to_linear(), nn.Sigmoid()]
        top = rbms[-1].n_hidden
    else:
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
        top = sizes[-1]
    layers.append(nn.Linear(top, n_classes))
    return nn.Sequential(*layers)


def accuracy(model, x, y):
    return float(np.mean(features(model, x).argmax(axis=1) == y))


def train_head(model, x, y, epochs, batch_size=100, lr=1e-2, seed=0):
    """Train only the output layer, on the frozen features of the layers below; returns its losses."""
    body = nn.Sequential(*list(model)[:-1])
    head = list(model)[-1]
    top = features(body, x)
    head.compile(optimizer=optim.Adam(head.parameters(), lr=lr), loss="cross_entropy")
    return head.fit(top, y, batch_size=batch_size, epochs=epochs, seed=seed, verbose=0).history["loss"]


def finetune(model, x, y, epochs, batch_size=100, lr=1e-3, seed=0, verbose=0):
    """Backprop through the whole stack; returns the training loss per epoch."""
    model.compile(optimizer=optim.Adam(model.parameters(), lr=lr), loss="cross_entropy", metrics=["accuracy"])
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, seed=seed, verbose=verbose).history["loss"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="directory with the MNIST IDX files")
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500], help="hidden layer sizes, one RBM each")
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--cd-k", type=int, default=1, help="Gibbs steps per update (CD-k)")
    p.add_argument("--pcd", action="store_true", help="persistent contrastive divergence")
    p.add_argument("--rbm-lr", type=float, default=None, help="SGD rate of the RBMs (default 0.1 for CD, 0.05 for PCD)")
    p.add_argument("--momentum", type=float, default=None, help="SGD momentum of the RBMs (default 0.9 for CD, 0.5 "
                                                                "for PCD, whose chain mixes badly with fast updates)")
    p.add_argument("--head-epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate for fine-tuning")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--no-pretrain", action="store_true", help="skip the RBMs: the same MLP from a random start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    data = setup(args)
    (x_train, y_train), (x_test, y_test) = load_data(data)
    sizes = [784] + args.hidden
    print(f"{fastnn_info()}, {len(x_train)} training and {len(x_test)} test images; "
          f"layers {'-'.join(map(str, sizes))}")

    rbms = []
    start = time.perf_counter()
    if not args.no_pretrain:
        method = f"{'PCD' if args.pcd else 'CD'}-{args.cd_k}"
        print(f"pre-training {len(sizes) - 1} RBMs with {method}, {args.pretrain_epochs} epochs each")
        lr = args.rbm_lr if args.rbm_lr is not None else (0.05 if args.pcd else 0.1)
        momentum = args.momentum if args.momentum is not None else (0.5 if args.pcd else 0.9)
        rbms, _ = pretrain(sizes, x_train, args.pretrain_epochs, k=args.cd_k, persistent=args.pcd,
                           batch_size=args.batch_size, lr=lr, momentum=momentum, seed=args.seed, log=print)
        print(f"pre-training time {time.perf_counter() - start:.2f} s")
    model = build_classifier(rbms, sizes)

    train_head(model, x_train, y_train, args.head_epochs, args.batch_size, seed=args.seed)
    before = accuracy(model, x_test, y_test)
    what = "random frozen features" if args.no_pretrain else "frozen RBM features"
    print(f"before fine-tuning (softmax layer on the {what}): test accuracy {before:.4f}")

    start = time.perf_counter()
    losses = finetune(model, x_train, y_train, args.finetune_epochs, args.batch_size, args.lr, seed=args.seed)
    after = accuracy(model, x_test, y_test)
    print(f"fine-tuning: {time.perf_counter() - start:.2f} s, training loss per epoch "
          f"{', '.join(f'{v:.4f}' for v in losses)}")
    print(f"after fine-tuning: test accuracy {after:.4f}")


if __name__ == "__main__":
    main()
