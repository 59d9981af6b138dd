"""A small indexed gallery of generated scenes for the server tests (API, browser, schema)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed "
                              "(pip install 'vislang[serve]')")

from vislang.datasets.shapes import Scene, generate_scenes  # noqa: E402

CAPTION_MODEL, VQA_MODEL = "shapes-blip-caption", "shapes-blip-vqa"


@dataclass
class Gallery:
    root: Path  # the index's one root
    index: Path
    scenes: dict[str, Scene]  # path -> the scene drawn there
    outside: Path  # a folder beside the root, with a secret image in it

    def unique(self) -> dict[str, str]:
        """path -> caption, for scenes whose caption no other scene shares."""
        captions = [s.caption for s in self.scenes.values()]
        return {p: s.caption for p, s in self.scenes.items() if captions.count(s.caption) == 1}


def build(folder: Path, n: int = 40, seed: int = 515151) -> Gallery:
    from vislang.search import Index

    root, outside = folder / "photos", folder / "private"
    root.mkdir(parents=True)
    outside.mkdir()
    scenes = {}
    for scene in generate_scenes(n, seed=seed, n_objects=2, image_size=64):
        path = root / f"scene-{scene.index:04d}.png"
        scene.image.save(path)
        scenes[str(path)] = scene
    next(iter(scenes.values())).image.save(outside / "secret.png")
    (outside / "secret.txt").write_text("the secret")
    with Index.open(folder / "index", "shapes-clip") as index:
        index.update([root])
    return Gallery(root, folder / "index", scenes, outside)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
