"""Render ``docs/schema.md`` from :mod:`dwellrank_logs.schema` (``python -m dwellrank_logs.schema_doc``)."""

from __future__ import annotations

from dwellrank_logs.protocol import CANDIDATE_COLUMNS, CANDIDATE_DOCS, candidate_kind
from dwellrank_logs.schema import CHANNELS, CONTENTS, EVENT_TYPES, SCHEMA_VERSION, TABLES, UPDATE_TYPES

__all__ = ["render"]


def render() -> str:
    """The Markdown text of ``docs/schema.md``."""
    out = [
        "# Log schema",
        "",
        f"Schema version {SCHEMA_VERSION}. Owned by `dwellrank_logs/schema.py`; this page is generated from it with "
        "`python -m dwellrank_logs.schema_doc > docs/schema.md`, and a test checks that the two agree.",
        "",
        "A logs directory holds one Parquet file per table, `<table>.parquet`, or a directory of that name holding "
        "the table as Parquet part files (as Spark or pyarrow write them: `*.parquet` at any depth, names starting with "
        "`.` or `_` skipped, Hive `key=value` folders read as columns with inferred types). Columns are checked by *kind*: any "
        "integer width passes for an integer column and is cast to the canonical type; timestamps without a time zone "
        "are read as UTC; extra columns are kept. Real platform logs mapped onto these tables run through every stage.",
        "",
        f"- Event types (DIGMN Table 1): {', '.join(EVENT_TYPES)}",
        f"- Update types produced by the simulator: {', '.join(UPDATE_TYPES)} (others are accepted)",
        f"- Delivery channels: {', '.join(CHANNELS)}; delivery contents: {', '.join(CONTENTS)}",
        "- A *skipped* impression has `dwell_s < T_skip` and no click or viral action "
        "(one definition: `dwellrank_logs.protocol.not_skipped`).",
        "",
    ]
    for t in TABLES.values():
        out += [
            f"## `{t.name}`",
            "",
            t.doc[:1].upper() + t.doc[1:] + ".",
            "",
            "| column | kind | type | nulls | meaning |",
            "|---|---|---|---|---|",
        ]
        for c in t.columns:
            dom = f" One of: {', '.join(c.domain)}." if c.domain else ""
            out.append(f"| `{c.name}` | {c.kind} | `{c.dtype}` | {'yes' if c.nullable else 'no'} | {c.doc}.{dom} |")
        out.append("")
    out += [
        "## Candidate table (the ranker protocol)",
        "",
        "What a ranker receives (`dwellrank_logs.protocol.Ranker.rank`) and what `dwellrank rank --candidates` reads: "
        "one row per (feed request, candidate update). Checked by `dwellrank_logs.protocol.validate_candidates`: integer "
        "columns become `Int64`, string columns `String`, timestamps UTC microseconds (naive ones are read as UTC); no "
        "nulls; extra columns pass through. A ranker that reads only some columns lists them in `candidate_columns`.",
        "",
        "| column | kind | nulls | meaning |",
        "|---|---|---|---|",
    ]
    out += [f"| `{c}` | {candidate_kind(c)} | no | {CANDIDATE_DOCS[c]}. |" for c in CANDIDATE_COLUMNS]
    out += [
        "",
        "## Simulator extras",
        "",
        "A simulated logs directory also holds `truth.json` (true T_skip, intent profiles, config, seed), "
        "`truth/*.parquet` (per-member daily intent mixtures, drift phases, per-session intents, per-impression "
        "engagement probability, update quality) and `summary.json`. Estimators never read these; tests compare "
        "estimates with them.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
