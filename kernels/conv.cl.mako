## 2-D convolution and pooling over NCHW tensors (PyTorch semantics), forward and backward.
##
## Every tensor is contiguous NCHW (weights OIHW) with an element offset; every size, stride, padding and
## dilation is a kernel ARGUMENT, so a new batch size or image size never rebuilds the program.
## Template parameters: t (storage type), acc (accumulator type), and per kernel a few switches
## (has_bias, ocb = output channels per work-item). All gradients are gathers: every output element is
## written by exactly one work-item, so results are deterministic and no float atomics are needed.
##
## Kernels:
##   conv2d_forward      direct convolution, one work-item per (n, output pixel, block of ocb channels)
##   conv2d_grad_input   direct transposed gather: each input pixel sums its contributions
##   conv2d_grad_weight  one work-item per (batch split, weight element); splits summed by sum_splits
##   conv2d_grad_bias    one work-item per (batch split, channel); splits summed by sum_splits
##   im2col / col2im     column matrix [N, C*KH*KW, OH*OW] and its gather inverse (for the matmul path)
##   sum_splits          out[i] = sum_s part[s * M + i]  (deterministic second stage)
##   max_pool2d_forward / max_pool2d_backward   (argmax index within the plane recorded in forward)
##   avg_pool2d_forward / avg_pool2d_backward   (count_include_pad=True: divisor KH*KW)
<%page args="kernel, t, acc, has_bias=False, ocb=1"/>
<%def name="geom()">const int N, const int C, const int H, const int W,
    const int OC, const int OH, const int OW, const int KH, const int KW,
    const int SH, const int SW, const int PH, const int PW, const int DH, const int DW</%def>
<%def name="pool_geom()">const int NC, const int H, const int W, const int OH, const int OW,
    const int KH, const int KW, const int SH, const int SW, const int PH, const int PW</%def>

// q = a / b and r = a - q*b, spelled without `%`: LLVM pairs a / and a % of the same operands into a
// `freeze` instruction that Oclgrind's uninitialized-value checker cannot execute.
#define DIVMOD(q, r, a, b) const int q = (a) / (b); const int r = (a) - q * (b)

// First k in [0, K) with 0 <= base + k*D, and one past the last with base + k*D < L.
inline int k_lo(const int base, const int D) { return base >= 0 ? 0 : (-base + D - 1) / D; }
inline int k_hi(const int base, const int D, const int L, const int K)
{
    const int r = L - base;                       // need k*D < r
    if (r <= 0) return 0;
    const int hi = (r + D - 1) / D;
    return hi < K ? hi : K;
}

% if kernel == "conv2d_forward":
// y[n, oc, oh, ow] = b[oc] + sum_{c, ky, kx} x[n, c, oh*SH - PH + ky*DH, ow*SW - PW + kx*DW] * w[oc, c, ky, kx]
// One work-item computes ${ocb} consecutive output channels at one output pixel, so each input value it
// loads is used ${ocb} times; neighbouring work-items take neighbouring pixels (vectorizable on CPUs).
__kernel void conv2d_forward(${geom()},
    __global const ${t} *x, const int x_off,
    __global const ${t} *w, const int w_off,
% if has_bias:
    __global const ${t} *b, const int b_off,
% endif
    __global ${t} *y, const int y_off)
{
    const int OCB = (OC + ${ocb} - 1) / ${ocb};
    const int gid = get_global_id(0);
    if (gid >= N * OCB * OH * OW) return;
    DIVMOD(r1, ow, gid, OW);
    DIVMOD(r2, oh, r1, OH);
    DIVMOD(n, ob, r2, OCB);
    const int oc0 = ob * ${ocb};
    const int ih0 = oh * SH - PH, iw0 = ow * SW - PW;
    const int ky0 = k_lo(ih0, DH), ky1 = k_hi(ih0, DH, H, KH);
    const int kx0 = k_lo(iw0, DW), kx1 = k_hi(iw0, DW, W, KW);
    const int wsize = C * KH * KW;
    __global const ${t} *xn = x + x_off + n * C * H * W;
% for j in range(ocb):
    __global const ${t} *w${j} = w + w_off + min(oc0 + ${j}, OC - 1) * wsize;
    ${acc} s${j} = 0;
% endfor
    for (int c = 0; c < C; ++c) {
        for (int ky = ky0; ky < ky1; ++ky) {
            __global const ${t} *xrow = xn + (c * H + ih0 + ky * DH) * W + iw0;
            const int wrow = (c * KH + ky) * KW;
            for (int kx = kx0; kx < kx1; ++kx) {
                const ${acc} v = (${acc})xrow[kx * DW];
% for j in range(ocb):
                s${j} += v * (${acc})w${j}[wrow + kx];
% endfor
            }
        }
    }
    const int plane = OH * OW, pix = oh * OW + ow;
% for j in range(ocb):
    if (oc0 + ${j} < OC) {
% if has_bias:
        s${j} += (${acc})b[b_off + oc0 + ${j}];
% endif
        y[y_off + (n * OC + oc0 + ${j}) * plane + pix] = (${t})s${j};
    }
% endfor
}
% endif

