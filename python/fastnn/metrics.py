"""Classification metrics with scikit-learn's names, arguments and results.

    accuracy(y_true, y_pred)                      fraction correct (top-1)
    top_k_accuracy(y_true, scores, k=5)           true class among the k highest scores
    precision / recall / f1_score(y_true, y_pred, average="binary" | "micro" | "macro" | "weighted" | None)
    confusion_matrix(y_true, y_pred)              rows: true class, columns: predicted class
    roc_auc_score(y_true, y_score)                binary, or one-vs-rest for several classes

Inputs are numpy arrays, lists or fastnn Tensors. Labels are any values numpy can sort (ints,
strings...). Where y_pred is a 2-D (N, C) array of scores (probabilities or logits), the
label metrics use its argmax along axis 1 as the predicted class (column index = class label);
a 2-D one-hot y_true likewise becomes class indices. sample_weight weighs the samples.

Zero division: a precision whose class is never predicted, a recall whose class never occurs,
an F1 whose class is in neither, is `zero_division` (default 0, the value scikit-learn's
default "warn" gives, but without a warning); 1 and nan are accepted too (nan values are left out
of averages, as in scikit-learn).

ROC-AUC is the area under the ROC curve with tied scores taken together (a diagonal segment),
which equals the Mann-Whitney statistic with average ranks, as in scikit-learn. Departures from
scikit-learn: multi_class defaults to "ovr" (sklearn's default "raise" is accepted), and
multi-class scores need not be probabilities (each class's column is ranked on its own);
(N, 2) and (N, 1) binary scores are accepted (column 1 and the only column).
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from fastnn._tensor import Tensor

__all__ = ["accuracy", "top_k_accuracy", "precision", "recall", "f1_score", "confusion_matrix",
           "roc_auc_score"]

_AVERAGES = ("binary", "micro", "macro", "weighted", None)


# ---------------------------------------------------------------------------------------------
# input handling

def _array(x, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, (str, bytes)) or np.isscalar(x):
        raise ValueError(f"{name} must be an array of samples, got a scalar {x!r}")
    try:
        array = np.asarray(x)
    except ValueError as error:
        raise ValueError(f"{name} must be a rectangular array: {error}") from None
    if array.dtype == object:
        raise ValueError(f"{name} must hold numbers or strings of one kind, got an object array")
    return array


def _labels_1d(x, name: str, fn: str) -> np.ndarray:
    """Class labels as a 1-D array: (N,) labels, or (N, C) scores / one-hot rows -> argmax."""
    a = _array(x, name)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 2:
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{fn}: {name} of shape {a.shape} must be numeric scores to take the argmax of")
        if name == "y_true":
            if not (np.all((a == 0) | (a == 1)) and np.all(a.sum(axis=1) == 1)):
                raise ValueError(f"{fn}: a 2-D y_true must be one-hot (one 1 per row, zeros elsewhere), got "
                                 f"shape {a.shape} with other values; pass class labels of shape (N,) "
                                 f"(multilabel targets are not supported)")
        a = np.argmax(a, axis=1)
    elif a.ndim != 1:
        raise ValueError(f"{fn}: {name} must have shape (N,) (labels) or (N, C) (scores), got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{fn}: {name} contains NaN or infinity")
        if np.any(a != np.round(a)):
            raise ValueError(f"{fn}: {name} holds continuous values (e.g. {a[a != np.round(a)][0]!r}); pass "
                             f"class labels, or (N, C) scores whose argmax is the class")
    return a


def _weights(sample_weight, n: int, fn: str):
    if sample_weight is None:
        return None
    w = _array(sample_weight, "sample_weight").astype(np.float64)
    if w.shape != (n,):
        raise ValueError(f"{fn}: sample_weight must have shape ({n},) like y_true, got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{fn}: sample_weight must be finite and non-negative")
    return w


def _pair(y_true, y_pred, sample_weight, fn: str):
    t = _labels_1d(y_true, "y_true", fn)
    p = _labels_1d(y_pred, "y_pred", fn)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"{fn}: y_true and y_pred must have the same number of samples, got {t.shape[0]} "
                         f"and {p.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError(f"{fn}: y_true and y_pred are empty")
    if (t.dtype.kind in "US") != (p.dtype.kind in "US"):
        raise ValueError(f"{fn}: y_true and y_pred mix string and numeric labels ({t.dtype} and {p.dtype})")
    return t, p, _weights(sample_weight, t.shape[0], fn)


def _label_list(labels, fn: str) -> np.ndarray:
    labels = _array(labels, "labels")
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"{fn}: labels must be a non-empty 1-D list, got shape {labels.shape}")
    if np.unique(labels).size != labels.size:
        raise ValueError(f"{fn}: labels contains duplicates: {labels.tolist()}")
    return labels


def _encode(y: np.ndarray, labels: np.ndarray):
    """Index of each y in labels (any order), and a mask of the ys that are in labels."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    pos = np.clip(np.searchsorted(sorted_labels, y), 0, len(labels) - 1)
    present = sorted_labels[pos] == y
    return order[pos], present


