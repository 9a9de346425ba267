//! The bundled client's enhanced authentication (MQTT 5.0, 4.12; `ClientOptions::auth`)
//! against mqttd with an enhanced authentication hook (`ServerOptions::enhanced_auth`): a
//! challenge/response method where the broker sends a nonce, the client answers it with a
//! shared secret, and the broker proves itself in the CONNACK. Right secret: connected (and
//! again on a reconnection, with a new exchange); wrong secret: refused with 0x87; a server
//! proof the client does not accept: the client disconnects.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/in_process.rs"]
mod in_process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqttd::broker::{AuthOutcome, ConnId, EnhancedAuth};
use mqttd::client::{self, AuthExchange, AuthMethod, Client, ClientError, ClientOptions};
use mqttd::codec::{QoS, ReasonCode};
use mqttd::server::{self, ServerHandle, ServerOptions};
use mqttd::Config;

const METHOD: &str = "x-nonce";
const SECRET: &str = "s3cret";
const PROOF: &str = "broker-proof";

/// The broker's side: a nonce per connection; the answer must be `nonce:secret`.
#[derive(Default)]
struct NonceHook {
    nonces: HashMap<ConnId, String>,
    next: u64,
}

impl EnhancedAuth for NonceHook {
    fn start(
        &mut self,
        conn: ConnId,
        _client_id: &str,
        method: &str,
        data: Option<&Bytes>,
    ) -> AuthOutcome {
        if method != METHOD {
            return AuthOutcome::Fail(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        assert_eq!(data.map(|d| &d[..]), Some(&b"hello"[..]), "initial data");
        self.next += 1;
        let nonce = format!("nonce-{}", self.next);
        self.nonces.insert(conn, nonce.clone());
        AuthOutcome::Continue(Bytes::from(nonce))
    }

    fn continue_auth(&mut self, conn: ConnId, _method: &str, data: Option<&Bytes>) -> AuthOutcome {
        let Some(nonce) = self.nonces.remove(&conn) else {
            return AuthOutcome::Fail(ReasonCode::NOT_AUTHORIZED);
        };
        let expected = format!("{nonce}:{SECRET}");
        if data.map(|d| &d[..]) == Some(expected.as_bytes()) {
            AuthOutcome::Success(Some(Bytes::from_static(PROOF.as_bytes())))
        } else {
            AuthOutcome::Fail(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

/// The client's side, counting the challenges it answered.
struct Nonce {
    secret: &'static str,
    proof: &'static str,
    challenges: Arc<AtomicUsize>,
}

struct NonceExchange {
    secret: &'static str,
    proof: &'static str,
    challenges: Arc<AtomicUsize>,
}

impl AuthMethod for Nonce {
    fn name(&self) -> &str {
        METHOD
    }

    fn start(&self) -> Box<dyn AuthExchange> {
        Box::new(NonceExchange {
            secret: self.secret,
            proof: self.proof,
            challenges: self.challenges.clone(),
        })
    }
}

impl AuthExchange for NonceExchange {
    fn initial_data(&mut self) -> Option<Bytes> {
        Some(Bytes::from_static(b"hello"))
    }

    fn challenge(&mut self, data: Option<&Bytes>) -> Result<Option<Bytes>, String> {
        self.challenges.fetch_add(1, Ordering::Relaxed);
        let nonce = std::str::from_utf8(data.ok_or("no nonce")?).map_err(|e| e.to_string())?;
        Ok(Some(Bytes::from(format!("{nonce}:{}", self.secret))))
    }

    fn success(&mut self, data: Option<&Bytes>) -> Result<(), String> {
        match data {
            Some(d) if &d[..] == self.proof.as_bytes() => Ok(()),
            other => Err(format!("unexpected server proof {other:?}")),
        }
    }
}

async fn broker() -> (ServerHandle, SocketAddr) {
    let mut config = Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = None;
    config.storage.persistence = false;
    config.log.level = "warn".into();
    let options = ServerOptions {
        enhanced_auth: Some(Box::new(NonceHook::default())),
        ..ServerOptions::default()
    };
    let server = server::start_with(config, options)
        .await
        .expect("broker starts");
    let addr = server.tcp_addr().unwrap();
    (server, addr)
}

fn options(
    addr: SocketAddr,
    id: &str,
    secret: &'static str,
    proof: &'static str,
) -> (ClientOptions, Arc<AtomicUsize>) {
    let challenges = Arc::new(AtomicUsize::new(0));
    let mut options = ClientOptions::new(addr.to_string()).client_id(id);
    options.auth = Some(client::EnhancedAuth::new(Nonce {
        secret,
        proof,
        challenges: challenges.clone(),
    }));
    (options, challenges)
}

#[tokio::test]
async fn the_client_answers_the_brokers_challenge() {
    let (server, addr) = broker().await;
    let (options, challenges) = options(addr, "authed", SECRET, PROOF);
    let (client, _) =
        in_process::within(Duration::from_secs(5), "CONNACK", Client::connect(options))
            .await
            .expect("authenticated");
    assert_eq!(challenges.load(Ordering::Relaxed), 1);
    client.subscribe("auth/t", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("auth/t", "after auth", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = in_process::within(Duration::from_secs(5), "the message", client.recv())
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"after auth");

    // A reconnection authenticates again, with a new exchange (a new nonce).
    client.abort().await;
    client.reconnect().await.expect("authenticated again");
    assert_eq!(challenges.load(Ordering::Relaxed), 2);
    client.disconnect().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_answer_is_refused_and_a_wrong_server_proof_is_not_accepted() {
    let (server, addr) = broker().await;
    let (wrong_secret, _) = options(addr, "wrong-secret", "guess", PROOF);
    match Client::connect(wrong_secret).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected a refusal, got {:?}", other.map(|(_, c)| c)),
    }
    let (wrong_proof, challenges) = options(addr, "wrong-proof", SECRET, "another proof");
    match Client::connect(wrong_proof).await {
        Err(ClientError::Protocol { code, message }) => {
            assert_eq!(code, ReasonCode::NOT_AUTHORIZED, "{message}");
            assert!(message.contains("unexpected server proof"), "{message}");
        }
        other => panic!(
            "expected the client to refuse the server, got {:?}",
            other.map(|(_, c)| c)
        ),
    }
    assert_eq!(challenges.load(Ordering::Relaxed), 1);
    server.shutdown().await;
}
