"""Open3D offscreen rendering (headless Filament): one renderer per process, reused.

The renderer is kept while the image size stays the same; a new size replaces it.

On a CPU-only Linux machine Filament runs on Mesa's software Vulkan driver (Debian packages
``libvulkan1 mesa-vulkan-drivers``; ``import open3d`` itself needs ``libusb-1.0-0`` and
``libgomp1``). The renderer is created lazily on first use, cached per process and per image
size, and recreated in a forked child (a renderer does not survive ``fork``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from lightning_pc.viz.camera import Camera

_LOCK = threading.Lock()
_RENDERERS: dict[tuple[int, int], Any] = {}
_PID: int | None = None


def release_renderers() -> None:
    """Empties and drops this process's renderers (registered with ``atexit``).

    Filament aborts the interpreter at exit if a material is destroyed while a scene still
    holds geometry using it, which happens when renderers are torn down in arbitrary order
    during shutdown; emptying every scene first, then dropping the renderers, avoids it.
    """
    with _LOCK:
        if _PID != os.getpid():
            _RENDERERS.clear()
            return
        _drop_all()


def _drop_all() -> None:
    for renderer in _RENDERERS.values():
        try:
            renderer.scene.clear_geometry()
        except Exception:  # noqa: BLE001 - best effort
            pass
    _RENDERERS.clear()


atexit.register(release_renderers)


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Sends the process's stdout and stderr (file descriptors 1 and 2) to ``/dev/null``.

    Filament prints its backend and driver lines ("FEngine resolved backend: Vulkan", ...)
    from C++ straight to the file descriptors, which Python's ``sys.stdout`` cannot catch.
    Set ``LIGHTNING_PC_RENDER_VERBOSE=1`` to see them.
    """
    if os.environ.get("LIGHTNING_PC_RENDER_VERBOSE"):
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def get_renderer(width: int, height: int) -> Any:
    """The process's ``open3d.visualization.rendering.OffscreenRenderer`` for this size.

    Raises:
        ImportError: Open3D is not installed.
        RuntimeError: Open3D could not open a renderer (no EGL/Vulkan driver).
    """
    global _PID
    with _LOCK:
        if _PID != os.getpid():  # first call, or a forked child: parent's renderers are dead
            _RENDERERS.clear()
            _PID = os.getpid()
        key = (width, height)
        if key not in _RENDERERS:
            with quiet_output():
                from open3d.visualization import rendering

            # One renderer at a time: Filament aborts at exit when renderers of several
            # sizes coexist, so a new size replaces the old renderer (emptied first).
            _drop_all()

            with quiet_output():
                renderer = rendering.OffscreenRenderer(width, height)
            renderer.scene.view.set_post_processing(False)  # exact unlit colours, no bloom
            _RENDERERS[key] = renderer
        return _RENDERERS[key]


def render_open3d(
    points: np.ndarray,
    colors: np.ndarray,
    camera: Camera,
    *,
    point_size: float = 3.0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Render coloured points with Open3D.

    Args:
        points: ``[N, 3]`` float coordinates.
        colors: ``[N, 3]`` floats in ``[0, 1]``.
        camera: the camera; perspective maps to ``setup_camera(fov, center, eye, up)``,
            orthographic to ``Camera.set_projection(Ortho, ...)`` plus ``look_at``.
        point_size: point size in pixels.
        background: background colour, floats in ``[0, 1]``.

    Returns:
        ``[H, W, 3]`` uint8 image.
    """
    import open3d as o3d
    from open3d.visualization import rendering

    renderer = get_renderer(camera.width, camera.height)
    with _LOCK:
        scene = renderer.scene
        scene.clear_geometry()
        scene.set_background([*background, 1.0])
        cloud = o3d.geometry.PointCloud(
            o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64))
        )
        cloud.colors = o3d.utility.Vector3dVector(np.clip(np.asarray(colors, np.float64), 0, 1))
        material = rendering.MaterialRecord()
        material.shader = "defaultUnlit"
        material.point_size = float(point_size)
        scene.add_geometry("points", cloud, material)
        center, eye, up = (np.asarray(t, dtype=np.float32) for t in (camera.center, camera.eye, camera.up))
        if camera.projection == "orthographic":
            half_h = camera.ortho_height / 2
            half_w = half_h * camera.width / camera.height
            scene.camera.set_projection(
                rendering.Camera.Projection.Ortho,
                -half_w, half_w, -half_h, half_h, camera.near, camera.far,
            )
            scene.camera.look_at(center, eye, up)
        else:
            renderer.setup_camera(float(camera.fov), center, eye, up)
            scene.camera.set_projection(
                float(camera.fov), camera.width / camera.height, camera.near, camera.far,
                rendering.Camera.FovType.Vertical,
            )
        with quiet_output():
            image = np.asarray(renderer.render_to_image())
        scene.clear_geometry()
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False)
