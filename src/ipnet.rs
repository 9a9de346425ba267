//! IP networks (`10.0.0.0/8`, `::1`): the addresses of trusted reverse proxies
//! (`websocket.trusted_proxies`), whose `X-Forwarded-For` header or PROXY protocol header
//! names the real client. A bare address is a network of one.

use std::fmt;
use std::net::IpAddr;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a
    /// dual-stack socket reports) matches the IPv4 network it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    if a.get(..whole) != b.get(..whole) {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xFFu8 << (8 - rest);
        a.get(whole).map(|x| x & mask) == b.get(whole).map(|x| x & mask)
    }
}

impl std::str::FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{text:?}: the prefix length must be 0..={max}")),
            },
        };
        Ok(IpNetwork { addr, prefix })
    }
}

impl TryFrom<String> for IpNetwork {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<IpNetwork> for String {
    fn from(net: IpNetwork) -> String {
        net.to_string()
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether any of `networks` contains `ip`.
pub fn any_contains(networks: &[IpNetwork], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.168.4.0/22").contains(ip("192.168.7.255")));
        assert!(!net("192.168.4.0/22").contains(ip("192.168.8.0")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(!net("::1").contains(ip("127.0.0.1")));
        // A dual-stack socket reports IPv4 peers as mapped addresses.
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn bad_networks_are_refused_with_the_reason() {
        assert!("10.0.0.0/33"
            .parse::<IpNetwork>()
            .unwrap_err()
            .contains("0..=32"));
        assert!("::/129"
            .parse::<IpNetwork>()
            .unwrap_err()
            .contains("0..=128"));
        assert!("proxy.local"
            .parse::<IpNetwork>()
            .unwrap_err()
            .contains("not an IP"));
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }
}
