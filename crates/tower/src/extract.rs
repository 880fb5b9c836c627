//! axum extractors.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::pipeline::{Rejection, VerifiedCaller};
use crate::response::rejection_response;

/// The rejection of the [`VerifiedCaller`] extractor when no signature layer ran: 401.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MissingCaller;

impl IntoResponse for MissingCaller {
    fn into_response(self) -> Response {
        rejection_response(
            &Rejection::Unauthorized {
                reason: "missing_signature",
            },
            "Signature",
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedCaller {
    type Rejection = MissingCaller;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MissingCaller)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
