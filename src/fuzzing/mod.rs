//! Entry points of the fuzz targets (`fuzz/`), kept in the library so that the targets are
//! one-liners and `cargo test` replays the committed corpus through exactly the same code
//! (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes and panics only when it finds a bug: a panic inside
//! the codec or the broker, or a broken invariant (a packet that does not survive a round trip,
//! a broker whose indexes disagree, a packet the broker sends that a client could not decode).
//! Not part of the public API.
// Test harness code: a panic here is a finding reported by the fuzzer, never a broker crash.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod broker;
mod codec;
mod datagram;
mod flow;

pub use broker::broker_session;
pub use codec::codec_decode;
pub use datagram::datagram;
pub use flow::flow_header;

/// A fuzz target's entry function.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/corpus/<name>/` and `fuzz/fuzz_targets/<name>.rs` use.
pub const TARGETS: &[(&str, Target)] = &[
    ("codec_decode", codec_decode),
    ("broker_session", broker_session),
    ("flow_header", flow_header),
    ("datagram", datagram),
];

/// Reads fuzz input front to back; running out of input yields zeros / empty slices, so every
/// input is a valid program.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}
