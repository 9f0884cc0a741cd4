//! Upgrade and repair policies, with Azure's defaults and galleon's checks (CONTRACT §6, §5).
//!
//! Values arrive as the ARM document has them (percentages, ISO 8601 durations such as `PT0S`); `validate`
//! turns them into a policy the planner can trust, or says which setting can never work and why.

use std::time::Duration;

/// `rollingUpgradePolicy`, resolved with Azure's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingPolicy {
    pub max_batch_instance_percent: u32,
    pub max_unhealthy_instance_percent: u32,
    pub max_unhealthy_upgraded_instance_percent: u32,
    pub pause_time_between_batches: Duration,
    pub prioritize_unhealthy_instances: bool,
    pub rollback_failed_instances_on_policy_breach: bool,
    pub max_surge: bool,
    /// How long a (re)started instance may stay Initializing (galleon's `healthGracePeriod`).
    pub health_grace_period: Duration,
}

impl Default for RollingPolicy {
    fn default() -> Self {
        RollingPolicy {
            max_batch_instance_percent: 20,
            max_unhealthy_instance_percent: 20,
            max_unhealthy_upgraded_instance_percent: 20,
            pause_time_between_batches: Duration::ZERO,
            prioritize_unhealthy_instances: false,
            rollback_failed_instances_on_policy_breach: false,
            max_surge: false,
            health_grace_period: Duration::from_secs(30),
        }
    }
}

/// The settings as given (None = Azure's default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollingSettings {
    pub max_batch_instance_percent: Option<u32>,
    pub max_unhealthy_instance_percent: Option<u32>,
    pub max_unhealthy_upgraded_instance_percent: Option<u32>,
    pub pause_time_between_batches: Option<String>,
    pub prioritize_unhealthy_instances: Option<bool>,
    pub rollback_failed_instances_on_policy_breach: Option<bool>,
    pub max_surge: Option<bool>,
    pub health_grace_period: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Parses an ISO 8601 duration of hours, minutes and seconds (`PT0S`, `PT1M30S`, `PT2H`); days and
/// larger units are refused, as Azure does for these settings.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, PolicyError> {
    let bad = || PolicyError(format!("{field} '{s}' is not an ISO 8601 duration such as PT0S, PT30S or PT5M"));
    // jiff also reads friendly forms ("5 seconds"); Azure takes only ISO 8601.
    if !s.starts_with(['P', 'p']) {
        return Err(bad());
    }
    let span: jiff::SignedDuration = s.parse().map_err(|_| bad())?;
    if span.is_negative() {
        return Err(PolicyError(format!("{field} '{s}' must not be negative")));
    }
    Duration::try_from(span).map_err(|_| bad())
}

/// Checks the settings and fills in the defaults.
pub fn rolling(s: &RollingSettings) -> Result<RollingPolicy, PolicyError> {
    let d = RollingPolicy::default();
    let batch = s.max_batch_instance_percent.unwrap_or(d.max_batch_instance_percent);
    let unhealthy = s.max_unhealthy_instance_percent.unwrap_or(d.max_unhealthy_instance_percent);
    let upgraded = s.max_unhealthy_upgraded_instance_percent.unwrap_or(d.max_unhealthy_upgraded_instance_percent);
    if !(5..=100).contains(&batch) {
        return Err(PolicyError(format!("maxBatchInstancePercent {batch} must be between 5 and 100")));
    }
    if !(5..=100).contains(&unhealthy) {
        return Err(PolicyError(format!("maxUnhealthyInstancePercent {unhealthy} must be between 5 and 100")));
    }
    if upgraded > 100 {
        return Err(PolicyError(format!("maxUnhealthyUpgradedInstancePercent {upgraded} must be between 0 and 100")));
    }
    if batch > unhealthy {
        // Every batch counts as unhealthy while it upgrades: such a policy faults before its first batch.
        return Err(PolicyError(format!(
            "maxBatchInstancePercent ({batch}) must not exceed maxUnhealthyInstancePercent ({unhealthy}): \
             a batch is out of service while it upgrades, so the upgrade could never start"
        )));
    }
    let pause = match &s.pause_time_between_batches {
        Some(p) => parse_duration("pauseTimeBetweenBatches", p)?,
        None => d.pause_time_between_batches,
    };
    if pause > Duration::from_secs(3600) {
        return Err(PolicyError("pauseTimeBetweenBatches must be at most PT1H".into()));
    }
    let grace = match &s.health_grace_period {
        Some(p) => parse_duration("healthGracePeriod", p)?,
        None => d.health_grace_period,
    };
    if grace < Duration::from_secs(1) || grace > Duration::from_secs(3600) {
        return Err(PolicyError("healthGracePeriod must be between PT1S and PT1H".into()));
    }
    Ok(RollingPolicy {
        max_batch_instance_percent: batch,
        max_unhealthy_instance_percent: unhealthy,
        max_unhealthy_upgraded_instance_percent: upgraded,
        pause_time_between_batches: pause,
        prioritize_unhealthy_instances: s.prioritize_unhealthy_instances.unwrap_or(false),
        rollback_failed_instances_on_policy_breach: s.rollback_failed_instances_on_policy_breach.unwrap_or(false),
        max_surge: s.max_surge.unwrap_or(false),
        health_grace_period: grace,
    })
}

/// `automaticRepairsPolicy`, checked: galleon accepts a grace period from PT5S (Azure: PT10M).
pub fn repair_grace(grace: Option<&str>) -> Result<Duration, PolicyError> {
    let g = match grace {
        Some(g) => parse_duration("automaticRepairsPolicy.gracePeriod", g)?,
        None => Duration::from_secs(600),
    };
    if g < Duration::from_secs(5) || g > Duration::from_secs(90 * 60) {
        return Err(PolicyError("automaticRepairsPolicy.gracePeriod must be between PT5S and PT90M".into()));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_azures() {
        let p = rolling(&RollingSettings::default()).unwrap();
        assert_eq!(p, RollingPolicy::default());
        assert_eq!(p.max_batch_instance_percent, 20);
    }

    #[test]
    fn impossible_settings_are_refused_with_the_reason() {
        let with = |f: fn(&mut RollingSettings)| {
            let mut s = RollingSettings::default();
            f(&mut s);
            rolling(&s).map(|_| ()).map_err(|e| e.0)
        };
        assert!(with(|s| s.max_batch_instance_percent = Some(4)).unwrap_err().contains("between 5 and 100"));
        assert!(with(|s| s.max_unhealthy_instance_percent = Some(101)).is_err());
        assert!(with(|s| s.max_unhealthy_upgraded_instance_percent = Some(101)).is_err());
        assert!(
            with(|s| {
                s.max_batch_instance_percent = Some(50);
                s.max_unhealthy_instance_percent = Some(20);
            })
            .unwrap_err()
            .contains("could never start")
        );
        assert!(with(|s| s.pause_time_between_batches = Some("5 seconds".into())).unwrap_err().contains("ISO 8601"));
        assert!(with(|s| s.pause_time_between_batches = Some("P1D".into())).is_err());
        assert!(with(|s| s.max_unhealthy_upgraded_instance_percent = Some(0)).is_ok());
    }

    #[test]
    fn durations_parse_as_azure_writes_them() {
        assert_eq!(parse_duration("x", "PT0S").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("x", "PT1M30S").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("x", "PT2H").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("x", "30").is_err());
        assert!(repair_grace(Some("PT4S")).is_err());
        assert_eq!(repair_grace(Some("PT5S")).unwrap(), Duration::from_secs(5));
    }
}
