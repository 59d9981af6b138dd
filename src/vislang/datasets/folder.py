"""The ImageFolder layout: one sub-folder per class, images inside (torchvision's convention)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vislang.errors import InputError
from vislang.images import is_image_path


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: list[str]  # human labels: folder names with '_' read as spaces
    paths: list[Path]
    targets: list[int]  # index into classes, one per path

    @classmethod
    def open(cls, root: str | Path) -> "ImageFolder":
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root} is not a directory; expected one sub-folder per class")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        paths, targets, classes = [], [], []
        for folder in folders:
            images = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
            if images:
                paths += images
                targets += [len(classes)] * len(images)
                classes.append(folder.name.replace("_", " "))
        if len(classes) < 2:
            raise InputError(
                f"{root} needs at least two class sub-folders with images in them "
                f"(found {len(classes)}); layout: {root}/<class name>/<image files>"
            )
        return cls(root, classes, paths, targets)
