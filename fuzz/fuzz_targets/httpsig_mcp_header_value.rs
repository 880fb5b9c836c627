//! vouch-httpsig: MCP header values decode without panicking and round-trip through encoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vouch_httpsig::internal::fuzz_mcp_header_value(data);
});
