//! The REST API under `/api/v1`, shaped like EMQX's (`/clients`, `/clients/{id}`,
//! `/subscriptions`, `/topics`, `/publish`, `/stats`, `/listeners`, `/mqtt/retainer/...`) so
//! existing tooling carries over. Every query and action runs on the broker task
//! (`ServerProbe::run`); bad input is a 4xx with a JSON message and changes nothing.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AdminState;
use crate::broker::{Message, SessionInfo, SubscriptionInfo};
use crate::codec::{Properties, QoS, SubscriptionOptions};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/clients", get(clients))
        .route("/clients/{clientid}", get(client).delete(kick))
        .route(
            "/clients/{clientid}/subscriptions",
            get(client_subscriptions),
        )
        .route("/clients/{clientid}/subscribe", post(subscribe))
        .route("/clients/{clientid}/unsubscribe", post(unsubscribe))
        .route("/subscriptions", get(subscriptions))
        .route("/topics", get(topics))
        .route("/mqtt/retainer/messages", get(retained_list))
        .route(
            "/mqtt/retainer/message/{*topic}",
            get(retained_get).delete(retained_delete),
        )
        .route("/publish", post(publish))
        .route("/stats", get(stats))
        .route("/listeners", get(listeners))
        .route("/openapi.json", get(super::openapi::document))
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Page and limit from the query (EMQX: `page` from 1, `limit` 1..=10000, default 100).
fn paging(q: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let number = |key: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match q.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "{key}: {v:?} is not a number in 1..={max}"
                ))),
            },
        }
    };
    Ok((
        number("page", 1, usize::MAX)?,
        number("limit", 100, 10_000)?,
    ))
}

/// One page of `items` with EMQX's `{"data": [...], "meta": {...}}` envelope.
fn paged<T>(
    items: Vec<T>,
    (page, limit): (usize, usize),
    to_json: impl Fn(&T) -> Value,
) -> Json<Value> {
    let count = items.len();
    let data: Vec<Value> = items
        .iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(to_json)
        .collect();
    Json(json!({
        "data": data,
        "meta": { "page": page, "limit": limit, "count": count, "hasnext": page.saturating_mul(limit) < count },
    }))
}

fn session_json(s: &SessionInfo) -> Value {
    json!({
        "clientid": s.client_id,
        "username": s.username,
        "connected": s.connected,
        "ip_address": s.peer.as_ref().and_then(|p| p.rsplit_once(':')).map(|(ip, _)| ip.trim_matches(['[', ']'])),
        "port": s.peer.as_ref().and_then(|p| p.rsplit_once(':')).and_then(|(_, port)| port.parse::<u16>().ok()),
        "transport": s.transport,
        "proto_ver": s.protocol_level,
        "keepalive": s.keep_alive_secs,
        "connected_secs": s.connected_secs,
        "expiry_interval": s.expiry_secs,
        "subscriptions_cnt": s.subscriptions,
        "inflight_cnt": s.inflight,
        "mqueue_len": s.queued,
        "mqueue_bytes": s.queued_bytes,
        "quic_data_streams": s.data_streams,
        "quic_datagrams": s.datagrams,
        "migrations": s.migrations,
    })
}

fn subscription_json(s: &SubscriptionInfo) -> Value {
    json!({
        "clientid": s.client_id,
        "topic": s.filter,
        "qos": s.qos,
        "nl": u8::from(s.no_local),
        "rap": u8::from(s.retain_as_published),
        "rh": s.retain_handling,
        "stream": s.stream,
    })
}

/// `GET /clients`: filters `clientid`, `like_clientid`, `username`, `ip_address`,
/// `transport`, `conn_state` (`connected` / `disconnected`); paged.
async fn clients(State(state): State<AdminState>, q: Params) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let paging = paging(&q)?;
    if let Some(s) = q.get("conn_state") {
        if s != "connected" && s != "disconnected" {
            return Err(ApiError::bad_request(format!(
                "conn_state: {s:?} is not connected or disconnected"
            )));
        }
    }
    let mut list = state.probe.run(|b, now| b.sessions_info(now)).await?;
    list.retain(|s| {
        let ip = s
            .peer
            .as_ref()
            .and_then(|p| p.rsplit_once(':'))
            .map(|(ip, _)| ip.trim_matches(['[', ']']).to_string());
        q.get("clientid").is_none_or(|v| &s.client_id == v)
            && q.get("like_clientid")
                .is_none_or(|v| s.client_id.contains(v.as_str()))
            && q.get("username")
                .is_none_or(|v| s.username.as_deref() == Some(v.as_str()))
            && q.get("ip_address")
                .is_none_or(|v| ip.as_deref() == Some(v.as_str()))
            && q.get("transport")
                .is_none_or(|v| s.transport.as_deref() == Some(v.as_str()))
            && q.get("conn_state")
                .is_none_or(|v| s.connected == (v == "connected"))
    });
    Ok(paged(list, paging, session_json))
}

