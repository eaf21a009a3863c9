"""The speed goals of one `make bench` run (issue 18), each as a ratio of what the product
does to what the hardware does in the same run: through nginx and the gateway against the raw
limit (embed the query and one Chroma query, in-process), the whole stack's CPU per ingested
chunk against the raw embedder's, and what a query replica holds per chunk."""

from __future__ import annotations

from typing import Any

EDGE = "through nginx + gateway"
RAW = "raw: embed query + Chroma query, in-process"
LEVEL = 16


def rows(raw: dict[str, Any], run: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(goal, target, measured, met) for each goal the run measured."""
    out: list[tuple[str, str, str, bool | None]] = []
    load = run["load"]["results"]
    for mode, floor in (("dense", 0.8), ("hybrid", 0.6)):
        edge, limit = load[f"search {mode}, {EDGE}"][LEVEL], load[RAW][LEVEL]
        ratio = edge["rps"] / limit["rps"]
        out.append(
            (
                f"search {mode} through nginx + gateway, {LEVEL} in flight, against the raw limit",
                f">= {floor:.1f}x",
                f"{ratio:.2f}x ({edge['rps']:.0f}/s against {limit['rps']:.0f}/s)",
                ratio >= floor,
            )
        )
    latency, raw_one = run["query"]["latency"], run["query"]["raw"]
    direct, edge_one = latency["search dense"], latency[f"search dense, {EDGE}"]
    above = direct["p50"] - raw_one["p50"]
    out.append(
        (
            "search dense one at a time (direct to a replica), p50 above the raw limit's",
            "<= 3 ms",
            f"{above:+.1f} ms ({direct['p50']:.1f} against {raw_one['p50']:.1f} ms)",
            above <= 3.0,
        )
    )
    added = edge_one["p50"] - direct["p50"]
    out.append(
        (
            "what nginx + gateway add to a dense search one at a time, p50",
            "<= 1 ms",
            f"{added:+.1f} ms ({edge_one['p50']:.1f} against {direct['p50']:.1f} ms)",
            added <= 1.0,
        )
    )
    stack_cpu = sum(run["cpu_seconds"].values()) / run["chunks"]
    raw_cpu = raw["cpu_seconds"] / raw["chunks"]
    out.append(
        (
            "ingest: CPU-seconds per chunk of every process of the stack, against the raw "
            "embedder's",
            "<= 1.15x",
            f"{stack_cpu / raw_cpu:.2f}x ({stack_cpu * 1000:.1f} against {raw_cpu * 1000:.1f} "
            "CPU-ms per chunk)",
            stack_cpu / raw_cpu <= 1.15,
        )
    )
    out.append(
        (
            "ingest: wall-clock chunks/s against the raw embedder's (reported)",
            "-",
            f"{run['chunks_per_s'] / raw['chunks_per_s']:.0%} ({run['chunks_per_s']:.1f} against "
            f"{raw['chunks_per_s']:.1f} chunks/s)",
            None,
        )
    )
    grown = [q for q in run["scale"] if "query_rss_mb" in q]
    if len(grown) >= 2:
        first, last = grown[0], grown[-1]
        per = (last["query_rss_mb"] - first["query_rss_mb"]) / (last["chunks"] - first["chunks"])
        out.append(
            (
                "query replica memory per indexed chunk (reported)",
                "-",
                f"{per * 1024:.2f} KiB ({first['chunks']:,} to {last['chunks']:,} chunks)",
                None,
            )
        )
    fresh = run["scale"][-1].get("fresh_replica") if run["scale"] else None
    if fresh:
        out.append(
            (
                "query replica start-up beside the largest collection (reported)",
                "-",
                f"{fresh['ready_seconds']:.1f} s to ready, {fresh['rss_mb']:,.0f} MiB "
                f"({run['scale'][-1]['chunks']:,} chunks)",
                None,
            )
        )
    return out


CARRIED = ("| query replica memory per indexed chunk", "| query replica start-up")


def carried_rows(doc: str) -> list[str]:
    """The scale rows of the goals table already in ``doc``, marked as coming from the run that
    wrote its Scale section (`make bench BENCH_ARGS=--no-scale` does not grow the collection)."""
    begin, end = doc.find("<!-- goals:begin -->"), doc.find("<!-- goals:end -->")
    rows = []
    for line in doc[begin:end].splitlines() if 0 <= begin < end else []:
        if line.startswith(CARRIED):
            cells = line.split(" | ")
            if "Scale section" not in cells[0]:
                cells[0] += ", from the Scale section's run"
            rows.append(" | ".join(cells))
    return rows


def section(
    raw: dict[str, Any], run: dict[str, Any], header: str, carried: list[str] | None = None
) -> str:
    lines = [
        "<!-- goals:begin -->",
        "## Speed goals",
        "",
        header,
        "",
        "Each goal is a ratio to what the hardware does in the same run, so a faster or slower "
        "machine moves both sides. The sections below hold the figures they come from.",
        "",
        "| goal | target | measured | met |",
        "|---|---|---|---|",
    ]
    for goal, target, measured, met in rows(raw, run):
        verdict = "-" if met is None else "yes" if met else "**no**"
        lines.append(f"| {goal} | {target} | {measured} | {verdict} |")
    lines.extend(carried or [])
    lines.append("<!-- goals:end -->")
    return "\n".join(lines)
