//! The HTTP side of MQTT over WebSocket, sans-IO: judges a request head and answers it with
//! a WebSocket upgrade (RFC 6455 4.2) or a refusal a person can read (4xx with a JSON message),
//! and finds the client address behind trusted proxies (`X-Forwarded-For`).
//!
//! Parsing the head ourselves (httparse) instead of letting the WebSocket library do it gives
//! every refusal a real HTTP answer (a plain GET, a wrong path, an unknown subprotocol) and
//! lets the same listener serve a few small resources (the WebTransport certificate hash).

use std::net::IpAddr;

use crate::ipnet::{any_contains, IpNetwork};

/// Largest request head read before refusing (431).
pub const MAX_HEAD: usize = 8 * 1024;
/// WebSocket subprotocols of MQTT [MQTT-6.0.0-3], [MQTT-6.0.0-4]: `mqtt` (3.1.1 and 5.0) and
/// `mqttv3.1` (older clients, MQTT 3.1 naming). The first one the client offers wins.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// An HTTP answer that ends the exchange (the connection closes after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Response {
    /// A refusal with a JSON body `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::json!({ "error": message }).to_string(),
        }
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The response as written on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Switch to WebSocket: write [`Upgrade::response`], then speak WebSocket.
    Upgrade(Upgrade),
    /// Answer and close.
    Respond(Response),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The chosen subprotocol (`None` when the client offered none).
    pub protocol: Option<&'static str>,
    /// `Sec-WebSocket-Accept`.
    pub accept: String,
    /// The `X-Forwarded-For` values, in order (all headers joined).
    pub forwarded_for: Vec<String>,
}

