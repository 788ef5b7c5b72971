"""Operator commands (`switchover deployments | status | deploy | promote | rollback | revert | approve | freeze |
unfreeze`): a GraphQL client.

Exit codes a CI job can rely on: 0 done, 1 refused by the server (the code and message are printed), 2 bad usage,
3 timed out waiting, 4 server unreachable.
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from switchover.client import Client, Refused, Unreachable

OK, REFUSED, TIMED_OUT, UNREACHABLE = 0, 1, 3, 4
LIVE_LIFECYCLES = "[PENDING, READY, DEPLOYING, DESTROYING]"
# --wait-for targets: (lifecycle, subStep)
STATES = {
    "pending": ("PENDING", None),
    "ready": ("READY", None),
    "provisioning": ("DEPLOYING", "DEPLOYING_PROVISIONING"),
    "awaiting-promotion": ("DEPLOYING", "DEPLOYING_AWAITING_PROMOTION"),
    "rolling-back": ("DEPLOYING", "DEPLOYING_ROLLING_BACK"),
}
DEPLOYMENT = """
id name projectId replicas lifecycle subStep phaseStartedAt nextActionAt strategy { type }
currentRevision { id number image } deployingRevision { id number image }
waitingFor { reason message }
routes(status: [PROVISIONING, HEALTHY, UNHEALTHY, DEGRADED, TERMINATING, FAILED_TO_START]) {
  id status trafficStatus trafficRatio endpointUrl revision { number }
}
history(first: 8) { edges { node { id phase result message actor createdAt } } }
canaryStatus { stepIndex weight }
analysisRuns(first: 1) { edges { node { kind phase passedChecks failedChecks revision { number }
  measurements { metric value passed message at } } } }
