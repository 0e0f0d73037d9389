"""fastgd against what a user would pick instead: one epoch of the book's network in each peer.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/peers.py [--runs 3] [--min-time 1] [--only numpy,torch,...] [--data-dir DIR] [--limit N]

The same network and settings everywhere: 784-16-16-10, sigmoid hidden and output layers,
quadratic cost C = 1/(2n) sum ||a - y||^2, the book's N(0, 1) initialisation (the same numbers:
fastgd's ``Network(..., init="normal", seed=0)`` parameters are copied into every peer), plain
SGD with mini-batches of 10 and eta 3.0, one epoch over the 60,000 MNIST training images in one
fixed random order (``numpy.random.default_rng(1).permutation(60000)``, the order ``fit(...,
seed=1)`` uses), float32 unless said. Peers, each optional (skipped with a note when its package
is not importable):

  numpy-example   per-example NumPy backprop, the book's algorithm (Nielsen's network.py: loop
                  over the examples of the mini-batch, sum nabla, then update), float64
  numpy-batch     NumPy, the whole mini-batch as matrix products, float32
  torch-eager-1   PyTorch eager (nn.Sequential, MSE-style loss, optim.SGD), 1 thread
  torch-eager-2   the same, 2 threads (torch.set_num_threads)
  torch-compile   PyTorch, the step (forward, loss, backward, optimizer step) under torch.compile, 1 thread
  torch-lean      PyTorch eager written for speed, 1 thread: plain tensors, torch.addmm and
                  torch.sigmoid, torch.autograd.grad, one torch._foreach_add_ for the step (no
                  nn.Module, no optimizer object): about 40% faster than torch-eager-1 here
  sklearn         scikit-learn MLPClassifier((16, 16), logistic, sgd, batch 10, momentum 0,
                  alpha 0, shuffle=False): one partial_fit over the ordered data. Its output
                  layer is softmax with log-loss (it has no quadratic cost) and it uses its own
                  (Glorot) initialisation; eta 0.5 (see SKLEARN_ETA)
  jax-step        JAX, a jitted step per mini-batch, called with NumPy slices of the ordered data
                  (parameters donated); faster here than slicing device arrays inside the step,
                  by lax.dynamic_slice of pre-ordered data or of the order's indices
  jax-scan        JAX, the whole epoch in one jitted function: the rows gathered in the epoch's
                  order, then lax.scan over the mini-batches (faster than gathering each
                  mini-batch's rows inside the scan; unroll=4 would gain a further ~20%)
  fastgd-cpp, fastgd-numba, fastgd-numpy
                  ``Network(..., activation="sigmoid", cost="quadratic", init="normal",
                  dtype="float32", backend=...).fit(X, y, epochs=1, batch_size=10, eta=3.0,
                  optimizer="sgd", seed=1)``: the wall time of the user's call

``--only`` takes peer names or groups (numpy, torch, sklearn, jax, fastgd); fastgd-cpp (or, when
the C++ extension is missing, fastgd's default backend) always runs as the reference of the
speed-up column. Every peer runs one
untimed epoch first (its compilation, JIT or cache warm-up; reported as "first epoch"), then
``--runs`` timed epochs or more, each from the same initial parameters and in the same order; the
table shows their median and their number. A peer goes on with more timed epochs while they add up
to less than ``--min-time`` seconds (1 s; at most 200 epochs): fastgd's 0.02-0.03 s epoch then gets
its median over about 40 runs, so a burst of the shared host's other load during one or two of
them does not set it, while a peer whose epoch takes a second or more keeps its 3 runs (each of
them already spans such bursts). The timed region of each peer starts from the data in memory in
the peer's own format (NumPy arrays, torch tensors, JAX device arrays) and includes gathering the
rows in the epoch's order. Afterwards the test accuracy on the 10,000 test images is printed as a
sanity check: a peer below ``--min-accuracy`` (85%) did not learn, and the script exits 1.

BLAS: run this script with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (``env -u ...`` as above,
for that command only). When set, they make OpenBLAS use other kernels and cache blocking than it
would choose for this CPU, which slows a current NumPy (and so the NumPy and scikit-learn peers);
they are read when NumPy loads, so they cannot be undone from inside. The active OpenBLAS
coretype (threadpoolctl's "architecture") and any such variables are printed with the machine.
BLAS threads are left at the library's default (what a user gets); the table says how many.

``--limit N`` trains on the first N images (a quick check; the accuracy bar is then 30%, well
above chance: 2,000 images take the book's SGD to about 41%). ``--json PATH`` writes the results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import fastgd
from fastgd import bench

SIZES = (784, 16, 16, 10)
ETA = 3.0
BATCH = 10
INIT_SEED = bench.INIT_SEED  # 0
ORDER_SEED = bench.ORDER_SEED  # 1
SKLEARN_ETA = 0.5  # softmax + log-loss has no sigmoid' factor in its output delta: 3.0 is unstable there

GROUPS = {
    "numpy": ("numpy-example", "numpy-batch"),
    "torch": ("torch-eager-1", "torch-eager-2", "torch-compile", "torch-lean"),
    "sklearn": ("sklearn",),
    "jax": ("jax-step", "jax-scan"),
    "fastgd": ("fastgd-cpp", "fastgd-numba", "fastgd-numpy"),
}


class Skip(Exception):
    """A peer that cannot run here (package missing); the message says why."""


@dataclass
class Data:
    X: np.ndarray  # (n, 784) float32
    y: np.ndarray  # (n,) int64
    Xt: np.ndarray  # (10000, 784) float32
    yt: np.ndarray
    order: np.ndarray  # (n,) int64, the epoch's order
    weights: list[np.ndarray]  # the book's (n_out, n_in), float64: the shared initial parameters
    biases: list[np.ndarray]

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


@dataclass
class Result:
    key: str
    label: str
    seconds: float = math.nan  # median of the timed runs
    runs: list[float] = field(default_factory=list)
    first: float = math.nan  # the untimed first epoch (compilation included)
    accuracy: float = math.nan
    version: str = ""
    threads: str = ""
    note: str = ""
    skipped: str = ""


def one_hot(y: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    out = np.zeros((y.shape[0], 10), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def accuracy(Ws: list[np.ndarray], bs: list[np.ndarray], Xt: np.ndarray, yt: np.ndarray) -> float:
    """Test accuracy of parameters in the (n_in, n_out) layout: ``A = sigmoid(A W + b)``."""
    A = Xt.astype(np.float64)
    with np.errstate(over="ignore"):
        for W, b in zip(Ws, bs):
            A = 1.0 / (1.0 + np.exp(-(A @ np.asarray(W, np.float64) + np.asarray(b, np.float64))))
    return float(np.mean(A.argmax(1) == yt))


@dataclass(frozen=True)
class Runs:
    """How many timed epochs a peer runs: at least ``least``, and more while they add up to less
    than ``min_time`` seconds (at most ``most``), so that a short epoch's median is taken over
    enough runs for a burst of the host's other load not to decide it."""

    least: int = 3
    min_time: float = 1.0
    most: int = 200

    def more(self, times: list[float]) -> bool:
        """Whether another timed epoch is due after ``times``."""
        return len(times) < self.least or (sum(times) < self.min_time and len(times) < self.most)


