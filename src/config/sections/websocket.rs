//! `websocket:` MQTT over WebSocket (`listeners.ws`, `listeners.wss`): the endpoint's path and
//! which reverse proxies may name the client.

use serde::{Deserialize, Serialize};

use crate::ipnet::IpNetwork;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocket {
    /// The HTTP path of the MQTT endpoint. Default `/mqtt`.
    pub path: String,
    /// Reverse proxies (IP addresses or networks) allowed to name the real client address.
    /// Default none.
    pub trusted_proxies: Vec<IpNetwork>,
    /// What names the client on `listeners.ws` when a trusted proxy connects. Default `none`.
    pub ws_proxy: ProxyTrust,
    /// The same for `listeners.wss`. Default `none`.
    pub wss_proxy: ProxyTrust,
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            path: "/mqtt".into(),
            trusted_proxies: Vec::new(),
            ws_proxy: ProxyTrust::None,
            wss_proxy: ProxyTrust::None,
        }
    }
}

/// Which proxy headers a WebSocket listener believes from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyTrust {
    /// The socket's peer address is the client.
    #[default]
    None,
    /// The HTTP header `X-Forwarded-For` (nginx, HTTP load balancers).
    XForwardedFor,
    /// A PROXY protocol v1 or v2 header before anything else (HAProxy, AWS NLB).
    ProxyProtocol,
    /// A PROXY protocol header, then `X-Forwarded-For`.
    Both,
}

impl ProxyTrust {
    pub fn proxy_protocol(self) -> bool {
        matches!(self, ProxyTrust::ProxyProtocol | ProxyTrust::Both)
    }

    pub fn forwarded_for(self) -> bool {
        matches!(self, ProxyTrust::XForwardedFor | ProxyTrust::Both)
    }
}
