//! A strict, single-pass reading of an MCP JSON-RPC message: just what a capability decision
//! needs (the method, the tool a `tools/call` names, the token in `params._meta.token`), and
//! what the MCP 2026-07-28 request headers mirror (`id` for the error answer, `params.name`,
//! `params.uri`, `params.taskId`; see [`mcp_headers`](crate::mcp_headers)).
//!
//! The capability layer and the server behind it must read the same message. JSON parsers
//! disagree about duplicate keys (serde_json keeps the last one; many Python and TypeScript
//! parsers keep the first; some refuse), so `{"name":"search","name":"drop_table"}` could be
//! authorized as one tool and run as another. [`parse`] therefore refuses every message whose
//! meaning could depend on the parser:
//!
//! - bodies that are not UTF-8, or not one JSON value (nothing may follow it);
//! - batches (a top-level array) and top-level values that are not objects;
//! - a key that appears twice in the message object, in `params` or in `params._meta`, with keys
//!   compared after unescaping (`"na\u006de"` is `"name"`);
//! - `jsonrpc` other than the string `"2.0"`, a `method` that is not a string, and a
//!   `tools/call` whose `params.name` is not a string.
//!
//! Everything else is checked as JSON syntax only, without building a tree: in particular,
//! duplicate keys deeper down (inside `params.arguments`, say) are the tool's business, not the
//! capability layer's. The strings the decision reads are fully decoded (a lone UTF-16 surrogate
//! escape in them is refused); values that are skipped are checked against the JSON grammar
//! only, which allows such escapes and numbers of any size, and may nest to any depth (skipping
//! does not recurse).
//!
//! ```
//! use vouch_tower::jsonrpc;
//!
//! let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call",
//!     "params":{"name":"search","arguments":{"q":"x"},"_meta":{"token":"EnQK"}}}"#;
//! let message = jsonrpc::parse(body)?;
//! assert_eq!(message.method(), Some("tools/call"));
//! assert_eq!(message.tool(), Some("search"));
//! assert_eq!(message.token(), Some("EnQK"));
//!
//! let smuggled = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call",
//!     "params":{"name":"search","name":"drop_table"}}"#;
//! assert_eq!(
//!     jsonrpc::parse(smuggled),
//!     Err(jsonrpc::Error::DuplicateKey(jsonrpc::Location::Params))
//! );
//! # Ok::<(), jsonrpc::Error>(())
//! ```

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess};

/// The method whose `params.name` names a tool.
const TOOLS_CALL: &str = "tools/call";

/// The JSON-RPC error code for a body that is not JSON.
pub const PARSE_ERROR: i32 = -32700;

/// The JSON-RPC error code for JSON that is not an acceptable request.
pub const INVALID_REQUEST: i32 = -32600;

/// What a capability decision reads from one JSON-RPC message. Strings borrow from the body
/// unless they contained escapes. `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct Message<'a> {
    method: Option<Cow<'a, str>>,
    tool: Option<Cow<'a, str>>,
    token: Option<Cow<'a, str>>,
    id: Option<serde_json::Value>,
    name: Field<'a>,
    uri: Field<'a>,
    task_id: Field<'a>,
}

impl<'a> Message<'a> {
    /// The `method`; `None` for a message without one (a response).
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The tool a `tools/call` calls (its `params.name`); `None` for other methods.
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// The string in `params._meta.token`, if there is one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The tool, keeping the borrow from the body.
    pub fn into_tool(self) -> Option<Cow<'a, str>> {
        self.tool
    }

    /// The `id` when it is a string or a number (what an error answer echoes); `None` for a
    /// notification, a `null` id, or an id of another type.
    pub fn id(&self) -> Option<&serde_json::Value> {
        self.id.as_ref()
    }

    /// The string the `Mcp-Name` header mirrors for this message's method
    /// ([`vouch_httpsig::mcp::name_source`]: `params.name`, `params.uri` or `params.taskId`);
    /// `None` if the method carries no `Mcp-Name`, or the field is absent or not a string.
    pub fn mcp_name(&self) -> Option<&str> {
        let field = match vouch_httpsig::mcp::name_source(self.method()?)? {
            "name" => &self.name,
            "uri" => &self.uri,
            _ => &self.task_id,
        };
        field.as_str()
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("method", &self.method)
            .field("id", &self.id)
            .field("tool", &self.tool)
            .field("mcp_name", &self.mcp_name())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The object a duplicate key was found in.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The message object itself.
    Envelope,
    /// `params`.
    Params,
    /// `params._meta`.
    Meta,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Envelope => "the message",
            Self::Params => "params",
            Self::Meta => "params._meta",
        })
    }
}

