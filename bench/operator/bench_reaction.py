"""Benchmark: how fast the OrderFlow operator reacts to a lag burst, and how it scales a flow through a load ramp,
against a KEDA-like baseline measured in the same run.

Everything is real except the consumers: a real kube-apiserver + etcd (the envtest binaries), a real Kafka broker,
the operator as a real process patching real Deployments' scale subresource. The consumers are simulated by
this script (no kubelet runs Pods): each tick it advances every stage's committed offsets by
``replicas x capacity`` and, for the first stage, produces what it consumed into the next stage's topic -- so
lag, arrival rates and scaling form a closed loop on the real broker.

1. Reaction time: ``--reps`` times, drain the lag, let the stage settle at 1 replica, wait a random phase, produce
   a burst, and time from the burst's last acknowledged message to the scale patch being visible on the API
   server. Baselines on the same burst instants: KEDA's Kafka scaler polling every 30 s and the HPA acting on its
   next 15 s sync ("KEDA 30s+HPA"), and the more charitable HPA-only bound (metrics read on demand at each 15 s
   sync).
2. Load ramp: a two-stage flow (``inventory`` -> ``shipping``) under a ramp of orders, run three times in parallel
   on separate topics: the operator's FlowAware policy, its LagOnly policy, and a KEDA-like controller run by
   this script (lag read every 30 s, HPA sync every 15 s, same lag target, same window). Reported per policy:
   when each stage first scaled up after the ramp began, peak lag, lag x seconds, replica x seconds, and the
   number of scaling changes.

Run:  python bench/operator/bench_reaction.py [--reps 10] [--interval 5] [--ramp-seconds 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from kubernetes import client, config

from orderflow_dev import operatorkit as kit
from orderflow_dev.envtest import EnvTest
from orderflow_dev.kafka import ensure_broker

KEDA_POLL_S = 30.0
HPA_SYNC_S = 15.0


# -- small helpers ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }


def next_tick(t: float, phase: float, period: float) -> float:
    """The first instant >= t on the schedule ``phase + k * period``."""
    return phase + math.ceil((t - phase) / period) * period


class Offsets:
    """End and committed offsets of one group over one topic's partitions, and a simulated consumer's commits."""

    def __init__(self, admin: AdminClient, topic: str, group: str, partitions: int) -> None:
        self.admin, self.topic, self.group = admin, topic, group
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    def ends(self) -> list[int]:
        futures = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in self.tps})
        by_partition = {tp.partition: f.result(timeout=10).offset for tp, f in futures.items()}
        return [int(by_partition[tp.partition]) for tp in self.tps]

    def committed(self) -> list[int]:
        request = [ConsumerGroupTopicPartitions(self.group, self.tps)]
        result = self.admin.list_consumer_group_offsets(request)[self.group].result(timeout=10)
        by_partition = {tp.partition: max(int(tp.offset), 0) for tp in result.topic_partitions}
        return [by_partition.get(tp.partition, 0) for tp in self.tps]

    def consume(self, budget: int, ends: list[int], committed: list[int]) -> int:
        """Commit up to ``budget`` more messages, spread over the partitions with a backlog; return how many."""
        position = list(committed)
        taken = 0
        while taken < budget:
            backlog = [i for i in range(len(position)) if position[i] < ends[i]]
            if not backlog:
                break
            share = max(1, (budget - taken) // len(backlog))
            for i in backlog:
                step = min(share, ends[i] - position[i], budget - taken)
                position[i] += step
                taken += step
        if taken:
            request = [
                ConsumerGroupTopicPartitions(
                    self.group,
                    [TopicPartition(self.topic, tp.partition, o) for tp, o in zip(self.tps, position, strict=True)],
                )
            ]
            self.admin.alter_consumer_group_offsets(request)[self.group].result(timeout=10)
        return taken


@contextmanager
def environment(tmp: Path) -> Iterator[tuple[EnvTest, str, client.ApiClient]]:
    with ExitStack() as stack:
        envtest = stack.enter_context(EnvTest())
        bootstrap = stack.enter_context(ensure_broker())
        envtest.kubectl("apply", "--server-side", "-f", str(kit.CRD_FILE), check=True)
        envtest.kubectl("wait", "--for=condition=Established", "crd/orderflows.orderflow.dev", check=True)
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(envtest.kubeconfig), client_configuration=configuration)
        api = client.ApiClient(configuration)
        stack.callback(api.close)
        yield envtest, bootstrap, api


def namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


# -- 1. reaction time ------------------------------------------------------------------------------------------


def bench_reaction(
    api: client.ApiClient, admin: AdminClient, bootstrap: str, ns: str, *, reps: int, interval: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    prefix = f"r{uuid.uuid4().hex[:8]}"
    stage = kit.stage("inventory", prefix, maxReplicas=4, lagPerReplica=100)
    topic, group, deployment = stage["topics"][0], stage["consumerGroup"], stage["deployment"]
    kit.create_topic(admin, topic, 4)
    kit.commit(admin, group, topic, dict.fromkeys(range(4), 0))
    kit.make_deployment(api, ns, deployment)
    kit.create_flow(
        api,
        ns,
        kit.orderflow(
            "reaction", bootstrap, [stage], scaling={"intervalSeconds": interval, "scaleDownStabilizationSeconds": 0}
        ),
    )
    kit.wait_condition(api, ns, "reaction", "Ready", "True", timeout=60)
    reactions: list[float] = []
    bursts: list[float] = []
    in_tick: list[float] = []  # scale-up patch seen, minus (the scale-down tick seen + one interval)
    for rep in range(reps):
        was_scaled = kit.replicas(api, ns, deployment) > 1
        kit.commit_at_end(admin, group, topic)
        kit.wait_for(lambda: kit.replicas(api, ns, deployment) == 1, timeout=3 * interval + 10, interval=0.02)
        down_seen = time.monotonic()
        time.sleep(rng.uniform(0, interval))  # a random phase against the operator's ticks
        kit.produce(bootstrap, topic, 400)  # lag 400 -> 4 replicas
        t0 = time.monotonic()
        kit.wait_for(lambda: kit.replicas(api, ns, deployment) > 1, timeout=3 * interval + 10, interval=0.02)
        seen = time.monotonic()
        reactions.append(seen - t0)
        bursts.append(t0)
        if was_scaled:  # the scale-down marked a tick: the next one is due one interval later
            in_tick.append(seen - down_seen - interval)
        print(f"  burst {rep + 1}/{reps}: scaled {reactions[-1]:.2f}s after the burst", flush=True)

    # The baselines, on the same burst instants, with schedule phases drawn once per run.
    keda_phase, hpa_phase = rng.uniform(0, KEDA_POLL_S), rng.uniform(0, HPA_SYNC_S)
    keda = [next_tick(next_tick(t, keda_phase, KEDA_POLL_S), hpa_phase, HPA_SYNC_S) - t for t in bursts]
    hpa_only = [next_tick(t, hpa_phase, HPA_SYNC_S) - t for t in bursts]
    # Many phases, for the expected values (one run's phases are one sample).
    mc = random.Random(seed + 1)
    keda_mc = []
    for _ in range(20_000):
        t = mc.uniform(0, 1000)
        p, h = mc.uniform(0, KEDA_POLL_S), mc.uniform(0, HPA_SYNC_S)
        keda_mc.append(next_tick(next_tick(t, p, KEDA_POLL_S), h, HPA_SYNC_S) - t)
    # The operator's reaction is the wait for its next tick plus its own work: expected over all phases.
    own = statistics.median(in_tick) if in_tick else 0.0
    operator_mc = [mc.uniform(0, interval) + max(own, 0.0) for _ in range(20_000)]
    return {
        "interval_s": interval,
        "operator_expected": summary(operator_mc),
        "operator": summary(reactions),
        "operator_latency_within_tick": summary(in_tick) if in_tick else None,
        "keda_30s_poll_plus_hpa_same_bursts": summary(keda),
        "hpa_only_15s_same_bursts": summary(hpa_only),
        "keda_30s_poll_plus_hpa_expected": summary(keda_mc),
        "samples_s": [round(r, 3) for r in reactions],
    }


# -- 2. load ramp ----------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    topic: str
    group: str
    deployment: str
    offsets: Offsets
    replicas: int = 1
    consumed_carry: float = 0.0


@dataclass
class Run:
    policy: str
    ns: str
    stages: list[Stage]
    samples: list[dict[str, Any]] = field(default_factory=list)
    changes: int = 0


CAPACITY = 40.0  # messages/s one simulated replica consumes
PARTITIONS = 8
LAG_TARGET = 100


class KedaLike:
    """KEDA's Kafka scaler + HPA as a loop: read lag every 30 s; on each 15 s HPA sync, desired =
    ceil(lag / target) (10 % tolerance), scale up at once, scale down only to the max of the window."""

    def __init__(self, run: Run, *, window: float, phase_poll: float, phase_hpa: float) -> None:
        self.run, self.window = run, window
        self.phase_poll, self.phase_hpa = phase_poll, phase_hpa
        self.metric: dict[str, int] = {s.name: 0 for s in run.stages}
        self.recs: dict[str, list[tuple[float, int]]] = {s.name: [] for s in run.stages}
        self.next_poll = phase_poll
        self.next_sync = phase_hpa

    def step(self, now: float, lags: dict[str, int]) -> None:
        if now >= self.next_poll:
            self.metric = dict(lags)
            self.next_poll = next_tick(now + 1e-6, self.phase_poll, KEDA_POLL_S)
        if now >= self.next_sync:
            self.next_sync = next_tick(now + 1e-6, self.phase_hpa, HPA_SYNC_S)
            for s in self.run.stages:
                ratio = self.metric[s.name] / (LAG_TARGET * max(s.replicas, 1))
                desired = (
                    s.replicas if abs(ratio - 1) <= 0.1 else max(1, min(8, math.ceil(self.metric[s.name] / LAG_TARGET)))
                )
                recs = [(t, r) for t, r in self.recs[s.name] if now - t < self.window] + [(now, desired)]
                self.recs[s.name] = recs
                new = desired if desired >= s.replicas else min(s.replicas, max(r for _, r in recs))
                if new != s.replicas:
                    s.replicas = new
                    self.run.changes += 1


def setup_ramp_run(
    api: client.ApiClient, admin: AdminClient, bootstrap: str, policy: str, *, interval: int, window: int
) -> Run:
    ns = namespace(api, f"bench-{policy.lower()}")
    prefix = f"b{uuid.uuid4().hex[:8]}"
    stages = []
    for name in ("inventory", "shipping"):
        topic, group, deployment = f"{prefix}.{name}", f"{prefix}-{name}", f"{prefix}-{name}"
        kit.create_topic(admin, topic, PARTITIONS)
        kit.commit(admin, group, topic, dict.fromkeys(range(PARTITIONS), 0))
        kit.make_deployment(api, ns, deployment)
        stages.append(Stage(name, topic, group, deployment, Offsets(admin, topic, group, PARTITIONS)))
    run = Run(policy, ns, stages)
    if policy != "KedaLike":
        spec_stages = [
            {
                "name": "inventory",
                "deployment": stages[0].deployment,
                "consumerGroup": stages[0].group,
                "topics": [stages[0].topic],
                "minReplicas": 1,
                "maxReplicas": 8,
                "lagPerReplica": LAG_TARGET,
                "ratePerReplica": int(CAPACITY),
            },
            {
                "name": "shipping",
                "deployment": stages[1].deployment,
                "consumerGroup": stages[1].group,
                "topics": [stages[1].topic],
                "minReplicas": 1,
                "maxReplicas": 8,
                "lagPerReplica": LAG_TARGET,
                "ratePerReplica": int(CAPACITY),
                "upstream": ["inventory"],
            },
        ]
        kit.create_flow(
            api,
            ns,
            kit.orderflow(
                "ramp",
                bootstrap,
                spec_stages,
                scaling={"intervalSeconds": interval, "scaleDownStabilizationSeconds": window, "policy": policy},
            ),
        )
    return run


def bench_ramp(
    api: client.ApiClient,
    admin: AdminClient,
    bootstrap: str,
    *,
    interval: int,
    window: int,
    ramp_s: float,
    hold_s: float,
    idle_s: float,
    peak_rate: float,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    runs = [
        setup_ramp_run(api, admin, bootstrap, p, interval=interval, window=window)
        for p in ("FlowAware", "LagOnly", "KedaLike")
    ]
    for run in runs[:2]:
        kit.wait_condition(api, run.ns, "ramp", "Ready", "True", timeout=60)
    keda = KedaLike(
        runs[2], window=window, phase_poll=rng.uniform(0, KEDA_POLL_S), phase_hpa=rng.uniform(0, HPA_SYNC_S)
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    total = ramp_s + hold_s + idle_s
    tick = 0.25
    started = last = time.monotonic()
    produced_carry = 0.0
    last_replicas = {(r.policy, s.name): 1 for r in runs for s in r.stages}
    print(f"  ramp 0 -> {peak_rate:g} orders/s over {ramp_s:g}s, hold {hold_s:g}s, idle {idle_s:g}s", flush=True)
    while (now := time.monotonic() - started) < total:
        dt, last = time.monotonic() - last, time.monotonic()
        rate = peak_rate * min(now / ramp_s, 1.0) if now < ramp_s + hold_s else 0.0
        produced_carry += rate * dt
        batch = int(produced_carry)
        produced_carry -= batch
        for run in runs:
            for i in range(batch):
                producer.produce(run.stages[0].topic, key=f"{now}-{i}".encode(), value=b"{}")
        producer.flush(5)
        for run in runs:
            lags: dict[str, int] = {}
            for idx, s in enumerate(run.stages):
                if run.policy != "KedaLike":
                    s.replicas = kit.replicas(api, run.ns, s.deployment)
                    if s.replicas != last_replicas[(run.policy, s.name)]:
                        run.changes += 1
                        last_replicas[(run.policy, s.name)] = s.replicas
                ends, committed = s.offsets.ends(), s.offsets.committed()
                s.consumed_carry += s.replicas * CAPACITY * dt
                budget = int(s.consumed_carry)
                s.consumed_carry -= budget
                taken = s.offsets.consume(budget, ends, committed)
                if idx + 1 < len(run.stages):  # what a stage handles, it emits to the next stage
                    nxt = run.stages[idx + 1].topic
                    for i in range(taken):
                        producer.produce(nxt, key=f"{now}-{i}".encode(), value=b"{}")
                lags[s.name] = sum(ends) - sum(committed) - taken
            if run.policy == "KedaLike":
                keda.step(now, lags)
            run.samples.append(
                {
                    "t": now,
                    "dt": dt,
                    "rate": rate,
                    **{f"lag_{k}": v for k, v in lags.items()},
                    **{f"replicas_{s.name}": s.replicas for s in run.stages},
                }
            )
        producer.poll(0)
        time.sleep(max(0.0, tick - (time.monotonic() - last)))
    producer.flush(30)

    results: dict[str, Any] = {}
    for run in runs:
        res: dict[str, Any] = {"scaling_changes": run.changes}
        for s in run.stages:
            first_up = next((x["t"] for x in run.samples if x[f"replicas_{s.name}"] > 1), None)
            res[s.name] = {
                "first_scale_up_s": None if first_up is None else round(first_up, 1),
                "peak_lag": max(x[f"lag_{s.name}"] for x in run.samples),
                "lag_seconds": round(sum(x[f"lag_{s.name}"] * x["dt"] for x in run.samples)),
                "replica_seconds": round(sum(x[f"replicas_{s.name}"] * x["dt"] for x in run.samples)),
                "peak_replicas": max(x[f"replicas_{s.name}"] for x in run.samples),
            }
        results[run.policy] = res
    return results


# -- report ----------------------------------------------------------------------------------------------------


def print_reaction(r: dict[str, Any]) -> None:
    op = r["operator"]
    print(f"   operator (interval {r['interval_s']}s): median {op['median']:.2f}s  p90 {op['p90']:.2f}s")
    if r.get("operator_latency_within_tick"):
        lat = r["operator_latency_within_tick"]
        print(
            f"   of which the operator's own work (tick start -> patch visible, +-20 ms polling): "
            f"median {lat['median'] * 1000:.0f} ms  p90 {lat['p90'] * 1000:.0f} ms"
        )
    exp = r["operator_expected"]
    print(f"   operator, expected over all tick phases: median {exp['median']:.2f}s  p90 {exp['p90']:.2f}s")
    for label, key, ref in (
        ("KEDA 30s poll + HPA 15s, same bursts", "keda_30s_poll_plus_hpa_same_bursts", op),
        ("KEDA 30s poll + HPA 15s, expected   ", "keda_30s_poll_plus_hpa_expected", exp),
        ("HPA-only 15s sync, same bursts      ", "hpa_only_15s_same_bursts", op),
    ):
        b = r[key]
        print(
            f"   {label}: median {b['median']:.2f}s  p90 {b['p90']:.2f}s"
            f"  -> {b['median'] / ref['median']:.1f}x (median) / {b['p90'] / ref['p90']:.1f}x (p90) slower"
        )


def print_ramp(ramp: dict[str, Any]) -> None:
    cols = ("policy", "stage", "1st up(s)", "peak lag", "lag*s", "repl*s", "peak rep")
    print("   " + " ".join(f"{c:>10}" for c in cols))
    for policy, res in ramp.items():
        for stage in ("inventory", "shipping"):
            x = res[stage]
            first = "-" if x["first_scale_up_s"] is None else f"{x['first_scale_up_s']:.1f}"
            row = (policy, stage, first, x["peak_lag"], x["lag_seconds"], x["replica_seconds"], x["peak_replicas"])
            print("   " + " ".join(f"{v!s:>10}" for v in row))
        print(f"   {policy:>10} scaling changes: {res['scaling_changes']}")

    def ratio(a: str, b: str, stage: str, key: str) -> str:
        x, y = ramp[a][stage][key], ramp[b][stage][key]
        return "n/a" if not y else f"{x / y:.1f}x"

    for stage in ("inventory", "shipping"):
        print(
            f"   {stage}: lag*s KedaLike/FlowAware {ratio('KedaLike', 'FlowAware', stage, 'lag_seconds')}, "
            f"LagOnly/FlowAware {ratio('LagOnly', 'FlowAware', stage, 'lag_seconds')}; "
            f"peak lag KedaLike/FlowAware {ratio('KedaLike', 'FlowAware', stage, 'peak_lag')}, "
            f"LagOnly/FlowAware {ratio('LagOnly', 'FlowAware', stage, 'peak_lag')}"
        )


# -- main ------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="lag bursts to time (default 10)")
    parser.add_argument("--interval", type=int, default=5, help="the OrderFlow's scaling.intervalSeconds (default 5)")
    parser.add_argument("--ramp-seconds", type=float, default=60, help="length of the load ramp (default 60)")
    parser.add_argument("--hold-seconds", type=float, default=30, help="time at peak load (default 30)")
    parser.add_argument("--idle-seconds", type=float, default=30, help="time without load after it (default 30)")
    parser.add_argument("--peak-rate", type=float, default=160, help="orders/s at the top of the ramp (default 160)")
    parser.add_argument("--window", type=int, default=30, help="scale-down stabilization seconds (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-ramp", action="store_true", help="time the bursts only")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--operator-log", type=Path, help="keep the operator's log here")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="orderflow-bench-") as tmp,
        environment(Path(tmp)) as (envtest, bootstrap, api),
    ):
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert envtest.kubeconfig is not None, "EnvTest.start() writes the kubeconfig"
        operator = kit.OperatorProcess(kubeconfig=envtest.kubeconfig, log_path=Path(tmp) / "operator.log")
        operator.start()
        try:
            print(f"1. reaction to a lag burst ({args.reps} bursts, interval {args.interval}s)", flush=True)
            ns = namespace(api, "bench-reaction")
            results["reaction"] = r = bench_reaction(
                api, admin, bootstrap, ns, reps=args.reps, interval=args.interval, seed=args.seed
            )
            print_reaction(r)
            if not args.skip_ramp:
                print("2. load ramp, three policies side by side", flush=True)
                results["ramp"] = bench_ramp(
                    api,
                    admin,
                    bootstrap,
                    interval=args.interval,
                    window=args.window,
                    ramp_s=args.ramp_seconds,
                    hold_s=args.hold_seconds,
                    idle_s=args.idle_seconds,
                    peak_rate=args.peak_rate,
                    seed=args.seed,
                )
                print_ramp(results["ramp"])
        finally:
            operator.stop()
            if args.operator_log:
                args.operator_log.write_text(operator.log_text())
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