/// `GET /clients/{id}`: the client, with a `quic` block for a live QUIC connection.
async fn client(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lookup = id.clone();
    let info = state
        .probe
        .run(move |b, now| b.session_by_id(&lookup, now))
        .await?;
    let Some(info) = info else {
        return Err(crate::broker::AdminError::UnknownClient(id).into());
    };
    let mut body = session_json(&info);
    if let Some(conn) = info
        .conn
        .filter(|_| info.transport.as_deref() == Some("quic"))
    {
        let block =
            super::quic::client_block(&state.probe, conn, info.migrations).unwrap_or(Value::Null);
        if let Some(fields) = body.as_object_mut() {
            fields.insert("quic".into(), block);
        }
    }
    Ok(Json(body))
}

/// `DELETE /clients/{id}`: kick (5.0: DISCONNECT 0x98) and discard the session.
async fn kick(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.probe.run(move |b, now| b.kick(&id, now)).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn client_subscriptions(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let list = state
        .probe
        .run(move |b, _| b.subscriptions_info(Some(&id)))
        .await??;
    Ok(Json(Value::Array(
        list.iter().map(subscription_json).collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeBody {
    topic: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    nl: u8,
    #[serde(default)]
    rap: u8,
    #[serde(default)]
    rh: u8,
}

fn qos_of(n: u8) -> Result<QoS, ApiError> {
    match n {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(ApiError::bad_request(format!("qos: {n} is not 0, 1 or 2"))),
    }
}

/// `POST /clients/{id}/subscribe` `{"topic": F, "qos": 0..2, "nl", "rap", "rh"}`.
async fn subscribe(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<SubscribeBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let options = SubscriptionOptions {
        qos: qos_of(body.qos)?,
        no_local: body.nl != 0,
        retain_as_published: body.rap != 0,
        retain_handling: match body.rh {
            rh @ 0..=2 => rh,
            rh => return Err(ApiError::bad_request(format!("rh: {rh} is not 0, 1 or 2"))),
        },
    };
    let (client, topic) = (id.clone(), body.topic.clone());
    let granted = state
        .probe
        .run(move |b, now| b.admin_subscribe(&client, &topic, options, now))
        .await??;
    Ok(Json(
        json!({ "clientid": id, "topic": body.topic, "qos": granted as u8 }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicBody {
    topic: String,
}

/// `POST /clients/{id}/unsubscribe` `{"topic": F}`.
async fn unsubscribe(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<TopicBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    state
        .probe
        .run(move |b, _| b.admin_unsubscribe(&id, &body.topic))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /subscriptions`: every subscription; filters `clientid`, `topic`, `qos`, `share`
/// (`true`: shared only); paged.
async fn subscriptions(
    State(state): State<AdminState>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let paging = paging(&q)?;
    let qos = q.get("qos").map(|v| v.parse::<u8>()).transpose();
    let Ok(qos) = qos else {
        return Err(ApiError::bad_request("qos: expected 0, 1 or 2"));
    };
    let mut list = state.probe.run(|b, _| b.subscriptions_info(None)).await??;
    list.retain(|s| {
        q.get("clientid").is_none_or(|v| &s.client_id == v)
            && q.get("topic").is_none_or(|v| &s.filter == v)
            && qos.is_none_or(|n| s.qos == n)
            && q.get("share")
                .is_none_or(|v| s.filter.starts_with("$share/") == (v == "true"))
    });
    Ok(paged(list, paging, subscription_json))
}

/// `GET /topics`: subscribed filters with their number of subscriptions; filter `topic`.
async fn topics(State(state): State<AdminState>, q: Params) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let paging = paging(&q)?;
    let mut list = state.probe.run(|b, _| b.topics()).await?;
    if let Some(t) = q.get("topic") {
        list.retain(|(f, _)| f == t);
    }
    Ok(paged(
        list,
        paging,
        |(topic, n)| json!({ "topic": topic, "subscriptions": n }),
    ))
}

fn retained_json(m: &Message, with_payload: bool) -> Value {
    let mut v = json!({
        "topic": m.topic.to_string(),
        "qos": m.qos as u8,
        "payload_size": m.payload.len(),
        "from_clientid": m.origin.as_ref().map(|o| o.to_string()),
    });
    if with_payload {
        if let Some(fields) = v.as_object_mut() {
            let payload = base64::engine::general_purpose::STANDARD.encode(&m.payload);
            fields.insert("payload".into(), json!(payload));
        }
    }
    v
}

/// `GET /mqtt/retainer/messages`: retained messages (without payloads) whose topics match
/// the `topic` filter (default `#`); paged.
async fn retained_list(
    State(state): State<AdminState>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let paging = paging(&q)?;
    let filter = q.get("topic").cloned().unwrap_or_else(|| "#".into());
    let list = state
        .probe
        .run(move |b, _| b.retained_matching(&filter))
        .await??;
    Ok(paged(list, paging, |m| retained_json(m, false)))
}

/// `GET /mqtt/retainer/message/{topic}`: one retained message, payload in base64.
async fn retained_get(
    State(state): State<AdminState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !crate::topic::is_valid_topic_name(&topic) {
        return Err(ApiError::bad_request(format!(
            "invalid topic name {topic:?}"
        )));
    }
    let lookup = topic.clone();
    let list = state
        .probe
        .run(move |b, _| b.retained_matching(&lookup))
        .await??;
    match list.first() {
        Some(m) => Ok(Json(retained_json(m, true))),
        None => Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no retained message on {topic:?}"),
        )),
    }
}

/// `DELETE /mqtt/retainer/message/{topic}`: removes it (nothing is published).
async fn retained_delete(
    State(state): State<AdminState>,
    Path(topic): Path<String>,
) -> Result<StatusCode, ApiError> {
    let lookup = topic.clone();
    let removed = state
        .probe
        .run(move |b, _| b.delete_retained(&lookup))
        .await??;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no retained message on {topic:?}"),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: String,
    #[serde(default)]
    payload: String,
    /// `plain` (default) or `base64`.
    #[serde(default)]
    payload_encoding: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

/// `POST /publish` `{"topic", "payload", "payload_encoding": "plain"|"base64", "qos",
/// "retain"}`: published as the broker itself (no ACL); answers how many subscribers it
/// reached.
async fn publish(
    State(state): State<AdminState>,
    body: Result<Json<PublishBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let payload = match body.payload_encoding.as_deref() {
        None | Some("plain") => Bytes::from(body.payload.into_bytes()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(body.payload.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::bad_request(format!("payload: not valid base64 ({e})")))?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding: {other:?} is not plain or base64"
            )))
        }
    };
    let qos = qos_of(body.qos)?;
    if !crate::topic::is_valid_topic_name(&body.topic) {
        return Err(ApiError::bad_request(format!(
            "invalid topic name {:?}",
            body.topic
        )));
    }
    if body.topic.starts_with(crate::broker::SYS_PREFIX) {
        return Err(ApiError::bad_request("$SYS topics are the broker's own"));
    }
    let message = Message {
        topic: body.topic.as_str().into(),
        payload,
        qos,
        retain: body.retain,
        properties: Properties::default(),
        expires_at: None,
        origin: None,
        received_at: Some(std::time::Instant::now()),
        cluster_seq: None,
    };
    let reached = state
        .probe
        .run(move |b, now| b.app_publish(message, now))
        .await?
        .map_err(|code| ApiError::bad_request(format!("refused with reason code {code}")))?;
    Ok(Json(json!({ "reached": reached })))
}

/// `GET /stats`: EMQX's names for the broker's counts.
async fn stats(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let (m, topics) = state
        .probe
        .run(|b, _| (b.metrics(), b.topics().len()))
        .await?;
    Ok(Json(json!({
        "connections.count": m.connections,
        "live_connections.count": m.sessions_connected,
        "sessions.count": m.sessions,
        "subscriptions.count": m.subscriptions,
        "subscriptions.shared.count": m.shared_subscriptions,
        "topics.count": topics,
        "retained.count": m.retained_messages,
        "messages.received": m.messages_received,
        "messages.sent": m.messages_sent,
        "messages.dropped": m.dropped_no_subscribers + m.dropped_queue_full + m.dropped_expired
            + m.dropped_too_large + m.dropped_acl + m.dropped_qos0,
        "inflight.count": m.inflight_messages,
        "mqueue.count": m.queued_messages,
        "uptime_secs": state.probe.started().elapsed().as_secs(),
        "connections_by_transport": m.connections_by_transport.iter().cloned().collect::<HashMap<String, u64>>(),
    })))
}

/// `GET /listeners`: the MQTT listeners with their bound addresses and connections.
async fn listeners(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let m = state.probe.run(|b, _| b.metrics()).await?;
    let list: Vec<Value> = state
        .probe
        .listeners()
        .iter()
        .map(|(kind, addr)| {
            let current = m
                .connections_by_transport
                .iter()
                .find(|(t, _)| t == kind)
                .map_or(0, |(_, n)| *n);
            json!({
                "id": format!("{kind}:default"),
                "type": kind,
                "bind": addr.to_string(),
                "running": true,
                "current_connections": current,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}
