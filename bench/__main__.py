"""The whole benchmark: `python -m bench [--load-seconds 60] [--quick] [--only api,scheduler,...,shadow]`.

bench/run.sh is the one command (it prepares the virtual environment first). Writes bench/results.json,
bench/RESULTS.md and bench/profiles/*.txt.
"""

import argparse
import asyncio
import json
import time
import traceback
from pathlib import Path
from typing import Any

from bench import (
    b_analysis,
    b_api,
    b_haproxy,
    b_loadtest,
    b_proxy_machinery,
    b_reaction,
    b_scheduler,
    b_shadow,
    b_tracing,
    common,
    report,
)

SECTIONS = ("api", "scheduler", "reaction", "analysis", "load", "shadow", "proxy", "tracing", "haproxy")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--load-seconds", type=float, default=60, help="duration of the load test (default 60)")
    parser.add_argument("--load-clients", type=int, default=50, help="concurrent clients of the load test")
    parser.add_argument("--shadow-seconds", type=float, default=60, help="measured load of the shadow section (60)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for trying the bench out")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        # §1-3: promotions per variant, repeats of the 100-deployment page, throughput rounds and their length.
        "promotions": 40 if quick else 150,
        "profile_promotions": 30 if quick else 100,
        "page_repeat": 5 if quick else 30,
        "rounds": 1 if quick else 2,
        "throughput_seconds": 3.0 if quick else 10.0,
        "profile_seconds": 3.0 if quick else 8.0,
        "experiment_repeat": 3 if quick else 15,
        # §4
        "scheduler_sizes": [100, 1_000, 3_000] if quick else [100, 1_000, 10_000, 100_000],
        "due_at": 1_000 if quick else 10_000,
        "due": 200 if quick else 1_000,
        "profile_due": 100 if quick else 300,
        "idle_repeat": 50 if quick else 300,
        # §5
        "reaction_deployments": 50 if quick else 200,
        "idle_seconds": 3.0 if quick else 10.0,
        "wake_samples": 5 if quick else 20,
        # §8
        "analysis_reaction": 30 if quick else 100,
        "analysis_runs": 1_000,
        "analysis_due": 40 if quick else 100,
        "proxy_requests": 500 if quick else 3_000,
        # §10: requests of each kind to each of the four servers
        "tracing_requests": 200 if quick else 1_000,
        # §12: deployments whose promotions HAProxy follows
        "haproxy_deployments": 30 if quick else 100,
        # load test
        "load_deployments": 40 if quick else 120,
    }
    for key, value in defaults.items():
        setattr(args, key, value)
    if quick and args.load_seconds == 60:
        args.load_seconds = 10
    if quick and args.shadow_seconds == 60:
        args.shadow_seconds = 10
    args.sections = [s for s in args.only.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    return args


async def main(args: argparse.Namespace) -> dict[str, Any]:
    await common.drop_leftover_databases()
    results: dict[str, Any] = {
        "machine": {**common.machine(), "postgresql": await common.postgres_version()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "options": {k: v for k, v in vars(args).items() if k not in ("only",)},
        "errors": {},
    }
    runners = {
        "api": b_api.run,
        "scheduler": b_scheduler.run,
        "reaction": b_reaction.run,
        "analysis": b_analysis.run,
        "proxy": b_proxy_machinery.run,
        "load": b_loadtest.run,
        "shadow": b_shadow.run,
        "tracing": b_tracing.run,
        "haproxy": b_haproxy.run,
    }
    with common.RssSampler() as sampler:
        for section in args.sections:
            print(f"== {section}", flush=True)
            started = time.perf_counter()
            try:
                results[section] = await runners[section](sampler, args)
            except Exception:
                results["errors"][section] = traceback.format_exc()
                print(results["errors"][section], flush=True)
            results.setdefault("section_seconds", {})[section] = time.perf_counter() - started
            print(f"   {section} took {results['section_seconds'][section]:.0f} s", flush=True)
    results["memory_mib"] = sampler.peaks
    return results


def merge(new: dict[str, Any], path: Path) -> dict[str, Any]:
    """The sections of an earlier results.json that this run did not measure (`--only`) are kept, each with the
    start time of the run that measured it (`measured`)."""
    new["measured"] = {section: new["started"] for section in SECTIONS if section in new}
    if not path.exists():
        return new
    old = json.loads(path.read_text())
    for section in SECTIONS:
        if section in new or section in new["errors"] or section not in old:
            continue
        new[section] = old[section]
        new["measured"][section] = old.get("measured", {}).get(section, old["started"])
        new.setdefault("section_seconds", {})[section] = old.get("section_seconds", {}).get(section)
        if section in old.get("errors", {}):
            new["errors"][section] = old["errors"][section]
    for phase, peaks in old.get("memory_mib", {}).items():
        new["memory_mib"].setdefault(phase, peaks)
    return new


if __name__ == "__main__":
    arguments = options()
    began = time.perf_counter()
    outcome = asyncio.run(main(arguments))
    outcome["total_seconds"] = time.perf_counter() - began
    outcome = merge(outcome, common.BENCH / "results.json")
    (common.BENCH / "results.json").write_text(json.dumps(outcome, indent=1, default=str) + "\n")
    report.write(outcome)
    print(f"wrote {common.BENCH / 'RESULTS.md'} in {outcome['total_seconds']:.0f} s", flush=True)
    if outcome["errors"]:
        raise SystemExit(f"sections failed: {', '.join(outcome['errors'])}")