shadowStats { requests agreed disagreed greenErrors samples { request blueAnswer greenAnswer } }
approvals { approver comment } activeFreezeWindow { id reason endsAt }
governed: strategy { blueGreen { requiredApprovals } canary { requiredApprovals } }
"""
console = Console(highlight=False)


def state_of(d: dict[str, Any]) -> str:
    return d["lifecycle"] + (f"/{d['subStep'].removeprefix('DEPLOYING_')}" if d["subStep"] else "")


async def find(client: Client, name: str, project: str | None) -> dict[str, Any]:
    data = await client.execute(
        f"query($n: String, $p: ID) {{ deployments(name: $n, projectId: $p, lifecycle: {LIVE_LIFECYCLES}) "
        f"{{ edges {{ node {{ {DEPLOYMENT} }} }} }} }}",
        n=name,
        p=project,
    )
    found = [edge["node"] for edge in data["deployments"]["edges"]]
    if not found:
        raise Refused("NOT_FOUND", f"no live deployment named {name!r}" + (f" in project {project}" if project else ""))
    if len(found) > 1:
        raise Refused("CONFLICT", f"{len(found)} projects have a deployment named {name!r}; pass --project")
    return found[0]


def render(d: dict[str, Any], events: list[str] | None = None) -> Group:
    current = d["currentRevision"]
    deploying = d["deployingRevision"]
    lines = [
        Text.assemble(
            (d["name"], "bold"), f"  {state_of(d)}  ", (d["strategy"]["type"], "dim"), f"  replicas {d['replicas']}"
        ),
        Text(f"serving: revision {current['number']} ({current['image']})" if current else "serving: nothing yet"),
    ]
    if deploying:
        lines.append(Text(f"deploying: revision {deploying['number']} ({deploying['image']})"))
    if d.get("canaryStatus"):
        status = d["canaryStatus"]
        lines.append(
            Text(f"canary: step {status['stepIndex'] + 1}, {status['weight']} % of the traffic on the new revision")
        )
    lines += governance_lines(d)
    if d["waitingFor"]:
        lines.append(Text(f"waiting for: {d['waitingFor']['message']}", style="yellow"))
    if d["nextActionAt"]:
        lines.append(Text(f"scheduler acts next at {d['nextActionAt']}", style="dim"))
    lines += analysis_lines(d)
    lines += shadow_lines(d)
    routes = Table("route", "revision", "status", "traffic", box=None, pad_edge=False)
    for r in d["routes"]:
        traffic = f"ACTIVE {r['trafficRatio']:.0%}" if r["trafficStatus"] == "ACTIVE" else "-"
        colour = {"HEALTHY": "green", "UNHEALTHY": "red", "FAILED_TO_START": "red", "TERMINATING": "dim"}.get(
            r["status"]
        )
        routes.add_row(r["id"][:8], str(r["revision"]["number"]), Text(r["status"], style=colour or ""), traffic)
    history = (
        events
        if events is not None
        else [
            f"{e['node']['createdAt'][11:19]} {e['node']['phase']} {e['node']['result']}: {e['node']['message']}"
            for e in reversed(d["history"]["edges"])
        ]
    )
    return Group(*lines, routes, Text("recent events:", style="bold"), *(Text(line) for line in history[-8:]))


def analysis_lines(d: dict[str, Any]) -> list[Text]:
    """The newest analysis run and its last measurements."""
    edges = d.get("analysisRuns", {}).get("edges") or []
    if not edges:
        return []
    run = edges[0]["node"]
    colour = {"SUCCESSFUL": "green", "FAILED": "red", "ERROR": "red"}.get(run["phase"], "yellow")
    kind = run["kind"].lower().replace("_", "-")
    lines = [Text.assemble(f"analysis: {kind} of revision {run['revision']['number']} ", (run["phase"], colour),
                           f" ({run['passedChecks']} passed, {run['failedChecks']} failed)")]  # fmt: skip
    for m in run["measurements"][-3:]:
        verdict = {True: ("pass", "green"), False: ("fail", "red"), None: ("no number", "red")}[m["passed"]]
        lines.append(Text.assemble(f"  {m['at'][11:19]} {m['metric']}: ", verdict, f" {m['message']}"))
    return lines


SAMPLE_LINES, SAMPLE_WIDTH = 3, 100  # of each part of the disagreement shown: the whole sample is in the API


def shadow_lines(d: dict[str, Any]) -> list[Text]:
    """Agreement of the shadow traffic mirrored to the revision being deployed, and its newest disagreement."""
    stats = d.get("shadowStats")
    if not stats or not stats["requests"]:
        return []
    agreed = 100 * stats["agreed"] / stats["requests"]
    colour = "green" if not stats["disagreed"] and not stats["greenErrors"] else "yellow"
    lines = [Text.assemble("shadow: ", (f"{agreed:.1f} % agreed", colour),
                           f" of {stats['requests']} mirrored requests ({stats['disagreed']} disagreed, "
                           f"{stats['greenErrors']} green errors)")]  # fmt: skip
    if stats["samples"]:
        sample = stats["samples"][0]
        lines.append(Text("  newest disagreement:", style="bold"))
        for label, text in (("request", sample["request"]), ("blue", sample["blueAnswer"]),
                            ("green", sample["greenAnswer"])):  # fmt: skip
            for n, line in enumerate(excerpt(text)):
                lines.append(Text(f"    {label + ':' if n == 0 else '':<9}{line}"))
    return lines


def excerpt(text: str) -> list[str]:
    """The first few non-empty lines, each cut to a terminal's width; '…' marks what was left out."""
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    shown = [line if len(line) <= SAMPLE_WIDTH else line[: SAMPLE_WIDTH - 1] + "…" for line in lines[:SAMPLE_LINES]]
    if len(lines) > SAMPLE_LINES:
        shown[-1] += " …"
    return shown


async def cmd_deployments(client: Client, args: argparse.Namespace) -> int:
    data = await client.execute(
        "query($p: ID) { deployments(projectId: $p, first: 100) { edges { node { name projectId replicas lifecycle "
        "subStep currentRevision { number } deployingRevision { number } } } } }",
        p=args.project,
    )
    table = Table("name", "project", "state", "serving", "deploying", "replicas")
    for edge in data["deployments"]["edges"]:
        d = edge["node"]
        table.add_row(
            d["name"], d["projectId"], state_of(d),
            str(d["currentRevision"]["number"]) if d["currentRevision"] else "-",
            str(d["deployingRevision"]["number"]) if d["deployingRevision"] else "-", str(d["replicas"]),
        )  # fmt: skip
    console.print(table)
    return OK


