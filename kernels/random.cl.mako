## Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11; the Random123 reference).
##
## Work-item i encrypts the 128-bit counter (base + i, 0) under the 64-bit key (the seed) and turns the
## four 32-bit words into `per` output values at out[i*per ...]. Nothing is carried between items or
## launches, so any (seed, counter) gives the same bits on every device; the host advances the
## counter by the number of blocks drawn, so successive calls differ.
##
## Parameters:
##   dist   bits      raw 32-bit words (tests check them against Random123's known answers)
##          uniform   a + (b - a) * u, u in [0, 1) from 24 (float) or 53 (double) random bits
##          normal    a + b * z, z from Box-Muller on (0, 1] x [0, 1) uniforms
##          threshold out = (word < thr) ? a : b, exact probability thr / 2**32 (bernoulli, dropout)
##          randint   low + floor(r * range / 2**64) for a 64-bit random r (bias < range / 2**64)
##   out_t  storage type of the output (half is written with vstore_half)
##   ct     compute type: float or double
##   idx    int | long, for output positions
<%
per = 2 if (dist == "randint" or (dist in ("uniform", "normal") and ct == "double")) else 4
%>
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

<%def name="store(val, at)">\
% if out_t == "half":
            vstore_half${"_rtz" if dist == "uniform" else "_rte"}((float)(${val}), ${at}, out);
% else:
            out[${at}] = (${out_t})(${val});
% endif
</%def>

__kernel void philox_${dist}(const ${idx} n, __global ${out_t} *out, const ${idx} out_off,
                             const uint key0, const uint key1, const uint ctr_lo, const uint ctr_hi
% if dist in ("uniform", "normal"):
                             , const ${ct} a, const ${ct} b
% elif dist == "threshold":
                             , const ulong thr, const ${ct} a, const ${ct} b
% elif dist == "randint":
                             , const long low, const ulong range
% endif
                             )
{
    const ${idx} gid = (${idx})get_global_id(0);
    const ${idx} first = gid * ${per};
    if (first >= n) return;
    const ulong ctr = (((ulong)ctr_hi << 32) | (ulong)ctr_lo) + (ulong)gid;
    uint c0 = (uint)ctr, c1 = (uint)(ctr >> 32), c2 = 0u, c3 = 0u;
    uint k0 = key0, k1 = key1;
% for rnd in range(10):
    {
  % if rnd:
        k0 += PHILOX_W0; k1 += PHILOX_W1;
  % endif
        const uint hi0 = mul_hi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        const uint hi1 = mul_hi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
    }
% endfor
% if dist == "bits":
    const uint v0 = c0, v1 = c1, v2 = c2, v3 = c3;
% elif dist == "threshold":
    const ${ct} v0 = ((ulong)c0 < thr) ? a : b, v1 = ((ulong)c1 < thr) ? a : b;
    const ${ct} v2 = ((ulong)c2 < thr) ? a : b, v3 = ((ulong)c3 < thr) ? a : b;
% elif dist == "randint":
    const long v0 = low + (long)mul_hi(((ulong)c0 << 32) | c1, range);
    const long v1 = low + (long)mul_hi(((ulong)c2 << 32) | c3, range);
% elif ct == "float":
  % if dist == "uniform":
    ## (word >> 8) * 2**-24 is exact and below 1; the product can round up to b, so clamp below b
    const float span = b - a, top = (b > a) ? nextafter(b, a) : b;
    const float v0 = fmin(a + span * ((float)(c0 >> 8) * 0x1p-24f), top);
    const float v1 = fmin(a + span * ((float)(c1 >> 8) * 0x1p-24f), top);
    const float v2 = fmin(a + span * ((float)(c2 >> 8) * 0x1p-24f), top);
    const float v3 = fmin(a + span * ((float)(c3 >> 8) * 0x1p-24f), top);
  % else:
    const float r0 = sqrt(-2.0f * log((float)((c0 >> 8) + 1u) * 0x1p-24f));
    const float t0 = 6.2831853071795864769f * ((float)(c1 >> 8) * 0x1p-24f);
    const float r1 = sqrt(-2.0f * log((float)((c2 >> 8) + 1u) * 0x1p-24f));
    const float t1 = 6.2831853071795864769f * ((float)(c3 >> 8) * 0x1p-24f);
    const float v0 = a + b * (r0 * cos(t0)), v1 = a + b * (r0 * sin(t0));
    const float v2 = a + b * (r1 * cos(t1)), v3 = a + b * (r1 * sin(t1));
  % endif
% else:
    ## doubles: 53 random bits from two words, as numpy's random_standard_uniform
    const double u0 = ((double)(c0 >> 5) * 67108864.0 + (double)(c1 >> 6)) * 0x1p-53;
    const double u1 = ((double)(c2 >> 5) * 67108864.0 + (double)(c3 >> 6)) * 0x1p-53;
  % if dist == "uniform":
    const double span = b - a, top = (b > a) ? nextafter(b, a) : b;
    const double v0 = fmin(a + span * u0, top), v1 = fmin(a + span * u1, top);
  % else:
    const double r0 = sqrt(-2.0 * log(u0 + 0x1p-53));
    const double t0 = 6.2831853071795864769 * u1;
    const double v0 = a + b * (r0 * cos(t0)), v1 = a + b * (r0 * sin(t0));
  % endif
% endif
    const ${idx} o = out_off + first;
% for k in range(per):
  % if k == 0:
    ${store("v0", "o")}
  % else:
    if (first + ${k} < n) {
    ${store(f"v{k}", f"o + {k}")}
    }
  % endif
% endfor
}
