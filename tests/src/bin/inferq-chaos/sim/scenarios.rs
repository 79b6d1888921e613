//! The fault scenarios: the RabbitMQ node leading the job queue, the Redis
//! primary and one API are SIGKILLed under steady load (issue 22, items 2, 3
//! and 5); the leader's host is partitioned (no TCP reset), and the broker
//! loses its majority (two of three nodes down: a total outage that
//! readiness must report). Fault times are taken right after `kill(2)` returned; the
//! harness scripts take 0.3-1.3 s themselves and are called outside the
//! timed windows.

use std::time::{Duration, Instant};

use super::load::{self, Account, LoadSpec, Submitted};
use super::{Row, Sim, SimArgs, deploy::pairs, fmt_counts};

/// Seconds after a fault whose submissions count as "during the failover".
const WINDOW: f64 = 10.0;

fn kill(pid: i32) -> anyhow::Result<Instant> {
    let pid = u32::try_from(pid)?;
    inferq_tests::send_signal(pid, libc::SIGKILL)
        .map_err(|e| anyhow::anyhow!("kill {pid}: {e}"))?;
    Ok(Instant::now())
}

fn spec(args: &SimArgs) -> LoadSpec {
    LoadSpec {
        jobs: args.jobs,
        rate: args.rate,
        clients: 16,
        give_up: Duration::from_secs(60),
    }
}

/// Fills the counts of a row from the load and the account and judges it:
/// nothing lost, nothing given up, one job per key, every job succeeded.
pub(crate) fn judge(
    name: &str,
    sub: &Submitted,
    acc: &Account,
    created: u64,
    mut notes: Vec<String>,
) -> Row {
    let accepted = sub.ids().len() as u64;
    let gave_up = sub.gave_up();
    let extra_jobs = created.saturating_sub(accepted);
    notes.push(format!(
        "final states: {}; attempts per job: {}",
        fmt_counts(&acc.by_status),
        fmt_counts(&acc.by_attempts)
    ));
    notes.push(format!(
        "refused answers (retried with the same key): {}",
        fmt_counts(&sub.refused)
    ));
    notes.push(format!(
        "job records created {created} for {accepted} accepted keys"
    ));
    if !gave_up.is_empty() {
        let mut why = std::collections::BTreeMap::new();
        for k in &gave_up {
            *why.entry(k.last_refusal.clone()).or_default() += 1u64;
        }
        notes.push(format!(
            "GAVE UP on {} keys after 60 s, last answer: {}",
            gave_up.len(),
            fmt_counts(&why)
        ));
    }
    for (id, why) in acc.lost.iter().take(5) {
        notes.push(format!("LOST {id}: {why}"));
    }
    let ok =
        acc.lost.is_empty() && gave_up.is_empty() && extra_jobs == 0 && acc.succeeded == accepted;
    Row {
        name: name.into(),
        accepted,
        final_: acc.terminal,
        lost: acc.lost.len() as u64,
        duplicated: acc.duplicated,
        keys_with_two_jobs: extra_jobs,
        notes,
        ok,
    }
}

/// How the broker scenarios hurt the RabbitMQ cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BrokerFault {
    /// SIGKILL the node leading the job queue; start it again after 8 s.
    Kill,
    /// Cut the leader's host off the network for this long (its veth down:
    /// no TCP reset, packets vanish), then reconnect it.
    Partition(Duration),
    /// Stop the two other nodes for this long: the leader is alone, pauses
    /// (`pause_minority`) and there is no broker at all.
    Majority(Duration),
}

impl BrokerFault {
    fn name(self) -> &'static str {
        match self {
            BrokerFault::Kill => "broker",
            BrokerFault::Partition(_) => "partition",
            BrokerFault::Majority(_) => "majority",
        }
    }
}

/// `/readyz` of every API: `(url, status)`; 0 when it did not answer.
async fn readiness(urls: &[String]) -> Vec<(String, u16)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let mut out = Vec::new();
    for u in urls {
        let status = match client.get(format!("{u}/readyz")).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        out.push((u.clone(), status));
    }
    out
}

