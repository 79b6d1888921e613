//! The performance targets of issue 19, computed from one run.
//!
//! Absolute times vary threefold between machines here, so the targets are
//! ratios and differences between rows measured in the same run: the
//! production path at saturation against the in-process limit, the embedded
//! server and the bare Python pipeline; its latency at concurrency 1 against
//! the embedded server's; the brokers' CPU share and RabbitMQ's memory
//! growth; the API + workers' memory; the submit rate. [`TargetInputs`]
//! gathers the measured values from the phases (every one optional: a phase
//! left out with `--only` leaves its targets "not measured"), and
//! [`evaluate`] turns them into [`Target`] rows with met / not met.

use serde::Serialize;

use crate::bare::BareRow;
use crate::embedded::EmbeddedReport;
use crate::limit::LimitReport;
use crate::service::{ServiceReport, SubmitRow};
use crate::table::{Table, num};

/// The values the targets are computed from; all for one image.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct TargetInputs {
    pub image: String,
    /// Production path: highest jobs/s over the concurrency levels at the
    /// shipped max_batch.
    pub production_per_sec: Option<f64>,
    pub limit_per_sec: Option<f64>,
    pub embedded_per_sec: Option<f64>,
    pub bare_per_sec: Option<f64>,
    /// Concurrency-1 latency, ms.
    pub production_c1_p50_ms: Option<f64>,
    pub production_c1_p99_ms: Option<f64>,
    pub embedded_c1_p50_ms: Option<f64>,
    pub embedded_c1_p99_ms: Option<f64>,
    /// RabbitMQ + Redis CPU, % of the machine, in the production row at
    /// saturation.
    pub brokers_cpu_pct: Option<f64>,
    /// RabbitMQ's peak RSS minus its RSS at the start of the service phase.
    pub rabbitmq_growth_mib: Option<f64>,
    /// API + workers, peak of the sum, shipped max_batch run.
    pub api_workers_mib: Option<f64>,
    /// The lower of the submit-path rows.
    pub submit_per_sec: Option<f64>,
}

/// One target: what is required, what was measured, whether it is met.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Target {
    pub name: String,
    /// e.g. "≥ 0.92".
    pub required: String,
    pub measured: Option<f64>,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

fn at_least(name: &str, measured: Option<f64>, bound: f64, unit: &str) -> Target {
    Target {
        name: name.into(),
        required: format!("≥ {bound}{unit}"),
        measured,
        met: measured.map(|m| m >= bound),
    }
}

fn at_most(name: &str, measured: Option<f64>, bound: f64, unit: &str) -> Target {
    Target {
        name: name.into(),
        required: format!("≤ {bound}{unit}"),
        measured,
        met: measured.map(|m| m <= bound),
    }
}

/// The targets of issue 19, section 2 (the delivery guarantees are checked
/// by `make chaos` and the delivery tests, not here).
pub(crate) fn evaluate(i: &TargetInputs) -> Vec<Target> {
    vec![
        at_least(
            "production saturation ÷ in-process limit",
            ratio(i.production_per_sec, i.limit_per_sec),
            0.92,
            "",
        ),
        at_least(
            "production saturation ÷ embedded saturation",
            ratio(i.production_per_sec, i.embedded_per_sec),
            0.95,
            "",
        ),
        at_least(
            "production saturation ÷ bare Python pipeline",
            ratio(i.production_per_sec, i.bare_per_sec),
            1.2,
            "",
        ),
        at_most(
            "c=1 p50: production − embedded (ms)",
            diff(i.production_c1_p50_ms, i.embedded_c1_p50_ms),
            1.5,
            " ms",
        ),
        at_most(
            "c=1 p99: production − embedded (ms)",
            diff(i.production_c1_p99_ms, i.embedded_c1_p99_ms),
            4.0,
            " ms",
        ),
        at_most(
            "RabbitMQ + Redis CPU at saturation (% of machine)",
            i.brokers_cpu_pct,
            5.0,
            " %",
        ),
        at_most(
            "RabbitMQ peak RSS growth (MiB)",
            i.rabbitmq_growth_mib,
            100.0,
            " MiB",
        ),
        at_most(
            "API + workers peak RSS (MiB)",
            i.api_workers_mib,
            220.0,
            " MiB",
        ),
        at_least("submit path (jobs/s)", i.submit_per_sec, 5000.0, " jobs/s"),
    ]
}

/// The highest-throughput row of `rows` (jobs/s, the row).
fn saturation<'a, T>(rows: impl Iterator<Item = &'a T>, rate: impl Fn(&T) -> f64) -> Option<&'a T>
where
    T: 'a,
{
    rows.max_by(|a, b| rate(a).total_cmp(&rate(b)))
}

