//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// Why a configuration file could not become a [`ValidatedConfig`](crate::ValidatedConfig).
///
/// Every variant names the file (`origin`); `Invalid` also names the field by its path in
/// the document (`tunnel[1] "client-b".key`, `route[3].tunnel`, arrays counted from 0)
/// and the offending value as written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or TOML that does not fit the schema (wrong type, unknown or missing
    /// field). `message` is toml's report, which quotes the line and marks the column.
    #[error("{origin}: {message}")]
    Syntax {
        origin: String,
        /// 1-based line of the error, where toml knows it.
        line: Option<usize>,
        /// 1-based column (in characters) of the error, where toml knows it.
        column: Option<usize>,
        message: String,
    },
    /// Well-formed TOML whose values break a rule of the schema.
    #[error("{origin}: {field}: {}", Problem { value, problem })]
    Invalid {
        origin: String,
        /// Path of the offending field, e.g. `tunnel[1] "client-b".key`.
        field: String,
        /// The offending value as written (strings quoted), where there is one.
        value: Option<String>,
        /// What is wrong with it, e.g. `is not a 32-bit key`.
        problem: String,
    },
}

impl ConfigError {
    /// A TOML or schema error from toml, located in `text`.
    pub(crate) fn syntax(origin: &str, text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = match err.span() {
            Some(span) => {
                let (l, c) = line_column(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Syntax {
            origin: origin.to_owned(),
            line,
            column,
            message: err.to_string().trim_end().to_owned(),
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Problem<'a> {
    value: &'a Option<String>,
    problem: &'a str,
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(value) => write!(f, "{value} {}", self.problem),
            None => f.write_str(self.problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte 'é': column 3 in characters.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn invalid_renders_field_value_and_problem() {
        let e = ConfigError::Invalid {
            origin: "backbone.toml".into(),
            field: "route[3].tunnel".into(),
            value: Some("\"nope\"".into()),
            problem: "is not a configured tunnel".into(),
        };
        assert_eq!(
            e.to_string(),
            "backbone.toml: route[3].tunnel: \"nope\" is not a configured tunnel"
        );
        let e = ConfigError::Invalid {
            origin: "x.toml".into(),
            field: "port".into(),
            value: None,
            problem: "at least one [[port]] is required".into(),
        };
        assert_eq!(
            e.to_string(),
            "x.toml: port: at least one [[port]] is required"
        );
    }
}
