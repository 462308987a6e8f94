"""Compiled (Numba) training and inference loops of a dense softmax MLP.

The whole epoch, every mini-batch, forward and backward pass and optimizer
update, runs inside one compiled function, so a step costs its arithmetic
and nothing else: no per-op dispatch, no per-step Python. Matrix products go
to single-threaded BLAS (``np.dot``), split across Numba's threads, each of
which flushes denormals; the optimizer update is one vectorised loop per
slice of parameters.

The mathematics is Keras's (see :mod:`mnist_mlp.training.loop`): parameters
are float32 and laid out flat, layer by layer, kernel (row-major, shape
``(n_in, n_out)``) then bias, exactly as Keras stores them.
"""

from __future__ import annotations

import contextlib
import platform

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from numba.typed import List

# Codes shared with mnist_mlp.training.keras_adapter and the XLA program.
from mnist_mlp.training.codes import (  # noqa: E402,F401  (re-exported: the kernels' own names)
    ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_TANH, OPT_ADAM, OPT_RMSPROP, OPT_SGD, PENALTY_L1, PENALTY_L2,
    PENALTY_NONE,
)

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
# keras.backend.epsilon(): MaxNorm divides by it plus the norm.
_EPSILON = np.float32(1e-7)
# Parameters per cache block of an online (batch size 1) update.
_BLOCK = 16384
# SplitMix64 (Steele, Lea & Flood 2014; Java's SplittableRandom): the inputs' dropout bits.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Keys the inputs' generator off the epoch's seed, apart from the hidden masks' NumPy stream.
_INPUT_SALT = np.uint64(0x6A09E667F3BCC909)

# MXCSR bits: flush denormal results to zero (FTZ), read denormals as zero (DAZ).
_FTZ_DAZ = 0x8040
_X86 = platform.machine().lower() in ("x86_64", "amd64")
#: Set False to measure what flushing saves in the calling thread
#: (benchmarks/training_speed.py --ablation); threads that split a matrix
#: product always flush.
FLUSH_DENORMALS = True


def _mxcsr_call(builder, name, slot):
    i8_ptr = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8_ptr])
    builder.call(builder.module.declare_intrinsic(name, fnty=fnty), [builder.bitcast(slot, i8_ptr)])


@intrinsic
def _mxcsr_set_bits(typingctx, bits):
    """OR ``bits`` into the SSE control register; return its previous value."""

    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, args[0]), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return old

    return types.uint32(types.uint32), codegen


@intrinsic
def _mxcsr_load(typingctx, value):
    """Load ``value`` into the SSE control register."""

    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.none(types.uint32), codegen


@intrinsic
def _fma32(typingctx, a, b, c):
    """``a * b + c`` in float32 with one rounding (LLVM's fma; vectorised like any arithmetic).

    The forward pass's first product, summed here row by row for online training, rounds
    as BLAS's and TensorFlow's kernels do: a multiply and an add rounded apart drifted
    further from the float64 reference (a 0.6 % error in an Adam update whose gradient
    nearly cancels, against the 0.1 % the kernel tests allow).
    """

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fnty = ir.FunctionType(f32, [f32, f32, f32])
        return builder.call(builder.module.declare_intrinsic("llvm.fma", [f32], fnty=fnty), args)

    return types.float32(types.float32, types.float32, types.float32), codegen


if _X86:

    @njit(cache=True, nogil=True)
    def _flush_on():
        return _mxcsr_set_bits(np.uint32(_FTZ_DAZ))

    @njit(cache=True, nogil=True)
    def _flush_restore(old):
        _mxcsr_load(old)

else:  # the SSE control register is x86's: elsewhere, nothing to set

    @njit(cache=True, nogil=True)
    def _flush_on():
        return np.uint32(0)

    @njit(cache=True, nogil=True)
    def _flush_restore(old):
        pass


@contextlib.contextmanager
def flush_denormals():
    """Flush float denormals to zero in this thread, as TensorFlow's CPU kernels do.

    Adam's and RMSprop's slots of weights that rarely get a gradient (MNIST's
    border pixels) decay into the denormal range, where x86 arithmetic is
    about 100x slower; TensorFlow sets the same mode for its own threads.
    """
    if not (_X86 and FLUSH_DENORMALS):
        yield
        return
    old = _flush_on()
    try:
        yield
    finally:
        _flush_restore(old)


@njit(cache=True, nogil=True, error_model="numpy")
def _activate(z, code):
    if code == ACT_RELU:
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                if z[i, j] < 0:  # NaN stays NaN, as in tf.nn.relu
                    z[i, j] = _ZERO
    elif code == ACT_TANH:
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                z[i, j] = np.tanh(z[i, j])
    elif code == ACT_SIGMOID:
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                z[i, j] = _ONE / (_ONE + np.exp(-z[i, j]))


