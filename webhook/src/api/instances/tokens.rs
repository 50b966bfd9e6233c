//! `DELETE /instances/{id}` (the instance, its token and its last report are gone) and
//! `POST /instances/{id}/token` (a new token, shown once; the old one stops working), operator
//! role: `fleet::tokens`.

use super::{Deleted, Registered};
use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
    store::Via,
};
use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};

/// `DELETE /instances/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::InstanceId>,
) -> Result<Json<Deleted>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    Ok(Json(s.fleet.delete_instance(&caller, Via::Api, &id).await?))
}

/// `POST /instances/{id}/token`.
pub async fn rotate_token(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::InstanceId>,
) -> Result<Json<Registered>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    Ok(Json(
        s.fleet
            .rotate_instance_token(&caller, Via::Api, &id)
            .await?,
    ))
}
