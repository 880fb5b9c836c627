//! Trust on first use: the key an identity first proved, pinned until an operator resets it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::store::{StoreError, StoreFuture, ready};

/// What a successful [`PinStore::check_and_pin`] found.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// The identity had no pin; this key is now pinned.
    New,
    /// The identity was already pinned to this key.
    Matched,
}

/// A pin store: identity → fingerprint of the key it is pinned to.
///
/// Pin only after the signature verified **and** the allowlist admitted the caller, never before:
/// a pin made earlier lets an attacker who names a victim's identity lock the victim out.
pub trait PinStore: Send + Sync {
    /// The fingerprint an identity is pinned to, if any.
    fn get(&self, identity: &str) -> StoreFuture<'_, Option<String>>;

    /// Atomically: pins `fingerprint` if the identity has no pin, accepts it if it is the pinned
    /// one, refuses it ([`StoreError::PinMismatch`]) if another key is pinned.
    fn check_and_pin(&self, identity: &str, fingerprint: &str) -> StoreFuture<'_, Pinned>;

    /// Removes an identity's pin (an operator action). Returns whether there was one.
    fn reset(&self, identity: &str) -> StoreFuture<'_, bool>;
}

fn decide(
    map: &mut BTreeMap<String, String>,
    identity: &str,
    fingerprint: &str,
) -> Result<Pinned, StoreError> {
    match map.get(identity) {
        Some(pinned) if pinned == fingerprint => Ok(Pinned::Matched),
        Some(_) => Err(StoreError::PinMismatch {
            identity: identity.to_owned(),
        }),
        None => {
            map.insert(identity.to_owned(), fingerprint.to_owned());
            Ok(Pinned::New)
        }
    }
}

/// Pins kept in memory, bounded: when `capacity` identities are pinned, new identities are
/// refused ([`StoreError::Unavailable`]) rather than evicting a pin.
#[derive(Debug)]
pub struct MemoryPinStore {
    capacity: usize,
    pins: Mutex<BTreeMap<String, String>>,
}

impl MemoryPinStore {
    /// A store for at most `capacity` identities.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            pins: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<String, String>>, StoreError> {
        self.pins
            .lock()
            .map_err(|_| StoreError::Unavailable("pin store lock poisoned".into()))
    }
}

impl PinStore for MemoryPinStore {
    fn get(&self, identity: &str) -> StoreFuture<'_, Option<String>> {
        ready(self.lock().map(|m| m.get(identity).cloned()))
    }

    fn check_and_pin(&self, identity: &str, fingerprint: &str) -> StoreFuture<'_, Pinned> {
        ready(self.lock().and_then(|mut m| {
            if !m.contains_key(identity) && m.len() >= self.capacity {
                return Err(StoreError::Unavailable("pin store full".into()));
            }
            decide(&mut m, identity, fingerprint)
        }))
    }

    fn reset(&self, identity: &str) -> StoreFuture<'_, bool> {
        ready(self.lock().map(|mut m| m.remove(identity).is_some()))
    }
}

/// Pins kept in a JSON file, durable across restarts: every change is written to a temporary
/// file, synced, and renamed over the old one, so the file is always either the old or the new
/// version. Writers in one process are serialized. A corrupt file is an error that names the
/// file, never a silent reset.
#[derive(Debug)]
pub struct FilePinStore {
    path: PathBuf,
    pins: Mutex<BTreeMap<String, String>>,
}

impl FilePinStore {
    /// Opens (or, if absent, starts) the pin file at `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the file is not a JSON object of strings,
    /// [`StoreError::Unavailable`] if it cannot be read.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let pins = read_pins(&path)?;
        Ok(Self {
            path,
            pins: Mutex::new(pins),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let mut pins = self
            .pins
            .lock()
            .map_err(|_| StoreError::Unavailable("pin store lock poisoned".into()))?;
        let mut next = pins.clone();
        let (out, changed) = f(&mut next)?;
        if changed {
            write_pins(&self.path, &next)?;
            *pins = next;
        }
        Ok(out)
    }
}

fn read_pins(path: &Path) -> Result<BTreeMap<String, String>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
    };
    serde_json::from_str(&text).map_err(|e| {
        StoreError::Corrupt(format!(
            "{}: not a JSON object of identity to key fingerprint: {e}",
            path.display()
        ))
    })
}

fn write_pins(path: &Path, pins: &BTreeMap<String, String>) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let text =
        serde_json::to_string_pretty(pins).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("pins".into(), |n| n.to_string_lossy())
    ));
    {
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl PinStore for FilePinStore {
    fn get(&self, identity: &str) -> StoreFuture<'_, Option<String>> {
        ready(
            self.pins
                .lock()
                .map_err(|_| StoreError::Unavailable("pin store lock poisoned".into()))
                .map(|m| m.get(identity).cloned()),
        )
    }

    fn check_and_pin(&self, identity: &str, fingerprint: &str) -> StoreFuture<'_, Pinned> {
        ready(self.update(|m| {
            let outcome = decide(m, identity, fingerprint)?;
            Ok((outcome, outcome == Pinned::New))
        }))
    }

    fn reset(&self, identity: &str) -> StoreFuture<'_, bool> {
        ready(self.update(|m| {
            let had = m.remove(identity).is_some();
            Ok((had, had))
        }))
    }
}

/// Why [`verify_and_pin`] refused a request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheckError {
    /// The signature did not verify: nothing was pinned.
    Signature(vouch_httpsig::Error),
    /// The allowlist refused the caller: nothing was pinned.
    NotAdmitted,
    /// The pin store refused (another key pinned) or failed (fail closed).
    Pin(StoreError),
}

impl core::fmt::Display for PinCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Signature(e) => write!(f, "signature: {e}"),
            Self::NotAdmitted => f.write_str("caller not admitted"),
            Self::Pin(e) => write!(f, "pin: {e}"),
        }
    }
}

impl std::error::Error for PinCheckError {}

/// The order that keeps pinning safe: verify the signature with the resolved key, then ask the
/// allowlist (`admit`), and only then pin the key for `identity`. A forged request, or a caller
/// the allowlist refuses, never creates a pin (so naming a victim's identity first cannot lock
/// the victim out).
///
/// # Errors
///
/// [`PinCheckError`] saying which step refused.
pub async fn verify_and_pin(
    prepared: vouch_httpsig::Prepared,
    key: &crate::resolve::ResolvedKey,
    identity: &str,
    admit: impl FnOnce(&vouch_httpsig::Verified) -> bool,
    pins: &dyn PinStore,
) -> Result<(vouch_httpsig::Verified, Pinned), PinCheckError> {
    let verified = prepared
        .verify(key.key())
        .map_err(PinCheckError::Signature)?;
    if !admit(&verified) {
        return Err(PinCheckError::NotAdmitted);
    }
    let pinned = pins
        .check_and_pin(identity, key.fingerprint())
        .await
        .map_err(PinCheckError::Pin)?;
    Ok((verified, pinned))
}
