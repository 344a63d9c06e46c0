"""Text scans: a Leica PTS count line that disagrees with the rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data.io import ScanChunks, read_point_file


@pytest.mark.parametrize(("declared", "what"), [(12, "fewer"), (3, "more")])
def test_pts_count_line_disagreeing_with_the_rows_reads_the_rows_with_a_warning(
    tmp_path: Path, declared: int, what: str
) -> None:
    rows = np.arange(15, dtype=np.float32).reshape(5, 3)
    path = tmp_path / "scan.pts"
    path.write_text(f"{declared}\n" + "".join(f"{a:g} {b:g} {c:g}\n" for a, b, c in rows))
    message = rf"count line declares {declared} points, the file holds 5 rows \({what}\)"
    with pytest.warns(UserWarning, match=message):
        np.testing.assert_array_equal(read_point_file(path)["pos"], rows)
    with pytest.warns(UserWarning, match=message):
        chunks = list(ScanChunks(path, chunk=2))
    np.testing.assert_array_equal(np.concatenate([c["pos"] for c in chunks]), rows)
