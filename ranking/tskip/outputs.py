"""Writing a T_skip estimate: the JSON report and the PNG of the post's figures, all or nothing."""

from __future__ import annotations

import os

from dwellrank_logs.io import atomic_files, table_path, write_json
from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.estimate import estimate_tskip_file
from ranking.tskip.plot import plot_tskip
from ranking.tskip.result import TskipResult

__all__ = ["tskip_from_logs", "write_tskip_outputs"]

_PathLike = str | os.PathLike[str]


def write_tskip_outputs(
    result: TskipResult, json_path: _PathLike | None = None, png_path: _PathLike | None = None, overwrite: bool = True
) -> None:
    """Write ``result.to_dict()`` as JSON and :func:`plot_tskip` as PNG; either may be None.

    Both paths are checked before anything is written, and both files appear
    only when both were written (a failing plot leaves no JSON behind).

    Raises
    ------
    OutputExistsError
        A path is a directory (named as ``--out`` / ``--plot``, the CLI's options), or
        exists while ``overwrite`` is false (checked again at the final rename).
    """
    with atomic_files({"--out": json_path, "--plot": png_path}, overwrite=overwrite) as tmp:
        if "--plot" in tmp:
            plot_tskip(result, tmp["--plot"])
        if "--out" in tmp:
            write_json(tmp["--out"], result.to_dict())


def tskip_from_logs(logs_dir: _PathLike, config: TskipConfig = DEFAULT_CONFIG) -> float:
    """T_skip, seconds, estimated from the impressions table of a logs directory.

    What ``train`` and the demo use when no T_skip is given.
    """
    return estimate_tskip_file(table_path(logs_dir, "impressions"), config).t_skip_s
