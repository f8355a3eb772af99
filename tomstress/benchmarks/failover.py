"""Hub failover between real processes: four `tom-stress group-node`s on 127.0.0.1, the hub killed
with SIGKILL, the figures the campaign's failover phase reports.

    python -m tomstress.benchmarks.failover [--runs 10] [--chatter 200ms] [--json]

Each run: B, C and D start first (`--join --chatter`), each knowing where the others listen; A
creates a group hosted on itself and invites them (and chatters too). Once every member has
joined and hears the two others, and `FLOW_S` later, A is killed (SIGKILL, its monotonic time
taken just before);
the run goes on until one member promoted itself, all three follow it and each has heard both
others through it, plus `SETTLE_S`; then B, C and D are stopped (SIGTERM) and the figures come
from their group facts (tomstress/groups.py): detection (crash -> first HubUnreachableReported or
HubSuspected), promotion (from the crash and from the last pong), migration and the first message
through the new hub at each member, and what became of the members' messages (sent, delivered,
duplicated, lost; the dead hub's own messages apart). Over the runs: min / p50 / max of each.

`run_failover` is the one run, also used by tests/integration/test_group_failover_processes.py.
Every wait has a deadline; every process is killed at the end whatever happened.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomproto.durations import format_duration, parse_duration
from tomproto.identity import create_identity_file
from tomstress.benchmarks.children import stop
from tomstress.group_node import FACT, READY
from tomstress.groups import (
    SENT,
    FactRecord,
    FailoverFigures,
    MessageCounts,
    failover_figures,
    message_counts,
    record_from_json,
)
from tomstress.stats import nearest_rank

__all__ = ["GroupNodeProcess", "FailoverRun", "run_failover", "spawn_group_node", "wait_ready", "free_udp_ports",
           "summarize_runs", "main"]

TOM_STRESS = [sys.executable, "-m", "tomstress"]
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 20.0
FLOWING_TIMEOUT_S = 20.0  # every member joined, and hears the two others
FAILOVER_TIMEOUT_S = 20.0  # promoted, followed, and heard through the new hub
FLOW_S = 2.0  # messages flow this long through the hub before it is killed
SETTLE_S = 2.0  # after that: the messages resent to the new hub arrive, the last sends are acknowledged
LAST_SENDS_S = 1.0  # messages sent this close to the stop may not have arrived: not counted
MAX_RUN_S = 120.0  # each child's own --duration: none outlives a crashed parent for long
NAMES = ("a", "b", "c", "d")  # a: the hub, killed


@dataclass
class GroupNodeProcess:
    """A `tom-stress group-node` child: its JSON lines, read by a thread as they come (its stdout
    never fills), and its stderr in a file."""

    name: str
    node_id: str
    process: subprocess.Popen[str]
    stderr_path: Path
    lines: list[dict[str, Any]] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None  # noqa: S101 - started with stdout=PIPE
        for text in self.process.stdout:
            try:
                line = json.loads(text)
            except ValueError:
                line = {"event": "unparsed", "text": text[:200]}
            self.lines.append(line if isinstance(line, dict) else {"event": "unparsed", "text": text[:200]})

    def records(self) -> list[FactRecord]:
        return [record_from_json(line) for line in list(self.lines) if line.get("event") == FACT]

    def facts(self, kind: str) -> list[FactRecord]:
        return [record for record in self.records() if record.kind == kind]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.finish()

    def stop(self) -> int:
        code = stop(self.process)
        self.finish()
        return code

    def finish(self) -> None:
        """Wait (bounded) for the reader to take the last lines."""
        if self.reader is not None:
            self.reader.join(timeout=10)

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def free_udp_ports(count: int) -> list[int]:
    """`count` distinct UDP ports on 127.0.0.1 that were free a moment ago (bound at once, then
    released: the children bind them next; a clash is possible, but unlikely on a test machine)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def spawn_group_node(name: str, node_id: str, workdir: Path, *arguments: str) -> GroupNodeProcess:
    """Start one child (its lines read from now on); `wait_ready` next."""
    stderr_path = workdir / f"{name}.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen([*TOM_STRESS, "group-node", *arguments], stdout=subprocess.PIPE, stderr=stderr,
                                   text=True)  # fmt: skip
    child = GroupNodeProcess(name, node_id, process, stderr_path)
    child.reader = threading.Thread(target=child.read, name=f"group-node {name}", daemon=True)
    child.reader.start()
    return child


