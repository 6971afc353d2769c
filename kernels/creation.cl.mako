## Index sequences used to build arange, eye and linspace on the device.
__kernel void iota(const long n, __global long *out)
{
    const long i = get_global_id(0);
    if (i < n) out[i] = i;
}
