## Row normalisation (layer norm; group and instance norm are layer norm over (N * groups) rows).
## Every row is n contiguous values starting at r * n: y = (x - mean) * rstd [* w[k]] [+ b[k]], with
## rstd = 1 / sqrt(var + eps) and the variance biased (divided by n), as PyTorch.
##
##   kernel       forward | backward | grad_params
##   t, acc       storage and arithmetic C types (half is stored as half, computed in float)
##   idx          index type: int, or long past 2**31 elements
##   wg           forward/backward: work-items per row: 1 = one work-item per row (CPUs, short rows),
##                else one work-group of wg (a power of two) per row reducing in local memory (GPUs)
##   vw           forward/backward with wg == 1: a row is streamed in vectors of vw values (vloadN; PoCL
##                does not vectorize across work-items whose code loops), the last n % vw one by one
##   has_weight   an elementwise scale w[k] (k = position in the row) is given
##   has_bias     forward: an elementwise shift b[k] is given; grad_params: db is wanted
##
## forward      y, and per row its mean and rstd (acc type; the backward reads them). Two passes for
##              the statistics (mean, then the mean squared deviation) keep the variance exact for rows
##              with a large mean, one more writes y.
## backward     dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w, xhat = (x - mean) * rstd.
## grad_params  one work-item per (split, k): partial sums over its share of the rows of g * xhat (dw)
##              and g (db), written to part[split, k] (acc type); the launcher adds the splits. Neighbouring
##              work-items read neighbouring values of a row (coalesced on GPUs); with vw > 1 (CPUs, n a
##              multiple of vw) a work-item takes vw neighbouring columns, a vector per row.
<%page args="kernel, t, acc, idx, wg=1, vw=1, has_weight=False, has_bias=False"/>
<%
def ld(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"

def st(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte(({acc})({val}), {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"

def wk(k):
    """The scale at row position k (1 without a weight)."""
    return ld("w", "w_off + " + k) if has_weight else "1"

V = f"{acc}{vw}" if vw > 1 else acc   # one vw-wide chunk, in the arithmetic type

def ldv(ptr, k):
    """vw consecutive values ptr[k .. k + vw - 1] as a vector (vw > 1)."""
    if t == "half":
        return f"vload_half{vw}(0, {ptr} + {k})"
    if t == acc:
        return f"vload{vw}(0, {ptr} + {k})"
    return f"convert_{V}(vload{vw}(0, {ptr} + {k}))"

def stv(ptr, k, val):
    if t == "half":
        return f"vstore_half{vw}_rte({val}, 0, {ptr} + {k})"
    return f"vstore{vw}({val}, 0, {ptr} + {k})"

def wkv(k):
    return ldv("(w + w_off)", k) if has_weight else f"(({V})(1))"
%>\
<%def name="rowloop()">\
    {
% if vw > 1:
        ${idx} k = 0;
        for (; k + ${vw} <= n; k += ${vw}) {
${caller.vpart()}\
        }
        for (; k < n; k++) {
% else:
        for (${idx} k = lid; k < n; k += ${wg}) {
% endif
${caller.spart()}\
        }
    }
</%def>\
% if vw > 1:
/* The sum of a ${vw}-wide vector's lanes. */
<%
    def fold():
        lines, w, cur = [], vw, "v"
        while w > 1:
            w //= 2
            ty = f"{acc}{w}" if w > 1 else acc
            lines.append(f"    const {ty} v{w} = {cur}.lo + {cur}.hi;")
            cur = f"v{w}"
        return "\n".join(lines)
%>\
inline ${acc} hsum(const ${V} v)
{
${fold()}
    return v1;
}
% endif
<%def name="row_setup()">\
% if wg == 1:
    const ${idx} r = (${idx})get_global_id(0);
    if (r >= rows) return;
    const int lid = 0;
% else:
    __local ${acc} scratch[${wg}];
    const ${idx} r = (${idx})get_group_id(0);   /* exactly `rows` groups: no early return before barriers */
    const int lid = (int)get_local_id(0);
% endif
    const ${idx} base = r * n;
</%def>\
<%def name="group_sum(var)">\
% if wg > 1:
    scratch[lid] = ${var};
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int half_wg = ${wg // 2}; half_wg > 0; half_wg >>= 1) {
        if (lid < half_wg) scratch[lid] += scratch[lid + half_wg];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    ${var} = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
% endif
</%def>\

% if kernel == "forward":
__kernel void norm_forward(const ${idx} rows, const ${idx} n,
                           __global const ${t} *x, const ${idx} x_off,
% if has_weight:
                           __global const ${t} *w, const ${idx} w_off,
% endif
% if has_bias:
                           __global const ${t} *b, const ${idx} b_off,
% endif
                           const ${acc} eps,
                           __global ${t} *y, const ${idx} y_off,
                           __global ${acc} *mean_out, __global ${acc} *rstd_out)
{
${row_setup()}\
    __global const ${t} *xr = x + x_off + base;
    ${acc} s = 0;
% if vw > 1:
    ${V} s_v = 0;
% endif
<%self:rowloop>\
<%def name="vpart()">            s_v += ${ldv("xr", "k")};
</%def>\
<%def name="spart()">            s += ${ld("xr", "k")};
</%def>\
</%self:rowloop>\
% if vw > 1:
    s += hsum(s_v);
% endif
${group_sum("s")}\
    const ${acc} mean = s / n;
    ${acc} v = 0;
% if vw > 1:
    ${V} v_v = 0;
% endif
<%self:rowloop>\
<%def name="vpart()">            const ${V} d = ${ldv("xr", "k")} - mean;
            v_v += d * d;
</%def>\
<%def name="spart()">            const ${acc} d = ${ld("xr", "k")} - mean;
            v += d * d;
</%def>\
</%self:rowloop>\
% if vw > 1:
    v += hsum(v_v);
% endif
${group_sum("v")}\
    const ${acc} rstd = rsqrt(v / n + eps);
    __global ${t} *yr = y + y_off + base;
<%self:rowloop>\
<%def name="vpart()">            const ${V} xhat = (${ldv("xr", "k")} - mean) * rstd;
            ${stv("yr", "k", "xhat * " + wkv("k") + (" + " + ldv("(b + b_off)", "k") if has_bias else ""))};
</%def>\
<%def name="spart()">            const ${acc} xhat = (${ld("xr", "k")} - mean) * rstd;
            ${st("yr", "k", "xhat * " + wk("k") + (" + " + ld("b", "b_off + k") if has_bias else ""))};
</%def>\
</%self:rowloop>\
    if (lid == 0) {
        mean_out[r] = mean;
        rstd_out[r] = rstd;
    }
}

% elif kernel == "backward":
__kernel void norm_backward(const ${idx} rows, const ${idx} n,
                            __global const ${t} *g, const ${idx} g_off,
                            __global const ${t} *x, const ${idx} x_off,
% if has_weight:
                            __global const ${t} *w, const ${idx} w_off,
% endif
                            __global const ${acc} *mean_in, __global const ${acc} *rstd_in,
                            __global ${t} *dx, const ${idx} dx_off)
{
${row_setup()}\
    __global const ${t} *gr = g + g_off + base;
    __global const ${t} *xr = x + x_off + base;
    const ${acc} mean = mean_in[r], rstd = rstd_in[r];
    ${acc} a = 0, c = 0;
% if vw > 1:
    ${V} a_v = 0, c_v = 0;
% endif
<%self:rowloop>\
<%def name="vpart()">            const ${V} gw = ${ldv("gr", "k")} * ${wkv("k")};
            a_v += gw;
            c_v += gw * (${ldv("xr", "k")} - mean) * rstd;
</%def>\
<%def name="spart()">            const ${acc} gw = ${ld("gr", "k")} * ${wk("k")};
            a += gw;
            c += gw * (${ld("xr", "k")} - mean) * rstd;
</%def>\
</%self:rowloop>\
% if vw > 1:
    a += hsum(a_v);
    c += hsum(c_v);
% endif
${group_sum("a")}\
${group_sum("c")}\
    a /= n;
    c /= n;
    __global ${t} *dxr = dx + dx_off + base;
<%self:rowloop>\
<%def name="vpart()">            const ${V} gw = ${ldv("gr", "k")} * ${wkv("k")};
            const ${V} xhat = (${ldv("xr", "k")} - mean) * rstd;
            ${stv("dxr", "k", "rstd * (gw - a - xhat * c)")};
</%def>\
<%def name="spart()">            const ${acc} gw = ${ld("gr", "k")} * ${wk("k")};
            const ${acc} xhat = (${ld("xr", "k")} - mean) * rstd;
            ${st("dxr", "k", "rstd * (gw - a - xhat * c)")};
</%def>\
</%self:rowloop>\
}

% elif kernel == "grad_params":
__kernel void norm_grad_params(const ${idx} rows, const ${idx} n, const ${idx} rows_per_split,
                               const ${idx} nsplit,
                               __global const ${t} *g, const ${idx} g_off,
                               __global const ${t} *x, const ${idx} x_off,
                               __global const ${acc} *mean_in, __global const ${acc} *rstd_in\
% if has_weight:
,
                               __global ${acc} *dw_part\
% endif
% if has_bias:
,
                               __global ${acc} *db_part\
% endif
)
{
    /* vw > 1 (CPUs): a work-item takes vw neighbouring columns (n % vw == 0), read as one vector per row */
    const ${idx} gid = (${idx})get_global_id(0);
    const ${idx} ncols = n / ${vw};
    if (gid >= nsplit * ncols) return;
    const ${idx} k = (gid % ncols) * ${vw}, split = gid / ncols;
    const ${idx} r0 = split * rows_per_split;
    const ${idx} r1 = min(rows, r0 + rows_per_split);
    ${V} sw = 0, sb = 0;
    for (${idx} r = r0; r < r1; r++) {
% if vw > 1:
        const ${V} gv = ${ldv("g", "g_off + r * n + k")};
% else:
        const ${acc} gv = ${ld("g", "g_off + r * n + k")};
% endif
% if has_weight:
  % if vw > 1:
        sw += gv * (${ldv("x", "x_off + r * n + k")} - mean_in[r]) * rstd_in[r];
  % else:
        sw += gv * (${ld("x", "x_off + r * n + k")} - mean_in[r]) * rstd_in[r];
  % endif
% endif
        sb += gv;
    }
    const ${idx} at = split * n + k;
% if vw > 1:
  % if has_weight:
    vstore${vw}(sw, 0, dw_part + at);
  % endif
  % if has_bias:
    vstore${vw}(sb, 0, db_part + at);
  % endif
% else:
  % if has_weight:
    dw_part[at] = sw;
  % endif
  % if has_bias:
    db_part[at] = sb;
  % endif
% endif
}
% endif
