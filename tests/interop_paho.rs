//! Interoperability with the Eclipse Paho Python client (paho-mqtt 2.x).
//!
//! Each test starts its own broker and runs one scenario of
//! `tests/interop/paho_v311.py` or `tests/interop/paho_v5.py` with the test
//! venv's Python (see `tests/run-all.sh`). A scenario exits 0 on success and
//! prints `FAIL: <scenario>: <reason>` otherwise; its whole output is shown
//! when a test fails. The scenarios are described in the scripts.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{run_python, TestBroker};

/// Upper bound for one scenario (the scripts' own watchdog fires at 18 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20);

fn run_scenario(script: &str, scenario: &str) {
    let broker = TestBroker::start();
    let host = broker.host();
    let port = broker.port();
    let output = run_python(
        script,
        &["--host", &host, "--port", &port, scenario],
        SCENARIO_TIMEOUT,
    );
    assert!(
        output.success(),
        "paho scenario {scenario:?} of {script} failed against {:?}:\n{}",
        broker.kind,
        output.describe()
    );
}

macro_rules! paho_tests {
    ($script:literal: $($name:ident => $scenario:literal),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_scenario($script, $scenario);
            }
        )+
    };
}

paho_tests! { "paho_v311.py":
    v311_qos_0_1_2_round_trips => "qos",
    v311_retained_message => "retained",
    v311_will_message => "will",
    v311_persistent_session_resume => "persistent-session",
}

paho_tests! { "paho_v5.py":
    v5_qos_0_1_2_round_trips => "qos",
    v5_retained_message => "retained",
    v5_will_message_with_properties => "will",
    v5_will_delay_interval => "will-delay",
    v5_persistent_session_resume => "persistent-session",
    v5_session_expiry => "session-expiry",
    v5_subscription_identifiers => "subscription-identifiers",
    v5_no_local => "no-local",
    v5_retain_as_published => "retain-as-published",
    v5_retain_handling => "retain-handling",
    v5_topic_alias_from_client => "topic-alias",
    v5_message_expiry => "message-expiry",
    v5_message_properties_forwarded => "message-properties",
    v5_shared_subscription_splits_messages => "shared-subscription",
    v5_request_response_information => "request-response",
}
