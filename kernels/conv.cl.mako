## 2-D convolution and pooling over NCHW tensors (PyTorch semantics), forward and backward.
##
## Every size, stride, padding and dilation is a kernel ARGUMENT (tensors are NCHW, weights OIHW, each
## with an element offset; conv2d_forward takes element strides too), so a new batch or image size never
## rebuilds. Template parameters: t (storage type), acc (accumulator type) and per kernel a few switches
## (has_bias; vw, pbh, pbw, masked for conv2d_forward; window for the pools). Every output element is
## written by exactly one work-item, so results are deterministic and no float atomics are needed.
##
## Kernels:
##   pad_input           zero-bordered copy of the input (so conv2d_forward needs no masks)
##   pack_weights        weights as [c*kh*kw, output channels padded to vw] (one vector load per tap)
##   conv2d_forward      direct strided convolution, one work-item per (channel split, n, pixel block,
##                       vw output channels); also runs grad weight and stride-1 grad input
##   conv2d_grad_input   transposed gather for strided convolutions: each input pixel sums its contributions
##   conv2d_grad_bias    one work-item per (batch split, channel); splits summed by sum_splits
##   im2col / col2im     column matrix [N, C*KH*KW, OH*OW] and its gather inverse (for the matmul path)
##   sum_splits          out[i] = sum_s part[s * M + i]  (deterministic second stage)
##   max_pool2d_forward / max_pool2d_backward   (argmax index within the plane recorded in forward; any strides)
##   avg_pool2d_forward / avg_pool2d_backward   (count_include_pad=True: divisor KH*KW; any strides)
<%page args="kernel, t, acc, has_bias=False, vw=8, pbh=1, pbw=1, masked=True, window=None"/>
<%def name="geom()">const int N, const int C, const int H, const int W,
    const int OC, const int OH, const int OW, const int KH, const int KW,
    const int SH, const int SW, const int PH, const int PW, const int DH, const int DW</%def>

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

% if kernel == "pad_input":
// xp[n, c, h, w] = x[n, c, h - PH, w - PW] inside the image, 0 in the border (x read through strides)
__kernel void pad_input(const int N, const int C, const int H, const int W, const int PH, const int PW,
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_h, const int xs_w,
    __global ${t} *xp, const int xp_off)
{
    const int HP = H + 2 * PH, WP = W + 2 * PW;
    const int gid = get_global_id(0);
    if (gid >= N * C * HP * WP) return;
    DIVMOD(r1, w, gid, WP);
    DIVMOD(r2, h, r1, HP);
    DIVMOD(n, c, r2, C);
    const int ih = h - PH, iw = w - PW;
    ${t} v = 0;
    if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[x_off + n * xs_n + c * xs_c + ih * xs_h + iw * xs_w];
    xp[xp_off + gid] = v;
}
% endif

% if kernel == "pack_weights":
// wt[((c*KH + ky)*KW + kx)*OCP + o] = w[o, c, ky, kx] (read through strides), 0 for OC <= o < OCP:
// the layout from which conv2d_forward loads vw output channels of one tap with one vector load.
__kernel void pack_weights(const int OC, const int C, const int KH, const int KW, const int OCP,
    __global const ${t} *w, const int w_off, const int ws_o, const int ws_c, const int ws_h, const int ws_w,
    __global ${t} *wt, const int wt_off)
{
    const int gid = get_global_id(0);
    if (gid >= C * KH * KW * OCP) return;
    DIVMOD(r1, o, gid, OCP);
    DIVMOD(r2, kx, r1, KW);
    DIVMOD(c, ky, r2, KH);
    ${t} v = 0;
    if (o < OC) v = w[w_off + o * ws_o + c * ws_c + ky * ws_h + kx * ws_w];
    wt[wt_off + gid] = v;
}
% endif

% if kernel == "conv2d_forward":
<%
    vt = f"{acc}{vw}"
    load = f"vload_half{vw}" if t == "half" else f"vload{vw}"
    comps = "0123456789abcdef"
    pix = [(r, q) for r in range(pbh) for q in range(pbw)]
