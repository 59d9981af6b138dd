"""Shrink a trained CLIP checkpoint for shipping inside the vislang package.

Weights are stored as float16 (vislang.load computes in float32 whatever the file holds), and
the tokenizer files are left out: models that use OpenAI's CLIP vocabulary load it from the
copy vislang ships. Usage: python recipes/ship_model.py TRAINED_DIR DEST_DIR
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModel


def main(source: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    model = AutoModel.from_pretrained(source, dtype=torch.float32)
    model.to(torch.float16).save_pretrained(dest)
    for name in ("preprocessor_config.json", "eval.json"):
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
    for f in dest.iterdir():
        f.chmod(0o644)  # safetensors writes 0600; installed files must be readable by all
    size = sum(f.stat().st_size for f in dest.iterdir()) / 2**20
    print(f"shipped {source} -> {dest} ({size:.1f} MiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