% if kernel == "conv2d_grad_input":
// gx[n, c, h, w] = sum over (oc, ky, kx) with h = oh*SH - PH + ky*DH (same for w) of gy[n, oc, oh, ow] * w[oc, c, ky, kx]
__kernel void conv2d_grad_input(${geom()},
    __global const ${t} *gy, const int gy_off,
    __global const ${t} *w, const int w_off,
    __global ${t} *gx, const int gx_off)
{
    const int gid = get_global_id(0);
    if (gid >= N * C * H * W) return;
    DIVMOD(r1, iw, gid, W);
    DIVMOD(r2, ih, r1, H);
    DIVMOD(n, c, r2, C);
    const int plane = OH * OW, wsize = C * KH * KW;
    __global const ${t} *gyn = gy + gy_off + n * OC * plane;
    __global const ${t} *wc = w + w_off + c * KH * KW;
    ${acc} s = 0;
    for (int ky = 0; ky < KH; ++ky) {
        const int th = ih + PH - ky * DH, oh = th / SH;
        if (th < 0 || oh * SH != th || oh >= OH) continue;
        for (int kx = 0; kx < KW; ++kx) {
            const int tw = iw + PW - kx * DW, ow = tw / SW;
            if (tw < 0 || ow * SW != tw || ow >= OW) continue;
            const int pix = oh * OW + ow, k = ky * KW + kx;
            for (int oc = 0; oc < OC; ++oc)
                s += (${acc})gyn[oc * plane + pix] * (${acc})wc[oc * wsize + k];
        }
    }
    gx[gx_off + gid] = (${t})s;
}
% endif

% if kernel == "conv2d_grad_weight":
// part[split, oc, c, ky, kx] = sum over n in this split's share of the batch, oh, ow of
//     gy[n, oc, oh, ow] * x[n, c, oh*SH - PH + ky*DH, ow*SW - PW + kx*DW]
__kernel void conv2d_grad_weight(${geom()}, const int nper, const int nsplit,
    __global const ${t} *x, const int x_off,
    __global const ${t} *gy, const int gy_off,
    __global ${t} *part, const int part_off)
{
    const int M = OC * C * KH * KW;
    const int gid = get_global_id(0);
    if (gid >= nsplit * M) return;
    DIVMOD(split, e, gid, M);
    DIVMOD(r1, kx, e, KW);
    DIVMOD(r2, ky, r1, KH);
    DIVMOD(oc, c, r2, C);
    const int n0 = split * nper, n1 = min(N, n0 + nper);
    // output rows/cols that read an input inside the image for this (ky, kx)
    const int oh0 = k_lo(ky * DH - PH, SH), oh1 = k_hi(ky * DH - PH, SH, H, OH);
    const int ow0 = k_lo(kx * DW - PW, SW), ow1 = k_hi(kx * DW - PW, SW, W, OW);
    const int plane = OH * OW;
    ${acc} s = 0;
    for (int n = n0; n < n1; ++n) {
        __global const ${t} *xc = x + x_off + (n * C + c) * H * W;
        __global const ${t} *gyc = gy + gy_off + (n * OC + oc) * plane;
        for (int oh = oh0; oh < oh1; ++oh) {
            __global const ${t} *xrow = xc + (oh * SH - PH + ky * DH) * W + kx * DW - PW;
            __global const ${t} *grow = gyc + oh * OW;
            for (int ow = ow0; ow < ow1; ++ow)
                s += (${acc})grow[ow] * (${acc})xrow[ow * SW];
        }
    }
    part[part_off + gid] = (${t})s;
}
% endif

