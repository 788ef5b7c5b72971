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
        *(
            [f"- sections measured in different runs (`--only`): {runs}"]
            if len(set((measured := r.get("measured", {})).values())) > 1
            and (runs := ", ".join(f"{k} {v}" for k, v in measured.items()))
            else []
        ),
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
            f"({x['idle']['transactions_per_second']:.1f} transactions/s) | event-driven | — |"
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
    if "analysis" in r:
        a, passes = r["analysis"], r["analysis"]["passes"]
        x, idle, due, proxy = a["reaction"]["revert_commit_s"], passes["idle"], passes["due"], a["proxy"]
        rows.append(
            f"| 8 | failed post-promotion check: traffic reverted after the check was due, p99 of {x['n']} | "
            f"**{ms(x['p99'])}** (median {ms(x['median'])}) | < 1 s | {met(x['p99'] < 1000)} |"
        )
        indexes = ", ".join(passes["claim_plan"]["indexes"])
        rows.append(
            f"| 8 | pass with nothing due, 1,000 deployments with a RUNNING WEB-check analysis not yet due vs none "
            f"(median) | {ms(idle['runs']['median'])} vs {ms(idle['none']['median'])} = "
            f"**{passes['idle_ratio']:.2f}×** (claim uses {indexes}) | ≤ 2× | {met(passes['idle_ratio'] <= 2)} |"
        )
        rows.append(
            f"| 8 | {due['checks']} due WEB checks, stub answering in {due['stub_delay_ms']} ms, {due['workers']} "
            f"workers | {min(due['seconds']['workers']):.2f} s = **{due['ratio_to_ideal']:.2f}×** "
            f"{due['checks']}/{due['workers']} × {due['stub_delay_ms']} ms; {due['speedup_over_one_worker']:.1f}× "
            f"faster than one worker | concurrent, ≤ 1.5× | {met(due['ratio_to_ideal'] <= 1.5)} |"
        )
        on, off = proxy["latency_ms"]["counted"], proxy["latency_ms"]["uncounted"]
        rows.append(
            f"| 8 | proxy with per-request counting vs without, median latency of {on['n']:,} interleaved requests "
            f"each | {ms(on['median'])} vs {ms(off['median'])} = **{proxy['ratio_median']:.3f}×** "
            f"(CPU {proxy['cpu_ratio']:.2f}×) | ≤ 1.05× | {met(proxy['ratio_median'] <= 1.05)} |"
        )
    if "shadow" in r:
        rows += shadow_rows(r["shadow"])
    if "tracing" in r:
        rows += tracing_rows(r["tracing"])
    if "proxy" in r:
        rows += proxy_rows(r["proxy"])
    if "haproxy" in r:
        rows += haproxy_rows(r["haproxy"])
    return [*rows, ""]


def proxy_rows(x: dict[str, Any]) -> list[str]:
    """§11: `switchover proxy` (and the machinery candidates) against calling the replica directly."""
    added, first, large = x["added_median_ms"], x["added_first_event_ms"], x["large_answer"]
    product = "switchover proxy"
    others = ", ".join(f"{n} {v:.2f}" for n, v in sorted(added.items()) if n != product)
    others_first = ", ".join(f"{n} {v:.2f}" for n, v in sorted(first.items()) if n != product)
    growth = ", ".join(f"{n} {v['rss_growth_mib']:.1f}" for n, v in sorted(large.items()) if n not in (product, "mib")
                       and n != "direct")  # fmt: skip
    return [
        f"| 11 | proxy, small JSON: added median latency over direct ({x['requests_each']:,} interleaved requests) | "
        f"**{added[product]:.2f} ms** (direct {ms(x['small_json_ms']['direct']['median'])}; candidates: {others}) "
        f"| ≤ 1 ms | {met(added[product] <= 1)} |",
        f"| 11 | proxy, time to the first server-sent event, added over direct (median of "
        f"{x['first_event_samples']}) | **{first[product]:.2f} ms** (candidates: {others_first}) | ≤ 2 ms | "
        f"{met(first[product] <= 2)} |",
        f"| 11 | proxy, RSS growth passing a {large['mib']:.0f} MiB answer | **{large[product]['rss_growth_mib']:.1f} "
        f"MiB** at {large[product]['mib_per_second']:.0f} MiB/s (candidates, MiB: {growth}) | < 20 MiB | "
        f"{met(large[product]['rss_growth_mib'] < 20)} |",
    ]


