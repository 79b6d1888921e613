//! Tests of the report's JSON shape and its tables, on a hand-made report.

use clap::Parser;

use super::*;
use crate::bare::BareOutput;
use crate::cli::Cli;
use crate::coldstart::ColdRun;
use crate::embedded::EmbeddedRow;
use crate::limit::{BatchPoint, LimitImage, Throughput};
use crate::loadgen::LoopSummary;
use crate::procs::CpuBreakdown;
use crate::resources::{CpuUse, MemoryReport};
use crate::service::ServiceRow;
use crate::stats::Summary;
use crate::targets::evaluate;

fn cpu(ms: &[(&str, u64)]) -> CpuBreakdown {
    let used: Vec<(String, std::time::Duration)> = ms
        .iter()
        .map(|(n, m)| (n.to_string(), std::time::Duration::from_millis(*m)))
        .collect();
    CpuBreakdown::compute(&used, std::time::Duration::from_secs(1), 2, 100)
}

fn lat(p50: f64) -> Summary {
    Summary {
        count: 10,
        mean_ms: p50,
        p50_ms: p50,
        p90_ms: p50 * 1.5,
        p99_ms: p50 * 2.0,
        max_ms: p50 * 3.0,
    }
}

fn run(concurrency: usize, per_sec: f64, errors: u64) -> LoopSummary {
    LoopSummary {
        concurrency,
        ok: 100,
        errors,
        secs: 1.0,
        per_sec,
        latency: lat(8.0),
        loadgen_cpu: CpuUse {
            cpu_secs: 0.05,
            pct_of_one_core: 5.0,
        },
        mean_batch: Some(1.5),
        error_samples: if errors > 0 {
            vec!["submit answered 429".into()]
        } else {
            vec![]
        },
    }
}

fn sample(with_service: bool) -> Report {
    let settings =
        Settings::from_cli(Cli::try_parse_from(["inferq-bench", "--quick"]).unwrap()).unwrap();
    let limit = LimitReport {
        model: "efficientnet-lite0:1".into(),
        cores: vec![0, 1],
        input_shape: vec![-1, 3, 224, 224],
        batch_axis_dynamic: true,
        session_load_ms: 40.0,
        images: vec![LimitImage {
            image: "chelsea.png".into(),
            bytes: 240_512,
            width: 451,
            height: 300,
            full: Throughput {
                images_per_sec: 200.0,
                latency: lat(9.5),
            },
            decode: lat(2.0),
            preprocess: lat(1.4),
            inference: Throughput {
                images_per_sec: 480.0,
                latency: lat(4.1),
            },
            batch: vec![
                BatchPoint {
                    batch: 1,
                    images_per_sec: 480.0,
                    latency: lat(4.1),
                },
                BatchPoint {
                    batch: 2,
                    images_per_sec: 500.0,
                    latency: lat(8.0),
                },
            ],
        }],
    };
    let mut memory = MemoryReport::default();
    memory.add_sample(&[("api".into(), 30 * 1024), ("worker-0".into(), 75 * 1024)]);
    let mut brokers = MemoryReport::default();
    brokers.add_sample(&[("rabbitmq".into(), 100 * 1024), ("redis".into(), 10 * 1024)]);
    brokers.add_sample(&[("rabbitmq".into(), 160 * 1024), ("redis".into(), 11 * 1024)]);
    let service = ServiceReport {
        workers: 2,
        worker_cores: vec![0, 1],
        rows: vec![
            ServiceRow {
                max_batch: 4,
                image: "chelsea.png".into(),
                run: run(4, 150.0, 2),
                ratio_to_limit: Some(0.75),
                ratio_to_bare: Some(1.25),
                worker_compute: lat(9.0),
                queue: lat(0.5),
                cpu: Some(cpu(&[
                    ("api", 100),
                    ("workers", 1700),
                    ("rabbitmq", 150),
                    ("redis", 50),
                    ("loadgen", 60),
                ])),
            },
            ServiceRow {
                max_batch: 4,
                image: "chelsea.png".into(),
                run: run(1, 60.0, 0),
                ratio_to_limit: Some(0.3),
                ratio_to_bare: Some(0.5),
                worker_compute: lat(9.0),
                queue: lat(0.5),
                cpu: None,
            },
        ],
        memory_by_batch: [(4, memory.clone())].into(),
        memory,
        shipped_max_batch: 4,
        brokers_by_batch: [(4, brokers.clone())].into(),
        brokers,
    };
    let bare = vec![BareRow {
        image: "chelsea.png".into(),
        // The script prints its JSON on one line.
        out: BareOutput::parse(concat!(
            r#"{"images_per_sec": 120.0, "p50_ms": 16.5, "p99_ms": 20.0, "images": 600, "#,
            r#""secs": 5.0, "processes": 2, "cores": [0, 1], "top1": 285, "#,
            r#""top5": [285, 281, 282, 287, 728], "versions": {"numpy": "2.3.5"}}"#
        ))
        .unwrap(),
        ratio_to_limit: Some(0.6),
        inferq_top1: Some(285),
    }];
    let embedded = EmbeddedReport {
        threads: 2,
        cores: vec![0, 1],
        max_batch: 4,
        rows: vec![EmbeddedRow {
            image: "chelsea.png".into(),
            run: run(1, 62.0, 0),
            ratio_to_limit: Some(0.31),
            ratio_to_bare: Some(0.52),
            worker_compute: lat(9.0),
            queue: lat(0.1),
            cpu: cpu(&[("inferq", 1500), ("loadgen", 50)]),
        }],
        memory: MemoryReport::default(),
        top1: [("chelsea.png".to_string(), 285)].into(),
    };
    let inputs = crate::targets::TargetInputs::gather(
        "chelsea.png",
        Some(&limit),
        Some(&bare),
        Some(&embedded),
        Some(&service),
        None,
    );
    let targets = Targets {
        results: evaluate(&inputs),
        inputs,
    };
    let cold = vec![ColdRun {
        spawn_to_ready_ms: 180.0,
        logged_startup_ms: Some(150.0),
        first_job_ms: 200.0,
        after_ready_job_ms: 12.0,
    }];
    Report {
        schema_version: SCHEMA_VERSION,
        started_at: "2026-01-01T00:00:00Z".into(),
        host: Host {
            allowed_cores: vec![0, 1],
            os: "linux".into(),
            cpu_model: None,
            load_avg_at_start: Some(0.1),
        },
        settings,
        limit: Some(limit),
        bare: Some(bare),
        embedded: Some(embedded),
        service: with_service.then_some(service),
        backlog: None,
        targets: Some(targets),
        submit: Some(vec![SubmitRow {
            input: "uri".into(),
            run: run(64, 1500.0, 0),
        }]),
        coldstart: vec![ColdStartReport {
            models: "efficientnet-lite0:1 alone".into(),
            image: "photo-640x480.jpg".into(),
            median: cold[0],
            runs: cold,
        }],
        errors: vec!["service: boom".into()],
    }
}

