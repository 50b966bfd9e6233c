//! `POST /api/v1/validate {manifest_yaml, category_slug, template_id?}` → `{valid, warnings,
//! conflicts, errors}`: `fleet::validate` (the walkthrough's `system_validate_module_manifest`).

use crate::http::extract as body;
use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
};
use axum::{Json, extract::State, http::HeaderMap};
use powernode_module::diagnostics::Report;

pub use crate::fleet::validate::ValidateBody;

pub async fn validate(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Json(b): body::Json<ValidateBody>,
) -> Result<Json<Report>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(s.fleet.validate(b?).await?))
}
