"""Products and norms built on matmul and the reductions: dot, outer, mv, addmm/addmv/addr/baddbmm/addbmm,
tensordot, einsum, trace, cross, and p-norms (torch.norm, linalg.vector_norm/matrix_norm/norm).

einsum lowers any equation (repeated labels on one operand take a diagonal, labels used nowhere else are
summed away) to one batched matrix product per pair of operands, left to right, so it runs on the GEMM
kernels and is differentiable through them. Norms record their own gradient (zero where the norm is
zero, as PyTorch's subgradient); matrix norms that need a singular value decomposition ('nuc', 2, -2)
raise NotImplementedError.
"""
from __future__ import annotations

import math
import numbers

from .. import dtypes as _dt
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, no_grad, record
from .broadcast import expand
from .elementwise import abs as _abs, add, cast, div, eq, mul, ne, pow as _pow, sign, sqrt, sub, where
from .matmul import bmm, matmul, mm
from .movement import permute, reshape, squeeze, unsqueeze
from .reduce import amax, amin, sum as _sum
from .shapes import axis
from .structure import diagonal, roll


def _check(x, name, ndim=None):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")


def _scaled(x, factor):
    return x if factor == 1 else mul(x, factor)


# --- products -------------------------------------------------------------------------------------
@op("dot")
def dot(input: TensorBase, other: TensorBase) -> TensorBase:
    """The inner product of two 1-D tensors of the same length (a 0-d tensor)."""
    _check(input, "dot", 1)
    _check(other, "dot", 1)
    if input.shape != other.shape:
        raise ValueError(f"dot: 1-D tensors must have the same length, got {tuple(input.shape)} and "
                         f"{tuple(other.shape)}")
    return reshape(mm(reshape(input, (1, -1)), reshape(other, (-1, 1))), ())


@op("outer")
def outer(input: TensorBase, vec2: TensorBase) -> TensorBase:
    """input[i] * vec2[j] (torch.outer, torch.ger)."""
    _check(input, "outer", 1)
    _check(vec2, "outer", 1)
    return mul(unsqueeze(input, 1), unsqueeze(vec2, 0))


@op("mv")
def mv(input: TensorBase, vec: TensorBase) -> TensorBase:
    """Matrix times vector."""
    _check(input, "mv", 2)
    _check(vec, "mv", 1)
    return matmul(input, vec)


@op("addmm")
def addmm(input, mat1: TensorBase, mat2: TensorBase, *, beta=1, alpha=1) -> TensorBase:
    """beta * input + alpha * (mat1 @ mat2); input broadcasts (beta=0 ignores it, NaN included)."""
    _check(mat1, "addmm", 2)
    _check(mat2, "addmm", 2)
    prod = _scaled(mm(mat1, mat2), alpha)
    return prod if beta == 0 else add(_scaled(input, beta), prod)


@op("addmv")
def addmv(input, mat: TensorBase, vec: TensorBase, *, beta=1, alpha=1) -> TensorBase:
    """beta * input + alpha * (mat @ vec)."""
    prod = _scaled(mv(mat, vec), alpha)
    return prod if beta == 0 else add(_scaled(input, beta), prod)


@op("addr")
def addr(input, vec1: TensorBase, vec2: TensorBase, *, beta=1, alpha=1) -> TensorBase:
    """beta * input + alpha * outer(vec1, vec2)."""
    prod = _scaled(outer(vec1, vec2), alpha)
    return prod if beta == 0 else add(_scaled(input, beta), prod)


@op("baddbmm")
def baddbmm(input, batch1: TensorBase, batch2: TensorBase, *, beta=1, alpha=1) -> TensorBase:
    """beta * input + alpha * (batch1 @ batch2), batch by batch."""
    _check(batch1, "baddbmm", 3)
    _check(batch2, "baddbmm", 3)
    prod = _scaled(bmm(batch1, batch2), alpha)
    return prod if beta == 0 else add(_scaled(input, beta), prod)


@op("addbmm")
def addbmm(input, batch1: TensorBase, batch2: TensorBase, *, beta=1, alpha=1) -> TensorBase:
    """beta * input + alpha * (sum over the batch of batch1[b] @ batch2[b])."""
    _check(batch1, "addbmm", 3)
    _check(batch2, "addbmm", 3)
    prod = _scaled(_sum(bmm(batch1, batch2), 0), alpha)
    return prod if beta == 0 else add(_scaled(input, beta), prod)


