//! Pin store commands.

use std::path::Path;
use std::task::{Context, Poll, Waker};

use serde::Serialize;
use vouch_keys::{FilePinStore, PinStore as _};

use crate::failure::{Failure, Output};
use crate::input::json;

#[derive(Serialize)]
struct ResetOutput<'a> {
    identity: &'a str,
    was_pinned: bool,
}

pub(crate) fn reset(store: &Path, identity: &str) -> Output {
    // A path typo must not look like a successful reset of an empty store.
    if !store.is_file() {
        return Err(Failure::usage(format!(
            "{}: no such pin store file",
            store.display()
        )));
    }
    let pins = FilePinStore::open(store).map_err(Failure::usage)?;
    let mut pending = pins.reset(identity);
    // The file store does its work before it returns the future, which is therefore ready.
    let was_pinned = match pending
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result.map_err(Failure::usage)?,
        Poll::Pending => return Err(Failure::usage("the pin store did not answer")),
    };
    json(&ResetOutput {
        identity,
        was_pinned,
    })
}