#[test]
fn json_shape() {
    let v = serde_json::to_value(sample(true)).unwrap();
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["settings"]["phases"][0], "limit");
    assert_eq!(v["settings"]["measure_secs"].as_f64(), Some(1.5));
    let img = &v["limit"]["images"][0];
    assert_eq!(img["full"]["images_per_sec"], 200.0);
    assert_eq!(img["decode"]["p50_ms"], 2.0);
    assert_eq!(img["batch"][1]["batch"], 2);
    let row = &v["service"]["rows"][0];
    // The loop summary is flattened into the row.
    assert_eq!(row["concurrency"], 4);
    assert_eq!(row["max_batch"], 4);
    assert_eq!(row["mean_batch"], 1.5);
    assert_eq!(row["per_sec"], 150.0);
    assert_eq!(row["latency"]["p99_ms"], 16.0);
    assert_eq!(row["ratio_to_limit"], 0.75);
    assert_eq!(row["loadgen_cpu"]["pct_of_one_core"], 5.0);
    assert_eq!(row["error_samples"][0], "submit answered 429");
    assert_eq!(v["service"]["memory"]["peak_kib"]["api"], 30 * 1024);
    assert_eq!(v["service"]["memory"]["total_peak_kib"], 105 * 1024);
    assert_eq!(
        v["service"]["memory_by_batch"]["4"]["peak_kib"]["worker-0"],
        75 * 1024
    );
    // No error samples: the key is left out.
    assert!(v["submit"][0].get("error_samples").is_none());
    assert_eq!(v["coldstart"][0]["median"]["logged_startup_ms"], 150.0);
    assert_eq!(v["coldstart"][0]["models"], "efficientnet-lite0:1 alone");
    assert_eq!(v["errors"][0], "service: boom");
    let v = serde_json::to_value(sample(false)).unwrap();
    assert!(v["service"].is_null());
}

