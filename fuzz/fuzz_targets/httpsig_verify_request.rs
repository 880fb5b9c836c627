//! vouch-httpsig: verify request on arbitrary input must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vouch_httpsig::internal::fuzz_verify_request(data);
});
