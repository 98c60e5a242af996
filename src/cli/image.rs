//! `pikaci image build|import|list`: Incus images on the guest host.

use std::path::PathBuf;

use super::args::{Global, ImageBuildArgs, ImageImportArgs};
use super::context::{cancel_on_signals, load_config, state_dir};
use crate::config::{Config, HostSpec};
use crate::error::Error;
use crate::incus::{Incus, build_image, image_root, import_image, list_images};
use crate::transport::Transport;

/// The host's transport and pikaci's work dir there.
fn connect(
    global: &Global,
    config: &Config,
    cancel: &crate::cancel::Cancel,
) -> Result<(Box<dyn Transport>, PathBuf), Error> {
    let state = state_dir(global, config);
    let host = config.main_host();
    let (transport, work_dir, _) = crate::backend::connect(config, host, state.root(), cancel)
        .map_err(|e| Error::infra(&format!("connecting to {}", host.spec), e))?;
    Ok((transport, work_dir))
}

fn failed(what: &str) -> impl FnOnce(crate::incus::ImageError) -> Error + '_ {
    move |e| Error::infra(what, e)
}

/// A fingerprint as Incus shows it: its first 12 characters.
fn short(fingerprint: &str) -> String {
    fingerprint.chars().take(12).collect()
}

pub fn build(global: &Global, args: ImageBuildArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let relative = args.installable.starts_with(".#")
        || args.installable == "."
        || args.installable.starts_with("./");
    if relative && config.main_host().spec != HostSpec::Local {
        return Err(Error::Usage(format!(
            "`{}` names a flake on this machine, but images build on {}; pass a flake \
             reference the host can fetch",
            args.installable,
            config.main_host().spec
        )));
    }
    let cancel = cancel_on_signals()?;
    let (transport, work_dir) = connect(global, &config, &cancel)?;
    let state = state_dir(global, &config);
    crate::fsutil::create_dir_all(state.root())
        .map_err(|e| Error::infra("creating the state dir", e))?;
    let log = state.root().join("image-build.log");
    // Relative installables resolve from the config's directory, as the user wrote them.
    let cwd = if relative { &config.root } else { &work_dir };
    let image = build_image(
        transport.as_ref(),
        &work_dir,
        &args.installable,
        cwd,
        &log,
        &cancel,
    )
    .map_err(failed("building the image"))?;
    crate::outln!("{}", image.as_path().display());
    crate::errln!(
        "GC root {} on {}; import it with `pikaci image import`",
        image_root(&work_dir).display(),
        config.main_host().spec
    );
    Ok(0)
}

pub fn import(global: &Global, args: ImageImportArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let cancel = cancel_on_signals()?;
    let (transport, work_dir) = connect(global, &config, &cancel)?;
    let settings = &config.backends.incus;
    let alias = args.alias.as_deref().unwrap_or(&settings.image);
    let dir = args.dir.unwrap_or_else(|| image_root(&work_dir));
    let imported = import_image(
        transport.as_ref(),
        &Incus::new(settings),
        &dir,
        alias,
        &cancel,
    )
    .map_err(failed("importing the image"))?;
    crate::outln!(
        "{alias} -> {} ({})",
        short(&imported.fingerprint),
        if imported.uploaded {
            "imported"
        } else {
            "already present"
        }
    );
    if let Some(previous) = &imported.previous {
        match &imported.kept_because {
            None => crate::outln!("removed the previous image {}", short(previous)),
            Some(why) => crate::outln!("kept the previous image {}: {why}", short(previous)),
        }
    }
    Ok(0)
}

pub fn list(global: &Global) -> Result<u8, Error> {
    let config = load_config(global)?;
    let cancel = cancel_on_signals()?;
    let (transport, _) = connect(global, &config, &cancel)?;
    let rows = list_images(
        transport.as_ref(),
        &Incus::new(&config.backends.incus),
        &cancel,
    )
    .map_err(failed("listing images"))?;
    crate::outln!(
        "{:<12}  {:<15}  {:>9}  {:<20}  {:>9}  ALIASES",
        "FINGERPRINT",
        "TYPE",
        "SIZE",
        "UPLOADED",
        "INSTANCES"
    );
    for row in rows {
        let uploaded: String = row.uploaded_at.chars().take(19).collect();
        crate::outln!(
            "{:<12}  {:<15}  {:>5} MiB  {:<20}  {:>9}  {}",
            short(&row.fingerprint),
            row.kind,
            row.size >> 20,
            uploaded,
            row.instances,
            row.aliases.join(", ")
        );
    }
    Ok(0)
}