def timed(epoch: Callable[[], Any], runs: Runs) -> tuple[float, list[float], Any]:
    """Run ``epoch`` once untimed (warm-up), then timed as ``runs`` says; returns (first, times, last result)."""
    t0 = time.perf_counter()
    epoch()
    first = time.perf_counter() - t0
    times: list[float] = []
    out = None
    while runs.more(times):
        t0 = time.perf_counter()
        out = epoch()
        times.append(time.perf_counter() - t0)
    return first, times, out


def blas_threads() -> str:
    blas = bench.numpy_blas()
    return f"BLAS {blas['num_threads']}" if blas.get("num_threads") else "BLAS default"


# --------------------------------------------------------------------------------------------
# (a) the book's algorithm, per example, float64


def peer_numpy_example(d: Data, runs: Runs) -> Result:
    X = d.X.astype(np.float64)
    Y = one_hot(d.y, np.float64)

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    def epoch() -> tuple[list[np.ndarray], list[np.ndarray]]:
        weights = [w.copy() for w in d.weights]  # (n_out, n_in), the book's
        biases = [b.reshape(-1, 1).copy() for b in d.biases]
        with np.errstate(over="ignore"):
            for k in range(0, d.n, BATCH):
                batch = d.order[k : k + BATCH]
                nabla_b = [np.zeros(b.shape) for b in biases]
                nabla_w = [np.zeros(w.shape) for w in weights]
                for i in batch:
                    x = X[i].reshape(-1, 1)
                    y = Y[i].reshape(-1, 1)
                    # backprop (network.py, chapter 1)
                    activation = x
                    activations = [x]
                    zs = []
                    for b, w in zip(biases, weights):
                        z = np.dot(w, activation) + b
                        zs.append(z)
                        activation = sigmoid(z)
                        activations.append(activation)
                    sp = activations[-1] * (1 - activations[-1])
                    delta = (activations[-1] - y) * sp
                    dnb = [delta]
                    dnw = [np.dot(delta, activations[-2].T)]
                    for layer in range(2, len(SIZES)):
                        a = activations[-layer]
                        delta = np.dot(weights[-layer + 1].T, delta) * (a * (1 - a))
                        dnb.insert(0, delta)
                        dnw.insert(0, np.dot(delta, activations[-layer - 1].T))
                    nabla_b = [nb + e for nb, e in zip(nabla_b, dnb)]
                    nabla_w = [nw + e for nw, e in zip(nabla_w, dnw)]
                m = len(batch)
                weights = [w - (ETA / m) * nw for w, nw in zip(weights, nabla_w)]
                biases = [b - (ETA / m) * nb for b, nb in zip(biases, nabla_b)]
        return weights, biases

    first, times, (Ws, bs) = timed(epoch, runs)
    acc = accuracy([w.T for w in Ws], [b.ravel() for b in bs], d.Xt, d.yt)
    return Result("numpy-example", "NumPy, per-example backprop (the book's algorithm), float64",
                  float(np.median(times)), times, first, acc, f"numpy {np.__version__}", blas_threads())  # fmt: skip


