//! `GET /api/v1/packages/{name}` (read role): `fleet::packages`, which instances run a
//! Debian package, at which versions, per module.

use crate::http::extract as body;
use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
};
use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};

pub use crate::fleet::packages::{PackageInstance, PackageInstances, PackageQuery};

pub async fn instances(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body::Query(q): body::Query<PackageQuery>,
) -> Result<Json<PackageInstances>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(s.fleet.package_instances(name, q?).await?))
}
