//! Trust on first use inside ingest: which signature is accepted under a module's pin, and
//! what happens with no pin yet. With `trust_on_first_use = true` the first identity becomes
//! the pin at once; with `"confirm"` it is recorded as *proposed* and every version signed by
//! it waits in `pending_signature` (no timeout) until an operator confirms the proposal (the
//! versions are then re-ingested through the job queue) or rejects it (they are rejected as
//! `pin_rejected`). The pure rules are in [`super::tofu`]; the pins in `store::pins`.

use super::{Ctx, Outcome, Rejection, tofu};
use crate::catalogue::ModuleTrust;
use crate::{
    config::TrustOnFirstUse,
    error::Error,
    store::{AuditAction, Lifecycle, NewAudit, Pin, PinState, VersionRow, Via},
};
use powernode_module::trust::verify::Verified;
use serde_json::json;

/// The signature accepted for a version, and the first-use pin it would establish.
pub(super) enum Signer {
    Accepted(Verified),
    /// No pin yet: this signature may establish (or propose) `Pin`, once the content holds.
    FirstUse(Verified, Pin),
}

impl Signer {
    pub(super) fn verified(&self) -> &Verified {
        match self {
            Signer::Accepted(v) | Signer::FirstUse(v, _) => v,
        }
    }
}

/// Why ingest stops before writing a draft.
pub(super) enum Stop {
    /// Signed by a proposed pin: wait for the operator.
    Hold(Box<Pin>),
    Reject(Rejection),
}

fn proposed(pin: &Pin) -> String {
    format!(
        "{} (pattern {}, issuer {})",
        pin.identity, pin.identity_pattern, pin.issuer
    )
}

/// `verified` under `pin`, by the pin's state.
fn against(pin: &Pin, verified: &[Verified]) -> Result<Verified, Stop> {
    let matched = tofu::under_pin(pin, verified);
    match (pin.state, matched) {
        (PinState::Confirmed, m) => m.map_err(Stop::Reject),
        (PinState::Proposed, Ok(_)) => Err(Stop::Hold(Box::new(pin.clone()))),
        (PinState::Proposed, Err(_)) => Err(Stop::Reject(Rejection::SignerNotPinned(format!(
            "no signature by the identity proposed on first use, {}, which waits for an operator's confirmation",
            proposed(pin)
        )))),
        (PinState::Rejected, Ok(_)) => Err(Stop::Reject(Rejection::PinRejected(format!(
            "signed by {}, which an operator ({}) rejected as this module's first-use pin; sign with another workflow of the repository or pin identity_regexp in the configuration",
            proposed(pin),
            pin.decided_by.as_deref().unwrap_or("unknown"),
        )))),
        (PinState::Rejected, Err(r)) => Err(Stop::Reject(r)),
    }
}

impl Ctx {
    /// Chooses the accepted signature. Under trust on first use: the one matching the pin,
    /// or, with no pin yet (or a rejected one none of the signatures matches), the one
    /// signature that may establish it (and the pin it would).
    pub(super) async fn pick_signer(
        &self,
        trust: &ModuleTrust,
        verified: &[Verified],
        version_id: &str,
        manifest_digest: &str,
    ) -> Result<Result<Signer, Stop>, Error> {
        if !(trust.trust_on_first_use.is_on() && trust.identity_regexp.is_none()) {
            return Ok(Ok(Signer::Accepted(verified[0].clone())));
        }
        let pin = self.store.pin(&trust.name).await?;
        if let Some(pin) =
            pin.filter(|p| p.state != PinState::Rejected || tofu::under_pin(p, verified).is_ok())
        {
            return Ok(against(&pin, verified).map(Signer::Accepted));
        }
        Ok(
            tofu::first_use(verified, &trust.gitea_repository, version_id)
                .map(|(v, mut pin)| {
                    pin.manifest_digest = Some(manifest_digest.to_owned());
                    if trust.trust_on_first_use == TrustOnFirstUse::Confirm {
                        pin.state = PinState::Proposed;
                    }
                    Signer::FirstUse(v, pin)
                })
                .map_err(Stop::Reject),
        )
    }

    /// Claims the first-use pin (or proposal) atomically once everything else holds: the
    /// loser of a race is verified against the winner's.
    pub(super) async fn settle_pin(
        &self,
        trust: &ModuleTrust,
        candidate: Pin,
        verified: &[Verified],
    ) -> Result<Result<Verified, Stop>, Error> {
        let held = self.store.claim_pin(&trust.name, &candidate).await?;
        let won = (
            &held.identity_pattern,
            &held.issuer,
            &held.version_id,
            held.state,
        ) == (
            &candidate.identity_pattern,
            &candidate.issuer,
            &candidate.version_id,
            candidate.state,
        );
        if won {
            let (action, what) = match held.state {
                PinState::Proposed => (
                    AuditAction::PinProposed,
                    format!(
                        "trust on first use proposed identity pattern {} (issuer {}); versions signed by it wait for an operator's confirmation",
                        held.identity_pattern, held.issuer
                    ),
                ),
                _ => (
                    AuditAction::TrustPinned,
                    format!(
                        "trust on first use pinned identity pattern {} (issuer {})",
                        held.identity_pattern, held.issuer
                    ),
                ),
            };
            self.store
                .audit(&NewAudit {
                    version_id: Some(held.version_id.as_str().into()),
                    template_id: None,
                    module: Some(trust.name.clone()),
                    actor: "module-webhook".into(),
                    via: Via::Ingest,
                    action,
                    from_state: None,
                    to_state: None,
                    reason: Some(what),
                    evidence: json!({"identity": held.identity, "pattern": held.identity_pattern, "issuer": held.issuer, "manifest_digest": held.manifest_digest}),
                })
                .await?;
        }
        Ok(against(&held, verified))
    }

    /// Ends ingest for a reason other than a draft.
    pub(super) async fn stop(
        &self,
        row: VersionRow,
        existing: Option<&VersionRow>,
        stop: Stop,
    ) -> Result<Outcome, Error> {
        match stop {
            Stop::Hold(pin) => self.hold(row, existing, &pin).await,
            Stop::Reject(r) => self.reject(row, existing, r).await,
        }
    }

    /// Signed by a proposed pin: the version waits in `pending_signature`, without the
    /// signature timeout, until an operator decides.
    async fn hold(
        &self,
        mut row: VersionRow,
        existing: Option<&VersionRow>,
        pin: &Pin,
    ) -> Result<Outcome, Error> {
        let why = format!(
            "awaiting an operator's confirmation of the identity proposed on first use, {} (POST /api/v1/pins/{}/confirm or /reject)",
            proposed(pin),
            row.module
        );
        row.lifecycle = Lifecycle::PendingSignature;
        row.reject_reason = Some(why.clone());
        let unchanged = existing.is_some_and(|e| {
            e.lifecycle == Lifecycle::PendingSignature
                && e.manifest_digest == row.manifest_digest
                && e.reject_reason == row.reject_reason
        });
        if !unchanged {
            let evidence = json!({"manifest_digest": row.manifest_digest, "pin_pattern": pin.identity_pattern, "pin_issuer": pin.issuer});
            self.record(
                &row,
                existing,
                AuditAction::AwaitingSignature,
                why,
                evidence,
            )
            .await?;
        }
        Ok(Outcome::PendingSignature(row.id))
    }
}
