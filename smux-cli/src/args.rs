//! Value parsers shared by the commands: durations, byte sizes and addresses. Each
//! returns a message that clap prints after the flag and the value it rejected
//! (`invalid value 'nonsense' for '--listen <ADDR>': ...`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Parses `250ms`, `2s`, `1.5s`, `3m` or a bare number of seconds (positive).
pub fn duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale < 1e7 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err("expected a positive duration like 500ms, 2s or 1m".into()),
    }
}

/// Like [`duration`], and also `0` (none at all).
pub fn duration_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        _ => duration(s).map_err(|_| "expected a duration like 0, 500ms, 10s or 1m".into()),
    }
}

/// Parses a byte size: `512K`, `4M` or a plain number of bytes (positive, at most
/// 4 GiB - 1).
pub fn bytes(s: &str) -> Result<u32, String> {
    let (num, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0 && n <= u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or_else(|| "expected a size like 512K, 4M or 65536".into())
}

/// An address to listen on: `IP:PORT` or `HOST:PORT`, port 0 allowed (any free
/// port). Checked for form only; binding tells whether it can be used.
pub fn listen_addr(s: &str) -> Result<String, String> {
    host_port(s, true)
}

/// An address to connect to: `IP:PORT` or `HOST:PORT` with a port in 1..=65535. The
/// name is resolved when connecting.
pub fn peer_addr(s: &str) -> Result<String, String> {
    host_port(s, false)
}

fn host_port(s: &str, port_zero: bool) -> Result<String, String> {
    const FORM: &str = "expected HOST:PORT or IP:PORT, like 127.0.0.1:7000, [::1]:7000 or \
                        example.com:7000";
    let port = match s.parse::<SocketAddr>() {
        Ok(a) => a.port(),
        Err(_) => {
            let (host, port) = s.rsplit_once(':').ok_or(FORM)?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("port '{port}' is not a number in 0..=65535"))?;
            if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                inner
                    .parse::<Ipv6Addr>()
                    .map_err(|_| format!("'{inner}' is not an IPv6 address"))?;
            } else if host.contains(':') {
                return Err(format!("an IPv6 address goes in brackets: [{host}]:{port}"));
            } else if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
                return Err(format!(
                    "'{host}' is neither an IP address nor a host name; {FORM}"
                ));
            }
            port
        }
    };
    if port == 0 && !port_zero {
        return Err("port 0 cannot be connected to".into());
    }
    Ok(s.to_string())
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens, not all
/// digits (`1.2.3.999` is a mistyped address, not a name).
fn is_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(duration("-1s").is_err());
        assert!(duration("0").is_err());
        assert!(duration("fast").is_err());
        assert_eq!(duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("3s"), Ok(Duration::from_secs(3)));
        assert!(duration_or_zero("soon").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("512K"), Ok(512 * 1024));
        assert_eq!(bytes("4m"), Ok(4 << 20));
        assert_eq!(bytes("1000"), Ok(1000));
        assert!(bytes("0").is_err());
        assert!(bytes("lots").is_err());
        assert!(bytes("99999999999M").is_err());
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "localhost:80",
            "a-b.example.com:1",
        ] {
            assert_eq!(peer_addr(ok).as_deref(), Ok(ok));
        }
        assert!(listen_addr("127.0.0.1:0").is_ok());
        assert!(peer_addr("127.0.0.1:0").is_err());
        for bad in [
            "nonsense",
            "127.0.0.1",
            "127.0.0.1:99999",
            "1.2.3.999:80",
            "::1:80",
            "[nonsense]:80",
            "-host:80",
            "ho st:80",
            ":80",
        ] {
            assert!(peer_addr(bad).is_err(), "{bad}");
            assert!(listen_addr(bad).is_err(), "{bad}");
        }
        assert!(peer_addr("nonsense").unwrap_err().contains("HOST:PORT"));
    }
}
