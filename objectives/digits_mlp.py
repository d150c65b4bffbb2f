"""The demo objective: a small MLP on scikit-learn's digits, trained by epochs on the CPU.

It reads like an Optuna objective: parameters from ``trial.suggest_*``, one
``trial.report`` of the validation loss per epoch, ``trial.should_prune`` and
``optuna.TrialPruned``. Its ``suggest_*`` calls name no ranges: several
studies search it (the demo, and the tests' smaller ``mini``), each with its
own ranges in studies.yaml, and a range given here would have to match each
of them (a range that disagrees with the study's is an error). It also checkpoints every epoch (weights, momentum
buffers and the RNG state), so an attempt killed by a preemption resumes on
the next attempt exactly where it stopped.

The network is written in NumPy on purpose: the demo needs no deep-learning
framework, and each epoch takes a fraction of a second on two cores. The data
ship with scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import optuna

SPLIT_SEED = 0  # the train/validation split is the same for every trial


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as scikit-learn ships them, read straight from its data file.

    ``sklearn.datasets.load_digits`` costs over a second of imports per trial
    process; the CSV it parses is in the package, found without importing it.
    """
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if spec is None:
        raise ModuleNotFoundError(
            "the digits_mlp objective reads scikit-learn's digits, and scikit-learn is not installed: "
            "pip install 'runpod-hpo[examples]'",
            name="sklearn",
        )
    if path is None or not path.is_file():  # a future scikit-learn may move it
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data, digits.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1]


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits (8x8 images, 10 classes): 70 % train, 30 % validation, pixels scaled to [0, 1]."""
    data, target = _digits()
    x = data.astype(np.float64) / 16.0
    y = target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    cut = int(0.7 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def init_weights(rng: np.random.Generator, sizes: list[int]) -> dict[str, np.ndarray]:
    """He-initialised weights and zero biases for a fully connected net of ``sizes``."""
    weights: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        weights[f"w{i}"] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
        weights[f"b{i}"] = np.zeros(n_out)
    return weights


def forward(weights: dict[str, np.ndarray], x: np.ndarray, activation: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits and the hidden activations (kept for the backward pass)."""
    layers = len(weights) // 2
    hidden = [x]
    h = x
    for i in range(layers):
        h = h @ weights[f"w{i}"] + weights[f"b{i}"]
        if i < layers - 1:
            h = np.maximum(h, 0.0) if activation == "relu" else np.tanh(h)
            hidden.append(h)
    return h, hidden


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    grad = np.exp(log_probs)
    grad[np.arange(len(y)), y] -= 1.0
    return float(loss), grad / len(y)


def backward(
    weights: dict[str, np.ndarray], hidden: list[np.ndarray], grad: np.ndarray, activation: str
) -> dict[str, np.ndarray]:
    """Gradients of every weight, by hand."""
    layers = len(weights) // 2
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(layers)):
        grads[f"w{i}"] = hidden[i].T @ grad
        grads[f"b{i}"] = grad.sum(axis=0)
        if i > 0:
            grad = grad @ weights[f"w{i}"].T
            h = hidden[i]
            grad = grad * (h > 0) if activation == "relu" else grad * (1.0 - h**2)
    return grads


def train_epoch(
    state: dict[str, Any], x: np.ndarray, y: np.ndarray, *, lr: float, momentum: float,
    weight_decay: float, batch_size: int, activation: str,
) -> None:
    """One pass over the training set with SGD + momentum, clipping the gradient norm at 5."""
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    weights, velocity = state["weights"], state["velocity"]
    order = rng.permutation(len(x))
    for start in range(0, len(x), batch_size):
        batch = order[start : start + batch_size]
        logits, hidden = forward(weights, x[batch], activation)
        _, grad = cross_entropy(logits, y[batch])
        grads = backward(weights, hidden, grad, activation)
        norm = np.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        scale = min(1.0, 5.0 / (norm + 1e-12))
        for name, g in grads.items():
            velocity[name] = momentum * velocity[name] - lr * (scale * g + weight_decay * weights[name])
            weights[name] += velocity[name]
    state["rng"] = rng.bit_generator.state


def objective(trial: Any) -> float:
    """Train for ``trial.max_step`` epochs; report the validation loss after each; return the best."""
    lr = trial.suggest_float("lr")  # the range is the study's (see the module docstring)
    hidden = trial.suggest_int("hidden")
    depth = trial.suggest_int("depth")
    weight_decay = trial.suggest_float("weight_decay")
    batch_size = trial.suggest_categorical("batch_size")
    activation = trial.suggest_categorical("activation")
    momentum = 0.9

    x_train, y_train, x_val, y_val = load_data()
    state = trial.load_checkpoint()
    if state is None:
        rng = np.random.default_rng(trial.number)
        weights = init_weights(rng, [x_train.shape[1]] + [hidden] * depth + [10])
        state = {
            "weights": weights,
            "velocity": {name: np.zeros_like(w) for name, w in weights.items()},
            "rng": rng.bit_generator.state,
            "best": float("inf"),
        }

    for epoch in range(trial.resume_step + 1, trial.max_step + 1):
        train_epoch(
            state, x_train, y_train, lr=lr, momentum=momentum, weight_decay=weight_decay,
            batch_size=batch_size, activation=activation,
        )
        logits, _ = forward(state["weights"], x_val, activation)
        val_loss, _ = cross_entropy(logits, y_val)
        val_loss = min(val_loss, 10.0)  # a diverged net reports a bad, finite loss
        state["best"] = min(state["best"], val_loss)
        if epoch % trial.eval_interval == 0 or epoch == trial.max_step:
            trial.report(val_loss, epoch)
        trial.save_checkpoint(state, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(state["best"])