def haproxy_rows(x: dict[str, Any]) -> list[str]:
    """§12: HAProxy following promotions, and the built-in proxy's throughput against HAProxy's."""
    p, sync = x["promotion_to_weights_ms"], x["converged_full_sync_ms"]
    rows = [
        f"| 12 | HAProxy: promotion committed → runtime API acknowledged the last `set weight`, p99 of {p['n']} "
        f"({x['deployments']} deployments, {x['servers']} servers) | **{ms(p['p99'])}** (median {ms(p['median'])}; "
        f"from the `promote` call: p99 {ms(x['promotion_call_to_weights_ms']['p99'])}) | ≤ {x['target_p99_ms']:.0f} "
        f"ms | {met(p['p99'] <= x['target_p99_ms'])} |",
        f"| 12 | HAProxy: full re-sync of a converged HAProxy (no command sent), median | {ms(sync['median'])} "
        f"(p99 {ms(sync['p99'])}) | — | — |",
    ]
    if "throughput" in x:
        t = x["throughput"]
        rps, cpu = t["rps"], t["plane_cpu_ms_per_request"]
        if "proxy_workers" not in rps:  # a results.json from before the proxy was measured with workers
            rows.append(
                f"| 12 | built-in proxy vs HAProxy, small JSON, same 2 replicas, {t['clients']} closed-loop clients, "
                f"median of {t['rounds_each']} alternating {t['seconds_per_round']:.0f}-s rounds | {rps['proxy']:.0f} "
                f"vs {rps['haproxy']:.0f} req/s = **{t['ratio_proxy_to_haproxy']:.2f}×** (data plane CPU per request "
                f"{cpu['proxy']:.2f} vs {cpu['haproxy']:.2f} ms) | ≥ {t['target_ratio']}× | {met(t['met'])} |"
            )
            return rows
        workers, threads = t["proxy_workers"]["proxy_workers"], t["haproxy_nbthread"]
        replicas = t["replicas_cpu_ms_per_request"]
        how = (
            f"small JSON, same 2 replicas, {t['clients']} closed-loop clients from {t['generators']} generator "
            f"process{'es' if t['generators'] != 1 else ''}, median of {t['rounds_each']} rotating "
            f"{t['seconds_per_round']:.0f}-s rounds, "
            f"{t['cores']} cores"
        )
        rows += [
            f"| 12 | built-in proxy, {workers} workers, vs HAProxy, {threads} threads (like for like: both = the "
            f"cores; {how}) | {rps['proxy_workers']:.0f} vs {rps['haproxy']:.0f} req/s = "
            f"**{t['ratio_proxy_workers_to_haproxy']:.2f}×** (data plane CPU per request "
            f"{cpu['proxy_workers']:.2f} vs {cpu['haproxy']:.2f} ms; the replicas' "
            f"{replicas['proxy_workers']:.2f} vs {replicas['haproxy']:.2f} ms) | "
            f"≥ {t['target_ratio']}× | {met(t['met'])} |",
            f"| 12 | built-in proxy, 1 worker (the default), vs the same HAProxy | {rps['proxy']:.0f} vs "
            f"{rps['haproxy']:.0f} req/s = **{t['ratio_proxy_to_haproxy']:.2f}×** (CPU per request {cpu['proxy']:.2f} "
            f"ms) | — | — |",
            *generator_rows(t),
        ]
    return rows


def generator_rows(t: dict[str, Any]) -> list[str]:
    """Whether the load generator limits HAProxy: every plane measured with one generator process and with more."""
    setups = t.get("generator_setups")
    if not setups:
        return []
    shown = "; ".join(
        f"{n} process{'es' if n != '1' else ''}: HAProxy {x['rps']['haproxy']:.0f}, proxy {x['rps']['proxy']:.0f}, "
        f"proxy with workers {x['rps']['proxy_workers']:.0f} req/s (**{x['ratio_proxy_workers_to_haproxy']:.2f}×** / "
        f"{x['ratio_proxy_to_haproxy']:.2f}×; generators' CPU per request through HAProxy "
        f"{x['generator_cpu_ms_per_request']['haproxy']:.2f} ms)"
        for n, x in setups.items()
    )
    return [
        f"| 12 | the same with each load generator setup (judged: {t['generators']} process"
        f"{'es' if t['generators'] != 1 else ''}, where HAProxy reached more) | {shown} | — | — |"
    ]


