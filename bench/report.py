"""bench/RESULTS.md from bench/results.json: `python -m bench.report` rewrites it without re-running anything."""

import json
from typing import Any

from bench.common import BENCH


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 10 else f"{x:.0f} ms" if x >= 100 else f"{x:.1f} ms"


def machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    return [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}; memory {m['memory']}; Linux {m['kernel']}",
        f"- Python {m['python']}, PostgreSQL {m['postgresql']} (on the same machine, loopback, default settings)",
        f"- run started {r['started']}, took {r['total_seconds']:.0f} s"
        + (f"; options: load test {r['options']['load_seconds']:.0f} s with {r['options']['load_clients']} clients"),
        "- The machine is shared and noisy: every figure below is a ratio "
        "of variants measured in the same run, interleaved request by request where they run one at a time.",
        "",
    ]


def headline(r: dict[str, Any]) -> list[str]:
    rows = ["## Headline", "", "| # | what | measured | target | |", "| --- | --- | --- | --- | --- |"]
    if "api" in r:
        p, g, t = r["api"]["promote"], r["api"]["page"], r["api"]["throughput"]
        rows.append(
            f"| 1 | promoteDeployment over HTTP vs the asyncpg transaction (median) | "
            f"{ms(p['latency_ms']['http']['median'])} vs {ms(p['latency_ms']['floor']['median'])} = "
            f"**{p['ratio_http_to_floor']:.1f}×** | ≤ 3× | {met(p['ratio_http_to_floor'] <= 3)} |"
        )
        rows.append(
            f"| 2 | deployments(first: 100) page over HTTP vs one SQL statement (median) | "
            f"{ms(g['latency_ms']['graphql_http']['median'])} vs {ms(g['latency_ms']['sql']['median'])} = "
            f"**{g['ratio_graphql_to_sql']:.1f}×** | ≤ 2× | {met(g['ratio_graphql_to_sql'] <= 2)} |"
        )
        rows.append(
            "| 2 | SQL statements for that page at N = 1, 10, 100 | constant (1; 4 on the execution path), "
            "`tests/test_query_count.py` | constant | **met** |"
        )
        rows.append(
            f"| 3 | mixed-read throughput vs bare Starlette + asyncpg | {t['switchover_rps']:.0f} vs "
            f"{t['floor_rps']:.0f} req/s = **{t['ratio']:.2f}×** | ≥ 0.5× | {met(t['ratio'] >= 0.5)} |"
        )
    if "scheduler" in r:
        s = r["scheduler"]
        size, due = min(s["due"].items(), key=lambda kv: int(kv[0]))
        rows.append(
            f"| 4 | one run_once pass, {due['due']:,} due of {int(size):,} | **{due['seconds']:.2f} s** "
            f"({due['ms_per_promotion']:.1f} ms per promotion) | < 2 s for 1,000 | "
            f"{met(due['seconds'] * 1000 / due['due'] < 2)} |"
        )
        sizes = sorted(int(k) for k in s["idle"])
        lo, hi = s["idle"][str(sizes[0])]["median"], s["idle"][str(sizes[-1])]["median"]
        rows.append(
            f"| 4 | pass with nothing due, {sizes[0]:,} vs {sizes[-1]:,} deployments (median) | "
            f"{ms(lo)} vs {ms(hi)} = **{hi / lo:.2f}×** | same | {met(hi / lo < 1.5)} |"
        )
    if "reaction" in r:
        x = r["reaction"]
        p99 = x["reaction_commit_s"]["p99"]
        rows.append(
            f"| 5 | auto-promotion committed after its due time, p99 of {x['reaction_commit_s']['n']} | "
            f"**{ms(p99)}** (median {ms(x['reaction_commit_s']['median'])}) | < 1 s | {met(p99 < 1000)} |"
        )
        rows.append(
            f"| 5 | scheduler CPU while idle | **{x['idle']['cpu_percent_of_one_core']:.2f} %** of a core "
            f"({x['idle']['transactions_per_second']:.1f} transactions/s) | event-driven | see §5 |"
        )
    if r.get("memory_mib"):
        peaks: dict[str, float] = {}
        for phase in r["memory_mib"].values():
            for name, mib in phase.items():
                peaks[name] = max(peaks.get(name, 0), mib)
        text = ", ".join(f"{n} {v:.0f} MiB" for n, v in peaks.items() if n in ("server", "scheduler"))
        ok = all(v < 150 for n, v in peaks.items() if n in ("server", "scheduler"))
        rows.append(f"| 6 | peak RSS | {text} | < 150 MB each | {met(ok)} |")
    if "load" in r:
        L = r["load"]
        ok = L["five_xx"] == 0 and L["lost_or_doubled"] == 0 and L["invariants"] == "hold" and not L["unexpected_codes"]
        rows.append(
            f"| 7 | load test: {L['clients']} clients × {L['duration']:.0f} s, {L['requests']:,} requests | "
            f"{L['five_xx']} 5xx, {L['lost_or_doubled']} lost/doubled updates, invariants {L['invariants']} | "
            f"0, 0, hold | {met(ok)} |"
        )
    return [*rows, ""]


