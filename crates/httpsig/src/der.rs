//! Just enough PEM and DER to take keys apart: SubjectPublicKeyInfo and PKCS#8.

use base64ct::{Base64, Encoding};

use crate::error::Error;

pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(crate) const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;

/// The label and DER bytes of the first PEM block in `text`.
pub(crate) fn pem(text: &str) -> Result<(String, Vec<u8>), Error> {
    let start = text.find("-----BEGIN ").ok_or(Error::Key("no PEM block"))?;
    let rest = text.get(start + 11..).ok_or(Error::Key("truncated PEM"))?;
    let (label, rest) = rest
        .split_once("-----")
        .ok_or(Error::Key("bad PEM header"))?;
    let end_marker = format!("-----END {label}-----");
    let end = rest
        .find(&end_marker)
        .ok_or(Error::Key("no PEM end line"))?;
    let body: String = rest
        .get(..end)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = Base64::decode_vec(&body).map_err(|_| Error::Key("bad base64 in PEM"))?;
    Ok((label.to_owned(), der))
}

/// A DER reader over one level of nesting.
pub(crate) struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next element: its tag and contents.
    pub(crate) fn next(&mut self) -> Result<(u8, &'a [u8]), Error> {
        let bad = Error::Key("bad DER");
        let (&tag, rest) = self.rest.split_first().ok_or(bad.clone())?;
        let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(bad);
            }
            let (len_bytes, after) = rest.split_at_checked(n).ok_or(bad.clone())?;
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (content, after) = rest.split_at_checked(len).ok_or(bad)?;
        self.rest = after;
        Ok((tag, content))
    }

    pub(crate) fn expect(&mut self, tag: u8) -> Result<&'a [u8], Error> {
        match self.next()? {
            (t, content) if t == tag => Ok(content),
            _ => Err(Error::Key("unexpected DER element")),
        }
    }
}

/// An algorithm identifier: the algorithm OID and, for EC keys, the curve OID.
pub(crate) struct AlgId<'a> {
    pub(crate) oid: &'a [u8],
    pub(crate) curve: Option<&'a [u8]>,
}

fn alg_id(bytes: &[u8]) -> Result<AlgId<'_>, Error> {
    let mut d = Der::new(bytes);
    let oid = d.expect(OID)?;
    let curve = match d.next() {
        Ok((OID, c)) => Some(c),
        _ => None,
    };
    Ok(AlgId { oid, curve })
}

/// SubjectPublicKeyInfo: the algorithm and the key bytes (the BIT STRING contents).
pub(crate) fn spki(der: &[u8]) -> Result<(AlgId<'_>, &[u8]), Error> {
    let mut outer = Der::new(der);
    let mut seq = Der::new(outer.expect(SEQUENCE)?);
    let alg = alg_id(seq.expect(SEQUENCE)?)?;
    let bits = seq.expect(BIT_STRING)?;
    match bits.split_first() {
        Some((0, key)) => Ok((alg, key)),
        _ => Err(Error::Key("public key bit string has unused bits")),
    }
}

/// PKCS#8 PrivateKeyInfo (v1 or v2): the algorithm and the privateKey OCTET STRING contents.
pub(crate) fn pkcs8(der: &[u8]) -> Result<(AlgId<'_>, &[u8]), Error> {
    let mut outer = Der::new(der);
    let mut seq = Der::new(outer.expect(SEQUENCE)?);
    let version = seq.expect(INTEGER)?;
    if version != [0] && version != [1] {
        return Err(Error::Key("unknown PKCS#8 version"));
    }
    let alg = alg_id(seq.expect(SEQUENCE)?)?;
    let key = seq.expect(OCTET_STRING)?;
    Ok((alg, key))
}
