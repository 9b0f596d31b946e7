"""A character-level LSTM language model on the licence texts every Debian machine carries
(/usr/share/common-licenses), then samples text from it.

    python examples/char_lstm.py                     # 8 epochs, 2-layer LSTM of 256 units (~1-2 minutes)
    python examples/char_lstm.py --epochs 2 --hidden 128 --sample 400 --temperature 0.6
    python examples/char_lstm.py --text-dir /path/to/plain/text/files

Model: Embedding(vocabulary, 64) -> LSTM(64, hidden, num_layers=2, dropout=0.1, batch_first) ->
Linear(hidden, vocabulary). Training: the text is cut into windows of --seq-len characters; each
step predicts every next character of a batch of windows (cross-entropy over the vocabulary),
with Adam, gradient clipping at norm 1 and a cosine learning-rate decay. The last 5% of the text
is held out; each epoch prints the training and held-out loss (nats per character) and its time.
Afterwards the model writes --sample characters, one at a time, carrying its (h, c) state.
"""
import argparse
import os
import time

import numpy as np

import fastnn
import fastnn.nn.functional as F
from fastnn import nn, optim


def read_corpus(directory):
    """The concatenated text of every regular file in `directory` (links to the same file once)."""
    seen, parts = set(), []
    for name in sorted(os.listdir(directory)):
        path = os.path.realpath(os.path.join(directory, name))
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read())
    if not parts:
        raise SystemExit(f"no text files found in {directory}; pass --text-dir")
    return "\n\n".join(parts)


class CharLSTM(nn.Module):
    def __init__(self, vocabulary, hidden, layers=2, embedding=64, dropout=0.1):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, vocabulary)

    def forward(self, ids, state=None):
        """ids (B, T) -> logits (B, T, vocabulary), the new (h, c)."""
        out, state = self.lstm(self.embed(ids), state)
        return self.head(out), state


def windows(ids, seq_len, starts):
    """Inputs and next-character targets (B, seq_len) for windows beginning at `starts`."""
    index = starts[:, None] + np.arange(seq_len)[None, :]
    return ids[index], ids[index + 1]


def loss_on(model, x, y):
    logits, _ = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def evaluate(model, ids, seq_len, batch):
    """Mean loss over consecutive windows of the held-out text."""
    model.eval()
    starts = np.arange(0, len(ids) - seq_len - 1, seq_len)
    total, count = 0.0, 0
    with fastnn.no_grad():
        for i in range(0, len(starts), batch):
            x, y = windows(ids, seq_len, starts[i:i + batch])
            total += loss_on(model, x, y).item() * y.size
            count += y.size
    model.train()
    return total / count


def sample(model, chars, prompt, length, temperature, rng):
    """Continue `prompt` by `length` characters drawn from the model's softmax at `temperature`."""
    lookup = {c: i for i, c in enumerate(chars)}
    model.eval()
    out = list(prompt)
    with fastnn.no_grad():
        logits, state = model(np.array([[lookup[c] for c in prompt]]))
        for _ in range(length):
            z = logits.numpy()[0, -1].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(chars), p=p / p.sum()))
            out.append(chars[nxt])
            logits, state = model(np.array([[nxt]]), state)
    model.train()
    return "".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text-dir", default="/usr/share/common-licenses")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--sample", type=int, default=600, help="characters to generate after training")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--prompt", default="This License ")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    text = read_corpus(args.text_dir)
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    split = int(len(ids) * 0.95)
    train_ids, val_ids = ids[:split], ids[split:]
    print(f"{len(text):,} characters from {args.text_dir}, vocabulary of {len(chars)}; "
          f"{len(train_ids):,} for training, {len(val_ids):,} held out")

    fastnn.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = CharLSTM(len(chars), args.hidden)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * args.steps_per_epoch)
    print(f"model: {sum(p.data.size for p in model.parameters()):,} parameters; "
          f"{args.steps_per_epoch} steps of {args.batch_size} x {args.seq_len} characters per epoch")
    print(f"held-out loss before training: {evaluate(model, val_ids, args.seq_len, 256):.3f} "
          f"(uniform guessing: {np.log(len(chars)):.3f})")

    for epoch in range(args.epochs):
        start, total = time.perf_counter(), 0.0
        for _ in range(args.steps_per_epoch):
            starts = rng.integers(0, len(train_ids) - args.seq_len - 1, args.batch_size)
            loss = loss_on(model, *windows(train_ids, args.seq_len, starts))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        seconds = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / args.steps_per_epoch:.3f}, held-out loss "
              f"{evaluate(model, val_ids, args.seq_len, 256):.3f}, {seconds:.1f} s", flush=True)

    print(f"\n--- {args.sample} characters sampled at temperature {args.temperature} ---")
    print(sample(model, chars, args.prompt, args.sample, args.temperature, rng))


if __name__ == "__main__":
    main()
