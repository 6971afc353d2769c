## Batch normalisation over (N, C, L) data (L = H*W for BatchNorm2d, 1 for BatchNorm1d on (N, C)): two passes
## forward (statistics, then normalise), two passes backward (sums, then the input gradient).
##
## x (and gy, y) are read through strides (n, c, l); the plane of one (n, c) is contiguous (l stride 1: the
## statistics load it as vectors). Per-channel values live in a small "params" array of PARAMS
## floats per channel (acc type):
##     0 mean   1 invstd   2 scale = weight * invstd   3 shift = bias - mean * scale
##     4 k1     5 k2       6 k3        (the input gradient is gx = k1 * gy + k2 * x + k3)
## With relu set, the forward output is max(0, x * scale + shift) and the backward passes mask gy by y > 0
## (a BatchNorm followed by a ReLU in one kernel each way).
##
## Kernels:
##   bn_stats      part[s, c] = (sum (x - K_c), sum (x - K_c)^2) over images of split s (forward; K_c = x[0, c, 0],
##                 a shift that keeps the one-pass variance accurate) or (sum g, sum g * (x - mean_c)) (backward,
##                 g = gy masked by y > 0 with relu); ${VW}-lane vector accumulators over each plane
##   bn_finalize   per channel: sums over the splits -> mean, invstd, scale, shift; running statistics updated
##                 in place (momentum, unbiased variance) when given
##   bn_eval       per channel: params from the running statistics (eval mode)
##   bn_grad_params per channel: sums -> grad weight, grad bias and k1, k2, k3
##   bn_apply      y = x * scale + shift (ReLU)                    3-D range (l, c, n): no index division
##   bn_grad_input gx = k1 * g + k2 * x + k3                       3-D range (l, c, n)
<%page args="kernel, t, acc, VW=8, relu=False, has_running=False, has_weight=True, has_bias=True"/>
<%!
def ld(t, p):
    return f"vload_half(0, {p})" if t == "half" else f"(*({p}))"
%>
#define PARAMS 8

% if kernel == "bn_stats":
<%
    vt = f"{acc}{VW}"
    vec = t != "half" and VW > 1   # vector loads along the (contiguous) planes, a scalar tail
    comps = "0123456789abcdef"
%>
// grid (nsplit, C): split s sums images n0 = s * nper .. min(N, n0 + nper)
__kernel void bn_stats(const int N, const int L, const int nper, const int backward,
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_l,
    __global const ${t} *gy, const int gy_off, const int gs_n, const int gs_c, const int gs_l,
    __global const ${t} *y, const int y_off, const int ys_n, const int ys_c, const int ys_l,
    __global const ${acc} *params,
    __global ${acc} *part)
{
    const int s = get_global_id(0), c = get_global_id(1), C = get_global_size(1);
    const int n0 = s * nper, n1 = min(N, n0 + nper);
    const ${acc} k = backward ? params[c * PARAMS] : (${acc})x[x_off + c * xs_c];
% if vec:
    ${vt} a1 = (${vt})(0), a2 = (${vt})(0);
% endif
    ${acc} b1 = 0, b2 = 0;
    for (int n = n0; n < n1; ++n) {
        __global const ${t} *xp = x + x_off + n * xs_n + c * xs_c;
        __global const ${t} *gp = gy + gy_off + n * gs_n + c * gs_c;
        __global const ${t} *yp = y + y_off + n * ys_n + c * ys_c;
        int l = 0;
% if vec:
        for (; l + ${VW} <= L; l += ${VW}) {
            const ${vt} d = vload${VW}(0, xp + l) - (${vt})(k);
            if (backward) {
  % if relu:
                const ${vt} g = select((${vt})(0), vload${VW}(0, gp + l), vload${VW}(0, yp + l) > (${vt})(0));
  % else:
                const ${vt} g = vload${VW}(0, gp + l);
  % endif
                a1 += g;
                a2 = fma(g, d, a2);
            } else {
                a1 += d;
                a2 = fma(d, d, a2);
            }
        }
% endif
        for (; l < L; ++l) {
            const ${acc} d = (${acc})xp[l * xs_l] - k;
            if (backward) {
  % if relu:
                const ${acc} g = (${acc})yp[l * ys_l] > 0 ? (${acc})gp[l * gs_l] : (${acc})0;
  % else:
                const ${acc} g = (${acc})gp[l * gs_l];
  % endif
                b1 += g;
                b2 = fma(g, d, b2);
            } else {
                b1 += d;
                b2 = fma(d, d, b2);
            }
        }
    }
% if vec:
    b1 += ${" + ".join(f"a1.s{comps[j]}" for j in range(VW))};
    b2 += ${" + ".join(f"a2.s{comps[j]}" for j in range(VW))};
% endif
    part[(s * C + c) * 2] = b1;
    part[(s * C + c) * 2 + 1] = b2;
}
% endif

