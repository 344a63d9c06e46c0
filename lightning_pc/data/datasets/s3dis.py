"""S3DIS: the raw aligned release (one cached sample per room) or PointNet's hdf5 blocks.

Raw release: ``<root>/Area_<a>/<room>/Annotations/<class>_<n>.txt`` (``x y z r g b``) is
parsed once per room; points are stored sorted by ``x`` (with ``xs``, a copy of that column)
so a training crop reads a contiguous slice. ``stairs`` maps to ``clutter``. The release's
known defects are survived in memory, the files untouched: a NUL byte for a space, the
duplicate ``wall_3 (1).txt``, stray ``Icon\\r`` / ``.DS_Store`` files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch_geometric.data import Data

from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.datasets.base import PackedDataset, TransformFn, torch_friendly
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import integer_labels, read_table
from lightning_pc.data.packed import PackedWriter

CLASS_NAMES: list[str] = (
    "ceiling floor wall beam column window door table chair sofa bookcase board clutter".split()
)
ALIASES = {"stairs": "clutter"}
RAW_DIR = "Stanford3dDataset_v1.2_Aligned_Version"
H5_DIR = "indoor3d_sem_seg_hdf5_data"
LAYOUT_HELP = f"""\
  1. raw aligned release ({RAW_DIR}):
       <root>/Area_{{1..6}}/<room>/Annotations/<class>_<n>.txt   (x y z r g b per line)
  2. PointNet hdf5 blocks ({H5_DIR}):
       <root>/all_files.txt, <root>/room_filelist.txt, <root>/ply_data_all_<i>.h5"""
_ANNOTATION = re.compile(r"^([A-Za-z]+)_(\d+)\.txt$")
_DUPLICATE = re.compile(r"^.+ \(\d+\)\.txt$")


def detect_layout(root: Path) -> tuple[Literal["raw", "hdf5"], Path]:
    """Find the layout under ``root`` (or its conventionally named subfolder)."""
    for folder in (root, root / RAW_DIR, root / H5_DIR):
        if (folder / "all_files.txt").is_file() and (folder / "room_filelist.txt").is_file():
            return "hdf5", folder
        if any(folder.glob("Area_[1-6]/*/Annotations")):
            return "raw", folder
    raise MissingDataError("S3DIS", root, LAYOUT_HELP)


def annotation_files(room: Path) -> list[Path]:
    """A room's annotation files, sorted, skipping known junk (duplicates, Icon, .DS_Store).

    Raises:
        DataFormatError: a ``.txt`` file whose name is not ``<class>_<n>.txt`` of a known class.
    """
    out = []
    for f in sorted((room / "Annotations").iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.suffix != ".txt":
            continue  # .DS_Store, Icon\r
        if _DUPLICATE.match(f.name):
            continue  # "wall_3 (1).txt": a copy of wall_3.txt
        m = _ANNOTATION.match(f.name)
        cls = ALIASES.get(m.group(1), m.group(1)) if m else None
        if cls not in CLASS_NAMES:
            raise DataFormatError(f, f"not an annotation file of a known class {CLASS_NAMES}")
        out.append(f)
    return out


def parse_room(room: str) -> dict[str, np.ndarray]:
    """Parse one room into ``pos`` float32, ``rgb`` uint8, ``label`` uint8, ``xs``, sorted by x."""
    pos, rgb, label = [], [], []
    for f in annotation_files(Path(room)):
        arr = read_table(f, 6, dtype=np.float64)
        colour = arr[:, 3:]
        bad = np.flatnonzero(((colour < 0) | (colour > 255) | (colour != np.round(colour))).any(1))
        if len(bad):
            raise DataFormatError(
                f, f"colour {colour[bad[0]].tolist()} not 0-255 integers (data row {bad[0] + 1})"
            )
        cls = ALIASES.get(f.name.rsplit("_", 1)[0], f.name.rsplit("_", 1)[0])
        pos.append(arr[:, :3].astype(np.float32))
        rgb.append(colour.astype(np.uint8))
        label.append(np.full(len(arr), CLASS_NAMES.index(cls), dtype=np.uint8))
    if not pos:
        raise DataFormatError(Path(room) / "Annotations", "room has no annotation files")
    p, c, lab = np.concatenate(pos), np.concatenate(rgb), np.concatenate(label)
    order = np.argsort(p[:, 0], kind="stable")
    p = p[order]
    return {"pos": p, "rgb": c[order], "label": lab[order], "xs": np.ascontiguousarray(p[:, 0])}


def area_of(name: str) -> int:
    """Area number of a room/block name such as ``Area_5/office_1`` or ``Area_5_office_1``."""
    m = re.search(r"Area_(\d+)", name)
    if not m:
        raise ValueError(f"no Area_<n> in {name!r}")
    return int(m.group(1))


class S3DISRecipe(CacheRecipe):
    """Cache recipe for S3DIS (either layout). Every area is cached; ``test_area`` is chosen
    when reading, so changing it does not rebuild.

    Args:
        root: dataset folder (or its parent).
    """

    name = "s3dis"
    version = 2

    def __init__(self, root: str | Path) -> None:
        self.layout, self.folder = detect_layout(Path(root).expanduser())
        self._rooms: list[Path] | None = None

    @property
    def root(self) -> Path:
        return self.folder

    def params(self) -> dict[str, Any]:
        return {"layout": self.layout}

    def rooms(self) -> list[Path]:
        """Room folders (raw layout), sorted by area then name."""
        if self._rooms is None:
            self._rooms = sorted(
                (d for d in self.folder.glob("Area_[1-6]/*") if (d / "Annotations").is_dir()),
                key=lambda d: (d.parent.name, d.name),
            )
        return self._rooms

    def h5_files(self) -> list[Path]:
        """The hdf5 block files listed in ``all_files.txt``, in order."""
        listing = self.folder / "all_files.txt"
        files = [
            self.folder / Path(s.strip()).name
            for s in listing.read_text().splitlines()
            if s.strip()
        ]
        for f in files:
            if not f.is_file():
                raise MissingDataError("S3DIS", f, LAYOUT_HELP)
        return files

    def raw_files(self) -> list[Path]:
        if self.layout == "hdf5":
            return sorted(
                [*self.h5_files(), self.folder / "all_files.txt", self.folder / "room_filelist.txt"]
            )
        return sorted(f for room in self.rooms() for f in annotation_files(room))

    def build(self, out: Path) -> None:
        writer = PackedWriter(out / "rooms")
        if self.layout == "raw":
            rooms = [str(r) for r in self.rooms()]
            for room, arrays in zip(rooms, parallel_map(parse_room, rooms, "S3DIS rooms")):
                name = Path(room).relative_to(self.folder).as_posix()
                meta = {"area": area_of(name), "shift": shift_of(arrays["pos"])}
                writer.append(name, arrays, meta)
        else:
            self._build_hdf5(writer)
        writer.close()

    def _build_hdf5(self, writer: PackedWriter) -> None:
        import h5py

        listing = self.folder / "room_filelist.txt"
        names = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
        k = 0
        for path in self.h5_files():
            try:
                with h5py.File(path, "r") as f:
                    data = np.asarray(f["data"], dtype=np.float32)
                    label = np.asarray(f["label"])
            except (OSError, KeyError) as err:
                raise DataFormatError(path, f"not a readable S3DIS hdf5 file ({err})") from err
            if data.ndim != 3 or data.shape[2] != 9 or label.shape != data.shape[:2]:
                raise DataFormatError(path, f"bad shapes data {data.shape}, label {label.shape}")
            label = integer_labels(label, path)
            for i in range(len(data)):
                if k >= len(names):
                    raise DataFormatError(listing, f"fewer lines ({len(names)}) than blocks")
                if label[i].max() >= len(CLASS_NAMES) or label[i].min() < 0:
                    raise DataFormatError(path, f"label {label[i].max()} of block {i} out of range")
                if not np.isfinite(data[i]).all():
                    raise DataFormatError(path, f"non-finite values in block {i}")
                block = f"{names[k]}#{k}"
                writer.append(
                    block,
                    {
                        "pos": data[i, :, :3],
                        "x": data[i, :, 3:],
                        "label": label[i].astype(np.uint8),
                    },
                    {"area": area_of(names[k]), "shift": shift_of(data[i, :, :3])},
                )
                k += 1
        if k != len(names):
            raise DataFormatError(listing, f"{len(names)} lines but {k} blocks in the h5 files")


def shift_of(pos: np.ndarray) -> list[float]:
    """The offset :func:`center_shift` subtracts: ``[x centre, y centre, z min]`` of the bbox."""
    lo, hi = pos.min(0), pos.max(0)
    return [float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, float(lo[2])]


def center_shift(pos: torch.Tensor) -> torch.Tensor:
    """Move the bounding box's x-y centre to the origin and its floor to ``z = 0``."""
    lo, hi = pos.min(0).values, pos.max(0).values
    shift = torch.stack([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return pos - shift


class S3DISRooms(PackedDataset):
    """Whole rooms (evaluation) or hdf5 blocks: ``pos``, ``x`` = RGB in 0-1 (hdf5: its 6
    channels), ``y`` per point, ``room [1]`` (index into the cache).

    Args:
        folder: the cache's ``rooms`` folder.
        indices: rooms (cache indices) in this split.
        transform: per-sample transform (e.g. deterministic ``GridSubsample`` with
            ``keep_inverse`` to evaluate on voxels and project back to every point).
        hdf5: the cache holds hdf5 blocks.
        num_points: random subset size (training on blocks); ``None`` keeps all.
    """

    def __init__(
        self,
        folder: str | Path,
        indices: list[int],
        transform: TransformFn | None = None,
        hdf5: bool = False,
        num_points: int | None = None,
    ) -> None:
        keys = (
            {"pos": "pos", "x": "x", "label": "y"}
            if hdf5
            else {"pos": "pos", "rgb": "x", "label": "y"}
        )
        super().__init__(folder, keys, None, num_points, "random", transform)
        self.indices = list(indices)
        self.shifts = self.store.sample("shift").astype(np.float32)  # [rooms, 3]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def names(self) -> list[str]:
        """The source room of each sample (``Area_5/office_1``), indexed like the dataset:
        ``names[i]`` is the room behind sample ``i``, not row ``i`` of the cache (which holds
        every area's rooms)."""
        return [self.store.names[room] for room in self.indices]

    def source(self, index: int) -> str:
        return self.store.names[self.indices[index]]

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        room = self.indices[index]
        rows = self.rows(room, generator)
        data = Data()
        for field, attr in self.point_keys.items():
            src = self.point_field(room, field, rows)
            if field == "pos":  # centre while copying out of the memory map: one pass
                data[attr] = torch.from_numpy(np.subtract(src, self.shifts[room], dtype=np.float32))
            else:
                data[attr] = torch.from_numpy(torch_friendly(src))
        data.room = torch.tensor([room])
        return self.check_finite(data, room)

    def labels(self, index: int) -> torch.Tensor:
        """Labels of every original point of sample ``index`` (cache order)."""
        return torch.from_numpy(self.store.points(self.indices[index], "label").astype(np.int64))


class S3DISCrops(S3DISRooms):
    """Training crops: all points whose ``x, y`` lie within ``block_size / 2`` of a random
    point of a room, ``crops_per_room`` per room per epoch; with ``block_size=None`` the
    whole room, ``crops_per_room`` times per epoch (Pointcept's recipes: the transforms
    crop, e.g. :class:`~lightning_pc.data.transforms.SphereCrop` after the voxel grid).

    Args:
        folder: the cache's ``rooms`` folder (raw layout).
        indices: training rooms.
        block_size: side of the square crop in metres (``None``: whole rooms).
        crops_per_room: crops drawn from each room per epoch.
        transform: per-sample transform (voxelise, augment, subsample to a budget).
    """

    def __init__(
        self,
        folder: str | Path,
        indices: list[int],
        block_size: float | None = 3.0,
        crops_per_room: int = 10,
        transform: TransformFn | None = None,
    ) -> None:
        super().__init__(folder, indices, transform)
        self.block_size, self.crops_per_room = block_size, crops_per_room

    def __len__(self) -> int:
        return len(self.indices) * self.crops_per_room

    @property
    def names(self) -> list[str]:
        """The source room of each crop, indexed like the dataset (``crops_per_room``
        consecutive crops share a room)."""
        return [self.store.names[room] for room in self.indices for _ in range(self.crops_per_room)]

    def source(self, index: int) -> str:
        return self.store.names[self.indices[index // self.crops_per_room]]

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        if self.block_size is None:  # the whole room, centred as for evaluation
            return super().raw_sample(index // self.crops_per_room, generator)
        room = self.indices[index // self.crops_per_room]
        n = self.store.num_points(room)
        centre = self.store.points(
            room, "pos", np.array([int(torch.randint(n, (1,), generator=generator))])
        )[0]
        half = self.block_size / 2
        xs = self.store.view(room, "xs")
        lo = int(np.searchsorted(xs, centre[0] - half, side="left"))
        hi = int(np.searchsorted(xs, centre[0] + half, side="right"))  # slab |x - cx| <= half
        ys = self.store.view(room, "pos")[lo:hi, 1]
        sel = np.flatnonzero(np.abs(ys - centre[1]) <= half)
        data = Data()
        for field, attr in self.point_keys.items():
            data[attr] = torch.from_numpy(torch_friendly(self.store.view(room, field)[lo:hi][sel]))
        data.pos = center_shift(data.pos)
        data.room = torch.tensor([room])
        return self.check_finite(data, room)
