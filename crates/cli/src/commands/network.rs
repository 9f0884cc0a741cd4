//! `galleon network lb …`: load balancers, their probes, rules and inbound NAT, with az's flags.

use serde_json::json;

use crate::context::{Ctx, enc};
use crate::error::CliResult;
use galleon_client::Precondition;

/// The load balancer `name` in `rg`, created as `az vmss create --lb` creates it when missing: one
/// frontend, a backend pool `{name}BEPool` and an inbound NAT pool `{name}NatPool` (frontend ports from
/// 50000, one per instance, to `backend_port`). Returns its path.
pub async fn ensure_lb(ctx: &Ctx, rg: &str, name: &str, backend_port: u16) -> CliResult<String> {
    let path = ctx.provider_path(rg, "Microsoft.Network", &format!("loadBalancers/{}", enc(name))).await?;
    if ctx.client.get_value(&path).await.is_ok() {
        return Ok(path);
    }
    let body = json!({
        "properties": {
            "frontendIPConfigurations": [{"name": "loadBalancerFrontEnd", "properties": {}}],
            "backendAddressPools": [{"name": format!("{name}BEPool"), "properties": {}}],
            "inboundNatPools": [{"name": format!("{name}NatPool"), "properties": {
                "frontendIPConfiguration": {"id": format!("{path}/frontendIPConfigurations/loadBalancerFrontEnd")},
                "protocol": "Tcp",
                "frontendPortRangeStart": 50000,
                "frontendPortRangeEnd": 50119,
                "backendPort": backend_port,
            }}],
        },
    });
    ctx.client.put(&path, &body, Precondition::None, true).await?;
    Ok(path)
}