/// Why [`parse`] refused a body.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The body is not UTF-8.
    NotUtf8,
    /// The body is not one JSON value.
    NotJson,
    /// The body is a batch (a top-level array); MCP over HTTP sends one message per request.
    Batch,
    /// The body is JSON but not an object.
    NotObject,
    /// A key appears twice in this object.
    DuplicateKey(Location),
    /// `jsonrpc` is missing or is not `"2.0"`.
    Version,
    /// `method` is not a string.
    Method,
    /// A `tools/call` without a string `params.name`.
    ToolName,
}

impl Error {
    /// The JSON-RPC error code: [`PARSE_ERROR`] for bodies that are not UTF-8 JSON,
    /// [`INVALID_REQUEST`] otherwise.
    pub fn code(&self) -> i32 {
        match self {
            Self::NotUtf8 | Self::NotJson => PARSE_ERROR,
            _ => INVALID_REQUEST,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("parse error: body is not UTF-8"),
            Self::NotJson => f.write_str("parse error: body is not one JSON value"),
            Self::Batch => f.write_str("invalid request: batches are not accepted"),
            Self::NotObject => f.write_str("invalid request: message is not an object"),
            Self::DuplicateKey(at) => write!(f, "invalid request: duplicate key in {at}"),
            Self::Version => f.write_str("invalid request: jsonrpc is not \"2.0\""),
            Self::Method => f.write_str("invalid request: method is not a string"),
            Self::ToolName => f.write_str("invalid request: tools/call without params.name"),
        }
    }
}

impl std::error::Error for Error {}

/// Reads one JSON-RPC message (see the [module docs](self) for what is refused).
///
/// # Errors
///
/// [`Error::NotUtf8`] and [`Error::NotJson`] when the body is not UTF-8 JSON (these win over the
/// others), otherwise the first shape problem found.
pub fn parse(body: &[u8]) -> Result<Message<'_>, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::NotUtf8)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let shape = de.deserialize_any(TopVisitor).map_err(|_| Error::NotJson)?;
    de.end().map_err(|_| Error::NotJson)?;
    let envelope = shape?;
    if envelope.version.as_str() != Some("2.0") {
        return Err(Error::Version);
    }
    let method = match envelope.method {
        Field::Absent => None,
        Field::Str(m) => Some(m),
        Field::Other => return Err(Error::Method),
    };
    let tool = if method.as_deref() == Some(TOOLS_CALL) {
        match &envelope.params.name {
            Field::Str(name) => Some(name.clone()),
            Field::Absent | Field::Other => return Err(Error::ToolName),
        }
    } else {
        None
    };
    Ok(Message {
        method,
        tool,
        token: envelope.params.token,
        id: envelope.id,
        name: envelope.params.name,
        uri: envelope.params.uri,
        task_id: envelope.params.task_id,
    })
}

/// A value the decision may read: absent, a string, or anything else.
#[derive(Default, Clone, PartialEq, Eq)]
enum Field<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Other,
}

impl Field<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Absent | Self::Other => None,
        }
    }
}

/// What an object held, or the first shape problem in it. The JSON syntax is checked to the end
/// even after a shape problem, so that a syntax error always wins.
type Shape<T> = Result<T, Error>;

#[derive(Default)]
struct Envelope<'a> {
    version: Field<'a>,
    method: Field<'a>,
    id: Option<serde_json::Value>,
    params: Params<'a>,
}

#[derive(Default)]
struct Params<'a> {
    name: Field<'a>,
    uri: Field<'a>,
    task_id: Field<'a>,
    token: Option<Cow<'a, str>>,
}

/// Keys seen in one object: a few inline, then a tree (so that a huge object costs
/// `n log n`, not `n²`).
struct Seen<'a> {
    few: [Cow<'a, str>; INLINE_KEYS],
    len: usize,
    many: BTreeSet<Cow<'a, str>>,
}

/// Keys [`Seen`] compares one by one before it builds a tree.
const INLINE_KEYS: usize = 8;

impl<'a> Seen<'a> {
    fn new() -> Self {
        Self {
            few: Default::default(),
            len: 0,
            many: BTreeSet::new(),
        }
    }

