//! `GET /api/v1/openapi.json`: an OpenAPI 3.0 description of the admin API, written out here
//! beside the routes it describes (`api.rs`); a test checks that every route is in it.

use axum::Json;
use serde_json::{json, Value};

/// (method, path, summary) of every endpoint.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("get", "/clients", "List clients (filters: clientid, like_clientid, username, ip_address, transport, conn_state; page, limit)"),
    ("get", "/clients/{clientid}", "One client, with its QUIC block (RTT, cwnd, losses, path, migrations) over QUIC"),
    ("delete", "/clients/{clientid}", "Kick a client (5.0: DISCONNECT 0x98) and discard its session"),
    ("get", "/clients/{clientid}/subscriptions", "A client's subscriptions"),
    ("post", "/clients/{clientid}/subscribe", "Subscribe a client: {topic, qos, nl, rap, rh}"),
    ("post", "/clients/{clientid}/unsubscribe", "Unsubscribe a client: {topic}"),
    ("get", "/subscriptions", "All subscriptions (filters: clientid, topic, qos, share; page, limit)"),
    ("get", "/topics", "Subscribed topic filters with their subscription counts (filter: topic)"),
    ("get", "/mqtt/retainer/messages", "Retained messages matching a filter (topic, default #; page, limit)"),
    ("get", "/mqtt/retainer/message/{topic}", "One retained message (payload in base64); the topic URL-encoded"),
    ("delete", "/mqtt/retainer/message/{topic}", "Delete a retained message"),
    ("post", "/publish", "Publish {topic, payload, payload_encoding: plain|base64, qos, retain}"),
    ("get", "/stats", "Counts: connections, sessions, subscriptions, topics, retained, messages"),
    ("get", "/listeners", "MQTT listeners with bound addresses and current connections"),
    ("get", "/openapi.json", "This document"),
];

pub async fn document() -> Json<Value> {
    Json(spec())
}

pub fn spec() -> Value {
    let error = json!({
        "description": "Bad input (400), missing or wrong token (401), unknown client or topic (404)",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    });
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ENDPOINTS {
        let mut params = Vec::new();
        for name in ["clientid", "topic"] {
            if path.contains(&format!("{{{name}}}")) {
                params.push(json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
            }
        }
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": { "200": { "description": "OK" }, "204": { "description": "Done" }, "4XX": error.clone() },
        });
        if *method == "post" {
            if let Some(fields) = op.as_object_mut() {
                fields.insert("requestBody".into(), json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } }));
            }
        }
        let entry = paths
            .entry(format!("/api/v1{path}"))
            .or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "mqttd admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Shaped like EMQX's /api/v5 (clients, subscriptions, topics, retainer, publish, stats, listeners). Off loopback every request needs Authorization: Bearer TOKEN. Prometheus metrics are at /metrics."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "properties": { "code": { "type": "string" }, "message": { "type": "string" } }, "required": ["code", "message"] } }
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
    })
}
