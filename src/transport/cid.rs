//! Connection IDs that carry a server id in plaintext, in the layout of the QUIC-LB draft
//! (draft-ietf-quic-load-balancers, "plaintext CID algorithm"), so that a load balancer that
//! routes on connection IDs, or several endpoints sharing one address, keeps a client that
//! changed address (NAT rebinding, Wi-Fi to cellular) on the node that owns its connection.
//!
//! Layout (`proto-ext/migration.md` has it byte by byte, with an example the tests check):
//!
//! | octets | field |
//! |---|---|
//! | 0 | bits 7-5: config rotation (`quic.cid_config_id`, 0..=6; 7 = unroutable); bits 4-0: length of the CID minus one |
//! | 1 ..= n | server id (`quic.server_id`, n = 1..=11 bytes; absent when unroutable) |
//! | n+1 .. | nonce: 8 bytes from the system CSPRNG |
//!
//! The nonce makes connection IDs of one connection unlinkable for an observer that does not
//! know the layout (RFC 9000 5.1); the server id is visible by design: it is what the load
//! balancer routes on.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of random nonce in every connection ID.
pub const NONCE_LEN: usize = 8;
/// Config rotation value that marks a connection ID a load balancer cannot route
/// (QUIC-LB: "unroutable"); used when no server id is configured.
pub const UNROUTABLE: u8 = 0b111;

/// The encoding parameters of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidLayout {
    /// Config rotation bits (0..=6, or [`UNROUTABLE`]).
    pub config_id: u8,
    /// The server id (empty when unroutable).
    pub server_id: Vec<u8>,
}

/// The fields of a connection ID in this layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCid {
    pub config_id: u8,
    pub server_id: Vec<u8>,
    pub nonce: Vec<u8>,
}

impl CidLayout {
    /// The layout for `server_id` (`None`: unroutable) and `config_id`.
    pub fn new(server_id: Option<Vec<u8>>, config_id: u8) -> CidLayout {
        match server_id.filter(|id| !id.is_empty()) {
            Some(server_id) => CidLayout {
                config_id: config_id & 0b111,
                server_id,
            },
            None => CidLayout {
                config_id: UNROUTABLE,
                server_id: Vec::new(),
            },
        }
    }

    /// The layout `quic.server_id` and `quic.cid_config_id` describe.
    pub fn from_config(quic: &crate::config::Quic) -> CidLayout {
        CidLayout::new(quic.server_id_bytes(), quic.cid_config_id)
    }

    /// Length of every connection ID in this layout.
    pub fn cid_len(&self) -> usize {
        1 + self.server_id.len() + NONCE_LEN
    }

    /// The first octet: config rotation, then the length minus one.
    pub fn first_octet(&self) -> u8 {
        (self.config_id << 5) | ((self.cid_len() - 1) as u8 & 0x1f)
    }

    /// A connection ID with the given nonce.
    pub fn encode(&self, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut cid = Vec::with_capacity(self.cid_len());
        cid.push(self.first_octet());
        cid.extend_from_slice(&self.server_id);
        cid.extend_from_slice(nonce);
        cid
    }

    /// Reads a connection ID issued with a server id of `server_id_len` bytes (what a load
    /// balancer configured with that length does). `None` if the length octet disagrees.
    pub fn decode(cid: &[u8], server_id_len: usize) -> Option<DecodedCid> {
        let (&first, rest) = cid.split_first()?;
        let config_id = first >> 5;
        let server_id_len = if config_id == UNROUTABLE {
            0
        } else {
            server_id_len
        };
        if usize::from(first & 0x1f) != cid.len() - 1 || rest.len() < server_id_len {
            return None;
        }
        let (server_id, nonce) = rest.split_at(server_id_len);
        Some(DecodedCid {
            config_id,
            server_id: server_id.to_vec(),
            nonce: nonce.to_vec(),
        })
    }
}

/// quinn's connection ID generator for [`CidLayout`].
pub struct ServerIdCidGenerator {
    layout: CidLayout,
    rng: SystemRandom,
}

impl ServerIdCidGenerator {
    pub fn new(layout: CidLayout) -> ServerIdCidGenerator {
        ServerIdCidGenerator {
            layout,
            rng: SystemRandom::new(),
        }
    }
}

