## Reductions: out[row] = op over j < N of x[row_base + j * s_r], one pass of a possibly multi-pass plan.
##
## Two layouts (chosen per shape by clnet/ops/reduce.py):
##   inner  the reduced elements of a row are the fast dimension (s_r small, usually 1). One work-group
##          of TJ items reduces one chunk [ch*L, ch*L + L) of one row; group g = r * NCH + ch.
##          Row r's start comes from decomposing r over the `kr` kept dims (sizes/strides as arguments).
##   outer  the kept dims are the fast ones (column sums of a row-major matrix, bias gradients). A
##          work-group is TC columns x TJ reduction slices: neighbouring items read neighbouring
##          columns (coalesced on GPUs; cv `vec`-wide loads per row on CPUs), then a tree over the TJ
##          slices. C is the last kept dim (stride sc), O the product of the other `kr` kept dims;
##          group g = (o * NCH + ch) * WIDE + w covers columns from w * TC * vec * cv.
## Grids are one-dimensional (the group id is split in the kernel): some GPUs cap the number of
## groups along dimensions 1 and 2 at 65535.
## Index splits use q = r / n; r - q * n rather than % (LLVM turns a / and % pair into a `freeze`
## that Oclgrind's uninitialized-value checker cannot run).
## Each work-item first reduces its share sequentially (Kahan-compensated for float sums; the compensation
## is reset once the sum is inf or NaN, so inf + finite stays inf as in numpy instead of inf - inf = NaN), then the
## group combines the TJ partials with a tree in local memory (barriers, no atomics: fixed order, so
## results are deterministic). When nchunks > 1 the pass writes partials (acc type, plus int64 indices
## for arg ops) and the host runs the next pass over them: inner partials are [rows, nchunks], outer
## partials [nchunks, O*C].
##
## Parameters:
##   layout   inner | outer            op        sum | prod | max | min | argmax | argmin
##   t        storage type of x (half is read with vload_half)   acc  accumulator type
##   out_t    type written to `out` (when write_val)              idx  int | long, for addressing
##   kr       kept dims decomposed from the row id (inner: all; outer: all but the column dim)
##   vec      1, or a vector width for loads along a unit-stride dim (arg ops: inner layout, first pass)
##   cv       outer: vectors of columns per work-item (CPUs: one row's cv*vec floats are contiguous, so
##            each item streams whole cache lines instead of one vector per 4-16 KB row stride)
##   blocked  each item reads one contiguous block (CPUs: prefetch-friendly, one work-item at a time)
##            instead of items interleaved by TJ (GPUs: coalesced)
##   idx_in   read candidate indices from `xi` (a later pass over arg partials); else index = j
##   write_val / write_idx  write the value to `out` / the index (int64) to `oi`
##   kahan    compensated summation (float sums)
<%
is_arg = op in ("argmax", "argmin")
is_float = acc in ("float", "double")
V = f"{acc}{vec}" if vec > 1 else acc
big = op in ("max", "argmax")
if op == "sum":
    ident = "0"
elif op == "prod":
    ident = "1"
elif is_float:
    ident = "-INFINITY" if big else "INFINITY"
else:
    ident = {"int": ("INT_MIN", "INT_MAX"), "long": ("LONG_MIN", "LONG_MAX")}[acc][0 if big else 1]
cmp = ">" if big else "<"

def scaled(v):
    """The final value: sums are scaled (mean) in the accumulator type."""
    return f"(({v}) * scale)" if op == "sum" and is_float else v

def vload(ptr):
    """vec consecutive elements at ptr, as the vector accumulator type."""
    if t == "half":
        raw = f"vload_half{vec}(0, {ptr})"
        return raw if acc == "float" else f"convert_{V}({raw})"
    raw = f"vload{vec}(0, {ptr})"
    return raw if t == acc else f"convert_{V}({raw})"

def sload(ptr, at):
    if t == "half":
        return f"(({acc})vload_half({at}, {ptr}))"
    return f"(({acc}){ptr}[{at}])"

def comb(a, b, vector):
    """a (+) b for the value ops; NaN propagates through max/min as in numpy."""
    if op == "sum":
        return f"({a} + {b})"
    if op == "prod":
        return f"({a} * {b})"
    fn = "max" if big else "min"
    if not is_float:
        return f"{fn}({a}, {b})"
    if vector:
        return f"select({b}, {a}, ({a} {cmp} {b}) | isnan({a}))"
    return f"((({a} {cmp} {b}) || isnan({a})) ? {a} : {b})"
