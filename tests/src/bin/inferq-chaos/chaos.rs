//! Chaos mode: submissions under worker SIGKILLs and broker/store restarts,
//! then an account of every accepted job.
//!
//! A job counts as *accepted* only when the API answered 202; 429/503 and
//! connection errors mean it was not, and the client retries (those answers
//! are counted separately). Faults run only while jobs are being submitted:
//! a random worker is SIGKILLed every `--kill-every` seconds and restarted,
//! RabbitMQ is restarted once (stop_app/start_app) and the private Redis is
//! SIGKILLed and restarted once on its append-only file, each when a given
//! fraction of the jobs has been accepted; later (`--redis-wipe-at`) Redis
//! restarts once more with *no* data, as a Redis without persistence does
//! (see `wipe.rs`). Then, with all workers running, every accepted job is
//! polled until it is terminal or `--settle-secs` pass.
//!
//! Every other job is sent with an `Idempotency-Key` and retried with the
//! same key on any 5xx, a 409 (the key's first request still in progress),
//! a timeout or a connection error; the others are retried on 429/503 and
//! connection errors. Every image is valid, so the run fails unless every
//! accepted job ends `succeeded` (a `failed`, `expired`, `dead_lettered` or
//! `canceled` one counts against it), except those that had finished before
//! the empty restart: their records are taken from the snapshot.
//!
//! `lost` counts accepted jobs whose record is missing or not terminal at
//! the end. `duplicates` counts executions beyond the first: the sum over
//! jobs of `attempts - 1`, where `attempts` is the record's count of worker
//! starts (a worker stores it *before* running the model, so every run that
//! was SIGKILLed or cut off by the broker restart is counted; a redelivered
//! job that had already finished is acked without running and is not).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::account::{Final, Report, fmt_map, settle_one};
use crate::{Deployment, secs, wait_ready};
use inferq_tests::cluster;
use inferq_tests::load::submit_url;

#[derive(Debug, clap::Args)]
pub(crate) struct ChaosArgs {
    /// Jobs to submit.
    #[arg(long, default_value_t = 3000)]
    jobs: u64,
    /// Submissions per second over all clients; 0 submits as fast as the
    /// API accepts (a rate keeps short runs long enough for the faults).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds between worker SIGKILLs; 0 kills none.
    #[arg(long, default_value_t = 3.0)]
    kill_every: f64,
    /// Seconds a killed worker stays down before it is started again.
    #[arg(long, default_value_t = 0.5)]
    respawn_after: f64,
    /// Restart RabbitMQ once this fraction of the jobs is accepted (0: never).
    #[arg(long, default_value_t = 0.33)]
    rabbitmq_restart_at: f64,
    /// Seconds between `rabbitmqctl stop_app` and `start_app`.
    #[arg(long, default_value_t = 3.0)]
    rabbitmq_down_secs: f64,
    /// SIGKILL and restart Redis once this fraction of the jobs is accepted
    /// (0: never).
    #[arg(long, default_value_t = 0.66)]
    redis_restart_at: f64,
    /// Seconds Redis stays down.
    #[arg(long, default_value_t = 1.0)]
    redis_down_secs: f64,
    /// Restart Redis *empty* (AOF and RDB deleted: a Redis without
    /// persistence) once this fraction of the jobs is accepted (0: never).
    #[arg(long, default_value_t = 0.85)]
    redis_wipe_at: f64,
    /// After the faults stop, how long every accepted job may take to finish.
    #[arg(long, default_value_t = 300.0)]
    settle_secs: f64,
    /// A client gives up on one submission after retrying this long (the
    /// API did not recover: the run fails).
    #[arg(long, default_value_t = 120.0)]
    give_up_secs: f64,
}

/// What the clients saw.
#[derive(Default)]
struct Submissions {
    next: AtomicU64,
    accepted: AtomicU64,
    ids: Mutex<Vec<String>>,
    /// Answers that did not accept the job, by status (or error kind).
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Answers other than 202/429/503 (bugs), first few with their body.
    unexpected: Mutex<Vec<String>>,
    gave_up: AtomicU64,
    /// Jobs sent with an Idempotency-Key, and 202s that were replays.
    keyed: AtomicU64,
    replayed: AtomicU64,
}

impl Submissions {
    fn reject(&self, why: String, detail: Option<String>) {
        if let Some(d) = detail {
            let mut u = self.unexpected.lock().unwrap();
            u.push(d);
        }
        *self.rejected.lock().unwrap().entry(why).or_default() += 1;
    }
}

/// Faults done, for the report.
#[derive(Default)]
struct Faults {
    kills: AtomicU64,
    rabbitmq_restarts: AtomicU64,
    redis_restarts: AtomicU64,
    redis_wipes: AtomicU64,
    errors: Mutex<Vec<String>>,
}

