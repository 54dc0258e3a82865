//! The policy's one error type: what makes a document unusable, naming the field.

use std::path::PathBuf;
use thiserror::Error;

/// Why a policy document is refused. Every variant names the document (`origin`);
/// `Invalid` names the field by its path (`client[2] "acme".placement[0].edge`, arrays
/// counted from 0, with the edge's or client's name) and quotes the value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or TOML that does not fit the schema (a wrong type, an unknown or missing
    /// field): toml's report, which quotes the line and marks the column.
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// Well-formed TOML whose values break a rule.
    #[error("{origin}: {field}: {}{problem}", value.as_ref().map(|v| format!("{v} ")).unwrap_or_default())]
    Invalid {
        origin: String,
        /// Path of the offending field.
        field: String,
        /// The offending value as written (strings quoted), where there is one.
        value: Option<String>,
        /// What is wrong with it.
        problem: String,
    },
}

impl PolicyError {
    /// The path of the offending field, for an `Invalid` error.
    pub fn field(&self) -> Option<&str> {
        match self {
            PolicyError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
