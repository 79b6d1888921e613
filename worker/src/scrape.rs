//! The supervisor's `/metrics`: its own metrics plus its processes'.
//!
//! Under `--processes`, every worker process serves `/metrics` on a
//! loopback port of its own. Scrapers and probes keep using the one
//! configured address: the supervisor answers there, reads each process's
//! text over loopback and merges it in, every sample labelled
//! `process="<index>"` so counters of the same name stay apart. Families
//! are regrouped (the text format wants each metric's lines together).
//! A process that is down (restarting) is simply missing from the answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Metrics children serve that only the supervisor should report.
const SUPERVISOR_ONLY: [&str; 2] = [
    inferq_runtime::metrics::WORKER_PROCESS_RESTARTS_TOTAL,
    inferq_runtime::metrics::WORKER_PROCESSES_RUNNING,
];

/// Largest answer read from a child.
const MAX_BODY: u64 = 16 << 20;

/// `GET /metrics` from a child's listener (`host:port`); `None` when it
/// does not answer 200 within `timeout`.
pub async fn fetch(addr: &str, timeout: Duration) -> Option<String> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut raw = Vec::new();
        stream.take(MAX_BODY).read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.lines().next()?.split_whitespace().nth(1)?;
        (status == "200").then(|| body.to_owned())
    };
    tokio::time::timeout(timeout, get).await.ok().flatten()
}

/// One metric family: its comment lines and samples, in order.
struct Family {
    name: String,
    comments: Vec<String>,
    samples: Vec<String>,
}

/// The families of several texts, in order of first appearance.
#[derive(Default)]
struct Families {
    list: Vec<Family>,
}

impl Families {
    fn get(&mut self, name: &str) -> &mut Family {
        let i = match self.list.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.list.push(Family {
                    name: name.to_owned(),
                    comments: Vec::new(),
                    samples: Vec::new(),
                });
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }

    /// Adds a text's families; with `process`, each sample gets the label
    /// and the supervisor-only families are dropped.
    fn add(&mut self, text: &str, process: Option<usize>) {
        let mut current: Option<String> = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.split_whitespace();
                let (Some(_kind), Some(name)) = (words.next(), words.next()) else {
                    continue;
                };
                current = Some(name.to_owned());
                if process.is_some() && SUPERVISOR_ONLY.contains(&name) {
                    continue;
                }
                let fam = self.get(name);
                // Comments come once, from the first text that has them.
                if !fam.comments.iter().any(|c| c == line) && fam.samples.is_empty() {
                    fam.comments.push(line.to_owned());
                }
                continue;
            }
            let metric = line
                .split(|c: char| c == '{' || c.is_whitespace())
                .next()
                .unwrap_or_default();
            let family = match &current {
                Some(f) if metric.starts_with(f.as_str()) => f.clone(),
                _ => metric.to_owned(),
            };
            if process.is_some() && SUPERVISOR_ONLY.contains(&family.as_str()) {
                continue;
            }
            let sample = match process {
                Some(p) => labelled(line, metric, p),
                None => line.to_owned(),
            };
            self.get(&family).samples.push(sample);
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.list {
            for line in f.comments.iter().chain(&f.samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// A sample line with `process="p"` as its first label.
fn labelled(line: &str, metric: &str, process: usize) -> String {
    let rest = &line[metric.len()..];
    match rest.strip_prefix('{') {
        Some(labels) if labels.starts_with('}') => {
            format!("{metric}{{process=\"{process}\"{labels}")
        }
        Some(labels) => format!("{metric}{{process=\"{process}\",{labels}"),
        None => format!("{metric}{{process=\"{process}\"}}{rest}"),
    }
}

/// The supervisor's own text merged with its children's (index, text).
pub fn merge(own: &str, children: &[(usize, String)]) -> String {
    let mut families = Families::default();
    families.add(own, None);
    for (index, text) in children {
        families.add(text, Some(*index));
    }
    families.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "# HELP inferq_jobs_completed_total Jobs finished\n\
        # TYPE inferq_jobs_completed_total counter\n\
        inferq_jobs_completed_total{model=\"m\",outcome=\"succeeded\"} 4\n\
        # HELP inferq_worker_in_flight_jobs Held\n\
        # TYPE inferq_worker_in_flight_jobs gauge\n\
        inferq_worker_in_flight_jobs 1\n\
        # HELP inferq_worker_processes_running Running\n\
        # TYPE inferq_worker_processes_running gauge\n\
        inferq_worker_processes_running 0\n\
        # HELP inferq_batch_size Batch\n\
        # TYPE inferq_batch_size histogram\n\
        inferq_batch_size_bucket{model=\"m\",le=\"1\"} 4\n\
        inferq_batch_size_sum{model=\"m\"} 4\n\
        inferq_batch_size_count{model=\"m\"} 4\n";

    #[test]
    fn children_are_labelled_and_grouped_by_family() {
        let own = "# HELP inferq_worker_processes_running Running\n\
            # TYPE inferq_worker_processes_running gauge\n\
            inferq_worker_processes_running 2\n";
        let text = merge(own, &[(0, CHILD.into()), (1, CHILD.into())]);
        let lines: Vec<&str> = text.lines().collect();
        // The supervisor's own gauge, once, unlabelled; the children's dropped.
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("inferq_worker_processes_running"))
                .collect::<Vec<_>>(),
            vec![&"inferq_worker_processes_running 2"]
        );
        let done = "inferq_jobs_completed_total{process=\"1\",model=\"m\",outcome=\"succeeded\"} 4";
        assert!(lines.contains(&done), "{text}");
        assert!(lines.contains(&"inferq_worker_in_flight_jobs{process=\"0\"} 1"));
        assert!(lines.contains(&"inferq_batch_size_sum{process=\"1\",model=\"m\"} 4"));
        // One TYPE line per family, its samples right after it.
        let types = lines
            .iter()
            .filter(|l| **l == "# TYPE inferq_batch_size histogram")
            .count();
        assert_eq!(types, 1);
        let start = lines
            .iter()
            .position(|l| *l == "# TYPE inferq_batch_size histogram")
            .unwrap();
        assert!(
            lines[start + 1..start + 7]
                .iter()
                .all(|l| l.starts_with("inferq_batch_size_"))
        );
    }

    #[test]
    fn empty_label_sets_get_the_process_label() {
        assert_eq!(labelled("m{} 1", "m", 2), "m{process=\"2\"} 1");
    }

    #[tokio::test]
    async fn fetch_reads_a_listener_and_gives_up_on_silence() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nm 1\n")
                .await
                .unwrap();
        });
        assert_eq!(
            fetch(&addr, Duration::from_secs(5)).await.as_deref(),
            Some("m 1\n")
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert_eq!(fetch(&gone, Duration::from_secs(1)).await, None);
    }
}
