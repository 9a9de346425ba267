//! `runtime:` the threads the broker runs on.

use serde::{Deserialize, Serialize};

/// The threads the broker runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Threads that run the connections and the broker task (tokio workers). 0: half the
    /// cores, at least one. The broker's state lives in one task, so more threads only spread
    /// the connections' reads and writes; on 2 cores one thread was faster in every scenario
    /// of `benches/compare.sh` (fan-out QoS 0: +25%), with no wake-ups across cores and the
    /// other core left to the kernel's network work (README "Threads"). Default 0.
    pub worker_threads: usize,
}

/// Most worker threads the configuration accepts.
pub(in crate::config) const MAX_WORKER_THREADS: usize = 1024;

impl Runtime {
    /// The number of worker threads to start on a machine with `cores` cores.
    pub fn worker_threads_for(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => (cores / 2).max(1),
            n => n,
        }
    }
}
