//! The hand-off between the connection tasks and the broker task, in both directions.
//!
//! [`Event`]s go in: the transports, the QUIC glue and the embedding API report what they read
//! and what happened on one bounded channel ([`EVENT_QUEUE`]). [`Outbox`]es come out: the broker
//! task appends encoded packets for one connection (or one stream) and wakes its writer.
//!
//! Both the transports and the server use these types, so they live below both: a transport
//! never needs the server to talk to the broker task.

pub mod event;
pub mod outbox;

pub use event::{ClusterEvent, Event, EVENT_QUEUE};
pub use outbox::{Outbox, ReadPause};

/// Tells the broker task that connection `conn` from `peer` is open and hands it the outbox its
/// packets go to; `None` when the broker is gone. Every transport opens connections this way.
pub async fn open_connection(
    events: &tokio::sync::mpsc::Sender<Event>,
    conn: crate::broker::ConnId,
    peer: String,
) -> Option<std::sync::Arc<Outbox>> {
    let outbox = std::sync::Arc::new(Outbox::default());
    let opened = Event::Opened {
        conn,
        peer,
        outbox: outbox.clone(),
    };
    events.send(opened).await.ok()?;
    Some(outbox)
}
