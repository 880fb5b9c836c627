//! How a command fails: a rejection (exit 1) or bad usage and unreadable input (exit 2).

use core::fmt;

/// Why a command did not succeed; the message is printed on stderr as one line.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A check rejected what it was given: exit status 1.
    Rejected(String),
    /// Bad usage, or input that cannot be read or parsed: exit status 2.
    Usage(String),
}

impl Failure {
    pub(crate) fn rejected(why: impl fmt::Display) -> Self {
        Self::Rejected(why.to_string())
    }

    pub(crate) fn usage(why: impl fmt::Display) -> Self {
        Self::Usage(why.to_string())
    }

    /// The process exit status.
    pub(crate) fn status(&self) -> u8 {
        match self {
            Self::Rejected(_) => 1,
            Self::Usage(_) => 2,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the message holds.
        let (kind, why) = match self {
            Self::Rejected(why) => ("rejected", why),
            Self::Usage(why) => ("error", why),
        };
        let one_line = why.replace(['\r', '\n'], " ");
        write!(f, "{kind}: {one_line}")
    }
}

/// What a command prints on stdout when it succeeds.
pub(crate) type Output = Result<Vec<u8>, Failure>;
