"""The scenarios of issue 7, as load generator specs and the figures each one reports.

Sizes come in two sets: full (the issue's numbers) and quick (a smoke run of a few seconds each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UP, DOWN = "↑", "↓"  # which way is better, shown beside each figure

FANOUT = ("deliveries/s", "deliveries_per_s", UP)
PER_CPU = ("deliveries per server CPU-s", "deliveries_per_cpu_s", UP)
CPU = ("server CPU %", "server_cpu_pct", DOWN)
CPU_PARTS = (("  of which server processes %", "cpu_pct_server", DOWN),
             ("  of which Postgres %", "cpu_pct_postgres", DOWN),
             ("  of which Redis %", "cpu_pct_redis", DOWN))
P50, P99, MAX = ("p50 ms", "p50_ms", DOWN), ("p99 ms", "p99_ms", DOWN), ("max ms", "max_ms", DOWN)
LOST = ("lost deliveries", "lost", DOWN)
GEN = ("generator core % (>= 90: figure measures the client)", "gen_cpu_pct", DOWN)
FSYNC = (("fsync p50 ms (probe on Postgres's disk)", "fsync_p50_ms", DOWN),
         ("fsync p99 ms", "fsync_p99_ms", DOWN), ("fsync max ms", "fsync_max_ms", DOWN))
PG = (("Postgres commits/s", "pg_commits_per_s", DOWN),
      ("Postgres rows written per commit", "pg_rows_per_commit", UP))
OUTBOX_READS = ("outbox index entries read per webhook received", "pg_outbox_reads_per_webhook",
                DOWN)
MSGS = ("messages/s persisted (acked)", "messages_per_s", UP)
MSGS_CPU = ("messages per server CPU-s", "messages_per_cpu_s", UP)
HOOKS = ("webhooks received/s", "webhooks_per_s", UP)
HOOK_P50 = ("webhook p50 ms (publish -> received)", "webhook_p50_ms", DOWN)
HOOK_P99 = ("webhook p99 ms", "webhook_p99_ms", DOWN)
INVERSIONS = ("messages stored after one sent later (must be 0)", "inversions", DOWN)
LATE = ("most places late", "most_places_late", DOWN)
ISOLATION = (("quiet tenant REST p50 ms, baseline", "baseline_p50_ms", DOWN),
             ("quiet tenant REST p99 ms, baseline", "baseline_p99_ms", DOWN),
             ("quiet tenant REST p50 ms, other tenant flooding", "flood_p50_ms", DOWN),
             ("quiet tenant REST p99 ms, other tenant flooding", "flood_p99_ms", DOWN),
             ("p99 flooding / baseline (target <= 2)", "p99_ratio", DOWN),
             ("quiet tenant calls failed", "victim_failed", DOWN),
             ("flood: pings sent", "flood_sent_pings", UP),
             ("flood: ping sockets closed 1008", "flood_closes_pings_1008", UP),
             ("flood: message frames sent", "flood_sent_frames", UP),
             ("flood: frame sockets closed 1008", "flood_closes_frames_1008", UP),
             ("flood: bad-key REST calls answered 401", "flood_statuses_bad_keys_401", DOWN),
             ("flood: bad-key REST calls answered 429", "flood_statuses_bad_keys_429", UP),
             ("flood: bad-key sockets closed 4401", "flood_closes_bad_key_sockets_4401", DOWN),
             ("flood: bad-key sockets closed 4429", "flood_closes_bad_key_sockets_4429", UP))
ISOLATION_HOOKS = (
    ("quiet tenant webhook p50 ms (publish -> received), baseline", "baseline_webhook_p50_ms",
     DOWN),
    ("quiet tenant webhook p99 ms, baseline", "baseline_webhook_p99_ms", DOWN),
    ("quiet tenant webhook p50 ms, other tenant's endpoint slow", "flood_webhook_p50_ms", DOWN),
    ("quiet tenant webhook p99 ms, other tenant's endpoint slow", "flood_webhook_p99_ms", DOWN),
    ("webhook p99 flooding / baseline (target <= 2)", "webhook_p99_ratio", DOWN),
    ("quiet tenant webhooks received, flooding", "flood_webhook_received", UP))
# The limits our other scenarios turn off, back at their defaults.
DEFAULT_LIMITS = {"CHATSERVER_LIMITS_REQUESTS_PER_SECOND_PER_KEY": "100",
                  "CHATSERVER_LIMITS_SOCKET_FRAMES_PER_SECOND": "20",
                  "CHATSERVER_LIMITS_MAX_SOCKETS_PER_INSTANCE": "10000"}
# Loops of each flood of bench/flood.py. The webhook part of issue 14.3 (a slow endpoint of the
# flooding tenant, the quiet tenant's webhook latency) is bench/isolation.py's Hooks.
FLOODS = {"pings": 4, "frames": 4, "bad_keys": 8, "bad_key_sockets": 4}


@dataclass(frozen=True)
class Sizes:
    idle_steps: tuple[int, ...]
    room: int  # subscribers of the fan-out room
    rooms: int  # many-rooms scenario: rooms of two
    hook_rooms: int  # webhook scenarios: conversations, each with its callback_url
    member_rooms: int  # many small rooms where both members post over their websockets
    cluster_rooms: int  # many rooms of five, one Redis against a Redis Cluster
    write_rooms: int
    duration: float
    drain: float


FULL = Sizes(idle_steps=(5000, 10000, 15000), room=1000, rooms=500, hook_rooms=1000,
             member_rooms=2000, cluster_rooms=500, write_rooms=1000, duration=10.0, drain=10.0)
QUICK = Sizes(idle_steps=(300, 600), room=200, rooms=50, hook_rooms=20, member_rooms=100,
              cluster_rooms=100, write_rooms=10, duration=2.0, drain=5.0)
PRIMARY_CPU = tuple((f"  Redis primary {i} CPU %", f"cpu_pct_redis{i}", DOWN) for i in (1, 2, 3))
PRIMARY_SHARE = tuple((f"  primary {i}'s share of the publishes %", f"publish_share_{i}", UP)
                      for i in (1, 2, 3))


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    rooms: int
    spec: dict[str, Any]
    metrics: tuple[tuple[str, str, str], ...]
    instances: int = 1
    servers: tuple[str, ...] = ("ours", "bare", "socketio")
    idle: bool = False
    ours_env: dict[str, str] = field(default_factory=dict)  # settings for our server
    cluster: bool = False  # our bus on a 3-primary Redis Cluster instead of one Redis
    webhooks: bool = False  # rooms get a callback_url served by the generator
    team_endpoints: int = 0  # with webhooks: that many team-wide endpoints
    callbacks: bool = False  # with webhooks: every conversation has a callback_url
    workers: int = 0  # `chatserver worker` processes deliver the webhooks (0: the server does)
    fsync_probe: bool = False  # ours: time fdatasync on Postgres's disk beside (bench.fsync_probe)
    check_order: bool = False  # our server: page the history, count per-publisher inversions
    notes: dict[str, str] = field(default_factory=dict)
    generator: str = "bench.loadgen"  # the module the runner starts as the load generator
    tenants: int = 0  # teams given a key and a conversation each (spec["tenants"])


def _idle_metrics(steps: tuple[int, ...]) -> tuple[tuple[str, str, str], ...]:
    return (*((f"KiB RSS per socket at {n}", f"kib_at_{n}", DOWN) for n in steps),
            ("KiB RSS per socket after 1 message", "kib_after_message", DOWN),
            ("sockets ready (last step)", "ready", UP))


def scenarios(sizes: Sizes) -> list[Scenario]:
    steps, room, d = sizes.idle_steps, sizes.room, sizes.duration
    per_idle_room = 100
    timing = {"duration": d, "drain": sizes.drain}
    fan = (FANOUT, PER_CPU, CPU, *CPU_PARTS, P50, P99, MAX, LOST, GEN)
    not_durable = {"bare": "not durable", "socketio": "not durable"}
    return [
        Scenario("1", "idle sockets (rooms of 100), server RSS", -(-steps[-1] // per_idle_room),
                 {"steps": list(steps), "per_room": per_idle_room, "touch": True, **timing},
                 _idle_metrics(steps), idle=True),
        Scenario("1d", "idle sockets, clients offering permessage-deflate (aiohttp client)",
                 -(-steps[0] // per_idle_room),
                 {"steps": [steps[0]], "per_room": per_idle_room, "touch": True,
                  "client": "aiohttp", "compress": 15, **timing},
                 _idle_metrics(steps[:1]), idle=True),
        Scenario("1z", "the same with our [realtime] compress = true (deflate negotiated)",
                 -(-steps[0] // per_idle_room),
                 {"steps": [steps[0]], "per_room": per_idle_room, "touch": True,
                  "client": "aiohttp", "compress": 15, **timing},
                 _idle_metrics(steps[:1]), idle=True, servers=("ours",),
                 ours_env={"CHATSERVER_REALTIME_COMPRESS": "true"}),
        Scenario("2", f"fan-out: 1 room x {room}, publisher as fast as possible", 1,
                 {"per_room": room, "window": 20, "publishers": 8, **timing}, fan),
        Scenario("2o", f"per-sender order: 1 room x {room}, one publisher socket pipelining "
                 "64 sends, Redis; history checked", 1,
                 {"per_room": room, "window": 64, "publishers": 1, "via": "ws", **timing},
                 (MSGS, INVERSIONS, LATE, FANOUT, CPU, LOST), servers=("ours",),
                 check_order=True,  # the publisher is a socket beyond the room's subscribers
                 ours_env={"CHATSERVER_LIMITS_MAX_SOCKETS_PER_CONVERSATION": str(room + 1)}),
        Scenario("3", f"fixed rate: 50 msg/s into 1 room x {room}", 1,
                 {"per_room": room, "rate": 50.0, **timing},
                 (P50, P99, MAX, FANOUT, CPU, LOST, *FSYNC), fsync_probe=True),
        Scenario("4", f"many rooms: {sizes.rooms} x 2, publishers spread", sizes.rooms,
                 {"per_room": 2, "window": 5, "publishers": 50, **timing},
                 (MSGS, FANOUT, PER_CPU, CPU, *CPU_PARTS, P99, LOST, GEN)),
        Scenario("4w", f"many small rooms: {sizes.member_rooms} x 2, each socket posting over "
                 "its websocket, one send in flight, ack after commit", sizes.member_rooms,
                 {"per_room": 2, "window": 1, "via": "members", **timing},
                 (MSGS, MSGS_CPU, FANOUT, CPU, *CPU_PARTS, P99, LOST, GEN, *PG),
                 notes=not_durable),
        Scenario("5", f"cross-instance: 2 instances + Redis, 1 room x {room} split, max rate", 1,
                 {"per_room": room, "window": 20, "publishers": 8, **timing}, fan,
                 instances=2, servers=("ours", "socketio")),
        Scenario("5r", f"cross-instance: 2 instances + Redis, 50 msg/s into 1 room x {room}", 1,
                 {"per_room": room, "rate": 50.0, **timing}, (P50, P99, MAX, FANOUT, CPU, LOST),
                 instances=2, servers=("ours", "socketio")),
        *_cluster_scenarios(sizes, fan, timing),
        Scenario("6", "write path: REST posts, 64 concurrent, no subscribers",
                 sizes.write_rooms, {"per_room": 0, "publishers": 64, **timing},
                 (MSGS, MSGS_CPU, CPU, *CPU_PARTS), notes=not_durable),
        Scenario("6h", "write path: REST posts as in 6, with a webhook per message",
                 sizes.write_rooms,
                 {"per_room": 0, "publishers": 64, "duration": d, "drain": 3 * sizes.drain},
                 (MSGS, MSGS_CPU, CPU, *CPU_PARTS, HOOKS, HOOK_P50, HOOK_P99, LOST),
                 servers=("ours",), webhooks=True, callbacks=True,
                 ours_env={"CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"}),
        *_webhook_scenarios(sizes),
        Scenario("6e", "write path: REST posts, 8 concurrent, one team with 50 team-wide "
                 "webhook endpoints (message.created): 50 deliveries per message",
                 sizes.write_rooms,
                 {"per_room": 0, "publishers": 8, "duration": d, "drain": 3 * sizes.drain},
                 (MSGS, CPU, *CPU_PARTS, HOOKS, HOOK_P50, HOOK_P99, LOST),
                 servers=("ours",), webhooks=True, team_endpoints=50,
                 ours_env={"CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"}),
        Scenario("6w", "write path: websocket sends, 32 sockets x 8 in flight, ack after commit",
                 sizes.write_rooms, {"per_room": 0, "publishers": 32, "window": 8, "via": "ws",
                                     **timing},
                 (MSGS, MSGS_CPU, CPU, *CPU_PARTS), notes=not_durable),
        Scenario("7i", "isolation: a quiet tenant's REST p99 and webhook latency while another "
                 "tenant floods (pings, message frames, random keys over REST and websockets, "
                 "a webhook endpoint that answers after 10 s for 100 new conversations)", 0,
                 {"duration": d, "victim_rate": 40.0, "ramp": 1.0, "floods": FLOODS,
                  "slow_endpoint_delay": 10.0, "flood_conversations": 100},
                 (*ISOLATION, *ISOLATION_HOOKS, CPU), servers=("ours",),
                 ours_env={**DEFAULT_LIMITS,
                           "CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"},
                 generator="bench.isolation", tenants=2),
    ]


def _cluster_scenarios(sizes: Sizes, fan: tuple[tuple[str, str, str], ...],
                       timing: dict[str, float]) -> list[Scenario]:
    """One Redis against a 3-primary Redis Cluster, same load, run one after the other: 5 and 7
    on one Redis, 5c and 7c on the cluster (a room's traffic lives on the primary of its slot)."""
    room, rooms = sizes.room, sizes.cluster_rooms
    split = {"per_room": room, "window": 20, "publishers": 8, **timing}
    many = {"per_room": 5, "window": 5, "publishers": 50, **timing}
    many_figures = (MSGS, FANOUT, CPU, *CPU_PARTS, P99, LOST, GEN)
    return [
        Scenario("5c", f"cross-instance as 5, on a 3-primary Redis Cluster (1 room x {room})", 1,
                 split, (*fan, *PRIMARY_CPU), instances=2, servers=("ours",), cluster=True),
        Scenario("7", f"many rooms: {rooms} x 5 on 2 instances + one Redis", rooms, many,
                 many_figures, instances=2, servers=("ours",)),
        Scenario("7c", f"many rooms: {rooms} x 5 on 2 instances + a 3-primary Redis Cluster",
                 rooms, many, (*many_figures, *PRIMARY_CPU, *PRIMARY_SHARE), instances=2,
                 servers=("ours",), cluster=True),
    ]


def _webhook_scenarios(sizes: Sizes) -> list[Scenario]:
    """Webhooks that keep up (issue 19.3): every conversation has a callback_url and the team one
    endpoint, two deliveries per message, the receiver answers after 5 ms; at a fixed 1,000
    messages/s, then as fast as the posters go with the dispatcher in the server, in one
    `chatserver worker`, in two."""
    rooms, d = sizes.hook_rooms, sizes.duration
    base = {"per_room": 0, "webhook_delay_ms": 5.0, "duration": d, "drain": 3 * sizes.drain}
    figures = (MSGS, CPU, *CPU_PARTS, HOOKS, HOOK_P50, HOOK_P99, LOST, *PG, OUTBOX_READS)
    common: dict[str, Any] = {
        "servers": ("ours",), "webhooks": True, "callbacks": True, "team_endpoints": 1,
        "ours_env": {"CHATSERVER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
                     # 5 ms per request: 20 in flight (the default) would cap 4,000/s.
                     "CHATSERVER_WEBHOOKS_CONCURRENCY": "100"}}
    what = (f"{rooms} conversations with a callback_url each plus one team-wide endpoint, "
            "receiver answers in 5 ms")
    return [
        Scenario("6r", f"webhooks at 1,000 messages/s (REST): {what}", rooms,
                 {**base, "rate": 1000.0}, figures, **common),
        Scenario("6m", f"webhooks at full speed (REST, 64 posters): {what}", rooms,
                 {**base, "publishers": 64}, figures, **common),
        *(Scenario(f"6m{n}", f"6m with the dispatcher in {n} `chatserver worker` process(es)",
                   rooms, {**base, "publishers": 64}, figures, workers=n, **common)
          for n in (1, 2)),
    ]
