//! Images: list, inspect, tag and remove.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::*;
use crate::prims::opt_bool;

#[export_module]
pub mod api {
    use super::*;

    /// Local images as `#{id, tags, created, size, labels}`, newest first.
    #[rhai_fn(name = "images", return_raw)]
    pub fn images(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(
            &ctx,
            "listing images",
            |d| async move { d.images(&[]).await },
        )?;
        to_list(&rows)
    }

    /// Local images carrying labels: `#{label: "k=v" or [..], labels: #{k: v}}`.
    #[rhai_fn(name = "images", return_raw)]
    pub fn images_filtered(
        ctx: NativeCallContext,
        filter: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let labels = label_filters(&filter)?;
        let rows = call(&ctx, "listing images", |d| async move {
            d.images(&labels).await
        })?;
        to_list(&rows)
    }

    /// The engine's inspect of an image (by name, tag or id).
    #[rhai_fn(return_raw)]
    pub fn image_inspect(ctx: NativeCallContext, image: &str) -> Result<Map, Box<EvalAltResult>> {
        let inspect = call(&ctx, "inspecting an image", |d| async move {
            d.image_inspect(image).await
        })?;
        to_map(&inspect)
    }

    /// True when the image exists locally.
    #[rhai_fn(return_raw)]
    pub fn image_exists(ctx: NativeCallContext, image: &str) -> Result<bool, Box<EvalAltResult>> {
        call(&ctx, "looking for an image", |d| async move {
            d.image_exists(image).await
        })
    }

    /// Tags an image: `docker::image_tag("shop/web:1.4", "shop/web:rollback-20261123")`.
    #[rhai_fn(return_raw)]
    pub fn image_tag(
        ctx: NativeCallContext,
        image: &str,
        target: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        must_exist(&ctx, Kind::Image, image)?;
        change(
            &ctx,
            "docker::image_tag",
            format!("tag image `{image}` as `{target}`"),
            |d| async move { d.image_tag(image, target).await },
        )?;
        planned(&ctx, Kind::Image, target, true);
        Ok(())
    }

    /// Removes an image name (refused while a container uses the image).
    #[rhai_fn(name = "image_remove", return_raw)]
    pub fn image_remove(ctx: NativeCallContext, image: &str) -> Result<(), Box<EvalAltResult>> {
        must_exist(&ctx, Kind::Image, image)?;
        change(
            &ctx,
            "docker::image_remove",
            format!("remove image `{image}`"),
            |d| async move { d.image_remove(image, false).await },
        )?;
        planned(&ctx, Kind::Image, image, false);
        Ok(())
    }

    /// Removes an image with `#{force: true}` (even when containers use it).
    #[rhai_fn(name = "image_remove", return_raw)]
    pub fn image_remove_with(
        ctx: NativeCallContext,
        image: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let force = opt_bool(&options, "force")?.unwrap_or(false);
        must_exist(&ctx, Kind::Image, image)?;
        change(
            &ctx,
            "docker::image_remove",
            format!(
                "remove image `{image}`{}",
                if force { " (forced)" } else { "" }
            ),
            |d| async move { d.image_remove(image, force).await },
        )?;
        planned(&ctx, Kind::Image, image, false);
        Ok(())
    }
}