def tracing_rows(x: dict[str, Any]) -> list[str]:
    """§10: a request's cost with tracing off (nothing wired in) and on, against a second untraced server."""
    latency, ratio, cpu = x["latency_ms"], x["ratio_to_off"], x["cpu_ratio_to_off"]
    n = f"{x['requests_per_kind']:,} interleaved requests each"
    rows = [
        f"| 10 | tracing off (no OTEL_*: nothing installed) — noise floor: a second such server vs the first, "
        f"median read / write ({n}) | **{ratio['off_again']['read']:.2f}× / {ratio['off_again']['write']:.2f}×** "
        f"(CPU {cpu['off_again']:.2f}×) | no cost: same code path | — |",
    ]
    for variant, what in (
        ("on_unsampled", "tracing on, sampler always_off"),
        ("on", "tracing on, every request exported over OTLP"),
    ):
        rows.append(
            f"| 10 | {what} vs off, median read / write | {ms(latency[variant]['read']['median'])} / "
            f"{ms(latency[variant]['write']['median'])} vs {ms(latency['off']['read']['median'])} / "
            f"{ms(latency['off']['write']['median'])} = **{ratio[variant]['read']:.2f}× / "
            f"{ratio[variant]['write']:.2f}×** (CPU {cpu[variant]:.2f}×) | — | — |"
        )
    return rows


def cpu_note(x: dict[str, Any]) -> str:
    cpu = x.get("cpu_ms_per_request")
    if not cpu:
        return ""
    return f" (proxy CPU per request {cpu['same']:.2f} vs {cpu['off']:.2f} ms = {cpu['same'] / cpu['off']:.2f}×)"


def shadow_rows(x: dict[str, Any]) -> list[str]:
    """§9: the caller's latency through a proxy that mirrors every request, against one that mirrors nothing, with the
    demo model answering at once and with a realistic model time (the targets are judged on `judged_on`)."""
    if "models" not in x:  # a results.json from before both model times were measured
        return shadow_model_rows(x, "")
    rows = []
    for model, figures in x["models"].items():
        delay = figures["model_seconds"]
        what = f"model answering in {delay * 1000:g} ms" if delay else "model answering at once"
        judged = "; **the target is judged on this one**" if model == x["judged_on"] else "; reported, not judged"
        rows += shadow_model_rows(figures, f"{model} ({what}{judged}): ")
    return rows


def shadow_model_rows(x: dict[str, Any], label: str) -> list[str]:
    latency, ratio, target, rss = x["latency_ms"], x["ratio"], x["targets"], x["rss_mib"]["never"]
    off, same, never = latency["off"], latency["same"], latency["never"]
    n = f"{off['n']:,} requests each, one at a time, {x['seconds']:.0f} s each in {x['block_seconds']:.0f}-s turns"
    skipped = x["shadow_outcomes"]["never"].get("too_many_in_flight", 0)
    return [
        f"| 9 | {label}shadow 100 % to a green as fast as blue vs no shadow, caller's median ({n}) | "
        f"{ms(same['median'])} vs {ms(off['median'])} = **{ratio['same_median']:.2f}×**{cpu_note(x)} | "
        f"≤ {target['same_median']}× | {met(ratio['same_median'] <= target['same_median'])} |",
        f"| 9 | {label}the same, caller's p99 | {ms(same['p99'])} vs {ms(off['p99'])} = "
        f"**{ratio['same_p99']:.2f}×** | ≤ {target['same_p99']}× | {met(ratio['same_p99'] <= target['same_p99'])} |",
        f"| 9 | {label}shadow 100 % to a green that never answers vs no shadow, caller's p99 | {ms(never['p99'])} vs "
        f"{ms(off['p99'])} = **{ratio['never_p99']:.2f}×** (median {ratio['never_median']:.2f}×) | "
        f"≤ {target['never_p99']}× | {met(ratio['never_p99'] <= target['never_p99'])} |",
        f"| 9 | {label}that proxy's RSS over its {x['seconds']:.0f} s of load (/proc, every 0.5 s; {skipped:,.0f} "
        f"copies dropped past {x['proxy_settings']['shadow_max_in_flight']} in flight) | peak "
        f"**{rss['peak_mib']:.0f} MiB** ({rss['start_mib']:.0f} MiB at the start, {rss['end_mib']:.0f} at the end) | "
        f"< {x['rss_limit_mib']} MiB | {met(rss['peak_mib'] < x['rss_limit_mib'])} |",
        *(
            [
                f"| 9 | {label}noise floor: a second proxy without shadow vs the first, same requests | "
                f"{ms(latency['control']['median'])} vs {ms(off['median'])} = **{ratio['control_median']:.2f}×** "
                f"(p99 {ratio['control_p99']:.2f}×) | — | — |"
            ]
            if "control" in latency
            else []
        ),
    ]


