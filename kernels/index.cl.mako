## Indexing kernels: advanced-index gather/scatter, torch-style gather along a dim, mask -> nonzero.
##   kind    which kernel to render (each kind reads only its own parameters, listed with it)
##   idx     index type for offsets: int, or long past 2**31 elements; ix_t: C type of a dim index
## Pure data movement uses an unsigned integer type of the element's width (`t` = uchar, ushort, uint,
## ulong), so float32 and int32 share one build and half/double need no extension. Kernels that add
## use the arithmetic type (`t`) with an accumulator (`acc`); half is read with vload_half.
## Sizes, strides and offsets are arguments: a new shape of the same rank never recompiles.
## No kernel here uses atomics: every output element is written by exactly one work-item.
## Index splits are spelled q = a / b, r = a - q * b (no `%`): LLVM pairs / and % of the same operands
## into a `freeze` instruction that Oclgrind's uninitialized-value checker cannot execute.
<%
def load(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"
def store(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte({val}, {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"
def wrap(i, ptr, at, it):
    # compare in the index's own type: Mesa llvmpipe miscompiles `(long)int_value < 0` to false
    return (f"const {it} raw{i} = {ptr}[{at}];\n"
            f"        long v{i} = (long)raw{i};\n"
            f"        if (raw{i} < 0) v{i} += asize{i};")
%>
% if kind == "adv_gather":
## out[rest..., j, rest...] = x[base + sum_d rest_d * xst_d + sum_i ix_i[j] * ast_i]
##   rank: number of non-advanced (rest) dims; ix_ts: C type of each advanced index array (1-D over j)
##   2-D range over (rest position r < R, index entry j < J); j_fast puts j on range dim 0 (the fast
##   one) when consecutive j are adjacent in the output (x[:, idx]), else r (x[idx])
__kernel void adv_gather(const ${idx} J, const ${idx} R,
    __global ${t} *out, const ${idx} out_off, const ${idx} out_jst,
    __global const ${t} *x, const ${idx} x_off
  % for d in range(rank):
    , const ${idx} size${d}, const ${idx} xst${d}, const ${idx} ost${d}
  % endfor
  % for i, it in enumerate(ix_ts):
    , __global const ${it} *ix${i}, const ${idx} ixoff${i}, const ${idx} ixst${i}
    , const long asize${i}, const ${idx} ast${i}
  % endfor
)
{
    ${idx} r = (${idx})get_global_id(${1 if j_fast else 0});
    const ${idx} j = (${idx})get_global_id(${0 if j_fast else 1});
    if (r >= R || j >= J) return;
    ${idx} s = x_off;
    ${idx} o = out_off + j * out_jst;
  % for d in reversed(range(rank)):
    {
    % if d > 0:
        const ${idx} q = r / size${d};
        const ${idx} c = r - q * size${d};
        r = q;
    % else:
        const ${idx} c = r;
    % endif
        s += c * xst${d};
        o += c * ost${d};
    }
  % endfor
  % for i in range(len(ix_ts)):
    {
        ${wrap(i, f"ix{i}", f"ixoff{i} + j * ixst{i}", ix_ts[i])}
        s += (${idx})v${i} * ast${i};
    }
  % endfor
    out[o] = x[s];
}

% elif kind == "adv_scatter":
## For each unique target u (coordinates ix_i[u] in the advanced dims) and rest position r:
##   mode "put": dst[u, r] = src[j, r] for the last j aimed at u   (x[key] = value)
##   mode "add": dst[u, r] += sum of src[j, r] over every j aimed at u, in increasing j (gradients)
## segmented: the j aimed at u are order[starts[u] .. starts[u+1]); else exactly j = u. j_fast as above.
__kernel void adv_scatter(const ${idx} U, const ${idx} R,
    __global ${t} *dst, const ${idx} dst_off,
    __global const ${t} *src, const ${idx} src_off, const ${idx} src_jst
  % if segmented:
    , __global const long *order, __global const long *starts
  % endif
  % for d in range(rank):
    , const ${idx} size${d}, const ${idx} dst_st${d}, const ${idx} src_st${d}
  % endfor
  % for i, it in enumerate(ix_ts):
    , __global const ${it} *ix${i}, const ${idx} ixoff${i}, const ${idx} ixst${i}
    , const long asize${i}, const ${idx} ast${i}
  % endfor
)
{
    ${idx} r = (${idx})get_global_id(${1 if j_fast else 0});
    const ${idx} u = (${idx})get_global_id(${0 if j_fast else 1});
    if (r >= R || u >= U) return;
    ${idx} d_at = dst_off;
    ${idx} s_at = src_off;
  % for d in reversed(range(rank)):
    {
    % if d > 0:
        const ${idx} q = r / size${d};
        const ${idx} c = r - q * size${d};
        r = q;
    % else:
        const ${idx} c = r;
    % endif
        d_at += c * dst_st${d};
        s_at += c * src_st${d};
    }
  % endfor
  % for i in range(len(ix_ts)):
    {
        ${wrap(i, f"ix{i}", f"ixoff{i} + u * ixst{i}", ix_ts[i])}
        d_at += (${idx})v${i} * ast${i};
    }
  % endfor
  % if mode == "put":
    % if segmented:
    const ${idx} j = (${idx})order[starts[u + 1] - 1];
    % else:
    const ${idx} j = u;
    % endif
    dst[d_at] = src[s_at + j * src_jst];
  % else:
    ${acc} total = ${load("dst", "d_at")};
    % if segmented:
    for (long p = starts[u]; p < starts[u + 1]; ++p)
        total += ${load("src", f"s_at + ({idx})order[p] * src_jst")};
    % else:
    total += ${load("src", "s_at + u * src_jst")};
    % endif
    ${store("dst", "d_at", "total")};
  % endif
}

% elif kind == "dim_gather":
## torch.gather with the gathered dim moved last: out[c] = x[c_0, ..., c_{rank-2}, index[c]]
##   rank: dims of index/out (the last one is the gathered dim)
__kernel void dim_gather(const ${idx} n,
    __global ${t} *out, const ${idx} out_off,
    __global const ${t} *x, const ${idx} x_off,
    __global const ${ix_t} *ix, const ${idx} ix_off,
    const long asize0, const ${idx} xst_dim
  % for d in range(rank):
    , const ${idx} size${d}, const ${idx} ost${d}, const ${idx} ist${d}, const ${idx} xst${d}
  % endfor
)
{
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
    ${idx} r = gid;
    ${idx} o = out_off, i_at = ix_off, s = x_off;
  % for d in reversed(range(rank)):
    {
        const ${idx} q = r / size${d};
        const ${idx} c = r - q * size${d};
        r = q;
        o += c * ost${d};
        i_at += c * ist${d};
        s += c * xst${d};
    }
  % endfor
    ${wrap(0, "ix", "i_at", ix_t)}
    out[o] = x[s + (${idx})v0 * xst_dim];
}

% elif kind == "dim_scatter":
## Gradient of dim_gather (and scatter_add): dst[c] += sum over j with index[c_.., j] == c_last of
## src[c_.., j], for j in increasing order; with reduce "none" (scatter) dst[c] = the last such src.
## One work-item per dst element: no atomics, deterministic.
##   rank: dims of dst (the last one is the scattered dim); index/src may be smaller in other dims
__kernel void dim_scatter(const ${idx} n,
    __global ${t} *dst, const ${idx} dst_off,
    __global const ${t} *src, const ${idx} src_off,
    __global const ${ix_t} *ix, const ${idx} ix_off,
    const ${idx} jn, const ${idx} src_jst, const ${idx} ix_jst
  % for d in range(rank):
    , const ${idx} size${d}, const ${idx} dst_st${d}
    % if d < rank - 1:
    , const ${idx} isize${d}, const ${idx} src_st${d}, const ${idx} ist${d}
    % endif
  % endfor
)
{
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
    ${idx} r = gid;
    ${idx} d_at = dst_off, s_at = src_off, i_at = ix_off;
    int inside = 1;
    long target = 0;
    const long asize0 = size${rank - 1};
  % for d in reversed(range(rank)):
    {
        const ${idx} q = r / size${d};
        const ${idx} c = r - q * size${d};
        r = q;
        d_at += c * dst_st${d};
    % if d == rank - 1:
        target = c;
    % else:
        if (c >= isize${d}) inside = 0;
        s_at += c * src_st${d};
        i_at += c * ist${d};
    % endif
    }
  % endfor
    ${acc} total = ${load("dst", "d_at")};
    if (inside) {
        for (${idx} j = 0; j < jn; ++j) {
            ${wrap(0, "ix", "i_at + j * ix_jst", ix_t)}
            if (v0 == target) total ${"=" if reduce == "none" else "+="} ${load("src", "s_at + j * src_jst")};
        }
    }
    ${store("dst", "d_at", "total")};
}

% elif kind == "mask_count":
## counts[b] = number of non-zero bytes in mask[b*block .. min(n, (b+1)*block)) (mask contiguous)
__kernel void mask_count(const long n, const long block, const long nblocks,
                         __global const uchar *mask, const long mask_off, __global long *counts)
{
    const long b = get_global_id(0);
    if (b >= nblocks) return;
    const long end = min(n, (b + 1) * block);
    long c = 0;
    for (long i = b * block; i < end; ++i)
        c += mask[mask_off + i] != 0;
    counts[b] = c;
}

% elif kind == "mask_scan":
## One work-group of `wg` items: offsets[b] = counts[0] + ... + counts[b-1]; offsets[nblocks] = total.
__kernel void mask_scan(const long nblocks, __global const long *counts, __global long *offsets)
{
    __local long part[${wg}];
    const int lid = get_local_id(0);
    const long chunk = (nblocks + ${wg} - 1) / ${wg};
    const long start = min(nblocks, lid * chunk);
    const long end = min(nblocks, start + chunk);
    long s = 0;
    for (long i = start; i < end; ++i)
        s += counts[i];
    part[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        long run = 0;
        for (int i = 0; i < ${wg}; ++i) {
            const long c = part[i];
            part[i] = run;
            run += c;
        }
        offsets[nblocks] = run;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    long run = part[lid];
    for (long i = start; i < end; ++i) {
        offsets[i] = run;
        run += counts[i];
    }
}

% elif kind == "mask_write":
## out[k*p + d] = coordinate d of the p-th non-zero element of the mask (row-major), as torch.nonzero.
##   k: rank of the mask (its sizes arrive as size0..size{k-1})
__kernel void mask_write(const long n, const long block, const long nblocks,
                         __global const uchar *mask, const long mask_off,
                         __global const long *offsets, __global long *out
  % for d in range(k):
    , const long size${d}
  % endfor
)
{
    const long b = get_global_id(0);
    if (b >= nblocks) return;
    const long end = min(n, (b + 1) * block);
    long p = offsets[b];
    for (long i = b * block; i < end; ++i) {
        if (mask[mask_off + i] == 0) continue;
        long rem = i;
  % for d in reversed(range(k)):
        {
            const long q = rem / size${d};
            out[p * ${k} + ${d}] = rem - q * size${d};
            rem = q;
        }
  % endfor
        ++p;
    }
}
% endif
