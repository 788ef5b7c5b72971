"""The PNG plots referenced from bench/RESULTS.md."""

import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from bench.common import BENCH


def _log_ms_axis(ax: Any) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _cdf(ax: Any, values: list[float], label: str) -> None:
    ordered = sorted(values)
    n = len(ordered)
    ax.step(ordered, [(i + 1) / n for i in range(n)], where="post", label=f"{label} (median {ordered[n // 2]:.1f} ms)")


def promote(api: dict[str, Any]) -> str:
    raw = api["promote"]["raw_ms"]
    fig, ax = plt.subplots(figsize=(7, 4))
    names = {"http": "promoteDeployment over HTTP", "store": "store.lifecycle.promote in-process",
             "floor": "hand-written asyncpg transaction (floor)"}  # fmt: skip
    for key, label in names.items():
        _cdf(ax, raw[key], label)
    _log_ms_axis(ax)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of promotions")
    ax.set_title("§1 Promotion latency, one at a time (interleaved)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    name = "latency_promote.png"
    fig.savefig(BENCH / name, dpi=110)
    plt.close(fig)
    return name


def page(api: dict[str, Any]) -> str:
    raw = api["page"]["raw_ms"]
    fig, ax = plt.subplots(figsize=(7, 4))
    names = {"graphql_http": "GraphQL over HTTP", "floor_http": "same SQL, bare Starlette over HTTP",
             "sql": "one SQL statement (asyncpg)"}  # fmt: skip
    for key, label in names.items():
        _cdf(ax, raw[key], label)
    _log_ms_axis(ax)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("§2 deployments(first: 100) with revision, routes, history(first: 5)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    name = "latency_page.png"
    fig.savefig(BENCH / name, dpi=110)
    plt.close(fig)
    return name


def throughput(api: dict[str, Any]) -> str:
    runs = api["throughput"]["runs"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [f"{r['name']}\nround {r['round']}" for r in runs]
    colors = ["tab:blue" if r["name"] == "switchover" else "tab:gray" for r in runs]
    bars = ax.bar(labels, [r["rps"] for r in runs], color=colors)
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylabel("requests / s")
    ax.set_title(f"§3 Mixed reads, {api['throughput']['concurrency']} connections, 2 cores")
    fig.tight_layout()
    name = "throughput.png"
    fig.savefig(BENCH / name, dpi=110)
    plt.close(fig)
    return name


def scheduler(s: dict[str, Any]) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = sorted(int(k) for k in s["idle"])
    medians = [s["idle"][str(n)]["median"] for n in sizes]
    p90 = [s["idle"][str(n)]["p90"] for n in sizes]
    left.plot(sizes, medians, "o-", label="run_once, nothing due: median")
    left.plot(sizes, p90, "x--", alpha=0.6, label="p90")
    if "idle_without_index" in s:
        n = s["total_deployments"]
        left.plot([n], [s["idle_without_index"]["median"]], "rs", label="control: index on next_check_at dropped")
    left.set_xscale("log")
    left.set_ylim(bottom=0)
    left.set_xlabel("deployments (log scale)")
    left.set_ylabel("ms per pass")
    left.set_title("§4 Cost of a pass with nothing due")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    bars = {
        f"run_once\n{int(k):,} deployments": v["seconds"]
        for k, v in sorted(s["due"].items(), key=lambda kv: int(kv[0]))
    }
    for name, found in s.get("due_experiments", {}).items():
        bars[textwrap.fill(name, 18)] = found["seconds"]
    drawn = right.bar(
        list(bars),
        list(bars.values()),
        color=["tab:blue"] * len(s["due"]) + ["tab:green"] * (len(bars) - len(s["due"])),
    )
    right.bar_label(drawn, fmt="%.2f s")
    right.axhline(2.0, color="red", linestyle="--", label="target 2 s")
    due = next(iter(s["due"].values()))["due"]
    right.set_ylabel(f"seconds for one pass over {due:,} due")
    right.set_title(f"§4 {due:,} due auto-promotions (green: variants, not shipped)", fontsize=10)
    right.tick_params(axis="x", labelsize=7)
    right.legend(fontsize=8)
    fig.tight_layout()
    name = "scheduler_cost.png"
    fig.savefig(BENCH / name, dpi=110)
    plt.close(fig)
    return name


def reaction(r: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.hist(r["raw_commit_ms"], bins=30, color="tab:blue")
    ax.axvline(1000, color="red", linestyle="--", label="target: within 1 s")
    ax.set_xlabel("promotion committed after its due time (ms)")
    ax.set_ylabel("deployments")
    ax.set_title(f"§5 Auto-promotion reaction of a scheduler process ({len(r['raw_commit_ms'])} deployments)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "reaction.png"
    fig.savefig(BENCH / name, dpi=110)
    plt.close(fig)
    return name


def draw(results: dict[str, Any]) -> dict[str, str]:
    drawn: dict[str, str] = {}
    if "api" in results:
        drawn["promote"] = promote(results["api"])
        drawn["page"] = page(results["api"])
        drawn["throughput"] = throughput(results["api"])
    if "scheduler" in results:
        drawn["scheduler"] = scheduler(results["scheduler"])
    if "reaction" in results:
        drawn["reaction"] = reaction(results["reaction"])
    results["plots"] = drawn
    return drawn
