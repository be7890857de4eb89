"""The `order` stage's output as other stages read it: `order.parquet` in its `stitch` phase's data
folder, one row per document (position int64, id string), every kept document exactly once.

`pack` (and anything else that follows the path) reads the order through this module, not through
the order stage's wrapper.
"""

from __future__ import annotations

import os

import numpy as np

from curate.atomic import write_parquet_atomic
from curate.plan import StageContext

ORDER_FILE = "order.parquet"
ORDER_PHASE = "stitch"  # the phase of the `order` stage that writes ORDER_FILE
QUALITY_FILE = "quality.json"


def order_path(data_dir: str) -> str:
    return os.path.join(data_dir, ORDER_FILE)


def order_file(ctx: StageContext, stage_id: str | None = None) -> str:
    """Where the `order` stage `stage_id` (default: the latest earlier one) wrote its order."""
    if stage_id is None:
        return order_path(ctx.upstream_data_dir("order", ORDER_PHASE))
    return order_path(ctx.stage_data_dir(stage_id, ORDER_PHASE))


def write_order(ids: list[str], data_dir: str) -> str:
    """Write the path (document ids in order) as `order.parquet`; returns its path."""
    import polars as pl  # 1 s to import: not when the stages are only listed

    path = order_path(data_dir)
    write_parquet_atomic(
        pl.DataFrame({"position": np.arange(len(ids), dtype=np.int64), "id": ids},
                     schema={"position": pl.Int64, "id": pl.String}),
        path,
    )
    return path


def read_order(path: str):
    """(position, id) sorted by position, as a polars DataFrame."""
    import polars as pl

    return pl.read_parquet(path).sort("position")