def wait_ready(children: list[GroupNodeProcess]) -> None:
    """Every child's ready line, within START_TIMEOUT_S, from the NodeId it was given."""
    names = ", ".join(child.name for child in children)
    wait_for(lambda: all(any(line.get("event") == READY for line in child.lines) for child in children),
             START_TIMEOUT_S, f"ready line from each of {names}", children)  # fmt: skip
    for child in children:
        ready = next(line for line in child.lines if line.get("event") == READY)
        if ready.get("node_id") != child.node_id:
            raise RuntimeError(f"{child.name} runs as {ready.get('node_id')}, not {child.node_id}")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, children: list[GroupNodeProcess]) -> None:
    """Poll `condition` until it holds; TimeoutError saying what did not come (and why a child
    that exited did) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        exited = [child for child in children if child.process.poll() is not None]
        if exited:
            child = exited[0]
            raise RuntimeError(f"{child.name} exited ({child.process.returncode}) before {what}: {child.stderr_tail()}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.05)


def _heard(child: GroupNodeProcess, senders: set[str], since_s: float = float("-inf")) -> set[str]:
    """Who among `senders` `child` received a group message from, sent at or after `since_s`
    (by the message's wall-clock stamp, on this one machine's clock)."""
    return {
        str(record.fields["sender"]) for record in child.facts("GroupMessageReceived")
        if record.fields["sender"] in senders and record.fields["sent_at_ms"] / 1000 >= since_s
    }  # fmt: skip


@dataclass(frozen=True)
class FailoverRun:
    node_ids: dict[str, str]  # name -> NodeId hex
    records: dict[str, list[FactRecord]]  # NodeId hex -> its records (the hub's: until it was killed)
    crash_s: float  # time.monotonic() just before the SIGKILL
    crash_wall_s: float
    promoted_wall_s: float | None  # the wall-clock time of the promotion (for "sent after it")
    figures: FailoverFigures
    members: MessageCounts  # the survivors' messages among the survivors
    from_old_hub: MessageCounts  # the dead hub's messages, to the survivors
    stopped_s: float

    @property
    def survivors(self) -> list[str]:
        return [self.node_ids[name] for name in NAMES[1:]]

    @property
    def shadow(self) -> str:
        return min(self.survivors)


def run_failover(
    workdir: Path, *, chatter_s: float = 0.2, flow_s: float = FLOW_S, settle_s: float = SETTLE_S
) -> FailoverRun:
    """One run (see the module docstring), its children's files in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    identities = {name: workdir / f"{name}.key" for name in NAMES}
    node_ids = {name: create_identity_file(path, overwrite=True).node_id.hex for name, path in identities.items()}
    ports = dict(zip(NAMES, free_udp_ports(len(NAMES)), strict=True))
    chatter = format_duration(chatter_s)
    children: dict[str, GroupNodeProcess] = {}

    def arguments(name: str) -> list[str]:
        peers = [f"--peer={node_ids[other]}@{LOOPBACK}:{ports[other]}" for other in NAMES if other != name]
        return ["--listen", f"{LOOPBACK}:{ports[name]}", "--identity", str(identities[name]), *peers,
                "--chatter", chatter, "--duration", format_duration(MAX_RUN_S)]  # fmt: skip

    try:
        for name in NAMES[1:]:  # the invited first: an invitation that cannot be delivered is not kept
            children[name] = spawn_group_node(name, node_ids[name], workdir, *arguments(name), "--join")
        members = [children[name] for name in NAMES[1:]]
        wait_ready(members)
        invites = [f"--invite={node_ids[name]}" for name in NAMES[1:]]
        children["a"] = spawn_group_node("a", node_ids["a"], workdir, *arguments("a"), "--create", "failover",
                                         *invites)  # fmt: skip
        wait_ready([children["a"]])
        member_ids = {child.node_id for child in members}
        everyone = list(children.values())

        def flowing() -> bool:
            return all(child.facts("GroupJoined") and _heard(child, member_ids - {child.node_id}) ==
                       member_ids - {child.node_id} for child in members)  # fmt: skip

        wait_for(flowing, FLOWING_TIMEOUT_S, "group with every member hearing the others", everyone)
        time.sleep(flow_s)
        crash_wall_s = time.time()
        crash_s = time.monotonic()
        children["a"].kill()
        promoted_wall: list[float] = []

        def failed_over() -> bool:
            promoted = [record for child in members for record in child.facts("HubPromoted")]
            if not promoted:
                return False
            if not promoted_wall:
                promoted_wall.append(promoted[0].time_s("wall"))
            if not all(child.facts("HubMigrated") for child in members):
                return False
            since = promoted_wall[0]
            return all(_heard(child, member_ids - {child.node_id}, since) == member_ids - {child.node_id}
                       for child in members)  # fmt: skip

        wait_for(failed_over, FAILOVER_TIMEOUT_S, "promotion followed by every member, each hearing both others "
                 "through the new hub", members)  # fmt: skip
        time.sleep(settle_s)
        stopped_s = time.monotonic()
        for child in members:
            child.stop()
    finally:
        for child in children.values():
            child.kill()
    records = {child.node_id: child.records() for child in children.values()}
    survivors = [node_ids[name] for name in NAMES[1:]]
    survivor_records = {node: records[node] for node in survivors}
    counted = _without_last_sends(records, stopped_s - LAST_SENDS_S)
    return FailoverRun(
        node_ids=node_ids, records=records, crash_s=crash_s, crash_wall_s=crash_wall_s,
        promoted_wall_s=promoted_wall[0] if promoted_wall else None,
        figures=failover_figures(survivor_records, crash_s=crash_s, old_hub=node_ids["a"]),
        members=message_counts(counted, members=survivors),
        from_old_hub=message_counts(counted, members=survivors, senders=[node_ids["a"]]),
        stopped_s=stopped_s,
    )  # fmt: skip


