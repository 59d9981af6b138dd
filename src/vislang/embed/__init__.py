"""Bulk embedding as a data pipeline: image sources in, Parquet shards + a manifest out.

    from vislang.embed import embed
    embed(["photos/", "shard-000.tar"], "embeddings/", vislang.load("ViT-B/32"))

See docs/scale.md for the shard format and ``vislang embed --ray`` for running on Ray.
"""

from vislang.embed.pipeline import EmbedSummary, embed
from vislang.embed.sources import Item, collect

__all__ = ["EmbedSummary", "Item", "collect", "embed"]
