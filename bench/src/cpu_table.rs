//! The CPU table: where each job's CPU goes, per process group, for every
//! embedded and service measurement.
//!
//! One row per measurement (embedded server and each service run), one
//! column per process group in CPU milliseconds per finished job, their
//! total, and the share of the machine RabbitMQ and Redis took — the numbers
//! behind "the queue costs X ms of CPU per job".

use crate::embedded::EmbeddedReport;
use crate::procs::CpuBreakdown;
use crate::service::ServiceReport;
use crate::table::{Table, num, sig};

/// The process groups in column order.
const GROUPS: [&str; 6] = ["inferq", "api", "workers", "rabbitmq", "redis", "loadgen"];

fn row(run: String, image: &str, conc: usize, per_sec: f64, cpu: &CpuBreakdown) -> Vec<String> {
    let mut cells = vec![run, image.to_owned(), conc.to_string(), sig(per_sec)];
    cells.extend(
        GROUPS
            .iter()
            .map(|g| num(cpu.group(g).and_then(|g| g.ms_per_job), 2)),
    );
    cells.push(num(cpu.total_ms_per_job(), 2));
    cells.push(num(Some(cpu.pct_of_machine(&["rabbitmq", "redis"])), 1));
    cells.push(num(
        Some(cpu.groups.iter().map(|g| g.pct_of_machine).sum::<f64>()),
        0,
    ));
    cells
}

pub(crate) fn table(embedded: Option<&EmbeddedReport>, service: Option<&ServiceReport>) -> Table {
    let mut headers = vec!["run", "image", "conc", "jobs/s"];
    headers.extend(GROUPS);
    headers.extend(["total", "brokers % machine", "all % machine"]);
    let mut t = Table::new("CPU ms per job by process group", &headers);
    if let Some(e) = embedded {
        for r in &e.rows {
            t.row(row(
                "embedded".into(),
                &r.image,
                r.run.concurrency,
                r.run.per_sec,
                &r.cpu,
            ));
        }
    }
    if let Some(s) = service {
        for r in &s.rows {
            if let Some(cpu) = &r.cpu {
                t.row(row(
                    format!("batch {}", r.max_batch),
                    &r.image,
                    r.run.concurrency,
                    r.run.per_sec,
                    cpu,
                ));
            }
        }
    }
    t.note("utime + stime from /proc/<pid>/stat over each measurement ÷ jobs finished in it (10 ms tick resolution); inferq = the embedded server, api/workers = the production processes, rabbitmq = beam.smp listening on 5672, redis = redis-server on 6379, loadgen = this bench; % machine = share of all allowed cores");
    t.note("rabbitmq/redis are shared: in the embedded rows (which do not use them) their CPU is other clients' background load");
    t
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_row_has_every_group_in_order_and_dashes_for_absent_ones() {
        let used = vec![
            ("api".to_string(), Duration::from_millis(100)),
            ("workers".to_string(), Duration::from_millis(1000)),
            ("rabbitmq".to_string(), Duration::from_millis(200)),
        ];
        let cpu = CpuBreakdown::compute(&used, Duration::from_secs(1), 2, 100);
        let cells = row("batch 2".into(), "x.jpg", 16, 100.0, &cpu);
        assert_eq!(
            cells,
            vec![
                "batch 2", "x.jpg", "16", "100", "-", "1.00", "10.00", "2.00", "-", "-", "13.00",
                "10.0", "65"
            ]
        );
    }
}