@op("trace")
def trace(input: TensorBase) -> TensorBase:
    """The sum of the main diagonal of a 2-D tensor."""
    _check(input, "trace", 2)
    return _sum(diagonal(input))


@op("cross")
def cross(input: TensorBase, other: TensorBase, dim=None) -> TensorBase:
    """The cross product of 3-vectors along dim (default: the first dimension of size 3)."""
    _check(input, "cross")
    _check(other, "cross")
    if dim is None:
        dim = next((i for i, s in enumerate(input.shape) if s == 3), None)
        if dim is None:
            raise ValueError(f"cross: no dimension of size 3 in shape {tuple(input.shape)}")
    d = axis(dim, input.ndim)
    if input.shape[d] != 3 or other.shape[d] != 3:
        raise ValueError(f"cross: dimension {d} must have size 3, got {tuple(input.shape)} and {tuple(other.shape)}")
    return sub(mul(roll(input, -1, d), roll(other, -2, d)), mul(roll(input, -2, d), roll(other, -1, d)))


@op("tensordot")
def tensordot(a: TensorBase, b: TensorBase, dims=2) -> TensorBase:
    """Contract a's last `dims` dimensions with b's first ones (or the listed pairs ([a dims], [b dims]))."""
    _check(a, "tensordot")
    _check(b, "tensordot")
    if isinstance(dims, numbers.Integral):
        da = list(range(a.ndim - dims, a.ndim))
        db = list(range(dims))
    else:
        da, db = dims
        da = [da] if isinstance(da, numbers.Integral) else list(da)
        db = [db] if isinstance(db, numbers.Integral) else list(db)
    da = [axis(d, a.ndim) for d in da]
    db = [axis(d, b.ndim) for d in db]
    if len(da) != len(db) or any(a.shape[i] != b.shape[j] for i, j in zip(da, db)):
        raise ValueError(f"tensordot: contracted dims {da} of {tuple(a.shape)} and {db} of {tuple(b.shape)} "
                         "must match in size")
    ka = [i for i in range(a.ndim) if i not in da]
    kb = [j for j in range(b.ndim) if j not in db]
    k = math.prod(a.shape[i] for i in da)
    a2 = reshape(permute(a, ka + da), (math.prod(a.shape[i] for i in ka), k))
    b2 = reshape(permute(b, db + kb), (k, math.prod(b.shape[j] for j in kb)))
    return reshape(mm(a2, b2), tuple(a.shape[i] for i in ka) + tuple(b.shape[j] for j in kb))


