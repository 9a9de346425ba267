//! Authentication (who is this client?) and authorization (what may it do?).
//!
//! Sans-IO like the broker: [`Authenticator`] turns a CONNECT's credentials, the verified
//! client certificate's identity and the peer address into a [`Login`] verdict; [`acl::Acl`]
//! turns an ACL file into per-client rules the broker checks on PUBLISH, SUBSCRIBE and every
//! delivery. The only slow step, an Argon2 verification, is [`Authenticator::login`] with a
//! password to check: the transports run it on the blocking pool (`transport::login`), never
//! on the broker task, and hand the broker the verdict before the CONNECT.
//!
//! The rules (also in the README):
//! - With `use_identity_as_username`, a client that presented a verified certificate is the
//!   certificate's identity; its CONNECT user name and password are ignored.
//! - With a password file, a CONNECT user name must come with its password: else CONNACK 0x86
//!   (3.1.1: 4). Without a password file a user name cannot be verified, so it does not
//!   count: the client is anonymous (never trusted for the ACL's `user` sections or `%u`).
//! - Anonymous clients are allowed, refused (0x87 / 5) or, by default, allowed from loopback
//!   addresses only while no authentication is configured (see [`Anonymous`]).

pub mod acl;
pub mod identity;
pub mod passwd;
pub mod password;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::ReasonCode;
use crate::config::Config;
pub use acl::{Acl, AclError, ClientRules};
pub use password::{PasswordFile, PasswordFileError};

/// The verdict on a CONNECT's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Let it in; the user name the ACL sees (`None`: anonymous).
    Accepted { username: Option<ByteString> },
    /// Refuse with this CONNACK reason code (0x86 bad user name or password, 0x87 not
    /// authorized; 3.1.1 clients get return codes 4 and 5).
    Refused(ReasonCode),
}

/// Who may connect without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    Allowed,
    /// The automatic default of a first run: from loopback addresses only.
    LoopbackOnly,
    Refused,
}

/// Authentication files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.password_file: {0}")]
    PasswordFile(#[from] PasswordFileError),
    #[error("auth.acl_file: {0}")]
    AclFile(#[from] AclError),
}

/// What a client presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The verified client certificate's identity (mutual TLS).
    pub identity: Option<&'a str>,
    pub peer: Option<IpAddr>,
}

/// Decides logins from the configuration and the password file.
#[derive(Debug, Clone)]
pub struct Authenticator {
    passwords: Option<Arc<PasswordFile>>,
    password_file: Option<PathBuf>,
    anonymous: Anonymous,
    identity_as_username: bool,
}

impl Authenticator {
    /// Reads the password file named by the configuration, if any.
    pub fn from_config(config: &Config) -> Result<Authenticator, AuthSetupError> {
        let auth = &config.auth;
        let passwords = match &auth.password_file {
            Some(path) => Some(Arc::new(PasswordFile::load(path)?)),
            None => None,
        };
        let configured = passwords.is_some() || auth.use_identity_as_username;
        let anonymous = match auth.allow_anonymous {
            Some(true) => Anonymous::Allowed,
            Some(false) => Anonymous::Refused,
            None if configured => Anonymous::Refused,
            None => Anonymous::LoopbackOnly,
        };
        Ok(Authenticator {
            passwords,
            password_file: auth.password_file.clone(),
            anonymous,
            identity_as_username: auth.use_identity_as_username,
        })
    }

    /// An authenticator with explicit parts (tests, embedding).
    pub fn new(
        passwords: Option<PasswordFile>,
        anonymous: Anonymous,
        identity_as_username: bool,
    ) -> Authenticator {
        Authenticator {
            passwords: passwords.map(Arc::new),
            password_file: None,
            anonymous,
            identity_as_username,
        }
    }

    pub fn anonymous(&self) -> Anonymous {
        self.anonymous
    }

    /// Number of users in the password file (`None` without one).
    pub fn users(&self) -> Option<usize> {
        self.passwords.as_ref().map(|p| p.len())
    }

    /// Reads the password file again (SIGHUP). On error the old file stays in force.
    pub fn reload(&mut self) -> Result<Option<usize>, AuthSetupError> {
        if let Some(path) = &self.password_file {
            let file = PasswordFile::load(path)?;
            self.passwords = Some(Arc::new(file));
        }
        Ok(self.users())
    }

    /// Whether [`Authenticator::login`] will run a (slow) password verification.
    pub fn needs_password_check(&self, c: &Credentials<'_>) -> bool {
        !(self.identity_as_username && c.identity.is_some())
            && c.username.is_some()
            && self.passwords.is_some()
    }