def _bincount(index, mask, weights, size):
    return np.bincount(index[mask], weights=None if weights is None else weights[mask], minlength=size)


def _zero_division_value(zero_division, fn: str) -> float:
    if isinstance(zero_division, str):
        if zero_division == "warn":  # scikit-learn's default: 0 (fastnn does not warn)
            return 0.0
    elif isinstance(zero_division, numbers.Real) and (zero_division in (0, 1) or math.isnan(zero_division)):
        return float(zero_division)
    raise ValueError(f"{fn}: zero_division must be 0, 1, nan or 'warn', got {zero_division!r}")


# ---------------------------------------------------------------------------------------------
# accuracy

def accuracy(y_true, y_pred, *, normalize: bool = True, sample_weight=None) -> float:
    """Fraction (or, with normalize=False, the weighted count) of samples with y_pred == y_true.

    y_pred may be labels (N,) or scores (N, C) (argmax taken); y_true labels (N,) or one-hot (N, C).
    """
    t, p, w = _pair(y_true, y_pred, sample_weight, "accuracy")
    correct = (t == p).astype(np.float64)
    if normalize:
        return float(np.average(correct, weights=w))
    return float(correct.sum() if w is None else correct @ w)


def top_k_accuracy(y_true, scores, k: int = 5, *, normalize: bool = True, sample_weight=None,
                   labels=None) -> float:
    """Fraction of samples whose true class is among the k highest of its C scores.

    scores: (N, C) probabilities or logits. y_true: class indices in [0, C), or, with labels (a
    list of C class labels in column order), values of labels. Ties rank the higher column
    first, as in sklearn.metrics.top_k_accuracy_score.
    """
    fn = "top_k_accuracy"
    s = _array(scores, "scores")
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"{fn}: scores must have shape (N, C) with C >= 2 classes, got shape {s.shape}")
    if s.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: scores must be numeric, got dtype {s.dtype}")
    t = _labels_1d(y_true, "y_true", fn)
    n, c = s.shape
    if t.shape[0] != n:
        raise ValueError(f"{fn}: y_true has {t.shape[0]} samples but scores has {n} rows")
    if n == 0:
        raise ValueError(f"{fn}: y_true and scores are empty")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (numbers.Integral,)):
        raise TypeError(f"{fn}: k must be an int, got {k!r}")
    k = operator.index(k)
    if not 1 <= k <= c:
        raise ValueError(f"{fn}: k must be in [1, {c}] for scores with {c} classes, got k={k}")
    if labels is None:
        if t.dtype.kind not in "iubf" or t.min() < 0 or t.max() >= c:
            raise ValueError(f"{fn}: y_true must hold class indices in [0, {c}) (one per column of scores), "
                             f"got values from {t.min()!r} to {t.max()!r}; pass labels= to name the columns")
        column = t.astype(np.int64)
    else:
        labels = _label_list(labels, fn)
        if labels.size != c:
            raise ValueError(f"{fn}: labels has {labels.size} entries but scores has {c} columns")
        column, present = _encode(t, labels)
        if not present.all():
            raise ValueError(f"{fn}: y_true contains labels not in labels: {np.unique(t[~present]).tolist()}")
    w = _weights(sample_weight, n, fn)
    s = s.astype(np.float64)
    true_score = s[np.arange(n), column][:, None]
    above = (s > true_score) | ((s == true_score) & (np.arange(c)[None, :] > column[:, None]))
    hit = (above.sum(axis=1) < k).astype(np.float64)
    if normalize:
        return float(np.average(hit, weights=w))
    return float(hit.sum() if w is None else hit @ w)


# ---------------------------------------------------------------------------------------------
# precision, recall, F1