impl Upgrade {
    pub fn response(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(protocol) = self.protocol {
            out.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Judges the request head at the start of `buf`. `Ok(None)`: the head is not complete yet;
/// otherwise the answer and the head's length (bytes after it are the client's first frames).
/// `resource` answers GETs for paths other than `path` (`None`: 404).
pub fn judge(
    buf: &[u8],
    path: &str,
    resource: &dyn Fn(&str) -> Option<Response>,
) -> Option<(Answer, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Some((
                Answer::Respond(Response::error(431, "request head too large")),
                buf.len(),
            ))
        }
        Err(_) => {
            return Some((
                Answer::Respond(Response::error(400, "malformed HTTP request")),
                buf.len(),
            ))
        }
    };
    Some((answer(&request, path, resource), len))
}

fn answer(
    request: &httparse::Request<'_, '_>,
    path: &str,
    resource: &dyn Fn(&str) -> Option<Response>,
) -> Answer {
    let refuse = |status, message: &str| Answer::Respond(Response::error(status, message));
    let target = request.path.unwrap_or("/");
    let requested = target.split(['?', '#']).next().unwrap_or(target);
    let method = request.method.unwrap_or("");
    if requested != path {
        return match resource(requested) {
            Some(found) if method == "GET" => Answer::Respond(found),
            Some(_) => refuse(405, "only GET is allowed here"),
            None => refuse(404, &format!("not found: MQTT over WebSocket is at {path}")),
        };
    }
    if method != "GET" {
        return refuse(405, "MQTT over WebSocket starts with a GET upgrade request");
    }
    let header = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Answer::Respond(
            Response::error(
                426,
                "this is MQTT over WebSocket: send a WebSocket upgrade request \
                 (subprotocol mqtt)",
            )
            .with_header("Upgrade", "websocket"),
        );
    }
    if !header("sec-websocket-version").any(|v| v.trim() == "13") {
        return Answer::Respond(
            Response::error(426, "unsupported WebSocket version: expected 13")
                .with_header("Sec-WebSocket-Version", "13"),
        );
    }
    let Some(key) = header("sec-websocket-key").next().map(str::trim) else {
        return refuse(400, "missing Sec-WebSocket-Key");
    };
    // RFC 6455 4.1: the key is 16 random bytes, base64: 24 characters.
    if key.len() != 24 {
        return refuse(400, "malformed Sec-WebSocket-Key");
    }
    let offered: Vec<&str> = header("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    // [MQTT-6.0.0-4]: the server selects "mqtt". A client that offers no subprotocol at all
    // is served anyway (some embedded clients omit it); one that offers only others is not.
    let protocol = offered
        .iter()
        .find_map(|p| SUBPROTOCOLS.iter().find(|s| *s == p).copied());
    if protocol.is_none() && !offered.is_empty() {
        return refuse(
            400,
            &format!(
                "unsupported WebSocket subprotocol {}: expected mqtt (or mqttv3.1)",
                offered.join(", ")
            ),
        );
    }
    Answer::Upgrade(Upgrade {
        protocol,
        accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        forwarded_for: header("x-forwarded-for")
            .flat_map(|v| v.split(','))
            .map(|a| a.trim().to_owned())
            .collect(),
    })
}

/// The client behind trusted proxies: walking `X-Forwarded-For` from the right (the entry the
/// nearest proxy added), the first address that is not a trusted proxy. `peer` is the
/// address that connected; when it is not trusted the header is ignored (anyone can send it).
pub fn forwarded_client(peer: IpAddr, forwarded_for: &[String], trusted: &[IpNetwork]) -> IpAddr {
    if !any_contains(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for.iter().rev() {
        let Some(ip) = parse_forwarded(entry) else {
            break;
        };
        client = ip;
        if !any_contains(trusted, ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an IP address, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n";

    fn no_resource(_: &str) -> Option<Response> {
        None
    }

    fn judged(head: &str) -> Answer {
        let text = format!("{head}\r\n");
        let (answer, len) = judge(text.as_bytes(), "/mqtt", &no_resource).unwrap();
        assert_eq!(len, text.len());
        answer
    }

    fn status(answer: Answer) -> u16 {
        match answer {
            Answer::Respond(r) => r.status,
            Answer::Upgrade(_) => 101,
        }
    }

    #[test]
    fn an_upgrade_with_mqtt_is_accepted() {
        let head = format!("{UPGRADE}Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n");
        let Answer::Upgrade(upgrade) = judged(&head) else {
            panic!("refused")
        };
        // RFC 6455 1.3's example key and accept value.
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            upgrade.protocol,
            Some("mqttv3.1"),
            "the client's first choice"
        );
        let response = String::from_utf8(upgrade.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
        // No subprotocol offered: served without one.
        let Answer::Upgrade(upgrade) = judged(UPGRADE) else {
            panic!("refused")
        };
        assert_eq!(upgrade.protocol, None);
        // Query strings (tokens some apps add) do not change the path.
        let head = UPGRADE.replace("/mqtt", "/mqtt?token=1");
        assert_eq!(status(judged(&head)), 101);
    }

    #[test]
    fn refusals_say_why() {
        let plain = "GET /mqtt HTTP/1.1\r\nHost: x\r\n";
        let Answer::Respond(r) = judged(plain) else {
            panic!("upgraded a plain GET")
        };
        assert_eq!(r.status, 426);
        assert!(r.body.contains("WebSocket upgrade"), "{}", r.body);
        let bytes = String::from_utf8(r.to_bytes()).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(bytes.contains(&format!("Content-Length: {}\r\n", r.body.len())));

        assert_eq!(status(judged(&UPGRADE.replace("/mqtt", "/other"))), 404);
        assert_eq!(status(judged(&UPGRADE.replace("GET", "POST"))), 405);
        let head = format!("{UPGRADE}Sec-WebSocket-Protocol: chat, superchat\r\n");
        let Answer::Respond(r) = judged(&head) else {
            panic!("accepted an unknown subprotocol")
        };
        assert_eq!(r.status, 400);
        assert!(r.body.contains("chat, superchat"), "{}", r.body);
        assert_eq!(status(judged(&UPGRADE.replace("13", "8"))), 426);
        assert_eq!(
            status(judged(
                &UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")
            )),
            400
        );
        assert_eq!(
            status(
                judge(b"\x16\x03\x01\x02\x00", "/mqtt", &no_resource)
                    .unwrap()
                    .0
            ),
            400
        );
    }

    #[test]
    fn incomplete_and_oversized_heads() {
        assert_eq!(judge(UPGRADE.as_bytes(), "/mqtt", &no_resource), None);
        let huge = format!("GET /mqtt HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            status(judge(huge.as_bytes(), "/mqtt", &no_resource).unwrap().0),
            431
        );
    }

    #[test]
    fn resources_answer_gets_on_their_path() {
        let resource = |path: &str| {
            (path == "/hash").then(|| Response {
                status: 200,
                content_type: "text/plain",
                headers: Vec::new(),
                body: "abc".into(),
            })
        };
        let head = "GET /hash HTTP/1.1\r\nHost: x\r\n\r\n";
        let (answer, _) = judge(head.as_bytes(), "/mqtt", &resource).unwrap();
        assert_eq!(status(answer), 200);
        let head = "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            status(judge(head.as_bytes(), "/mqtt", &resource).unwrap().0),
            404
        );
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted: Vec<IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let chain = |s: &str| {
            s.split(',')
                .map(|a| a.trim().to_owned())
                .collect::<Vec<_>>()
        };
        // Through two trusted proxies: the client is the first untrusted from the right.
        assert_eq!(
            forwarded_client(
                ip("10.0.0.1"),
                &chain("6.6.6.6, 203.0.113.5, 10.0.0.9"),
                &trusted
            ),
            ip("203.0.113.5")
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &chain("203.0.113.5"), &trusted),
            ip("198.51.100.1")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &[], &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &chain("unknown"), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &chain("[2001:db8::1]:443"), &trusted),
            ip("2001:db8::1")
        );
    }
}