async fn client_loop(
    d: Arc<Deployment>,
    subs: Arc<Submissions>,
    args: Arc<(u64, f64, Duration)>,
    t0: Instant,
) {
    let (jobs, rate, give_up) = *args;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let url = submit_url(&d.api_url, None);
    loop {
        let i = subs.next.fetch_add(1, Ordering::Relaxed);
        if i >= jobs {
            return;
        }
        if rate > 0.0 {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let image = &d.images[i as usize % d.images.len()];
        // Every other job carries a key and is retried with it.
        let key = i
            .is_multiple_of(2)
            .then(|| format!("chaos-{}-{i}", d.key_prefix));
        if key.is_some() {
            subs.keyed.fetch_add(1, Ordering::Relaxed);
        }
        let deadline = Instant::now() + give_up;
        let mut pause = Duration::from_millis(100);
        loop {
            let mut request = client
                .post(&url)
                .header("content-type", image.content_type)
                .body(image.bytes.clone());
            if let Some(k) = &key {
                request = request.header("idempotency-key", k.as_str());
            }
            let answer = request.send().await;
            match answer {
                Ok(r) if r.status() == 202 => {
                    if r.headers().contains_key("idempotent-replayed") {
                        subs.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    match body["id"].as_str() {
                        Some(id) => {
                            subs.ids.lock().unwrap().push(id.to_owned());
                            subs.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        None => subs.reject(
                            "202 without id".into(),
                            Some(format!("202 without a job id: {body}")),
                        ),
                    }
                    break;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    // A keyed retry may meet its own first request still
                    // being enqueued (409 idempotency_key_in_use).
                    let expected = matches!(status, 429 | 503) || (key.is_some() && status == 409);
                    let detail = if expected {
                        None
                    } else {
                        Some(format!("{status}: {}", r.text().await.unwrap_or_default()))
                    };
                    subs.reject(status.to_string(), detail);
                }
                Err(e) if e.is_timeout() => subs.reject("client timeout".into(), None),
                Err(_) => subs.reject("connection error".into(), None),
            }
            if Instant::now() >= deadline {
                subs.gave_up.fetch_add(1, Ordering::Relaxed);
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// A small xorshift generator: which worker to kill need not be more random.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// SIGKILLs a random worker every `every` and starts it again after `down`,
/// until `stop` is set.
async fn killer(
    d: Arc<Deployment>,
    faults: Arc<Faults>,
    every: Duration,
    down: Duration,
    stop: Arc<AtomicBool>,
    t0: Instant,
) {
    let mut seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
    loop {
        tokio::time::sleep(every).await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (name, pid, index) = {
            let mut c = d.cluster.lock().unwrap();
            let n = c.workers.len();
            if n == 0 {
                return;
            }
            let index = (next_random(&mut seed) % n as u64) as usize;
            let w = &mut c.workers[index];
            let pid = w.pid().unwrap_or(0);
            if let Err(e) = w.kill() {
                faults
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("kill {}: {e}", w.name));
            }
            (w.name.clone(), pid, index)
        };
        faults.kills.fetch_add(1, Ordering::Relaxed);
        eprintln!("[{:6.1}s] SIGKILL {name} (pid {pid})", secs(t0));
        tokio::time::sleep(down).await;
        let mut c = d.cluster.lock().unwrap();
        if let Err(e) = c.workers[index].start() {
            faults
                .errors
                .lock()
                .unwrap()
                .push(format!("restart {name}: {e}"));
        }
    }
}

/// Waits until `fraction` of `jobs` are accepted (or `stop`); returns
/// whether the fault is due.
async fn reached(subs: &Submissions, jobs: u64, fraction: f64, stop: &AtomicBool) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let target = ((jobs as f64 * fraction).ceil() as u64).clamp(1, jobs);
    loop {
        if subs.accepted.load(Ordering::Relaxed) >= target {
            return true;
        }
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn restart_rabbitmq(d: Arc<Deployment>, faults: Arc<Faults>, down: Duration, t0: Instant) {
    eprintln!("[{:6.1}s] RabbitMQ stop_app", secs(t0));
    let d2 = d.clone();
    let result = tokio::task::spawn_blocking(move || {
        // The flag is set first so a Ctrl-C cleanup restarts the app even
        // if `stop_app` did not return yet.
        d2.rabbitmq_stopped.store(true, Ordering::SeqCst);
        cluster::stop_rabbitmq()?;
        std::thread::sleep(down);
        cluster::start_rabbitmq(d2.amqp_port)?;
        d2.rabbitmq_stopped.store(false, Ordering::SeqCst);
        Ok::<_, std::io::Error>(())
    })
    .await
    .expect("rabbitmq restart task");
    match result {
        Ok(()) => {
            faults.rabbitmq_restarts.fetch_add(1, Ordering::Relaxed);
            eprintln!("[{:6.1}s] RabbitMQ start_app done", secs(t0));
        }
        Err(e) => faults
            .errors
            .lock()
            .unwrap()
            .push(format!("RabbitMQ restart: {e}")),
    }
}

async fn restart_redis(d: Arc<Deployment>, faults: Arc<Faults>, down: Duration, t0: Instant) {
    eprintln!("[{:6.1}s] Redis SIGKILL", secs(t0));
    let result = tokio::task::spawn_blocking(move || {
        let mut redis = d.redis.lock().unwrap();
        redis.kill()?;
        std::thread::sleep(down);
        redis.restart()
    })
    .await
    .expect("redis restart task");
    match result {
        Ok(()) => {
            faults.redis_restarts.fetch_add(1, Ordering::Relaxed);
            eprintln!("[{:6.1}s] Redis restarted from its AOF", secs(t0));
        }
        Err(e) => faults
            .errors
            .lock()
            .unwrap()
            .push(format!("Redis restart: {e}")),
    }
}

/// Runs the chaos scenario and prints the report; `Ok(true)` if no job was
/// lost and nothing unexpected happened.
pub(crate) async fn run(
    d: Arc<Deployment>,
    args: &ChaosArgs,
    concurrency: usize,
) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    let subs = Arc::new(Submissions::default());
    let faults = Arc::new(Faults::default());
    let stop = Arc::new(AtomicBool::new(false));
    eprintln!(
        "[{:6.1}s] submitting {} jobs ({} clients, model {})",
        secs(t0),
        args.jobs,
        concurrency,
        d.model
    );

    let client_args = Arc::new((
        args.jobs,
        args.rate,
        Duration::from_secs_f64(args.give_up_secs),
    ));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        clients.spawn(client_loop(
            d.clone(),
            subs.clone(),
            client_args.clone(),
            t0,
        ));
    }
    let kill_task = (args.kill_every > 0.0).then(|| {
        tokio::spawn(killer(
            d.clone(),
            faults.clone(),
            Duration::from_secs_f64(args.kill_every),
            Duration::from_secs_f64(args.respawn_after),
            stop.clone(),
            t0,
        ))
    });
    let rabbit_task = {
        let (d, faults, subs, stop) = (d.clone(), faults.clone(), subs.clone(), stop.clone());
        let (jobs, at) = (args.jobs, args.rabbitmq_restart_at);
        let down = Duration::from_secs_f64(args.rabbitmq_down_secs);
        tokio::spawn(async move {
            if reached(&subs, jobs, at, &stop).await {
                restart_rabbitmq(d, faults, down, t0).await;
            }
        })
    };
    let wipe_task = {
        let (d, faults, subs, stop) = (d.clone(), faults.clone(), subs.clone(), stop.clone());
        let (jobs, at) = (args.jobs, args.redis_wipe_at);
        tokio::spawn(async move {
            if !reached(&subs, jobs, at, &stop).await {
                return None;
            }
            let accepted = || subs.ids.lock().unwrap().clone();
            match crate::wipe::restart_empty(d, accepted, t0).await {
                Ok(snapshot) => {
                    faults.redis_wipes.fetch_add(1, Ordering::Relaxed);
                    Some(snapshot)
                }
                Err(e) => {
                    faults.errors.lock().unwrap().push(e);
                    None
                }
            }
        })
    };
    let redis_task = {
        let (d, faults, subs, stop) = (d.clone(), faults.clone(), subs.clone(), stop.clone());
        let (jobs, at) = (args.jobs, args.redis_restart_at);
        let down = Duration::from_secs_f64(args.redis_down_secs);
        tokio::spawn(async move {
            if reached(&subs, jobs, at, &stop).await {
                restart_redis(d, faults, down, t0).await;
            }
        })
    };

    while clients.join_next().await.is_some() {}
    let submit_secs = secs(t0);
    eprintln!(
        "[{:6.1}s] submissions done: {} accepted; stopping the faults",
        secs(t0),
        subs.accepted.load(Ordering::Relaxed)
    );
    // The one-off restarts have fired by now (their thresholds are below
    // 100 %); let them finish, then stop the killer.
    stop.store(true, Ordering::SeqCst);
    let _ = rabbit_task.await;
    let _ = redis_task.await;
    let snapshot = wipe_task.await.ok().flatten();
    if let Some(t) = kill_task {
        let _ = t.await;
    }
    // Every worker runs again.
    {
        let mut c = d.cluster.lock().unwrap();
        for w in &mut c.workers {
            if !w.running() {
                let _ = w.kill();
                w.start()?;
            }
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let api_ready = wait_ready(&client, &d.api_url, Duration::from_secs(60)).await;
    if !api_ready {
        faults
            .errors
            .lock()
            .unwrap()
            .push("the API was not ready 60 s after the faults stopped".into());
    }

    // Account for every accepted job.
    let settle_start = Instant::now();
    let deadline = settle_start + Duration::from_secs_f64(args.settle_secs);
    let ids: Arc<Vec<String>> = Arc::new(std::mem::take(&mut *subs.ids.lock().unwrap()));
    let wiped = snapshot.is_some();
    let mut snapshot = snapshot.unwrap_or_default();
    // Jobs that had finished before the empty restart: their results were
    // lost with Redis, their final records were read just before.
    let mut finals: Vec<(String, Final)> = Vec::new();
    let mut pending = Vec::new();
    for id in ids.iter() {
        match snapshot.remove(id) {
            Some(record) => finals.push((id.clone(), Final::Terminal(record))),
            None => pending.push(id.clone()),
        }
    }
    let before_wipe = finals.len();
    let pending = Arc::new(pending);
    let next = Arc::new(AtomicU64::new(0));
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(32) {
        let (client, ids, next, api) = (
            client.clone(),
            pending.clone(),
            next.clone(),
            d.api_url.clone(),
        );
        pollers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else { return out };
                let f = settle_one(&client, &api, id, deadline, wiped).await;
                out.push((id.clone(), f));
            }
        });
    }
    while let Some(r) = pollers.join_next().await {
        finals.extend(r?);
    }
    let settle_secs = secs(settle_start);

    let report = Report::new(&finals);
    let rejected = subs.rejected.lock().unwrap().clone();
    let unexpected = subs.unexpected.lock().unwrap().clone();
    let gave_up = subs.gave_up.load(Ordering::Relaxed);
    let errors = faults.errors.lock().unwrap().clone();
    let succeeded = report.by_status.get("succeeded").copied().unwrap_or(0);
    let not_succeeded = report.terminal - succeeded;
    println!(
        "accepted={} terminal={} succeeded={} not_succeeded={} lost={} duplicates={}",
        ids.len(),
        report.terminal,
        succeeded,
        not_succeeded,
        report.lost.len(),
        report.duplicates
    );
    println!(
        "  idempotency: {} jobs sent with a key, {} retries answered as replays",
        subs.keyed.load(Ordering::Relaxed),
        subs.replayed.load(Ordering::Relaxed)
    );
    if wiped {
        println!(
            "  empty Redis restart: {before_wipe} jobs had finished before it (records from the snapshot, results lost), {} finished after",
            ids.len() - before_wipe
        );
    }
    println!("  by status: {}", fmt_map(&report.by_status));
    println!("  failed by error code: {}", fmt_map(&report.by_code));
    println!("  jobs by attempts: {}", fmt_map(&report.by_attempts));
    println!(
        "  rejected submissions (retried, not accepted): {}; given up: {gave_up}",
        fmt_map(&rejected)
    );
    println!(
        "  faults: worker SIGKILLs={} rabbitmq restarts={} redis restarts={} empty redis restarts={}",
        faults.kills.load(Ordering::Relaxed),
        faults.rabbitmq_restarts.load(Ordering::Relaxed),
        faults.redis_restarts.load(Ordering::Relaxed),
        faults.redis_wipes.load(Ordering::Relaxed)
    );
    println!(
        "  wall time: submit {submit_secs:.1}s, settle {settle_secs:.1}s, total {:.1}s (model {}, {} jobs requested)",
        secs(t0),
        d.model,
        args.jobs
    );
    for (id, why) in report.lost.iter().take(10) {
        println!("  LOST {id}: {why}");
    }
    for u in unexpected.iter().take(10) {
        println!("  UNEXPECTED answer: {u}");
    }
    for e in &errors {
        println!("  HARNESS ERROR: {e}");
    }
    let faults_done = (args.rabbitmq_restart_at <= 0.0
        || faults.rabbitmq_restarts.load(Ordering::Relaxed) == 1)
        && (args.redis_restart_at <= 0.0 || faults.redis_restarts.load(Ordering::Relaxed) == 1)
        && (args.redis_wipe_at <= 0.0 || faults.redis_wipes.load(Ordering::Relaxed) == 1);
    if !faults_done {
        println!("  NOTE: a scheduled restart did not happen; the run does not count");
    }
    if not_succeeded > 0 {
        println!(
            "  FAILED: {not_succeeded} jobs with valid inputs did not succeed (by status above)"
        );
    }
    Ok(report.lost.is_empty()
        && not_succeeded == 0
        && unexpected.is_empty()
        && gave_up == 0
        && errors.is_empty()
        && faults_done)
}
