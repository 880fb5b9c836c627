//! vouch-httpsig: content digest on arbitrary input must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vouch_httpsig::internal::fuzz_content_digest(data);
});