async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    d = await find(client, args.name, args.project)
    if not args.watch and not args.wait_for:
        console.print(render(d))
        return OK
    target = STATES[args.wait_for] if args.wait_for else None
    deadline = time.monotonic() + args.timeout if args.timeout else None
    events: list[str] = [
        f"{e['node']['createdAt'][11:19]} {e['node']['phase']} {e['node']['result']}: {e['node']['message']}"
        for e in reversed(d["history"]["edges"])
    ]
    changed = asyncio.Event()

    async def listen() -> None:
        query = (
            "subscription($d: ID, $after: ID) { deploymentEvents(deploymentId: $d, after: $after) "
            "{ history { phase result message createdAt } } }"
        )
        after = d["history"]["edges"][0]["node"]["id"] if d["history"]["edges"] else None
        async for data in client.subscribe(query, d=d["id"], after=after):
            h = data["deploymentEvents"]["history"]
            events.append(f"{h['createdAt'][11:19]} {h['phase']} {h['result']}: {h['message']}")
            changed.set()

    listener = asyncio.create_task(listen())
    try:
        with Live(render(d, events), console=console, auto_refresh=False, transient=False) as live:
            while True:
                if target and (d["lifecycle"], d["subStep"]) == target:
                    return OK
                if target and target[0] == "DEPLOYING" and d["lifecycle"] != "DEPLOYING":
                    console.print(f"the rollout ended in {state_of(d)} without reaching {args.wait_for}")
                    return REFUSED
                if deadline and time.monotonic() > deadline:
                    console.print(f"timed out after {args.timeout:g} s in {state_of(d)}")
                    return TIMED_OUT
                changed.clear()
                try:  # woken by an event; every second regardless, should the subscription be unavailable
                    await asyncio.wait_for(changed.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                d = await find(client, args.name, args.project)
                live.update(render(d, events), refresh=True)
    finally:
        listener.cancel()


async def cmd_deploy(client: Client, args: argparse.Namespace) -> int:
    d = await find(client, args.name, args.project)
    env = dict(pair.split("=", 1) for pair in args.env)
    added = await client.execute(
        "mutation($d: ID!, $i: String!, $e: JSON, $h: String) { addRevision(input: {deploymentId: $d, image: $i, "
        "env: $e, healthCheckPath: $h}) { revision { id number } } }",
        d=d["id"], i=args.image, e=env, h=args.health_path,
    )  # fmt: skip
    revision = added["addRevision"]["revision"]
    await client.execute(
        "mutation($d: ID!, $r: ID!) { deployRevision(input: {deploymentId: $d, revisionId: $r}) "
        "{ deployment { id } } }",
        d=d["id"],
        r=revision["id"],
    )
    console.print(f"deploying revision {revision['number']} ({args.image}) to {args.name}")
    return OK


async def revision_id(client: Client, deployment_id: str, number: int) -> str:
    after = None
    while True:
        data = await client.execute(
            "query($d: ID!, $a: String) { deployment(id: $d) { revisions(first: 100, after: $a) { "
            "edges { node { id number } } pageInfo { hasNextPage endCursor } } } }",
            d=deployment_id,
            a=after,
        )
        page = data["deployment"]["revisions"]
        for edge in page["edges"]:
            if edge["node"]["number"] == number:
                return edge["node"]["id"]
        if not page["pageInfo"]["hasNextPage"]:
            raise Refused("NOT_FOUND", f"the deployment has no revision {number}")
        after = page["pageInfo"]["endCursor"]


async def cmd_promote(client: Client, args: argparse.Namespace) -> int:
    d = await find(client, args.name, args.project)
    expected = await revision_id(client, d["id"], args.expect_revision) if args.expect_revision else None
    data = await client.execute(
        "mutation($d: ID!, $e: ID, $dry: Boolean, $skip: Boolean, $full: Boolean) { promoteDeployment(input: "
        "{deploymentId: $d, expectedRevisionId: $e, dryRun: $dry, skipAnalysis: $skip, full: $full}) { dryRun "
        "deployment { currentRevision { number } } promotedRoutes { id } drainedRoutes { id } } }",
        d=d["id"], e=expected, dry=args.dry_run, skip=args.skip_analysis, full=args.full,
    )  # fmt: skip
    result = data["promoteDeployment"]
    verb = "would promote" if result["dryRun"] else "promoted"
    number = d["deployingRevision"]["number"] if d["deployingRevision"] else "?"
    if d["strategy"]["type"] == "CANARY":  # a promotion resumes a pause, or (--full) goes to 100 %
        done = "going to 100 %" if args.full else "resumed at its next step"
        console.print(f"canary of revision {number} of {args.name}: {done}")
        return OK
    console.print(
        f"{verb} revision {number} of {args.name}: {len(result['promotedRoutes'])} routes active, "
        f"{len(result['drainedRoutes'])} draining"
    )
    return OK


async def cmd_rollback(client: Client, args: argparse.Namespace) -> int:
    d = await find(client, args.name, args.project)
    await client.execute(
        "mutation($d: ID!, $r: String) { rollbackDeployment(input: {deploymentId: $d, reason: $r}) "
        "{ deployment { id } } }",
        d=d["id"],
        r=args.reason,
    )
    console.print(f"rolling back {args.name}")
    return OK


async def cmd_revert(client: Client, args: argparse.Namespace) -> int:
    d = await find(client, args.name, args.project)
    data = await client.execute(
        "mutation($d: ID!, $r: String) { revertPromotion(input: {deploymentId: $d, reason: $r}) "
        "{ deployment { currentRevision { number } } } }",
        d=d["id"],
        r=args.reason,
    )
    serving = data["revertPromotion"]["deployment"]["currentRevision"]["number"]
    console.print(f"reverted {args.name}: revision {serving} serves again")
    return OK


def governance_lines(d: dict[str, Any]) -> list[Text]:
    """The approvals of the rollout in flight (when its strategy asks for some) and a freeze window in force."""
    lines = []
    specs = d.get("governed") or {}
    required = max((spec or {}).get("requiredApprovals", 0) for spec in (specs.get("blueGreen"), specs.get("canary")))
    if d.get("deployingRevision") and (required or d.get("approvals")):
        who = ", ".join(a["approver"] + (f" ({a['comment']})" if a["comment"] else "") for a in d["approvals"])
        colour = "green" if len(d["approvals"]) >= required else "yellow"
        lines.append(Text.assemble("approvals: ", (f"{len(d['approvals'])} of {required}", colour),
                                   f": {who}" if who else ""))  # fmt: skip
    window = d.get("activeFreezeWindow")
    if window:
        lines.append(Text(f"frozen until {window['endsAt']}: {window['reason']} (window {window['id']})", style="red"))
    return lines


async def cmd_approve(client: Client, args: argparse.Namespace) -> int:
    d = await find(client, args.name, args.project)
    if args.revision is not None:
        revision = await revision_id(client, d["id"], args.revision)
    elif d["deployingRevision"]:
        revision = d["deployingRevision"]["id"]
    else:
        raise Refused("INVALID_STATE", f"{args.name} is {state_of(d)}: no revision is being deployed to approve")
    data = await client.execute(
        "mutation($d: ID!, $r: ID!, $c: String) { approvePromotion(input: {deploymentId: $d, revisionId: $r, "
        "comment: $c}) { approval { approver revision { number } } deployment { approvals { approver } } } }",
        d=d["id"], r=revision, c=args.comment,
    )  # fmt: skip
    result = data["approvePromotion"]
    approvers = ", ".join(a["approver"] for a in result["deployment"]["approvals"])
    console.print(f"{result['approval']['approver']} approved revision {result['approval']['revision']['number']} "
                  f"of {args.name}; approvals so far: {approvers}")  # fmt: skip
    return OK


DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """`90m`, `2h`, `3d`."""
    unit = DURATION_UNITS.get(text[-1:])
    if unit is None or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90m, 2h or 3d")
    return timedelta(seconds=int(text[:-1]) * unit)


def instant(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.astimezone()  # a local time without offset means this machine's zone


async def cmd_freeze(client: Client, args: argparse.Namespace) -> int:
    project = args.project
    if project is None:
        if args.name is None:
            raise Refused("BAD_USER_INPUT", "name a deployment (its project is frozen) or pass --project")
        project = (await find(client, args.name, None))["projectId"]
    starts = args.starts or datetime.now(UTC)
    ends = args.until or starts + args.duration
    data = await client.execute(
        "mutation($p: ID!, $s: DateTime!, $e: DateTime!, $r: String!) { createFreezeWindow(input: {projectId: $p, "
        "startsAt: $s, endsAt: $e, reason: $r}) { freezeWindow { id startsAt endsAt } } }",
        p=project, s=starts.isoformat(), e=ends.isoformat(), r=args.reason,
    )  # fmt: skip
    window = data["createFreezeWindow"]["freezeWindow"]
    console.print(f"froze project {project} from {window['startsAt']} until {window['endsAt']}: window {window['id']}")
    return OK


async def cmd_unfreeze(client: Client, args: argparse.Namespace) -> int:
    data = await client.execute(
        "mutation($id: ID!) { deleteFreezeWindow(input: {id: $id}) { freezeWindow { id projectId } } }", id=args.window
    )
    window = data["deleteFreezeWindow"]["freezeWindow"]
    console.print(f"deleted freeze window {window['id']} of project {window['projectId']}")
    return OK


COMMANDS = {
    "approve": cmd_approve,
    "freeze": cmd_freeze,
    "unfreeze": cmd_unfreeze,
    "deployments": cmd_deployments,
    "status": cmd_status,
    "deploy": cmd_deploy,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "revert": cmd_revert,
}


def add_parsers(commands: Any, defaults: dict[str, str | None]) -> None:
    """Add the operator commands to the `switchover` parser."""

    def client_command(name: str, help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help)
        parser.add_argument("--url", default=defaults["url"], help="GraphQL endpoint (env SWITCHOVER_URL)")
        parser.add_argument("--token", default=defaults["token"], help="bearer token (env SWITCHOVER_TOKEN)")
        parser.add_argument("--project", help="project id, when several projects use the name")
        parser.set_defaults(run=run, operation=name)
        return parser

    client_command("deployments", "list deployments")
    for name, help in [
        ("status", "a deployment's state, routes and recent events"),
        ("deploy", "add a revision and roll it out"),
        ("promote", "switch traffic to the green routes"),
        ("rollback", "abort the rollout in flight"),
        ("revert", "undo the last promotion while the old routes are warm"),
    ]:
        client_command(name, help).add_argument("name", help="deployment name")
    status = commands.choices["status"]
    status.add_argument("--watch", action="store_true", help="follow it live (events over WebSocket)")
    status.add_argument("--wait-for", choices=sorted(STATES), help="exit 0 once it is in this state")
    status.add_argument("--timeout", type=float, help="with --watch/--wait-for: give up (exit 3) after this many s")
    deploy = commands.choices["deploy"]
    deploy.add_argument("--image", required=True)
    deploy.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    deploy.add_argument("--health-path")
    promote = commands.choices["promote"]
    promote.add_argument("--expect-revision", type=int, metavar="N", help="refuse unless revision N is deploying")
    promote.add_argument("--dry-run", action="store_true")
    promote.add_argument(
        "--skip-analysis", action="store_true", help="promote although the pre-promotion analysis has not succeeded"
    )
    promote.add_argument("--full", action="store_true", help="canary: skip the remaining steps and go to 100 %%")
    for name in ("rollback", "revert"):
        commands.choices[name].add_argument("--reason")
    approve = client_command("approve", "approve the promotion of the revision being deployed (this rollout)")
    approve.add_argument("name", help="deployment name")
    approve.add_argument("--revision", type=int, metavar="N", help="refuse unless revision N is the one deploying")
    approve.add_argument("--comment")
    freeze = client_command("freeze", "freeze a project's deploys and promotions for a while")
    freeze.add_argument("name", nargs="?", help="a deployment whose project to freeze (or give --project)")
    freeze.add_argument("--from", dest="starts", type=instant, help="ISO-8601 start (default now)")
    length = freeze.add_mutually_exclusive_group(required=True)
    length.add_argument("--until", type=instant, help="ISO-8601 end")
    length.add_argument("--for", dest="duration", type=duration, help="how long: 90m, 2h, 3d (at most 30 days)")
    freeze.add_argument("--reason", required=True)
    client_command("unfreeze", "delete a freeze window (it ends now)").add_argument("window", help="freeze window id")


def run(settings: Any, args: argparse.Namespace) -> int:
    async def main() -> int:
        async with Client(args.url, args.token) as client:
            try:
                return await COMMANDS[args.operation](client, args)
            except Refused as refused:
                console.print(f"[red]{refused.code}[/red]: {refused.message}")
                return REFUSED
            except Unreachable as exc:
                console.print(f"[red]UNREACHABLE[/red]: {exc}")
                return UNREACHABLE

    return asyncio.run(main())
