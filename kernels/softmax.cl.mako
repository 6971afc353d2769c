## Softmax family over the rows of a contiguous [outer, n, inner] tensor. Row r = (o, i) is
## x[o, 0..n-1, i], read at stride `inner` (inner == 1 when the softmax dimension is the last).
##
##   kernel   softmax | softmax_backward | cross_entropy | class_loss_reduce | cross_entropy_backward
##   t, acc   storage and accumulation C types (half is stored as half, accumulated as float)
##   idx      index type: int, or long past 2**31 elements
##   wg       work-items per row: 1 = one work-item per row (short rows, CPUs), else one work-group
##            of wg items (a power of two) per row, reducing through local memory
##   log      softmax kernels: log_softmax instead of softmax
##   tt       cross-entropy kernels: storage type of the integer targets
##   weighted cross-entropy kernels: per-class weights are given
##   nll      cross-entropy kernels: the input already holds log-probabilities (nll_loss)
##   mean     class_loss_reduce: divide by the summed target weights (else: plain sum)
##   scaled   cross_entropy_backward: the incoming gradient is multiplied by scale[0] (1 / sum of
##            target weights for a "mean"), written by class_loss_reduce
##
## The log-sum-exp of a row is computed in ONE pass with an online rescaling (m = running max,
## s = sum of exp(x - m)), so cross-entropy reads each logit once.
<%
def ld(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"

def st(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte(({acc})({val}), {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"
%>\
<%def name="row_setup()">\
% if wg == 1:
    const ${idx} r = (${idx})get_global_id(0);
    if (r >= rows) return;
    const int lid = 0;
% else:
    const ${idx} r = (${idx})get_group_id(0);   /* exactly `rows` groups: no early return before barriers */
    const int lid = (int)get_local_id(0);
% endif
    const ${idx} base = (r / inner) * n * inner + r % inner;
</%def>\
<%def name="group_sum(var)">\
% if wg > 1:
    scratch_a[lid] = ${var};
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int half_wg = ${wg // 2}; half_wg > 0; half_wg >>= 1) {
        if (lid < half_wg) scratch_a[lid] += scratch_a[lid + half_wg];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    ${var} = scratch_a[0];
    barrier(CLK_LOCAL_MEM_FENCE);
% endif
</%def>\
<%def name="group_lse(m, s)">\
% if wg > 1:
    scratch_a[lid] = ${m};
    scratch_b[lid] = ${s};
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int half_wg = ${wg // 2}; half_wg > 0; half_wg >>= 1) {
        if (lid < half_wg) {
            ${acc} mm = scratch_a[lid], ss = scratch_b[lid];
            lse_merge(&mm, &ss, scratch_a[lid + half_wg], scratch_b[lid + half_wg]);
            scratch_a[lid] = mm;
            scratch_b[lid] = ss;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    ${m} = scratch_a[0];
    ${s} = scratch_b[0];
    barrier(CLK_LOCAL_MEM_FENCE);
% endif
    if (${m} == INFINITY) ${s} = NAN;   /* exp(inf - inf): a +inf in the row makes it NaN, as numpy and PyTorch */
</%def>\
<%def name="scratch()">\
% if wg > 1:
    __local ${acc} scratch_a[${wg}];
    __local ${acc} scratch_b[${wg}];
% endif
</%def>\

/* Merge a partial (max m2, sum s2 of exp(x - m2)) into (m, s). A NaN anywhere makes s NaN. */
inline void lse_merge(${acc} *m, ${acc} *s, const ${acc} m2, const ${acc} s2)
{
    if (m2 > *m) {
        *s = *s * exp(*m - m2) + s2;
        *m = m2;
    } else if (m2 != -INFINITY) {
        *s += s2 * exp(m2 - *m);
    }
}

% if kernel == "softmax":
/* y = softmax(x) (or log_softmax) along each row. */
__kernel void softmax(const ${idx} rows, const ${idx} n, const ${idx} inner,
                      __global const ${t} *x, const ${idx} x_off,
                      __global ${t} *y, const ${idx} y_off)
{
${scratch()}\
${row_setup()}\
    ${acc} m = -INFINITY, s = 0;
    for (${idx} k = lid; k < n; k += ${wg}) lse_merge(&m, &s, ${ld("x", "x_off + base + k * inner")}, 1);
${group_lse("m", "s")}\
% if log:
    const ${acc} lse = m + log(s);
    for (${idx} k = lid; k < n; k += ${wg}) {
        const ${idx} at = base + k * inner;
        ${st("y", "y_off + at", ld("x", "x_off + at") + " - lse")};
    }
% else:
    const ${acc} inv = 1 / s;
    for (${idx} k = lid; k < n; k += ${wg}) {
        const ${idx} at = base + k * inner;
        ${st("y", "y_off + at", "exp(" + ld("x", "x_off + at") + " - m) * inv")};
    }
% endif
}

% elif kernel == "softmax_backward":
/* dx from the output y and its gradient g:
 *   softmax:      dx = y * (g - sum(g * y))
 *   log_softmax:  dx = g - exp(y) * sum(g)                                  */
__kernel void softmax_backward(const ${idx} rows, const ${idx} n, const ${idx} inner,
                               __global const ${t} *g, const ${idx} g_off,
                               __global const ${t} *y, const ${idx} y_off,
                               __global ${t} *dx, const ${idx} dx_off)
{
${scratch()}\
${row_setup()}\
    ${acc} s = 0;
    for (${idx} k = lid; k < n; k += ${wg}) {
        const ${idx} at = base + k * inner;
% if log:
        s += ${ld("g", "g_off + at")};
% else:
        s += ${ld("g", "g_off + at")} * ${ld("y", "y_off + at")};
% endif
    }
${group_sum("s")}\
    for (${idx} k = lid; k < n; k += ${wg}) {
        const ${idx} at = base + k * inner;
% if log:
        ${st("dx", "dx_off + at", ld("g", "g_off + at") + " - exp(" + ld("y", "y_off + at") + ") * s")};
% else:
        ${st("dx", "dx_off + at", ld("y", "y_off + at") + " * (" + ld("g", "g_off + at") + " - s)")};
% endif
    }
}

% elif kernel == "cross_entropy":
<%
w_of = (lambda k: ld("weight", f"w_off + {k}")) if weighted else (lambda k: "1")
%>\
/* Per-row loss of integer targets, one pass over the row:
 *   cross-entropy: loss = (1 - eps) * w[t] * (lse - x[t]) + eps / n * sum_j w[j] * (lse - x[j])
 *   nll:           loss = -w[t] * x[t]
 * row_w[r] = w[t] (the row's share of a "mean" denominator), lse[r] is kept for the backward.
 * An ignored row gives 0 and 0; a target outside [0, n) gives NaN (no out-of-bounds read). */
__kernel void cross_entropy(const ${idx} rows, const ${idx} n, const ${idx} inner,
                            __global const ${t} *x, const ${idx} x_off,
                            __global const ${tt} *target, const ${idx} t_off,
% if weighted:
                            __global const ${t} *weight, const ${idx} w_off,
% endif
                            const long ignore_index, const ${acc} eps,
                            __global ${t} *loss, __global ${t} *row_w, __global ${acc} *lse_out)
{
${scratch()}\
${row_setup()}\
    const long tg = (long)target[t_off + r];
% if not nll:
    ${acc} m = -INFINITY, s = 0, sum_wx = 0, sum_w = 0;
    for (${idx} k = lid; k < n; k += ${wg}) {
        const ${acc} v = ${ld("x", "x_off + base + k * inner")};
        lse_merge(&m, &s, v, 1);
  % if weighted:
        const ${acc} wk = ${w_of("k")};
        sum_wx += wk * v;
        sum_w += wk;
  % else:
        sum_wx += v;
  % endif
    }
${group_lse("m", "s")}\
${group_sum("sum_wx")}\
  % if weighted:
${group_sum("sum_w")}\
  % else:
    sum_w = (${acc})n;
  % endif
    const ${acc} lse = m + log(s);
% else:
    const ${acc} lse = 0;
% endif
    if (lid == 0) {
        ${acc} l, rw;
        if (tg == ignore_index) {
            l = 0;
            rw = 0;
        } else if (tg < 0 || tg >= n) {
            l = NAN;
            rw = NAN;
        } else {
            const ${acc} wt = ${w_of("tg")};
            const ${acc} xt = ${ld("x", "x_off + base + tg * inner")};
% if nll:
            l = -wt * xt;
% else:
            l = (1 - eps) * wt * (lse - xt) + eps / n * (sum_w * lse - sum_wx);
% endif
            rw = wt;
        }
        ${st("loss", "r", "l")};
        ${st("row_w", "r", "rw")};
        lse_out[r] = lse;
    }
}

% elif kernel == "class_loss_reduce":
/* The "mean" / "sum" of per-row losses in one work-group: out = sum(loss) [/ sum(row_w)], and
 * scale[0] = the factor the backward applies to the incoming gradient (1 / sum(row_w), or 1). */
__kernel void class_loss_reduce(const ${idx} rows, __global const ${t} *loss, __global const ${t} *row_w,
                                __global ${t} *out, const ${idx} out_off, __global ${acc} *scale)
{
${scratch()}\
    const int lid = (int)get_local_id(0);
    ${acc} sum_l = 0, sum_w = 0;
    for (${idx} k = lid; k < rows; k += ${wg}) {
        sum_l += ${ld("loss", "k")};
        sum_w += ${ld("row_w", "k")};
    }
${group_sum("sum_l")}\
${group_sum("sum_w")}\
    if (lid == 0) {
% if mean:
        ${st("out", "out_off", "sum_l / sum_w")};
        scale[0] = 1 / sum_w;
% else:
        ${st("out", "out_off", "sum_l")};
        scale[0] = 1;
% endif
    }
}

% elif kernel == "cross_entropy_backward":
<%
w_of = (lambda k: ld("weight", f"w_off + {k}")) if weighted else (lambda k: "1")
%>\
/* dx[e] for every element e of x, one work-item each (softmax minus the smoothed one-hot):
 *   cross-entropy: dx = g[r] * (((1 - eps) w[t] + eps / n * W) * p - (k == t) (1 - eps) w[t] - eps / n * w[k])
 *                  with p = exp(x - lse[r]) and W = sum_j w[j]
 *   nll:           dx = -g[r] * w[t] * (k == t)
 * g is read at g_off + r * g_stride (g_stride == 0 for the gradient of a reduced loss). */
__kernel void cross_entropy_backward(const ${idx} total, const ${idx} n, const ${idx} inner,
                                     __global const ${t} *x, const ${idx} x_off,
                                     __global const ${tt} *target, const ${idx} t_off,
% if weighted:
                                     __global const ${t} *weight, const ${idx} w_off,
                                     __global const ${t} *weight_sum, const ${idx} ws_off,
% endif
                                     __global const ${acc} *lse,
                                     __global const ${t} *g, const ${idx} g_off, const ${idx} g_stride,
% if scaled:
                                     __global const ${acc} *scale,
% endif
                                     const long ignore_index, const ${acc} eps,
                                     __global ${t} *dx, const ${idx} dx_off)
{
    const ${idx} e = (${idx})get_global_id(0);
    if (e >= total) return;
    const ${idx} i = e % inner;
    const ${idx} q = e / inner;
    const ${idx} k = q % n;
    const ${idx} r = (q / n) * inner + i;
    const long tg = (long)target[t_off + r];
    ${acc} d;
    if (tg == ignore_index) {
        d = 0;
    } else if (tg < 0 || tg >= n) {
        d = NAN;
    } else {
% if scaled:
        const ${acc} gr = ${ld("g", "g_off + r * g_stride")} * scale[0];
% else:
        const ${acc} gr = ${ld("g", "g_off + r * g_stride")};
% endif
        const ${acc} wt = ${w_of("tg")};
% if nll:
        d = (k == tg) ? -gr * wt : 0;
% else:
  % if weighted:
        const ${acc} w_all = ${ld("weight_sum", "ws_off")};
  % else:
        const ${acc} w_all = (${acc})n;
  % endif
        const ${acc} p = exp(${ld("x", "x_off + e")} - lse[r]);
        d = ((1 - eps) * wt + eps / n * w_all) * p - eps / n * ${w_of("k")};
        if (k == tg) d -= (1 - eps) * wt;
        d *= gr;
% endif
    }
    ${st("dx", "dx_off + e", "d")};
}
% endif
