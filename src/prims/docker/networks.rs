//! Networks: list, inspect, create, remove, connect and disconnect.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::*;
use crate::docker::NetworkOptions;
use crate::prims::{error, opt_bool, opt_string, PrimResult};

fn network_connect(
    ctx: &NativeCallContext,
    network: &str,
    container: &str,
    options: &Map,
) -> PrimResult<()> {
    let aliases: Vec<String> = match options.get("aliases").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(v) => v
            .read_lock::<Array>()
            .ok_or_else(|| error("option `aliases` must be a list of names"))?
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    let detail = if aliases.is_empty() {
        format!("connect container `{container}` to network `{network}`")
    } else {
        format!(
            "connect container `{container}` to network `{network}` as {}",
            aliases.join(", ")
        )
    };
    must_exist(ctx, Kind::Network, network)?;
    must_exist(ctx, Kind::Container, container)?;
    change(ctx, "docker::network_connect", detail, |d| async move {
        d.network_connect(network, container, &aliases).await
    })
}

fn network_create(ctx: &NativeCallContext, name: &str, options: &Map) -> PrimResult<()> {
    let network = NetworkOptions {
        labels: string_map(options, "labels")?,
        driver: opt_string(options, "driver")?,
        internal: opt_bool(options, "internal")?.unwrap_or(false),
    };
    change(
        ctx,
        "docker::network_create",
        format!("create network `{name}`"),
        |d| async move { d.network_create(name, &network).await.map(drop) },
    )?;
    planned(ctx, Kind::Network, name, true);
    Ok(())
}

#[export_module]
pub mod api {
    use super::*;

    /// Every network as `#{name, id, driver, scope, internal, labels, stack}`.
    #[rhai_fn(name = "networks", return_raw)]
    pub fn networks(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(&ctx, "listing networks", |d| async move {
            d.networks(&[]).await
        })?;
        to_list(&rows)
    }

    /// Networks of `#{stack: "shop"}` (labelled with it or joined by its containers), or
    /// carrying `#{label: .., labels: #{..}}`.
    #[rhai_fn(name = "networks", return_raw)]
    pub fn networks_filtered(
        ctx: NativeCallContext,
        filter: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::stack_or_labelled(
            &ctx,
            &filter,
            "listing networks",
            |view| view.networks,
            |d, labels| async move { d.networks(&labels).await },
        )
    }

    /// The engine's inspect of a network.
    #[rhai_fn(return_raw)]
    pub fn network_inspect(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let network = call(&ctx, "inspecting a network", |d| async move {
            d.network_inspect(name).await
        })?;
        to_map(&network)
    }

    /// True when the network exists.
    #[rhai_fn(return_raw)]
    pub fn network_exists(ctx: NativeCallContext, name: &str) -> Result<bool, Box<EvalAltResult>> {
        call(&ctx, "looking for a network", |d| async move {
            d.network_exists(name).await
        })
    }

    /// Creates a network (bridge driver).
    #[rhai_fn(name = "network_create", return_raw)]
    pub fn network_create(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::network_create(&ctx, name, &Map::new())
    }

    /// Creates a network with `#{labels: #{..}, driver: "bridge", internal: true}`.
    #[rhai_fn(name = "network_create", return_raw)]
    pub fn network_create_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::network_create(&ctx, name, &options)
    }

    /// Removes a network (refused while containers are attached).
    #[rhai_fn(return_raw)]
    pub fn network_remove(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        must_exist(&ctx, Kind::Network, name)?;
        change(
            &ctx,
            "docker::network_remove",
            format!("remove network `{name}`"),
            |d| async move { d.network_remove(name).await },
        )?;
        planned(&ctx, Kind::Network, name, false);
        Ok(())
    }

    /// Attaches a container to a network.
    #[rhai_fn(name = "network_connect", return_raw)]
    pub fn network_connect(
        ctx: NativeCallContext,
        network: &str,
        container: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::network_connect(&ctx, network, container, &Map::new())
    }

    /// Attaches a container to a network with `#{aliases: ["db"]}`: names it answers to there.
    #[rhai_fn(name = "network_connect", return_raw)]
    pub fn network_connect_with(
        ctx: NativeCallContext,
        network: &str,
        container: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::network_connect(&ctx, network, container, &options)
    }

    /// Detaches a container from a network, also when its endpoint is stale (the network was
    /// removed and created again while the container was stopped).
    #[rhai_fn(return_raw)]
    pub fn network_disconnect(
        ctx: NativeCallContext,
        network: &str,
        container: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        must_exist(&ctx, Kind::Network, network)?;
        must_exist(&ctx, Kind::Container, container)?;
        change(
            &ctx,
            "docker::network_disconnect",
            format!("disconnect container `{container}` from network `{network}`"),
            |d| async move { d.network_disconnect(network, container, true).await },
        )
    }
}
