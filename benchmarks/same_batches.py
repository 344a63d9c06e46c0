"""Same batches: the first batches of every loader of every data module, before and after.

Each data module runs on its test fixture (``tests/data/*/make_fixture.py``), in a few
configurations; for each loader (train with a fixed seed, val, test, predict) the first
batches are saved to ``OUT/<module>.pt``. Run it in two checkouts, then compare::

    cd /path/to/old/checkout && PYTHONPATH=$PWD python /path/to/benchmarks/same_batches.py /tmp/before
    cd /path/to/new/checkout && PYTHONPATH=$PWD python benchmarks/same_batches.py /tmp/after
    python benchmarks/same_batches.py --compare /tmp/before /tmp/after

``identical`` means every tensor of every saved batch is equal (same dtype and values), the
loaders have the same length and batch size, and errors carry the same message; keys only
the new batches have are listed.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch

MAX_BATCHES = 4


def batch_dict(batch):
    out = {}
    for key in batch.keys():
        v = batch[key]
        out[key] = v.clone() if torch.is_tensor(v) else v
    return out


def modules(tmp: Path):
    from lightning_pc import data as D
    from tests.data import load_fixture

    yield (
        "synthetic",
        lambda: D.SyntheticShapesDataModule(
            num_train=10, num_val=6, num_test=5, num_points=64, batch_size=4
        ),
    )
    yield (
        "synthetic_part",
        lambda: D.SyntheticShapesDataModule(
            num_train=10,
            num_val=6,
            num_test=5,
            num_points=64,
            batch_size=4,
            task="part_segmentation",
        ),
    )
    fx = load_fixture("modelnet")
    raw = fx.make_raw(tmp / "ModelNet10", fx.MODELNET10)
    yield (
        "modelnet_raw",
        lambda: D.ModelNetDataModule(
            str(raw),
            10,
            num_points=256,
            points_per_shape=512,
            batch_size=4,
            num_workers=0,
            cache_dir=str(tmp / "c_mn"),
        ),
    )
    yield (
        "modelnet_raw_normals",
        lambda: D.ModelNetDataModule(
            str(raw),
            10,
            num_points=100,
            use_normals=True,
            points_per_shape=512,
            batch_size=3,
            num_workers=0,
            cache_dir=str(tmp / "c_mn"),
        ),
    )
    h5 = fx.make_hdf5(tmp / "mnh5")
    yield (
        "modelnet_hdf5",
        lambda: D.ModelNetDataModule(
            str(h5),
            40,
            num_points=32,
            batch_size=4,
            num_workers=0,
            cache_dir=str(tmp / "c_mnh5"),
        ),
    )
    snp = load_fixture("shapenetpart").make_shapenetpart(tmp / "snp")
    yield (
        "shapenetpart",
        lambda: D.ShapeNetPartDataModule(
            str(snp),
            num_points=50,
            use_normals=True,
            batch_size=4,
            num_workers=0,
            cache_dir=str(tmp / "c_snp"),
        ),
    )
    yield (
        "shapenetpart_nonormals",
        lambda: D.ShapeNetPartDataModule(
            str(snp),
            num_points=30,
            batch_size=3,
            num_workers=0,
            cache_dir=str(tmp / "c_snp"),
        ),
    )
    s3 = load_fixture("s3dis")
    s3raw = s3.make_raw(tmp / "Stanford3dDataset_v1.2_Aligned_Version")
    yield (
        "s3dis_raw",
        lambda: D.S3DISDataModule(
            str(s3raw),
            num_points=40,
            voxel_size=0.05,
            crops_per_room=2,
            batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_s3"),
        ),
    )
    yield (
        "s3dis_raw_eval2",
        lambda: D.S3DISDataModule(
            str(s3raw),
            num_points=None,
            voxel_size=None,
            crops_per_room=2,
            batch_size=2,
            eval_batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_s3"),
        ),
    )
    s3h5 = s3.make_hdf5(tmp / "s3h5")
    yield (
        "s3dis_hdf5",
        lambda: D.S3DISDataModule(
            str(s3h5),
            num_points=20,
            batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_s3h5"),
        ),
    )
    sn = load_fixture("scannet").make_release(tmp / "scannet")
    yield (
        "scannet_pointcept",
        lambda: D.ScanNetDataModule(
            str(sn / "pointcept"),
            num_points=100,
            batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_snp2"),
        ),
    )
    yield (
        "scannet",
        lambda: D.ScanNetDataModule(
            str(sn / "raw"),
            num_points=100,
            batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_sn"),
        ),
    )
    yield (
        "scannet200",
        lambda: D.ScanNetDataModule(
            str(sn / "raw"),
            benchmark="scannet200",
            num_points=100,
            batch_size=2,
            eval_batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_sn"),
        ),
    )
    kitti = load_fixture("semantickitti").make_release(tmp / "kitti")
    yield (
        "semantickitti",
        lambda: D.SemanticKITTIDataModule(
            str(kitti),
            num_points=100,
            batch_size=2,
            num_workers=0,
            cache_dir=str(tmp / "c_sk"),
        ),
    )
    folder = load_fixture("folder").make_folder(tmp / "clouds")
    yield (
        "folder",
        lambda: D.PointCloudFolderDataModule(
            str(folder),
            num_points=50,
            points_per_mesh=100,
            batch_size=4,
            num_workers=0,
            cache_dir=str(tmp / "c_f"),
        ),
    )
    try:
        load_fixture("folder", "make_las_fixture.py").make_las_folder(tmp / "lidar")
        yield (
            "folder_las",
            lambda: D.PointCloudFolderDataModule(
                str(tmp / "lidar"),
                point_labels=True,
                num_points=None,
                batch_size=2,
                num_workers=0,
                cache_dir=str(tmp / "c_las"),
            ),
        )
    except ImportError as err:
        print("skip folder_las", err)
    from tests.test_predict import room, write_scan

    scans = tmp / "scans"
    scans.mkdir()
    for i, suffix in enumerate((".ply", ".npy")):
        pos, rgb = room(800, seed=i)
        write_scan(scans / f"scan{i}{suffix}", pos, rgb)
    yield (
        "predict",
        lambda: D.PredictScenesDataModule(
            str(scans),
            num_classes=3,
            features=["rgb"],
            voxel_size=0.1,
            batch_size=3,
        ),
    )
    yield (
        "predict_sphere",
        lambda: D.PredictScenesDataModule(
            str(scans),
            num_classes=3,
            features=["rgb"],
            voxel_size=0.1,
            batch_size=2,
            crop="sphere",
            block_size=2.0,
            stride=1.0,
            sphere_points=200,
        ),
    )


def dump(out: Path) -> None:
    import lightning as L

    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in modules(Path(tmp)):
            record = {}
            for split in ("train", "val", "test", "predict"):
                L.seed_everything(7, verbose=False)
                dm = make()
                try:
                    dm.prepare_data()
                    dm.setup(
                        {"train": "fit", "val": "fit", "test": "test", "predict": "predict"}[split]
                    )
                    loader = getattr(dm, f"{split}_dataloader")()
                except Exception as err:  # noqa: BLE001
                    record[split] = f"error {type(err).__name__}: {err}"
                    continue
                if isinstance(loader, list):
                    record[split] = f"list {len(loader)}"
                    continue
                batches = []
                for i, b in enumerate(loader):
                    if i >= MAX_BATCHES:
                        break
                    batches.append(batch_dict(b))
                record[split] = {
                    "len": len(loader) if hasattr(loader.dataset, "__len__") else -1,
                    "batch_size": loader.batch_size,
                    "batches": batches,
                }
            torch.save(record, out / f"{name}.pt")
            print(
                name,
                {k: (v if isinstance(v, str) else len(v["batches"])) for k, v in record.items()},
            )


def compare(before: Path, after: Path) -> None:
    for path in sorted(before.glob("*.pt")):
        a = torch.load(path, weights_only=False)
        b = torch.load(after / path.name, weights_only=False)
        for split in ("train", "val", "test", "predict"):
            x, y = a[split], b[split]
            if isinstance(x, str) or isinstance(y, str):
                same = x == y
                note = "" if same else f" {x!r} vs {y!r}"
                print(
                    f"{path.stem:24s} {split:8s} {'identical' if same else 'DIFFERENT'} ({x if same else ''}){note}"
                )
                continue
            ok = x["len"] == y["len"] and x["batch_size"] == y["batch_size"]
            ok &= len(x["batches"]) == len(y["batches"])
            new = set()
            for bx, by in zip(x["batches"], y["batches"]):
                new |= set(by) - set(bx)
                for k, v in bx.items():
                    w = by.get(k)
                    if torch.is_tensor(v):
                        ok &= torch.is_tensor(w) and v.dtype == w.dtype and torch.equal(v, w)
                    else:
                        ok &= v == w
            extra = f" (+ new keys {sorted(new)})" if new else ""
            print(
                f"{path.stem:24s} {split:8s} {'identical' if ok else 'DIFFERENT'} "
                f"[{len(x['batches'])} batches]{extra}"
            )


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        dump(Path(sys.argv[1]))
