"""Compiled (numba) kernels of the packed engine: sign packing and xnor-popcount convolution.

Layouts. A packed activation is ``(N, H, W, words)`` uint64: the signs of one pixel's channels,
64 to a word, bit ``b`` of word ``q`` set when channel ``64q + b`` is ``>= 0`` (the ``+1`` of
``sign_pm1``); unused high bits of the last word are 0. A packed weight is ``(C_out, kh·kw·words)``:
for each kernel offset the same channel packing, so a row of a gathered activation (one output
pixel's receptive field) lines up word for word with a weight row.

Arithmetic. For ±1 vectors of length ``C`` packed this way, ``dot = C - 2·popcount(a XOR w)``; the
unused bits are 0 in both operands, so they never count. Zero padding is a third value (0, not ±1)
that contributes nothing to the torch convolution: the gather writes all-zero words for padded
offsets, which adds ``popcount(w_offset)`` per padded offset to the XOR count; the kernel subtracts
exactly that (``popw``, precomputed per output channel and offset) and counts ``C`` only for the
valid offsets, so border pixels are exact.

Each kernel has a parallel form (``prange`` over image rows or output pixel pairs) and a serial
one, built from the same body: a small layer (a derived network's 1x1 conv on a 7x7 map is
~1,000 word operations) is done before a second thread would wake up, so the caller picks by
size. The kernels compile on first use and are cached on disk (``cache=True``), so only the
first process pays the seconds of compilation.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = ["pack_signs", "pack_signs_serial", "xnor_conv", "xnor_conv_serial",
           "xnor_conv_scaled", "xnor_conv_scaled_serial"]


@intrinsic
def _popcount(typingctx, word):  # type: ignore[no-untyped-def]
    """``llvm.ctpop.i64``: one POPCNT instruction (numpy's bitwise_count is not compiled code)."""
    if not isinstance(word, types.Integer) or word.bitwidth != 64:
        return None
    # the result is typed int64 so that sums stay integers (int64 + uint64 is float64 in numba)
    sig = types.int64(word)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _pack_rows(x, out, first, last):  # type: ignore[no-untyped-def]
    """Pack image rows ``first..last-1`` (of the ``N·H`` rows) of `pack_signs`."""
    c = x.shape[1]
    h = x.shape[2]
    w = x.shape[3]
    words = out.shape[3]
    for row in range(first, last):
        i = row // h
        y = row % h
        for xx in range(w):
            for q in range(words):
                out[i, y, xx, q] = 0
        for ch in range(c):  # channel-outer: reads of x are contiguous along W
            q = ch >> 6
            shift = np.uint64(ch & 63)
            for xx in range(w):
                # branch-free: signs are random, a branch here mispredicts half the time
                # (measured 4x slower); NaN packs as -1, as sign_pm1 maps it
                out[i, y, xx, q] |= np.uint64(x[i, ch, y, xx] >= 0) << shift


@njit(parallel=True, cache=True)
def pack_signs(x, out):  # type: ignore[no-untyped-def]
    """Pack the signs of ``x`` ``(N, C, H, W)`` float32 into ``out`` ``(N, H, W, words)`` uint64."""
    for row in prange(x.shape[0] * x.shape[2]):
        _pack_rows(x, out, row, row + 1)


@njit(cache=True)
def pack_signs_serial(x, out):  # type: ignore[no-untyped-def]
    """`pack_signs` on the calling thread."""
    _pack_rows(x, out, 0, x.shape[0] * x.shape[2])


# ---------------------------------------------------------------------------------------------
# binary convolution
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _gather(xp, i, oy, ox, geom, row, padded):  # type: ignore[no-untyped-def]
    """Copy the receptive field of output pixel ``(i, oy, ox)`` into ``row`` (zero words where it
    falls on padding); list the padded offsets in ``padded``; return how many there are.

    ``geom`` is ``(kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)``."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], \
        geom[6], geom[7]
    h = xp.shape[1]
    w = xp.shape[2]
    words = xp.shape[3]
    npad = 0
    for ky in range(kh):
        iy = oy * sh - ph + ky * dh
        for kx in range(kw):
            ix = ox * sw - pw + kx * dw
            d = ky * kw + kx
            if iy >= 0 and iy < h and ix >= 0 and ix < w:
                for q in range(words):
                    row[d * words + q] = xp[i, iy, ix, q]
            else:
                for q in range(words):
                    row[d * words + q] = 0
                padded[npad] = d
                npad += 1
    return npad


@njit(cache=True)
def _conv_pairs(xp, wb, popw, channels, geom, scale, shift, out, rows, pads,  # type: ignore[no-untyped-def]
                first, last):
    """Output pixel pairs ``first..last-1`` of `xnor_conv`.

    Work is tiled 2 output pixels × 2 output channels: each loaded word feeds two XOR-popcounts,
    which measured 1.25x faster than one pixel × one channel. An odd last pixel or channel
    computes its tile with itself as the partner and stores one result.
    """
    cout = wb.shape[0]
    width = wb.shape[1]
    ow = out.shape[3]
    plane = out.shape[2] * ow
    pixels = out.shape[0] * plane
    kk = geom[0] * geom[1]
    flat = out.reshape(-1)  # one index per store: (image·C_out + channel)·plane + pixel
    for pair in range(first, last):
        p0 = pair * 2
        p1 = min(p0 + 1, pixels - 1)
        i0 = p0 // plane
        r0 = p0 - i0 * plane
        i1 = p1 // plane
        r1 = p1 - i1 * plane
        base0 = i0 * cout * plane + r0
        base1 = i1 * cout * plane + r1
        row0 = rows[p0]
        row1 = rows[p1]
        pad0 = pads[p0]
        pad1 = pads[p1]
        n0 = _gather(xp, i0, r0 // ow, r0 % ow, geom, row0, pad0)
        n1 = _gather(xp, i1, r1 // ow, r1 % ow, geom, row1, pad1)
        full0 = (kk - n0) * channels
        full1 = (kk - n1) * channels
        for cpair in range((cout + 1) // 2):
            c0 = cpair * 2
            c1 = min(c0 + 1, cout - 1)
            s00 = 0
            s01 = 0
            s10 = 0
            s11 = 0
            for k in range(width):
                a0 = row0[k]
                a1 = row1[k]
                w0 = wb[c0, k]
                w1 = wb[c1, k]
                s00 += _popcount(a0 ^ w0)
                s01 += _popcount(a0 ^ w1)
                s10 += _popcount(a1 ^ w0)
                s11 += _popcount(a1 ^ w1)
            for t in range(n0):  # padded words were 0: remove their popcount(w)
                s00 -= popw[c0, pad0[t]]
                s01 -= popw[c1, pad0[t]]
            for t in range(n1):
                s10 -= popw[c0, pad1[t]]
                s11 -= popw[c1, pad1[t]]
            # float32, as torch computes: the integer sum is exact in float32 (< 2^24), then
            # one rounding for the scale and one for the shift
            flat[base0 + c0 * plane] = scale[c0] * np.float32(full0 - 2 * s00) + shift[c0]
            flat[base0 + c1 * plane] = scale[c1] * np.float32(full0 - 2 * s01) + shift[c1]
            flat[base1 + c0 * plane] = scale[c0] * np.float32(full1 - 2 * s10) + shift[c0]
            flat[base1 + c1 * plane] = scale[c1] * np.float32(full1 - 2 * s11) + shift[c1]


@njit(cache=True)
def _buffers(out, width, kk):  # type: ignore[no-untyped-def]
    # one allocation for every receptive field, not one per loop iteration
    pixels = out.shape[0] * out.shape[2] * out.shape[3]
    return np.empty((pixels, width), np.uint64), np.empty((pixels, kk), np.int64), (pixels + 1) // 2


@njit(parallel=True, cache=True)
def xnor_conv(xp, wb, popw, channels, geom, scale, shift, out):  # type: ignore[no-untyped-def]
    """Binary convolution: ``out[n, co] = scale[co] · Σ (±1 input · ±1 weight) + shift[co]``.

    ``xp`` packed activations ``(N, H, W, words)``; ``wb`` packed weights ``(C_out, kh·kw·words)``;
    ``popw`` ``(C_out, kh·kw)`` popcounts of each weight offset (the padding correction);
    ``channels`` the real channel count; ``geom`` int64 ``(kh, kw, sh, sw, ph, pw, dh, dw)``;
    ``scale``/``shift`` float32 per output channel; ``out`` float32 ``(N, C_out, OH, OW)``.
    """
    rows, pads, pairs = _buffers(out, wb.shape[1], geom[0] * geom[1])
    for pair in prange(pairs):
        _conv_pairs(xp, wb, popw, channels, geom, scale, shift, out, rows, pads, pair, pair + 1)


@njit(cache=True)
def xnor_conv_serial(xp, wb, popw, channels, geom, scale, shift, out):  # type: ignore[no-untyped-def]
    """`xnor_conv` on the calling thread."""
    rows, pads, pairs = _buffers(out, wb.shape[1], geom[0] * geom[1])
    _conv_pairs(xp, wb, popw, channels, geom, scale, shift, out, rows, pads, 0, pairs)


@njit(cache=True)
def _conv_scaled_pixels(xp, kmap, wb, channels, geom, scale, shift, out,  # type: ignore[no-untyped-def]
                        first, last):
    """Output pixels ``first..last-1`` of `xnor_conv_scaled`."""
    kh, kw, sh, sw, ph, pw, dh, dw = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], \
        geom[6], geom[7]
    h = xp.shape[1]
    w = xp.shape[2]
    words = xp.shape[3]
    cout = wb.shape[0]
    oh = out.shape[2]
    ow = out.shape[3]
    kk = kh * kw
    offsets = np.empty(kk, np.int64)
    positions = np.empty((kk, 2), np.int64)
    kvals = np.empty(kk, np.float64)
    for pix in range(first, last):
        i = pix // (oh * ow)
        rest = pix % (oh * ow)
        oy = rest // ow
        ox = rest % ow
        nvalid = 0
        for ky in range(kh):
            iy = oy * sh - ph + ky * dh
            for kx in range(kw):
                ix = ox * sw - pw + kx * dw
                if iy >= 0 and iy < h and ix >= 0 and ix < w:
                    offsets[nvalid] = ky * kw + kx
                    positions[nvalid, 0] = iy
                    positions[nvalid, 1] = ix
                    kvals[nvalid] = kmap[i, iy, ix]
                    nvalid += 1
        for co in range(cout):
            acc = 0.0
            for t in range(nvalid):
                base = offsets[t] * words
                iy = positions[t, 0]
                ix = positions[t, 1]
                s = 0
                for q in range(words):
                    s += _popcount(xp[i, iy, ix, q] ^ wb[co, base + q])
                acc += kvals[t] * (channels - 2 * s)
            out[i, co, oy, ox] = scale[co] * acc + shift[co]


@njit(parallel=True, cache=True)
def xnor_conv_scaled(xp, kmap, wb, channels, geom, scale, shift, out):  # type: ignore[no-untyped-def]
    """`xnor_conv` for scaled binary activations ``K ⊙ sign(x)`` (XNOR-Net's ``K``).

    ``kmap`` ``(N, H, W)`` float32 is the per-pixel activation scale. ``K`` varies inside the
    receptive field, so each offset's popcount dot product is weighted by its own ``K`` before
    summing; padded offsets are skipped (they contribute 0).
    """
    for pix in prange(out.shape[0] * out.shape[2] * out.shape[3]):
        _conv_scaled_pixels(xp, kmap, wb, channels, geom, scale, shift, out, pix, pix + 1)


@njit(cache=True)
def xnor_conv_scaled_serial(xp, kmap, wb, channels, geom, scale, shift, out):  # type: ignore[no-untyped-def]
    """`xnor_conv_scaled` on the calling thread."""
    _conv_scaled_pixels(xp, kmap, wb, channels, geom, scale, shift, out, 0,
                        out.shape[0] * out.shape[2] * out.shape[3])
