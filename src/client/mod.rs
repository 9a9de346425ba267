//! The bundled MQTT client (3.1.1 and 5.0), used by `mqttd pub` / `mqttd sub` and by tests.

mod error;
pub mod state;
mod types;

pub use error::{reason_name, ClientError, Reason, TRUST_HINT};
pub use types::{
    Acknowledged, Connected, Message, PublishOutcome, ReceivedMessage, ServerLimits, Subscription,
};