# --- einsum ----------------------------------------------------------------------------------------
def _parse_einsum(equation: str, operands):
    """Per operand its labels (one character per dimension, ellipsis dims as private labels), and the output
    labels (implicit form: labels used once, in alphabetical order, after the ellipsis dims)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(operands):
        raise ValueError(f"einsum: the equation {equation!r} names {len(specs)} operands, {len(operands)} given")
    letters = [c for c in eq if c.isalpha()]
    ell_width = 0
    for spec, t in zip(specs, operands):
        if "..." in spec:
            ell_width = max(ell_width, t.ndim - (len(spec) - 3))
    ell = [chr(0x3B1 + i) for i in range(ell_width)]  # Greek letters: never in a user equation
    labels = []
    for spec, t in zip(specs, operands):
        if any(not (c.isalpha() or c == ".") for c in spec):
            raise ValueError(f"einsum: bad subscripts {spec!r} in {equation!r} (use letters and '...')")
        if "..." in spec:
            before, _, after = spec.partition("...")
            n = t.ndim - len(before) - len(after)
            lab = list(before) + ell[ell_width - n:] + list(after)
        else:
            lab = list(spec)
        if len(lab) != t.ndim:
            raise ValueError(f"einsum: subscripts {spec!r} name {len(lab)} dimensions but the operand has "
                             f"{t.ndim} (shape {tuple(t.shape)})")
        labels.append(lab)
    if arrow:
        if "..." in rhs:
            before, _, after = rhs.partition("...")
            out = list(before) + ell + list(after)
        else:
            out = list(rhs)
        for c in out:
            if c not in {x for lab in labels for x in lab}:
                raise ValueError(f"einsum: output label {c!r} appears in no operand of {equation!r}")
    else:
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        out = ell + once
    return labels, out


def _take_diagonals(t, lab):
    """Repeated labels of one operand: keep their diagonal (torch.einsum('ii->i'))."""
    while len(set(lab)) != len(lab):
        c = next(c for c in lab if lab.count(c) > 1)
        i = lab.index(c)
        j = lab.index(c, i + 1)
        t = diagonal(t, 0, i, j)
        lab = [x for k, x in enumerate(lab) if k not in (i, j)] + [c]
    return t, lab


def _sum_labels(t, lab, keep):
    drop = [i for i, c in enumerate(lab) if c not in keep]
    if drop:
        t = _sum(t, tuple(drop))
        lab = [c for i, c in enumerate(lab) if i not in drop]
    return t, lab


def _contract(a, la, b, lb, needed):
    """a (labels la) times b (labels lb), summing the shared labels not in `needed`, as one bmm."""
    size = {}
    for t, lab in ((a, la), (b, lb)):
        for c, s in zip(lab, t.shape):
            if c in size and size[c] != s and 1 not in (size[c], s):
                raise ValueError(f"einsum: label {c!r} has sizes {size[c]} and {s}")
            size[c] = max(size.get(c, 1), s)
    batch = [c for c in la if c in lb and c in needed]
    contract = [c for c in la if c in lb and c not in needed]
    a_only = [c for c in la if c not in lb]
    b_only = [c for c in lb if c not in la]
    pa = permute(a, [la.index(c) for c in batch + a_only + contract])
    pb = permute(b, [lb.index(c) for c in batch + contract + b_only])
    pa = expand(pa, tuple(size[c] for c in batch) + tuple(pa.shape[len(batch):]))
    pb = expand(pb, tuple(size[c] for c in batch) + tuple(pb.shape[len(batch):]))
    nb = math.prod(size[c] for c in batch)
    m, k, n = (math.prod(size[c] for c in g) for g in (a_only, contract, b_only))
    y = bmm(reshape(pa, (nb, m, k)), reshape(pb, (nb, k, n)))
    out_lab = batch + a_only + b_only
    return reshape(y, tuple(size[c] for c in out_lab)), out_lab


@op("einsum")
def einsum(equation: str, *operands) -> TensorBase:
    """Einstein summation (torch.einsum): 'ij,jk->ik', 'bij,bjk->bik', 'ii->i', 'i,j->ij', '...ij->...ji', ..."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise TypeError(f"einsum: the first argument must be the equation string, got {type(equation).__name__}")
    if not operands:
        raise ValueError("einsum: no operands")
    for t in operands:
        _check(t, "einsum")
    labels, out = _parse_einsum(equation, operands)
    terms = []
    for i, (t, lab) in enumerate(zip(operands, labels)):
        t, lab = _take_diagonals(t, lab)
        others = set(out) | {c for j, lb in enumerate(labels) if j != i for c in lb}
        terms.append(_sum_labels(t, lab, others))
    t, lab = terms[0]
    for i in range(1, len(terms)):
        needed = set(out) | {c for _, lb in terms[i + 1:] for c in lb}
        t, lab = _sum_labels(t, lab, needed | set(terms[i][1]))
        t, lab = _contract(t, lab, terms[i][0], terms[i][1], needed)
    t, lab = _sum_labels(t, lab, set(out))
    return permute(t, [lab.index(c) for c in out]) if lab != out else t


# --- norms -----------------------------------------------------------------------------------------
def _norm_dims(x, dim):
    if dim is None:
        return tuple(range(x.ndim))
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    return tuple(sorted(axis(d, x.ndim) for d in dims))


def _keep(t, x, dims):
    """t reduced over dims without keepdim, viewed with those dims back as size 1."""
    shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    return reshape(t, shape)