@njit(cache=True, nogil=True, error_model="numpy")
def _activation_grad(d, a, code):
    """``d *= f'(z)``, written with the activation's output ``a = f(z)``."""
    if code == ACT_RELU:
        for i in range(d.shape[0]):
            for j in range(d.shape[1]):
                if not a[i, j] > 0:
                    d[i, j] = _ZERO
    elif code == ACT_TANH:
        for i in range(d.shape[0]):
            for j in range(d.shape[1]):
                d[i, j] *= _ONE - a[i, j] * a[i, j]
    elif code == ACT_SIGMOID:
        for i in range(d.shape[0]):
            for j in range(d.shape[1]):
                d[i, j] *= a[i, j] * (_ONE - a[i, j])


# A.T @ D (a kernel's gradient) over fewer rows (a small batch) is not split.
_PARALLEL_MIN_ROWS = 64
# Products are split in blocks whose size depends on the shape only, never on
# the number of threads: BLAS may sum a block of another size in another
# order, so blocks sized by the thread count would make the weights depend, in
# their last bits, on the cores a fit ran on (a one-thread Dask worker against
# a laptop).
# At least 128 rows (64 columns) a block: smaller ones pay BLAS's packing of
# the other operand again for each block (14 % slower epochs at batch 256);
# at most 8 blocks, so that large products still use up to 8 threads.
MIN_BLOCK_ROWS = 128
_MIN_BLOCK_COLS = 64
_MAX_BLOCKS = 8


