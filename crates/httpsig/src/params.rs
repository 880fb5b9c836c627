//! Signature-Input / Signature parsing, and the typed view of signature parameters.

use std::borrow::Cow;

use sfv::{BareItem, Dictionary, Item, ListEntry, Parameters};

use crate::alg::Algorithm;
use crate::base::signature_params_value;
use crate::component::{Component, key_of, string_item};
use crate::error::Error;
use crate::policy::{SIGNATURE, SIGNATURE_INPUT};
use crate::sf;

/// One signature found in a message: its label, covered components, parameters exactly as
/// received, and the decoded signature bytes.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) label: String,
    pub(crate) components: Vec<Component>,
    pub(crate) params: Params,
    /// The `@signature-params` value: the inner list re-serialized, order and unknown parameters
    /// kept.
    pub(crate) params_value: String,
    pub(crate) signature: Vec<u8>,
}

/// The typed parameters of one signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Params {
    /// `created`, Unix seconds.
    pub created: Option<u64>,
    /// `expires`, Unix seconds.
    pub expires: Option<u64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `alg`, as received.
    pub alg: Option<String>,
    /// `keyid`.
    pub keyid: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
}

impl Params {
    fn from_sfv(p: &Parameters) -> Result<Self, Error> {
        let int = |k: &'static str| -> Result<Option<u64>, Error> {
            match p.get(k) {
                None => Ok(None),
                Some(BareItem::Integer(i)) => u64::try_from(i64::from(*i))
                    .map(Some)
                    .map_err(|_| Error::Malformed("negative time parameter")),
                Some(_) => Err(Error::Malformed("time parameter is not an integer")),
            }
        };
        let string = |k: &'static str| -> Result<Option<String>, Error> {
            match p.get(k) {
                None => Ok(None),
                Some(BareItem::String(s)) => Ok(Some(s.as_str().to_owned())),
                Some(_) => Err(Error::Malformed("string parameter is not a string")),
            }
        };
        Ok(Self {
            created: int("created")?,
            expires: int("expires")?,
            nonce: string("nonce")?,
            alg: string("alg")?,
            keyid: string("keyid")?,
            tag: string("tag")?,
        })
    }

    /// The `alg` parameter as an algorithm, if present.
    ///
    /// # Errors
    ///
    /// [`Error::AlgorithmNotAllowed`] for a name this crate does not know.
    pub fn algorithm(&self) -> Result<Option<Algorithm>, Error> {
        self.alg
            .as_deref()
            .map(|a| {
                Algorithm::from_name(a).ok_or_else(|| Error::AlgorithmNotAllowed(a.to_owned()))
            })
            .transpose()
    }
}

/// Limits on what is parsed at all.
pub(crate) struct ParseLimits {
    pub(crate) max_header_bytes: usize,
    pub(crate) max_signatures: usize,
}

/// The field lines of `name` combined into one value (joined with ", ", RFC 9110 §5.3), or
/// `None` if the message has none. One line is borrowed as is; the size is checked as lines are
/// added.
pub(crate) fn combined<'h>(
    headers: &'h http::HeaderMap,
    name: &http::HeaderName,
    max: usize,
) -> Result<Option<Cow<'h, [u8]>>, Error> {
    let mut lines = headers.get_all(name).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    if first.len() > max {
        return Err(Error::HeaderTooLarge);
    }
    let Some(second) = lines.next() else {
        return Ok(Some(Cow::Borrowed(first.as_bytes())));
    };
    let mut out: Vec<u8> = first.as_bytes().to_vec();
    for v in core::iter::once(second).chain(lines) {
        out.extend_from_slice(b", ");
        out.extend_from_slice(v.as_bytes());
        if out.len() > max {
            return Err(Error::HeaderTooLarge);
        }
    }
    Ok(Some(Cow::Owned(out)))
}

/// Why a dictionary field value was refused by [`unique_dictionary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DictionaryError {
    /// Not an RFC 9651 dictionary.
    Syntax,
    /// Well-formed, but some member name appears more than once.
    RepeatedKey,
}

