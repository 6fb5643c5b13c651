"""Byte layouts of the training functions' memory regions (docs/reference/training-functions.md),
encoded by the host application and decoded by the kernels. Little-endian throughout.

- POET model: u64 n_matrices, per matrix u64 rows, u64 cols, rows·cols float64 column-major;
  then u64 n_biases, per bias u64 length, length float64 (POET's `naaice` serializer).
- POET data: u64 n_columns, per column u64 length, length float64 (one column per species).
- Matrix: u64 rows, u64 cols, rows·cols float32 row-major (the richer path).
- JSON: UTF-8 text, NUL-padded to the region size.
Pure functions; called by `naa_runtime.kernels.training` and `naa_runtime.apps.train_poet`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

U64 = struct.Struct("<Q")
Buffer = memoryview | bytes | bytearray


class LayoutError(ValueError):
    """A region whose bytes do not follow the documented layout."""


def _u64(buf: Buffer, offset: int) -> tuple[int, int]:
    if offset + 8 > len(buf):
        raise LayoutError(f"region ends at byte {len(buf)} while reading a count at {offset}")
    return U64.unpack_from(buf, offset)[0], offset + 8


def _f64(buf: Buffer, offset: int, count: int) -> tuple[np.ndarray, int]:
    end = offset + 8 * count
    if count > (1 << 40) or end > len(buf):
        raise LayoutError(
            f"region of {len(buf)} bytes is too short for {count} float64 values at {offset}"
        )
    return np.frombuffer(buf, dtype="<f8", count=count, offset=offset), end


def poet_model_size(layers: list[tuple[np.ndarray, np.ndarray]]) -> int:
    return 16 + sum(16 + 8 * w.size + 8 + 8 * b.size for w, b in layers)


def encode_poet_model(
    layers: list[tuple[np.ndarray, np.ndarray]], *, transpose: bool = False
) -> bytes:
    """POET's model layout from (W fan_in × units, b) pairs; `transpose` writes W as units ×
    fan_in (Eigen's W·x orientation)."""
    parts = [U64.pack(len(layers))]
    for w, _ in layers:
        m = np.asarray(w, dtype="<f8")
        if transpose:
            m = m.T
        parts += [U64.pack(m.shape[0]), U64.pack(m.shape[1]), m.tobytes(order="F")]
    parts.append(U64.pack(len(layers)))
    for _, b in layers:
        parts += [U64.pack(b.size), np.asarray(b, dtype="<f8").tobytes()]
    return b"".join(parts)


def decode_poet_model(buf: Buffer) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """(W fan_in × units, b) per layer, and whether the matrices came as units × fan_in.

    The orientation is read from how consecutive matrices chain; when both readings chain
    (square matrices only) the Keras orientation fan_in × units is assumed."""
    count, off = _u64(buf, 0)
    if not 1 <= count <= 1024:
        raise LayoutError(f"model declares {count} matrices; expected 1..1024")
    mats: list[np.ndarray] = []
    for _ in range(count):
        rows, off = _u64(buf, off)
        cols, off = _u64(buf, off)
        data, off = _f64(buf, off, rows * cols)
        mats.append(data.reshape((rows, cols), order="F"))
    nb, off = _u64(buf, off)
    if nb != count:
        raise LayoutError(f"model has {count} matrices but {nb} bias vectors")
    biases: list[np.ndarray] = []
    for _ in range(nb):
        length, off = _u64(buf, off)
        data, off = _f64(buf, off, length)
        biases.append(data.copy())
    keras = all(mats[i].shape[1] == mats[i + 1].shape[0] for i in range(count - 1))
    keras = keras and all(m.shape[1] == b.size for m, b in zip(mats, biases, strict=True))
    eigen = all(mats[i].shape[0] == mats[i + 1].shape[1] for i in range(count - 1))
    eigen = eigen and all(m.shape[0] == b.size for m, b in zip(mats, biases, strict=True))
    if not keras and not eigen:
        raise LayoutError(
            "the model's matrices and biases do not chain: shapes "
            f"{[m.shape for m in mats]}, bias lengths {[b.size for b in biases]}"
        )
    transposed = not keras
    layers = [
        (m.T.copy() if transposed else m.copy(), b) for m, b in zip(mats, biases, strict=True)
    ]
    return layers, transposed


def encode_columns(data: np.ndarray) -> bytes:
    """POET's data layout from a rows × columns array."""
    arr = np.asarray(data, dtype="<f8")
    parts = [U64.pack(arr.shape[1])]
    for j in range(arr.shape[1]):
        parts += [U64.pack(arr.shape[0]), np.ascontiguousarray(arr[:, j]).tobytes()]
    return b"".join(parts)


def decode_columns(buf: Buffer) -> np.ndarray:
    """rows × columns float64 from POET's data layout; every column must have one length."""
    ncols, off = _u64(buf, 0)
    if not 1 <= ncols <= 4096:
        raise LayoutError(f"data declares {ncols} columns; expected 1..4096")
    cols: list[np.ndarray] = []
    for j in range(ncols):
        length, off = _u64(buf, off)
        if cols and length != cols[0].size:
            raise LayoutError(f"column {j} has {length} values, column 0 has {cols[0].size}")
        data, off = _f64(buf, off, length)
        cols.append(data)
    return np.stack(cols, axis=1)


def encode_matrix(data: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(data, dtype="<f4")
    if arr.ndim != 2:
        raise LayoutError(f"a matrix region holds a 2-D array, got shape {arr.shape}")
    return U64.pack(arr.shape[0]) + U64.pack(arr.shape[1]) + arr.tobytes()


def matrix_size(rows: int, cols: int) -> int:
    return 16 + 4 * rows * cols


def decode_matrix(buf: Buffer) -> np.ndarray:
    rows, off = _u64(buf, 0)
    cols, off = _u64(buf, off)
    if rows * cols * 4 + off > len(buf):
        raise LayoutError(f"region of {len(buf)} bytes is too short for a {rows}×{cols} matrix")
    return np.frombuffer(buf, dtype="<f4", count=rows * cols, offset=off).reshape(rows, cols)


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def decode_json(buf: Buffer) -> Any:
    raw = bytes(buf).rstrip(b"\0")
    try:
        return json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError(f"region is not UTF-8 JSON: {exc}") from None


def write_into(region: memoryview, payload: bytes) -> None:
    """Copy `payload` to the start of `region` and zero the rest."""
    if len(payload) > len(region):
        raise LayoutError(
            f"reply of {len(payload)} bytes does not fit the {len(region)}-byte region"
        )
    dst = np.frombuffer(region, dtype=np.uint8)
    dst[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    dst[len(payload) :] = 0
