## Softmax family over the rows of a contiguous [outer, n, inner] tensor. Row r = (o, i) is
## x[o, 0..n-1, i], read at stride `inner` (inner == 1 when the softmax dimension is the last).
##
##   kernel   softmax | softmax_backward | cross_entropy | class_loss_reduce | cross_entropy_backward
##   t, acc   storage and accumulation C types (half is stored as half, accumulated as float)
##   idx      index type: int, or long past 2**31 elements
##   wg       work-items per row: 1 = one work-item per row (CPUs, short rows), else one work-group
##            of wg items (a power of two) per row, reducing through local memory (GPUs, long rows)
##   vw       one-work-item-per-row kernels: the row is streamed in vectors of vw values (vloadN), a
##            scalar loop takes the last n % vw; vw > 1 only for contiguous rows (inner == 1) ...
##   cols     ... or (softmax kernels, inner % vw == 0) a work-item takes vw neighbouring rows and
##            each vector holds one value of each (lanes are rows: `rows` counts these blocks)
##   gather   with cols, for short contiguous rows: a work-item takes vw consecutive rows, lane j
##            reading row r0 + j (exp then runs on vectors instead of one value at a time; the last
##            block's lanes past the end repeat the last row and are not stored; `rows` = rows);
##            softmax kernels and the cross-entropy forward and (per_row) backward
##   log      softmax kernels: log_softmax instead of softmax
##   tt       cross-entropy kernels: storage type of the integer targets
##   weighted cross-entropy kernels: per-class weights are given
##   nll      cross-entropy kernels: the input already holds log-probabilities (nll_loss)
##   mean     class_loss_reduce: divide by the summed target weights (else: plain sum)
##   scaled   cross_entropy_backward: the incoming gradient is multiplied by scale[0] (1 / sum of
##            target weights for a "mean"), written by class_loss_reduce
##   per_row  cross_entropy_backward: one work-item per row (CPUs), else one per element (GPUs)
##
## One work-item per row (CPUs: PoCL runs a work-group as a loop on one core, so barriers and local
## trees cost and a row streamed in vectors runs at bandwidth): the row is passed over three times
## (max; sum of exp(x - max), storing exp(x - max) in y; scale y), and after the first pass it sits
## in L1/L2, so memory sees one read and one write. fmax skips NaNs in the max, but a NaN or a +inf
## (exp(inf - inf)) makes the sum NaN and with it the whole row, as numpy and PyTorch.
## One work-group per row (GPUs): the log-sum-exp is computed in ONE pass with an online rescaling
## (m = running max, s = sum of exp(x - m)) merged through a local-memory tree.
<%
V = f"{acc}{vw}" if vw > 1 else acc   # the vector type of one vw-wide chunk (accumulation precision)
RT = V if cols else acc                 # a row's statistics (max, sum): one per lane when lanes are rows
IV = ("long" if acc == "double" else "int") + (str(vw) if vw > 1 else "")  # a lane mask for select()
store_exp = t == acc                    # half storage: recompute exp in the last pass (no double rounding)