% if kernel == "conv2d_grad_bias":
// part[split, oc] = sum over n in this split's share of the batch and all pixels of gy[n, oc, :, :]
__kernel void conv2d_grad_bias(const int N, const int OC, const int plane, const int nper, const int nsplit,
    __global const ${t} *gy, const int gy_off,
    __global ${t} *part, const int part_off)
{
    const int gid = get_global_id(0);
    if (gid >= nsplit * OC) return;
    DIVMOD(split, oc, gid, OC);
    const int n0 = split * nper, n1 = min(N, n0 + nper);
    ${acc} s = 0;
    for (int n = n0; n < n1; ++n) {
        __global const ${t} *p = gy + gy_off + (n * OC + oc) * plane;
        for (int i = 0; i < plane; ++i) s += (${acc})p[i];
    }
    part[part_off + gid] = (${t})s;
}
% endif

% if kernel == "sum_splits":
__kernel void sum_splits(const int M, const int nsplit,
    __global const ${t} *part, const int part_off,
    __global ${t} *out, const int out_off)
{
    const int i = get_global_id(0);
    if (i >= M) return;
    ${acc} s = 0;
    for (int k = 0; k < nsplit; ++k) s += (${acc})part[part_off + k * M + i];
    out[out_off + i] = (${t})s;
}
% endif

% if kernel == "im2col":
// cols[n, (c*KH + ky)*KW + kx, oh*OW + ow] = x[n, c, oh*SH - PH + ky*DH, ow*SW - PW + kx*DW] (0 outside)
__kernel void im2col(${geom()},
    __global const ${t} *x, const int x_off,
    __global ${t} *cols, const int cols_off)
{
    const int plane = OH * OW, K = C * KH * KW;
    const int gid = get_global_id(0);
    if (gid >= N * K * plane) return;
    DIVMOD(r1, p, gid, plane);
    DIVMOD(n, k, r1, K);
    DIVMOD(oh, ow, p, OW);
    DIVMOD(k1, kx, k, KW);
    DIVMOD(c, ky, k1, KH);
    const int ih = oh * SH - PH + ky * DH, iw = ow * SW - PW + kx * DW;
    ${t} v = 0;
    if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[x_off + ((n * C + c) * H + ih) * W + iw];
    cols[cols_off + gid] = v;
}
% endif

% if kernel == "col2im":
// gx[n, c, h, w] = sum of the column entries that im2col copied from (n, c, h, w)
__kernel void col2im(${geom()},
    __global const ${t} *cols, const int cols_off,
    __global ${t} *gx, const int gx_off)
{
    const int gid = get_global_id(0);
    if (gid >= N * C * H * W) return;
    DIVMOD(r1, iw, gid, W);
    DIVMOD(r2, ih, r1, H);
    DIVMOD(n, c, r2, C);
    const int plane = OH * OW, K = C * KH * KW;
    __global const ${t} *cn = cols + cols_off + (n * K + c * KH * KW) * plane;
    ${acc} s = 0;
    for (int ky = 0; ky < KH; ++ky) {
        const int th = ih + PH - ky * DH, oh = th / SH;
        if (th < 0 || oh * SH != th || oh >= OH) continue;
        for (int kx = 0; kx < KW; ++kx) {
            const int tw = iw + PW - kx * DW, ow = tw / SW;
            if (tw < 0 || ow * SW != tw || ow >= OW) continue;
            s += (${acc})cn[(ky * KW + kx) * plane + oh * OW + ow];
        }
    }
    gx[gx_off + gid] = (${t})s;
}
% endif

