//! Strict decoding of arbitrary bytes: no panic, and whatever decodes re-encodes identically.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vouch_token::internal::fuzz_decode(data));