% if kernel == "bn_finalize":
// grid (C): mean, invstd, scale, shift from the splits' shifted sums; running statistics updated in place
__kernel void bn_finalize(const int nsplit, const int count, const ${acc} eps, const ${acc} momentum,
    __global const ${t} *x, const int x_off, const int xs_c,
    __global const ${acc} *part,
    __global const ${t} *w, const int w_off, __global const ${t} *b, const int b_off,
    __global ${t} *rmean, const int rm_off, __global ${t} *rvar, const int rv_off,
    __global ${acc} *params)
{
    const int c = get_global_id(0), C = get_global_size(0);
    ${acc} s1 = 0, s2 = 0;
    for (int s = 0; s < nsplit; ++s) {
        s1 += part[(s * C + c) * 2];
        s2 += part[(s * C + c) * 2 + 1];
    }
    const ${acc} m = (${acc})count;
    const ${acc} dmean = s1 / m;
    const ${acc} var = max((s2 - s1 * dmean) / m, (${acc})0);
    const ${acc} mean = (${acc})x[x_off + c * xs_c] + dmean;
    const ${acc} invstd = rsqrt(var + eps);
% if has_weight:
    const ${acc} scale = (${acc})${ld(t, "w + w_off + c")} * invstd;
% else:
    const ${acc} scale = invstd;
% endif
% if has_bias:
    const ${acc} shift = (${acc})${ld(t, "b + b_off + c")} - mean * scale;
% else:
    const ${acc} shift = -mean * scale;
% endif
    __global ${acc} *p = params + c * PARAMS;
    p[0] = mean; p[1] = invstd; p[2] = scale; p[3] = shift;
% if has_running:
    rmean[rm_off + c] = (${t})((1 - momentum) * (${acc})rmean[rm_off + c] + momentum * mean);
    rvar[rv_off + c] = (${t})((1 - momentum) * (${acc})rvar[rv_off + c] + momentum * var * m / max(m - 1, (${acc})1));
% endif
}
% endif

% if kernel == "bn_eval":
// grid (C): params from the running statistics
__kernel void bn_eval(const ${acc} eps,
    __global const ${t} *w, const int w_off, __global const ${t} *b, const int b_off,
    __global const ${t} *rmean, const int rm_off, __global const ${t} *rvar, const int rv_off,
    __global ${acc} *params)
{
    const int c = get_global_id(0);
    const ${acc} mean = (${acc})rmean[rm_off + c];
    const ${acc} invstd = rsqrt((${acc})rvar[rv_off + c] + eps);
% if has_weight:
    const ${acc} scale = (${acc})${ld(t, "w + w_off + c")} * invstd;
% else:
    const ${acc} scale = invstd;
% endif
% if has_bias:
    const ${acc} shift = (${acc})${ld(t, "b + b_off + c")} - mean * scale;
% else:
    const ${acc} shift = -mean * scale;
% endif
    __global ${acc} *p = params + c * PARAMS;
    p[0] = mean; p[1] = invstd; p[2] = scale; p[3] = shift;
}
% endif

% if kernel == "bn_grad_params":
// grid (C): from sum g and sum g * (x - mean): grad weight, grad bias, and gx = k1 * g + k2 * x + k3
// (training: the batch statistics depend on x; eval (batch_stats == 0): gx = scale * g)
__kernel void bn_grad_params(const int nsplit, const int count, const int batch_stats,
    __global const ${acc} *part,
    __global const ${t} *w, const int w_off,
    __global ${t} *gw, const int gw_off, __global ${t} *gb, const int gb_off,
    __global ${acc} *params)
{
    const int c = get_global_id(0), C = get_global_size(0);
    ${acc} sg = 0, sgx = 0;
    for (int s = 0; s < nsplit; ++s) {
        sg += part[(s * C + c) * 2];
        sgx += part[(s * C + c) * 2 + 1];
    }
    __global ${acc} *p = params + c * PARAMS;
    const ${acc} mean = p[0], invstd = p[1], scale = p[2];
    gw[gw_off + c] = (${t})(sgx * invstd);
    gb[gb_off + c] = (${t})sg;
    const ${acc} m = (${acc})count;
    ${acc} k1 = scale, k2 = 0, k3 = 0;
    if (batch_stats) {
        k2 = -scale * invstd * invstd * sgx / m;
        k3 = -scale * sg / m - k2 * mean;
    }
    p[4] = k1; p[5] = k2; p[6] = k3;
}
% endif

% if kernel == "bn_apply":
// y[n, c, l] = x * scale[c] + shift[c]${" clamped at 0" if relu else ""}; the range is exactly (L, C, N)
__kernel void bn_apply(
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_l,
    __global const ${acc} *params,
    __global ${t} *y, const int y_off, const int ys_n, const int ys_c, const int ys_l)
{
    const int l = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    const ${acc} v = fma((${acc})x[x_off + n * xs_n + c * xs_c + l * xs_l], params[c * PARAMS + 2], params[c * PARAMS + 3]);
% if relu:
    y[y_off + n * ys_n + c * ys_c + l * ys_l] = (${t})fmax(v, (${acc})0);
% else:
    y[y_off + n * ys_n + c * ys_c + l * ys_l] = (${t})v;
% endif
}
% endif

% if kernel == "bn_grad_input":
// gx[n, c, l] = k1[c] * g + k2[c] * x + k3[c] (g = gy${", 0 where y <= 0" if relu else ""}); the range is exactly (L, C, N)
__kernel void bn_grad_input(
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_l,
    __global const ${t} *gy, const int gy_off, const int gs_n, const int gs_c, const int gs_l,
    __global const ${t} *y, const int y_off, const int ys_n, const int ys_c, const int ys_l,
    __global const ${acc} *params,
    __global ${t} *gx, const int gx_off, const int gxs_n, const int gxs_c, const int gxs_l)
{
    const int l = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    __global const ${acc} *p = params + c * PARAMS;
    const ${acc} g0 = (${acc})gy[gy_off + n * gs_n + c * gs_c + l * gs_l];
% if relu:
    const ${acc} g = (${acc})y[y_off + n * ys_n + c * ys_c + l * ys_l] > 0 ? g0 : (${acc})0;
% else:
    const ${acc} g = g0;
% endif
    const ${acc} xv = (${acc})x[x_off + n * xs_n + c * xs_c + l * xs_l];
    gx[gx_off + n * gxs_n + c * gxs_c + l * gxs_l] = (${t})(p[4] * g + p[5] * xv + p[6]);
}
% endif
