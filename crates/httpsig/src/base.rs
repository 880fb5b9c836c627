//! The signature base, exactly per RFC 9421 §2.5.

use base64ct::{Base64, Encoding};
use sfv::{FieldType as _, List};

use crate::component::Component;
use crate::error::Error;
use crate::message::{Message, RequestView};
use crate::sf::CheckedDictionary;

/// Field names whose structured type is known, for `;sf` and `;key`.
const DICTIONARY_FIELDS: &[&str] = &[
    "accept-signature",
    "cache-status",
    "content-digest",
    "example-dict",
    "priority",
    "repr-digest",
    "signature",
    "signature-input",
    "want-content-digest",
    "want-repr-digest",
];
const LIST_FIELDS: &[&str] = &["accept-ch", "example-list", "proxy-status"];

/// Builds the signature base for `components` over `message`, ending with the
/// `@signature-params` line whose value is `params_value`.
pub(crate) fn signature_base(
    message: &Message<'_>,
    components: &[Component],
    params_value: &str,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    for (i, c) in components.iter().enumerate() {
        if components.get(..i).is_some_and(|before| before.contains(c)) {
            return Err(Error::Malformed("component listed twice"));
        }
        let id = c.serialized().as_bytes();
        let line = |out: &mut Vec<u8>, value: &[u8]| {
            out.extend_from_slice(id);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.push(b'\n');
        };
        // The common, single-valued cases write straight into the base.
        if !c.is_derived() && c.params().is_empty() {
            line(&mut out, &plain_field(message, c)?);
            continue;
        }
        for value in component_values(message, c)? {
            line(&mut out, &value);
        }
    }
    out.extend_from_slice(b"\"@signature-params\": ");
    out.extend_from_slice(params_value.as_bytes());
    Ok(out)
}

/// The value(s) of one component; `@query-param` can produce several lines.
fn component_values(message: &Message<'_>, c: &Component) -> Result<Vec<Vec<u8>>, Error> {
    if c.flag("tr") {
        return Err(Error::Unsupported("trailer fields (;tr)"));
    }
    let target: Message<'_> = if c.flag("req") {
        match message {
            Message::Response(r) => Message::Request(
                r.request
                    .ok_or(Error::Unsupported(";req without the related request"))?,
            ),
            Message::Request(_) => return Err(Error::Malformed(";req on a request")),
        }
    } else {
        *message
    };
    if c.is_derived() {
        derived(&target, c)
    } else {
        header_field(&target, c).map(|v| vec![v])
    }
}

fn request<'m, 'a>(m: &'m Message<'a>, name: &str) -> Result<&'m RequestView<'a>, Error> {
    match m {
        Message::Request(r) => Ok(r),
        Message::Response(_) => Err(Error::ComponentUnavailable(name.to_owned())),
    }
}

fn derived(m: &Message<'_>, c: &Component) -> Result<Vec<Vec<u8>>, Error> {
    let name = c.name();
    let unavailable = || Error::ComponentUnavailable(name.to_owned());
    let value = match name {
        "@method" => request(m, name)?.method.as_str().to_owned(),
        "@target-uri" => {
            let r = request(m, name)?;
            let scheme = r.scheme().ok_or_else(unavailable)?;
            let authority = r.authority().ok_or_else(unavailable)?;
            format!("{scheme}://{authority}{}", request_target(r))
        }
        "@authority" => request(m, name)?.authority().ok_or_else(unavailable)?,
        "@scheme" => request(m, name)?.scheme().ok_or_else(unavailable)?,
        "@request-target" => request_target(request(m, name)?),
        "@path" => request(m, name)?.path().to_owned(),
        "@query" => format!("?{}", request(m, name)?.uri.query().unwrap_or("")),
        "@query-param" => {
            let wanted = c
                .string_param("name")
                .ok_or(Error::Malformed("@query-param without a name"))?;
            let wanted = form_encode(&percent_decode(wanted));
            let query = request(m, name)?.uri.query().unwrap_or("");
            let values: Vec<Vec<u8>> = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (form_encode(&percent_decode(k)) == wanted)
                        .then(|| form_encode(&percent_decode(v)).into_bytes())
                })
                .collect();
            if values.is_empty() {
                return Err(unavailable());
            }
            return Ok(values);
        }
        "@status" => match m {
            Message::Response(r) => r.status.as_str().to_owned(),
            Message::Request(_) => return Err(unavailable()),
        },
        "@signature-params" => return Err(Error::Malformed("@signature-params cannot be covered")),
        _ => return Err(Error::Unsupported("unknown derived component")),
    };
    if !c.params().is_empty() && name != "@query-param" && !(c.params().len() == 1 && c.flag("req"))
    {
        return Err(Error::Malformed(
            "parameters on a derived component that takes none",
        ));
    }
    Ok(vec![value.into_bytes()])
}

