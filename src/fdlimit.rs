//! Raising the open-file limit at start: every connection is a file descriptor, and the usual
//! soft limit (1024) would cap a broker, or a load generator, far below what it can hold.
//! The soft limit goes up to the hard limit (raising the hard limit needs privileges the
//! process should not rely on; the operator sets it, e.g. `LimitNOFILE=` in systemd).

/// The open-file soft limit in force after the attempt (`u64::MAX`: unlimited), or `None`
/// where there is no such limit to raise.
#[cfg(unix)]
pub fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(limit.maximum.unwrap_or(u64::MAX));
        }
    }
    Some(limit.current.unwrap_or(u64::MAX))
}

#[cfg(not(unix))]
pub fn raise_nofile() -> Option<u64> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use rustix::process::{getrlimit, Resource};

    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let now = super::raise_nofile().expect("unix has the limit");
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_eq!(now, limit.current.unwrap_or(u64::MAX));
    }
}