    /// Records `key`; false if it was already there.
    fn insert(&mut self, key: Cow<'a, str>) -> bool {
        if self.few.iter().take(self.len).any(|k| *k == key) {
            return false;
        }
        if let Some(slot) = self.few.get_mut(self.len) {
            *slot = key;
            self.len += 1;
            true
        } else {
            self.many.insert(key)
        }
    }
}

/// An object key, unescaped, borrowed when it had no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Visits every JSON value kind with `$on_other` except the ones the visitor overrides.
macro_rules! other_kinds {
    ($value:ty, $on_other:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$value, E> {
            Ok($on_other)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$value, E> {
            Ok($on_other)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$value, E> {
            Ok($on_other)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$value, E> {
            Ok($on_other)
        }

        fn visit_unit<E: de::Error>(self) -> Result<$value, E> {
            Ok($on_other)
        }
    };
}

/// The top level: an object, or why not.
struct TopVisitor;

impl<'de> de::Visitor<'de> for TopVisitor {
    type Value = Shape<Envelope<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    other_kinds!(Self::Value, Err(Error::NotObject));

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(Error::NotObject))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Err(Error::Batch))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::new();
        let mut out = Envelope::default();
        let mut problem = None;
        while let Some(Key(key)) = map.next_key()? {
            let kind = match &*key {
                "jsonrpc" => 0,
                "method" => 1,
                "params" => 2,
                "id" => 3,
                _ => 4,
            };
            if !seen.insert(key) {
                problem.get_or_insert(Error::DuplicateKey(Location::Envelope));
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match kind {
                0 => out.version = map.next_value_seed(FieldSeed)?,
                1 => out.method = map.next_value_seed(FieldSeed)?,
                2 => match map.next_value_seed(ParamsSeed)? {
                    Ok(params) => out.params = params,
                    Err(e) => {
                        problem.get_or_insert(e);
                    }
                },
                3 => out.id = map.next_value_seed(IdSeed)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(problem.map_or(Ok(out), Err))
    }
}

/// A value read as a [`Field`].
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for FieldSeed {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    other_kinds!(Self::Value, Field::Other);

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(Field::Other)
    }
}

/// An `id`: kept when it is a string or a number (as a JSON value), dropped otherwise.
struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for IdSeed {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC id")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(serde_json::Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(None)
    }
}

/// `params`: an object is read for `name`, `uri`, `taskId` and `_meta`; positional (array) or other params carry
/// neither.
struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Shape<Params<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for ParamsSeed {
    type Value = Shape<Params<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON-RPC params")
    }

    other_kinds!(Self::Value, Ok(Params::default()));

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Ok(Params::default()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Ok(Params::default()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::new();
        let mut out = Params::default();
        let mut problem = None;
        while let Some(Key(key)) = map.next_key()? {
            let kind = match &*key {
                "name" => 0,
                "_meta" => 1,
                "uri" => 2,
                "taskId" => 3,
                _ => 4,
            };
            if !seen.insert(key) {
                problem.get_or_insert(Error::DuplicateKey(Location::Params));
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match kind {
                0 => out.name = map.next_value_seed(FieldSeed)?,
                1 => match map.next_value_seed(MetaSeed)? {
                    Ok(token) => out.token = token,
                    Err(e) => {
                        problem.get_or_insert(e);
                    }
                },
                2 => out.uri = map.next_value_seed(FieldSeed)?,
                3 => out.task_id = map.next_value_seed(FieldSeed)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(problem.map_or(Ok(out), Err))
    }
}

/// `params._meta`: an object is read for a string `token`.
struct MetaSeed;

impl<'de> DeserializeSeed<'de> for MetaSeed {
    type Value = Shape<Option<Cow<'de, str>>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for MetaSeed {
    type Value = Shape<Option<Cow<'de, str>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params._meta")
    }

    other_kinds!(Self::Value, Ok(None));

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Ok(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Ok(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::new();
        let mut token = None;
        let mut problem = None;
        while let Some(Key(key)) = map.next_key()? {
            let is_token = key == "token";
            if !seen.insert(key) {
                problem.get_or_insert(Error::DuplicateKey(Location::Meta));
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if is_token {
                if let Field::Str(t) = map.next_value_seed(FieldSeed)? {
                    token = Some(t);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(problem.map_or(Ok(token), Err))
    }
}
