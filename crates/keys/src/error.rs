//! Errors of key files and key formats.

use core::fmt;
use std::path::PathBuf;

/// Why a key could not be read, written or parsed.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// A key file could not be read or written, or its content is not a key: names the file.
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Key text is not in any format vouch reads, or is malformed.
    Format(String),
}

impl Error {
    pub(crate) fn format(reason: impl Into<String>) -> Self {
        Self::Format(reason.into())
    }

    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Self::Format(reason) => Self::File {
                path: path.to_owned(),
                reason,
            },
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::Format(reason) => write!(f, "bad key: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
