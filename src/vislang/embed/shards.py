"""The output of ``vislang embed``: Parquet shards and the manifest that describes them.

    out/part-00000.parquet   id, path, hash, size, width, height, embedding, caption
    out/part-00001.parquet
    out/_manifest.json       model, model_key, dim, dtype, counts, failures, shards, version

A shard is written under a temporary name and renamed when complete, so a file named
``part-*.parquet`` is always whole; ``--resume`` trusts exactly those.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vislang.errors import InputError

MANIFEST = "_manifest.json"  # "_": Parquet readers skip it when reading the folder
FORMAT = "vislang-embeddings/1"
SHARD_GLOB = "part-*.parquet"


def schema(dim: int):
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("path", pa.string()), ("hash", pa.string()),
        ("size", pa.int64()), ("width", pa.int32()), ("height", pa.int32()),
        ("embedding", pa.list_(pa.float16(), dim)), ("caption", pa.string()),
    ])


def shard_names(out: Path) -> list[Path]:
    return sorted(out.glob(SHARD_GLOB))


def read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(f"{out / MANIFEST} cannot be read ({error})") from None


def finished_ids(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for shard in shard_names(out):
        ids.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    return ids


@dataclass
class Row:
    id: str
    path: str
    hash: str
    size: int
    width: int
    height: int
    caption: str | None


@dataclass
class ShardWriter:
    """Collects rows and writes them ``rows_per_shard`` at a time, each shard atomically."""

    out: Path
    dim: int
    rows_per_shard: int
    next_number: int = 0
    written: list[dict] = field(default_factory=list)  # {"file", "rows"} of this run's shards
    _rows: list[Row] = field(default_factory=list)
    _vectors: list[np.ndarray] = field(default_factory=list)

    def add(self, rows: list[Row], vectors: np.ndarray) -> None:
        self._rows += rows
        self._vectors.append(np.asarray(vectors, np.float32).reshape(len(rows), self.dim))
        while len(self._rows) >= self.rows_per_shard:
            self._flush(self.rows_per_shard)

    def close(self) -> None:
        if self._rows:
            self._flush(len(self._rows))

    def _flush(self, n: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        vectors = np.concatenate(self._vectors) if self._vectors else np.zeros((0, self.dim))
        rows, rest = self._rows[:n], self._rows[n:]
        head, tail = vectors[:n], vectors[n:]
        flat = pa.array(head.astype(np.float16).reshape(-1), pa.float16())
        table = pa.Table.from_pydict({
            "id": [r.id for r in rows], "path": [r.path for r in rows],
            "hash": [r.hash for r in rows], "size": [r.size for r in rows],
            "width": [r.width for r in rows], "height": [r.height for r in rows],
            "embedding": pa.FixedSizeListArray.from_arrays(flat, self.dim),
            "caption": [r.caption for r in rows],
        }, schema=schema(self.dim))
        name = f"part-{self.next_number:05d}.parquet"
        temporary = self.out / f".{name}.tmp"
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, self.out / name)
        self.next_number += 1
        self.written.append({"file": name, "rows": n})
        self._rows, self._vectors = rest, [tail] if len(tail) else []


def write_manifest(out: Path, manifest: dict) -> None:
    temporary = out / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, out / MANIFEST)


def shard_list(out: Path) -> list[dict]:
    """Every finished shard in ``out`` with its row count (read from the Parquet footer)."""
    import pyarrow.parquet as pq

    return [{"file": p.name, "rows": pq.ParquetFile(p).metadata.num_rows}
            for p in shard_names(out)]


def next_shard_number(out: Path) -> int:
    numbers = [int(p.stem.split("-")[1]) for p in shard_names(out)
               if p.stem.split("-")[1].isdigit()]
    return max(numbers) + 1 if numbers else 0
