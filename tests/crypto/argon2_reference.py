"""Argon2id v1.3 in plain Python, as RFC 9106 writes it: slow, for cross-checking libsodium only.

Used by test_crypto_crosscheck.py (against RFC 9106's own vector and libsodium
at small memory sizes), by test_crypto_vectors.py's slow test and by
gen_vectors.py --reference (the FORMAT.md vector, 64 MiB: about a minute).
Not a test module.
"""

from __future__ import annotations

import hashlib
import struct

_M64 = (1 << 64) - 1


def _h(data: bytes, n: int) -> bytes:
    return hashlib.blake2b(data, digest_size=n).digest()


def _h_prime(x: bytes, t: int) -> bytes:
    """RFC 9106, 3.3: the variable-length hash H'."""
    x = struct.pack("<I", t) + x
    if t <= 64:
        return _h(x, t)
    r = -(-t // 32) - 2
    v = _h(x, 64)
    out = [v[:32]]
    for _ in range(r - 1):
        v = _h(v, 64)
        out.append(v[:32])
    out.append(_h(v, t - 32 * r))
    return b"".join(out)


def _gb(v: list[int], a: int, b: int, c: int, d: int) -> None:
    def f(x: int, y: int) -> int:
        return (x + y + 2 * (x & 0xFFFFFFFF) * (y & 0xFFFFFFFF)) & _M64

    def rotr(x: int, n: int) -> int:
        return ((x >> n) | (x << (64 - n))) & _M64

    va, vb, vc, vd = v[a], v[b], v[c], v[d]
    va = f(va, vb)
    vd = rotr(vd ^ va, 32)
    vc = f(vc, vd)
    vb = rotr(vb ^ vc, 24)
    va = f(va, vb)
    vd = rotr(vd ^ va, 16)
    vc = f(vc, vd)
    vb = rotr(vb ^ vc, 63)
    v[a], v[b], v[c], v[d] = va, vb, vc, vd


def _p(v: list[int]) -> None:
    for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                       (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
        _gb(v, a, b, c, d)


def _compress(x: list[int], y: list[int]) -> list[int]:
    """RFC 9106, 3.5: G(X, Y) on 1 KiB blocks of 128 little-endian 64-bit words."""
    r = [a ^ b for a, b in zip(x, y, strict=True)]
    q = list(r)
    for i in range(8):
        row = q[16 * i:16 * i + 16]
        _p(row)
        q[16 * i:16 * i + 16] = row
    for j in range(8):
        idx = [16 * i + 2 * j + k for i in range(8) for k in (0, 1)]
        col = [q[t] for t in idx]
        _p(col)
        for t, w in zip(idx, col, strict=True):
            q[t] = w
    return [a ^ b for a, b in zip(q, r, strict=True)]


def argon2id_reference(password: bytes, salt: bytes, t: int, m_kib: int, p: int, tag_len: int,
                       secret: bytes = b"", ad: bytes = b"") -> bytes:
    """Argon2id v1.3 as RFC 9106 writes it: slow and plain, for cross-checking only."""

    def le(n: int) -> bytes:
        return struct.pack("<I", n)

    h0 = _h(le(p) + le(tag_len) + le(m_kib) + le(t) + le(0x13) + le(2) + lp_le(password) + lp_le(salt)
            + lp_le(secret) + lp_le(ad), 64)
    seg = max(m_kib, 8 * p) // (4 * p)
    q, blocks = 4 * seg, 4 * p * seg
    mem: list[list[list[int]]] = [[[] for _ in range(q)] for _ in range(p)]
    for lane in range(p):
        for col in (0, 1):
            mem[lane][col] = list(struct.unpack("<128Q", _h_prime(h0 + le(col) + le(lane), 1024)))
    zero = [0] * 128
    for ps in range(t):
        for sl in range(4):
            for lane in range(p):
                independent = ps == 0 and sl < 2  # the "i" half of Argon2id
                addresses: list[int] = []
                counter = 0
                for i in range(2 if ps == 0 and sl == 0 else 0, seg):
                    col = sl * seg + i
                    prev = mem[lane][col - 1 if col else q - 1]
                    if independent:
                        if not addresses or i % 128 == 0:
                            counter += 1
                            z = [ps, lane, sl, blocks, t, 2, counter] + [0] * 121
                            addresses = _compress(zero, _compress(zero, z))
                        rnd = addresses[i % 128]
                    else:
                        rnd = prev[0]
                    j1, j2 = rnd & 0xFFFFFFFF, rnd >> 32
                    ref_lane = lane if ps == 0 and sl == 0 else j2 % p
                    same = ref_lane == lane
                    if ps == 0:
                        area = i - 1 if sl == 0 else (sl * seg + i - 1 if same else sl * seg - (i == 0))
                    else:
                        area = q - seg + i - 1 if same else q - seg - (i == 0)
                    rel = area - 1 - ((area * ((j1 * j1) >> 32)) >> 32)
                    start = 0 if ps == 0 or sl == 3 else (sl + 1) * seg
                    new = _compress(prev, mem[ref_lane][(start + rel) % q])
                    if ps:
                        new = [a ^ b for a, b in zip(new, mem[lane][col], strict=True)]
                    mem[lane][col] = new
    last = mem[0][q - 1]
    for lane in range(1, p):
        last = [a ^ b for a, b in zip(last, mem[lane][q - 1], strict=True)]
    return _h_prime(struct.pack("<128Q", *last), tag_len)


def lp_le(b: bytes) -> bytes:
    return struct.pack("<I", len(b)) + b