    /// The verdict on `c`. Slow when [`Authenticator::needs_password_check`] says so.
    pub fn login(&self, c: &Credentials<'_>) -> Login {
        if self.identity_as_username {
            if let Some(identity) = c.identity {
                return Login::Accepted {
                    username: Some(ByteString::from(identity)),
                };
            }
        }
        match (c.username, &self.passwords) {
            (Some(user), Some(passwords)) => {
                // An absent password is checked like a wrong one (same cost, same answer).
                let ok = passwords.verify(user, c.password.unwrap_or_default());
                if ok && c.password.is_some() {
                    Login::Accepted {
                        username: Some(ByteString::from(user)),
                    }
                } else {
                    // [MQTT-3.1.4-2] / 3.2.2.2: 0x86 Bad User Name or Password (3.1.1: 4).
                    Login::Refused(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
                }
            }
            // No password file: a user name cannot be verified and does not count.
            (Some(_), None) if self.anonymous_allowed(c.peer) => Login::Accepted { username: None },
            (Some(_), None) => Login::Refused(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            (None, _) if self.anonymous_allowed(c.peer) => Login::Accepted { username: None },
            // 0x87 Not authorized (3.1.1: 5), as mosquitto answers anonymous clients.
            (None, _) => Login::Refused(ReasonCode::NOT_AUTHORIZED),
        }
    }

    fn anonymous_allowed(&self, peer: Option<IpAddr>) -> bool {
        match self.anonymous {
            Anonymous::Allowed => true,
            Anonymous::Refused => false,
            Anonymous::LoopbackOnly => peer.is_some_and(|ip| ip.to_canonical().is_loopback()),
        }
    }
}

/// Loads the ACL file named by the configuration, if any.
pub fn load_acl(config: &Config) -> Result<Option<Acl>, AuthSetupError> {
    match &config.auth.acl_file {
        Some(path) => Ok(Some(Acl::load(path)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    fn creds<'a>(
        user: Option<&'a str>,
        password: Option<&'a [u8]>,
        peer: Option<IpAddr>,
    ) -> Credentials<'a> {
        Credentials {
            username: user,
            password,
            identity: None,
            peer,
        }
    }

    fn accepted(user: Option<&str>) -> Login {
        Login::Accepted {
            username: user.map(ByteString::from),
        }
    }

    #[test]
    fn automatic_anonymous_is_loopback_only_without_authentication() {
        let auth = Authenticator::from_config(&Config::default()).unwrap();
        assert_eq!(auth.anonymous(), Anonymous::LoopbackOnly);
        assert_eq!(auth.login(&creds(None, None, LOCAL)), accepted(None));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(auth.login(&creds(None, None, Some(mapped))), accepted(None));
        assert_eq!(
            auth.login(&creds(None, None, REMOTE)),
            Login::Refused(ReasonCode::NOT_AUTHORIZED)
        );
        // An unverifiable user name counts as anonymous.
        assert_eq!(
            auth.login(&creds(Some("admin"), Some(b"x"), LOCAL)),
            accepted(None)
        );
        assert!(!auth.needs_password_check(&creds(Some("admin"), None, LOCAL)));
    }

    #[test]
    fn a_password_file_turns_automatic_anonymous_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::default();
        file.set("alice", b"secret").unwrap();
        file.save(&path).unwrap();
        let mut config = Config::default();
        config.auth.password_file = Some(path.clone());
        let auth = Authenticator::from_config(&config).unwrap();
        assert_eq!(auth.anonymous(), Anonymous::Refused);
        assert_eq!(auth.users(), Some(1));
        let alice = creds(Some("alice"), Some(b"secret"), REMOTE);
        assert!(auth.needs_password_check(&alice));
        assert_eq!(auth.login(&alice), accepted(Some("alice")));
        let bad = Login::Refused(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        assert_eq!(auth.login(&creds(Some("alice"), Some(b"nope"), LOCAL)), bad);
        assert_eq!(auth.login(&creds(Some("alice"), None, LOCAL)), bad);
        assert_eq!(auth.login(&creds(Some("eve"), Some(b"secret"), LOCAL)), bad);
        assert_eq!(
            auth.login(&creds(None, None, LOCAL)),
            Login::Refused(ReasonCode::NOT_AUTHORIZED)
        );
        // Explicitly on: anonymous clients from anywhere, passwords still checked.
        config.auth.allow_anonymous = Some(true);
        let auth = Authenticator::from_config(&config).unwrap();
        assert_eq!(auth.login(&creds(None, None, REMOTE)), accepted(None));
        assert_eq!(auth.login(&creds(Some("alice"), Some(b"x"), REMOTE)), bad);

        // Reload picks up a changed file.
        let mut auth = Authenticator::from_config(&config).unwrap();
        file.set("bob", b"b").unwrap();
        file.save(&path).unwrap();
        assert_eq!(auth.reload().unwrap(), Some(2));
        assert_eq!(
            auth.login(&creds(Some("bob"), Some(b"b"), LOCAL)),
            accepted(Some("bob"))
        );
        std::fs::write(&path, "broken\n").unwrap();
        assert!(auth.reload().is_err());
        assert_eq!(auth.users(), Some(2), "the old file stays in force");
    }

    #[test]
    fn certificate_identity_is_the_user_name() {
        let auth = Authenticator::new(None, Anonymous::Refused, true);
        let with_cert = Credentials {
            username: Some("mallory"),
            password: Some(b"x"),
            identity: Some("sensor-7"),
            peer: REMOTE,
        };
        assert!(!auth.needs_password_check(&with_cert));
        assert_eq!(auth.login(&with_cert), accepted(Some("sensor-7")));
        // Without a certificate the password rules apply (no file: refused).
        assert_eq!(
            auth.login(&creds(Some("sensor-7"), Some(b"x"), REMOTE)),
            Login::Refused(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        // Identity present but mapping off: it is ignored.
        let auth = Authenticator::new(None, Anonymous::Allowed, false);
        assert_eq!(auth.login(&with_cert), accepted(None));
    }

    #[test]
    fn bad_files_name_the_key() {
        let mut config = Config::default();
        config.auth.password_file = Some("/nonexistent/passwd".into());
        let err = Authenticator::from_config(&config).unwrap_err().to_string();
        assert!(
            err.starts_with("auth.password_file: /nonexistent/passwd: cannot read"),
            "{err}"
        );
        config.auth.acl_file = Some("/nonexistent/acl".into());
        let err = load_acl(&config).unwrap_err().to_string();
        assert!(err.starts_with("auth.acl_file: /nonexistent/acl"), "{err}");
    }
}
