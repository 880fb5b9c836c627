//! Shared fixtures: fixed keys and the MCP-shaped reference token.

use vouch_token::{KeyPair, Restriction, Token};

/// A fixed point in time for tests: 2023-11-14T22:13:20Z.
pub(crate) const NOW: u64 = 1_700_000_000;

pub(crate) fn key(byte: u8) -> KeyPair {
    KeyPair::from_seed(&[byte; 32]).unwrap()
}

/// The reference root rights: db_query (read, write; max_rows 100), file_read (read), search.
pub(crate) fn reference_root() -> Restriction {
    Restriction::new()
        .tools(["db_query", "file_read", "search"])
        .operations("db_query", ["read", "write"])
        .operations("file_read", ["read"])
        .limit("db_query", "max_rows", 100)
        .ttl(3600)
}

pub(crate) fn mint(root: &KeyPair, r: Restriction) -> Token {
    Token::mint_at(root, "auth-server", "agent-a", r, NOW).unwrap()
}

/// Flips one bit of `bytes` at `index`.
pub(crate) fn flip(bytes: &[u8], index: usize, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 1 << (bit % 8);
    out
}