def _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division, fn):
    if average not in _AVERAGES:
        raise ValueError(f"{fn}: average must be one of 'binary', 'micro', 'macro', 'weighted' or None, "
                         f"got {average!r}")
    zero = _zero_division_value(zero_division, fn)
    t, p, w = _pair(y_true, y_pred, sample_weight, fn)
    present = np.union1d(t, p)
    if average == "binary":
        if present.size > 2:
            raise ValueError(f"{fn}: average='binary' needs two classes, but y_true and y_pred hold "
                             f"{present.size} ({present.tolist()}); choose average='micro', 'macro', "
                             f"'weighted' or None")
        if pos_label not in present.tolist() and present.size == 2:
            raise ValueError(f"{fn}: pos_label={pos_label!r} is not one of the labels {present.tolist()}; "
                             f"pass pos_label=<the positive class>")
        classes = np.asarray([pos_label])
    elif labels is not None:
        classes = _label_list(labels, fn)
    else:
        classes = present
    it, mt = _encode(t, classes)
    ip, mp = _encode(p, classes)
    size = len(classes)
    true_sum = _bincount(it, mt, w, size).astype(np.float64)
    pred_sum = _bincount(ip, mp, w, size).astype(np.float64)
    hit = mt & mp & (t == p)
    tp = _bincount(it, hit, w, size).astype(np.float64)
    if average == "micro":
        tp, true_sum, pred_sum = tp.sum(keepdims=True), true_sum.sum(keepdims=True), pred_sum.sum(keepdims=True)

    def divide(num, den):
        out = np.full(num.shape, zero)
        np.divide(num, den, out=out, where=den != 0)
        return out

    precision_ = divide(tp, pred_sum)
    recall_ = divide(tp, true_sum)
    f1 = divide(2 * tp, true_sum + pred_sum)
    if average is None:
        return precision_, recall_, f1
    weights = true_sum if average == "weighted" else None
    return tuple(_nan_average(v, weights) for v in (precision_, recall_, f1))


def _nan_average(values: np.ndarray, weights) -> float:
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    values = values[keep]
    if weights is None:
        return float(values.mean())
    weights = weights[keep]
    if weights.sum() == 0:
        return float(values.mean())
    return float(np.average(values, weights=weights))


_PRF_DOC = """

    y_true, y_pred: labels (N,), or y_pred as (N, C) scores (argmax taken).
    average: 'binary' (the class pos_label only; needs at most two classes), 'micro' (global
    counts), 'macro' (unweighted mean over classes), 'weighted' (mean weighted by each class's
    number of true samples), or None (one value per class, as an array ordered like labels).
    labels: the classes to include and their order (default: every class in y_true or y_pred).
    zero_division: the value for a class whose denominator is 0 (default 0, no warning).
    """


def precision(y_true, y_pred, *, labels=None, pos_label=1, average="binary", sample_weight=None,
              zero_division=0):
    return _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division, "precision")[0]


def recall(y_true, y_pred, *, labels=None, pos_label=1, average="binary", sample_weight=None,
           zero_division=0):
    return _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division, "recall")[1]


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", sample_weight=None,
             zero_division=0):
    return _prf(y_true, y_pred, labels, pos_label, average, sample_weight, zero_division, "f1_score")[2]


precision.__doc__ = "Precision tp / (tp + fp), as sklearn.metrics.precision_score." + _PRF_DOC
recall.__doc__ = "Recall tp / (tp + fn), as sklearn.metrics.recall_score." + _PRF_DOC
f1_score.__doc__ = "F1 = 2 tp / (2 tp + fp + fn), as sklearn.metrics.f1_score." + _PRF_DOC


# ---------------------------------------------------------------------------------------------
# confusion matrix

def confusion_matrix(y_true, y_pred, *, labels=None, sample_weight=None, normalize=None) -> np.ndarray:
    """C[i, j] = number (or weight) of samples of true class labels[i] predicted as labels[j].

    labels: the classes and their order (default: every class in y_true or y_pred, sorted);
    samples whose true or predicted class is not in labels are left out. normalize: None
    (counts), 'true' (rows sum to 1), 'pred' (columns sum to 1) or 'all' (the whole sums to 1).
    Integer counts without sample_weight, floats otherwise.
    """
    fn = "confusion_matrix"
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"{fn}: normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    t, p, w = _pair(y_true, y_pred, sample_weight, fn)
    if labels is None:
        classes = np.union1d(t, p)
    else:
        classes = _label_list(labels, fn)
    it, mt = _encode(t, classes)
    ip, mp = _encode(p, classes)
    if labels is not None and not mt.any():
        raise ValueError(f"{fn}: none of labels={classes.tolist()} occurs in y_true")
    size = len(classes)
    both = mt & mp
    cm = np.bincount(it[both] * size + ip[both], weights=None if w is None else w[both],
                     minlength=size * size).reshape(size, size)
    cm = cm.astype(np.int64 if w is None else np.float64)
    if normalize is None:
        return cm
    cm = cm.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            cm = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cm = cm / cm.sum(axis=0, keepdims=True)
        else:
            cm = cm / cm.sum()
    return np.nan_to_num(cm)


# ---------------------------------------------------------------------------------------------
# ROC-AUC

