//! Which network addresses `http(s)://` references may reach.
//!
//! A client-supplied URL is fetched from inside the deployment, so without a
//! guard it could read the cloud metadata service (169.254.169.254), an
//! admin port on loopback or anything on the private network (server-side
//! request forgery). [`forbidden_reason`] classifies one address;
//! [`HostPolicy`] adds the operator's allow-list. The HTTP client applies the
//! policy to every address a host resolves to, and connects only to those
//! checked addresses (see [`super::http`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::FetchError;

/// Why `ip` must not be reached, or `None` if it is an ordinary public address.
///
/// IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are
/// judged by the IPv4 address, since that is where the packets end up.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private network")
    } else if ip.is_link_local() {
        Some("link-local (incl. cloud metadata)")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("carrier-grade NAT (100.64.0.0/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 {
        Some("reserved or broadcast (240.0.0.0/4)")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Some("unique local (fc00::/7)")
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if (seg[0] & 0xffc0) == 0xfec0 {
        Some("site-local (fec0::/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let o = ip.octets();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // ::a.b.c.d (deprecated IPv4-compatible); :: and ::1 are handled as IPv6.
    if seg[..6] == [0; 6] && !(seg[6] == 0 && seg[7] <= 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 64:ff9b::/96 (NAT64 well-known prefix)
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 2002:aabb:ccdd::/48 (6to4)
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The SSRF policy plus the operator's exceptions (`--fetch-allow-hosts`).
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Lowercase host names, without a trailing dot.
    names: Vec<String>,
    nets: Vec<IpNet>,
}

/// At most this many allow-list entries (the list is matched linearly).
const MAX_ALLOW_ENTRIES: usize = 256;

impl HostPolicy {
    /// Builds the policy from allow-list entries: host names, IP addresses
    /// (`127.0.0.1`, `::1`, `[::1]`) or CIDR blocks (`10.0.0.0/8`).
    pub fn new(allow: &[String]) -> Result<Self, FetchError> {
        if allow.len() > MAX_ALLOW_ENTRIES {
            return Err(FetchError::Failed(format!(
                "--fetch-allow-hosts has {} entries, more than {MAX_ALLOW_ENTRIES}",
                allow.len()
            )));
        }
        let mut policy = HostPolicy::default();
        for entry in allow {
            let e = entry.trim();
            if e.is_empty() {
                continue;
            }
            let bare = e.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if is_host_name(e) {
                policy.names.push(normalise_name(e));
            } else {
                return Err(FetchError::Failed(format!(
                    "--fetch-allow-hosts: `{e}` is not a host name, IP address or CIDR block"
                )));
            }
        }
        Ok(policy)
    }

    /// True when the operator allowed this host name.
    pub fn name_allowed(&self, host: &str) -> bool {
        let host = normalise_name(host);
        self.names.contains(&host)
    }

    /// Checks one address that `host` (a name, or the address itself) stands for.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), FetchError> {
        let Some(reason) = forbidden_reason(ip) else {
            return Ok(());
        };
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.name_allowed(host)
            || self
                .nets
                .iter()
                .any(|n| n.contains(&ip) || n.contains(&canonical))
        {
            return Ok(());
        }
        Err(FetchError::Forbidden(format!(
            "{host} resolves to {ip}, a {reason} address (allow it with --fetch-allow-hosts)"
        )))
    }

    /// The cheap check of a host name without resolving it: refuses only
    /// `localhost` and `*.localhost`, which always mean loopback.
    pub fn check_name(&self, host: &str) -> Result<(), FetchError> {
        let h = normalise_name(host);
        if (h == "localhost" || h.ends_with(".localhost")) && !self.name_allowed(&h) {
            return Err(FetchError::Forbidden(format!(
                "{host} is a loopback name (allow it with --fetch-allow-hosts)"
            )));
        }
        Ok(())
    }
}

fn normalise_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_table() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:0101::1",
        ];
        for ip in forbidden {
            let addr: IpAddr = ip.parse().unwrap();
            assert!(forbidden_reason(addr).is_some(), "{ip} should be forbidden");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "192.167.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ];
        for ip in allowed {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_reason(addr), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn allow_list_entries() {
        let p = HostPolicy::new(&[
            "127.0.0.1".into(),
            "10.1.0.0/16".into(),
            "[::1]".into(),
            "Files.Internal.".into(),
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p.check_ip("127.0.0.1", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("x", ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check_ip("x", ip("127.0.0.2")).is_err());
        assert!(p.check_ip("x", ip("10.1.200.3")).is_ok());
        assert!(p.check_ip("x", ip("10.2.0.1")).is_err());
        assert!(p.check_ip("x", ip("::1")).is_ok());
        assert!(p.check_ip("files.internal", ip("192.168.0.9")).is_ok());
        assert!(p.check_ip("other.internal", ip("192.168.0.9")).is_err());
        assert!(p.check_ip("anything", ip("8.8.8.8")).is_ok());
        let err = p.check_ip("meta", ip("169.254.169.254")).unwrap_err();
        assert_eq!(err.code(), inferq_core::ErrorCode::UriForbidden);
    }

    #[test]
    fn localhost_names() {
        let p = HostPolicy::new(&[]).unwrap();
        assert!(p.check_name("localhost").is_err());
        assert!(p.check_name("LOCALHOST.").is_err());
        assert!(p.check_name("a.localhost").is_err());
        assert!(p.check_name("example.com").is_ok());
        let p = HostPolicy::new(&["localhost".into()]).unwrap();
        assert!(p.check_name("localhost").is_ok());
    }

    #[test]
    fn bad_allow_entries() {
        assert!(HostPolicy::new(&["not a host!".into()]).is_err());
        assert!(HostPolicy::new(&["10.0.0.0/33".into()]).is_err());
        let many: Vec<String> = (0..=MAX_ALLOW_ENTRIES).map(|i| format!("h{i}")).collect();
        assert!(HostPolicy::new(&many).is_err());
    }
}
