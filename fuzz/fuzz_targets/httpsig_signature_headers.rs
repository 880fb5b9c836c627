//! vouch-httpsig: signature headers on arbitrary input must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vouch_httpsig::internal::fuzz_signature_headers(data);
});
