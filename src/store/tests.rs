//! The redb store on a temporary directory: operations round trip, a session delete removes
//! its deliveries and no other client's, a damaged file is moved aside, a closed store opens
//! again. On a simulated disk: power loss at any write, and the writer on a full disk.

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
        .apply(&[
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
        ])
        .unwrap();
    store
        .apply(&[
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
        ])
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
        .apply(&[StoreOp::PutRetained {
            topic: "t".into(),
            record: vec![1],
        }])
        .unwrap();
}

#[test]
fn a_closed_file_store_opens_again_at_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap().store;
    store.apply(&[put_delivery("a", 1)]).unwrap();
    // As a failed commit leaves it.
    *store.slot() = None;
    store.apply(&[put_delivery("a", 2)]).unwrap();
    assert_eq!(
        store.load().unwrap().deliveries,
        vec![("a".to_string(), 1, vec![1]), ("a".to_string(), 2, vec![2])]
    );
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

/// A disk that loses power: writes since the last sync survive a crash each on its own, torn
/// (a prefix) or not at all, in any combination. The store must come back with exactly the
/// state of a commit that returned, or of the one that was in progress: nothing committed
/// before is lost, nothing half-applied shows.
///
/// The same disk can also be full: the writer must hold a failed commit back (no
/// acknowledgement before the disk), retry it until the disk has room, and still stop.
mod power_loss {
    use std::sync::{Arc, Mutex};

    use redb::StorageBackend;

    use super::*;

    #[derive(Debug, Default)]
    struct State {
        /// What reads see.
        visible: Vec<u8>,
        /// What is on the platter.
        durable: Vec<u8>,
        /// Since the last sync: (offset, bytes), or a length change as (len, empty).
        pending: Vec<(u64, Option<Vec<u8>>)>,
        /// Writes left before the power goes; `None`: no crash planned.
        writes_left: Option<u64>,
        writes: u64,
        /// No room: writes and length changes fail, and change nothing.
        full: bool,
    }

    #[derive(Debug, Clone, Default)]
    struct Disk(Arc<Mutex<State>>);

    fn gone() -> std::io::Error {
        std::io::Error::other("power lost")
    }