%>
// y[n, o, oh, ow] = b[o] + sum_{c, ky, kx} x[n, c, oh*SH - PH + ky*DH, ow*SW - PW + kx*DW] * w[o, c, ky, kx]
// with w packed by pack_weights. x and y are addressed through element strides, so the same kernel also
// computes grad input (stride-1 convolutions: x = grad output, w = the weights flipped, channels swapped)
// and grad weight (x = the input with n and c swapped, w = grad output, y = the weight gradient).
// One work-item computes ${vw} output channels (one ${vt} accumulator per pixel) at a ${pbh}x${pbw} block of
// output pixels: per tap, one vector load of weights and ${pbh * pbw} scalar loads of x feed ${pbh * pbw}
// vector multiply-adds. x is either zero-padded beforehand by pad_input (masked=False: plain loads) or
// read with its loads clamped into the image and masked to zero outside (masked=True). Loops inside a work-item keep PoCL from
// vectorizing across work-items, so the vectors are explicit.
// The sum over channels may be cut into splits of CS channels (the slowest index of the grid); split s
// writes y + s * y_split and a sum_splits launch adds them (only split 0 adds the bias).
__kernel void conv2d_forward(${geom()}, const int CS, const int OCP,
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_h, const int xs_w,
    __global const ${t} *wt, const int wt_off,
% if has_bias:
    __global const ${t} *b, const int b_off,
% endif
    __global ${t} *y, const int y_off, const int ys_n, const int ys_o, const int ys_h, const int ys_w,
    const int y_split)
{
    const int OV = OCP / ${vw}, OHB = (OH + ${pbh - 1}) / ${pbh}, OWB = (OW + ${pbw - 1}) / ${pbw};
    const int NS = (C + CS - 1) / CS;
    const int gid = get_global_id(0);
    if (gid >= NS * N * OV * OHB * OWB) return;
    DIVMOD(r1, owb, gid, OWB);
    DIVMOD(r2, ohb, r1, OHB);
    DIVMOD(r3, ov, r2, OV);
    DIVMOD(split, n, r3, N);
    const int c0 = split * CS, c1 = min(C, c0 + CS);
    const int oh0 = ohb * ${pbh}, ow0 = owb * ${pbw};
% if masked:
% for r in range(pbh):
    const int ih${r} = (oh0 + ${r}) * SH - PH;
% endfor
% for q in range(pbw):
    const int iw${q} = (ow0 + ${q}) * SW - PW;
% endfor
% else:
    // x is padded already (PH = PW = 0 here): no masks; pixels past the edge of the output repeat the last
    // one (computed, never stored) so every load stays inside x
% for r in range(pbh):
    const int ih${r} = min(oh0 + ${r}, OH - 1) * SH;
% endfor
% for q in range(pbw):
    const int iw${q} = min(ow0 + ${q}, OW - 1) * SW;
% endfor
% endif
% for r, q in pix:
    ${vt} acc${r}_${q} = 0;
% endfor
    __global const ${t} *xn = x + x_off + n * xs_n;
    __global const ${t} *wo = wt + wt_off + ov * ${vw};
    for (int c = c0; c < c1; ++c) {
        __global const ${t} *xc = xn + c * xs_c;
        for (int ky = 0; ky < KH; ++ky) {
% for r in range(pbh):
  % if masked:
            const int ihr${r} = ih${r} + ky * DH, ihc${r} = clamp(ihr${r}, 0, H - 1);
            __global const ${t} *xrow${r} = xc + ihc${r} * xs_h;
  % else:
            __global const ${t} *xrow${r} = xc + (ih${r} + ky * DH) * xs_h;
  % endif
% endfor
            __global const ${t} *wrow = wo + (c * KH + ky) * KW * OCP;
            for (int kx = 0; kx < KW; ++kx) {
                const ${vt} wv = ${load}(0, wrow + kx * OCP);
% for q in range(pbw):
  % if masked:
                const int iwr${q} = iw${q} + kx * DW, iwc${q} = clamp(iwr${q}, 0, W - 1);
  % else:
                const int iwc${q} = iw${q} + kx * DW;
  % endif
% endfor
% for r, q in pix:
  % if masked:
                {
                    const ${acc} v = (${acc})xrow${r}[iwc${q} * xs_w];
                    const ${acc} vm = (ihr${r} == ihc${r} && iwr${q} == iwc${q}) ? v : (${acc})0;
                    acc${r}_${q} = mad((${vt})vm, wv, acc${r}_${q});
                }
  % else:
                acc${r}_${q} = mad((${vt})((${acc})xrow${r}[iwc${q} * xs_w]), wv, acc${r}_${q});
  % endif
% endfor
            }
        }
    }
    const int oc0 = ov * ${vw};
    __global ${t} *yp = y + y_off + split * y_split + n * ys_n;
% for j in range(vw):
    if (oc0 + ${j} < OC) {
  % if has_bias:
        const ${acc} bj = split == 0 ? (${acc})b[b_off + oc0 + ${j}] : (${acc})0;
  % else:
        const ${acc} bj = 0;
  % endif
  % for r, q in pix:
        if (oh0 + ${r} < OH && ow0 + ${q} < OW)
            yp[(oc0 + ${j}) * ys_o + (oh0 + ${r}) * ys_h + (ow0 + ${q}) * ys_w] = (${t})(acc${r}_${q}.s${comps[j]} + bj);
  % endfor
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

<%
    # pooling switches beyond the page args: `order` ("nchw" or "nhwc": how a work-item's row index splits into
    # n, c, oh, so neighbouring work-items touch neighbouring memory) and `scatter` (backward of windows that do
    # not overlap: each work-item writes its windows' blocks instead of gathering per input pixel)
    order = context.get("order", "nchw")
    scatter = context.get("scatter", False)
%>
<%def name="pool_row(R)">\
<% order = context.get("order", "nchw") %>\
    // work-item -> (n, c, row of ${R}): the split follows the memory order (order=${order})
% if order == "nhwc":
    DIVMOD(t1_, c, gid, C);
    DIVMOD(n, row, t1_, ${R});
% else:
    DIVMOD(t1_, row, gid, ${R});
    DIVMOD(n, c, t1_, C);
% endif
</%def>
<%def name="pool_args()">const int N, const int C, const int H, const int W, const int OH, const int OW,
    const int KH, const int KW, const int SH, const int SW, const int PH, const int PW</%def>

% if kernel in ("max_pool2d_forward", "avg_pool2d_forward"):
<% is_max = kernel == "max_pool2d_forward" %>
% if is_max:
// y = max over the window (padding never wins); idx = h*W + w of the maximum within its plane
// (the first one on ties; NaN wins, as in PyTorch).
% else:
// y = (sum of the window's in-image values) / (KH*KW): padding counts as zeros (count_include_pad=True)
% endif
// x, y (and idx, laid out as y) are read/written through element strides (order "nchw": x has unit w stride;
// "nhwc": channels-last; "any": other views) (NCHW, channels-last or any view), so
// no copy is made for a permuted input. One work-item per output row (n, c, oh) walks along ow: PoCL runs a
// work-item's loop as straight code, and launching a row instead of a pixel per work-item cuts the per-item
// cost 2x (kernels/conv.cl.mako history: 7.7 -> 4.0 ms CPU for 32x32x26x26, k=2). With `window` = (kh, kw, sh,
// sw, padded) given at build time the window is unrolled (masked, branch-free); otherwise it is a loop.
__kernel void ${kernel}(${pool_args()},
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_h, const int xs_w,
    __global ${t} *y, const int y_off, const int ys_n, const int ys_c, const int ys_h, const int ys_w
% if is_max:
    , __global int *idx, const int idx_off
% endif
    )
{
    const int gid = get_global_id(0);
    if (gid >= N * C * OH) return;
${pool_row("OH")}
    const int oh = row;
    __global const ${t} *xp = x + x_off + n * xs_n + c * xs_c;
% if order == "nchw":
    #define XS_W 1
% else:
    #define XS_W xs_w
% endif
    const int yo = n * ys_n + c * ys_c + oh * ys_h;
% if window:
<%
    kh, kw, sh, sw, padded = window
    cond_t = "long" if acc == "double" else "int"
%>
    const int ih0 = oh * ${sh} - PH;
% else:
    const int ih0 = oh * SH - PH;
    const int h0 = max(ih0, 0), h1 = min(ih0 + KH, H);
% endif
    for (int ow = 0; ow < OW; ++ow) {
% if window:
        const int iw0 = ow * ${sw} - PW;
% else:
        const int iw0 = ow * SW - PW;
% endif
% if is_max:
        ${acc} best = -INFINITY;
        int at = max(ih0, 0) * W + max(iw0, 0);
% else:
        ${acc} s = 0;
% endif
% if window:
  % for a in range(kh):
    % for b in range(kw):
        {
      % if padded:
            const int h = ih0 + ${a}, w = iw0 + ${b}, hc = clamp(h, 0, H - 1), wc = clamp(w, 0, W - 1);
            const ${acc} v = (${acc})xp[hc * xs_h + wc * XS_W];
            const ${cond_t} ok = (h == hc) && (w == wc);
      % else:
            const int hc = ih0 + ${a}, wc = iw0 + ${b};
            const ${acc} v = (${acc})xp[hc * xs_h + wc * XS_W];
        % if not is_max:
            const ${cond_t} ok = 1;
        % endif
      % endif
      % if is_max and not padded:
            if (v > best || isnan(v)) { best = v; at = hc * W + wc; }
      % elif is_max:
            const ${cond_t} take = ok && (v > best || v != v);
            best = select(best, v, take);
            at = select(at, hc * W + wc, (int)take);
      % else:
            s += select((${acc})0, v, ok);
      % endif
        }
    % endfor
  % endfor
% else:
        const int w0 = max(iw0, 0), w1 = min(iw0 + KW, W);
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w) {
                const ${acc} v = (${acc})xp[h * xs_h + w * XS_W];
  % if is_max:
                if (v > best || isnan(v)) { best = v; at = h * W + w; }
  % else:
                s += v;
  % endif
            }
% endif
% if is_max:
        y[y_off + yo + ow * ys_w] = (${t})best;
        idx[idx_off + yo + ow * ys_w] = at;
% else:
        y[y_off + yo + ow * ys_w] = (${t})(s / (${acc})(KH * KW));
% endif
    }
    #undef XS_W
}
% endif

% if kernel in ("max_pool2d_backward", "avg_pool2d_backward"):
<% is_max = kernel == "max_pool2d_backward" %>
% if is_max:
// gx[n, c, h, w] = sum of gy over the windows whose recorded maximum is (h, w)
% else:
// gx[n, c, h, w] = sum of gy over the windows that contain (h, w), divided by KH*KW
% endif
// gy, idx and gx go through element strides of their own. Every gx element is written by one work-item.
__kernel void ${kernel}(${pool_args()},
    __global const ${t} *gy, const int gy_off, const int gs_n, const int gs_c, const int gs_h, const int gs_w,
% if is_max:
    __global const int *idx, const int idx_off, const int is_n, const int is_c, const int is_h, const int is_w,
% endif
    __global ${t} *gx, const int gx_off, const int xs_n, const int xs_c, const int xs_h, const int xs_w)
{
    const int gid = get_global_id(0);
% if scatter:
<%
    # windows that do not overlap (KH <= SH, KW <= SW): input pixel (h, w) lies in block
    # ((h + PH) / SH, (w + PW) / SW); the block's window (when it is a real output) covers its first KH x KW
    # pixels and nothing else reaches it. One work-item per block row (n, c, bh) walks the blocks along w and
    # writes every pixel of each block once: gy where the pixel is the window's maximum (max) or gy / (KH*KW)
    # (avg) inside the window, 0 elsewhere. With `window` the block is unrolled.
%>
    const int NBH = (H - 1 + PH) / SH + 1, NBW = (W - 1 + PW) / SW + 1;
    if (gid >= N * C * NBH) return;
${pool_row("NBH")}
    const int bh = row;
    __global ${t} *gp = gx + gx_off + n * xs_n + c * xs_c;
    const int go = gy_off + n * gs_n + c * gs_c + min(bh, OH - 1) * gs_h;
  % if is_max:
    const int io = idx_off + n * is_n + c * is_c + min(bh, OH - 1) * is_h;
  % endif
    const int live_h = bh < OH;
    for (int bw = 0; bw < NBW; ++bw) {
        const int live = live_h && bw < OW;
        const int o = min(bw, OW - 1) * gs_w;
        const ${acc} g = live ? (${acc})gy[go + o] : (${acc})0;
  % if is_max:
        const int at = live ? idx[io + min(bw, OW - 1) * is_w] : -1;
  % else:
        const ${acc} ga = g / (${acc})(KH * KW);
  % endif
  % if window:
<% kh, kw, sh, sw, padded = window %>
    % for a in range(sh):
      % for b in range(sw):
        {
            const int h = bh * ${sh} - PH + ${a}, w = bw * ${sw} - PW + ${b};
          % if padded:
            if (h >= 0 && h < H && w >= 0 && w < W)
          % else:
            if (h < H && w < W)
          % endif
          % if a >= kh or b >= kw:
                gp[h * xs_h + w * xs_w] = (${t})0;
          % elif is_max:
                gp[h * xs_h + w * xs_w] = (${t})(at == h * W + w ? g : (${acc})0);
          % else:
                gp[h * xs_h + w * xs_w] = (${t})ga;
          % endif
        }
      % endfor
    % endfor
  % else:
        for (int a = 0; a < SH; ++a) {
            const int h = bh * SH - PH + a;
            if (h < 0 || h >= H) continue;
            for (int b = 0; b < SW; ++b) {
                const int w = bw * SW - PW + b;
                if (w < 0 || w >= W) continue;
                const int inside = a < KH && b < KW;
    % if is_max:
                gp[h * xs_h + w * xs_w] = (${t})(inside && at == h * W + w ? g : (${acc})0);
    % else:
                gp[h * xs_h + w * xs_w] = (${t})(inside ? ga : (${acc})0);
    % endif
            }
        }
  % endif
    }
% else:
    // overlapping windows: one work-item per input row (n, c, h) gathers, for each pixel, the windows holding it
    if (gid >= N * C * H) return;
${pool_row("H")}
    const int ih = row;
    __global const ${t} *gq = gy + gy_off + n * gs_n + c * gs_c;
  % if is_max:
    __global const int *iq = idx + idx_off + n * is_n + c * is_c;
  % endif
    __global ${t} *gp = gx + gx_off + n * xs_n + c * xs_c + ih * xs_h;
    const int ah = ih + PH - KH + 1;
    const int oh0 = ah <= 0 ? 0 : (ah + SH - 1) / SH, oh1 = min(OH - 1, (ih + PH) / SH);
    for (int iw = 0; iw < W; ++iw) {
        const int me = ih * W + iw;
        ${acc} s = 0;
        const int aw = iw + PW - KW + 1;
        const int ow0 = aw <= 0 ? 0 : (aw + SW - 1) / SW, ow1 = min(OW - 1, (iw + PW) / SW);
        for (int oh = oh0; oh <= oh1; ++oh)
            for (int ow = ow0; ow <= ow1; ++ow) {
                const int o = oh * gs_h + ow * gs_w;
  % if is_max:
                if (iq[oh * is_h + ow * is_w] == me) s += (${acc})gq[o];
  % else:
                s += (${acc})gq[o];
  % endif
            }
  % if is_max:
        gp[iw * xs_w] = (${t})s;
  % else:
        gp[iw * xs_w] = (${t})(s / (${acc})(KH * KW));
  % endif
    }
% endif
}
% endif
