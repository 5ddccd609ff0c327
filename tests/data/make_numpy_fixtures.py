"""Regenerate the NumPy fixtures read by tests/npz_io.rs.

Run from anywhere: `python3 tests/data/make_numpy_fixtures.py` (needs numpy).
Values are simple (arange-based) so the Rust test can spell them out.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(HERE, name)


# np.savez: stored (uncompressed) members of many dtypes and layouts.
np.savez(
    out("numpy_fixtures.npz"),
    f64_2d=np.arange(12, dtype="<f8").reshape(3, 4) * 0.5 - 1.0,
    f32=np.arange(5, dtype="<f4") / 4,
    f16=np.array([0.5, -2.0, 65504.0, 2.0**-24], dtype="<f2"),
    i8=np.array([-128, -1, 0, 127], dtype="|i1"),
    i16=np.array([-32768, -1, 32767], dtype="<i2"),
    i32_be=np.array([-(2**31), 5], dtype=">i4"),
    i64=np.array([-3, 0, 7, 2**40, -(2**53)], dtype="<i8"),
    u8=np.arange(250, 256, dtype="|u1"),
    u16_be=np.array([0, 65535], dtype=">u2"),
    u32=np.array([4294967295], dtype="<u4"),
    u64=np.array([2**64 - 1], dtype="<u8"),
    boolean=np.array([True, False, True]),
    fortran_2d=np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)),
    fortran_3d=np.asfortranarray(np.arange(24, dtype="<i4").reshape(2, 3, 4)),
    f64_be=(np.arange(4) + 0.125).astype(">f8"),
    scalar=np.array(3.5),
    empty=np.zeros((0, 3)),
)

# np.savez_compressed: deflated members.
np.savez_compressed(
    out("numpy_compressed.npz"),
    grid=np.arange(100, dtype="<f8").reshape(10, 10) / 8,
    counts=np.array([1, 2, 3], dtype="<i4"),
)

# Standalone .npy files: default (1.0) header, explicit 2.0 and 3.0 headers,
# and a complex array that readers must reject.
np.save(out("numpy_int64.npy"), np.arange(-5, 5, dtype="<i8").reshape(2, 5))
for version in (2, 3):
    with open(out(f"numpy_v{version}.npy"), "wb") as f:
        np.lib.format.write_array(
            f, np.arange(3, dtype="<f8") + 0.5, version=(version, 0)
        )
np.save(out("numpy_complex.npy"), np.array([1 + 2j], dtype="<c16"))
