//! Which instances a scale-in removes (`scaleInPolicy.rules`), as Azure chooses them.
//!
//! Default removes the highest instance ids first (Azure balances zones first; galleon has one zone),
//! OldestVM the earliest created, NewestVM the latest. Instances protected from scale-in are never
//! chosen, so a scale-in may remove fewer than asked.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleInRule {
    Default,
    OldestVm,
    NewestVm,
}

/// What the choice needs to know of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: u32,
    pub created_ms: i64,
    pub protected: bool,
}

/// Up to `count` instances to remove, in removal order.
pub fn victims(instances: &[Candidate], count: usize, rule: ScaleInRule) -> Vec<u32> {
    let mut open: Vec<&Candidate> = instances.iter().filter(|c| !c.protected).collect();
    match rule {
        ScaleInRule::Default => open.sort_by_key(|c| std::cmp::Reverse(c.id)),
        ScaleInRule::OldestVm => open.sort_by_key(|c| (c.created_ms, c.id)),
        ScaleInRule::NewestVm => open.sort_by_key(|c| (std::cmp::Reverse(c.created_ms), std::cmp::Reverse(c.id))),
    }
    open.into_iter().take(count).map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u32, created_ms: i64, protected: bool) -> Candidate {
        Candidate { id, created_ms, protected }
    }

    #[test]
    fn rules_pick_as_azure_does_and_protection_wins() {
        // Instance 4 was re-created later than 5 (ids are not creation order after deletes).
        let fleet = [c(0, 10, false), c(1, 20, true), c(4, 50, false), c(5, 40, false)];
        assert_eq!(victims(&fleet, 2, ScaleInRule::Default), [5, 4]);
        assert_eq!(victims(&fleet, 2, ScaleInRule::OldestVm), [0, 5]);
        assert_eq!(victims(&fleet, 2, ScaleInRule::NewestVm), [4, 5]);
        assert_eq!(victims(&fleet, 9, ScaleInRule::Default), [5, 4, 0], "protected instance 1 is kept");
    }
}
