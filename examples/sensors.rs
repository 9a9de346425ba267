//! The embedding API end to end: a broker with in-process handlers.
//!
//! Run it and publish from any MQTT client:
//!
//! ```text
//! cargo run --example sensors
//! mosquitto_sub -t 'alerts/#' -v &
//! mosquitto_pub -t sensors/kitchen/temperature -m 31.5
//! ```
//!
//! The handler for `sensors/+/temperature` parses each reading and publishes an alert to
//! `alerts/heat/<room>` when it is above 30 °C; a second handler keeps the latest reading per
//! room and republishes a retained summary on `sensors/summary`.
// Example code: brevity over error handling ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mqttd::codec::QoS;
use mqttd::{App, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::default();
    mqttd::cli::init_logging(&config);
    let mut app = App::new(config);

    let alerts = app.publisher();
    app.subscribe("sensors/+/temperature", move |msg| {
        let alerts = alerts.clone();
        async move {
            let room = msg.topic.split('/').nth(1).unwrap_or("unknown").to_owned();
            let Some(celsius) = std::str::from_utf8(&msg.payload)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
            else {
                tracing::warn!(topic = %msg.topic, "not a number");
                return;
            };
            let from = msg.client_id.as_deref().unwrap_or("the app");
            tracing::info!(%room, celsius, from, "reading");
            if celsius > 30.0 {
                let text = format!("{room} is at {celsius} °C");
                let _ = alerts
                    .publish(format!("alerts/heat/{room}"), text, QoS::AtLeastOnce, false)
                    .await;
            }
        }
    })?;

    let latest: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let summary = app.publisher();
    app.subscribe("sensors/+/temperature", move |msg| {
        let (latest, summary) = (latest.clone(), summary.clone());
        async move {
            let room = msg.topic.split('/').nth(1).unwrap_or("unknown").to_owned();
            let value = String::from_utf8_lossy(&msg.payload).into_owned();
            let text = {
                let mut latest = latest.lock().unwrap_or_else(|p| p.into_inner());
                latest.insert(room, value);
                latest
                    .iter()
                    .map(|(r, v)| format!("{r}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let _ = summary
                .publish("sensors/summary", text, QoS::AtMostOnce, true)
                .await;
        }
    })?;

    app.run().await?;
    Ok(())
}