@njit(cache=True, nogil=True, error_model="numpy")
def _block_size(n, smallest):
    return max(smallest, (n + _MAX_BLOCKS - 1) // _MAX_BLOCKS)


# BLAS's own worker threads do not flush denormals (TensorFlow's do), and a
# product that meets them runs up to 10x slower: with an L2 or L1 penalty,
# weights and gradients shrink into that range. So BLAS runs single-threaded
# inside our loop and the products are split across Numba's threads here,
# each flushing denormals like the calling thread.


# The products' entry points are compiled without ``parallel=True`` and call a
# parallel function only to split work: inside a parallel function Numba also
# turns array assignments (a block's copy into ``out``) into parallel loops, so
# even the single-threaded path ran parallel regions, whose idle OpenMP threads
# then spun on the other cores (1.85 cores busy for one single-threaded fit,
# and fits side by side in processes slowed each other 4x).


@njit(cache=True, nogil=True, error_model="numpy")
def matmul(A, B, n_threads):
    """``A @ B`` in blocks of rows of ``A`` (see ``_block_size``), shared among ``n_threads`` threads."""
    rows = A.shape[0]
    size = _block_size(rows, MIN_BLOCK_ROWS)
    n_blocks = (rows + size - 1) // size
    if n_blocks == 1:
        return np.dot(A, B)
    out = np.empty((rows, B.shape[1]), np.float32)
    if n_threads <= 1:  # the same blocks, on the calling thread only
        for b in range(n_blocks):
            out[b * size:(b + 1) * size] = np.dot(A[b * size:(b + 1) * size], B)
    else:
        _matmul_blocks(A, B, out, size, n_blocks, n_threads)
    return out


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _matmul_blocks(A, B, out, size, n_blocks, n_threads):
    workers = min(n_threads, n_blocks)
    for w in prange(workers):
        old = _flush_on()
        for b in range(w, n_blocks, workers):
            out[b * size:(b + 1) * size] = np.dot(A[b * size:(b + 1) * size], B)
        _flush_restore(old)


@njit(cache=True, nogil=True, error_model="numpy")
def matmul_tn(A, D, out, n_threads):
    """``out[:] = A.T @ D`` in blocks of columns of ``D`` (see ``_block_size``), shared among threads."""
    cols = D.shape[1]
    size = _block_size(cols, _MIN_BLOCK_COLS)
    if A.shape[0] < _PARALLEL_MIN_ROWS or cols <= size:
        out[:] = np.dot(A.T, D)
        return
    n_blocks = (cols + size - 1) // size
    if n_threads <= 1:  # the same blocks, on the calling thread only
        for b in range(n_blocks):
            hi = min((b + 1) * size, cols)
            out[:, b * size:hi] = np.dot(A.T, np.ascontiguousarray(D[:, b * size:hi]))
    else:
        _matmul_tn_blocks(A, D, out, size, n_blocks, n_threads)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _matmul_tn_blocks(A, D, out, size, n_blocks, n_threads):
    cols = D.shape[1]
    workers = min(n_threads, n_blocks)
    for w in prange(workers):
        old = _flush_on()
        for b in range(w, n_blocks, workers):
            hi = min((b + 1) * size, cols)
            out[:, b * size:hi] = np.dot(A.T, np.ascontiguousarray(D[:, b * size:hi]))
        _flush_restore(old)


@njit(cache=True, nogil=True, error_model="numpy")
def _kernel(theta, offsets, dims, layer):
    start = offsets[layer]
    return theta[start:start + dims[layer] * dims[layer + 1]].reshape((dims[layer], dims[layer + 1]))


@njit(cache=True, nogil=True, error_model="numpy")
def _bias(theta, offsets, dims, layer):
    start = offsets[layer] + dims[layer] * dims[layer + 1]
    return theta[start:start + dims[layer + 1]]


@njit(cache=True, nogil=True, error_model="numpy")
def _logits(theta, offsets, dims, x, act, n_threads):
    """Forward pass without dropout: the output layer's logits."""
    h = x
    n_layers = dims.shape[0] - 1
    for layer in range(n_layers):
        z = matmul(h, _kernel(theta, offsets, dims, layer), n_threads)
        z += _bias(theta, offsets, dims, layer)
        if layer < n_layers - 1:
            _activate(z, act)
        h = z
    return h


@njit(cache=True, nogil=True, error_model="numpy")
def _log_sum_exp(z, i):
    m = z[i, 0]
    for k in range(1, z.shape[1]):
        if z[i, k] > m:
            m = z[i, k]
    s = _ZERO
    for k in range(z.shape[1]):
        s += np.exp(z[i, k] - m)
    return m + np.log(s)


@njit(cache=True, nogil=True, error_model="numpy")
def _softmax_rows(z):
    """Softmax of each row, in place."""
    for i in range(z.shape[0]):
        lse = _log_sum_exp(z, i)
        for k in range(z.shape[1]):
            z[i, k] = np.exp(z[i, k] - lse)


@njit(cache=True, nogil=True, error_model="numpy")
def _argmax_row(z, i):
    best = 0
    for k in range(1, z.shape[1]):
        if z[i, k] > z[i, best]:
            best = k
    return best


@njit(cache=True, nogil=True, error_model="numpy")
def penalty_value(theta, offsets, dims, penalty, alpha):
    """The weight penalty of the hidden kernels (what Keras adds to the loss)."""
    total = np.float64(0.0)
    for layer in range(dims.shape[0] - 2):
        start = offsets[layer]
        total += _penalty_sum(theta[start:start + dims[layer] * dims[layer + 1]], penalty)
    return alpha * total


@njit(cache=True, nogil=True, error_model="numpy")
def predict_proba(theta, offsets, dims, act, X, chunk, n_threads):
    """Softmax probabilities of ``X``, computed ``chunk`` rows at a time."""
    out = np.empty((X.shape[0], dims[-1]), np.float32)
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        z = _logits(theta, offsets, dims, X[start:stop], act, n_threads)
        _softmax_rows(z)
        out[start:stop] = z
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def evaluate(theta, offsets, dims, act, X, y, chunk, n_threads):
    """Summed cross-entropy and the count of correct predictions over ``X``."""
    loss = np.float64(0.0)
    correct = 0
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        z = _logits(theta, offsets, dims, X[start:stop], act, n_threads)
        for i in range(stop - start):
            k = y[start + i]
            if _argmax_row(z, i) == k:
                correct += 1
            loss += _log_sum_exp(z, i) - z[i, k]
    return loss, correct


# The update loops are branch-free so that LLVM vectorises them: at batch
# size 1 they are most of a step's work.


@njit(cache=True, nogil=True, error_model="numpy")
def _add_penalty_grad(w, g, penalty, alpha):
    if penalty == PENALTY_L1:
        for i in range(w.shape[0]):
            g[i] += alpha * (_ONE if w[i] > 0 else (-_ONE if w[i] < 0 else _ZERO))
    elif penalty == PENALTY_L2:
        two_alpha = np.float32(2.0) * alpha
        for i in range(w.shape[0]):
            g[i] += two_alpha * w[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _penalty_sum(w, penalty):
    total = np.float64(0.0)
    if penalty == PENALTY_L1:
        for i in range(w.shape[0]):
            total += abs(w[i])
    elif penalty == PENALTY_L2:
        for i in range(w.shape[0]):
            total += w[i] * w[i]
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def _adam(theta, grad, m, v, n, step, one_minus_b1, one_minus_b2, eps):
    for i in range(n):
        g = grad[i]
        mi = m[i] + (g - m[i]) * one_minus_b1
        vi = v[i] + (g * g - v[i]) * one_minus_b2
        m[i] = mi
        v[i] = vi
        theta[i] -= (mi * step) / (np.sqrt(vi) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _amsgrad(theta, grad, m, v, v_hat, n, step, one_minus_b1, one_minus_b2, eps):
    for i in range(n):
        g = grad[i]
        mi = m[i] + (g - m[i]) * one_minus_b1
        vi = v[i] + (g * g - v[i]) * one_minus_b2
        m[i] = mi
        v[i] = vi
        vh = max(v_hat[i], vi)
        v_hat[i] = vh
        theta[i] -= (mi * step) / (np.sqrt(vh) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _rmsprop(theta, grad, velocity, average, momentum, n, lr, rho, eps, mom, centered):
    one_minus_rho = _ONE - rho
    for i in range(n):
        g = grad[i]
        vi = rho * velocity[i] + one_minus_rho * (g * g)
        velocity[i] = vi
        if centered:
            ai = rho * average[i] + one_minus_rho * g
            average[i] = ai
            denominator = vi - ai * ai + eps
        else:
            denominator = vi + eps
        increment = (lr * g) / np.sqrt(denominator)
        if mom > 0:
            mi = mom * momentum[i] + increment
            momentum[i] = mi
            theta[i] -= mi
        else:
            theta[i] -= increment


@njit(cache=True, nogil=True, error_model="numpy")
def _sgd(theta, grad, momentum, n, lr, mom, nesterov):
    if mom == 0:
        for i in range(n):
            theta[i] -= grad[i] * lr
    elif nesterov:
        for i in range(n):
            mi = momentum[i] * mom - grad[i] * lr
            momentum[i] = mi
            theta[i] += mi * mom - grad[i] * lr
    else:
        for i in range(n):
            mi = momentum[i] * mom - grad[i] * lr
            momentum[i] = mi
            theta[i] += mi


@njit(cache=True, nogil=True, error_model="numpy")
def _step_size(opt, hyper, t):
    """The step's learning rate: Adam's bias-corrected one, else ``lr``."""
    if opt == OPT_ADAM:
        return hyper[0] * np.sqrt(_ONE - hyper[5] ** t) / (_ONE - hyper[4] ** t)
    return hyper[0]


@njit(cache=True, nogil=True, error_model="numpy")
def _update(w, g, s0, s1, s2, penalty, alpha, opt, hyper, step):
    """Keras's update rule on the parameters ``w`` (views) with gradient ``g``.

    ``hyper``: Adam ``(lr, 1-beta_1, 1-beta_2, epsilon, beta_1, beta_2, amsgrad)``;
    RMSprop ``(lr, rho, epsilon, momentum, centered)``; SGD ``(lr, momentum, nesterov)``.
    ``s0, s1, s2`` are the optimizer's slots for ``w`` (1D, contiguous:
    strided views would not vectorise). Returns the penalty of the updated ``w``.
    """
    _add_penalty_grad(w, g, penalty, alpha)
    n = w.shape[0]
    if opt == OPT_ADAM:
        if hyper[6] > 0:
            _amsgrad(w, g, s0, s1, s2, n, step, hyper[1], hyper[2], hyper[3])
        else:
            _adam(w, g, s0, s1, n, step, hyper[1], hyper[2], hyper[3])
    elif opt == OPT_RMSPROP:
        _rmsprop(w, g, s0, s1, s2, n, step, hyper[1], hyper[2], hyper[3],
                 hyper[4] > 0)
    else:
        _sgd(w, g, s0, n, step, hyper[1], hyper[2] > 0)
    return _penalty_sum(w, penalty)


@njit(cache=True, nogil=True, error_model="numpy")
def _max_norm(w, max_value):
    """Keras's ``MaxNorm(max_value, axis=0)`` on a kernel ``w`` (n_in, n_out), in place: each
    unit's incoming weights (a column) times ``min(norm, max_value) / (epsilon + norm)``, as
    Keras applies it after every update (so a column under the bound shrinks by ``epsilon / norm``)."""
    n_in, n_out = w.shape
    norms = np.zeros(n_out, np.float32)
    for i in range(n_in):  # row by row: w is row-major, and this loop vectorises
        row = w[i]
        for j in range(n_out):
            norms[j] += row[j] * row[j]
    for j in range(n_out):
        norm = np.sqrt(norms[j])
        norms[j] = min(norm, max_value) / (_EPSILON + norm)
    for i in range(n_in):
        row = w[i]
        for j in range(n_out):
            row[j] *= norms[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _layer_penalty(penalty, layer, n_layers):
    """The penalty on a layer's kernel: a hidden layer's (the study regularizes those), never the output's."""
    return penalty if layer < n_layers - 1 else PENALTY_NONE


@njit(cache=True, nogil=True, error_model="numpy")
def _online_block(theta, grad, s0, s1, s2, x, d, lo, i0, i1, n_out, penalty, alpha, opt, hyper, step):
    """Rows ``i0:i1`` of an online (batch size 1) kernel update: their gradient, the outer
    product ``x[i0:i1] d``, written into the head of ``grad`` (the same ``_BLOCK`` values
    for every block, so that they stay in cache), then Keras's update. Returns the penalty
    of the updated rows.
    """
    at, end = lo + i0 * n_out, lo + i1 * n_out
    g = grad[:end - at]
    rows = g.reshape((i1 - i0, n_out))
    for i in range(i0, i1):
        # A row view, not g[row + j]: LLVM vectorises this loop, not the indexed one (10x).
        g_row = rows[i - i0]
        xi = x[i]
        for j in range(n_out):
            g_row[j] = xi * d[j]
    return _update(theta[at:end], g, s0[at:end], s1[at:end], s2[at:end], penalty, alpha, opt, hyper, step)


@njit(cache=True, nogil=True, error_model="numpy")
def _online_kernel_update(theta, grad, s0, s1, s2, x, d, lo, plan, first, last, n_out, penalty, alpha, opt, hyper,
                          step):
    """One kernel's update from a single row (the last batch of an epoch of larger batches): its
    gradient, the outer product ``x d``, made and applied block by block (rows
    ``first:last`` of :func:`_online_plan`), so that the working set (parameters, slots,
    gradient block) stays in cache. Returns the kernel's penalty after the update, summed in
    block order as the online workers' penalties are. On the calling thread.
    """
    total = np.float64(0.0)
    for b in range(first, last):
        total += _online_block(theta, grad, s0, s1, s2, x, d, lo, plan[b, 1], plan[b, 2], n_out, penalty, alpha,
                               opt, hyper, step)
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def _online_plan(offsets, dims, workers):
    """The blocks of every kernel's online update, in the serial order: rows ``(layer, i0, i1,
    worker)``, and where each layer's blocks start (``starts[layer]:starts[layer + 1]``).

    Workers own parameters, the same every step, so that they stay in their core's cache:
    worker 0 the later layers and the first blocks of the first layer, the others the rest of
    the first layer, about as many parameters each. The first layer's product in the forward
    pass is summed over the same blocks (see :func:`_online_worker`), whatever the workers.
    """
    n_layers = dims.shape[0] - 1
    starts = np.zeros(n_layers + 1, np.int64)
    for layer in range(n_layers):
        block = max(1, _BLOCK // dims[layer + 1])
        starts[layer + 1] = starts[layer] + (dims[layer] + block - 1) // block
    plan = np.zeros((starts[n_layers], 4), np.int64)
    total = 0
    for layer in range(n_layers):
        block = max(1, _BLOCK // dims[layer + 1])
        for b in range(starts[layer], starts[layer + 1]):
            i0 = (b - starts[layer]) * block
            plan[b, 0], plan[b, 1], plan[b, 2] = layer, i0, min(i0 + block, dims[layer])
            total += (plan[b, 2] - i0) * dims[layer + 1]
    load = total - dims[0] * dims[1]  # worker 0's later layers
    share = total / workers
    for b in range(starts[0], starts[1]):
        size = (plan[b, 2] - plan[b, 1]) * dims[1]
        plan[b, 3] = min(workers - 1, int((load + size / 2) // share))
        load += size
    return plan, starts


@njit(cache=True, nogil=True, error_model="numpy")
def _online_worker(w, theta, grad, s0, s1, s2, xs, ds, x_at, d_at, plan, pens, x_next, parts, offsets, dims,
                   penalty, alpha, opt, hyper, step):
    """Worker ``w``'s part of an online step: its blocks' updates (each block's penalty into
    ``pens``, which the caller sums in the serial order), with its own gradient scratch
    ``grad[w * _BLOCK:]``; and, while a first-layer block's rows are in cache, their share of
    the next row's first product: ``parts[b] = x_next[i0:i1] @ kernel[i0:i1]``. The caller sums
    the parts in block order, so the forward pass gives the same bits on any number of workers.
    """
    n_layers = dims.shape[0] - 1
    scratch = grad[w * _BLOCK:(w + 1) * _BLOCK]
    for b in range(plan.shape[0]):
        if plan[b, 3] != w:
            continue
        layer, i0, i1 = plan[b, 0], plan[b, 1], plan[b, 2]
        n_in, n_out = dims[layer], dims[layer + 1]
        layer_penalty = _layer_penalty(penalty, layer, n_layers)
        pens[b] = _online_block(theta, scratch, s0, s1, s2, xs[x_at[layer]:x_at[layer] + n_in],
                                ds[d_at[layer]:d_at[layer] + n_out], offsets[layer], i0, i1, n_out,
                                layer_penalty, alpha, opt, hyper, step)
        if layer == 0 and x_next.shape[0] > 0:
            _first_product_part(theta, offsets, dims, x_next, i0, i1, parts[b])


@njit(cache=True, nogil=True, error_model="numpy")
def _first_product_part(theta, offsets, dims, x, i0, i1, part):
    """``part = x[i0:i1] @ kernel0[i0:i1]``, row after row (each row's loop vectorises)."""
    n_out = dims[1]
    kernel = theta[offsets[0]:offsets[0] + dims[0] * n_out].reshape((dims[0], n_out))
    part[:] = _ZERO
    for i in range(i0, i1):
        row = kernel[i]
        xi = x[i]
        for j in range(n_out):
            part[j] = _fma32(xi, row[j], part[j])


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _online_workers(theta, grad, s0, s1, s2, xs, ds, x_at, d_at, plan, pens, x_next, parts, offsets, dims,
                    penalty, alpha, opt, hyper, step, workers):
    """:func:`_online_worker` for every worker, in one parallel region per step.

    Why the first product moved here: a worker's updated parameters live in its core's cache,
    and reading them from another core in the next forward pass cost more than splitting the
    update saved (the update alone, Adam over 136,074 parameters: 41.5 us on one core, 26.8 us
    on two; a whole step with the forward pass reading them back: 68 against 65 us).
    """
    for w in prange(workers):
        old = _flush_on()
        _online_worker(w, theta, grad, s0, s1, s2, xs, ds, x_at, d_at, plan, pens, x_next, parts, offsets, dims,
                       penalty, alpha, opt, hyper, step)
        _flush_restore(old)


@njit(cache=True, nogil=True, error_model="numpy")
def _mix64(z):
    """SplitMix64's output function: a bijection of 64-bit words that scatters every input bit."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True, error_model="numpy")
def input_dropout_key(seed):
    """The key of an epoch's input masks: its seed, mixed apart from the hidden masks' stream."""
    return _mix64(np.uint64(seed) ^ _INPUT_SALT)


@njit(cache=True, nogil=True, error_model="numpy")
def drop_inputs(xb, out, key, first_row, rate, scale):
    """``out = xb * mask / (1 - rate)``, each input kept with probability ``1 - rate``, in place.

    Why not ``np.random``: one double per input (784 a row) cost the study's 128-256 network
    three times its epoch (0.45 s against 0.13), more than its matrix products. Here the bits
    are counter-based SplitMix64: row ``r`` (``first_row + i``, its place in the epoch) of
    ``h = ceil(n_features / 2)`` words takes words ``k = r * h + 1 ... r * h + h`` of
    ``mix64(key + k * golden)``, each split into two 32-bit halves (low half first), one per
    input; an input is kept when its half is at least ``round(rate * 2**32)`` (Keras keeps
    ``uniform >= rate``). Each word depends on its counter alone, so the loops vectorise.
    """
    rows, width = xb.shape
    half = (width + 1) // 2
    threshold = np.uint64(np.float64(rate) * 4294967296.0 + 0.5)
    words = np.empty(half, np.uint64)
    halves = words.view(np.uint32)
    for i in range(rows):
        counter = np.uint64(first_row + i) * np.uint64(half)
        for p in range(half):
            words[p] = _mix64(key + (counter + np.uint64(p + 1)) * _GOLDEN)
        for j in range(width):
            out[i, j] = xb[i, j] * scale if np.uint64(halves[j]) >= threshold else _ZERO


@njit(cache=True, nogil=True, error_model="numpy")
def train_epoch(theta, grad, state, iterations, X, y, order, batch_size, offsets, dims,
                act, dropout, input_dropout, max_norm, penalty, alpha, opt, hyper, seed, n_threads):
    """One epoch of mini-batch training, in place on ``theta`` and ``state``.

    Parameters
    ----------
    theta, grad : float32 arrays (n_params,)
        Flat parameters and a gradient buffer of the same size.
    state : float32 array (n_slots, n_params)
        The optimizer's slots (Adam: m, v[, v_hat]; RMSprop: velocity,
        average gradient, momentum; SGD: momentum).
    iterations : int64 array (1,)
        Optimizer steps taken so far; advanced in place.
    X, y : float32 (n, n_features), int64 (n,)
        Training rows and class indices.
    order : int64 array (n,) or (0,)
        The rows' order this epoch; empty means ``X``'s own order.
    dropout, input_dropout : float32
        Inverted dropout rates after every hidden layer and on the inputs (0: none).
    max_norm : float32
        Keras's ``MaxNorm(max_norm, axis=0)`` on every hidden kernel after each update (0: none).
    seed : int
        Seeds this epoch's dropout masks: the hidden layers' through ``np.random.seed``, the inputs'
        through :func:`input_dropout_key`.
    n_threads : int
        Threads for the matrix products (BLAS itself should run on one).

    Returns
    -------
    loss_sum : float
        Sum over batches of ``batch loss * batch size``, penalty included.
    correct : int
        Training predictions that were right (before each batch's update).
    """
    if batch_size == 1 and (input_dropout > 0 or max_norm > 0):
        # The online steps update kernels in blocks, and sum the next row's first product as they go.
        raise ValueError("online training (batch size 1) does not implement input dropout or max-norm")
    np.random.seed(seed)
    input_key = input_dropout_key(seed)
    s0, s1, s2 = state[0], state[1], state[2]
    n = X.shape[0]
    n_layers = dims.shape[0] - 1
    n_out = dims[n_layers]
    scale = _ONE / (_ONE - dropout) if dropout > 0 else _ONE
    input_scale = _ONE / (_ONE - input_dropout) if input_dropout > 0 else _ONE
    pen = penalty_value(theta, offsets, dims, penalty, alpha)
    loss_sum = np.float64(0.0)
    correct = 0
    shuffled = order.shape[0] > 0
    # Online training (batch size 1): each step's update and the next row's first product in
    # blocks owned by workers (see _online_plan); a last batch of one row in an epoch of larger
    # batches is updated by _online_kernel_update.
    online = batch_size == 1
    workers = max(1, min(n_threads, grad.shape[0] // _BLOCK))
    for layer in range(n_layers):
        if dims[layer + 1] > _BLOCK:  # a block of one row would not fit a worker's scratch
            workers = 1
    plan, starts = _online_plan(offsets, dims, workers)
    pens = np.empty(plan.shape[0], np.float64)
    parts = np.zeros((starts[1], dims[1]), np.float32)
    x_at = np.zeros(n_layers + 1, np.int64)
    d_at = np.zeros(n_layers + 1, np.int64)
    for layer in range(n_layers):
        x_at[layer + 1] = x_at[layer] + dims[layer]
        d_at[layer + 1] = d_at[layer] + dims[layer + 1]
    xs = np.empty(x_at[n_layers], np.float32)
    ds = np.empty(d_at[n_layers], np.float32)
    no_row = np.empty(0, np.float32)
    if online and n > 0:
        first = X[order[0]] if shuffled else X[0]
        for b in range(starts[0], starts[1]):
            _first_product_part(theta, offsets, dims, first, plan[b, 1], plan[b, 2], parts[b])
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        if shuffled:
            xb = np.empty((rows, dims[0]), np.float32)
            yb = np.empty(rows, np.int64)
            for r in range(rows):
                xb[r] = X[order[start + r]]
                yb[r] = y[order[start + r]]
        else:
            xb = X[start:stop]
            yb = y[start:stop]
        # Forward: inputs[l] feeds layer l; outputs[l] is hidden layer l's activation.
        inputs = List()
        outputs = List()
        masks = List()
        if input_dropout > 0:  # counter-based bits (drop_inputs); the hidden masks keep np.random's stream
            kept_x = np.empty((rows, dims[0]), np.float32)
            drop_inputs(xb, kept_x, input_key, start, input_dropout, input_scale)
            inputs.append(kept_x)
        else:
            inputs.append(np.ascontiguousarray(xb))
        for layer in range(n_layers):
            if online and layer == 0:  # the parts the last step's update left, summed in block order
                z = np.empty((1, dims[1]), np.float32)
                z[0] = parts[0]
                for b in range(1, starts[1]):
                    z[0] += parts[b]
            else:
                z = matmul(inputs[layer], _kernel(theta, offsets, dims, layer), n_threads)
            z += _bias(theta, offsets, dims, layer)
            if layer < n_layers - 1:
                _activate(z, act)
                outputs.append(z)
                if dropout > 0:
                    # Keras's inverted dropout: keep with probability 1 - rate, scale up.
                    mask = np.empty_like(z)
                    kept = np.empty_like(z)
                    for i in range(rows):
                        for j in range(z.shape[1]):
                            mask[i, j] = scale if np.random.random() >= dropout else _ZERO
                            kept[i, j] = z[i, j] * mask[i, j]
                    masks.append(mask)
                    inputs.append(kept)
                else:
                    inputs.append(z)
            else:
                outputs.append(z)
        logits = outputs[n_layers - 1]
        # Softmax cross-entropy from the logits (as Keras does for a softmax
        # output); its gradient is (p - onehot) / rows.
        batch_loss = np.float64(0.0)
        inv_rows = _ONE / np.float32(rows)
        for i in range(rows):
            k = yb[i]
            if _argmax_row(logits, i) == k:
                correct += 1
            lse = _log_sum_exp(logits, i)
            batch_loss += lse - logits[i, k]
            for c in range(n_out):
                logits[i, c] = np.exp(logits[i, c] - lse) * inv_rows
            logits[i, k] -= inv_rows
        loss_sum += (batch_loss / rows + pen) * rows
        # Backward, output layer first: deltas[l] is dLoss/dz of layer l.
        # Every delta is taken before any weight changes.
        deltas = List()
        for layer in range(n_layers):
            deltas.append(logits)
        for layer in range(n_layers - 1, 0, -1):
            d_in = matmul(deltas[layer], _kernel(theta, offsets, dims, layer).T, n_threads)
            if dropout > 0:
                d_in *= masks[layer - 1]
            _activation_grad(d_in, outputs[layer - 1], act)
            deltas[layer - 1] = d_in
        iterations[0] += 1
        step = _step_size(opt, hyper, np.float32(iterations[0]))
        pen = np.float64(0.0)
        if online:
            for layer in range(n_layers):
                xs[x_at[layer]:x_at[layer + 1]] = inputs[layer][0]
                ds[d_at[layer]:d_at[layer + 1]] = deltas[layer][0]
            x_next = no_row if stop >= n else X[order[stop]] if shuffled else X[stop]
            if workers > 1:
                _online_workers(theta, grad, s0, s1, s2, xs, ds, x_at, d_at, plan, pens, x_next, parts, offsets,
                                dims, penalty, alpha, opt, hyper, step, workers)
            else:
                _online_worker(0, theta, grad, s0, s1, s2, xs, ds, x_at, d_at, plan, pens, x_next, parts, offsets,
                               dims, penalty, alpha, opt, hyper, step)
        for layer in range(n_layers):
            d = deltas[layer]
            n_in, n_out_l = dims[layer], dims[layer + 1]
            lo = offsets[layer]
            layer_penalty = _layer_penalty(penalty, layer, n_layers)
            kernel_pen = np.float64(0.0)
            if online:
                for b in range(starts[layer], starts[layer + 1]):  # in block order, as _online_kernel_update
                    kernel_pen += pens[b]
            elif rows == 1:
                kernel_pen = _online_kernel_update(theta, grad, s0, s1, s2, inputs[layer][0], d[0], lo, plan,
                                                   starts[layer], starts[layer + 1], n_out_l, layer_penalty, alpha,
                                                   opt, hyper, step)
            else:
                matmul_tn(inputs[layer], d, _kernel(grad, offsets, dims, layer), n_threads)
                hi = lo + n_in * n_out_l
                kernel_pen = _update(theta[lo:hi], grad[lo:hi], s0[lo:hi], s1[lo:hi], s2[lo:hi],
                                     layer_penalty, alpha, opt, hyper, step)
            if max_norm > 0 and layer < n_layers - 1:  # after the update, as Keras applies constraints
                _max_norm(_kernel(theta, offsets, dims, layer), max_norm)
                kernel_pen = _penalty_sum(theta[lo:lo + n_in * n_out_l], layer_penalty)
            pen += kernel_pen
            b_lo = lo + n_in * n_out_l
            g_bias = grad[b_lo:b_lo + n_out_l]
            g_bias[:] = _ZERO
            for i in range(rows):  # row by row: d is row-major
                for j in range(n_out_l):
                    g_bias[j] += d[i, j]
            b_hi = b_lo + n_out_l
            _update(theta[b_lo:b_hi], g_bias, s0[b_lo:b_hi], s1[b_lo:b_hi], s2[b_lo:b_hi],
                    PENALTY_NONE, alpha, opt, hyper, step)
        pen *= alpha
    return loss_sum, correct