fn request_target(r: &RequestView<'_>) -> String {
    match r.uri.path_and_query() {
        Some(pq) if pq.as_str() == "*" => "*".to_owned(),
        Some(pq) if !pq.as_str().is_empty() && pq.as_str().starts_with('/') => {
            pq.as_str().to_owned()
        }
        Some(pq) => format!("/{}", pq.as_str()),
        None => "/".to_owned(),
    }
}

fn header_field(m: &Message<'_>, c: &Component) -> Result<Vec<u8>, Error> {
    let name = c.name();
    let field = c
        .field()
        .ok_or(Error::Malformed("derived component used as a field"))?;
    let lines: Vec<&[u8]> = m
        .headers()
        .get_all(field)
        .iter()
        .map(|v| trim_ows(v.as_bytes()))
        .collect();
    if lines.is_empty() {
        return Err(Error::ComponentUnavailable(name.to_owned()));
    }
    let (sf, bs, key) = (c.flag("sf"), c.flag("bs"), c.string_param("key"));
    if bs && (sf || key.is_some()) {
        return Err(Error::Malformed(";bs cannot be combined with ;sf or ;key"));
    }
    if bs {
        let wrapped: Vec<String> = lines
            .iter()
            .map(|l| format!(":{}:", Base64::encode_string(l)))
            .collect();
        return Ok(wrapped.join(", ").into_bytes());
    }
    let combined = lines.join(&b", "[..]);
    if let Some(key) = key {
        let dict = parse_dictionary(&combined)?;
        let repeats = dict.repeats_of(key);
        if repeats.name {
            return Err(Error::Malformed(
                "field names the covered dictionary member twice",
            ));
        }
        if repeats.any_param() {
            return Err(Error::Malformed(
                "covered dictionary member repeats a parameter",
            ));
        }
        let member = dict
            .dict
            .get(key)
            .ok_or_else(|| Error::ComponentUnavailable(format!("{name};key={key:?}")))?;
        let single: List = vec![member.clone()];
        return single
            .serialize()
            .map(String::into_bytes)
            .ok_or(Error::Malformed("empty dictionary member"));
    }
    if sf {
        let text = if DICTIONARY_FIELDS.contains(&name) {
            let dict = parse_dictionary(&combined)?;
            let repeats = dict.repeats();
            if repeats.name {
                return Err(Error::Malformed("dictionary field names a member twice"));
            }
            if repeats.any_param() {
                return Err(Error::Malformed("structured field repeats a parameter"));
            }
            dict.dict.serialize()
        } else if LIST_FIELDS.contains(&name) {
            let list = crate::sf::list(&combined)
                .map_err(|_| Error::Malformed("field is not a structured list"))?;
            if list.repeats.any_param() {
                return Err(Error::Malformed("structured field repeats a parameter"));
            }
            list.list.serialize()
        } else {
            return Err(Error::Unsupported(
                ";sf on a field of unknown structured type",
            ));
        };
        return Ok(text.unwrap_or_default().into_bytes());
    }
    Ok(combined)
}

/// A header field without parameters: its lines, trimmed, joined with ", ".
fn plain_field(m: &Message<'_>, c: &Component) -> Result<Vec<u8>, Error> {
    let field = c
        .field()
        .ok_or(Error::Malformed("derived component used as a field"))?;
    let mut values = m.headers().get_all(field).iter();
    let first = values
        .next()
        .ok_or_else(|| Error::ComponentUnavailable(c.name().to_owned()))?;
    let mut out = trim_ows(first.as_bytes()).to_vec();
    for v in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(trim_ows(v.as_bytes()));
    }
    Ok(out)
}

/// Parses a dictionary field for `;key` or `;sf`. Repeated names are reported, not resolved:
/// the base holds a re-serialized value that shows only the last of them, while a reader of the
/// field as sent may take the first, so the callers refuse those that the signature covers.
fn parse_dictionary(bytes: &[u8]) -> Result<CheckedDictionary, Error> {
    crate::sf::dictionary(bytes)
        .map_err(|_| Error::Malformed("field is not a structured dictionary"))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

/// Percent-decoding as the WHATWG `application/x-www-form-urlencoded` parser does it (`+` is a
/// space; a malformed escape is kept as is).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| core::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Re-encodes a decoded query name or value as RFC 9421 §2.2.8 shows: every byte outside
/// `*-._`, digits and letters becomes `%XX`, a space included (`with+plus` → `with%20plus`).
fn form_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'*' | b'-' | b'.' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `@signature-params` value: the inner list of identifiers and its parameters, in order.
pub(crate) fn signature_params_value(components: &[Component], params: &sfv::Parameters) -> String {
    let mut out = String::with_capacity(64 + 24 * components.len());
    out.push('(');
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(c.serialized());
    }
    out.push(')');
    crate::component::write_params(&mut out, params);
    out
}
