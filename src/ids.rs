//! Job and target identifiers.
//!
//! Ids end up in file names, Nix attribute names, instance names and command lines, so
//! they are validated once, when the configuration is read, and carried as `Id` after.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id, in bytes. A job's id names its directory, and a file name holds at
/// most 255 bytes; ids also go into longer names (Nix attributes, log headers), so half
/// of that leaves room.
pub const MAX_ID_LEN: usize = 128;

/// A job, target or input id: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most [`MAX_ID_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidId {
    #[error(
        "invalid id `{id}`: ids start with a letter or digit and contain only letters, digits, `.`, `_` and `-`"
    )]
    Characters { id: String },
    #[error(
        "invalid id `{start}…`: it is {len} characters long; ids have at most {MAX_ID_LEN} (a job's id names its directory)"
    )]
    TooLong { start: String, len: usize },
}

impl Id {
    pub fn new(id: impl Into<String>) -> Result<Id, InvalidId> {
        let id = id.into();
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !(first_ok && rest_ok) {
            Err(InvalidId::Characters { id })
        } else if id.len() > MAX_ID_LEN {
            // Only ASCII here, so any byte index is a character boundary.
            Err(InvalidId::TooLong {
                start: id[..20].to_string(),
                len: id.len(),
            })
        } else {
            Ok(Id(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Id::new(value)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for ok in ["lint", "a", "0", "x86_64-linux", "build.release", "A-b_c.9"] {
            assert!(Id::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_ids_that_could_escape() {
        for bad in [
            "", "-x", ".hidden", "_x", "a/b", "..", "a b", "a\nb", "é", "a$b",
        ] {
            assert_eq!(
                Id::new(bad),
                Err(InvalidId::Characters { id: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_ids_too_long_for_a_file_name_and_names_the_limit() {
        assert!(Id::new("a".repeat(MAX_ID_LEN)).is_ok());
        let err = Id::new("a".repeat(300)).unwrap_err();
        assert_eq!(
            err,
            InvalidId::TooLong {
                start: "a".repeat(20),
                len: 300
            }
        );
        assert!(err.to_string().contains("at most 128"), "{err}");
    }
}