# --------------------------------------------------------------------------------------------
# (b) NumPy, the mini-batch as matrix products, float32


def peer_numpy_batch(d: Data, runs: Runs) -> Result:
    Y = one_hot(d.y, np.float32)
    dt = np.float32

    def epoch() -> tuple[list[np.ndarray], list[np.ndarray]]:
        Ws = [np.ascontiguousarray(w.T, dtype=dt) for w in d.weights]  # (n_in, n_out)
        bs = [b.astype(dt) for b in d.biases]
        L = len(Ws)
        with np.errstate(over="ignore"):
            for k in range(0, d.n, BATCH):
                idx = d.order[k : k + BATCH]
                A = [d.X[idx]]
                for W, b in zip(Ws, bs):
                    A.append(1 / (1 + np.exp(-(A[-1] @ W + b))))
                a = A[-1]
                D = (a - Y[idx]) * a * (1 - a)
                step = dt(ETA / idx.shape[0])
                for layer in range(L - 1, -1, -1):
                    gW = A[layer].T @ D
                    gb = D.sum(0)
                    if layer:
                        a = A[layer]
                        D = (D @ Ws[layer].T) * a * (1 - a)
                    Ws[layer] -= step * gW
                    bs[layer] -= step * gb
        return Ws, bs

    first, times, (Ws, bs) = timed(epoch, runs)
    return Result("numpy-batch", "NumPy, whole mini-batch as matrix products", float(np.median(times)), times, first,
                  accuracy(Ws, bs, d.Xt, d.yt), f"numpy {np.__version__}", blas_threads())  # fmt: skip


# --------------------------------------------------------------------------------------------
# (c, d) PyTorch


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise Skip(f"PyTorch is not installed ({exc})") from None


def _torch_epoch(d: Data, threads: int, compiled: bool) -> tuple[Callable[[], Any], Callable[[], str]]:
    torch = _torch()
    torch.set_num_threads(threads)
    X = torch.from_numpy(d.X)
    Y = torch.from_numpy(one_hot(d.y, np.float32))
    order = torch.from_numpy(d.order)

    model = torch.nn.Sequential(
        torch.nn.Linear(784, 16), torch.nn.Sigmoid(),
        torch.nn.Linear(16, 16), torch.nn.Sigmoid(),
        torch.nn.Linear(16, 10), torch.nn.Sigmoid(),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=ETA)
    initial = []
    for w, b in zip(d.weights, d.biases):
        initial += [torch.from_numpy(w.astype(np.float32)), torch.from_numpy(b.astype(np.float32))]

    def step(xb: Any, yb: Any) -> None:
        opt.zero_grad(set_to_none=True)
        a = model(xb)
        loss = 0.5 * ((a - yb) ** 2).sum(1).mean()
        loss.backward()
        opt.step()

    run_step = torch.compile(step) if compiled else step

    def epoch() -> Any:
        with torch.no_grad():  # back to the initial parameters, in place (a compiled step keeps its references)
            for p, p0 in zip(model.parameters(), initial):
                p.copy_(p0)
        Xp, Yp = X[order], Y[order]
        for k in range(0, d.n, BATCH):
            run_step(Xp[k : k + BATCH], Yp[k : k + BATCH])
        return model

    def params() -> tuple[list[np.ndarray], list[np.ndarray]]:
        lins = list(model[::2])
        return [lin.weight.detach().numpy().T for lin in lins], [lin.bias.detach().numpy() for lin in lins]

    return epoch, params


