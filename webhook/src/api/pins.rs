//! First-use pins: `GET /api/v1/pins` (read) lists every pin and proposal;
//! `POST /api/v1/pins/{module}/confirm` and `…/reject` (operator) decide a proposal
//! (`catalogue::pins`).

use crate::{
    catalogue::pins,
    config::Role,
    http::{ApiError, AppState, auth::require},
    store::{PinState, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};

pub use pins::{PinDecided, Pins};

pub async fn list(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Pins>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(pins::list(&s.store).await?))
}

/// `POST /pins/{module}/confirm`.
pub async fn confirm(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(module): Path<String>,
) -> Result<Json<PinDecided>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let d = pins::decide(&s.store, &caller, Via::Api, module, PinState::Confirmed).await?;
    Ok(Json(d))
}

/// `POST /pins/{module}/reject`.
pub async fn reject(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(module): Path<String>,
) -> Result<Json<PinDecided>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let d = pins::decide(&s.store, &caller, Via::Api, module, PinState::Rejected).await?;
    Ok(Json(d))
}
