//! The decision log: every action on an instance, with its reason, as the CLI shows it
//! ("upgraded in batch 2", "rolled back: unhealthy after 30 s", "skipped: protected").

use galleon_api::vmss::Decision;
use galleon_store::Tx;

use crate::clock;
use crate::error::ApiResult;
use crate::fleet::ScaleSet;

pub fn log(
    tx: &Tx<'_>,
    set: &ScaleSet,
    instance: Option<u32>,
    action: &str,
    reason: &str,
    operation: Option<&str>,
) -> ApiResult<()> {
    let now = clock::now_ms();
    let d = Decision {
        time: clock::rfc3339(now),
        action: action.to_string(),
        reason: reason.to_string(),
        operation: operation.map(String::from),
    };
    tx.log_event(&set.key, instance, now, &serde_json::to_value(&d).unwrap_or_default())?;
    Ok(())
}

/// The last decisions for one instance, oldest first.
pub fn recent(tx: &Tx<'_>, set: &ScaleSet, instance: u32, limit: usize) -> ApiResult<Vec<Decision>> {
    Ok(tx
        .events(&set.key, Some(instance), limit)?
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.doc).ok())
        .collect())
}
