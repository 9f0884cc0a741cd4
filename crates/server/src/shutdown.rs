//! Stopping a whole home (`galleon shutdown`): actions in flight stop at their next phase boundary (still
//! recorded, so a later `galleon serve` resumes them), every instance is drained and stopped, the data
//! plane ends, then the control plane. Records keep each instance's desired state: `serve` brings back
//! the ones that were running.

use std::time::Duration;

use galleon_store::Kind;

use crate::App;
use crate::fleet::ScaleSet;

pub async fn run(app: &App) {
    tracing::info!("shutting down the home {}", app.home.root().display());
    // Let actions reach a phase boundary; they check `app.shutdown` before each phase.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.tasks.len() > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sets = app.store.read(|tx| Ok::<_, crate::error::ApiError>(tx.all(Kind::ScaleSet)?)).unwrap_or_default();
    let mut stops = vec![];
    for row in sets {
        let Ok(doc) = row.parse::<galleon_api::vmss::VirtualMachineScaleSet>() else { continue };
        let Ok(set) = ScaleSet::of(&doc, &row.id) else { continue };
        let Ok(records) = set.records(app) else { continue };
        for rec in records {
            let (app, set) = (app.clone(), set.clone());
            stops.push(tokio::spawn(async move {
                app.net.take_out_for_shutdown(&app, &set, rec.id).await;
                let key = set.key(rec.id);
                let app2 = app.clone();
                let _ = tokio::task::spawn_blocking(move || app2.runtime.stop(&key)).await;
            }));
        }
    }
    for s in stops {
        let _ = s.await;
    }
    app.net.stop_dataplane(app).await;
    tracing::info!("every instance of the home is stopped");
    app.stopped.notify_waiters();
    app.stopped.notify_one();
}
