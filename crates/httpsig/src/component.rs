//! Component identifiers: `"@method"`, `"content-digest"`, `"@query-param";name="Pet"`, ...

use core::fmt;

use sfv::{BareItem, FieldType as _, Item, Key, Parameters};

use crate::error::Error;

/// One covered component: a name and its parameters, in the order received.
///
/// Parameters are kept exactly as parsed (an ordered map), so that the identifier serializes back
/// to the same text in the signature base.
#[derive(Clone)]
pub struct Component {
    name: String,
    params: Parameters,
    /// The identifier as serialized in the signature base, computed once.
    serialized: String,
    /// For header field components, the parsed field name, for lookups.
    field: Option<http::HeaderName>,
}

impl PartialEq for Component {
    fn eq(&self, other: &Self) -> bool {
        self.serialized == other.serialized
    }
}

impl Component {
    /// A component with no parameters: a derived component (`@method`) or a header field name.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the name is not lowercase, or not a valid sf-string.
    pub fn new(name: &str) -> Result<Self, Error> {
        Self::with_params(name, Parameters::new())
    }

    /// A header field component taken from one dictionary member (`;key="a"`).
    ///
    /// # Errors
    ///
    /// As [`Component::new`].
    pub fn dictionary_member(name: &str, key: &str) -> Result<Self, Error> {
        let mut params = Parameters::new();
        params.insert(key_of("key")?, string_item(key)?);
        Self::with_params(name, params)
    }

    /// `@query-param` for one named parameter.
    ///
    /// # Errors
    ///
    /// As [`Component::new`].
    pub fn query_param(name: &str) -> Result<Self, Error> {
        let mut params = Parameters::new();
        params.insert(key_of("name")?, string_item(name)?);
        Self::with_params("@query-param", params)
    }

    /// A component of the request a response answers (RFC 9421 §2.4): `"@method";req`, or a
    /// header field of the request such as `"content-digest";req`. Only a response signature
    /// can cover it, and only with that request at hand ([`ResponseView::with_request`]).
    ///
    /// [`ResponseView::with_request`]: crate::ResponseView::with_request
    ///
    /// ```
    /// use vouch_httpsig::Component;
    /// # fn main() -> Result<(), vouch_httpsig::Error> {
    /// assert_eq!(Component::of_request("@method")?.to_string(), r#""@method";req"#);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Component::new`].
    pub fn of_request(name: &str) -> Result<Self, Error> {
        let mut params = Parameters::new();
        params.insert(key_of("req")?, BareItem::Boolean(true));
        Self::with_params(name, params)
    }

    /// One dictionary member of a header field of the request a response answers:
    /// `"signature";req;key="sig1"` binds a response to the request's signature `sig1`.
    ///
    /// ```
    /// use vouch_httpsig::Component;
    /// # fn main() -> Result<(), vouch_httpsig::Error> {
    /// let c = Component::request_dictionary_member("signature", "sig1")?;
    /// assert_eq!(c.to_string(), r#""signature";req;key="sig1""#);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Component::new`].
    pub fn request_dictionary_member(name: &str, key: &str) -> Result<Self, Error> {
        let mut params = Parameters::new();
        params.insert(key_of("req")?, BareItem::Boolean(true));
        params.insert(key_of("key")?, string_item(key)?);
        Self::with_params(name, params)
    }