    fn no_room() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full")
    }

    impl Disk {
        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        fn crashed(s: &State) -> bool {
            s.writes_left == Some(0)
        }

        /// The disk after the power came back.
        fn reboot(&self, rng: &mut u64) -> Disk {
            let s = self.state();
            let mut disk = s.durable.clone();
            for (offset, data) in &s.pending {
                let roll = next(rng) % 3;
                match data {
                    None => {
                        if roll != 0 {
                            disk.resize(*offset as usize, 0);
                        }
                    }
                    Some(data) => {
                        let keep = match roll {
                            0 => 0,
                            1 => data.len(),
                            _ => (next(rng) as usize) % (data.len() + 1),
                        };
                        let end = *offset as usize + keep;
                        if disk.len() < end {
                            disk.resize(end, 0);
                        }
                        disk[*offset as usize..end].copy_from_slice(&data[..keep]);
                    }
                }
            }
            Disk(Arc::new(Mutex::new(State {
                visible: disk.clone(),
                durable: disk,
                ..State::default()
            })))
        }
    }

    impl StorageBackend for Disk {
        fn len(&self) -> Result<u64, std::io::Error> {
            Ok(self.state().visible.len() as u64)
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            let s = self.state();
            let source = s
                .visible
                .get(offset as usize..offset as usize + out.len())
                .ok_or_else(|| std::io::Error::other("read past the end"))?;
            out.copy_from_slice(source);
            Ok(())
        }

        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            let mut s = self.state();
            if Self::crashed(&s) {
                return Err(gone());
            }
            if s.full {
                return Err(no_room());
            }
            s.visible.resize(len as usize, 0);
            s.pending.push((len, None));
            Ok(())
        }

        fn sync_data(&self) -> Result<(), std::io::Error> {
            let mut s = self.state();
            if Self::crashed(&s) {
                return Err(gone());
            }
            s.durable = s.visible.clone();
            s.pending.clear();
            Ok(())
        }

        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            let mut s = self.state();
            if Self::crashed(&s) {
                return Err(gone());
            }
            if s.full {
                return Err(no_room());
            }
            if let Some(left) = s.writes_left.as_mut() {
                *left -= 1;
            }
            s.writes += 1;
            let end = offset as usize + data.len();
            let target = s
                .visible
                .get_mut(offset as usize..end)
                .ok_or_else(|| std::io::Error::other("write past the end"))?;
            target.copy_from_slice(data);
            s.pending.push((offset, Some(data.to_vec())));
            Ok(())
        }
    }

    fn next(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    }

    /// The store on `disk`; it reopens on the same disk after a failed commit.
    fn open(disk: &Disk) -> Result<Store, redb::Error> {
        let disk = disk.clone();
        let reopen = move || redb::Database::builder().create_with_backend(disk.clone());
        Store::new(
            PathBuf::from("<simulated disk>"),
            reopen()?,
            Box::new(reopen),
        )
    }

    /// Transaction `i`: session "c" becomes `[i]`, retained topic `t/i` appears, delivery
    /// `(c, i - 1)` is replaced by `(c, i)`.
    fn transaction(i: u64) -> Vec<StoreOp> {
        let mut ops = vec![
            StoreOp::PutSession {
                client_id: "c".into(),
                record: vec![i as u8; 300],
            },
            StoreOp::PutRetained {
                topic: format!("t/{i}").into(),
                record: vec![i as u8; 500],
            },
            StoreOp::PutDelivery {
                client_id: "c".into(),
                seq: i,
                record: vec![i as u8; 700],
            },
        ];
        if i > 0 {
            ops.push(StoreOp::DeleteDelivery {
                client_id: "c".into(),
                seq: i - 1,
            });
        }
        ops
    }

    /// Which transaction's state `loaded` is (`None`: the empty store); panics on a state that
    /// is no transaction's.
    fn state_of(loaded: &Loaded) -> Option<u64> {
        let Some((_, record)) = loaded.sessions.first() else {
            assert!(loaded.retained.is_empty() && loaded.deliveries.is_empty());
            return None;
        };
        let i = u64::from(record[0]);
        assert_eq!(loaded.sessions, vec![("c".to_string(), vec![i as u8; 300])]);
        let retained: Vec<_> = (0..=i)
            .map(|k| (format!("t/{k}"), vec![k as u8; 500]))
            .collect();
        let mut expected_retained = retained;
        expected_retained.sort();
        assert_eq!(loaded.retained, expected_retained);
        assert_eq!(
            loaded.deliveries,
            vec![("c".to_string(), i, vec![i as u8; 700])]
        );
        Some(i)
    }

    #[test]
    fn a_crash_at_any_write_keeps_every_returned_commit() {
        const TRANSACTIONS: u64 = 10;
        // How many writes a full run makes, to aim the crashes.
        let disk = Disk::default();
        let store = open(&disk).unwrap();
        for i in 0..TRANSACTIONS {
            store.apply(&transaction(i)).unwrap();
        }
        drop(store);
        let total = disk.state().writes;
        assert_eq!(
            state_of(&open(&disk).unwrap().load().unwrap()),
            Some(TRANSACTIONS - 1)
        );

        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for crash_at in 1..=total {
            let disk = Disk::default();
            disk.state().writes_left = Some(crash_at);
            let mut returned = None;
            let created = open(&disk).map(|store| {
                for i in 0..TRANSACTIONS {
                    if store.apply(&transaction(i)).is_err() {
                        break;
                    }
                    returned = Some(i);
                }
            });
            let rebooted = disk.reboot(&mut rng);
            let store = match (open(&rebooted), created) {
                (Ok(store), _) => store,
                // Power lost while the file was being created: nothing was committed, and a
                // file that is not a database yet is what `Store::open` moves aside.
                (Err(_), Err(_)) => continue,
                (Err(e), Ok(())) => {
                    panic!("crash at write {crash_at}/{total}: the store does not open: {e}")
                }
            };
            let state = state_of(&store.load().unwrap());
            let in_progress = returned.map_or(0, |i| i + 1);
            assert!(
                state >= returned && state <= Some(in_progress),
                "crash at write {crash_at}/{total}: state {state:?}, last returned commit {returned:?}"
            );
        }
    }

    mod disk_full {
        use std::time::Duration;

        use tokio::time::timeout;

        use super::*;
        use crate::config::Durability;
        use crate::store::writer::{Writer, QUEUE};

        const MODES: [Durability; 2] = [Durability::Fsync, Durability::Batched];

        /// The state committed on `disk`, read from a fresh store.
        fn committed_state(disk: &Disk) -> Option<u64> {
            state_of(&open(disk).unwrap().load().unwrap())
        }

        #[tokio::test]
        async fn a_failed_commit_is_held_and_retried_until_the_disk_has_room() {
            for mode in MODES {
                let disk = Disk::default();
                let mut writer = Writer::start(open(&disk).unwrap(), mode, 5);
                disk.state().full = true;
                writer.send(1, transaction(0)).await;
                assert!(
                    timeout(Duration::from_millis(300), writer.committed())
                        .await
                        .is_err(),
                    "{mode:?}: reported committed with the disk full"
                );
                disk.state().full = false;
                assert_eq!(
                    timeout(Duration::from_secs(5), writer.committed()).await,
                    Ok(Some(1)),
                    "{mode:?}: committed once the disk has room"
                );
                assert_eq!(writer.finish().await, 1, "{mode:?}");
                assert_eq!(committed_state(&disk), Some(0), "{mode:?}");
            }
        }

        #[tokio::test]
        async fn a_failing_commit_stops_the_writer_taking_change_sets() {
            for mode in MODES {
                let disk = Disk::default();
                let mut writer = Writer::start(open(&disk).unwrap(), mode, 5);
                disk.state().full = true;
                writer.send(1, transaction(0)).await;
                // Taken (past the batch window) and failing.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut ticket = 1;
                while timeout(
                    Duration::from_millis(200),
                    writer.send(ticket + 1, transaction(ticket)),
                )
                .await
                .is_ok()
                {
                    ticket += 1;
                    assert!(
                        ticket < 1000,
                        "{mode:?}: the writer keeps taking change sets"
                    );
                }
                assert_eq!(
                    ticket,
                    1 + QUEUE as u64,
                    "{mode:?}: one failing, a queue full"
                );
                disk.state().full = false;
                let mut committed = 0;
                while committed < ticket {
                    committed = timeout(Duration::from_secs(5), writer.committed())
                        .await
                        .expect("the queue drains once the disk has room")
                        .unwrap();
                }
                assert_eq!(writer.finish().await, ticket, "{mode:?}");
                assert_eq!(committed_state(&disk), Some(ticket - 1), "{mode:?}");
            }
        }

        #[tokio::test]
        async fn a_writer_on_a_disk_that_stays_full_still_finishes() {
            for mode in MODES {
                let disk = Disk::default();
                let store = open(&disk).unwrap();
                store.apply(&transaction(0)).unwrap();
                let mut writer = Writer::start(store, mode, 5);
                disk.state().full = true;
                writer.send(1, transaction(1)).await;
                writer.send(2, transaction(2)).await;
                assert_eq!(
                    timeout(Duration::from_secs(5), writer.finish()).await,
                    Ok(0),
                    "{mode:?}: finishes, reporting nothing committed"
                );
                disk.state().full = false;
                assert_eq!(committed_state(&disk), Some(0), "{mode:?}");
            }
        }

        #[tokio::test]
        async fn a_disk_that_recovers_while_the_writer_finishes_gets_the_changes() {
            for mode in MODES {
                let disk = Disk::default();
                let mut writer = Writer::start(open(&disk).unwrap(), mode, 5);
                disk.state().full = true;
                writer.send(1, transaction(0)).await;
                writer.send(2, transaction(1)).await;
                let room = async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    disk.state().full = false;
                };
                let (finished, ()) = tokio::join!(writer.finish(), room);
                assert_eq!(finished, 2, "{mode:?}");
                assert_eq!(committed_state(&disk), Some(1), "{mode:?}");
            }
        }
    }
}