impl quinn::ConnectionIdGenerator for ServerIdCidGenerator {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut nonce = [0u8; NONCE_LEN];
        if self.rng.fill(&mut nonce).is_err() {
            // The system CSPRNG does not fail on supported platforms; never issue a predictable
            // connection ID if it somehow does.
            panic!("the system random number generator failed");
        }
        quinn::ConnectionId::new(&self.layout.encode(&nonce))
    }

    fn cid_len(&self) -> usize {
        self.layout.cid_len()
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The endpoint configuration that issues connection IDs in `layout`.
/// `max_udp_payload` (validated by the config: 1200..=65527) is the largest UDP payload the
/// endpoint accepts. `reset_key`: the key of stateless reset tokens (RFC 9000 10.3), shared by
/// the nodes of a cluster so that any node can reset another's connections; `None`: a random
/// key of this process.
pub fn endpoint_config(
    layout: CidLayout,
    max_udp_payload: u16,
    reset_key: Option<&[u8]>,
) -> quinn::EndpointConfig {
    let mut config = match reset_key {
        Some(key) => quinn::EndpointConfig::new(std::sync::Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            key,
        ))),
        None => quinn::EndpointConfig::default(),
    };
    config.cid_generator(move || Box::new(ServerIdCidGenerator::new(layout.clone())));
    if let Err(e) = config.max_udp_payload_size(max_udp_payload) {
        tracing::warn!(max_udp_payload, error = %e, "quic.max_udp_payload not applied");
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::ConnectionIdGenerator;

    #[test]
    fn encodes_config_rotation_length_server_id_and_nonce() {
        let layout = CidLayout::new(Some(vec![0x01, 0x02]), 1);
        assert_eq!(layout.cid_len(), 11);
        assert_eq!(layout.first_octet(), 0b001_01010);
        let cid = layout.encode(&[0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8]);
        assert_eq!(
            cid,
            [0x2a, 0x01, 0x02, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8]
        );
        let decoded = CidLayout::decode(&cid, 2).unwrap();
        assert_eq!(decoded.config_id, 1);
        assert_eq!(decoded.server_id, [0x01, 0x02]);
        assert_eq!(
            decoded.nonce,
            [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8]
        );
        // A CID whose length octet lies is not ours.
        assert_eq!(CidLayout::decode(&cid[..10], 2), None);
    }

    #[test]
    fn without_a_server_id_ids_are_unroutable_and_still_nine_bytes() {
        let layout = CidLayout::new(None, 3);
        assert_eq!(layout.config_id, UNROUTABLE);
        assert_eq!(layout.cid_len(), 9);
        let cid = layout.encode(&[7; 8]);
        assert_eq!(cid[0], 0b111_01000);
        let decoded = CidLayout::decode(&cid, 4).unwrap();
        assert!(decoded.server_id.is_empty());
        assert_eq!(decoded.nonce, [7; 8]);
    }

    #[test]
    fn generated_ids_share_the_prefix_and_differ_in_the_nonce() {
        let layout = CidLayout::new(Some(vec![0xc0, 0xff, 0xee]), 0);
        let mut generator = ServerIdCidGenerator::new(layout.clone());
        assert_eq!(generator.cid_len(), 12);
        assert_eq!(generator.cid_lifetime(), None);
        let ids: Vec<Vec<u8>> = (0..64).map(|_| generator.generate_cid().to_vec()).collect();
        for id in &ids {
            assert_eq!(id.len(), 12);
            assert_eq!(&id[..4], &[0x0b, 0xc0, 0xff, 0xee]);
            let decoded = CidLayout::decode(id, 3).unwrap();
            assert_eq!(decoded.server_id, [0xc0, 0xff, 0xee]);
        }
        let distinct: std::collections::HashSet<_> = ids.iter().map(|id| &id[4..]).collect();
        assert_eq!(distinct.len(), ids.len(), "nonces repeat");
    }

    #[test]
    fn the_largest_server_id_fits_quic_twenty_bytes() {
        let layout = CidLayout::new(Some(vec![9; crate::config::MAX_SERVER_ID_LEN]), 6);
        assert_eq!(layout.cid_len(), 20);
        assert_eq!(layout.first_octet(), 0b110_10011);
    }
}
