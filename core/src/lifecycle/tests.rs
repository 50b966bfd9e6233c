use super::*;
use Lifecycle::*;

const ALL: [Lifecycle; 7] = [
    PendingSignature,
    Rejected,
    Draft,
    Staging,
    Blessed,
    Live,
    Yanked,
];

fn writer() -> Evidence {
    Evidence {
        requester: Actor::Gitea("alice".into()),
        requester_permission: Some(Permission::Write),
        source_commit: Some("c0ffee".into()),
        ..Default::default()
    }
}

#[test]
fn every_pair_of_states() {
    let open = StagePolicy::default();
    for from in ALL {
        for to in ALL {
            let got = transition(from, &Request::Promote { to }, &writer(), &open, 0);
            let step = matches!(
                (from, to),
                (Draft, Staging) | (Staging, Blessed) | (Blessed, Live)
            );
            assert_eq!(got.is_ok(), step, "{from} → {to}: {got:?}");
            if !step {
                assert!(matches!(got.unwrap_err()[0], Missing::NotAllowed { .. }));
            }
        }
        let y = transition(
            from,
            &Request::Yank {
                reason: "CVE".into(),
            },
            &writer(),
            &open,
            0,
        );
        let can = matches!(from, Draft | Staging | Blessed | Live);
        assert_eq!(y.is_ok(), can, "yank from {from}: {y:?}");
    }
}

#[test]
fn requirements_are_listed_and_break_glass_waives_them() {
    let p = StagePolicy {
        required_checks: vec!["ci/build".into(), "ci/e2e".into()],
        min_approvals: 2,
        min_soak_secs: 3600,
        ..Default::default()
    };
    let mut e = writer();
    e.approvals = vec![
        Approval {
            user: "alice".into(),
            review_id: 1,
        },
        Approval {
            user: "bob".into(),
            review_id: 2,
        },
    ];
    e.checks.insert("ci/build".into(), CheckState::Success);
    e.checks.insert("ci/e2e".into(), CheckState::Failure);
    e.entered_state_at = 0;
    let m = transition(Blessed, &Request::Promote { to: Live }, &e, &p, 1_800_000).unwrap_err();
    assert_eq!(
        m,
        vec![
            Missing::Approvals { need: 2, have: 1 },
            Missing::Check {
                context: "ci/e2e".into(),
                state: Some(CheckState::Failure)
            },
            Missing::Soak {
                remaining_secs: 1800
            },
        ],
        "the requester's own approval does not count"
    );
    assert!(m.iter().all(Missing::can_be_met_later));
    e.break_glass = true;
    assert_eq!(
        transition(Blessed, &Request::Promote { to: Live }, &e, &p, 0),
        Ok(Live)
    );
}

#[test]
fn permission_and_reason() {
    let p = StagePolicy::default();
    let mut e = writer();
    e.requester_permission = Some(Permission::Read);
    let m = transition(Draft, &Request::Promote { to: Staging }, &e, &p, 0).unwrap_err();
    assert_eq!(
        m,
        vec![Missing::Permission {
            need: Permission::Write,
            has: Some(Permission::Read)
        }]
    );
    assert!(!m[0].can_be_met_later());
    let m = transition(
        Live,
        &Request::Yank { reason: " ".into() },
        &writer(),
        &p,
        0,
    )
    .unwrap_err();
    assert_eq!(m, vec![Missing::Reason]);
    assert_eq!(
        Missing::Permission {
            need: Permission::Write,
            has: None
        }
        .to_string(),
        "needs write permission on the module's repository; the requester has no permission"
    );
}

#[test]
fn approvals_need_a_source_commit() {
    let p = StagePolicy {
        min_approvals: 1,
        ..Default::default()
    };
    let mut e = writer();
    e.source_commit = None;
    e.approvals = vec![Approval {
        user: "bob".into(),
        review_id: 1,
    }];
    let m = transition(Blessed, &Request::Promote { to: Live }, &e, &p, 0).unwrap_err();
    assert_eq!(m, vec![Missing::SourceCommit]);
    assert!(
        !m[0].can_be_met_later(),
        "a version's commit never appears later"
    );
}

#[test]
fn actors_round_trip_and_never_collide() {
    for a in [
        Actor::Gitea("alice".into()),
        Actor::Gitea("auto".into()),
        Actor::Gitea("api".into()),
        Actor::Api("ops".into()),
        Actor::Auto,
    ] {
        assert_eq!(Actor::decode(&a.encode()), Ok(a.clone()), "{a:?}");
    }
    assert_ne!(Actor::Gitea("auto".into()).encode(), Actor::Auto.encode());
    assert!(
        Actor::decode("alice").is_err(),
        "a bare name is not an actor"
    );
}
