//! This process's resident memory (RSS), read from `/proc/self/statm`.
//!
//! Job timings record the worker's RSS before and after each job, and the
//! `/metrics` listener reports it as a gauge, so the read must be cheap:
//! `statm` is one short line of page counts (no per-mapping walk like
//! `smaps`), read into a stack buffer without allocating. The page size
//! comes from `sysconf` once. Off Linux (no `/proc`) the reads give `None`.

use std::io::Read;
use std::sync::OnceLock;

/// Fallback page size when `sysconf` has no answer.
const DEFAULT_PAGE_SIZE: u64 = 4096;

/// The kernel's page size in bytes (read once).
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_PAGE_SIZE)
    })
}

/// This process's resident set size in bytes, `None` where `/proc` is
/// missing or unreadable.
pub fn resident_bytes() -> Option<u64> {
    let mut file = std::fs::File::open("/proc/self/statm").ok()?;
    // Seven decimal numbers: far below 256 bytes on any 64-bit system.
    let mut buf = [0u8; 256];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    parse_statm(&buf[..len], page_size())
}

/// This process as `host/pid`: names the worker in job timings and in
/// `GET /v1/stats`. The host is the kernel's host name (a pod's name on
/// Kubernetes), read once; without `/proc` it is `localhost`. Spaces and
/// slashes in a host name become `_`, so the label is one word.
pub fn process_label() -> &'static str {
    static LABEL: OnceLock<String> = OnceLock::new();
    LABEL.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        label(&host, std::process::id())
    })
}

fn label(host: &str, pid: u32) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{host}/{pid}")
}

/// The resident bytes in a `statm` line: its second field (resident pages)
/// times `page_size`.
pub fn parse_statm(line: &[u8], page_size: u64) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_field_counts_resident_pages() {
        assert_eq!(
            parse_statm(b"6132 1948 1020 238 0 402 0\n", 4096),
            Some(1948 * 4096)
        );
        assert_eq!(parse_statm(b"10 3 1 1 0 1 0", 65536), Some(3 * 65536));
    }

    #[test]
    fn a_label_is_one_word_naming_host_and_pid() {
        assert_eq!(label("worker-0", 42), "worker-0/42");
        assert_eq!(label("odd host/name", 7), "odd_host_name/7");
        let own = process_label();
        assert!(own.ends_with(&format!("/{}", std::process::id())), "{own}");
        assert!(!own.contains(' '), "{own}");
    }

    #[test]
    fn garbage_gives_none() {
        for bad in [
            &b""[..],
            b"12",
            b"12 x 3",
            b"\xff\xfe 1",
            b"1 99999999999999999999",
        ] {
            assert_eq!(parse_statm(bad, 4096), None, "{bad:?}");
        }
        assert_eq!(parse_statm(b"1 18446744073709551615", 4096), None);
    }

    #[test]
    fn this_process_has_a_plausible_rss() {
        let Some(rss) = resident_bytes() else {
            return; // not Linux
        };
        assert!(rss > 1 << 20, "{rss}");
        assert!(rss < 64 << 30, "{rss}");
        // Touching 32 MiB shows up.
        let block = std::hint::black_box(vec![1u8; 32 << 20]);
        let after = resident_bytes().unwrap();
        assert!(after >= rss + (24 << 20), "{rss} -> {after}");
        drop(std::hint::black_box(block));
    }
}
