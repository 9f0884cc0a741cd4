//! The home's subscription: `GET /subscriptions/{id}` (`galleon account show`).

use axum::http::StatusCode;
use axum::response::Response;
use galleon_api::Subscription;

use crate::App;
use crate::error::ApiResult;
use crate::resource::json;

pub fn get(app: &App) -> ApiResult<Response> {
    json(StatusCode::OK, &subscription(app))
}

/// `GET /subscriptions`: the one subscription of this home.
pub fn list(app: &App) -> ApiResult<Response> {
    json(StatusCode::OK, &galleon_api::List::of(vec![subscription(app)]))
}

fn subscription(app: &App) -> Subscription {
    Subscription {
        id: format!("/subscriptions/{}", app.subscription),
        subscription_id: app.subscription.clone(),
        display_name: "galleon".into(),
        state: "Enabled".into(),
        tenant_id: app.tenant.clone(),
    }
}
