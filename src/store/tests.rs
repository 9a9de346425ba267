//! The redb store on a temporary directory: operations round trip, a session delete removes
//! its deliveries and no other client's, and a damaged file is moved aside.

use super::*;

fn put_delivery(c: &str, seq: u64) -> StoreOp {
    StoreOp::PutDelivery {
        client_id: c.into(),
        seq,
        record: vec![seq as u8],
    }
}

#[test]
fn operations_are_applied_in_order_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(dir.path()).unwrap();
    assert!(opened.moved_aside.is_none());
    let store = opened.store;
    store
        .apply(
            &[
                StoreOp::PutSession {
                    client_id: "a".into(),
                    record: vec![1],
                },
                StoreOp::PutSession {
                    client_id: "ab".into(),
                    record: vec![2],
                },
                put_delivery("a", 1),
                put_delivery("a", 2),
                put_delivery("ab", 1),
                StoreOp::PutRetained {
                    topic: "r/1".into(),
                    record: vec![9],
                },
                StoreOp::PutRetained {
                    topic: "r/2".into(),
                    record: vec![8],
                },
            ],
            true,
        )
        .unwrap();
    store
        .apply(
            &[
                StoreOp::DeleteSession {
                    client_id: "a".into(),
                },
                put_delivery("a", 3),
                StoreOp::DeleteDelivery {
                    client_id: "ab".into(),
                    seq: 7,
                },
                StoreOp::DeleteRetained {
                    topic: "r/2".into(),
                },
            ],
            true,
        )
        .unwrap();
    drop(store);
    let loaded = Store::open(dir.path()).unwrap().loaded;
    assert_eq!(loaded.sessions, vec![("ab".to_string(), vec![2])]);
    assert_eq!(
        loaded.deliveries,
        vec![
            ("a".to_string(), 3, vec![3]),
            ("ab".to_string(), 1, vec![1])
        ],
        "the delete of \"a\" removed its deliveries only; the later put stays"
    );
    assert_eq!(loaded.retained, vec![("r/1".to_string(), vec![9])]);
}

#[test]
fn a_damaged_file_is_moved_aside_and_the_store_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 8192]).unwrap();
    let opened = Store::open(dir.path()).unwrap();
    let aside = opened.moved_aside.expect("moved aside");
    assert!(aside
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("mqttd.redb.damaged-"));
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        vec![0x5a; 8192],
        "kept as it was"
    );
    assert!(opened.loaded.sessions.is_empty() && opened.loaded.retained.is_empty());
    opened
        .store
        .apply(
            &[StoreOp::PutRetained {
                topic: "t".into(),
                record: vec![1],
            }],
            true,
        )
        .unwrap();
}

#[test]
fn a_store_in_use_by_another_broker_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::InUse { .. })
    ));
}
