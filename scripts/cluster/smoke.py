#!/usr/bin/env python3
"""Smoke test of the simulated cluster (scripts/cluster/up.sh must have run; run as root).

RabbitMQ, twice: a quorum queue declared through node 1 (so node 1 leads it) gets 3 members;
a publisher with confirms and a consumer, both on node 1, and an observer publisher on node 2
run while (1) the leader's beam.smp is SIGKILLed, then started again, and (2) the leader's
host is cut off the network, then healed. Publisher and consumer must reconnect to a surviving
node and go on, the node must become an online member again, and every confirmed message must
arrive (duplicates are allowed: at-least-once).

Redis: writes through redis-py's Sentinel client while the primary is SIGKILLed; the client
follows the failover. Plain SETs count as acknowledged when SET returned OK, "WAIT" writes only
when `WAIT 1 100` reported a replica had them. Lost acknowledged writes are counted for both.
The killed instance starts again as a replica of the new primary.

Prints the timings and counts, and exits 1 when an invariant fails: a confirmed message or a
WAIT-acknowledged write lost, a queue without 3 members, a node that does not rejoin, a pause
longer than the limits below. The last line reads "cluster smoke: N passed, N failed".
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import redis
import redis.exceptions
from redis.sentinel import Sentinel

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("CLUSTER_STATE_DIR", HERE.parent.parent / ".cache" / "cluster"))

# Limits of this smoke test (generous: 2 shared cores).
MAX_RABBIT_PAUSE_S = 30.0
MAX_REDIS_FAILOVER_S = 15.0
MAX_REJOIN_S = 90.0
# AMQP heartbeat the smoke clients ask for (RabbitMQ's default is 60 s).
HEARTBEAT_S = 5
# Consecutive nacks after which the publisher opens a new channel (see the publisher).
NACKS_BEFORE_NEW_CHANNEL = 3

T0 = time.monotonic()
failures: list[str] = []
passes: list[str] = []


_out = threading.Lock()


def log(msg: str) -> None:
    with _out:
        sys.stdout.write(f"[smoke {time.monotonic() - T0:7.2f}s] {msg}\n")
        sys.stdout.flush()


def check(ok: bool, what: str) -> None:
    log(("OK   " if ok else "FAIL ") + what)
    (passes if ok else failures).append(what)


def read_env() -> dict[str, str]:
    env = {}
    for line in (STATE / "env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


def sh(*args: str, timeout: float = 150) -> str:
    out = subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=timeout)
    return out.stdout.strip()


def kill(pid: int) -> float:
    """SIGKILL pid, wait until it is gone; return the time of the kill (monotonic)."""
    os.kill(pid, 9)
    t = time.monotonic()
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.01)
    return t


def preflight(env: dict[str, str]) -> None:
    """Start any node that is down (an earlier, interrupted run may have left one killed)."""
    for node in ("rabbit@h1", "rabbit@h2", "rabbit@h3", "redis-a", "redis-b",
                 "sentinel-1", "sentinel-2", "sentinel-3"):
        if not sh(str(HERE / "node.sh"), "pid", node):
            log(f"{node} is down: starting it")
            sh(str(HERE / "node.sh"), "start", node)


def kv(line: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def host_of(url: str, env: dict[str, str]) -> str:
    for h in ("H1", "H2", "H3"):
        if env.get(f"INFERQ_CLUSTER_RABBIT_{h}_URL") == url:
            return h.lower()
    return url


# ---------------------------------------------------------------------------------------------
# RabbitMQ


class Amqp:
    """A blocking pika connection that fails over along a list of AMQP URLs."""

    def __init__(self, name: str, urls: list[str], env: dict[str, str], start: int = 0):
        self.name, self.urls, self.env, self.idx = name, urls, env, start
        self.conn = None
        self.ch = None
        self.reconnects: list[tuple[str, float]] = []  # (host, seconds without a connection)

    def connect(self, first: bool = False) -> None:
        t = time.monotonic()
        attempt = 0
        while True:
            url = self.urls[self.idx % len(self.urls)]
            p = pika.URLParameters(url)
            p.connection_attempts, p.retry_delay = 1, 0
            p.socket_timeout, p.blocked_connection_timeout = 2, 10
            # Heartbeats are what notice a peer that vanished without a RST (a partition).
            p.heartbeat = HEARTBEAT_S
            try:
                self.conn = pika.BlockingConnection(p)
                self.ch = self.conn.channel()
                break
            except pika.exceptions.AMQPError as e:
                attempt += 1
                log(f"{self.name}: {host_of(url, self.env)} refused ({type(e).__name__}); next node")
                self.idx += 1
                if attempt > 60:
                    raise
                time.sleep(0.1 if attempt % len(self.urls) else 0.5)
        h = host_of(url, self.env)
        if not first:
            gap = time.monotonic() - t
            self.reconnects.append((h, gap))
            log(f"{self.name}: reconnected to {h} ({url}) after {gap * 1000:.0f} ms")
        self.host = h

    def lost(self, e: Exception) -> None:
        log(f"{self.name}: connection to {self.host} lost ({type(e).__name__})")
        try:
            self.conn.close()
        except Exception:
            pass
        self.idx += 1  # the next node first


def rabbit_phase(env: dict[str, str], rate: float, fault: str) -> dict[str, float]:
    """fault "kill": SIGKILL the leader's beam.smp, later start it again.
    fault "isolate": cut the leader's host off the bridge (no RST reaches anyone), later heal."""
    urls = env["INFERQ_CLUSTER_AMQP_URLS"].split(",")
    q = f"smoke-{fault}-{os.getpid()}-{int(time.time())}"
    pre = f"rabbit_{fault}_"
    timings: dict[str, float] = {}
    log(f"== RabbitMQ, fault: {fault} the leader of a quorum queue")

    admin = Amqp("admin", urls, env)
    admin.connect(first=True)
    # Declared through node 1: the leader goes to the declaring node (queue_leader_locator
    # client-local, RabbitMQ 3.10's default), so the clients below sit on the leader's node.
    admin.ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
    admin.conn.close()
    leader = kv(sh(str(HERE / "rabbit-leader.sh"), q))
    members = leader["members"].split(",")
    log(f"queue {q}: leader {leader['leader']} (pid {leader['pid']}), members {members}")
    check(len(members) == 3 and len(leader["online"].split(",")) == 3,
          "quorum queue declared with x-queue-type=quorum has 3 members, all online")

    confirmed: set[str] = set()
    received: list[str] = []
    observer_times: list[float] = []
    stop_pub = threading.Event()
    stop_con = threading.Event()
    confirm_times: list[float] = []
    confirm_hosts: list[str] = []  # the node each confirm came from
    receive_times: list[float] = []
    nacks: list[float] = []
    reopened: list[float] = []  # times the publisher reopened its channel after nacks
    lock = threading.Lock()

    pub = Amqp("publisher", urls, env, start=0)  # node 1 (h1), the leader
    con = Amqp("consumer", urls, env, start=0)

    def publisher() -> None:
        pub.connect(first=True)
        pub.ch.confirm_delivery()
        seq = 0
        streak = 0
        while not stop_pub.is_set():
            try:
                pub.ch.basic_publish("", q, f"p:{seq}".encode(),
                                     pika.BasicProperties(delivery_mode=2), mandatory=True)
                with lock:
                    confirmed.add(f"p:{seq}")
                    confirm_times.append(time.monotonic())
                    confirm_hosts.append(pub.host)
                seq += 1
                streak = 0
                time.sleep(1 / rate)
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as e:
                if not nacks or nacks[-1] < time.monotonic() - 1:
                    log(f"publisher: message {seq} {type(e).__name__} from {pub.host} ({e}); "
                        "sending it again every 50 ms")
                nacks.append(time.monotonic())
                streak += 1
                if streak >= NACKS_BEFORE_NEW_CHANNEL:
                    # RabbitMQ 3.10: a channel opened while the queue had no live leader keeps
                    # nacking (measured: for as long as the old leader stays down). A new
                    # channel on the same connection works at once.
                    log(f"publisher: {streak} nacks in a row: opening a new channel on {pub.host}")
                    try:
                        pub.ch.close()
                    except Exception:
                        pass
                    try:
                        pub.ch = pub.conn.channel()
                        pub.ch.confirm_delivery()
                    except (pika.exceptions.AMQPError, OSError) as e2:
                        pub.lost(e2)
                        pub.connect()
                        pub.ch.confirm_delivery()
                    reopened.append(time.monotonic())
                    streak = 0
                time.sleep(0.05)
            except (pika.exceptions.AMQPError, OSError) as e:
                pub.lost(e)
                pub.connect()
                pub.ch.confirm_delivery()

    def consumer() -> None:
        con.connect(first=True)
        while True:
            try:
                con.ch.basic_qos(prefetch_count=50)
                for method, _props, body in con.ch.consume(q, inactivity_timeout=0.5):
                    if method is None:
                        if stop_con.is_set():
                            con.conn.close()
                            return
                        continue
                    with lock:
                        received.append(body.decode())
                        receive_times.append(time.monotonic())
                    con.ch.basic_ack(method.delivery_tag)
            except (pika.exceptions.AMQPError, OSError) as e:
                con.lost(e)
                con.connect()

    def observer() -> None:
        """Publishes with confirms through node 2, never the faulty node: its pause is the
        cluster's own (leader election), without any client-side detection or reconnect."""
        p = pika.URLParameters(urls[1])
        p.heartbeat = HEARTBEAT_S
        conn = pika.BlockingConnection(p)
        ch = conn.channel()
        ch.confirm_delivery()
        seq = 0
        while not stop_pub.is_set():
            try:
                ch.basic_publish("", q, f"o:{seq}".encode(), pika.BasicProperties(delivery_mode=2))
                with lock:
                    confirmed.add(f"o:{seq}")
                    observer_times.append(time.monotonic())
                seq += 1
            except pika.exceptions.NackError:
                time.sleep(0.05)
            time.sleep(0.1)
        conn.close()

    tp = threading.Thread(target=publisher, daemon=True)
    tc = threading.Thread(target=consumer, daemon=True)
    to = threading.Thread(target=observer, daemon=True)
    tp.start()
    tc.start()
    to.start()
    time.sleep(3)

    victim = leader["leader"]
    with lock:
        before = len(confirmed)
    if fault == "kill":
        t_fault = kill(int(leader["pid"]))
        log(f"SIGKILLed {victim} (pid {leader['pid']}), the leader; {before} messages confirmed so far")
    else:
        # The veth's root end, named like the namespace; node.sh isolate does the same, slower.
        sh("ip", "link", "set", env[f"INFERQ_CLUSTER_{leader['host'].upper()}_NETNS"], "down")
        t_fault = time.monotonic()
        log(f"cut {leader['host']} ({victim}, the leader) off the network; {before} messages confirmed so far")
    new = kv(sh(str(HERE / "rabbit-leader.sh"), q, "--wait", "60", "--not", victim))
    log(f"new leader: {new['leader']} (term {new['term']}), online {new['online']} "
        f"(seen {time.monotonic() - t_fault:.2f}s after the fault, incl. ~1.3s of rabbitmq-queues)")
    # Keep publishing/consuming on the survivors until 5 s after the first confirm there.
    settle = time.monotonic() + (5 if fault == "kill" else 40)
    while time.monotonic() < settle:
        with lock:
            first = next((t for t, h in zip(confirm_times, confirm_hosts)
                          if t > t_fault and h != leader["host"]), None)
        if first is not None:
            settle = min(settle, first + 5)
        time.sleep(0.2)
    with lock:
        # Confirms from another node than the faulty one: a confirm the dying node sent just
        # before the kill can still be read after it.
        after = [t for t, h in zip(confirm_times, confirm_hosts) if t > t_fault and h != leader["host"]]
        last_before = max((t for t in confirm_times if t <= t_fault), default=t_fault)
        recv_after = [t for t in receive_times if t > t_fault]
    check(len(after) > 0, f"publishing goes on after the fault ({len(after)} confirms)")
    check(len(recv_after) > 0, f"consuming goes on after the fault ({len(recv_after)} deliveries)")
    if after:
        timings[pre + "publish_pause_s"] = after[0] - last_before
        timings[pre + "fault_to_first_confirm_s"] = after[0] - t_fault
    if recv_after:
        timings[pre + "fault_to_first_delivery_s"] = recv_after[0] - t_fault
    with lock:
        obs_after = [t for t in observer_times if t > t_fault]
        obs_before = max((t for t in observer_times if t <= t_fault), default=t_fault)
    if obs_after:
        timings[pre + "observer_pause_s"] = obs_after[0] - obs_before
        log(f"observer on node 2 (pre-connected): confirms paused {obs_after[0] - obs_before:.2f}s")
    nk = [t for t in nacks if t > t_fault]
    timings[pre + "nacks"] = len(nk)
    timings[pre + "channel_reopens"] = len(reopened)
    if nk:
        log(f"publisher: {len(nk)} nacks from {nk[0] - t_fault:.2f}s to {nk[-1] - t_fault:.2f}s after the fault")
    fmt = lambda rs: ", ".join(f"{h} after {g * 1000:.0f} ms" for h, g in rs)  # noqa: E731
    check(any(h != leader["host"] for h, _ in pub.reconnects),
          f"publisher reconnected to another node: {fmt(pub.reconnects)}")
    check(any(h != leader["host"] for h, _ in con.reconnects),
          f"consumer reconnected to another node: {fmt(con.reconnects)}")

    t_start = time.monotonic()
    if fault == "kill":
        sh(str(HERE / "node.sh"), "start", victim, timeout=MAX_REJOIN_S + 30)
        timings[pre + "restart_s"] = time.monotonic() - t_start
    else:
        sh(str(HERE / "node.sh"), "heal", leader["host"])
    rejoined = False
    while time.monotonic() - t_start < MAX_REJOIN_S:
        st = kv(sh(str(HERE / "rabbit-leader.sh"), q))
        if victim in st["online"].split(","):
            rejoined = True
            break
        time.sleep(0.5)
    timings[pre + "rejoin_s"] = time.monotonic() - t_start
    check(rejoined, f"{victim} is an online member of {q} again "
                    f"({timings[pre + 'rejoin_s']:.1f}s after {'its start' if fault == 'kill' else 'the heal'}): {st['online']}")
    time.sleep(2)

    stop_pub.set()
    tp.join(30)
    to.join(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if confirmed <= set(received):
                break
        time.sleep(0.2)
    stop_con.set()
    tc.join(30)
    got = set(received)
    missing = confirmed - got
    dups = len(received) - len(got)
    log(f"published+confirmed {len(confirmed)}, received {len(received)} ({len(got)} distinct, {dups} redelivered)")
    check(not missing, f"no confirmed message lost (missing: {sorted(missing)[:10]}{'...' if len(missing) > 10 else ''})")
    timings[pre + "confirmed"] = len(confirmed)
    timings[pre + "missing"] = len(missing)
    timings[pre + "redelivered"] = dups

    try:
        admin.connect(first=True)
        admin.ch.queue_delete(q)
        admin.conn.close()
    except pika.exceptions.AMQPError as e:
        log(f"could not delete {q}: {e}")
    return timings


# ---------------------------------------------------------------------------------------------
# Redis


def redis_phase(env: dict[str, str]) -> dict[str, float]:
    name = env["INFERQ_CLUSTER_REDIS_MASTER_NAME"]
    sentinels = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]))
                 for a in env["INFERQ_CLUSTER_REDIS_SENTINELS"].split(",")]
    s = Sentinel(sentinels, socket_timeout=0.5, socket_connect_timeout=0.5)
    # A Redis client whose connection pool asks the Sentinels for the primary on every new
    # connection (redis.sentinel.SentinelConnectionPool).
    r = s.master_for(name, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False)
    prefix = f"smoke:{os.getpid()}:"
    addr0 = s.discover_master(name)
    inst = {env["INFERQ_CLUSTER_REDIS_A_URL"]: "redis-a", env["INFERQ_CLUSTER_REDIS_B_URL"]: "redis-b"}
    victim = inst[f"redis://{addr0[0]}:{addr0[1]}/"]
    log(f"Redis primary per Sentinel: {addr0[0]}:{addr0[1]} ({victim})")

    acked_plain: list[int] = []
    acked_wait: list[int] = []
    errors = 0
    t_kill = None
    t_first_ok = None
    t_switch = None
    seq = 0
    timings: dict[str, float] = {}

    def write_one() -> None:
        nonlocal seq, errors, t_first_ok
        k = seq
        seq += 1
        try:
            if k % 2 == 0:
                r.set(prefix + str(k), k)
                acked_plain.append(k)
            else:
                r.set(prefix + str(k), k)
                if r.execute_command("WAIT", 1, 100) >= 1:
                    acked_wait.append(k)
            if t_kill is not None and t_first_ok is None:
                t_first_ok = time.monotonic()
                log(f"first acknowledged write after the kill: {(t_first_ok - t_kill) * 1000:.0f} ms")
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.ReadOnlyError, OSError) as e:
            errors += 1
            if errors <= 3 or errors % 50 == 0:
                log(f"write {k}: {type(e).__name__}: {str(e)[:80]}")
            time.sleep(0.02)

    t_end = time.monotonic() + 2
    while time.monotonic() < t_end:
        write_one()
        time.sleep(0.002)
    log(f"{len(acked_plain)} plain + {len(acked_wait)} WAIT-acknowledged writes before the kill")

    t_kill = kill(int(sh(str(HERE / "node.sh"), "pid", victim)))
    log(f"SIGKILLed the primary {victim}")
    errors_at_kill = errors
    while time.monotonic() - t_kill < MAX_REDIS_FAILOVER_S + 5:
        write_one()
        if t_switch is None and seq % 10 == 0:
            try:
                a = s.discover_master(name)
                if a != addr0:
                    t_switch = time.monotonic()
                    log(f"Sentinels name {a[0]}:{a[1]} the primary "
                        f"{(t_switch - t_kill) * 1000:.0f} ms after the kill")
            except Exception:
                pass
        if t_first_ok is not None and t_switch is not None and time.monotonic() - t_first_ok > 2:
            break
        time.sleep(0.002)
    check(t_switch is not None, "Sentinels promoted the replica")
    check(t_first_ok is not None, "the Sentinel client writes again after the failover")
    if t_switch is not None:
        timings["redis_sentinel_switch_s"] = t_switch - t_kill
    if t_first_ok is not None:
        timings["redis_write_outage_s"] = t_first_ok - t_kill
    timings["redis_failed_writes"] = errors - errors_at_kill

    # The victim comes back as a replica of the new primary; WAIT works again.
    sh(str(HERE / "node.sh"), "start", victim)
    t_back = time.monotonic()
    ok = False
    while time.monotonic() - t_back < 20:
        out = sh(str(HERE / "redis-primary.sh"))
        line = next(ln for ln in out.splitlines() if ln.startswith(victim + " "))
        if "role=slave" in line and "link=up" in line:
            ok = True
            break
        time.sleep(0.2)
    check(ok, f"{victim} restarted as a replica of the new primary ({time.monotonic() - t_back:.1f}s): {line}")
    if ok:
        timings["redis_resync_s"] = time.monotonic() - t_back
    n_wait = len(acked_wait)
    for _ in range(50):
        write_one()
    check(len(acked_wait) > n_wait, "WAIT 1 is satisfied again once the old primary is a replica")

    # Lost acknowledged writes: read everything back from the new primary.
    lost_plain = [k for k in acked_plain if r.get(prefix + str(k)) is None]
    lost_wait = [k for k in acked_wait if r.get(prefix + str(k)) is None]
    log(f"acknowledged writes: {len(acked_plain)} plain, {len(acked_wait)} WAIT; "
        f"lost after failover: {len(lost_plain)} plain {lost_plain[:10]}, {len(lost_wait)} WAIT")
    check(not lost_wait, "no WAIT-acknowledged write lost")
    timings["redis_acked_plain"] = len(acked_plain)
    timings["redis_lost_plain"] = len(lost_plain)
    timings["redis_acked_wait"] = len(acked_wait)
    timings["redis_lost_wait"] = len(lost_wait)
    # Clean up, in batches.
    keys = [prefix + str(k) for k in range(seq)]
    for i in range(0, len(keys), 500):
        r.delete(*keys[i:i + 500])
    return timings


