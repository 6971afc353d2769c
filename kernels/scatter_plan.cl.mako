## The device plan of a deterministic scatter (clnet/ops/scatter_plan.py): the gradient of x[idx]
## (an embedding's backward) and x[idx] = v, with index values that only the device holds.
##   kind    which kernel to render (each kind reads only its own parameters, listed with it)
## Every index entry j gets the key (target * J + j), target being its row-major position among the
## indexed dims (A when the entry is out of bounds: such entries sort last and are skipped). Keys are
## distinct, so sorting them is a permutation and needs no stability: within a target the entries keep
## increasing j, the order in which the host-planned path sums them. The sort is a rank sort inside
## blocks of B keys, then a merge by rank (each key's place = its rank in its block + the count of
## smaller keys in every other block, by binary search). No atomics: every element is written by exactly
## one work-item. Index splits are spelled q = a / b, r = a - q * b (see index.cl.mako).
<%
def load(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"
def store(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte({val}, {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"
%>
% if kind == "plan_keys":
## keys[j] = target(j) * J + j, target(j) = sum_i v_i(j) * mult_i over the index arrays (negatives
## wrapped by asize_i), A when some v_i is outside [0, asize_i).   ix_ts: C type of each index array
__kernel void plan_keys(const long J, const long A, __global long *keys
  % for i, it in enumerate(ix_ts):
    , __global const ${it} *ix${i}, const long ixoff${i}, const long ixst${i}
    , const long asize${i}, const long mult${i}
  % endfor
)
{
    const long j = get_global_id(0);
    if (j >= J) return;
    long target = 0;
    int inside = 1;
  % for i, it in enumerate(ix_ts):
    {
        const ${it} raw = ix${i}[ixoff${i} + j * ixst${i}];
        long v = (long)raw;
        if (raw < 0) v += asize${i};
        if (v < 0 || v >= asize${i}) inside = 0;
        target += v * mult${i};
    }
  % endfor
    keys[j] = (inside ? target : A) * J + j;
}

% elif kind == "plan_block_sort":
## out[b*B + rank] = in[j]: keys sorted inside each block of B (rank = smaller keys in the block)
__kernel void plan_block_sort(const long J, const long B, __global const long *in, __global long *out)
{
    const long j = get_global_id(0);
    if (j >= J) return;
    const long b0 = (j / B) * B;
    const long b1 = min(J, b0 + B);
    const long k = in[j];
    long rank = 0;
    for (long i = b0; i < b1; ++i)
        rank += in[i] < k;
    out[b0 + rank] = k;
}

% elif kind == "plan_merge":
## out[place] = in[i], in sorted inside blocks of B: place = i's rank in its block + the count of keys
## below it in each other block (a lower bound by binary search)
__kernel void plan_merge(const long J, const long B, __global const long *in, __global long *out)
{
    const long i = get_global_id(0);
    if (i >= J) return;
    const long k = in[i];
    const long mine = (i / B) * B;
    long place = i - mine;
    for (long c = 0; c < J; c += B) {
        if (c == mine) continue;
        long lo = c, hi = min(J, c + B);
        while (lo < hi) {
            const long mid = lo + (hi - lo) / 2;
            if (in[mid] < k) lo = mid + 1;
            else hi = mid;
        }
        place += lo - c;
    }
    out[place] = k;
}

% elif kind == "plan_scatter":
## For sorted position p that starts a target's run of keys, and rest position r < R:
##   mode "add": dst[target, r] += src[j, r] summed over the run in increasing j (gradients)
##   mode "put": dst[target, r] = src[j, r] for the run's last (largest) j   (x[idx] = v)
## Positions inside a run and out-of-bounds keys (target A) do nothing. The 2-D range is as
## index.cl.mako's adv_scatter: (r, p), p on range dim 0 when j_fast.
##   t, acc  storage and accumulator C types; rank: rest dims; na: number of index arrays; idx: offsets
__kernel void plan_scatter(const long J, const ${idx} R,
    __global ${t} *dst, const ${idx} dst_off,
    __global const ${t} *src, const ${idx} src_off, const ${idx} src_jst,
    __global const long *keys, const long A
  % for d in range(rank):
    , const ${idx} size${d}, const ${idx} dst_st${d}, const ${idx} src_st${d}
  % endfor
  % for i in range(na):
    , const long asize${i}, const ${idx} ast${i}
  % endfor
)
{
    ${idx} r = (${idx})get_global_id(${1 if j_fast else 0});
    const long p = (long)get_global_id(${0 if j_fast else 1});
    if (r >= R || p >= J) return;
    const long target = keys[p] / J;
    if (target >= A) return;
    if (p > 0 && keys[p - 1] / J == target) return;
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
    long rem = target;
  % for i in reversed(range(na)):
    {
        const long q = rem / asize${i};
        d_at += (${idx})(rem - q * asize${i}) * ast${i};
        rem = q;
    }
  % endfor
  % if mode == "put":
    long last = p;
    while (last + 1 < J && keys[last + 1] / J == target) ++last;
    dst[d_at] = src[s_at + (${idx})(keys[last] - target * J) * src_jst];
  % else:
    ${acc} total = ${load("dst", "d_at")};
    for (long q = p; q < J; ++q) {
        const long k = keys[q];
        if (k / J != target) break;
        total += ${load("src", f"s_at + ({idx})(k - target * J) * src_jst")};
    }
    ${store("dst", "d_at", "total")};
  % endif
}

% elif kind == "plan_winner":
## won[j] = 1 when entry j is the last (largest j) aimed at its target, the one whose value x[idx] = v
## keeps; 0 otherwise and for out-of-bounds entries
__kernel void plan_winner(const long J, const long A, __global const long *keys, __global uchar *won)
{
    const long p = get_global_id(0);
    if (p >= J) return;
    const long k = keys[p];
    const long target = k / J;
    const int last = target < A && (p + 1 == J || keys[p + 1] / J != target);
    won[k - target * J] = (uchar)last;
}
% endif