impl TargetInputs {
    /// Gathers the inputs for `image` from the phases that ran.
    pub(crate) fn gather(
        image: &str,
        limit: Option<&LimitReport>,
        bare: Option<&[BareRow]>,
        embedded: Option<&EmbeddedReport>,
        service: Option<&ServiceReport>,
        submit: Option<&[SubmitRow]>,
    ) -> Self {
        let mut i = TargetInputs {
            image: image.into(),
            limit_per_sec: limit.and_then(|l| l.full_rate(image)),
            bare_per_sec: bare
                .and_then(|rows| rows.iter().find(|r| r.image == image))
                .map(|r| r.out.images_per_sec),
            submit_per_sec: submit
                .and_then(|rows| rows.iter().map(|r| r.run.per_sec).min_by(f64::total_cmp)),
            ..TargetInputs::default()
        };
        if let Some(e) = embedded {
            let rows = || e.rows.iter().filter(|r| r.image == image);
            i.embedded_per_sec = saturation(rows(), |r| r.run.per_sec).map(|r| r.run.per_sec);
            if let Some(c1) = rows().find(|r| r.run.concurrency == 1) {
                i.embedded_c1_p50_ms = Some(c1.run.latency.p50_ms);
                i.embedded_c1_p99_ms = Some(c1.run.latency.p99_ms);
            }
        }
        if let Some(s) = service {
            let shipped = s.shipped_max_batch;
            let rows = || {
                s.rows
                    .iter()
                    .filter(|r| r.image == image && r.max_batch == shipped)
            };
            if let Some(sat) = saturation(rows(), |r| r.run.per_sec) {
                i.production_per_sec = Some(sat.run.per_sec);
                i.brokers_cpu_pct = sat
                    .cpu
                    .as_ref()
                    .filter(|c| c.group("rabbitmq").is_some() || c.group("redis").is_some())
                    .map(|c| c.pct_of_machine(&["rabbitmq", "redis"]));
            }
            if let Some(c1) = rows().find(|r| r.run.concurrency == 1) {
                i.production_c1_p50_ms = Some(c1.run.latency.p50_ms);
                i.production_c1_p99_ms = Some(c1.run.latency.p99_ms);
            }
            i.rabbitmq_growth_mib = s.brokers.growth_kib("rabbitmq").map(|k| k as f64 / 1024.0);
            i.api_workers_mib = s
                .memory_by_batch
                .get(&shipped)
                .map(|m| m.total_peak_kib as f64 / 1024.0);
        }
        i
    }
}

/// The targets table.
pub(crate) fn table(inputs: &TargetInputs, targets: &[Target]) -> Table {
    let mut t = Table::new(
        &format!("Targets (issue 19), {}", inputs.image),
        &["target", "required", "measured", "status"],
    );
    for x in targets {
        t.row(vec![
            x.name.clone(),
            x.required.clone(),
            num(x.measured, 2),
            match x.met {
                Some(true) => "met".into(),
                Some(false) => "NOT MET".into(),
                None => "not measured".into(),
            },
        ]);
    }
    t.note("production = API + RabbitMQ + workers + Redis at the shipped max_batch, saturation = its highest jobs/s over the concurrency levels; embedded = inferq at its highest; CPU share from that saturation row; RabbitMQ growth = peak RSS minus RSS at the start of the service phase; API + workers = peak of the sum in one sample");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> TargetInputs {
        TargetInputs {
            image: "photo-640x480.jpg".into(),
            production_per_sec: Some(120.0),
            limit_per_sec: Some(150.0),
            embedded_per_sec: Some(125.0),
            bare_per_sec: Some(100.0),
            production_c1_p50_ms: Some(16.0),
            production_c1_p99_ms: Some(30.0),
            embedded_c1_p50_ms: Some(15.0),
            embedded_c1_p99_ms: Some(25.0),
            brokers_cpu_pct: Some(7.5),
            rabbitmq_growth_mib: Some(40.0),
            api_workers_mib: Some(230.0),
            submit_per_sec: Some(6000.0),
        }
    }

    #[test]
    fn every_target_is_computed_and_judged() {
        let t = evaluate(&inputs());
        let get = |prefix: &str| {
            t.iter()
                .find(|x| x.name.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} missing"))
        };
        let lim = get("production saturation ÷ in-process");
        assert_eq!(lim.measured, Some(0.8));
        assert_eq!(lim.met, Some(false));
        let emb = get("production saturation ÷ embedded");
        assert!((emb.measured.unwrap() - 0.96).abs() < 1e-12);
        assert_eq!(emb.met, Some(true));
        assert_eq!(get("production saturation ÷ bare").met, Some(true));
        let p50 = get("c=1 p50");
        assert_eq!((p50.measured, p50.met), (Some(1.0), Some(true)));
        let p99 = get("c=1 p99");
        assert_eq!((p99.measured, p99.met), (Some(5.0), Some(false)));
        assert_eq!(get("RabbitMQ + Redis").met, Some(false));
        assert_eq!(get("RabbitMQ peak").met, Some(true));
        assert_eq!(get("API + workers").met, Some(false));
        assert_eq!(get("submit").met, Some(true));
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn bounds_are_inclusive_and_missing_values_are_not_judged() {
        let mut i = inputs();
        i.production_per_sec = Some(120.0);
        i.bare_per_sec = Some(100.0);
        i.submit_per_sec = Some(5000.0);
        i.brokers_cpu_pct = Some(5.0);
        let t = evaluate(&i);
        assert!(
            t.iter()
                .find(|x| x.name.starts_with("production saturation ÷ bare"))
                .unwrap()
                .met
                == Some(true)
        );
        assert!(t.iter().find(|x| x.name.starts_with("submit")).unwrap().met == Some(true));
        assert!(
            t.iter()
                .find(|x| x.name.starts_with("RabbitMQ + Redis"))
                .unwrap()
                .met
                == Some(true)
        );
        let none = evaluate(&TargetInputs::default());
        assert!(none.iter().all(|x| x.measured.is_none() && x.met.is_none()));
        // A zero denominator is "not measured", not infinity.
        let mut z = inputs();
        z.limit_per_sec = Some(0.0);
        assert_eq!(evaluate(&z)[0].measured, None);
        let text = table(&i, &evaluate(&i)).text();
        assert!(text.contains("NOT MET") && text.contains("met"), "{text}");
        assert!(table(&i, &none).text().contains("not measured"));
    }
}