@op("vector_norm")
def vector_norm(x: TensorBase, ord=2, dim=None, keepdim=False, *, dtype=None) -> TensorBase:
    """The p-norm of x's elements over dim (all of them by default): ord 2, 1, inf, -inf, 0 or any p."""
    _check(x, "vector_norm")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"vector_norm: expected a floating-point tensor, got {x.dtype.name}")
    if dtype is not None and _dt.as_dtype(dtype) != x.dtype:
        x = cast(x, _dt.as_dtype(dtype))
    p = float(ord) if not isinstance(ord, str) else ord
    if isinstance(p, str):
        raise ValueError(f"vector_norm: ord must be a number, got {ord!r}")
    dims = _norm_dims(x, dim)
    with no_grad():
        ax = _abs(x)
        if p == math.inf:
            y = amax(ax, dims, True)
        elif p == -math.inf:
            y = amin(ax, dims, True)
        elif p == 0:
            y = _sum(ne(x, 0), dims, True, dtype=x.dtype)
        elif p == 1:
            y = _sum(ax, dims, True)
        elif p == 2:
            y = sqrt(_sum(mul(x, x), dims, True))
        else:
            y = _pow(_sum(_pow(ax, p), dims, True), 1.0 / p)
    yk = y.detach()
    out = y if keepdim else reshape(y, tuple(s for i, s in enumerate(y.shape) if i not in dims))
    if needs_grad(x) and p != 0:
        def backward(g):
            gk = g if keepdim else _keep(g, x, dims)
            if p in (math.inf, -math.inf):
                hit = eq(_abs(x), yk)
                share = div(gk, _sum(hit, dims, True, dtype=x.dtype))
                return mul(mul(sign(x), hit), share)
            if p == 1:
                return mul(sign(x), gk)
            if p == 2:
                return where(eq(yk, 0), 0.0, mul(x, div(gk, yk)))
            scale = where(eq(yk, 0), 0.0, div(gk, _pow(yk, p - 1)))
            return mul(mul(sign(x), _pow(_abs(x), p - 1)), scale)
        record("norm", out, (x,), backward, saved=(x,))
    return out


@op("matrix_norm")
def matrix_norm(A: TensorBase, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None) -> TensorBase:
    """Matrix norms over the two dims: 'fro', 1 / -1 (largest / smallest column sum of |A|), inf / -inf
    (row sums). 'nuc', 2 and -2 need singular values, which clnet does not compute."""
    _check(A, "matrix_norm")
    if A.ndim < 2:
        raise ValueError(f"matrix_norm: expected at least 2 dimensions, got shape {tuple(A.shape)}")
    d0, d1 = (axis(d, A.ndim) for d in dim)
    if ord == "fro":
        return vector_norm(A, 2, (d0, d1), keepdim, dtype=dtype)
    if ord in ("nuc", 2, -2):
        raise NotImplementedError(f"matrix_norm(ord={ord!r}) needs singular values, which clnet does not "
                                  "compute; 'fro', 1, -1, inf and -inf are supported")
    if ord in (1, -1):
        sums, over = _sum(_abs(A), d0, True), d1
    elif ord in (math.inf, -math.inf):
        sums, over = _sum(_abs(A), d1, True), d0
    else:
        raise ValueError(f"matrix_norm: unsupported ord {ord!r}")
    y = (amax if ord in (1, math.inf) else amin)(sums, over, True)
    return y if keepdim else squeeze(squeeze(y, max(d0, d1)), min(d0, d1))


@op("linalg_norm")
def linalg_norm(A: TensorBase, ord=None, dim=None, keepdim=False, *, dtype=None) -> TensorBase:
    """torch.linalg.norm: a vector norm (1-D input, or an int dim) or a matrix norm (2-D input, or two dims);
    with neither ord nor dim, the 2-norm of all elements."""
    _check(A, "linalg.norm")
    if dim is not None and not isinstance(dim, numbers.Integral) and len(dim) == 2:
        return matrix_norm(A, "fro" if ord is None else ord, dim, keepdim, dtype=dtype)
    if dim is None and ord is not None:
        if A.ndim == 2:
            return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
        if A.ndim != 1:
            raise ValueError(f"linalg.norm: with ord and no dim, the input must be 1-D or 2-D, got shape "
                             f"{tuple(A.shape)}")
    if isinstance(ord, str):
        raise ValueError(f"linalg.norm: ord {ord!r} is a matrix norm; give two dims or a 2-D input")
    return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


@op("norm")
def norm(input: TensorBase, p="fro", dim=None, keepdim=False, dtype=None) -> TensorBase:
    """torch.norm: p 'fro' (the 2-norm of the elements over dim), 'nuc' (not supported) or a number."""
    _check(input, "norm")
    if p == "fro" or p is None:
        return vector_norm(input, 2, dim, keepdim, dtype=dtype)
    if p == "nuc":
        return matrix_norm(input, "nuc")
    return vector_norm(input, p, dim, keepdim, dtype=dtype)


@op("dist")
def dist(input: TensorBase, other: TensorBase, p=2) -> TensorBase:
    """The p-norm of input - other."""
    return vector_norm(sub(input, other), p)