/// Parses a dictionary field value, refusing any member name that appears twice.
///
/// RFC 9651 resolves a repeated name by keeping the last value, and [`Dictionary`] silently does
/// so. For fields a signature vouches for that is an ambiguity: a signer (or an intermediary)
/// that reads the first value and a verifier that reads the last one disagree on what was
/// signed. A field combined from several lines (see [`combined`]) is one dictionary, so this
/// also catches a name repeated across lines. Repeated parameter names are not looked at.
pub(crate) fn unique_dictionary(bytes: &[u8]) -> Result<Dictionary, DictionaryError> {
    let parsed = sf::dictionary(bytes).map_err(|_| DictionaryError::Syntax)?;
    if parsed.repeats().name {
        return Err(DictionaryError::RepeatedKey);
    }
    Ok(parsed.dict)
}

/// Every signature in the message, in Signature-Input order.
///
/// A label named twice in `Signature-Input` or in `Signature` (within a line or across lines),
/// and a parameter named twice in a `Signature-Input` member (a signature parameter, or a
/// parameter of a component identifier), are refused, whether or not the label is the one the
/// policy looks for: keeping the last one would sign what a first-wins reader does not see.
pub(crate) fn received(
    headers: &http::HeaderMap,
    limits: &ParseLimits,
) -> Result<Vec<Received>, Error> {
    let (Some(input), Some(sigs)) = (
        combined(headers, &SIGNATURE_INPUT, limits.max_header_bytes)?,
        combined(headers, &SIGNATURE, limits.max_header_bytes)?,
    ) else {
        return Err(Error::NoSignature);
    };
    let input = sf::dictionary(&input)
        .map_err(|_| Error::Malformed("signature-input is not a structured dictionary"))?;
    let repeats = input.repeats();
    if repeats.name {
        return Err(Error::Malformed("signature-input names a label twice"));
    }
    if repeats.params {
        return Err(Error::Malformed(
            "signature-input repeats a signature parameter",
        ));
    }
    if repeats.item_params {
        return Err(Error::Malformed(
            "signature-input repeats a component parameter",
        ));
    }
    let input = input.dict;
    let sigs = unique_dictionary(&sigs).map_err(|e| match e {
        DictionaryError::Syntax => Error::Malformed("signature is not a structured dictionary"),
        DictionaryError::RepeatedKey => Error::Malformed("signature names a label twice"),
    })?;
    if input.len() > limits.max_signatures || sigs.len() > limits.max_signatures {
        return Err(Error::TooManySignatures);
    }
    let mut out = Vec::with_capacity(input.len());
    for (label, entry) in &input {
        let ListEntry::InnerList(list) = entry else {
            return Err(Error::Malformed(
                "signature-input member is not an inner list",
            ));
        };
        let signature = match sigs.get(label) {
            Some(ListEntry::Item(Item {
                bare_item: BareItem::ByteSequence(b),
                ..
            })) => b.clone(),
            Some(_) => return Err(Error::Malformed("signature member is not a byte sequence")),
            None => continue,
        };
        let components = list
            .items
            .iter()
            .map(Component::from_item)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Received {
            label: label.as_str().to_owned(),
            params_value: signature_params_value(&components, &list.params),
            components,
            params: Params::from_sfv(&list.params)?,
            signature,
        });
    }
    if out.is_empty() {
        return Err(Error::NoSignature);
    }
    Ok(out)
}

/// Serializes the covered components and parameters (in the given order) for signing.
pub(crate) fn params_value(
    components: &[Component],
    params: &[(&'static str, ParamValue)],
) -> Result<String, Error> {
    let mut p = Parameters::new();
    for (name, value) in params {
        let bare = match value {
            ParamValue::Int(i) => BareItem::Integer(
                sfv::Integer::try_from(*i).map_err(|_| Error::Malformed("time out of range"))?,
            ),
            ParamValue::Str(s) => string_item(s)?,
            ParamValue::True => BareItem::Boolean(true),
        };
        p.insert(key_of(name)?, bare);
    }
    Ok(signature_params_value(components, &p))
}

/// A parameter value to sign.
#[derive(Debug, Clone)]
pub(crate) enum ParamValue {
    Int(u64),
    Str(String),
    /// A bare parameter (`;created`), as `Accept-Signature` requests one.
    True,
}
