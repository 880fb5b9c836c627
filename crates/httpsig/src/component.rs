//! Component identifiers: `"@method"`, `"content-digest"`, `"@query-param";name="Pet"`, ...

use core::fmt;

use sfv::{BareItem, FieldType as _, Item, Key, Parameters};

use crate::error::Error;

/// One covered component: a name and its parameters, in the order received.
///
/// Parameters are kept exactly as parsed (an ordered map), so that the identifier serializes back
/// to the same text in the signature base.
#[derive(Clone, PartialEq)]
pub struct Component {
    name: String,
    params: Parameters,
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

    pub(crate) fn with_params(name: &str, params: Parameters) -> Result<Self, Error> {
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_uppercase() || !(0x20..0x7f).contains(&b))
        {
            return Err(Error::Malformed(
                "component names are lowercase visible ASCII",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            params,
        })
    }

    /// Parses one item of a `Signature-Input` inner list.
    pub(crate) fn from_item(item: &Item) -> Result<Self, Error> {
        let BareItem::String(name) = &item.bare_item else {
            return Err(Error::Malformed("component identifier is not a string"));
        };
        Self::with_params(name.as_str(), item.params.clone())
    }

    pub(crate) fn to_item(&self) -> Result<Item, Error> {
        Ok(Item::with_params(
            string_item(&self.name)?,
            self.params.clone(),
        ))
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
    pub(crate) fn serialized(&self) -> Result<String, Error> {
        Ok(self.to_item()?.serialize())
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.serialized() {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{:?}", self.name),
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
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
