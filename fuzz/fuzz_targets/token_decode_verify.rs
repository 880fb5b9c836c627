//! Decoding then verifying arbitrary bytes against a fixed root key: no panic on any input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vouch_token::internal::fuzz_decode_verify(data);
});