#[test]
fn tables_show_the_numbers() {
    let r = sample(true);
    let text = r.text();
    assert!(
        text.contains("== Limit: in-process, 2 pinned threads"),
        "{text}"
    );
    assert!(text.contains("chelsea.png (451x300, 240 KB)"), "{text}");
    assert!(text.contains("batch 2 img/s"), "{text}");
    // The ratio as a percentage, and the error count and sample.
    let service_row = text
        .lines()
        .find(|l| l.contains("chelsea.png ") && l.contains("75%"))
        .unwrap_or_else(|| panic!("no service row in\n{text}"));
    assert!(
        service_row.starts_with("4 "),
        "max_batch first: {service_row}"
    );
    assert!(service_row.contains("150"), "{service_row}");
    assert!(service_row.contains("1.50"), "mean batch: {service_row}");
    assert!(
        text.contains("chelsea.png c=4: submit answered 429"),
        "{text}"
    );
    assert!(text.contains("total (same sample)"), "{text}");
    assert!(text.contains("105.0"), "{text}");
    assert!(text.contains("batch 4 MiB"), "{text}");
    assert!(text.contains("ERROR service: boom"), "{text}");
    let md = r.markdown();
    assert!(md.starts_with("# inferq-bench report"));
    assert!(md.contains("(--quick: rough numbers)"));
    assert!(md.contains(
        "### Cold start: new worker process, efficientnet-lite0:1 alone (photo-640x480.jpg)"
    ));
    assert!(md.contains("| 1 | 180 | 150.0 | 200 | 12.0 |"), "{md}");
    assert!(md.contains("### Errors\n\n- service: boom"));
    assert!(!text.contains("WARNING"), "{text}");
    let mut busy = sample(true);
    busy.host.load_avg_at_start = Some(1.9);
    assert!(
        busy.text()
            .starts_with("WARNING: load average 1.90 before the run")
    );
    assert!(busy.markdown().contains("**WARNING: load average 1.90"));
    let without = sample(false).text();
    assert!(!without.contains("Service:"));
    assert!(!without.contains("Memory:"));
}

#[test]
fn write_creates_both_files() {
    let dir = std::env::temp_dir().join(format!("inferq-bench-test-{}", std::process::id()));
    let (json, md) = sample(true).write(&dir).unwrap();
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(back["limit"]["model"], "efficientnet-lite0:1");
    assert!(
        std::fs::read_to_string(&md)
            .unwrap()
            .contains("### Submit path")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn comparison_rows_cpu_brokers_and_targets_are_reported() {
    let r = sample(true);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["bare"][0]["images_per_sec"], 120.0);
    assert_eq!(v["bare"][0]["top1"], 285);
    assert_eq!(v["bare"][0]["inferq_top1"], 285);
    assert_eq!(v["embedded"]["rows"][0]["ratio_to_bare"], 0.52);
    assert_eq!(v["embedded"]["top1"]["chelsea.png"], 285);
    let cpu = &v["service"]["rows"][0]["cpu"];
    assert_eq!(cpu["groups"][1]["name"], "workers");
    assert_eq!(cpu["groups"][1]["ms_per_job"], 17.0);
    assert_eq!(v["service"]["shipped_max_batch"], 4);
    assert_eq!(v["service"]["brokers"]["start_kib"]["rabbitmq"], 100 * 1024);
    assert_eq!(v["targets"]["inputs"]["production_per_sec"], 150.0);
    assert_eq!(v["targets"]["results"][0]["measured"], 0.75);
    assert_eq!(v["targets"]["results"][0]["met"], false);

    let text = r.text();
    let bare = text
        .lines()
        .find(|l| l.starts_with("chelsea.png") && l.contains("285"))
        .unwrap_or_else(|| panic!("no bare row in\n{text}"));
    assert!(bare.contains("60%") && bare.ends_with("yes"), "{bare}");
    assert!(
        text.contains("== Embedded: inferq (in-memory queue)"),
        "{text}"
    );
    assert!(
        text.contains("== CPU ms per job by process group"),
        "{text}"
    );
    let cpu_row = text
        .lines()
        .find(|l| l.starts_with("batch 4") && l.contains("17.00"))
        .unwrap_or_else(|| panic!("no CPU row in\n{text}"));
    // api 1, workers 17, rabbitmq 1.5, redis 0.5, loadgen 0.6 ms per job.
    assert!(
        cpu_row.contains("20.60") && cpu_row.contains("10.0"),
        "{cpu_row}"
    );
    let growth = text
        .lines()
        .find(|l| l.starts_with("rabbitmq growth"))
        .unwrap_or_else(|| panic!("no growth row in\n{text}"));
    assert!(growth.ends_with("60.0"), "{growth}");
    assert!(text.contains("vs bare"), "{text}");
    assert!(
        text.contains("== Targets (issue 19), chelsea.png"),
        "{text}"
    );
    let row = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    assert!(row("production saturation ÷ in-process limit").ends_with("NOT MET"));
    assert!(row("production saturation ÷ bare").ends_with("met"));
    assert!(row("RabbitMQ + Redis CPU").ends_with("NOT MET"));
    assert!(row("submit path").ends_with("not measured"));
    assert!(r.markdown().contains("### Targets (issue 19)"));
}

#[test]
fn a_disagreeing_bare_pipeline_is_flagged() {
    let mut r = sample(true);
    if let Some(rows) = &mut r.bare {
        rows[0].inferq_top1 = Some(1);
    }
    let text = r.text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("chelsea.png") && l.ends_with("NO")),
        "{text}"
    );
}
