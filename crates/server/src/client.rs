//! Who is on the other end of a request: the client's IP address and `User-Agent`.
//!
//! The address is the socket peer's, unless the peer is a configured trusted proxy
//! (`trusted_proxies`: addresses or CIDR blocks; none by default). Then `X-Forwarded-For` is read
//! from the right, skipping the addresses of trusted proxies, and the first one that is not a
//! trusted proxy is the client: everything to its left was written by the client itself or by
//! proxies nobody vouches for, so it could be made up. The address is what credential endpoints
//! are rate-limited by, and with the user agent it is recorded on sign-ins and failed attempts
//! (personal data of the account's user; see `idstream_app::Client`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::AppState;

/// An IP address block: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`); a plain
/// address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a trusted proxy entry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block (such as 10.0.0.0/8 or 2001:db8::/32)")]
pub struct InvalidIpNet(String);

impl IpNet {
    /// Whether `ip` is in this block. IPv4 addresses mapped into IPv6 (`::ffff:a.b.c.d`) count
    /// as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The first `prefix` of `bits` bits of `value`.
fn masked(value: u128, prefix: u8, bits: u32) -> u128 {
    let keep = u32::from(prefix).min(bits);
    if keep == 0 { 0 } else { value >> (bits - keep) }
}

impl FromStr for IpNet {
    type Err = InvalidIpNet;

    fn from_str(text: &str) -> Result<IpNet, InvalidIpNet> {
        let invalid = || InvalidIpNet(text.to_owned());
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr)
            .map_err(|_| invalid())?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The proxies whose `X-Forwarded-For` is believed. Empty (the default): none, the socket peer
/// is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trust(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trust(client) {
            return client;
        }
        // Every X-Forwarded-For line in order, each a comma-separated list; read from the right.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage (`unknown`, a name) written by the hop on our side of it: the last
                // address we can vouch for is the best there is.
                return client;
            };
            client = ip.to_canonical();
            if !self.trust(client) {
                return client;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[2001:db8::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    IpAddr::from_str(hop)
        .ok()
        .or_else(|| SocketAddr::from_str(hop).ok().map(|s| s.ip()))
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    peer(parts).map(|peer| state.trusted_proxies.client_ip(peer, &parts.headers))
}

/// The client of a request: its address (the source that credential endpoints are
/// rate-limited by; absent when the router is driven without connection info, in which case all
/// such requests share one budget), `User-Agent` (cut to 256 characters) and the language its
/// `Accept-Language` asks for (that mails are written in).
pub fn client(parts: &Parts, state: &AppState) -> idstream_app::Client {
    let agent = parts
        .headers
        .get(USER_AGENT)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let accept_language = parts
        .headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok());
    idstream_app::Client::new(client_ip(parts, state), agent.as_deref()).accepting(accept_language)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn blocks_are_parsed_and_matched() {
        let net: IpNet = "10.1.2.3/8".parse().unwrap();
        assert!(net.contains(ip("10.200.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")), "IPv4 mapped into IPv6");
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "example.com",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            TrustedProxies::default().client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        // A peer that is not trusted is the client even when others are.
        assert_eq!(
            trusted(&["10.0.0.0/8"]).client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "2001:db8::1"]);
        // The client made up the first entry; the edge proxy appended the real peer.
        let headers = forwarded(&["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.6"), &headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies.client_ip(ip("2001:db8::1"), &forwarded(&["[2001:db8::2]:443"])),
            ip("2001:db8::2")
        );
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.6"), &forwarded(&["203.0.113.9:5000"])),
            ip("203.0.113.9")
        );
        // Only proxies in the chain: the left-most is the best there is.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.6"), &forwarded(&["10.0.0.1, 10.0.0.2"])),
            ip("10.0.0.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.6"), &HeaderMap::new()),
            ip("10.0.0.6")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            proxies.client_ip(
                ip("10.0.0.6"),
                &forwarded(&["203.0.113.9, unknown, 10.0.0.2"])
            ),
            ip("10.0.0.2")
        );
    }
}
