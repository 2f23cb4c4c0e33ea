//! `airlock context`: named connection settings, as the `nats` CLI has them (issue 17, item 4). A context is a small
//! configuration file (the keys of `airlock config check`) kept in the caller's own configuration folder:
//! `$AIRLOCK_CONTEXTS_DIR`, else `$XDG_CONFIG_HOME/airlock/contexts`, else `~/.config/airlock/contexts`. `save` writes one,
//! `use` makes it the default, `ls` lists them; every command takes `--context NAME` (or `AIRLOCK_CONTEXT`). Its
//! values fill in what neither the flags, the environment nor a `--config` file set. A seed file that others can read
//! is refused, when saving and whenever the context is used: a key anyone on the machine can copy is not the
//! operator's own.

use crate::cli::config::ConfigFile;
use crate::cli::exit;
use crate::core::text::check_identifier;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the context to use.
pub const CONTEXT_ENV: &str = "AIRLOCK_CONTEXT";
/// The file in the contexts folder that names the context in use.
const CURRENT: &str = "current";

#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    #[command(subcommand)]
    pub command: ContextCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// Save (or replace) a named context: where the deployment is and which key is yours.
    #[command(after_help = "Examples:\n  airlock context save prod --nats nats://airlock.internal:4222 \
--nats-nkey ~/.airlock/operator.ops-1.nk\n  airlock context save lab --data-dir ./airlock-data")]
    Save {
        /// The context's name (letters, digits, - _ .).
        name: String,
        /// The NATS server(s) of the deployment.
        #[arg(long = "nats", value_name = "URL")]
        nats_url: Option<String>,
        /// Your own nkey seed file (readable by you only).
        #[arg(long)]
        nats_nkey: Option<PathBuf>,
        /// A data directory (the embedded store, or a projection to read).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Make a saved context the one every command uses unless told otherwise.
    #[command(after_help = "Examples:\n  airlock context use prod")]
    Use { name: String },
    /// The saved contexts, the one in use marked.
    #[command(after_help = "Examples:\n  airlock context ls\n  airlock context ls --json")]
    Ls {
        /// Print one JSON object (fields: items[name, current, nats_url, nats_nkey, data_dir], more).
        #[arg(long)]
        json: bool,
    },
}

/// Where contexts are kept.
pub fn folder() -> Option<PathBuf> {
    let from = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    from("AIRLOCK_CONTEXTS_DIR")
        .or_else(|| from("XDG_CONFIG_HOME").map(|base| base.join("airlock/contexts")))
        .or_else(|| from("HOME").map(|home| home.join(".config/airlock/contexts")))
}

/// The context named by `--context NAME` / `--context=NAME`, else `AIRLOCK_CONTEXT`, else the one in use.
pub fn named(args: &[OsString]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--context" {
            return args.next().map(|name| name.to_string_lossy().to_string());
        }
        if let Some(value) = arg.to_str().and_then(|text| text.strip_prefix("--context=")) {
            return Some(value.to_string());
        }
    }
    if let Some(name) = std::env::var_os(CONTEXT_ENV).filter(|value| !value.is_empty()) {
        return Some(name.to_string_lossy().to_string());
    }
    let current = std::fs::read_to_string(folder()?.join(CURRENT)).ok()?;
    Some(current.trim().to_string()).filter(|name| !name.is_empty())
}

/// The values of the context `name`, by the variable each stands for; an unknown context, a bad file, or a seed file
/// others can read is an error naming what to do.
pub fn values(name: &str) -> Result<BTreeMap<&'static str, String>, String> {
    let path = path_of(name)?;
    if !path.is_file() {
        return Err(format!("no context {name:?} (airlock context ls lists them; airlock context save creates one)"));
    }
    let file = crate::cli::config::load(&path)?;
    if let Some(seed) = &file.nats_nkey {
        private_seed(seed)?;
    }
    Ok(file.values())
}

fn path_of(name: &str) -> Result<PathBuf, String> {
    check_identifier("context", name).map_err(|rejection| rejection.to_string())?;
    let folder = folder().ok_or("no folder for contexts: set AIRLOCK_CONTEXTS_DIR or HOME")?;
    Ok(folder.join(format!("{name}.toml")))
}

