//! The brokers a run spreads its clients over: `-h a,b,c` and `-p 1883,1893` (the nodes of a
//! cluster, or unrelated brokers for `pub`/`sub`).

/// `host:port` of each server from the `-h` and `-p` lists: hosts x one port, one host x
/// ports, or hosts and ports paired in order.
pub(super) fn servers(
    hosts: &[String],
    ports: &[u16],
    default_port: u16,
) -> Result<Vec<String>, String> {
    let join = |host: &str, port: u16| {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let hosts: Vec<&str> = hosts
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    match (hosts.as_slice(), ports) {
        ([], _) => Err("-h: give at least one host".into()),
        (hosts, []) => Ok(hosts.iter().map(|h| join(h, default_port)).collect()),
        (hosts, [port]) => Ok(hosts.iter().map(|h| join(h, *port)).collect()),
        ([host], ports) => Ok(ports.iter().map(|p| join(host, *p)).collect()),
        (hosts, ports) if hosts.len() == ports.len() => {
            Ok(hosts.iter().zip(ports).map(|(h, p)| join(h, *p)).collect())
        }
        (hosts, ports) => Err(format!(
            "-h has {} hosts and -p {} ports: give one port, one host, or as many of each",
            hosts.len(),
            ports.len()
        )),
    }
}