def _without_last_sends(records: dict[str, list[FactRecord]], until_s: float) -> dict[str, list[FactRecord]]:
    """The records, without the sends of the last moment before the stop (still on their way)."""
    return {node: [r for r in node_records if r.kind != SENT or r.time_s() < until_s]
            for node, node_records in records.items()}  # fmt: skip


# -- the benchmark --------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "min": None, "p50": None, "max": None}
    return {"n": len(ordered), "min": round(ordered[0], 3), "p50": round(nearest_rank(ordered, 0.5), 3),
            "max": round(ordered[-1], 3)}  # fmt: skip


def summarize_runs(runs: list[FailoverRun]) -> dict[str, Any]:
    """min / p50 / max of each figure over the runs (a per-member figure: over every member of
    every run), and the message counts, per run and in all."""
    def each(get: Callable[[FailoverRun], float | None]) -> list[float]:
        return [value for run in runs if (value := get(run)) is not None]

    def per_member(get: Callable[[FailoverRun], dict[str, float]]) -> list[float]:
        return [value for run in runs for value in get(run).values()]

    figures: dict[str, Any] = {
        "detection_after_crash_s": _spread(each(lambda run: run.figures.detection_after_crash_s)),
        "promotion_after_crash_s": _spread(each(lambda run: run.figures.promotion_after_crash_s)),
        "promotion_after_last_pong_s": _spread(each(lambda run: run.figures.promotion_after_last_pong_s)),
        "migration_after_crash_s": _spread(per_member(lambda run: run.figures.migration_after_crash_s)),
        "chain_restored_after_crash_s": _spread(each(lambda run: run.figures.chain_restored_after_crash_s)),
        "first_message_after_crash_s": _spread(per_member(lambda run: run.figures.first_message_after_crash_s)),
        "first_message_after_promotion_s": _spread(per_member(lambda run: run.figures.first_message_after_promotion_s)),
    }
    counts: dict[str, Any] = {}
    for key in ("sent", "expected", "delivered", "duplicated", "lost"):
        values = [float(getattr(run.members, key)) for run in runs]
        counts[key] = {**_spread(values), "total": int(sum(values))}
    old_hub = {key: sum(getattr(run.from_old_hub, key) for run in runs) for key in
               ("sent", "expected", "delivered", "duplicated", "lost")}  # fmt: skip
    reasons: dict[str, int] = {}
    for run in runs:
        reason = str(run.figures.reason)
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "runs": len(runs),
        "promotions_per_run": [run.figures.promotions for run in runs],
        "new_hub_was_the_shadow": sum(run.figures.new_hub == run.shadow for run in runs),
        "reasons": reasons,
        "figures_s": figures,
        "members_messages": counts,
        "old_hub_messages_total": old_hub,
    }


