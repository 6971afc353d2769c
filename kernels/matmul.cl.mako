## Batched C[b] = A[b] @ B[b] with arbitrary strides (so transposed operands need no copy).
## (Placeholder: one work-item per output element; replaced by the tiled CPU/GPU variants.)
__kernel void matmul(const int M, const int N, const int K,
                     __global const ${t} *A, const int a_off, const int a_sb, const int a_sm, const int a_sk,
                     __global const ${t} *B, const int b_off, const int b_sb, const int b_sk, const int b_sn,
                     __global ${t} *C, const int c_off, const int c_sb, const int c_sm, const int c_sn)
{
    const int n = get_global_id(0), m = get_global_id(1), b = get_global_id(2);
    if (n >= N || m >= M) return;
    __global const ${t} *a = A + a_off + b * a_sb + m * a_sm;
    __global const ${t} *bb = B + b_off + b * b_sb + n * b_sn;
    ${acc} s = 0;
    for (int k = 0; k < K; ++k) s += (${acc})a[k * a_sk] * (${acc})bb[k * b_sk];
    C[c_off + b * c_sb + m * c_sm + n * c_sn] = (${t})s;
}