def _binary_auc(positive: np.ndarray, score: np.ndarray, w) -> float:
    order = np.argsort(-score, kind="stable")
    score, positive = score[order], positive[order]
    w = np.ones(score.shape[0]) if w is None else w[order]
    last_of_ties = np.r_[np.flatnonzero(np.diff(score)), score.shape[0] - 1]
    tps = np.r_[0.0, np.cumsum(w * positive)[last_of_ties]]
    fps = np.r_[0.0, np.cumsum(w * ~positive)[last_of_ties]]
    if tps[-1] == 0 or fps[-1] == 0:
        return math.nan  # one class only: undefined (scikit-learn also returns nan, with a warning)
    area = np.sum(np.diff(fps) * (tps[1:] + tps[:-1])) / 2
    return float(area / (tps[-1] * fps[-1]))


def roc_auc_score(y_true, y_score, *, average="macro", multi_class="ovr", labels=None,
                  sample_weight=None):
    """Area under the ROC curve, as sklearn.metrics.roc_auc_score.

    Binary y_true (two classes; the greater label is positive): y_score is (N,) scores of the
    positive class (probabilities, logits or any scores), or (N, 2) / (N, 1) columns.
    More classes: y_score (N, C), one column per class in sorted order (or in the order of
    labels); each class against the rest, averaged by average='macro' (plain mean), 'weighted'
    (by class prevalence), 'micro' (all the one-vs-rest pairs pooled) or None (per class).
    """
    fn = "roc_auc_score"
    if multi_class not in ("ovr", "raise", "ovo"):
        raise ValueError(f"{fn}: multi_class must be 'ovr' (or 'raise'), got {multi_class!r}")
    if average not in ("macro", "weighted", "micro", None):
        raise ValueError(f"{fn}: average must be 'macro', 'weighted', 'micro' or None, got {average!r}")
    t = _array(y_true, "y_true")
    s = _array(y_score, "y_score")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"{fn}: y_true must be 1-D class labels, got shape {t.shape} (multilabel targets "
                         f"are not supported)")
    n = t.shape[0]
    if s.ndim not in (1, 2) or s.shape[0] != n:
        raise ValueError(f"{fn}: y_score must have shape ({n},) or ({n}, C) to match y_true's {n} samples, "
                         f"got shape {s.shape}")
    if n == 0:
        raise ValueError(f"{fn}: y_true and y_score are empty")
    if s.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: y_score must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{fn}: y_score contains NaN or infinity")
    if t.dtype.kind == "f" and (not np.all(np.isfinite(t)) or np.any(t != np.round(t))):
        raise ValueError(f"{fn}: y_true must hold class labels, got continuous values")
    w = _weights(sample_weight, n, fn)
    classes = np.unique(t)
    multiclass = classes.size > 2 or (s.ndim == 2 and s.shape[1] > 2)
    if not multiclass:
        if s.ndim == 2:
            if s.shape[1] == 2:
                s = s[:, 1]
            elif s.shape[1] == 1:
                s = s[:, 0]
            else:
                raise ValueError(f"{fn}: binary y_score must have shape ({n},), ({n}, 1) or ({n}, 2), got {s.shape}")
        if classes.size < 2:
            return math.nan  # one class only: undefined (scikit-learn also returns nan, with a warning)
        return _binary_auc(t == classes[1], s, w)
    if multi_class == "raise":
        raise ValueError(f"{fn}: y_true has {classes.size} classes; pass multi_class='ovr' for one-vs-rest")
    if multi_class == "ovo":
        raise ValueError(f"{fn}: multi_class='ovo' is not supported; use multi_class='ovr'")
    if labels is not None:
        classes = _label_list(labels, fn)
        index, present = _encode(t, classes)
        if not present.all():
            raise ValueError(f"{fn}: y_true contains labels not in labels: {np.unique(t[~present]).tolist()}")
    else:
        index, _ = _encode(t, classes)
    if s.ndim != 2 or s.shape[1] != classes.size:
        raise ValueError(f"{fn}: y_true has {classes.size} classes, so y_score must have shape ({n}, "
                         f"{classes.size}) (one column per class), got {s.shape}; pass labels= when some "
                         f"classes are missing from y_true")
    onehot = np.zeros(s.shape, dtype=bool)
    onehot[np.arange(n), index] = True
    if average == "micro":
        return _binary_auc(onehot.ravel(), s.ravel(), None if w is None else np.repeat(w, s.shape[1]))
    aucs = np.array([_binary_auc(onehot[:, c], s[:, c], w) for c in range(classes.size)])
    if average is None:
        return aucs
    if average == "weighted":
        prevalence = onehot.sum(axis=0) if w is None else (onehot * w[:, None]).sum(axis=0)
        keep = prevalence > 0  # a class without samples weighs nothing, even where its AUC is nan
        return float(np.average(aucs[keep], weights=prevalence[keep]))
    return float(aucs.mean())