/// Waits until every member of the job queue is online and returns the
/// last `rabbit-leader.sh` status, plus a note when it had to help: a node
/// whose queue member is still offline 30 s on (seen after a healed
/// partition: the node runs, its member does not rejoin) is restarted, as
/// an operator would, and given 90 s more.
async fn whole_cluster(sim: &Sim) -> anyhow::Result<(String, Option<String>)> {
    let online = |status: &str| {
        let p = pairs(status);
        let list = |k: &str| -> Vec<String> {
            p.get(k)
                .map(|v| {
                    v.split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (members, up) = (list("members"), list("online"));
        let missing: Vec<String> = members
            .iter()
            .filter(|m| !up.contains(m))
            .cloned()
            .collect();
        (!members.is_empty(), missing)
    };
    let mut note = None;
    for (patience, last) in [(30, false), (90, true)] {
        let give_up = Instant::now() + Duration::from_secs(patience);
        loop {
            let status = sim.script("rabbit-leader.sh", &[sim.queue.as_str()])?;
            let (known, missing) = online(&status);
            if known && missing.is_empty() {
                return Ok((status, note));
            }
            if Instant::now() > give_up {
                if last {
                    anyhow::bail!("the cluster did not come back whole: {status}");
                }
                for node in &missing {
                    // Not running is fine: start it either way.
                    let _ = sim.script("node.sh", &["kill", node.as_str()]);
                    sim.script("node.sh", &["start", node.as_str()])?;
                }
                note = Some(format!(
                    "before the fault: queue member(s) {} still offline 30 s after the previous \
                     scenario; node(s) restarted",
                    missing.join(",")
                ));
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    unreachable!("the second round returns or bails")
}

/// Items 2 and beyond: the node leading the quorum queue SIGKILLed, its
/// host partitioned, or the two other nodes stopped, under steady load;
/// then everything brought back.
pub(crate) async fn broker(
    sim: &mut Sim,
    args: &SimArgs,
    fault: BrokerFault,
) -> anyhow::Result<Row> {
    sim.set_workers(args.workers)?;
    let before = sim.job_records()?;
    // A node that an earlier scenario cut off may still be rejoining (a
    // paused minority restarts its broker only once it sees the others):
    // start from a whole cluster, or "two nodes down" is only one.
    let (status, helped) = whole_cluster(sim).await?;
    let leader = pairs(&status);
    let (node, host, pid) = (
        leader.get("leader").cloned().unwrap_or_default(),
        leader.get("host").cloned().unwrap_or_default(),
        leader.get("pid").and_then(|p| p.parse::<i32>().ok()),
    );
    let pid = pid.ok_or_else(|| anyhow::anyhow!("no leader pid in {status:?}"))?;
    let members = leader.get("members").cloned().unwrap_or_default();
    let others: Vec<String> = members
        .split(',')
        .filter(|m| !m.is_empty() && *m != node)
        .map(str::to_owned)
        .collect();
    let mut notes = vec![format!("queue {} members: {members}", sim.queue)];
    notes.extend(helped);
    let (progress, handle, t0) = load::spawn(sim.api_urls(), spec(args));
    progress.wait_accepted(args.jobs / 4).await;
    let mut ok = true;
    let faulted = match fault {
        BrokerFault::Kill => kill(pid)?,
        BrokerFault::Partition(_) => {
            sim.script("node.sh", &["isolate", host.as_str()])?;
            Instant::now()
        }
        BrokerFault::Majority(_) => {
            for o in &others {
                sim.script("node.sh", &["kill", o.as_str()])?;
            }
            Instant::now()
        }
    };
    let at = (faulted - t0).as_secs_f64();
    let what = match fault {
        BrokerFault::Kill => format!("leader {node} SIGKILLed"),
        BrokerFault::Partition(d) => format!("leader's host {host} ({node}) cut off for {d:?}"),
        BrokerFault::Majority(d) => {
            format!("{} SIGKILLed for {d:?}; {node} alone", others.join(", "))
        }
    };
    eprintln!("[{at:6.1}s] {what}");
    notes.push(format!("{what} at {at:.1} s"));
    match fault {
        BrokerFault::Kill => {
            tokio::time::sleep_until((faulted + Duration::from_secs(8)).into()).await;
            sim.script("node.sh", &["start", node.as_str()])?;
        }
        BrokerFault::Partition(d) => {
            tokio::time::sleep_until((faulted + d).into()).await;
            sim.script("node.sh", &["heal", host.as_str()])?;
        }
        BrokerFault::Majority(d) => {
            // Readiness must say so while no broker can take a job.
            tokio::time::sleep_until((faulted + d / 2).into()).await;
            let during = readiness(&sim.api_urls()).await;
            ok &= during.iter().all(|(_, s)| *s == 503);
            notes.push(format!(
                "/readyz during the outage: {during:?} (503 expected)"
            ));
            tokio::time::sleep_until((faulted + d).into()).await;
            for o in &others {
                sim.script("node.sh", &["start", o.as_str()])?;
            }
        }
    }
    sim.reload_env()?;
    notes.push(format!(
        "restored {:.1} s after the fault",
        faulted.elapsed().as_secs_f64()
    ));
    let sub = handle.await?;
    let acc = load::account(
        &sim.api_urls(),
        &sub.ids(),
        Duration::from_secs_f64(args.settle_secs),
    )
    .await;
    let after = readiness(&sim.api_urls()).await;
    ok &= after.iter().all(|(_, s)| *s == 200);
    notes.push(format!("/readyz afterwards: {after:?}"));
    let back = sim.script("rabbit-leader.sh", &[sim.queue.as_str()])?;
    let back = pairs(&back);
    notes.push(format!(
        "afterwards: leader {} members {} online {}",
        back.get("leader").cloned().unwrap_or_default(),
        back.get("members").cloned().unwrap_or_default(),
        back.get("online").cloned().unwrap_or_default()
    ));
    notes.push(format!(
        "submit latency before the fault: {}",
        sub.latency(0.0, at)
    ));
    notes.push(format!(
        "submit latency of jobs sent in the {WINDOW:.0} s after the fault: {}",
        sub.latency(at, at + WINDOW)
    ));
    notes.push(format!(
        "in the process logs: {}",
        sim.log_counts(&[
            "connected to RabbitMQ",
            "trying the next node",
            "publish nacked",
            "consumer failed",
            "consumer closed",
            "heartbeat",
        ])
    ));
    let dead = sim.dead_workers();
    notes.push(format!(
        "workers restarted by the driver: 0; workers that exited: {dead} of {}",
        sim.workers.len()
    ));
    let created = sim.job_records()?.saturating_sub(before);
    let mut row = judge(fault.name(), &sub, &acc, created, notes);
    row.ok &= dead == 0 && ok;
    Ok(row)
}

/// Item 3: SIGKILL the Redis primary; Sentinel promotes the replica.
pub(crate) async fn redis(sim: &mut Sim, args: &SimArgs) -> anyhow::Result<Row> {
    sim.set_workers(args.workers)?;
    let before = sim.job_records()?;
    sim.reload_env()?;
    let primary = sim
        .script("redis-primary.sh", &["--short"])?
        .trim()
        .to_owned();
    let ip = primary.split(':').next().unwrap_or_default().to_owned();
    let instance = ["A", "B"]
        .into_iter()
        .find(|x| {
            sim.env
                .get(&format!("INFERQ_CLUSTER_REDIS_{x}_URL"))
                .is_some_and(|u| u.contains(&format!("//{ip}:")))
        })
        .ok_or_else(|| anyhow::anyhow!("which instance is {primary}?"))?;
    let pid: i32 = sim
        .env
        .get(&format!("INFERQ_CLUSTER_REDIS_{instance}_PID"))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no pid of redis-{instance}"))?;
    let name = format!("redis-{}", instance.to_lowercase());
    let (progress, handle, t0) = load::spawn(sim.api_urls(), spec(args));
    progress.wait_accepted(args.jobs / 4).await;
    let killed = kill(pid)?;
    let at = (killed - t0).as_secs_f64();
    eprintln!("[{at:6.1}s] SIGKILL Redis primary {name} {primary} (pid {pid})");
    let mut promoted = None;
    while killed.elapsed() < Duration::from_secs(30) {
        if let Ok(now) = sim.script("redis-primary.sh", &["--short"])
            && !now.trim().is_empty()
            && now.trim() != primary
        {
            promoted = Some((now.trim().to_owned(), killed.elapsed().as_secs_f64()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut notes = vec![match &promoted {
        Some((p, s)) => format!(
            "primary {name} {primary} SIGKILLed at {at:.1} s; Sentinels named {p} after {s:.1} s (polled)"
        ),
        None => format!("primary {name} SIGKILLed at {at:.1} s; NO new primary within 30 s"),
    }];
    tokio::time::sleep_until((killed + Duration::from_secs(10)).into()).await;
    sim.script("node.sh", &["start", name.as_str()])?;
    sim.reload_env()?;
    notes.push(format!(
        "{name} started again {:.1} s after the kill (as a replica of the new primary)",
        killed.elapsed().as_secs_f64()
    ));
    let sub = handle.await?;
    let acc = load::account(
        &sim.api_urls(),
        &sub.ids(),
        Duration::from_secs_f64(args.settle_secs),
    )
    .await;
    notes.push(format!(
        "submit latency before the kill: {}",
        sub.latency(0.0, at)
    ));
    notes.push(format!(
        "submit latency of jobs sent in the {WINDOW:.0} s after the kill: {}",
        sub.latency(at, at + WINDOW)
    ));
    notes.push(format!(
        "in the process logs: {}",
        sim.log_counts(&[
            "redis primary resolved",
            "redis primary failed",
            "notification channel closed",
        ])
    ));
    let dead = sim.dead_workers();
    notes.push(format!(
        "workers that exited: {dead} of {}",
        sim.workers.len()
    ));
    let created = sim.job_records()?.saturating_sub(before);
    let mut row = judge("redis", &sub, &acc, created, notes);
    row.ok &= dead == 0 && promoted.is_some();
    Ok(row)
}

/// Item 5: SIGKILL one API mid-submit; clients retry on the other with
/// their `Idempotency-Key`.
pub(crate) async fn api(sim: &mut Sim, args: &SimArgs) -> anyhow::Result<Row> {
    sim.set_workers(args.workers)?;
    let before = sim.job_records()?;
    let (progress, handle, t0) = load::spawn(sim.api_urls(), spec(args));
    progress.wait_accepted(args.jobs * 3 / 10).await;
    let pid = sim.apis[0].proc.pid().unwrap_or(0);
    sim.apis[0].proc.kill()?;
    let at = t0.elapsed().as_secs_f64();
    eprintln!("[{at:6.1}s] SIGKILL api-0 (pid {pid})");
    tokio::time::sleep(Duration::from_secs(5)).await;
    sim.apis[0].proc.start()?;
    sim.wait_api(0).await?;
    let back = t0.elapsed().as_secs_f64() - at;
    let sub = handle.await?;
    let acc = load::account(
        &sim.api_urls(),
        &sub.ids(),
        Duration::from_secs_f64(args.settle_secs),
    )
    .await;
    let notes = vec![
        format!("api-0 SIGKILLed at {at:.1} s, ready again {back:.1} s later"),
        format!(
            "submit latency of jobs sent in the {WINDOW:.0} s after the kill: {}",
            sub.latency(at, at + WINDOW)
        ),
    ];
    let created = sim.job_records()?.saturating_sub(before);
    Ok(judge("api", &sub, &acc, created, notes))
}
