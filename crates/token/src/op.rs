//! Operations a token may grant on a tool.

use core::fmt;

use crate::codec::{Reader, Writer};
use crate::error::Malformed;

/// An operation on a tool.
///
/// The vocabulary is read, write and execute; any other non-empty string is allowed and kept as
/// [`Op::Other`]. Parsing `"read"`, `"write"` or `"execute"` always gives the named variant, so an
/// operation has one spelling.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// Reads data without changing it.
    Read,
    /// Changes data.
    Write,
    /// Runs something; the default operation for a tool without a more specific mapping.
    Execute,
    /// Any other operation name.
    Other(String),
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const EXECUTE: u8 = 3;
const OTHER: u8 = 0;

impl Op {
    /// The operation's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Execute => "execute",
            Self::Other(s) => s,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::Read => w.u8(READ),
            Self::Write => w.u8(WRITE),
            Self::Execute => w.u8(EXECUTE),
            Self::Other(s) => {
                w.u8(OTHER);
                w.str(s);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        match r.u8()? {
            READ => Ok(Self::Read),
            WRITE => Ok(Self::Write),
            EXECUTE => Ok(Self::Execute),
            OTHER => match Self::from(r.str()?) {
                Self::Other(s) => Ok(Self::Other(s)),
                _ => Err(Malformed("named operation spelled as a string")),
            },
            _ => Err(Malformed("unknown operation code")),
        }
    }
}

impl From<&str> for Op {
    fn from(s: &str) -> Self {
        match s {
            "read" => Self::Read,
            "write" => Self::Write,
            "execute" => Self::Execute,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl From<String> for Op {
    fn from(s: String) -> Self {
        match s.as_str() {
            "read" | "write" | "execute" => Self::from(s.as_str()),
            _ => Self::Other(s),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
