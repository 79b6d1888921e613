//! Configuration of the `inferq-worker` process (the consume-loop group is
//! also used by the embedded server).

use std::path::PathBuf;

use clap::Parser;
use inferq_backends::fetch::FetchConfig;
use inferq_runtime::config::{
    BrokerConfig, DeliveryConfig, InferenceConfig, LimitConfig, LogConfig, MetricsConfig,
    ModelConfig, RetentionConfig, StoreConfig, VideoConfig, WebhookConfig,
};
use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;

/// Options of the consume loop shared by both processes.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ConsumeConfig {
    /// Unacknowledged jobs this worker may hold; 0 means twice the inference
    /// threads (one running and one waiting per thread).
    #[arg(long, env = "INFERQ_PREFETCH", default_value_t = 0)]
    pub prefetch: u16,
    /// Seconds to finish in-flight jobs after a shutdown signal; jobs still
    /// running then are left unacked and the broker redelivers them.
    #[arg(long, env = "INFERQ_DRAIN_TIMEOUT_SECS", default_value_t = 30.0)]
    pub drain_timeout_secs: f64,
}

/// How many worker processes this `inferq-worker` runs (docs/reliability.md).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// `off`: this process runs the inference threads itself (`--threads`).
    /// `auto`: a supervisor starts one single-thread worker process pinned to
    /// each allowed core (`--cores` or the affinity mask) and restarts any
    /// that dies; `N`: N such processes, cores taken in turn. A crash then
    /// costs one core's jobs (redelivered), not the whole host's.
    #[arg(long, env = "INFERQ_PROCESSES", default_value = "off")]
    #[serde(default)]
    pub processes: Processes,
    /// Set by the supervisor on the processes it starts (`index:core:
    /// decode_mib:metrics_listen`); not for operators.
    #[arg(long, env = "INFERQ_SUPERVISED_CHILD", hide = true)]
    #[serde(skip)]
    pub supervised_child: Option<ChildRole>,
}

/// The `--processes` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Processes {
    /// One process, `--threads` inference threads (the classic worker).
    #[default]
    Off,
    /// One supervised process per allowed core.
    Auto,
    /// This many supervised processes.
    Count(usize),
}

impl std::str::FromStr for Processes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "" => Ok(Processes::Off),
            "auto" => Ok(Processes::Auto),
            n => match n.parse::<usize>() {
                Ok(0) | Err(_) => Err(format!(
                    "`{s}`: expected off, auto or a number of processes (at least 1)"
                )),
                Ok(n) => Ok(Processes::Count(n)),
            },
        }
    }
}

impl TryFrom<String> for Processes {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Processes> for String {
    fn from(p: Processes) -> String {
        match p {
            Processes::Off => "off".into(),
            Processes::Auto => "auto".into(),
            Processes::Count(n) => n.to_string(),
        }
    }
}

/// What the supervisor tells one of its processes: which slot it fills,
/// the core its single inference thread runs on, its share of the decode
/// memory budget and where its own `/metrics` listens (empty: off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRole {
    pub index: usize,
    pub core: usize,
    pub decode_memory_mib: u64,
    pub metrics_listen: String,
}

impl std::str::FromStr for ChildRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected index:core:decode_mib:metrics_listen");
        let mut parts = s.splitn(4, ':');
        let mut num = || {
            parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(bad)
        };
        let (index, core, decode_memory_mib) = (num()?, num()?, num()?);
        let metrics_listen = parts.next().ok_or_else(bad)?.to_owned();
        Ok(ChildRole {
            index: index as usize,
            core: core as usize,
            decode_memory_mib,
            metrics_listen,
        })
    }
}

impl std::fmt::Display for ChildRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.index, self.core, self.decode_memory_mib, self.metrics_listen
        )
    }
}

impl WorkerConfig {
    /// The config a supervised process runs with: whatever the supervisor
    /// was given, narrowed to one inference thread on the role's core, the
    /// role's decode budget and metrics address, and no further supervision.
    pub fn for_child(mut self, role: &ChildRole) -> Self {
        self.inference.threads = 1;
        self.inference.cores = vec![role.core];
        self.inference.decode_memory_mib = role.decode_memory_mib;
        self.metrics.metrics_listen = role.metrics_listen.clone();
        self.processes.processes = Processes::Off;
        self
    }
}

/// InferQ worker: consumes image jobs from RabbitMQ, runs ONNX Runtime on
/// pinned inference threads and stores results in Redis. Every option can
/// also be set in the config file (key = option name with underscores) or in
/// the environment variable shown.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "inferq-worker", version)]
#[command(mut_arg("metrics_listen", |a| a.default_value("0.0.0.0:9091")))]
pub struct WorkerConfig {
    /// Config file (TOML or JSON) with any of the options below.
    #[arg(long, env = "INFERQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub delivery: DeliveryConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub retention: RetentionConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub models: ModelConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub inference: InferenceConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub consume: ConsumeConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub video: VideoConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub fetch: FetchConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub webhooks: WebhookConfig,
    /// Tenants' webhook secrets, from the API key entries.
    #[command(flatten)]
    #[serde(flatten)]
    pub tenant_keys: inferq_backends::tenant::TenantKeysConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub processes: ProcessConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: MetricsConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub log: LogConfig,
}

/// The engine settings from the shared groups.
pub fn engine_config(inference: &InferenceConfig, limits: &LimitConfig) -> EngineConfig {
    EngineConfig {
        threads: inference.threads,
        cores: inference.cores.clone(),
        pin: inference.pin_threads,
        ort_library: inference.ort_library.clone(),
        max_pixels: limits.max_pixels,
        decode_budget_bytes: crate::memory::decode_budget_bytes(inference.decode_memory_mib),
        providers: inference.providers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_parse() {
        assert_eq!("off".parse(), Ok(Processes::Off));
        assert_eq!("AUTO".parse(), Ok(Processes::Auto));
        assert_eq!("3".parse(), Ok(Processes::Count(3)));
        assert!("0".parse::<Processes>().is_err());
        assert!("many".parse::<Processes>().is_err());
    }

    #[test]
    fn child_role_round_trips_with_an_address() {
        let role = ChildRole {
            index: 1,
            core: 3,
            decode_memory_mib: 128,
            metrics_listen: "127.0.0.1:9093".into(),
        };
        assert_eq!(role.to_string().parse(), Ok(role));
        let off: ChildRole = "0:0:64:".parse().unwrap();
        assert_eq!(off.metrics_listen, "");
        assert!("1:x:2:a".parse::<ChildRole>().is_err());
    }
}
