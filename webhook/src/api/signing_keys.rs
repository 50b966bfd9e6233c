//! `GET /api/v1/signing-keys`: every key the receiver signs desired states with, by key id
//! (the current one, and the next during a rotation). Public, like `/signing-key`: it is
//! what a node needs to verify states, and what an operator distributes during a rotation.

use crate::http::AppState;
use axum::{Json, extract::State};
use serde::Serialize;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SigningKeys {
    /// The current key first; every served state carries a signature by each of them.
    pub keys: Vec<SigningKey>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SigningKey {
    /// `sha256:…`: what the envelope's signatures name (`signatures[].keyid`).
    pub keyid: String,
    /// `current` (`[fleet] signing_key`) or `next` (`[fleet] next_signing_key`).
    pub role: KeyRole,
    /// The public key, PEM.
    pub public_key: String,
}

#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Current,
    Next,
}

pub async fn list(State(s): State<AppState>) -> Json<SigningKeys> {
    let k = &s.fleet.keys;
    let key = |k: &crate::fleet::key::ReceiverKey, role| SigningKey {
        keyid: k.keyid.clone(),
        role,
        public_key: k.public_pem.clone(),
    };
    let mut keys = vec![key(&k.current, KeyRole::Current)];
    keys.extend(k.next.as_ref().map(|n| key(n, KeyRole::Next)));
    Json(SigningKeys { keys })
}