%>
<%def name="feed(s, c, v)">\
% if kahan:
{ const ${acc} y_ = (${v}) - ${c}; const ${acc} t_ = ${s} + y_; ${c} = isfinite(t_) ? (t_ - ${s}) - y_ : 0; ${s} = t_; }\
% else:
${s} = ${comb(s, v, False)};\
% endif
</%def>
<%def name="feedv(s, c, v)">\
% if kahan:
{ const ${V} y_ = (${v}) - ${c}; const ${V} t_ = ${s} + y_; ${c} = select((${V})(0), (t_ - ${s}) - y_, isfinite(t_)); ${s} = t_; }\
% else:
${s} = ${comb(s, v, True)};\
% endif
</%def>
<%def name="hfold(s)">\
## Horizontal fold of vector `s` into h1_, pairwise (lane i with lane i + w), through a private array:
## Oclgrind's uninitialized-value checker mis-tracks (or crashes on) lanes taken from wide vectors.
        ${acc} lanes_[${vec}];
        vstore${vec}(${s}, 0, lanes_);
<% w = vec // 2 %>\
% while w >= 1:
  % for i in range(w):
        lanes_[${i}] = ${comb(f"lanes_[{i}]", f"lanes_[{i + w}]", False)};
  % endfor
<% w //= 2 %>\
% endwhile
        const ${acc} h1_ = lanes_[0];
</%def>

% if is_arg:
/* Is candidate (v, iv) better than (b, ib)? Index -1 means "no element"; ties go to the smaller
   index (the first occurrence); a NaN beats every number, as numpy's arg${"max" if big else "min"}. */
inline int better(const ${acc} v, const long iv, const ${acc} b, const long ib)
{
    if (iv < 0) return 0;
    if (ib < 0) return 1;
    if (v ${cmp} b) return 1;
  % if is_float:
    if (isnan(v)) return !isnan(b) || iv < ib;
    if (isnan(b)) return 0;
  % endif
    return v == b && iv < ib;
}
% endif

<%def name="store(val, at)">\
% if write_val:
  % if out_t == "half":
        vstore_half_rte((float)(${val}), ${at}, out);
  % else:
        out[${at}] = (${out_t})(${val});
  % endif
% endif
</%def>

__kernel void reduce_${layout}(const ${idx} N, const ${idx} s_r,
% if layout == "outer":
    const ${idx} C, const ${idx} sc,
% endif
% for d in range(kr):
    const ${idx} ks${d}, const ${idx} kt${d},
% endfor
    __global const ${t} *x, const ${idx} x_off,
% if idx_in:
    __global const long *xi,
% endif
% if write_val:
    __global ${out_t} *out,
% endif
% if write_idx:
    __global long *oi,
% endif
    const ${idx} out_off, const ${idx} L, const ${idx} K, const ${acc} scale, const ${idx} NCH,
% if layout == "outer":
    const ${idx} TC, const ${idx} WIDE, const ${idx} O,
% endif
% if is_arg:
    __local ${acc} *sv, __local long *si)
% elif layout == "inner":
    __local ${acc} *sv)
% else:
    __local ${V} *sv)