% if kernel == "max_pool2d_forward":
// y = max over the window (padding never wins); idx = h*W + w of the maximum within its plane
// (the first one on ties; NaN wins, as in PyTorch).
__kernel void max_pool2d_forward(${pool_geom()},
    __global const ${t} *x, const int x_off,
    __global ${t} *y, const int y_off,
    __global int *idx, const int idx_off)
{
    const int gid = get_global_id(0);
    if (gid >= NC * OH * OW) return;
    DIVMOD(r1, ow, gid, OW);
    DIVMOD(nc, oh, r1, OH);
    const int ih0 = oh * SH - PH, iw0 = ow * SW - PW;
    const int h0 = max(ih0, 0), h1 = min(ih0 + KH, H), w0 = max(iw0, 0), w1 = min(iw0 + KW, W);
    __global const ${t} *xp = x + x_off + nc * H * W;
    ${acc} best = -INFINITY;
    int at = h0 * W + w0;
    for (int h = h0; h < h1; ++h)
        for (int w = w0; w < w1; ++w) {
            const ${acc} v = (${acc})xp[h * W + w];
            if (v > best || isnan(v)) { best = v; at = h * W + w; }
        }
    y[y_off + gid] = (${t})best;
    idx[idx_off + gid] = at;
}
% endif

% if kernel == "max_pool2d_backward":
// gx[nc, h, w] = sum of gy over the windows whose recorded maximum is (h, w)
__kernel void max_pool2d_backward(${pool_geom()},
    __global const ${t} *gy, const int gy_off,
    __global const int *idx, const int idx_off,
    __global ${t} *gx, const int gx_off)
{
    const int gid = get_global_id(0);
    if (gid >= NC * H * W) return;
    DIVMOD(r1, iw, gid, W);
    DIVMOD(nc, ih, r1, H);
    const int ah = ih + PH - KH + 1, aw = iw + PW - KW + 1;
    const int oh0 = ah <= 0 ? 0 : (ah + SH - 1) / SH, oh1 = min(OH - 1, (ih + PH) / SH);
    const int ow0 = aw <= 0 ? 0 : (aw + SW - 1) / SW, ow1 = min(OW - 1, (iw + PW) / SW);
    const int me = ih * W + iw, base = nc * OH * OW;
    ${acc} s = 0;
    for (int oh = oh0; oh <= oh1; ++oh)
        for (int ow = ow0; ow <= ow1; ++ow) {
            const int o = base + oh * OW + ow;
            if (idx[idx_off + o] == me) s += (${acc})gy[gy_off + o];
        }
    gx[gx_off + gid] = (${t})s;
}
% endif

% if kernel == "avg_pool2d_forward":
// y = (sum of the window's in-image values) / (KH*KW): padding counts as zeros (count_include_pad=True)
__kernel void avg_pool2d_forward(${pool_geom()},
    __global const ${t} *x, const int x_off,
    __global ${t} *y, const int y_off)
{
    const int gid = get_global_id(0);
    if (gid >= NC * OH * OW) return;
    DIVMOD(r1, ow, gid, OW);
    DIVMOD(nc, oh, r1, OH);
    const int ih0 = oh * SH - PH, iw0 = ow * SW - PW;
    const int h0 = max(ih0, 0), h1 = min(ih0 + KH, H), w0 = max(iw0, 0), w1 = min(iw0 + KW, W);
    __global const ${t} *xp = x + x_off + nc * H * W;
    ${acc} s = 0;
    for (int h = h0; h < h1; ++h)
        for (int w = w0; w < w1; ++w) s += (${acc})xp[h * W + w];
    y[y_off + gid] = (${t})(s / (${acc})(KH * KW));
}
% endif

% if kernel == "avg_pool2d_backward":
// gx[nc, h, w] = sum of gy over the windows that contain (h, w), divided by KH*KW
__kernel void avg_pool2d_backward(${pool_geom()},
    __global const ${t} *gy, const int gy_off,
    __global ${t} *gx, const int gx_off)
{
    const int gid = get_global_id(0);
    if (gid >= NC * H * W) return;
    DIVMOD(r1, iw, gid, W);
    DIVMOD(nc, ih, r1, H);
    const int ah = ih + PH - KH + 1, aw = iw + PW - KW + 1;
    const int oh0 = ah <= 0 ? 0 : (ah + SH - 1) / SH, oh1 = min(OH - 1, (ih + PH) / SH);
    const int ow0 = aw <= 0 ? 0 : (aw + SW - 1) / SW, ow1 = min(OW - 1, (iw + PW) / SW);
    __global const ${t} *gp = gy + gy_off + nc * OH * OW;
    ${acc} s = 0;
    for (int oh = oh0; oh <= oh1; ++oh)
        for (int ow = ow0; ow <= ow1; ++ow) s += (${acc})gp[oh * OW + ow];
    gx[gx_off + gid] = (${t})(s / (${acc})(KH * KW));
}
% endif
