//! Which topics a bridge forwards and what they are called on the other side.
//!
//! Each `topics:` entry is mosquitto's `topic <pattern> <direction> <qos> <local_prefix>
//! <remote_prefix>`: the bridge subscribes to `local_prefix + pattern` here (out) and to
//! `remote_prefix + pattern` there (in), and a message keeps the part of its topic after the
//! prefix: `local_prefix + rest` here is `remote_prefix + rest` there.

use bytestring::ByteString;

use crate::codec::QoS;
use crate::config::{BridgeTopic, Direction};

/// Which way a message crosses the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Local to remote.
    Out,
    /// Remote to local.
    In,
}

/// The `topics:` entries of one bridge, ready for matching.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    direction: Direction,
    qos: QoS,
    local_prefix: String,
    remote_prefix: String,
    /// `local_prefix + pattern` and `remote_prefix + pattern`.
    local_filter: String,
    remote_filter: String,
}

/// Where a message goes on the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub topic: ByteString,
    /// The entry's highest QoS.
    pub max_qos: QoS,
    /// The index of the `topics:` entry that matched (for warnings).
    pub entry: usize,
}

impl Routes {
    pub fn new(topics: &[BridgeTopic]) -> Routes {
        let routes = topics
            .iter()
            .map(|t| Route {
                direction: t.direction,
                qos: QoS::from_u8(t.qos).unwrap_or(QoS::ExactlyOnce),
                local_filter: format!("{}{}", t.local_prefix, t.pattern),
                remote_filter: format!("{}{}", t.remote_prefix, t.pattern),
                local_prefix: t.local_prefix.clone(),
                remote_prefix: t.remote_prefix.clone(),
            })
            .collect();
        Routes { routes }
    }

    /// The filters to subscribe to on the side a message of `way` comes from, without
    /// repeats.
    pub fn filters(&self, way: Way) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            let (wanted, filter) = match way {
                Way::Out => (r.direction.outbound(), &r.local_filter),
                Way::In => (r.direction.inbound(), &r.remote_filter),
            };
            if wanted && !out.contains(filter) {
                out.push(filter.clone());
            }
        }
        out
    }

    /// The topic on the other side for a message of `way` on `topic`: the first entry whose
    /// filter matches decides. `None`: no entry forwards it that way (a subscription of the
    /// same session that overlaps, for instance).
    pub fn map(&self, way: Way, topic: &str) -> Option<Mapped> {
        self.routes.iter().enumerate().find_map(|(entry, r)| {
            let (wanted, filter, from, to) = match way {
                Way::Out => (
                    r.direction.outbound(),
                    &r.local_filter,
                    &r.local_prefix,
                    &r.remote_prefix,
                ),
                Way::In => (
                    r.direction.inbound(),
                    &r.remote_filter,
                    &r.remote_prefix,
                    &r.local_prefix,
                ),
            };
            if !wanted || !crate::topic::matches(filter, topic) {
                return None;
            }
            let rest = topic.strip_prefix(from.as_str())?;
            let mapped = format!("{to}{rest}");
            crate::topic::is_valid_topic_name(&mapped).then(|| Mapped {
                topic: ByteString::from(mapped),
                max_qos: r.qos,
                entry,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(
        pattern: &str,
        direction: Direction,
        qos: u8,
        local: &str,
        remote: &str,
    ) -> BridgeTopic {
        BridgeTopic {
            pattern: pattern.into(),
            direction,
            qos,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    #[test]
    fn prefixes_are_swapped_and_directions_respected() {
        let routes = Routes::new(&[
            topic("sensors/#", Direction::Out, 1, "edge/", "site1/"),
            topic("cmd/+", Direction::In, 2, "", "site1/"),
            topic("both/#", Direction::Both, 0, "", ""),
        ]);
        assert_eq!(routes.filters(Way::Out), ["edge/sensors/#", "both/#"]);
        assert_eq!(routes.filters(Way::In), ["site1/cmd/+", "both/#"]);
        let out = routes.map(Way::Out, "edge/sensors/t1").unwrap();
        assert_eq!(out.topic, "site1/sensors/t1");
        assert_eq!(out.max_qos, QoS::AtLeastOnce);
        assert_eq!(
            routes.map(Way::In, "site1/cmd/reboot").unwrap().topic,
            "cmd/reboot"
        );
        assert_eq!(
            routes.map(Way::In, "both/x").unwrap().max_qos,
            QoS::AtMostOnce
        );
        // Out-only topics are not forwarded in, and the reverse.
        assert_eq!(routes.map(Way::In, "site1/sensors/t1"), None);
        assert_eq!(routes.map(Way::Out, "cmd/reboot"), None);
        assert_eq!(routes.map(Way::Out, "other"), None);
    }
}