def _peer_torch(d: Data, runs: Runs, key: str, label: str, threads: int, compiled: bool) -> Result:
    torch = _torch()
    epoch, params = _torch_epoch(d, threads, compiled)
    first, times, _ = timed(epoch, runs)
    Ws, bs = params()
    note = "first epoch includes compilation" if compiled else ""
    return Result(key, label, float(np.median(times)), times, first, accuracy(Ws, bs, d.Xt, d.yt),
                  f"torch {torch.__version__}", f"{threads} thread{'s' if threads > 1 else ''}", note)  # fmt: skip


def peer_torch_lean(d: Data, runs: Runs) -> Result:
    torch = _torch()
    torch.set_num_threads(1)
    X = torch.from_numpy(d.X)
    Y = torch.from_numpy(one_hot(d.y, np.float32))
    order = torch.from_numpy(d.order)
    layout = [w.T for w in d.weights] + list(d.biases)  # weights (n_in, n_out), for x @ W
    initial = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in layout]
    params = [p.clone().requires_grad_(True) for p in initial]
    Ws, bs = params[:3], params[3:]
    scale = 0.5 / BATCH

    def epoch() -> Any:
        with torch.no_grad():
            for p, p0 in zip(params, initial):
                p.copy_(p0)
        Xp, Yp = X[order], Y[order]
        for k in range(0, d.n, BATCH):
            xb, yb = Xp[k : k + BATCH], Yp[k : k + BATCH]
            a = torch.sigmoid(torch.addmm(bs[0], xb, Ws[0]))
            a = torch.sigmoid(torch.addmm(bs[1], a, Ws[1]))
            a = torch.sigmoid(torch.addmm(bs[2], a, Ws[2]))
            loss = ((a - yb) ** 2).sum() * (scale * BATCH / xb.shape[0])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                torch._foreach_add_(params, grads, alpha=-ETA)
        return params

    first, times, _ = timed(epoch, runs)
    W_np = [w.detach().numpy() for w in Ws]
    b_np = [b.detach().numpy() for b in bs]
    return Result("torch-lean", "PyTorch eager, lean step (autograd.grad, foreach), 1 thread",
                  float(np.median(times)), times, first, accuracy(W_np, b_np, d.Xt, d.yt), f"torch {torch.__version__}",
                  "1 thread", "")  # fmt: skip


def peer_torch_eager_1(d: Data, runs: Runs) -> Result:
    return _peer_torch(d, runs, "torch-eager-1", "PyTorch eager, 1 thread", 1, False)


def peer_torch_eager_2(d: Data, runs: Runs) -> Result:
    return _peer_torch(d, runs, "torch-eager-2", "PyTorch eager, 2 threads", 2, False)


def peer_torch_compile(d: Data, runs: Runs) -> Result:
    return _peer_torch(d, runs, "torch-compile", "PyTorch, torch.compile of the step, 1 thread", 1, True)


# --------------------------------------------------------------------------------------------
# (e) scikit-learn


def peer_sklearn(d: Data, runs: Runs) -> Result:
    try:
        import sklearn
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:
        raise Skip(f"scikit-learn is not installed ({exc})") from None
    import warnings

    def epoch() -> Any:
        clf = MLPClassifier(hidden_layer_sizes=(16, 16), activation="logistic", solver="sgd", batch_size=BATCH,
                            learning_rate="constant", learning_rate_init=SKLEARN_ETA, momentum=0.0,
                            nesterovs_momentum=False, alpha=0.0, shuffle=False, random_state=INIT_SEED)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(d.X[d.order], d.y[d.order], classes=np.arange(10))
        return clf

    first, times, clf = timed(epoch, runs)
    return Result("sklearn", "scikit-learn MLPClassifier(16, 16), sgd (softmax output)", float(np.median(times)),
                  times, first, float(clf.score(d.Xt, d.yt)), f"scikit-learn {sklearn.__version__}", blas_threads(),
                  f"log-loss, Glorot init, eta {SKLEARN_ETA:g}")  # fmt: skip