% endif
{
% if layout == "inner":
    const ${idx} lj = get_local_id(0), TJ = get_local_size(0);
    const ${idx} g = get_group_id(0);
    const ${idx} r = g / NCH, ch = g - r * NCH;
    ${idx} base = x_off;
    {
        ${idx} rem = r;
  % for d in reversed(range(kr)):
        { const ${idx} q_ = rem / ks${d}; base += (rem - q_ * ks${d}) * kt${d}; rem = q_; }
  % endfor
    }
% else:
    const ${idx} l = get_local_id(0), TJ = get_local_size(0) / TC;
    const ${idx} lj = l / TC, lc = l - lj * TC;
    const ${idx} g = get_group_id(0);
    const ${idx} q = g / WIDE, w = g - q * WIDE;
    const ${idx} o = q / NCH, ch = q - o * NCH;
    const ${idx} col0 = (w * TC + lc) * ${vec * cv};
    ${idx} base = x_off + col0 * sc;
    {
        ${idx} rem = o;
  % for d in reversed(range(kr)):
        { const ${idx} q_ = rem / ks${d}; base += (rem - q_ * ks${d}) * kt${d}; rem = q_; }
  % endfor
    }
% endif
    const ${idx} j0 = ch * L;
    const ${idx} j1 = (N - j0 < L) ? N : j0 + L;
## ---------------------------------------------------------------- per-item sequential part
% if is_arg:
    ${acc} s = ${ident};
    long is = -1;
<%def name="arg_feed(at, j)">\
{
            const ${acc} v_ = ${sload("x", at)};
  % if idx_in:
            const long iv_ = xi[${at}];
  % else:
            const long iv_ = ${j};
  % endif
            if (better(v_, iv_, s, is)) { s = v_; is = iv_; }
        }\
</%def>
  % if vec > 1:
<%
MT = "int" if acc in ("float", "int") else "long"
lanes = ", ".join(str(i) for i in range(vec))
%>\
<%def name="arg_feedv(j)">\
{
                const ${V} v_ = ${vload(f"x + base + {j}")};
                ${MT}${vec} m_ = (v_ ${cmp} sV) | convert_${MT}${vec}(iV < 0);
    % if is_float:
                m_ |= isnan(v_) & ~isnan(sV);
    % endif
                sV = select(sV, v_, m_);
                /* `!= 0`: llvmpipe miscompiles select() on a sign-extended mask (it keeps iV) */
                iV = select(iV, (long${vec})(${j}) + lane_, convert_long${vec}(m_) != 0);
            }\
</%def>
    {
        /* vec lanes, each keeping its own first best (value, index); lanes fold with better() below */
        ${V} sV = (${V})(${ident});
        long${vec} iV = (long${vec})(-1);
        const long${vec} lane_ = (long${vec})(${lanes});
    % if blocked:
        const ${idx} a = j0 + lj * (K * ${vec});
        const ${idx} b = (j1 - a < K * ${vec}) ? j1 : a + K * ${vec};
        ${idx} j = a;
        for (; j + ${vec} <= b; j += ${vec}) ${arg_feedv("j")}
        for (; j < b; ++j) ${arg_feed("base + j", "j")}
    % else:
        for (${idx} j = j0 + lj * ${vec}; j < j1; j += TJ * ${vec}) {
            if (j + ${vec} <= j1) ${arg_feedv("j")}
            else {
                for (${idx} q = j; q < j1; ++q) ${arg_feed("base + q", "q")}
            }
        }
    % endif
        ${acc} vals_[${vec}];
        long idxs_[${vec}];
        vstore${vec}(sV, 0, vals_);
        vstore${vec}(iV, 0, idxs_);
<% w = vec // 2 %>\
    % while w >= 1:
      % for i in range(w):
        if (better(vals_[${i + w}], idxs_[${i + w}], vals_[${i}], idxs_[${i}])) { vals_[${i}] = vals_[${i + w}]; idxs_[${i}] = idxs_[${i + w}]; }
      % endfor
<% w //= 2 %>\
    % endwhile
        if (better(vals_[0], idxs_[0], s, is)) { s = vals_[0]; is = idxs_[0]; }
    }
  % else:
    % if layout == "outer":
    if (col0 < C) {
    % else:
    {
    % endif
    % if blocked:
        const ${idx} a = j0 + lj * K;
        const ${idx} b = (j1 - a < K) ? j1 : a + K;
        for (${idx} j = a; j < b; ++j) ${arg_feed("base + j * s_r", "j")}
    % else:
        for (${idx} j = j0 + lj; j < j1; j += TJ) ${arg_feed("base + j * s_r", "j")}
    % endif
    }
  % endif
% else:
  % if layout == "inner":
    ${V} s = (${V})(${ident});
    % if kahan:
    ${V} c = (${V})(0);
    % endif
    ${acc} s1 = ${ident};
    % if kahan:
    ${acc} c1 = 0;
    % endif
    {
    % if blocked:
        const ${idx} a = j0 + lj * (K * ${vec});
        const ${idx} b = (j1 - a < K * ${vec}) ? j1 : a + K * ${vec};
        ${idx} j = a;
      % if vec > 1:
        for (; j + ${vec} <= b; j += ${vec}) {
            const ${V} v_ = ${vload("x + base + j")};
            ${feedv("s", "c", "v_")}
        }
      % endif
        for (; j < b; ++j) {
            const ${acc} v_ = ${sload("x", "base + j * s_r")};
            ${feed("s1", "c1", "v_")}
        }
    % else:
        for (${idx} j = j0 + lj * ${vec}; j < j1; j += TJ * ${vec}) {
      % if vec > 1:
            if (j + ${vec} <= j1) {
                const ${V} v_ = ${vload("x + base + j")};
                ${feedv("s", "c", "v_")}
            } else {
                for (${idx} q = j; q < j1; ++q) {
                    const ${acc} v_ = ${sload("x", "base + q")};
                    ${feed("s1", "c1", "v_")}
                }
            }
      % else:
            const ${acc} v_ = ${sload("x", "base + j * s_r")};
            ${feed("s1", "c1", "v_")}
      % endif
        }
    % endif
    }
    % if kahan:
    s -= c;
    s1 -= c1;
    % endif
    % if vec > 1:
    {
${hfold("s")}\
        s1 = ${comb("s1", f"h1_", False)};
    }
    % else:
    s1 = ${comb("s1", "s", False)};
    % endif
  % else:
## outer: s<u> is a vector over columns col0 + u*vec .. + vec-1, for u < cv
  % for u in range(cv):
    ${V} s${u} = (${V})(${ident});
    % if kahan:
    ${V} c${u} = (${V})(0);
    % endif
  % endfor
    % if blocked:
    const ${idx} a = j0 + lj * K;
    const ${idx} b = (j1 - a < K) ? j1 : a + K;
    #define J_LOOP for (${idx} j = a; j < b; ++j)
    % else:
    #define J_LOOP for (${idx} j = j0 + lj; j < j1; j += TJ)
    % endif
    if (col0 + ${vec * cv} <= C) {
        J_LOOP {
  % for u in range(cv):
    % if vec > 1:
            const ${V} v${u}_ = ${vload(f"x + base + j * s_r + {u * vec}")};
            ${feedv(f"s{u}", f"c{u}", f"v{u}_")}
    % else:
            const ${acc} v${u}_ = ${sload("x", f"base + j * s_r + {u} * sc")};
            ${feed(f"s{u}", f"c{u}", f"v{u}_")}
    % endif
  % endfor
        }
    }
  % if vec > 1 or cv > 1:
    else if (col0 < C) {
        /* the last, partial group of columns (vec > 1 here): whole vectors while they fit, then single
           columns, into a private array; runtime loops keep the source (and PoCL's build) small */
        ${acc} part_[${vec * cv}];
        for (int u = 0; u < ${vec * cv};) {
            if (col0 + u + ${vec} <= C) {
                ${V} s_ = (${V})(${ident});
      % if kahan:
                ${V} c_ = (${V})(0);
      % endif
                J_LOOP {
                    const ${V} v_ = ${vload("x + base + j * s_r + u")};
                    ${feedv("s_", "c_", "v_")}
                }
                vstore${vec}(${"s_ - c_" if kahan else "s_"}, 0, part_ + u);
                u += ${vec};
            } else {
                ${acc} s_ = ${ident};
      % if kahan:
                ${acc} c_ = 0;
      % endif
                if (col0 + u < C) {
                    J_LOOP {
                        const ${acc} v_ = ${sload("x", "base + j * s_r + u")};
                        ${feed("s_", "c_", "v_")}
                    }
                }
                part_[u] = ${"s_ - c_" if kahan else "s_"};
                u += 1;
            }
        }
    % for u in range(cv):
        s${u} = vload${vec}(${u}, part_);
    % endfor
    }
  % endif
    #undef J_LOOP
  % if kahan:
    % for u in range(cv):
    s${u} -= c${u};
    % endfor
  % endif
  % endif
% endif
## ---------------------------------------------------------------- tree over the TJ items
% if layout == "inner":
    const ${idx} me = lj;
    #define OTHER(k) (lj + (k))
% else:
    const ${idx} me = lj * TC + lc;
    #define OTHER(k) ((lj + (k)) * TC + lc)
% endif
% if is_arg:
    sv[me] = s;
    si[me] = is;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (${idx} k = TJ / 2; k > 0; k >>= 1) {
        if (lj < k) {
            const ${acc} v_ = sv[OTHER(k)];
            const long iv_ = si[OTHER(k)];
            if (better(v_, iv_, sv[me], si[me])) { sv[me] = v_; si[me] = iv_; }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
% elif layout == "inner":
    sv[me] = s1;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (${idx} k = TJ / 2; k > 0; k >>= 1) {
        if (lj < k) sv[me] = ${comb("sv[me]", "sv[OTHER(k)]", False)};
        barrier(CLK_LOCAL_MEM_FENCE);
    }
% else:
  % for u in range(cv):
    sv[me * ${cv} + ${u}] = s${u};
  % endfor
    barrier(CLK_LOCAL_MEM_FENCE);
    for (${idx} k = TJ / 2; k > 0; k >>= 1) {
        if (lj < k) {
  % for u in range(cv):
            sv[me * ${cv} + ${u}] = ${comb(f"sv[me * {cv} + {u}]", f"sv[OTHER(k) * {cv} + {u}]", vec > 1)};
  % endfor
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
% endif
    #undef OTHER
## ---------------------------------------------------------------- write
% if layout == "inner":
    if (lj == 0) {
        const ${idx} at = out_off + r * NCH + ch;
  % if is_arg:
    ${store("sv[0]", "at")}
    % if write_idx:
        oi[at] = si[0];
    % endif
  % else:
    ${store(scaled("sv[0]"), "at")}
  % endif
    }
% else:
    if (lj == 0 && col0 < C) {
        const ${idx} at = out_off + ch * (C * O) + o * C + col0;
  % if is_arg:
    ${store("sv[lc]", "at")}
    % if write_idx:
        oi[at] = si[lc];
    % endif
  % else:
        /* lane e of the item's vec * cv columns; a loop rather than one unrolled store per column */
        __local const ${acc} *v_ = (__local const ${acc} *)(sv + lc * ${cv});
        for (int e = 0; e < ${vec * cv} && col0 + e < C; ++e) {
    ${store(scaled("v_[e]"), "at + e")}
        }
  % endif
    }
% endif
}