def latency_table(title: str, latencies: dict[str, dict[str, float]], names: dict[str, str]) -> list[str]:
    rows = [f"| {title} | n | median | p90 | p99 | min | max |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in names.items():
        x = latencies[key]
        rows.append(
            f"| {label} | {x['n']} | {ms(x['median'])} | {ms(x['p90'])} | {ms(x['p99'])} | {ms(x['min'])} | "
            f"{ms(x['max'])} |"
        )
    return rows


def api_sections(r: dict[str, Any]) -> list[str]:
    a = r["api"]
    p, g, t = a["promote"], a["page"], a["throughput"]
    out = [
        "## §1 promoteDeployment",
        "",
        f"{a['setup']['deployments']} deployments were brought to DEPLOYING_AWAITING_PROMOTION (revision 2 over a "
        f"serving revision 1, 2 replicas) with the store functions, `run_once` and `report_route_health` "
        f"({a['setup']['seconds']:.0f} s), so that every timed call promotes a deployment of its own. Three variants, "
        "interleaved call by call: the mutation over HTTP to `switchover serve --insecure` (keep-alive connection), "
        "`store.lifecycle.promote` called in the bench process (the store without HTTP and GraphQL), and the floor: "
        "the same transaction by hand on one asyncpg connection (lock the deployment FOR UPDATE, lock its routes, "
        "green ACTIVE, blue INACTIVE, the deployment READY, a history row).",
        "",
        *latency_table(
            "variant",
            p["latency_ms"],
            {
                "http": "promoteDeployment over HTTP",
                "store": "store.lifecycle.promote in-process",
                "floor": "asyncpg floor",
            },
        ),
        "",
        f"Ratios of medians: HTTP / floor **{p['ratio_http_to_floor']:.2f}×**; store / floor "
        f"{p['ratio_store_to_floor']:.2f}×. The store sends {p['store_statements']} statements inside its "
        f"transaction where the floor sends {p['floor_statements']}. The bench's server runs `--insecure` (every "
        "caller is an admin), so the resolver reads nothing before the transaction; with a token that is not an "
        "admin's it first loads the deployment to check its project.",
        "",
        "![promotion latency](latency_promote.png)",
        "",
        "## §2 deployments(first: 100) page",
        "",
        "`deployments(first: 100) { edges { node { id name currentRevision { number image } routes { id status "
        "trafficStatus } history(first: 5) { edges { node { phase message } } } } } }` on the same database (each "
        f"deployment: 2 revisions, 4 routes, ~12 history rows; answer {g['response_bytes'] / 1024:.0f} KiB). "
        "The floor is one hand-written SQL statement in which PostgreSQL builds the same JSON; the bench asserts that "
        "it equals the GraphQL `data` before timing. Interleaved:",
        "",
        *latency_table(
            "variant",
            g["latency_ms"],
            {
                "graphql_http": "GraphQL over HTTP",
                "sql": "one SQL statement (asyncpg, JSON parsed)",
                "floor_http": "that statement behind bare Starlette (HTTP)",
            },
        ),
        "",
        f"Ratio of medians GraphQL / SQL: **{g['ratio_graphql_to_sql']:.1f}×** (vs the bare HTTP endpoint: "
        f"{g['ratio_graphql_to_floor_http']:.1f}×). The page is answered by resolvers/planner.py: every field it "
        "selects is a column, a relation or a page, so store/json_reads.py writes one statement in which PostgreSQL "
        "builds the response's `data`, passed to the response unparsed. `tests/test_query_count.py` counts 1 "
        "statement at N = 1, 10 and 100, and 4 (page, current revisions, routes, history) when a computed field "
        "sends the same page down the execution path; `tests/test_planner.py` checks both paths answer the same.",
        "",
        "![page latency](latency_page.png)",
        "",
        "## §3 Mixed read throughput",
        "",
        f"Closed loop, {t['concurrency']} keep-alive connections from a load generator in its own process "
        "(bench/loadgen.py, pure asyncio), "
        f"{t['duration']:.0f} s measured after 2 s warm-up, alternating the product and the floor for "
        f"{len(t['runs']) // 2} round(s). Mix: "
        + ", ".join(f"{k} {v} %" for k, v in t["mix"].items())
        + " — `deployments(first: 20)` with current revision and routes, `deployment(id)` with revision, routes and "
        "history(first: 5), `route(id)` with its revision and deployment. The floor is bare Starlette + asyncpg "
        "(bench/floor_app.py) answering the same data (checked equal) with one SQL statement per request, under the "
        "same uvicorn settings. Both servers are one process on 2 cores shared with PostgreSQL and the load "
        "generator.",
        "",
        "| server | round | req/s | median | p99 | server CPU s | PostgreSQL CPU s | load generator CPU s | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in t["runs"]:
        lat = run["all_latency_ms"]
        out.append(
            f"| {run['name']} | {run['round']} | {run['rps']:.0f} | {ms(lat['median'])} | {ms(lat['p99'])} | "
            f"{run['server_cpu_seconds']:.1f} | {run['postgres_cpu_seconds']:.1f} | {run['loadgen_cpu_seconds']:.1f} | "
            f"{sum(run['failed'].values())} |"
        )
    out += [
        "",
        f"Ratio (median over rounds of product / floor): **{t['ratio']:.3f}×**. Per kind (median latency, ms):",
        "",
        "| kind | " + " | ".join(f"{r['name']} r{r['round']}" for r in t["runs"]) + " |",
        "| --- |" + " --- |" * len(t["runs"]),
    ]
    for kind in t["mix"]:
        out.append(f"| {kind} | " + " | ".join(ms(r["latency_ms"][kind]["median"]) for r in t["runs"]) + " |")
    out += ["", "![throughput](throughput.png)", ""]
    return out


def scheduler_sections(r: dict[str, Any]) -> list[str]:
    s = r["scheduler"]
    out = [
        "## §4 Scheduler pass",
        "",
        "Deployments bulk-inserted with SQL (bench/fleet.py; rows that satisfy every CHECK and foreign key, with "
        "history from `create` to the current state): READY ones serving revision 1 on 2 routes, and due ones — "
        "blue-green, autoPromote, promoteDelaySeconds 0, revision 2 on 2 HEALTHY green routes, "
        "DEPLOYING_AWAITING_PROMOTION, next_check_at 1 s ago. `scheduler.runner.run_once` in the bench process on "
        "the scheduler's pool (4 connections). The bench checks that every due deployment was promoted, and runs "
        "tests/invariants.py on the final database "
        f"({s['total_deployments']:,} deployments: {'hold' if s.get('invariants', {}).get('ok') else 'NOT RUN'}).",
        "",
        "| pass | seconds | per promotion |",
        "| --- | --- | --- |",
    ]
    for size, d in sorted(s["due"].items(), key=lambda kv: int(kv[0])):
        out.append(
            f"| run_once, {d['due']:,} due among {int(size):,} | {d['seconds']:.2f} | {ms(d['ms_per_promotion'])} |"
        )
    for name, d in s.get("due_experiments", {}).items():
        out.append(f"| variant (not shipped): {name} | {d['seconds']:.2f} | {ms(d['seconds'] / d['steps'] * 1000)} |")
    out += [
        "",
        "A pass with nothing due (what every wake-up costs), `run_once` timed in-process, "
        f"{s['idle'][next(iter(s['idle']))]['n']} passes per size, and the claim query's plan "
        "(`EXPLAIN ANALYZE`):",
        "",
        "| deployments | median | p90 | p99 | plan | execution in PostgreSQL | after VACUUM |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, x in sorted(s["idle"].items(), key=lambda kv: int(kv[0])):
        vacuumed = x.get("plan_execution_ms_after_vacuum")
        out.append(
            f"| {int(size):,} | {ms(x['median'])} | {ms(x['p90'])} | {ms(x['p99'])} | {x['plan_scan']} | "
            f"{x['plan_execution_ms']:.3f} ms | " + (f"{vacuumed:.3f} ms |" if vacuumed is not None else "|")
        )
    if "idle_without_index" in s:
        x = s["idle_without_index"]
        out.append(
            f"| {s['total_deployments']:,}, control: index `deployments_due` dropped | {ms(x['median'])} | "
            f"{ms(x['p90'])} | {ms(x['p99'])} | {x['plan_scan']} | {x['plan_execution_ms']:.3f} ms | |"
        )
        y = s.get("idle_without_index_smallest")
        if y:
            out += [
                "",
                f"The control ran interleaved with the {int(min(s['idle'], key=int)):,}-deployment database "
                f"({ms(y['median'])} there in the same window): without the index a pass costs "
                f"×{x['median'] / y['median']:.1f} and grows with the table; with it, the pass costs the same at every "
                "size.",
            ]
    out += [
        "",
        "(At 100 deployments PostgreSQL prefers a sequential scan of the tiny table; from 1,000 on it uses the "
        "partial index on next_check_at, and the cost stays flat. The database that has just promoted 1,000 "
        "deployments carries their old next_check_at entries as dead index entries until (auto)vacuum, which the "
        "claim steps over: see the execution time before and after VACUUM.)",
        "",
        *statement_overhead_lines(s),
        "![scheduler cost](scheduler_cost.png)",
        "",
    ]
    return out


def statement_overhead_lines(s: dict[str, Any]) -> list[str]:
    o = s.get("statement_overhead")
    if not o:
        return []
    return [
        f"Per statement, `databases` costs {ms(o['databases']['median'])} where asyncpg alone costs "
        f"{ms(o['asyncpg']['median'])} for the same primary-key lookup (median of {o['databases']['n']}, "
        f"interleaved): **{o['overhead_ms'] * 1000:.0f} µs of overhead per statement** (store/database.py `Store` "
        "sends the named queries straight to asyncpg; what is left is `databases`' per-task connection and lock).",
        "",
    ]


def reaction_sections(r: dict[str, Any]) -> list[str]:
    x = r["reaction"]
    c, s, i, w = x["reaction_commit_s"], x["reaction_txn_start_s"], x["idle"], x["wake_on_notify_ms"]
    return [
        "## §5 Reaction of a real scheduler process",
        "",
        f"{c['n']} deployments made with the store functions wait in DEPLOYING_AWAITING_PROMOTION with autoPromote "
        "and promoteDelaySeconds 12–21 (scaleDownDelaySeconds 0); then `switchover scheduler` starts "
        "(SWITCHOVER_RUNTIME=external, DATABASE_URL set, default poll interval 0.5 s). The bench LISTENs on the "
        "scheduler's channel: the promotion's NOTIFY arrives at its commit. Due time = phaseStartedAt + "
        "promoteDelaySeconds (database clock, same machine).",
        "",
        "| measure | median | p90 | p99 | max |",
        "| --- | --- | --- | --- | --- |",
        f"| promotion committed after its due time | {ms(c['median'])} | {ms(c['p90'])} | {ms(c['p99'])} | "
        f"{ms(c['max'])} |",
        f"| promoting transaction started after its due time | {ms(s['median'])} | {ms(s['p90'])} | {ms(s['p99'])} | "
        f"{ms(s['max'])} |",
        f"| deployRevision → scheduler has started the green routes (NOTIFY wake-up, {w['n']} samples) | "
        f"{ms(w['median'])} | {ms(w['p90'])} | {ms(w['p99'])} | {ms(w['max'])} |",
        "",
        f"Idle (nothing due, {i['seconds']:.0f} s): the scheduler used **{i['cpu_seconds'] * 1000:.0f} ms of CPU "
        f"({i['cpu_percent_of_one_core']:.2f} % of one core)** and ran {i['transactions_per_second']:.1f} "
        "transactions/s — the claim every poll interval (0.5 s) plus the health checker's query every second. It "
        "reacts to API changes through LISTEN/NOTIFY within milliseconds (the wake-up row above), far below the poll "
        "interval; a due time with no event behind it (auto-promotion) waits for the next poll, hence the reaction "
        "of up to ~0.5 s.",
        "",
        *idle_profile_lines(x),
        "![reaction](reaction.png)",
        "",
    ]


def idle_profile_lines(x: dict[str, Any]) -> list[str]:
    if "idle_profile" not in x:
        return []
    p = x["idle_profile"]
    shares = dict(p["inclusive"])
    return [
        f"Where the idle CPU goes (py-spy, [profiles/scheduler-idle.txt](profiles/scheduler-idle.txt)): "
        f"{shares.get('httpx.AsyncClient() (SSL context)', 0):.0f} % of the idle scheduler's samples are in "
        "`httpx.AsyncClient()`: the health checker (scheduler/probes.py, `HealthChecker.run_once`) opens a new "
        "client — a new SSL context loading the CA bundle — every second, also when no route has an endpoint to "
        f"probe. Measured alone: {ms(x['httpx_client_ms']['median'])} per client.",
        "",
    ]


def memory_sections(r: dict[str, Any]) -> list[str]:
    out = [
        "## §6 Memory",
        "",
        "Peak resident set size (psutil, sampled every 0.2 s) of each process the bench started, per phase:",
        "",
        "| phase | " + " | ".join(sorted({n for p in r["memory_mib"].values() for n in p})) + " |",
    ]
    names = sorted({n for p in r["memory_mib"].values() for n in p})
    out.append("| --- |" + " --- |" * len(names))
    for phase, found in r["memory_mib"].items():
        out.append(f"| {phase} | " + " | ".join(f"{found[n]:.0f} MiB" if n in found else "" for n in names) + " |")
    return [*out, ""]


def load_sections(r: dict[str, Any]) -> list[str]:
    L = r["load"]
    c = L["checks"]
    out = [
        "## §7 Load test",
        "",
        f"{L['clients']} concurrent clients (bench/loadtest_client.py, own process) for {L['duration']:.0f} s against "
        f"`switchover serve` + `switchover scheduler` on loopback, over {L['deployments']} deployments (blue-green "
        "manual, blue-green auto-promote after 1 s, rolling). Half the requests are reads; the rest act on a random "
        "deployment as an operator or orchestrator would in its state: add + deploy a revision, report green routes "
        "HEALTHY (5 % FAILED_TO_START), promote with expectedRevisionId (75 %) or roll back, report TERMINATING "
        "routes TERMINATED. Clients race each other and the scheduler on the same deployments.",
        "",
        f"- {L['requests']:,} requests ({L['requests'] / L['seconds']:.0f}/s); HTTP status: "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(L["status"].items()))
        + f"; **5xx: {L['five_xx']}**",
        "- refusals (expected under races): "
        + ", ".join(f"{k} {v}" for k, v in sorted(L["codes"].items()))
        + f"; unexpected codes: {L['unexpected_codes'] or 'none'}",
        f"- server CPU {L['cpu_seconds']['server']:.0f} s, scheduler CPU {L['cpu_seconds']['scheduler']:.1f} s",
        f"- **lost or doubled updates: {L['lost_or_doubled']}**; invariants (tests/invariants.py): "
        f"**{L['invariants']}**; final states: " + ", ".join(f"{k} {v}" for k, v in sorted(L["final_states"].items())),
        "",
        "| mutation | acknowledged | refused | in history | missing from history | in history, not acknowledged |"
        " acknowledged twice |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for op in ("addRevision", "deployRevision", "promote", "rollback"):
        x = c[op]
        out.append(
            f"| {op} | {x['succeeded']} | {x['refused']} | {x['in_history']} | {x['missing_from_history']} | "
            f"{x['in_history_but_not_acknowledged']} | {x['acknowledged_twice']} |"
        )
    h = c["reportRouteHealth"]
    out += [
        "",
        f"Promotions by the scheduler meanwhile: {c['promote']['by_scheduler']}; revisions promoted twice: "
        f"{c['promote']['revisions_promoted_twice']}. reportRouteHealth: {h['succeeded']} acknowledged, "
        f"{h['refused']} refused, {h['history_rows']} status changes in history (≤ acknowledged), "
        f"{h['terminated_reports_lost']} acknowledged TERMINATED reports lost. Revision counters out of step: "
        f"{c['revision_counter_mismatches']}; deployments whose revisions ≠ 1 + acknowledged addRevision: "
        f"{c['revisions_not_matching_acknowledged_adds']}; READY deployments with more ACTIVE routes than replicas: "
        f"{c['ready_with_wrong_active_route_count']}.",
        "",
        "| request | n | median | p99 |",
        "| --- | --- | --- | --- |",
    ]
    for kind, x in sorted(L["latency_ms"].items()):
        out.append(f"| {kind} | {x['n']:,} | {ms(x['median'])} | {ms(x['p99'])} |")
    return [*out, ""]


def profile_sections(r: dict[str, Any]) -> list[str]:
    out = ["## Profiles (py-spy)", ""]
    found = []
    if "api" in r:
        found += [("reads", r["api"]["profiles"]["reads"], "profiles/server-reads.txt"),
                  ("promote", r["api"]["profiles"]["promote"], "profiles/server-promote.txt")]  # fmt: skip
    if "scheduler" in r:
        found.append(("scheduler pass", r["scheduler"]["profile"], "profiles/scheduler-pass.txt"))
    for _name, summary, path in found:
        top = ", ".join(f"{label} {share:.0f} %" for label, share in summary["components"][:6])
        out.append(f"- **{summary['title']}** ({summary['samples']} samples, [{path}]({path})): {top}")
    out.append("")
    return out


def opportunities(r: dict[str, Any]) -> list[str]:
    """What the profiles say is left, with this run's figures."""
    out = ["## What is left", ""]
    if "api" in r:
        p = r["api"]["promote"]
        out.append(
            f"- Promotion: the store's transaction is {p['ratio_store_to_floor']:.2f}× the floor in-process, with "
            f"{p['store_statements']} statements to the floor's {p['floor_statements']}; the rest of the HTTP figure "
            "is uvicorn, Ariadne's request handling and the mutation payload's execution (server-promote profile)."
        )
        out.append(
            "- Reads: queries the planner cannot answer exactly (computed fields such as `waitingFor`, `strategy`, "
            "`nextActionAt`, and `_entities`) take the execution path: batched loaders, a few statements and the "
            "graphql-core executor, several times slower per field (§2 before the planner: 8.9× the floor)."
        )
    if "scheduler" in r:
        s = r["scheduler"]
        _, due = max(s["due"].items(), key=lambda kv: int(kv[0]))
        out.append(
            f"- Scheduler: {due['ms_per_promotion']:.1f} ms per auto-promotion, 6 round trips each (BEGIN, claim, "
            "routes, route changes, the move with its history row, COMMIT). The pass is CPU-bound: the scheduler's "
            "Python (mostly socket system calls, see the profile) and PostgreSQL share the 2 cores; commits that "
            "skip the WAL flush (the synchronous_commit variant) are no faster."
        )
    return [*out, ""]


def write(results: dict[str, Any]) -> None:
    lines = [
        "# Switchover benchmark results",
        "",
        "Generated by `bench/run.sh` (`python -m bench`); raw numbers in [results.json](results.json). "
        "Do not edit by hand: `python -m bench.report` rewrites this file from results.json.",
        "",
        *machine(results),
        *headline(results),
    ]
    if results.get("errors"):
        lines += ["## Sections that failed", ""]
        lines += [f"- {k}: `{v.strip().splitlines()[-1]}`" for k, v in results["errors"].items()]
        lines.append("")
    if "api" in results:
        lines += api_sections(results)
    if "scheduler" in results:
        lines += scheduler_sections(results)
    if "reaction" in results:
        lines += reaction_sections(results)
    if results.get("memory_mib"):
        lines += memory_sections(results)
    if "load" in results:
        lines += load_sections(results)
    lines += profile_sections(results)
    lines += opportunities(results)
    (BENCH / "RESULTS.md").write_text("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    from bench import plots

    saved = json.loads((BENCH / "results.json").read_text())
    plots.draw(saved)
    write(saved)
