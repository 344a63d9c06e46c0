"""NPY: a damaged header is a DataFormatError, whatever numpy's parser raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.io import ScanChunks, read_point_file


def test_a_header_numpy_cannot_tokenize_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((4, 3), np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"'descr'", b"('descr'", 1))  # an unclosed bracket
    for reader in (read_point_file, ScanChunks):
        with pytest.raises(DataFormatError, match=r"cut.npy: not a readable .npy array"):
            reader(path)
