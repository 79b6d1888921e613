#!/usr/bin/env python3
"""What RabbitMQ itself costs per job message, by queue type and ack mode.

`make bench` shows RabbitMQ spending about 1 ms of CPU per job at
saturation. This harness asks whether another queue type or batched acks
would change that, without InferQ in the way: one publisher sends
persistent messages of a job's size at a fixed rate on a channel in confirm
mode (as the API does), one consumer with prefetch takes and acks them (as
a worker does), and the broker's own CPU time (utime + stime of the process
listening on the port) is divided by the messages. A second measurement
sends one message at a time and times publish → confirm and publish →
delivery, the queue's part of a lone job's latency.

Variants (each on its own new queue, deleted afterwards):
  quorum     x-queue-type=quorum with x-delivery-limit (what InferQ declares)
  classic    x-queue-type=classic, x-queue-version=2 (durable, persistent
             messages; no delivery limit, no replication)
and acks one by one, or `multiple` for every second message (what a worker
finishing a batch of two could send).

Prints one table; numbers are for this machine and this RabbitMQ, compare
rows of one run only.

Usage: scripts/bench_rabbitmq.py [--url amqp://guest:guest@127.0.0.1:5672/%2f]
       [--rate 150] [--messages 1500] [--size 95000] [--latency-messages 300]
"""
import argparse
import os
import statistics
import threading
import time

import pika

VARIANTS = {
    "quorum": {"x-queue-type": "quorum", "x-delivery-limit": 5},
    "classic": {"x-queue-type": "classic", "x-queue-version": 2},
}


def listener_pid(port):
    """PID of the process with a TCP socket listening on `port` (IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process listens on port {port} (is RabbitMQ running?)")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publisher(params, name, variant):
    """A connection and a confirm-mode channel on a new queue `name` of `variant`."""
    conn = pika.BlockingConnection(params)
    channel = conn.channel()
    channel.queue_delete(name)
    channel.queue_declare(name, durable=True, arguments=VARIANTS[variant])
    channel.confirm_delivery()
    return conn, channel


def throughput(params, pid, variant, ack, size, rate, messages):
    """RabbitMQ CPU ms per message with a fixed-rate confirmed publisher."""
    queue = f"inferq-bench-broker-{variant}"
    conn, ch = publisher(params, queue, variant)
    body = os.urandom(size)
    done = threading.Event()

    def consume():
        c = pika.BlockingConnection(params)
        cc = c.channel()
        cc.basic_qos(prefetch_count=4)
        got, pending = 0, 0
        for method, _props, _body in cc.consume(queue):
            got += 1
            pending += 1
            if ack == "single" or pending == 2 or got == messages:
                cc.basic_ack(method.delivery_tag, multiple=ack == "multiple")
                pending = 0
            if got == messages:
                break
        c.close()
        done.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    props = pika.BasicProperties(delivery_mode=2)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for i in range(messages):
        ch.basic_publish("", queue, body, props)
        delay = t0 + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    done.wait()
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    consumer.join()
    ch.queue_delete(queue)
    conn.close()
    return messages / wall, cpu * 1000 / messages, cpu / wall * 100


def latency(params, variant, size, messages):
    """p50 ms of publish → confirm and publish → delivery, one message at a time."""
    queue = f"inferq-bench-broker-lat-{variant}"
    conn, ch = publisher(params, queue, variant)
    body = os.urandom(size)
    delivered = threading.Event()
    at = [0.0]

    def consume():
        c = pika.BlockingConnection(params)
        cc = c.channel()
        cc.basic_qos(prefetch_count=4)
        got = 0
        for method, _props, _body in cc.consume(queue):
            at[0] = time.perf_counter()
            cc.basic_ack(method.delivery_tag)
            delivered.set()
            got += 1
            if got == messages:
                break
        c.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.3)
    confirm, delivery = [], []
    props = pika.BasicProperties(delivery_mode=2)
    for _ in range(messages):
        delivered.clear()
        t0 = time.perf_counter()
        ch.basic_publish("", queue, body, props)
        confirm.append((time.perf_counter() - t0) * 1000)
        delivered.wait()
        delivery.append((at[0] - t0) * 1000)
        time.sleep(0.005)
    consumer.join()
    ch.queue_delete(queue)
    conn.close()
    return statistics.median(confirm), statistics.median(delivery)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--rate", type=float, default=150.0, help="messages/s (InferQ's saturation here)")
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--size", type=int, default=95000, help="bytes (the bench's 640x480 JPEG job)")
    ap.add_argument("--latency-messages", type=int, default=300)
    args = ap.parse_args()
    params = pika.URLParameters(args.url)
    pid = listener_pid(params.port)
    print(f"RabbitMQ pid {pid}, {args.rate:g} msg/s, {args.messages} messages per row")
    print(f"{'queue':8} {'bytes':>6} {'acks':8} {'msg/s':>7} {'CPU ms/msg':>11} {'CPU %core':>10}")
    for size in (args.size, 200):
        for variant in VARIANTS:
            for ack in ("single", "multiple"):
                rate, ms, pct = throughput(
                    params, pid, variant, ack, size, args.rate, args.messages
                )
                print(f"{variant:8} {size:6} {ack:8} {rate:7.1f} {ms:11.2f} {pct:10.1f}")
    print(f"\none message at a time, {args.size} bytes, {args.latency_messages} messages (p50 ms)")
    print(f"{'queue':8} {'publish->confirm':>17} {'publish->delivery':>18}")
    for variant in VARIANTS:
        c, d = latency(params, variant, args.size, args.latency_messages)
        print(f"{variant:8} {c:17.2f} {d:18.2f}")


if __name__ == "__main__":
    main()
