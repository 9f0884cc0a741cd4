//! The ARM API: one `match` from a request's shape to its handler, and the handlers by resource.
//!
//! Handlers are plain functions over `&App` that run on the blocking pool (they use SQLite and the
//! image store directly); long work is handed to reconcilers, which answer through operations.

pub mod account;
pub mod builds;
pub mod day2;
pub mod gallery;
pub mod groups;
pub mod images;
pub mod lb;
pub mod operations;
pub mod vmss;

use axum::http::Method;
use axum::response::Response;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::request::ApiRequest;

pub fn handle(app: &App, req: &ApiRequest) -> ApiResult<Response> {
    if req.shape == "<subscriptions>" {
        req.check_api_version()?;
        return account::list(app);
    }
    if !req.subscription.eq_ignore_ascii_case(&app.subscription) {
        return Err(ApiError::not_found(
            "SubscriptionNotFound",
            format!(
                "The subscription '{}' could not be found; this home's is '{}'.",
                req.subscription, app.subscription
            ),
        ));
    }
    req.check_api_version()?;
    let n: Vec<&str> = req.names.iter().map(String::as_str).collect();
    let m = &req.method;
    // Nothing changes inside a group being deleted (deletes go on: they are what empties it).
    if ![Method::GET, Method::HEAD, Method::DELETE].contains(m) && req.shape.starts_with("resourcegroups/{}") {
        let group = galleon_core::ids::ResourceId::group(&app.subscription, n[0]).to_string();
        if app.store.read(|tx| Ok::<_, ApiError>(tx.get(&group)?))?.is_some_and(|r| groups::is_deleting(&r)) {
            return Err(groups::being_deleted(n[0]));
        }
    }
    const GALLERIES: &str = "resourcegroups/{}/providers/microsoft.compute/galleries";
    match (m.clone(), req.shape.as_str()) {
        (Method::GET, "") => account::get(app),
        (Method::GET, "providers/microsoft.compute/locations/{}/operations/{}") => operations::get(app, n[1]),

        (Method::POST, "providers/galleon.images/builds") => builds::start(app, req),
        (Method::GET, "providers/galleon.images/builds/{}/log") => builds::log(app, n[0], req),

        (Method::POST, "providers/galleon/collectgarbage") => day2::gc(app),
        (Method::GET, "providers/galleon/status") => day2::status(app),
        (Method::POST, "providers/galleon/shutdown") => day2::shutdown(app),

        (Method::GET, "resourcegroups") => groups::list(app),
        (Method::PUT, "resourcegroups/{}") => groups::put(app, n[0], req),
        (Method::GET, "resourcegroups/{}") => groups::get(app, n[0]),
        (Method::HEAD, "resourcegroups/{}") => groups::head(app, n[0]),
        (Method::DELETE, "resourcegroups/{}") => groups::delete(app, n[0]),

        (Method::GET, "providers/microsoft.compute/galleries") => gallery::list_galleries(app, None),
        (Method::GET, s) if s == GALLERIES => gallery::list_galleries(app, Some(n[0])),
        (Method::PUT, s) if s == format!("{GALLERIES}/{{}}") => gallery::put_gallery(app, n[0], n[1], req),
        (Method::GET, s) if s == format!("{GALLERIES}/{{}}") => gallery::get_gallery(app, n[0], n[1]),
        (Method::DELETE, s) if s == format!("{GALLERIES}/{{}}") => gallery::delete_gallery(app, n[0], n[1]),
        (Method::GET, s) if s == format!("{GALLERIES}/{{}}/images") => gallery::list_definitions(app, n[0], n[1]),
        (Method::PUT, s) if s == format!("{GALLERIES}/{{}}/images/{{}}") => {
            gallery::put_definition(app, n[0], n[1], n[2], req)
        }
        (Method::GET, s) if s == format!("{GALLERIES}/{{}}/images/{{}}") => {
            gallery::get_definition(app, n[0], n[1], n[2])
        }
        (Method::DELETE, s) if s == format!("{GALLERIES}/{{}}/images/{{}}") => {
            gallery::delete_definition(app, n[0], n[1], n[2])
        }
        (Method::GET, s) if s == format!("{GALLERIES}/{{}}/images/{{}}/versions") => {
            gallery::list_versions(app, n[0], n[1], n[2])
        }
        (Method::PUT, s) if s == format!("{GALLERIES}/{{}}/images/{{}}/versions/{{}}") => {
            gallery::put_version(app, n[0], n[1], n[2], n[3], req)
        }
        (Method::PATCH, s) if s == format!("{GALLERIES}/{{}}/images/{{}}/versions/{{}}") => {
            gallery::patch_version(app, n[0], n[1], n[2], n[3], req)
        }
        (Method::GET, s) if s == format!("{GALLERIES}/{{}}/images/{{}}/versions/{{}}") => {
            gallery::get_version(app, n[0], n[1], n[2], n[3])
        }
        (Method::DELETE, s) if s == format!("{GALLERIES}/{{}}/images/{{}}/versions/{{}}") => {
            gallery::delete_version(app, n[0], n[1], n[2], n[3])
        }

        (Method::GET, "providers/microsoft.compute/virtualmachinescalesets") => vmss::list_sets(app, None),
        (Method::GET, "resourcegroups/{}/providers/microsoft.compute/virtualmachinescalesets") => {
            vmss::list_sets(app, Some(n[0]))
        }
        (m, s) if s.starts_with("resourcegroups/{}/providers/microsoft.compute/virtualmachinescalesets/{}") => {
            let rest = &s["resourcegroups/{}/providers/microsoft.compute/virtualmachinescalesets/{}".len()..];
            let (rg, name) = (n[0], n[1]);
            match (m, rest) {
                (Method::PUT, "") => vmss::put(app, rg, name, req),
                (Method::PATCH, "") => vmss::patch(app, rg, name, req),
                (Method::GET, "") => vmss::get(app, rg, name),
                (Method::DELETE, "") => vmss::delete(app, rg, name),
                (Method::GET, "/virtualmachines") => vmss::list_vms(app, rg, name),
                (Method::GET, "/virtualmachines/{}") => vmss::get_vm(app, rg, name, n[2], req),
                (Method::PUT, "/virtualmachines/{}") => vmss::put_vm(app, rg, name, n[2], req),
                (Method::GET, "/virtualmachines/{}/instanceview") => vmss::instance_view(app, rg, name, n[2]),
                (Method::POST, "/virtualmachines/{}/runcommand") => day2::run_command(app, rg, name, n[2], req),
                (Method::POST, "/osrollingupgrade") => crate::upgrade::views::start(app, rg, name),
                (Method::POST, "/rollingupgrades/{}") if n[2].eq_ignore_ascii_case("cancel") => {
                    crate::upgrade::views::cancel(app, rg, name)
                }
                (Method::GET, "/rollingupgrades/{}") if n[2].eq_ignore_ascii_case("latest") => {
                    crate::upgrade::views::latest(app, rg, name)
                }
                (Method::GET, "/osupgradehistory") => crate::upgrade::views::history(app, rg, name),
                (Method::GET, "/virtualmachines/{}/bootlog") => day2::boot_log(app, rg, name, n[2], req),
                (Method::POST, verb) if !verb[1..].contains('/') => vmss::act(app, rg, name, &verb[1..], req),
                (Method::GET, "/extensions") => vmss::list_extensions(app, rg, name),
                (Method::PUT, "/extensions/{}") => vmss::put_extension(app, rg, name, n[2], req),
                (Method::GET, "/extensions/{}") => vmss::get_extension(app, rg, name, n[2]),
                (Method::DELETE, "/extensions/{}") => vmss::delete_extension(app, rg, name, n[2]),
                (m, _) => Err(no_route(&m, s)),
            }
        }

        (Method::GET, "providers/microsoft.network/loadbalancers") => lb::list(app, None),
        (Method::GET, "resourcegroups/{}/providers/microsoft.network/loadbalancers") => lb::list(app, Some(n[0])),
        (Method::PUT, "resourcegroups/{}/providers/microsoft.network/loadbalancers/{}") => {
            lb::put(app, n[0], n[1], req)
        }
        (Method::GET, "resourcegroups/{}/providers/microsoft.network/loadbalancers/{}") => lb::get(app, n[0], n[1]),
        (Method::DELETE, "resourcegroups/{}/providers/microsoft.network/loadbalancers/{}") => {
            lb::delete(app, n[0], n[1])
        }
        (Method::GET, "resourcegroups/{}/providers/microsoft.network/loadbalancers/{}/metrics") => {
            lb::metrics(app, n[0], n[1])
        }
        (Method::GET, s) if s.starts_with("resourcegroups/{}/providers/microsoft.network/loadbalancers/{}/") => {
            let rest: Vec<&str> =
                s["resourcegroups/{}/providers/microsoft.network/loadbalancers/{}/".len()..].split('/').collect();
            match rest.as_slice() {
                [collection] => lb::child(app, n[0], n[1], collection, None),
                [collection, "{}"] => lb::child(app, n[0], n[1], collection, Some(n[2])),
                _ => Err(no_route(m, s)),
            }
        }

        (Method::GET, "providers/microsoft.compute/images") => images::list_images(app, None),
        (Method::GET, "resourcegroups/{}/providers/microsoft.compute/images") => images::list_images(app, Some(n[0])),
        (Method::PUT, "resourcegroups/{}/providers/microsoft.compute/images/{}") => images::put(app, n[0], n[1], req),
        (Method::GET, "resourcegroups/{}/providers/microsoft.compute/images/{}") => images::get(app, n[0], n[1]),
        (Method::DELETE, "resourcegroups/{}/providers/microsoft.compute/images/{}") => images::delete(app, n[0], n[1]),

        (_, shape) => Err(no_route(m, shape)),
    }
}

fn no_route(method: &Method, shape: &str) -> ApiError {
    ApiError::bad_request(
        "NoRegisteredProviderFound",
        format!("galleon does not serve {method} on '{}'.", shape.replace("{}", "…")),
    )
}