    /// Parses component identifiers written as in a `Signature-Input` inner list, without the
    /// parentheses: `"@method" "@query-param";name="Pet" "content-digest"`.
    ///
    /// ```
    /// use vouch_httpsig::Component;
    /// # fn main() -> Result<(), vouch_httpsig::Error> {
    /// let list = Component::parse_list(r#""@method" "@query-param";name="Pet""#)?;
    /// assert_eq!(list.len(), 2);
    /// assert_eq!(list[1].to_string(), r#""@query-param";name="Pet""#);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the text is not a list of quoted component names (with
    /// parameters), names a component twice, or names a parameter of a component twice.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, Error> {
        let wrapped = format!("({})", text.trim());
        let list = crate::sf::list(wrapped.as_bytes())
            .map_err(|_| Error::Malformed("components are not a list of quoted names"))?;
        if list.repeats.item_params {
            return Err(Error::Malformed("a component repeats a parameter"));
        }
        let [sfv::ListEntry::InnerList(inner)] = list.list.as_slice() else {
            return Err(Error::Malformed(
                "components are not a list of quoted names",
            ));
        };
        if !inner.params.is_empty() {
            return Err(Error::Malformed(
                "components are not a list of quoted names",
            ));
        }
        let mut out: Vec<Self> = Vec::with_capacity(inner.items.len());
        for item in &inner.items {
            let c = Self::from_item(item)?;
            if out.contains(&c) {
                return Err(Error::Malformed("a component is named twice"));
            }
            out.push(c);
        }
        Ok(out)
    }

    pub(crate) fn with_params(name: &str, params: Parameters) -> Result<Self, Error> {
        // Field names are tokens, derived names are `@` and a token: lowercase, and nothing
        // that a quoted sf-string would need to escape.
        let ok = |b: u8| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~@".contains(&b)
        };
        if name.is_empty() || !name.bytes().all(ok) {
            return Err(Error::Malformed(
                "component names are lowercase visible ASCII",
            ));
        }
        let mut serialized = String::with_capacity(name.len() + 2);
        serialized.push('"');
        serialized.push_str(name);
        serialized.push('"');
        write_params(&mut serialized, &params);
        let field = if name.starts_with('@') {
            None
        } else {
            Some(
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Error::Malformed("component is not a valid field name"))?,
            )
        };
        Ok(Self {
            name: name.to_owned(),
            params,
            serialized,
            field,
        })
    }

    /// Parses one item of a `Signature-Input` inner list.
    pub(crate) fn from_item(item: &Item) -> Result<Self, Error> {
        let BareItem::String(name) = &item.bare_item else {
            return Err(Error::Malformed("component identifier is not a string"));
        };
        Self::with_params(name.as_str(), item.params.clone())
    }

    /// The parsed field name of a header field component.
    pub(crate) fn field(&self) -> Option<&http::HeaderName> {
        self.field.as_ref()
    }

    /// The component name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for derived components (names starting with `@`).
    pub fn is_derived(&self) -> bool {
        self.name.starts_with('@')
    }

    pub(crate) fn params(&self) -> &Parameters {
        &self.params
    }

    /// A flag parameter such as `sf`, `bs`, `req` or `tr`.
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.params.get(name), Some(BareItem::Boolean(true)))
    }

    /// A string parameter such as `key` or `name`.
    pub(crate) fn string_param(&self, name: &str) -> Option<&str> {
        match self.params.get(name) {
            Some(BareItem::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The identifier as it appears in the signature base: `"name";param=value...`.
    pub(crate) fn serialized(&self) -> &str {
        &self.serialized
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialized)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Appends parameters as they follow an item: `;a=1;b="x";c` (RFC 9651 §4.1.1.2).
pub(crate) fn write_params(out: &mut String, params: &Parameters) {
    for (key, value) in params {
        out.push(';');
        out.push_str(key.as_str());
        match value {
            BareItem::Boolean(true) => {}
            BareItem::Integer(i) => {
                out.push('=');
                out.push_str(&i.to_string());
            }
            BareItem::String(s) => {
                out.push_str("=\"");
                for c in s.as_str().chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            BareItem::Token(t) => {
                out.push('=');
                out.push_str(t.as_str());
            }
            other => {
                // Rare types (decimal, byte sequence, false, date, display string): let sfv
                // serialize them.
                let item = Item::new(other.clone()).serialize();
                out.push('=');
                out.push_str(&item);
            }
        }
    }
}

pub(crate) fn key_of(k: &str) -> Result<Key, Error> {
    Key::from_string(k.to_owned()).map_err(|_| Error::Malformed("invalid structured field key"))
}

pub(crate) fn string_item(s: &str) -> Result<BareItem, Error> {
    sfv::String::from_string(s.to_owned())
        .map(BareItem::String)
        .map_err(|_| Error::Malformed("value is not a valid sf-string"))
}
