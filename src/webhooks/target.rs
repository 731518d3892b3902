//! Which receiver URLs a webhook may point at (the SSRF rules).
//!
//! A webhook makes the registry send HTTP requests to an address a user chose, so without rules
//! it is a way to reach the registry's own network (cloud metadata at 169.254.169.254, the
//! database, admin ports on localhost). The rules, checked when a webhook is created or updated
//! and again on every delivery (DNS can change between the two):
//! - the scheme is `http` or `https`, and the URL has a host;
//! - the URL carries no user name or password (they would be stored and logged as plain text);
//! - every address the host resolves to is public, unless the server was started with
//!   `--webhook-allow-private-ips` (MLflow's `MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS`).
//!
//! "Public" here means not loopback, private (RFC 1918, unique-local), link-local,
//! shared/CGNAT, unspecified, broadcast, documentation, benchmarking or multicast, including
//! IPv4 addresses written as IPv4-mapped IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// A refused receiver URL; the message is what the API answers (INVALID_PARAMETER_VALUE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("Webhook URL cannot be empty or just whitespace")]
    Empty,
    #[error("Invalid webhook URL: {0}")]
    Unparsable(String),
    #[error("Invalid webhook URL scheme: '{0}'. Must be 'http' or 'https'.")]
    Scheme(String),
    #[error("Webhook URL must not contain credentials")]
    Credentials,
    #[error(
        "Webhook URL resolves to a non-public address ({0}); start the server with --webhook-allow-private-ips to allow it"
    )]
    PrivateAddress(IpAddr),
    #[error("Webhook URL host '{0}' could not be resolved")]
    Unresolvable(String),
}

/// Parses and checks the parts of a receiver URL that need no DNS.
pub fn parse_target(raw: &str) -> Result<Url, TargetError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(TargetError::Empty);
    }
    let url = Url::parse(trimmed).map_err(|e| TargetError::Unparsable(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(TargetError::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.host().is_none() {
        return Err(TargetError::Unparsable("the URL has no host".into()));
    }
    Ok(url)
}

/// [`parse_target`], and for an address written in the URL the address rule (unless
/// `allow_private`): everything about a URL that can be checked without DNS. Creating or
/// updating a webhook checks this, and so does the worker once per webhook before sending;
/// names are checked by the sender's resolver each time they are dialled.
pub fn check_target(raw: &str, allow_private: bool) -> Result<Url, TargetError> {
    let url = parse_target(raw)?;
    let literal = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal
        && !allow_private
        && !is_public(ip)
    {
        return Err(TargetError::PrivateAddress(ip));
    }
    Ok(url)
}

/// Resolves the URL's host and refuses it if any address is not public (unless
/// `allow_private`). Returns the addresses so the caller connects to exactly what was checked,
/// not to a second DNS answer.
pub async fn resolve_target(
    url: &Url,
    allow_private: bool,
) -> Result<Vec<std::net::SocketAddr>, TargetError> {
    let host = url
        .host_str()
        .ok_or_else(|| TargetError::Unparsable("the URL has no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    // `host_str` keeps IPv6 brackets, which the resolver does not accept.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| TargetError::Unresolvable(host.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable(host.to_string()));
    }
    if !allow_private && let Some(bad) = addrs.iter().map(|a| a.ip()).find(|ip| !is_public(*ip)) {
        return Err(TargetError::PrivateAddress(bad));
    }
    Ok(addrs)
}

/// Whether an address is reachable on the public internet (see the module docs).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10 shared address space (CGNAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24 protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15 benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4 reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10 link local.
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32 documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // 64:ff9b:1::/48 local-use NAT64 and ::ffff:0:0/96 handled above.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_credentials_and_emptiness_are_checked_without_dns() {
        assert_eq!(parse_target("  "), Err(TargetError::Empty));
        assert_eq!(
            parse_target("ftp://example.com/x"),
            Err(TargetError::Scheme("ftp".into()))
        );
        assert_eq!(
            parse_target("https://user:pw@example.com/"),
            Err(TargetError::Credentials)
        );
        assert!(matches!(
            parse_target("not a url"),
            Err(TargetError::Unparsable(_))
        ));
        assert!(parse_target(" https://hooks.example.com/in ").is_ok());
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_private_addresses_are_allowed() {
        let url = parse_target("http://127.0.0.1:9/hook").unwrap();
        assert!(matches!(
            resolve_target(&url, false).await,
            Err(TargetError::PrivateAddress(_))
        ));
        assert!(resolve_target(&url, true).await.is_ok());
        let url = parse_target("http://[::1]:9/hook").unwrap();
        assert!(matches!(
            resolve_target(&url, false).await,
            Err(TargetError::PrivateAddress(_))
        ));
    }
}
