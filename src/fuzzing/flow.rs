//! Flow header target (`codec::flow`): parsing never panics, never reads past what it
//! reports, is stable under truncation, and server data headers round trip.

use bytes::BytesMut;

use crate::codec::flow::{self, FlowHeader, MAX_HEADER_LEN};

pub fn flow_header(data: &[u8]) {
    let parsed = flow::parse(data);
    match &parsed {
        Ok(Some((header, len))) => {
            assert!(
                *len <= data.len() && *len <= MAX_HEADER_LEN + 1,
                "length {len}"
            );
            // The header is all in its first `len` bytes: the same answer from those alone.
            assert_eq!(
                flow::parse(&data[..*len]),
                parsed,
                "prefix parses differently"
            );
            // Any shorter prefix is incomplete (or too long to wait for).
            for cut in 0..*len {
                assert!(
                    matches!(flow::parse(&data[..cut]), Ok(None) | Err(_)),
                    "prefix of {cut} bytes parsed as a header"
                );
            }
            if let FlowHeader::Data {
                kind: flow::FLOW_SERVER_DATA,
                id,
                expire_secs,
                flags,
            } = header
            {
                if id.0 < 1 << 62 && *expire_secs < 1 << 62 {
                    let mut out = BytesMut::new();
                    flow::encode_server_data(*id, *expire_secs, *flags, &mut out);
                    let (again, n) = flow::parse(&out)
                        .expect("encoded header parses")
                        .expect("complete");
                    assert_eq!((&again, n), (header, out.len()));
                }
            }
        }
        Ok(None) => assert!(
            data.len() < MAX_HEADER_LEN,
            "waiting for more than the maximum"
        ),
        Err(_) => {}
    }
}
