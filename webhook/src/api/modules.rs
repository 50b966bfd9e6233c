//! `GET /api/v1/modules`: the modules with versions, and how many each has.

use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
};
use axum::{Json, extract::State, http::HeaderMap};
use serde::Serialize;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Module {
    pub name: String,
    pub repository: String,
    pub versions: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Modules {
    pub modules: Vec<Module>,
}

pub async fn list(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Modules>, ApiError> {
    require(&s, &h, Role::Read)?;
    let modules = s
        .store
        .modules()
        .await?
        .into_iter()
        .map(|(name, repository, versions)| Module {
            name,
            repository,
            versions,
        })
        .collect();
    Ok(Json(Modules { modules }))
}
