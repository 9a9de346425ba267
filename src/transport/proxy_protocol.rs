//! The PROXY protocol (HAProxy, versions 1 and 2): a header a TCP proxy sends before the
//! client's own bytes, naming the client's address. Read only from trusted proxies on
//! listeners that opt in (`websocket.ws_proxy` / `wss_proxy`), before TLS and HTTP.
//!
//! Parsing is sans-IO ([`parse`]); [`read_header`] reads exactly the header's bytes, never
//! past it, so what follows (a TLS ClientHello, an HTTP request) is untouched.
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The version 2 signature (12 bytes).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// "the maximum line lengths the receiver must support including the CRLF are: ... 107".
const V1_MAX: usize = 107;
/// Largest version 2 header we accept (addresses plus TLVs); real ones are far smaller.
const V2_MAX: usize = 16 + 512;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy relays this client.
    Client(SocketAddr),
    /// The proxy speaks for itself (v2 LOCAL, a health check) or does not know the client
    /// (v1 UNKNOWN, v2 UNSPEC or UNIX): the socket's peer stands.
    Local,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no PROXY protocol header (expected one from a trusted proxy)")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
}

/// Parses a whole header at the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the header and its length.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if buf.starts_with(b"PROXY ") {
        parse_v1(buf)
    } else if buf.starts_with(&V2_SIGNATURE[..8]) {
        parse_v2(buf)
    } else {
        Err(ProxyError::Missing)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed(
                "version 1 line longer than 107 bytes",
            ))
        } else {
            Ok(None)
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyError::Malformed(
            "version 1 line longer than 107 bytes",
        ));
    }
    let line = std::str::from_utf8(buf.get(6..end).unwrap_or_default())
        .map_err(|_| ProxyError::Malformed("version 1 line is not text"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["UNKNOWN", ..] => ProxyHeader::Local,
        [family @ ("TCP4" | "TCP6"), source, _destination, port, _dport] => {
            let ip: IpAddr = source
                .parse()
                .map_err(|_| ProxyError::Malformed("bad source address"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(ProxyError::Malformed("address does not match the family"));
            }
            let port: u16 = port
                .parse()
                .map_err(|_| ProxyError::Malformed("bad source port"))?;
            ProxyHeader::Client(SocketAddr::new(ip, port))
        }
        _ => return Err(ProxyError::Malformed("version 1 fields")),
    };
    Ok(Some((header, len)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(head) = buf.first_chunk::<16>() else {
        return Ok(None);
    };
    if head[..12] != V2_SIGNATURE[..] {
        return Err(ProxyError::Malformed("version 2 signature"));
    }
    let version_command = head[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed(
            "version 2 header with another version",
        ));
    }
    let len = v2_len(head);
    if len > V2_MAX {
        return Err(ProxyError::Malformed("version 2 header too long"));
    }
    let Some(body) = buf.get(16..len) else {
        return Ok(None);
    };
    let header = match (version_command & 0x0F, head[13] >> 4) {
        (0, _) => ProxyHeader::Local,
        (1, 1) if body.len() >= 12 => match body.first_chunk::<12>() {
            Some(&[a, b, c, d, _, _, _, _, p1, p2, _, _]) => ProxyHeader::Client(SocketAddr::new(
                Ipv4Addr::new(a, b, c, d).into(),
                u16::from_be_bytes([p1, p2]),
            )),
            None => return Err(ProxyError::Malformed("address block too short")),
        },
        (1, 2) if body.len() >= 36 => {
            let (Some(octets), Some(&[p1, p2])) = (
                body.first_chunk::<16>(),
                body.get(32..34).and_then(|p| p.first_chunk::<2>()),
            ) else {
                return Err(ProxyError::Malformed("address block too short"));
            };
            let port = u16::from_be_bytes([p1, p2]);
            ProxyHeader::Client(SocketAddr::new(Ipv6Addr::from(*octets).into(), port))
        }
        (1, 1 | 2) => return Err(ProxyError::Malformed("address block too short")),
        (1, _) => ProxyHeader::Local,
        _ => return Err(ProxyError::Malformed("version 2 command")),
    };
    Ok(Some((header, len)))
}

/// The whole length of a version 2 header: 16 bytes and the body length they announce.
fn v2_len(head: &[u8; 16]) -> usize {
    16 + usize::from(u16::from_be_bytes([head[14], head[15]]))
}

/// Reads one header from `reader`, exactly its bytes and no more.
pub async fn read_header<R: AsyncRead + Unpin>(reader: &mut R) -> Result<ProxyHeader, ProxyError> {
    let mut buf = vec![0u8; 8];
    read_exact(reader, &mut buf).await?;
    loop {
        if let Some((header, _)) = parse(&buf)? {
            return Ok(header);
        }
        // How many more bytes are certainly part of the header.
        let more = if buf.starts_with(b"PROXY ") {
            1 // version 1 ends at a CRLF: byte by byte (a few dozen reads, once)
        } else if let Some(head) = buf.first_chunk::<16>() {
            v2_len(head).saturating_sub(buf.len()).max(1)
        } else {
            16 - buf.len()
        };
        let start = buf.len();
        buf.resize(start + more, 0);
        read_exact(reader, buf.get_mut(start..).unwrap_or_default()).await?;
    }
}

async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), ProxyError> {
    reader
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|_| ProxyError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family << 4 | 1);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_1_names_the_client() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 8083\r\nGET /mqtt";
        let (header, len) = parse(line).unwrap().unwrap();
        assert_eq!(
            header,
            ProxyHeader::Client("203.0.113.7:51000".parse().unwrap())
        );
        assert_eq!(&line[len..], b"GET /mqtt");
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
        assert_eq!(
            parse(line).unwrap().unwrap().0,
            ProxyHeader::Client("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0,
            ProxyHeader::Local
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4").unwrap(), None);
    }

    #[test]
    fn version_2_names_the_client() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&8084u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0, 1, 0]); // a TLV (NOOP), skipped
        let header = v2(1, 1, &body);
        assert_eq!(
            parse(&header).unwrap(),
            Some((
                ProxyHeader::Client("198.51.100.9:40000".parse().unwrap()),
                header.len()
            ))
        );
        assert_eq!(parse(&header[..header.len() - 1]).unwrap(), None);
        let mut body6 = vec![0u8; 36];
        body6[15] = 1; // ::1
        body6[32..34].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 2, &body6)).unwrap().unwrap().0,
            ProxyHeader::Client("[::1]:7".parse().unwrap())
        );
        assert_eq!(
            parse(&v2(0, 0, &[])).unwrap().unwrap().0,
            ProxyHeader::Local
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(
            parse(b"GET /mqtt HTTP/1.1\r\n").unwrap_err(),
            ProxyError::Missing
        );
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 x 1\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 ::1 1 1\r\n").is_err());
        assert!(parse(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat()).is_err());
        assert!(parse(&v2(1, 1, &[1, 2, 3])).is_err());
        assert!(parse(&v2(7, 1, &[0; 12])).is_err());
    }

    #[tokio::test]
    async fn read_header_reads_no_further_than_the_header() {
        for stream in [
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 8083\r\n\x16\x03\x01".to_vec(),
            [
                v2(1, 1, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 0, 10]),
                b"\x16\x03\x01".to_vec(),
            ]
            .concat(),
        ] {
            let mut reader = &stream[..];
            read_header(&mut reader).await.unwrap();
            assert_eq!(reader, b"\x16\x03\x01");
        }
        let mut short = &b"PROXY TCP4"[..];
        assert_eq!(read_header(&mut short).await, Err(ProxyError::Closed));
    }
}
