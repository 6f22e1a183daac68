"""Reading a CTranslate2 ``model.bin`` (format version 6) into numpy, by hand: CTranslate2 itself is a
runtime of 60 MB that the conversion would use for this alone, and the format is a flat list.

The layout, little-endian: u32 version, string spec name, u32 spec revision, u32 variable count;
per variable a string name, u8 rank, u32 dimensions, u8 dtype, u32 byte count and the bytes; then
u32 alias count and (alias, target) string pairs. A string is a u16 byte count (its NUL included)
and its bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["read_variables"]

FORMAT_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
"""CTranslate2's dtype codes we read; 5, bfloat16, has no numpy type."""


def _u32(file: BinaryIO) -> int:
    return int(struct.unpack("<I", file.read(4))[0])


def _string(file: BinaryIO) -> str:
    (length,) = struct.unpack("<H", file.read(2))
    return file.read(length).rstrip(b"\0").decode()


def read_variables(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """The spec name (``WhisperSpec``) and every variable of the model at ``path`` by name, aliases
    included (the same array under both names)."""
    variables: dict[str, np.ndarray] = {}
    with path.open("rb") as file:
        version = _u32(file)
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: CTranslate2 format version {version}, this reader knows {FORMAT_VERSION}")
        spec = _string(file)
        _u32(file)  # the spec's revision
        for _ in range(_u32(file)):
            name = _string(file)
            shape = [_u32(file) for _ in range(file.read(1)[0])]
            code = file.read(1)[0]
            data = file.read(_u32(file))
            if code not in DTYPES:
                raise ValueError(f"{path}: variable {name} has dtype code {code}, not one of {sorted(DTYPES)}")
            variables[name] = np.frombuffer(data, dtype=DTYPES[code]).reshape(shape)
        for _ in range(_u32(file)):
            alias, target = _string(file), _string(file)
            variables[alias] = variables[target]
    return spec, variables
