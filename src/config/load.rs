//! Reading a file into a [`Config`]: YAML syntax, then the typed schema (the structs' derived
//! `Deserialize`), then validation; each failure becomes a [`ConfigError`] naming the file.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::{explain, Config};

/// A configuration error, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path)
    }

    /// Parses and validates YAML text; `file` is only used in error messages.
    ///
    /// An empty document (or one holding only comments) gives [`Config::default`]; so does an
    /// empty section (`limits:` with nothing under it, or `limits: ~`).
    pub fn from_yaml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            message,
        };
        let document: Value = serde_yaml::from_str(text)
            .map_err(|error| invalid(explain::syntax_error(&error, from_text(text).err())))?;
        if document.is_null() {
            return Ok(Config::default());
        }
        // From the parsed document rather than the text: serde_yaml reading text takes `3`
        // for a string and `"3"` for a number, which the schema should refuse.
        let config: Config = serde_path_to_error::deserialize(&document).map_err(|error| {
            let location = locate(text, error.path());
            invalid(explain::schema_error(&error, location))
        })?;
        config.validate(file)?;
        Ok(config)
    }
}

type PathError = serde_path_to_error::Error<serde_yaml::Error>;

/// Deserializes straight from the text, which is what knows line numbers.
fn from_text(text: &str) -> Result<Config, PathError> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
}

/// The line and column of the problem at `path`, from reading the text again: a parsed
/// `Value` no longer knows where it came from.
fn locate(text: &str, path: &serde_path_to_error::Path) -> Option<serde_yaml::Location> {
    let error = from_text(text).err()?;
    (error.path().to_string() == path.to_string())
        .then(|| error.inner().location())
        .flatten()
}