def print_table(summary: dict[str, Any], chatter_s: float) -> None:
    print(f"hub failover, 4 group-node processes on {LOOPBACK}, SIGKILL of the hub, members chattering every "
          f"{format_duration(chatter_s)}; {summary['runs']} runs")  # fmt: skip
    print(f"promotions per run: {summary['promotions_per_run']}; the shadow took over in "
          f"{summary['new_hub_was_the_shadow']}/{summary['runs']}; reasons: {summary['reasons']}")  # fmt: skip
    header = f"{'figure (s)':<34} {'n':>3} {'min':>7} {'p50':>7} {'max':>7}"
    print(header)
    print("-" * len(header))
    labels = {
        "detection_after_crash_s": "detection (crash -> first report)",
        "promotion_after_crash_s": "promotion, from the crash",
        "promotion_after_last_pong_s": "promotion, from the last pong",
        "migration_after_crash_s": "migration at a member, from crash",
        "chain_restored_after_crash_s": "chain restored, from the crash",
        "first_message_after_crash_s": "1st msg via new hub, from crash",
        "first_message_after_promotion_s": "1st msg via new hub, from promo",
    }
    for key, label in labels.items():
        row = summary["figures_s"][key]
        print(f"{label:<34} {row['n']:>3} {_cell(row['min'])} {_cell(row['p50'])} {_cell(row['max'])}")
    print()
    header = f"{'members messages (per run)':<34} {'min':>7} {'p50':>7} {'max':>7} {'total':>7}"
    print(header)
    print("-" * len(header))
    for key in ("sent", "expected", "delivered", "duplicated", "lost"):
        row = summary["members_messages"][key]
        print(f"{key:<34} {_cell(row['min'], 0)} {_cell(row['p50'], 0)} {_cell(row['max'], 0)} {row['total']:>7}")
    old = summary["old_hub_messages_total"]
    print(f"\nthe killed hub's own messages, all runs: sent {old['sent']}, deliveries owed {old['expected']}, "
          f"delivered {old['delivered']}, duplicated {old['duplicated']}, lost {old['lost']}")  # fmt: skip
    print("expected = deliveries owed (each message to the two other members); sends of the last "
          f"{LAST_SENDS_S:g} s before the stop are not counted")  # fmt: skip


def _cell(value: float | None, digits: int = 3) -> str:
    return f"{'-':>7}" if value is None else f"{value:>7.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="kill -9 runs (default 10)")
    parser.add_argument("--chatter", default="200ms", help="each member sends this often (default 200ms)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    arguments = parser.parse_args()
    chatter_s = parse_duration(arguments.chatter)
    runs: list[FailoverRun] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tom-failover-") as directory:
        for index in range(max(1, arguments.runs)):
            try:
                runs.append(run_failover(Path(directory) / f"run{index}", chatter_s=chatter_s))
            except (TimeoutError, RuntimeError) as error:
                failures.append(f"run {index}: {error}")
                print(f"run {index} failed: {error}", file=sys.stderr)
    summary = summarize_runs(runs)
    summary["failed_runs"] = failures
    if arguments.json:
        print(json.dumps(summary))
    else:
        print_table(summary, chatter_s)
        if failures:
            print(f"{len(failures)} run(s) failed: {failures}")
    if failures:
        sys.exit(1)  # figures from the runs that worked are printed, but the benchmark did not pass


if __name__ == "__main__":
    main()