# --------------------------------------------------------------------------------------------
# (f, g) JAX


def _jax() -> tuple[Any, Any, Any]:
    try:
        jax = importlib.import_module("jax")
        jnp = importlib.import_module("jax.numpy")
    except ImportError as exc:
        raise Skip(f"JAX is not installed ({exc})") from None
    return jax, jnp, jax.lax


def _jax_parts(d: Data) -> tuple[Any, Callable[..., Any], Any, Any]:
    jax, jnp, lax = _jax()

    def params0() -> list[tuple[Any, Any]]:
        return [(jnp.asarray(w.T, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in zip(d.weights, d.biases)]

    def loss(params: Any, xb: Any, yb: Any) -> Any:
        a = xb
        for W, b in params:
            a = jax.nn.sigmoid(a @ W + b)
        return 0.5 * jnp.mean(jnp.sum((a - yb) ** 2, axis=1))

    grad = jax.grad(loss)

    def sgd(params: Any, xb: Any, yb: Any) -> Any:
        g = grad(params, xb, yb)
        return jax.tree_util.tree_map(lambda p, gp: p - ETA * gp, params, g)

    X = jax.device_put(d.X)
    Y = jax.device_put(one_hot(d.y, np.float32))
    return params0, sgd, X, Y


def _jax_block(params: Any) -> Any:
    jax, _, _ = _jax()
    return jax.block_until_ready(params)


def peer_jax_step(d: Data, runs: Runs) -> Result:
    jax, jnp, lax = _jax()
    params0, sgd, _, _ = _jax_parts(d)
    Y = one_hot(d.y, np.float32)
    step = jax.jit(sgd, donate_argnums=0)

    def epoch() -> Any:
        params = params0()
        Xp, Yp = d.X[d.order], Y[d.order]
        for k in range(0, d.n, BATCH):
            params = step(params, Xp[k : k + BATCH], Yp[k : k + BATCH])
        return _jax_block(params)

    first, times, params = timed(epoch, runs)
    Ws, bs = [np.asarray(W) for W, _ in params], [np.asarray(b) for _, b in params]
    return Result("jax-step", "JAX, a jitted step per mini-batch", float(np.median(times)), times, first,
                  accuracy(Ws, bs, d.Xt, d.yt), f"jax {jax.__version__}", "XLA default",
                  "first epoch includes compilation")  # fmt: skip


def peer_jax_scan(d: Data, runs: Runs) -> Result:
    jax, jnp, lax = _jax()
    params0, sgd, X, Y = _jax_parts(d)
    order = jax.device_put(d.order)
    nb = d.n // BATCH
    full = nb * BATCH

    @jax.jit
    def run_epoch(params: Any, X: Any, Y: Any, order: Any) -> Any:
        Xp = X[order[:full]].reshape(nb, BATCH, X.shape[1])
        Yp = Y[order[:full]].reshape(nb, BATCH, Y.shape[1])

        def body(p: Any, xy: Any) -> tuple[Any, None]:
            return sgd(p, *xy), None

        params, _ = lax.scan(body, params, (Xp, Yp))
        if full < X.shape[0]:  # a shorter last mini-batch (only with --limit)
            params = sgd(params, X[order[full:]], Y[order[full:]])
        return params

    def epoch() -> Any:
        return _jax_block(run_epoch(params0(), X, Y, order))

    first, times, params = timed(epoch, runs)
    Ws, bs = [np.asarray(W) for W, _ in params], [np.asarray(b) for _, b in params]
    return Result("jax-scan", "JAX, the whole epoch in one jitted lax.scan", float(np.median(times)), times, first,
                  accuracy(Ws, bs, d.Xt, d.yt), f"jax {jax.__version__}", "XLA default",
                  "first epoch includes compilation")  # fmt: skip


# --------------------------------------------------------------------------------------------
# fastgd itself, as a user calls it


def _peer_fastgd(d: Data, runs: Runs, backend: str) -> Result:
    ok, reason = fastgd.backends.available(backend)
    if not ok:
        raise Skip(f"fastgd backend {backend!r} is not available: {reason}")
    X, y = d.X, d.y

    def make() -> fastgd.Network:
        return fastgd.Network(SIZES, activation="sigmoid", cost="quadratic", init="normal", seed=INIT_SEED,
                              dtype="float32", backend=backend)  # fmt: skip

    nets: list[fastgd.Network] = []
    times: list[float] = []
    first = math.nan
    while math.isnan(first) or runs.more(times):
        net = make()  # not timed: the user's call is fit
        t0 = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=BATCH, eta=ETA, optimizer="sgd", seed=ORDER_SEED)
        t = time.perf_counter() - t0
        if math.isnan(first):
            first = t
        else:
            times.append(t)
        nets[:] = [net]
    net = nets[0]
    threads = ""
    note = ""
    if backend == "cpp":
        info = fastgd.backends.load("cpp").info()
        n_threads = info.get("threads", "?")
        threads = f"{n_threads} thread{'' if n_threads == 1 else 's'}"
        note = f"{info.get('isa', '?')} kernels"
    elif backend == "numba":
        import numba

        n_threads = min(numba.get_num_threads(), 2)  # batch 10 of 784 inputs: the first layer in two parts
        threads = f"{n_threads} thread{'' if n_threads == 1 else 's'}"
        note = f"numba {numba.__version__}; first epoch includes compilation or cache load"
    else:
        threads = blas_threads()
    Ws = [w.T for w in net.weights]
    return Result(f"fastgd-{backend}", f"fastgd, {backend} backend (Network.fit)", float(np.median(times)), times,
                  first, accuracy(Ws, net.biases, d.Xt, d.yt), f"fastgd {fastgd.__version__}", threads,
                  note)  # fmt: skip


PEERS: dict[str, Callable[[Data, Runs], Result]] = {
    "numpy-example": peer_numpy_example,
    "torch-eager-1": peer_torch_eager_1,
    "torch-eager-2": peer_torch_eager_2,
    "torch-compile": peer_torch_compile,
    "torch-lean": peer_torch_lean,
    "sklearn": peer_sklearn,
    "jax-step": peer_jax_step,
    "numpy-batch": peer_numpy_batch,
    "jax-scan": peer_jax_scan,
    "fastgd-numpy": lambda d, runs: _peer_fastgd(d, runs, "numpy"),
    "fastgd-numba": lambda d, runs: _peer_fastgd(d, runs, "numba"),
    "fastgd-cpp": lambda d, runs: _peer_fastgd(d, runs, "cpp"),
}
REFERENCE = "fastgd-cpp" if fastgd.backends.available("cpp")[0] else f"fastgd-{fastgd.backends.default_name()}"


def select(only: str | None) -> list[str]:
    """Peer keys to run, in table order; fastgd-cpp always among them."""
    if not only:
        return list(PEERS)
    wanted: set[str] = set()
    for name in (s.strip().lower() for s in only.split(",") if s.strip()):
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in PEERS:
            wanted.add(name)
        else:
            choices = ", ".join([*GROUPS, *PEERS])
            raise SystemExit(f"peers.py: unknown peer {name!r}; choose from {choices}")
    wanted.add(REFERENCE)
    return [k for k in PEERS if k in wanted]


def load(data_dir: str | None, limit: int | None) -> Data:
    X, y = fastgd.load_mnist("train", data_dir=data_dir, dtype="float32")
    Xt, yt = fastgd.load_mnist("test", data_dir=data_dir, dtype="float32")
    if limit:
        X, y = X[:limit], y[:limit]
    order = np.random.default_rng(ORDER_SEED).permutation(X.shape[0]).astype(np.int64)
    net = fastgd.Network(SIZES, activation="sigmoid", cost="quadratic", init="normal", seed=INIT_SEED, dtype="float64",
                         backend="numpy")  # fmt: skip
    return Data(X=X, y=y.astype(np.int64), Xt=Xt, yt=yt.astype(np.int64), order=order,
                weights=[w.copy() for w in net.weights], biases=[b.copy() for b in net.biases])  # fmt: skip


def format_table(results: list[Result], machine: dict[str, Any], n: int, runs: Runs, min_acc: float) -> str:
    ref = next((r for r in results if r.key == REFERENCE and not r.skipped), None)
    ref_label = REFERENCE if ref else "fastgd"
    head = (f"{'peer':<62}{'s/epoch':>9}{'runs':>6}{'first':>8}{'test acc':>9}  {ref_label + ' is':<16}{'threads':<13}"
            "version")  # fmt: skip
    lines = [
        f"One epoch of {n:,} MNIST images, 784-16-16-10 sigmoid, quadratic cost, N(0, 1) init, plain SGD, batch 10, "
        f"eta 3.0, float32 unless said; median of the timed runs ('runs': at least {runs.least}, and more while "
        f"they add up to less than {runs.min_time:g} s) after one untimed epoch ('first').",
        *bench.describe_machine(machine),
        "",
        head,
        "-" * len(head),
    ]
    done = [r for r in results if not r.skipped]
    ordered = sorted((r for r in done if not r.key.startswith("fastgd")), key=lambda r: -r.seconds)
    ordered += sorted((r for r in done if r.key.startswith("fastgd")), key=lambda r: -r.seconds)
    for r in ordered:
        if ref is not None and r is not ref:
            ratio = r.seconds / ref.seconds
            speed = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
        else:
            speed = "(reference)"
        flag = "" if r.accuracy > min_acc else "  DID NOT LEARN"
        lines.append(f"{r.label:<62}{r.seconds:>9.3g}{len(r.runs):>6}{r.first:>8.3g}{r.accuracy:>9.2%}  {speed:<16}"
                     f"{r.threads:<13}{r.version}{'; ' + r.note if r.note else ''}{flag}")  # fmt: skip
    for r in results:
        if r.skipped:
            lines.append(f"{r.label or r.key:<62} skipped: {r.skipped}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="timed epochs per peer at least; the median is shown (default: 3)")  # fmt: skip
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="a peer runs more timed epochs while they add up to less than this many seconds "
                        "(default: 1; at most 200 epochs; 0 for exactly --runs)")  # fmt: skip
    parser.add_argument("--only", default=None,
                        help=f"comma-separated peers or groups ({', '.join(GROUPS)}); fastgd-cpp always "
                        "runs")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST (default: $FASTGD_DATA, then the cache)")
    parser.add_argument("--limit", type=int, default=0, help="train on the first N images only (default: all 60,000)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="test accuracy a peer must pass to count as having learned (default: 0.85; "
                        "0.3 with --limit: 2,000 images take the book's SGD to about 41%%)")  # fmt: skip
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not args.min_time >= 0:
        parser.error("--min-time must be 0 or more seconds")
    runs = Runs(args.runs, args.min_time)
    if args.min_accuracy is None:
        args.min_accuracy = 0.3 if args.limit else 0.85
    keys = select(args.only)
    data = load(args.data_dir, args.limit or None)
    results = []
    for key in keys:
        print(f"  {key} ...", end="", file=sys.stderr, flush=True)
        try:
            r = PEERS[key](data, runs)
            print(f" {r.seconds:.4g} s/epoch (first {r.first:.3g} s), test accuracy {r.accuracy:.2%}",
                  file=sys.stderr, flush=True)  # fmt: skip
        except Skip as exc:
            r = Result(key, key, skipped=str(exc))
            print(f" skipped: {exc}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - one broken peer must not hide the others
            traceback.print_exc()
            r = Result(key, key, skipped=f"failed: {type(exc).__name__}: {exc}")
        results.append(r)
    machine = bench.machine_info()
    for mod in ("torch", "jax", "jaxlib", "sklearn"):
        if mod in sys.modules:
            machine[mod] = getattr(sys.modules[mod], "__version__", "?")
    print(format_table(results, machine, data.n, runs, args.min_accuracy))
    peers = [f"{m} {machine[m]}" for m in ("torch", "jax", "jaxlib", "sklearn") if m in machine]
    print("peer versions: " + (", ".join(peers) if peers else "none imported"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine, "n": data.n, "runs": asdict(runs), "results": [asdict(r) for r in results]},
                      fh, indent=1, default=str)  # fmt: skip
    failed = [r.key for r in results if not r.skipped and not r.accuracy > args.min_accuracy]
    if failed:
        print(f"did not learn (test accuracy <= {args.min_accuracy:.0%}): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
