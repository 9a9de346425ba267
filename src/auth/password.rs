//! The password file: one `user:PHC-string` line per user, Argon2id hashes with a random salt
//! each (the format of mosquitto's password file, with Argon2id instead of PBKDF2).
//!
//! Slow salted hashes make a stolen file expensive to attack; the price is tens of
//! milliseconds of CPU per verification, which is why the transports verify outside the broker
//! task (`transport::login`). Nothing derived from a password is ever cached.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A password file that cannot be used, naming the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {problem}")]
    Invalid {
        file: PathBuf,
        line: usize,
        problem: String,
    },
}

/// Users and their password hashes, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    entries: Vec<(String, String)>,
}

/// Why a user name cannot be stored.
pub fn check_username(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    if user.contains(':') {
        return Err(format!(
            "user name {user:?} contains ':' (the field separator)"
        ));
    }
    if user.chars().any(char::is_control) {
        return Err(format!("user name {user:?} contains a control character"));
    }
    if user.trim() != user {
        return Err(format!(
            "user name {user:?} starts or ends with white space"
        ));
    }
    Ok(())
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        PasswordFile::parse(&text, path)
    }

    /// Parses the text of a password file; `file` names it in errors. Blank lines and lines
    /// starting with `#` are ignored.
    pub fn parse(text: &str, file: &Path) -> Result<PasswordFile, PasswordFileError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let invalid = |problem: String| PasswordFileError::Invalid {
                file: file.to_path_buf(),
                line: index + 1,
                problem,
            };
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(invalid("expected user:$argon2id$... (no ':' found)".into()));
            };
            check_username(user).map_err(&invalid)?;
            let parsed = PasswordHash::new(hash)
                .map_err(|e| invalid(format!("user {user:?}: not a PHC hash string ({e})")))?;
            if parsed.algorithm.as_str() != "argon2id"
                && parsed.algorithm.as_str() != "argon2i"
                && parsed.algorithm.as_str() != "argon2d"
            {
                return Err(invalid(format!(
                    "user {user:?}: unsupported hash algorithm {} (use `mqttd passwd`, which writes argon2id)",
                    parsed.algorithm
                )));
            }
            if entries.iter().any(|(u, _)| u == user) {
                return Err(invalid(format!("user {user:?} appears twice")));
            }
            entries.push((user.to_owned(), hash.to_owned()));
        }
        Ok(PasswordFile { entries })
    }

    /// The file's text: one `user:hash` line per user.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (user, hash) in &self.entries {
            out.push_str(user);
            out.push(':');
            out.push_str(hash);
            out.push('\n');
        }
        out
    }

    /// Writes the file (mode 0600 on Unix: the hashes are secrets too), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), PasswordFileError> {
        let write_error = |source| PasswordFileError::Write {
            file: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(write_error)?;
            f.write_all(self.to_text().as_bytes())
                .map_err(write_error)?;
            f.sync_all().map_err(write_error)?;
        }
        std::fs::rename(&tmp, path).map_err(write_error)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == user)
    }

    /// Sets (adds or replaces) the password of `user`.
    pub fn set(&mut self, user: &str, password: &[u8]) -> Result<(), String> {
        check_username(user)?;
        let hash = hash_password(password)?;
        match self.entries.iter_mut().find(|(u, _)| u == user) {
            Some(entry) => entry.1 = hash,
            None => self.entries.push((user.to_owned(), hash)),
        }
        Ok(())
    }

    /// Removes `user`; false if it was not there.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(u, _)| u != user);
        self.entries.len() != before
    }

    /// Verifies `password` for `user` (slow: one Argon2 computation). An unknown user costs
    /// the same as a known one, so timing does not tell which user names exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.entries.iter().find(|(u, _)| u == user) {
            Some((_, hash)) => verify_hash(hash, password),
            None => {
                let _ = verify_hash(dummy_hash(), password);
                false
            }
        }
    }
}

/// A fresh Argon2id hash of `password` with a random 16-byte salt, as a PHC string. The
/// parameters are the argon2 crate's defaults (OWASP's: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "no system randomness for a salt".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_hash(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the PHC string, so files written with other costs verify.
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

/// A hash with the default parameters of a password nobody knows, for unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(b"mqttd: no such user").unwrap_or_else(|_| {
            // Without randomness, a fixed salt still costs the same to verify.
            SaltString::from_b64("bXF0dGRub3N1Y2h1c2Vy")
                .ok()
                .and_then(|salt| {
                    Argon2::default()
                        .hash_password(b"mqttd: no such user", &salt)
                        .ok()
                        .map(|h| h.to_string())
                })
                .unwrap_or_default()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse(text, Path::new("pw"))
    }

    #[test]
    fn set_verify_and_round_trip() {
        let mut file = PasswordFile::default();
        file.set("alice", b"wonderland").unwrap();
        file.set("bob", b"builder").unwrap();
        assert!(file.verify("alice", b"wonderland"));
        assert!(!file.verify("alice", b"builder"));
        assert!(!file.verify("carol", b"wonderland"), "unknown user");
        let text = file.to_text();
        assert!(
            text.starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
        let again = parse(&text).unwrap();
        assert_eq!(again, file);
        assert!(again.verify("bob", b"builder"));
        // Each hash has its own salt.
        let mut two = PasswordFile::default();
        two.set("a", b"same").unwrap();
        two.set("b", b"same").unwrap();
        let lines: Vec<&str> = two.entries.iter().map(|(_, h)| h.as_str()).collect();
        assert_ne!(lines[0], lines[1]);
    }

    #[test]
    fn replace_and_remove() {
        let mut file = PasswordFile::default();
        file.set("alice", b"one").unwrap();
        file.set("alice", b"two").unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"two") && !file.verify("alice", b"one"));
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        assert!(file.is_empty());
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let mut file = PasswordFile::default();
        file.set("alice", b"pw").unwrap();
        let text = format!("# users\n\n{}", file.to_text().replace('\n', "\r\n"));
        let parsed = parse(&text).unwrap();
        assert!(parsed.verify("alice", b"pw"));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            err("# c\nalice\n"),
            "pw:2: expected user:$argon2id$... (no ':' found)"
        );
        assert!(err("alice:plain\n").starts_with("pw:1: user \"alice\": not a PHC hash string"));
        assert!(
            err(":$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n").contains("empty")
        );
        let h = hash_password(b"x").unwrap();
        assert!(err(&format!("a:{h}\na:{h}\n")).contains("pw:2: user \"a\" appears twice"));
        assert!(
            err("a:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
                .contains("unsupported")
        );
    }

    #[test]
    fn user_names_that_cannot_be_stored() {
        assert!(check_username("a:b").is_err());
        assert!(check_username("").is_err());
        assert!(check_username(" a").is_err());
        assert!(check_username("a\nb").is_err());
        assert!(check_username("sensor-1@site").is_ok());
        let mut file = PasswordFile::default();
        assert!(file.set("a:b", b"x").is_err());
    }

    #[test]
    fn cheaper_parameters_from_the_file_verify_too() {
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = argon.hash_password(b"pw", &salt).unwrap().to_string();
        let file = parse(&format!("u:{hash}\n")).unwrap();
        assert!(file.verify("u", b"pw"));
        assert!(!file.verify("u", b"pw2"));
    }

    #[test]
    fn save_writes_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::default();
        file.set("alice", b"pw").unwrap();
        file.save(&path).unwrap();
        assert_eq!(PasswordFile::load(&path).unwrap(), file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let missing = PasswordFile::load(&dir.path().join("none")).unwrap_err();
        assert!(
            missing.to_string().contains("none: cannot read"),
            "{missing}"
        );
    }
}