METHOD = """## How each figure is measured

Every figure is a ratio to a floor measured in the same run, the variants interleaved call by call where they run
one at a time, and each floor's answer is checked equal to the product's before anything is timed:

1. `promoteDeployment` over HTTP, and `store.rollouts.promote` in-process, against the same transaction written by
   hand on one asyncpg connection; every call promotes a deployment of its own.
2. a `deployments(first: 100)` page (current revision, routes, history) against one hand-written SQL statement that
   builds the same JSON.
3. closed-loop mixed reads from a load generator in its own process against bare Starlette + asyncpg answering the
   same data.
4. one `run_once` pass over due auto-promotions, and a pass with nothing due at 100 … 100,000 deployments.
5. a real scheduler process: when an auto-promotion commits after its due time, and its CPU while idle.
6. peak RSS of the server and the scheduler across the run.
7. the load test: concurrent clients mixing reads, promotions, rollbacks and health reports; every acknowledged
   update is found in history exactly once and the invariants of `tests/invariants.py` hold afterwards.
8. metric analysis: a real scheduler process reverting promotions whose post-promotion WEB check fails, against
   the check's due time; `run_once` with nothing due on 1,000 deployments with a RUNNING analysis (next check in an
   hour) against 1,000 without, interleaved; due WEB checks against a stub that answers in 100 ms, with the
   scheduler's workers and with one; `switchover proxy` against the same proxy with `count=False`
   (bench/proxy_app.py), requests through both interleaved one at a time to the same replica processes.
9. shadow traffic (bench/b_shadow.py): three deployments whose blue routes are the same replica process, each
   behind a `switchover proxy` process of its own (default SWITCHOVER_SHADOW_* settings): one without a shadow spec,
   one mirroring 100 % to a replica process of the same model (every copy must agree), one mirroring 100 % to a
   green that accepts connections and never replies (bench/silent_green.py), and a second proxy without shadow in
   front of the first deployment (the noise floor between two identical proxies). One load generator process sends
   requests one at a time, to one proxy at a time in 2-s turns, `--shadow-seconds` (60) for each (every answer must
   be blue's): what a proxy does after answering (its copy) competes with its own next request. The bench samples
   each proxy's RSS from /proc meanwhile. All of it twice, with fresh replicas and proxies: the demo model answering
   at once (about 0.2 ms: the proxy's own work is then most of the caller's latency, and a copy roughly doubles the
   proxy's upstream work on the same event loop and cores) and blue and green both answering in 5 ms
   (REPLICA_ANSWER_DELAY_SECONDS, still far quicker than a real model server). The targets are judged on the second:
   they are about what mirroring adds to a caller's latency to a model, which an instant model reduces to a ratio of
   proxy CPU.
10. tracing (bench/b_tracing.py): four `switchover serve` processes on one database — two without any OTEL_*
   variable (tracing off: no provider, nothing wrapped; their difference is the noise floor), one with an OTLP
   endpoint and `OTEL_TRACES_SAMPLER=always_off`, one exporting every request to an OTLP sink in the bench — each
   sent the same planned read (`deployment(id)`) and `addRevision`, one request to each in turn; each server's CPU
   seconds over the measured requests.
11. proxy machinery (bench/b_proxy_machinery.py): one replica process; three candidate pass-through proxies
   (bench/proxy_candidates.py: aiohttp or httpx client, uvicorn with httptools + uvloop or h11 + asyncio) and
   `switchover proxy` itself in front of it; small JSON POSTs one at a time to each in turn (and to the replica
   directly), time to the first server-sent event the same way (each stream read to its end), then a 100 MiB answer
   through each while the proxy's RSS is sampled every 5 ms.
12. HAProxy (bench/b_haproxy.py): Debian's HAProxy 2.6 started as the tests start it; `switchover haproxy`'s loop in
   the bench process, following 100 deployments by NOTIFY; each promotion timed from its commit to the runtime API
   acknowledging the last `set weight` of its backend. Throughput: HAProxy (`nbthread` at its default, one thread per
   core, read back from `show info`), a `switchover proxy` with one worker and one with as many workers as cores
   (SWITCHOVER_PROXY_WORKERS) in front of the same two replica processes; load generator processes (closed loop, 32
   connections between them, one measuring window) send small JSON to one data plane at a time in rounds whose order
   rotates, every plane with one generator process and with two; the ratio is judged in the setup where HAProxy
   reached more (the generator limiting it least). Every answer must be a 200.

Per-section numbers (latency distributions, per-round throughput, statement counts) are in
[results.json](results.json); profiles, summarised by component, in [profiles/](profiles/).
"""


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
    lines.append(METHOD)
    (BENCH / "RESULTS.md").write_text("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    write(json.loads((BENCH / "results.json").read_text()))
