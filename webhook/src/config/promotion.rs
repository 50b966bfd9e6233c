//! `[promotion]`: the policy per target stage, with per-module and per-category overrides.

use powernode_module::lifecycle::{Lifecycle, StagePolicy};
use serde::{Deserialize, Serialize};

/// Promotion policy per target stage, with per-module and per-category overrides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromotionConfig {
    pub staging: StagePolicy,
    pub blessed: StagePolicy,
    pub live: StagePolicy,
    /// Who may yank (only `who` applies).
    pub yank: StagePolicy,
    pub overrides: Vec<PromotionOverride>,
    /// A pending request expires after this long.
    pub request_ttl_secs: i64,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            staging: StagePolicy::default(),
            blessed: StagePolicy::default(),
            // As in the seed: going live needs an approval.
            live: StagePolicy {
                min_approvals: 1,
                ..StagePolicy::default()
            },
            yank: StagePolicy::default(),
            overrides: Vec::new(),
            request_ttl_secs: 7 * 86_400,
        }
    }
}

/// Replaces the policy of `stage` for one module or one category (module wins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionOverride {
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// The stage entered (`staging`, `blessed`, `live`) or `yanked`; a typo fails at start-up.
    pub stage: Lifecycle,
    pub policy: StagePolicy,
}

impl PromotionConfig {
    /// The policy for entering `stage` (or yanking) for `module` of `category`. The category
    /// is the one pinned in the module's configuration entry, never the one an artifact's
    /// manifest declares: an artifact must not choose its own policy.
    pub fn policy_for(
        &self,
        stage: Lifecycle,
        module: &str,
        category: Option<&str>,
    ) -> StagePolicy {
        let pick = |f: &dyn Fn(&PromotionOverride) -> bool| {
            self.overrides
                .iter()
                .find(|o| o.stage == stage && f(o))
                .map(|o| o.policy.clone())
        };
        pick(&|o| o.module.as_deref() == Some(module))
            .or_else(|| {
                pick(&|o| {
                    o.module.is_none() && category.is_some() && o.category.as_deref() == category
                })
            })
            .unwrap_or_else(|| match stage {
                Lifecycle::Staging => self.staging.clone(),
                Lifecycle::Blessed => self.blessed.clone(),
                Lifecycle::Live => self.live.clone(),
                _ => self.yank.clone(),
            })
    }
}

impl PromotionConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (i, o) in self.overrides.iter().enumerate() {
            if o.module.is_none() && o.category.is_none() {
                anyhow::bail!(
                    "configuration: promotion.overrides[{i}] names neither a module nor a category"
                );
            }
            if !matches!(
                o.stage,
                Lifecycle::Staging | Lifecycle::Blessed | Lifecycle::Live | Lifecycle::Yanked
            ) {
                anyhow::bail!(
                    "configuration: promotion.overrides[{i}].stage {} is not staging, blessed, live or yanked",
                    o.stage
                );
            }
        }
        Ok(())
    }
}
