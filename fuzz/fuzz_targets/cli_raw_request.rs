//! vouch-cli: a raw request file either is refused or parses and writes back unchanged.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vouch_cli::internal::fuzz_raw_request(data);
});
