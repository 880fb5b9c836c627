//! Fixtures every test file shares.

use vouch_token::KeyPair;

/// The current Unix time in seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The token root key of most tests.
pub(crate) fn root() -> KeyPair {
    KeyPair::from_seed(&[11; 32]).unwrap()
}