/// Refuses a seed file that is missing or that others may read.
fn private_seed(seed: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(seed).map_err(|error| format!("the seed file {}: {error}", seed.display()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the seed file {} can be read by others (mode {:o}): run chmod 600 on it first; a key others can copy is \
             not yours alone",
            seed.display(),
            metadata.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct Listed {
    name: String,
    current: bool,
    nats_url: Option<String>,
    nats_nkey: Option<PathBuf>,
    data_dir: Option<PathBuf>,
}

pub fn run(args: ContextArgs) -> u8 {
    match run_command(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            exit::FAILED
        }
    }
}

fn run_command(args: ContextArgs) -> Result<u8, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    match args.command {
        ContextCommand::Save { name, nats_url, nats_nkey, data_dir } => {
            let path = path_of(&name)?;
            if nats_url.is_none() && data_dir.is_none() {
                return Err("a context needs --nats URL (with --nats-nkey) or --data-dir".to_string());
            }
            let nats_nkey = match nats_nkey {
                Some(seed) => {
                    private_seed(&seed)?;
                    crate::nats::Identity::load(&seed).map_err(|error| error.to_string())?;
                    // Stored absolute, so the context works from any directory.
                    Some(std::fs::canonicalize(&seed).map_err(|error| format!("{}: {error}", seed.display()))?)
                }
                None => None,
            };
            let data_dir = data_dir.map(|dir| std::path::absolute(&dir).unwrap_or(dir));
            let file = ConfigFile { nats_url, nats_nkey, data_dir, ..ConfigFile::default() };
            let text = toml::to_string(&file).map_err(|error| error.to_string())?;
            let folder = path.parent().expect("a context file is in the folder");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
            let temporary = folder.join(format!(".{name}.toml.tmp"));
            let mut written = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
            std::io::Write::write_all(&mut written, text.as_bytes())
                .and_then(|()| written.sync_all())
                .and_then(|()| std::fs::rename(&temporary, &path))
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            println!("context {name} saved ({}); `airlock context use {name}` makes it the default", path.display());
            Ok(exit::OK)
        }
        ContextCommand::Use { name } => {
            values(&name)?;
            let folder = folder().ok_or("no folder for contexts")?;
            std::fs::write(folder.join(CURRENT), format!("{name}\n"))
                .map_err(|error| format!("cannot write {}: {error}", folder.join(CURRENT).display()))?;
            println!("using context {name}");
            Ok(exit::OK)
        }
        ContextCommand::Ls { json } => {
            let folder = folder().ok_or("no folder for contexts")?;
            let current = std::fs::read_to_string(folder.join(CURRENT)).unwrap_or_default().trim().to_string();
            let mut items = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&folder) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(name) =
                        path.file_name().and_then(|name| name.to_str()).and_then(|name| name.strip_suffix(".toml"))
                    else {
                        continue;
                    };
                    if name.starts_with('.') {
                        continue;
                    }
                    let file = crate::cli::config::load(&path).unwrap_or_default();
                    items.push(Listed {
                        current: name == current,
                        name: name.to_string(),
                        nats_url: file.nats_url,
                        nats_nkey: file.nats_nkey,
                        data_dir: file.data_dir,
                    });
                }
            }
            items.sort_by(|left, right| left.name.cmp(&right.name));
            if json {
                let answer = serde_json::json!({ "items": items, "more": false });
                println!("{}", serde_json::to_string_pretty(&answer).expect("plain data serializes"));
            } else if items.is_empty() {
                println!("no contexts yet: airlock context save NAME --nats URL --nats-nkey FILE");
            } else {
                for item in &items {
                    let place = item.nats_url.clone().or(item.data_dir.as_ref().map(|dir| dir.display().to_string()));
                    let key = item.nats_nkey.as_ref().map(|key| format!(" as {}", key.display())).unwrap_or_default();
                    println!(
                        "{} {}: {}{key}",
                        if item.current { "*" } else { " " },
                        item.name,
                        place.unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}