def ld(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"

def st(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte(({acc})({val}), {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"

LANES = [f"s{j:x}" for j in range(vw)]   # vector components .s0 .. .sf

def ldv(ptr, k):
    """vw consecutive values: ptr[k .. k + vw - 1] along a contiguous row, or with `cols` value k of
    vw neighbouring rows (ptr[k * inner ..]), or with `gather` value k of vw consecutive short rows
    (lane j at ptr[lo_j + k]; lanes past the last row repeat it)."""
    if gather:
        return f"(({V})(" + ", ".join(ld(ptr, f"lo{j} + {k}") for j in range(vw)) + "))"
    if cols:
        k = f"({k}) * inner"
    if vw == 1:
        return ld(ptr, k)
    if t == "half":
        return f"vload_half{vw}(0, {ptr} + {k})"
    return f"vload{vw}(0, {ptr} + {k})"

def stv(ptr, k, val):
    if gather:  # lanes past the last row are not stored
        lines = [f"{{ const {V} st_v = {val};", st(ptr, f"lo0 + {k}", "st_v.s0") + ";"]
        lines += [f"if (last >= {j}) " + st(ptr, f"lo{j} + {k}", f"st_v.{LANES[j]}") + ";" for j in range(1, vw)]
        return " ".join(lines) + " }"
    if cols:
        k = f"({k}) * inner"
    if vw == 1:
        return st(ptr, k, val)
    if t == "half":
        return f"vstore_half{vw}_rte({val}, 0, {ptr} + {k})"
    return f"vstore{vw}({val}, 0, {ptr} + {k})"

def splat(val):
    return f"(({V})({val}))"

def row_max(m):
    """C statements: acc m = the largest non-NaN value of row xr (one work-item per row)."""
    lines = [f"    {RT} {m} = -INFINITY;", "    {", f"        {idx} k = 0;"]
    if cols:
        lines += [f"        for (; k < n; k++) {m} = fmax({m}, {ldv('xr', 'k')});", "    }"]
        return "\n".join(lines) + "\n"
    if vw > 1:
        lines += [f"        {V} {m}_v = {splat('-INFINITY')};",
                  f"        for (; k < n - {vw - 1}; k += {vw}) {m}_v = fmax({m}_v, {ldv('xr', 'k')});",
                  f"        {m} = hmax({m}_v);"]
    lines += [f"        for (; k < n; k++) {m} = fmax({m}, {ld('xr', 'k * inner')});", "    }"]
    return "\n".join(lines) + "\n"
%>\
<%def name="row_setup()">\
% if gather:
    const ${idx} r0 = (${idx})get_global_id(0) * ${vw};   /* rows r0 .. r0 + vw - 1, one per lane */
    if (r0 >= rows) return;
    const ${idx} last = rows - 1 - r0;                   /* the last lane holding a row of its own */
    const ${idx} base = r0 * n;
  % for j in range(vw):
    const ${idx} lo${j} = min((${idx})${j}, last) * n;
  % endfor
% elif cols:
    const ${idx} r = (${idx})get_global_id(0);   /* vw neighbouring rows (o, r % nb * vw + lane) */
    if (r >= rows) return;
    const ${idx} nb = inner / ${vw};
    const ${idx} base = (r / nb) * n * inner + (r % nb) * ${vw};
% elif wg == 1:
    const ${idx} r = (${idx})get_global_id(0);
    if (r >= rows) return;
    const int lid = 0;
% else:
    const ${idx} r = (${idx})get_group_id(0);   /* exactly `rows` groups: no early return before barriers */
    const int lid = (int)get_local_id(0);
% endif
% if not cols:
    const ${idx} base = (r / inner) * n * inner + r % inner;
% endif
</%def>\
## for_row(k): the loops of one work-item over its row: `vpart` on vw-wide chunks (vw > 1), then
## `spart` on single values at row position k (element base + k * inner).
<%def name="for_row()">\
    {
        ${idx} k = 0;
% if cols:
        for (; k < n; k++) {
${caller.vpart()}\
        }
% else:
  % if vw > 1:
        for (; k < n - ${vw - 1}; k += ${vw}) {
${caller.vpart()}\
        }
  % endif
        for (; k < n; k++) {
${caller.spart()}\
        }
% endif
    }
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

% if cols:
/* Each lane is a row of its own: nothing to fold. */
inline ${V} hsum(const ${V} v) { return v; }
inline ${V} hmax(const ${V} v) { return v; }
% elif vw > 1:
/* Horizontal folds of a ${vw}-wide vector. */
<%
    def fold_steps(op):
        lines, w, cur = [], vw, "v"
        while w > 1:
            w //= 2
            ty = f"{acc}{w}" if w > 1 else acc
            lines.append(f"    const {ty} v{w} = {op(cur + '.lo', cur + '.hi')};")
            cur = f"v{w}"
        return "\n".join(lines)
%>\
inline ${acc} hsum(const ${V} v)
{
${fold_steps(lambda a, b: f"{a} + {b}")}
    return v1;
}

inline ${acc} hmax(const ${V} v)
{
${fold_steps(lambda a, b: f"fmax({a}, {b})")}
    return v1;
}
% endif

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
% if wg == 1:
    __global const ${t} *xr = x + x_off + base;
    __global ${t} *yr = y + y_off + base;
${row_max("m")}    ${RT} s = 0;
  % if vw > 1:
    ${V} s_v = 0;
  % endif
  % if log or not store_exp:
<%self:for_row>\
<%def name="vpart()">            s_v += exp(${ldv("xr", "k")} - m);
</%def>\
<%def name="spart()">            s += exp(${ld("xr", "k * inner")} - m);
</%def>\
</%self:for_row>\
  % else:
<%self:for_row>\
<%def name="vpart()">            const ${V} e = exp(${ldv("xr", "k")} - m);
            ${stv("yr", "k", "e")};
            s_v += e;
</%def>\
<%def name="spart()">            const ${acc} e = exp(${ld("xr", "k * inner")} - m);
            ${st("yr", "k * inner", "e")};
            s += e;
</%def>\
</%self:for_row>\
  % endif
  % if vw > 1:
    s += hsum(s_v);
  % endif
  % if log:
    const ${RT} lse = m + log(s);
<%self:for_row>\
<%def name="vpart()">            ${stv("yr", "k", ldv("xr", "k") + " - lse")};
</%def>\
<%def name="spart()">            ${st("yr", "k * inner", ld("xr", "k * inner") + " - lse")};
</%def>\
</%self:for_row>\
  % elif store_exp:
    const ${RT} inv = 1 / s;
<%self:for_row>\
<%def name="vpart()">            ${stv("yr", "k", ldv("yr", "k") + " * inv")};
</%def>\
<%def name="spart()">            ${st("yr", "k * inner", ld("yr", "k * inner") + " * inv")};
</%def>\
</%self:for_row>\
  % else:
    const ${RT} inv = 1 / s;
<%self:for_row>\
<%def name="vpart()">            ${stv("yr", "k", "exp(" + ldv("xr", "k") + " - m) * inv")};
</%def>\
<%def name="spart()">            ${st("yr", "k * inner", "exp(" + ld("xr", "k * inner") + " - m) * inv")};
</%def>\
</%self:for_row>\
  % endif
% else:
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
% if wg == 1:
    __global const ${t} *gr = g + g_off + base;
    __global const ${t} *yr = y + y_off + base;
    __global ${t} *dxr = dx + dx_off + base;
    ${RT} s = 0;
  % if vw > 1:
    ${V} s_v = 0;
  % endif
<%self:for_row>\
<%def name="vpart()">\
  % if log:
            s_v += ${ldv("gr", "k")};
  % else:
            s_v += ${ldv("gr", "k")} * ${ldv("yr", "k")};
  % endif
</%def>\
<%def name="spart()">\
  % if log:
            s += ${ld("gr", "k * inner")};
  % else:
            s += ${ld("gr", "k * inner")} * ${ld("yr", "k * inner")};
  % endif
</%def>\
</%self:for_row>\
  % if vw > 1:
    s += hsum(s_v);
  % endif
<%self:for_row>\
<%def name="vpart()">\
  % if log:
            ${stv("dxr", "k", ldv("gr", "k") + " - exp(" + ldv("yr", "k") + ") * s")};
  % else:
            ${stv("dxr", "k", ldv("yr", "k") + " * (" + ldv("gr", "k") + " - s)")};
  % endif
</%def>\
<%def name="spart()">\
  % if log:
            ${st("dxr", "k * inner", ld("gr", "k * inner") + " - exp(" + ld("yr", "k * inner") + ") * s")};
  % else:
            ${st("dxr", "k * inner", ld("yr", "k * inner") + " * (" + ld("gr", "k * inner") + " - s)")};
  % endif
</%def>\
</%self:for_row>\
% else:
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
% endif
}

% elif kernel == "cross_entropy":
<%
w_of = (lambda k: ld("weight", f"w_off + {k}")) if weighted else (lambda k: "1")
%>\
/* Per-row loss of integer targets:
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
% if gather:
    /* vw short rows, one per lane: the exps run on vectors; each lane's loss is finished alone */
    __global const ${t} *xr = x + x_off + base;
  % if weighted:
    __global const ${t} *wr = weight + w_off;
  % endif
${row_max("m")}\
    ${V} s = 0, sum_wx = 0;
  % if weighted:
    ${acc} sum_w = 0;
  % else:
    const ${acc} sum_w = (${acc})n;
  % endif
    for (${idx} k = 0; k < n; k++) {
        const ${V} v = ${ldv("xr", "k")};
        s += exp(v - m);
  % if weighted:
        const ${acc} wk = ${ld("wr", "k")};
        sum_wx += wk * v;
        sum_w += wk;
  % else:
        sum_wx += v;
  % endif
    }
    const ${V} lse_v = m + log(s);
  % for j in range(vw):
    ${f"if (last >= {j}) " if j else ""}{
        const ${idx} r = r0 + ${j};
        const long tg = (long)target[t_off + r];
        const ${acc} lse = lse_v.${LANES[j]};
        ${acc} l, rw;
        if (tg == ignore_index) {
            l = 0;
            rw = 0;
        } else if (tg < 0 || tg >= n) {
            l = NAN;
            rw = NAN;
        } else {
            const ${acc} wt = ${w_of("tg")};
            const ${acc} xt = ${ld("xr", f"lo{j} + tg")};
            l = (1 - eps) * wt * (lse - xt) + eps / n * (sum_w * lse - sum_wx.${LANES[j]});
            rw = wt;
        }
        ${st("loss", "r", "l")};
        ${st("row_w", "r", "rw")};
        lse_out[r] = lse;
    }
  % endfor
}
% else:
    const long tg = (long)target[t_off + r];
% if nll:
    const ${acc} lse = 0;
% elif wg == 1:
    __global const ${t} *xr = x + x_off + base;
  % if weighted:
    __global const ${t} *wr = weight + w_off;
  % endif
${row_max("m")}    /* second pass: sum of exp(x - m) and the label-smoothing sums */
    ${acc} s = 0, sum_wx = 0;
  % if vw > 1:
    ${V} s_v = 0, sum_wx_v = 0;
  % endif
  % if weighted:
    ${acc} sum_w = 0;
    % if vw > 1:
    ${V} sum_w_v = 0;
    % endif
  % else:
    const ${acc} sum_w = (${acc})n;
  % endif
<%self:for_row>\
<%def name="vpart()">\
            const ${V} v = ${ldv("xr", "k")};
            s_v += exp(v - m);
  % if weighted:
            const ${V} wk = ${ldv("wr", "k")};
            sum_wx_v += wk * v;
            sum_w_v += wk;
  % else:
            sum_wx_v += v;
  % endif
</%def>\
<%def name="spart()">\
            const ${acc} v = ${ld("xr", "k * inner")};
            s += exp(v - m);
  % if weighted:
            const ${acc} wk = ${ld("wr", "k")};
            sum_wx += wk * v;
            sum_w += wk;
  % else:
            sum_wx += v;
  % endif
</%def>\
</%self:for_row>\
  % if vw > 1:
    s += hsum(s_v);
    sum_wx += hsum(sum_wx_v);
    % if weighted:
    sum_w += hsum(sum_w_v);
    % endif
  % endif
    const ${acc} lse = m + log(s);
% else:
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
% endif

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
/* dx = softmax minus the smoothed one-hot, times the incoming gradient:
 *   cross-entropy: dx = g[r] * (((1 - eps) w[t] + eps / n * W) * p - (k == t) (1 - eps) w[t] - eps / n * w[k])
 *                  with p = exp(x - lse[r]) and W = sum_j w[j]
 *   nll:           dx = -g[r] * w[t] * (k == t)
 * g is read at g_off + r * g_stride (g_stride == 0 for the gradient of a reduced loss).
% if per_row:
 * One work-item per row (`count` = rows), streaming the row in vectors of ${vw}. */
% else:
 * One work-item per element (`count` = elements). */
% endif
__kernel void cross_entropy_backward(const ${idx} count, const ${idx} n, const ${idx} inner,
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
% if gather:
    /* vw short rows, one per lane: dx = keep ? a * exp(x - l) - b * w[k] : c, lane by lane */
    const ${idx} rows = count;
${row_setup()}\
    __global const ${t} *xr = x + x_off + base;
    __global ${t} *dxr = dx + dx_off + base;
  % if weighted:
    const ${acc} w_all = ${ld("weight_sum", "ws_off")};
  % elif not nll:
    const ${acc} w_all = (${acc})n;
  % endif
    ${V} a = 0, b = 0, l = 0, c = 0, own = 0;
    ${IV} keep = 0;
  % for j in range(vw):
    ${f"if (last >= {j}) " if j else ""}{
        const ${idx} r = r0 + ${j};
        const long tg = (long)target[t_off + r];
        if (tg == ignore_index || tg < 0 || tg >= n) {
            c.${LANES[j]} = tg == ignore_index ? 0 : NAN;
        } else {
    % if scaled:
            const ${acc} gr = ${ld("g", "g_off + r * g_stride")} * scale[0];
    % else:
            const ${acc} gr = ${ld("g", "g_off + r * g_stride")};
    % endif
            const ${acc} wt = ${w_of("tg")};
            a.${LANES[j]} = ((1 - eps) * wt + eps / n * w_all) * gr;
            b.${LANES[j]} = eps / n * gr;
            l.${LANES[j]} = lse[r];
            own.${LANES[j]} = (1 - eps) * wt * gr;
            keep.${LANES[j]} = -1;
        }
    }
  % endfor
    for (${idx} k = 0; k < n; k++) {
        const ${V} d = a * exp(${ldv("xr", "k")} - l) - b * ${w_of("k")};
        ${stv("dxr", "k", "select(c, d, keep)")};
    }
    /* each kept lane's target term, recomputed rather than read back */
  % for j in range(vw):
    if (${f"last >= {j} && " if j else ""}keep.${LANES[j]}) {
        const long tg = (long)target[t_off + r0 + ${j}];
        const ${acc} d_t = a.${LANES[j]} * exp(${ld("xr", f"lo{j} + tg")} - l.${LANES[j]}) - b.${LANES[j]} * ${w_of("tg")} - own.${LANES[j]};
        ${st("dxr", f"lo{j} + tg", "d_t")};
    }
  % endfor
% elif per_row:
    const ${idx} r = (${idx})get_global_id(0);
    if (r >= count) return;
    const ${idx} base = (r / inner) * n * inner + r % inner;
    __global const ${t} *xr = x + x_off + base;
    __global ${t} *dxr = dx + dx_off + base;
  % if weighted:
    __global const ${t} *wr = weight + w_off;
  % endif
    const long tg = (long)target[t_off + r];
    if (tg == ignore_index || tg < 0 || tg >= n) {
        const ${acc} d = tg == ignore_index ? 0 : NAN;
<%self:for_row>\
<%def name="vpart()">            ${stv("dxr", "k", splat("d"))};
</%def>\
<%def name="spart()">            ${st("dxr", "k * inner", "d")};
</%def>\
</%self:for_row>\
        return;
    }
  % if scaled:
    const ${acc} gr = ${ld("g", "g_off + r * g_stride")} * scale[0];
  % else:
    const ${acc} gr = ${ld("g", "g_off + r * g_stride")};
  % endif
    const ${acc} wt = ${w_of("tg")};
  % if nll:
<%self:for_row>\
<%def name="vpart()">            ${stv("dxr", "k", splat("0"))};
</%def>\
<%def name="spart()">            ${st("dxr", "k * inner", "0")};
</%def>\
</%self:for_row>\
    ${st("dxr", "tg * inner", "-gr * wt")};
  % else:
    % if weighted:
    const ${acc} w_all = ${ld("weight_sum", "ws_off")};
    % else:
    const ${acc} w_all = (${acc})n;
    % endif
    const ${acc} a = ((1 - eps) * wt + eps / n * w_all) * gr, b = eps / n * gr, l = lse[r];
<%self:for_row>\
<%def name="vpart()">\
    % if weighted:
            ${stv("dxr", "k", "a * exp(" + ldv("xr", "k") + " - l) - b * " + ldv("wr", "k"))};
    % else:
            ${stv("dxr", "k", "a * exp(" + ldv("xr", "k") + " - l) - b")};
    % endif
</%def>\
<%def name="spart()">\
            ${st("dxr", "k * inner", "a * exp(" + ld("xr", "k * inner") + " - l) - b * " + w_of("k"))};
</%def>\
</%self:for_row>\
    /* the target's own term, recomputed rather than read back (no second rounding of half storage) */
    const ${acc} d_t = a * exp(${ld("xr", "tg * inner")} - l) - b * ${w_of("tg")} - (1 - eps) * wt * gr;
    ${st("dxr", "tg * inner", "d_t")};
  % endif
% else:
    const ${idx} e = (${idx})get_global_id(0);
    if (e >= count) return;
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
% endif
}
% endif