# ---------------------------------------------------------------------------------------------


def reachability(env: dict[str, str]) -> None:
    """A client inside a worker namespace reaches every node (test binaries can run there)."""
    wns = [n for n in env.get("INFERQ_CLUSTER_WORKER_NETNS", "").split(",") if n]
    if not wns:
        log("loopback mode: no worker namespaces to check")
        return
    targets = [u.split("@", 1)[1].split("/", 1)[0] for u in env["INFERQ_CLUSTER_AMQP_URLS"].split(",")]
    targets += env["INFERQ_CLUSTER_REDIS_SENTINELS"].split(",")
    code = ("import socket,sys\n"
            "for t in sys.argv[1:]:\n"
            "    h,p=t.rsplit(':',1); socket.create_connection((h,int(p)),timeout=2).close()\n")
    r = subprocess.run(["ip", "netns", "exec", wns[0], sys.executable, "-c", code, *targets],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"from namespace {wns[0]}: TCP to {', '.join(targets)} {r.stderr.strip()[-200:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100, help="messages per second to publish (default 100)")
    ap.add_argument("--only", choices=["rabbit", "partition", "redis"], help="run only one part")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("smoke.py: run as root (it kills and starts cluster nodes)", file=sys.stderr)
        return 2
    env = read_env()
    preflight(env)
    env = read_env()
    log(f"cluster mode {env['INFERQ_CLUSTER_MODE']}, up in {env.get('INFERQ_CLUSTER_UP_SECONDS', '?')} s")
    reachability(env)
    timings: dict[str, float] = {}
    if args.only in (None, "rabbit"):
        timings.update(rabbit_phase(env, args.rate, "kill"))
    if args.only in (None, "partition") and env["INFERQ_CLUSTER_MODE"] == "netns":
        timings.update(rabbit_phase(env, args.rate, "isolate"))
    if args.only in (None, "redis"):
        timings.update(redis_phase(env))

    print()
    print("== timings and counts")
    print(f"  cluster_up_s                       {env.get('INFERQ_CLUSTER_UP_SECONDS', '?')}")
    for k, v in timings.items():
        print(f"  {k:34} {v:.3f}" if isinstance(v, float) else f"  {k:34} {v}")
    for k in ("rabbit_kill_publish_pause_s", "rabbit_isolate_publish_pause_s"):
        if k in timings and timings[k] > MAX_RABBIT_PAUSE_S:
            failures.append(f"RabbitMQ {k} {timings[k]:.1f}s > {MAX_RABBIT_PAUSE_S}s")
    if "redis_write_outage_s" in timings and timings["redis_write_outage_s"] > MAX_REDIS_FAILOVER_S:
        failures.append(f"Redis write outage {timings['redis_write_outage_s']:.1f}s > {MAX_REDIS_FAILOVER_S}s")
    print()
    if failures:
        for f in failures:
            print(f"FAILED: {f}")
        print(f"cluster smoke: {len(passes)} passed, {len(failures)} failed")
        return 1
    print(f"cluster smoke: {len(passes)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
