//! Connecting to NATS and making sure the stream and the bucket exist.

use std::time::Duration;

use async_nats::jetstream;

use super::{ClusterError, Names};
use crate::config::Cluster as ClusterConfig;

/// What the tasks share: the connection, its JetStream context, the stream and bucket.
pub(super) struct Joined {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub stream: jetstream::stream::Stream,
    pub retained: jetstream::kv::Store,
    pub sessions: jetstream::kv::Store,
    pub states: jetstream::kv::Store,
    /// Heartbeats and wills (liveness.rs, wills.rs).
    pub nodes: jetstream::kv::Store,
    pub wills: jetstream::kv::Store,
}

pub(super) async fn join(config: &ClusterConfig, names: &Names) -> Result<Joined, ClusterError> {
    let urls = config.urls.join(",");
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("mqttd {}", names.node))
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        // Reconnect for ever once connected: NATS coming back is the node coming back.
        .max_reconnects(None)
        .event_callback(|event| async move { log_event(&event) });
    if let Some(file) = &config.credentials_file {
        options =
            options
                .credentials_file(file)
                .await
                .map_err(|source| ClusterError::Credentials {
                    file: file.clone(),
                    source,
                })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<async_nats::ServerAddr> = config
        .urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| ClusterError::Connect {
            urls: urls.clone(),
            reason: e.to_string(),
        })?;
    let connect = options.connect(addrs);
    let client = tokio::time::timeout(Duration::from_millis(config.connect_timeout_ms), connect)
        .await
        .map_err(|_| ClusterError::Connect {
            urls: urls.clone(),
            reason: format!("no answer within {} ms", config.connect_timeout_ms),
        })?
        .map_err(|e| ClusterError::Connect {
            urls: urls.clone(),
            reason: e.to_string(),
        })?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_millis(config.ack_timeout_ms));
    let js_err = |what: &str, e: &dyn std::fmt::Display| ClusterError::JetStream {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: names.stream(),
            subjects: vec![names.stream_subject(">")],
            max_age: Duration::from_secs(config.stream_max_age_secs),
            storage: jetstream::stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| js_err(&format!("stream {}", names.stream()), &e))?;
    let retained = kv_bucket(&js, &names.retained_bucket(), config.replicas).await?;
    let sessions = kv_bucket(&js, &names.sessions_bucket(), config.replicas).await?;
    let states = kv_bucket(&js, &names.state_bucket(), config.replicas).await?;
    let nodes = kv_bucket(&js, &names.nodes_bucket(), config.replicas).await?;
    let wills = kv_bucket(&js, &names.wills_bucket(), config.replicas).await?;
    Ok(Joined {
        client,
        js,
        stream,
        retained,
        sessions,
        states,
        nodes,
        wills,
    })
}

/// Messages the NATS client dropped because this node did not take them fast enough.
static SLOW_CONSUMER_DROPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What the NATS client reports on its own: its connection, and the messages it dropped
/// because this node read them too slowly (QoS 0 from other nodes at more than this node can
/// route: at most once, README "What the cluster costs"), logged at 1, 2, 4, 8... drops.
fn log_event(event: &async_nats::Event) {
    match event {
        async_nats::Event::SlowConsumer(subscription) => {
            let n = SLOW_CONSUMER_DROPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    subscription,
                    dropped = n,
                    "NATS dropped messages for this node: it reads them slower than they come"
                );
            }
        }
        async_nats::Event::Connected => tracing::info!("NATS connected"),
        async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
        other => tracing::info!(event = %other, "NATS"),
    }
}

/// The bucket `bucket`, made if missing. Its stream is made here, as the KV layout says
/// (ADR-8), rather than with `create_key_value`: that one first reads the account info, whose
/// 2.9 form async-nats 0.52 cannot parse.
async fn kv_bucket(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<jetstream::kv::Store, ClusterError> {
    let js_err = |e: &dyn std::fmt::Display| ClusterError::JetStream {
        what: format!("bucket {bucket}"),
        reason: e.to_string(),
    };
    js.get_or_create_stream(kv_stream(bucket, replicas))
        .await
        .map_err(|e| js_err(&e))?;
    js.get_key_value(bucket).await.map_err(|e| js_err(&e))
}

/// The stream behind a KV bucket with one value per key (NATS ADR-8: `KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, rollups allowed, deletes denied, direct gets).
fn kv_stream(bucket: &str, replicas: usize) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}
