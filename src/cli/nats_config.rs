//! `airlock nats-config`: writes a nats-server configuration with least privilege (`nats::permissions`) and one nkey
//! per actor. The configuration holds only public keys; each seed is written once, alone in its own file, readable
//! by its owner only, and kept when the command runs again, so adding an actor never changes anybody else's key.

use crate::cli::exit;
use crate::core::actor::Role;
use crate::intake::subjects::actor_token_valid;
use crate::nats::Identity;
use crate::nats::permissions::{self, ClusterSettings, ServerSettings, User};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  airlock nats-config --out ./nats --intake helpdesk --intake support-agent \
--owner verification-page --reviewer ana --operator ops-1\n  \
airlock nats-config --out ./nats --listen 0.0.0.0:4222 --store-dir /data/jetstream --reviewer ben --json\n  \
airlock nats-config --out ./nats --cluster airlock --cluster-listen 0.0.0.0:6222 --route nats-1:6222 \
--route nats-2:6222 --route nats-3:6222 --intake helpdesk\n\n\
Then: nats-server -c ./nats/nats.conf, and airlock serve --nats nats://127.0.0.1:4222 --nats-nkey ./nats/seeds/airlock.nk")]
pub struct NatsConfigArgs {
    /// The folder to write nats.conf and seeds/ into (created if missing; existing seeds are kept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A support desk or AI agent that may only request recoveries (repeatable).
    #[arg(long, value_name = "ID")]
    pub intake: Vec<String>,
    /// An owners' front door (the verification page of `serve --http` records proofs as owner:verification-page).
    #[arg(long, value_name = "ID")]
    pub owner: Vec<String>,
    /// A reviewer who approves or denies cases in review (repeatable).
    #[arg(long, value_name = "ID")]
    pub reviewer: Vec<String>,
    /// An operator who cancels, rolls back and pulls the kill switch (repeatable).
    #[arg(long, value_name = "ID")]
    pub operator: Vec<String>,
    /// A system of the company's (a SIEM, a ticketing back end) that may read the redacted case and alert events of
    /// the stream AIRLOCK_NOTIFY through its own durable consumer, integrator-ID, and nothing else (repeatable); give
    /// `airlock serve --integrator ID` too, which creates that consumer.
    #[arg(long, value_name = "ID")]
    pub integrator: Vec<String>,
    /// The address nats-server listens on for clients.
    #[arg(long, default_value = "127.0.0.1:4222")]
    pub listen: String,
    /// Where nats-server keeps the JetStream store.
    #[arg(long, default_value = "/var/lib/nats/jetstream")]
    pub store_dir: String,
    /// The server's name (required by JetStream in a cluster).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Make the server a member of the cluster NAME, whose routes authenticate with a secret kept beside the seeds
    /// (seeds/cluster-route.secret, made once and kept): a server without it cannot join. Needs --route.
    #[arg(long, value_name = "NAME", requires = "route")]
    pub cluster: Option<String>,
    /// Where the server listens for routes (with --cluster).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6222", requires = "cluster")]
    pub cluster_listen: String,
    /// A cluster member's route address, HOST:PORT (repeatable; every member, this one included).
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    pub route: Vec<String>,
    /// Print what was written as JSON (fields: config, users[{role, id, public_key, seed_file, inbox_prefix, new}]).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Written {
    role: String,
    id: String,
    public_key: String,
    seed_file: String,
    inbox_prefix: String,
    /// Whether the key was made now (false: an existing seed was kept).
    new: bool,
}

pub fn run(args: NatsConfigArgs) -> u8 {
    let mut actors: Vec<(Role, String)> = Vec::new();
    let given = [
        (Role::Intake, &args.intake),
        (Role::Owner, &args.owner),
        (Role::Reviewer, &args.reviewer),
        (Role::Operator, &args.operator),
    ];
    for (role, ids) in given {
        for id in ids {
            if !actor_token_valid(id) {
                eprintln!("error: --{role} {id:?}: an actor id is 1 to 64 of A-Z a-z 0-9 - _");
                return exit::USAGE;
            }
            if actors.contains(&(role, id.clone())) {
                eprintln!("error: --{role} {id} is given twice");
                return exit::USAGE;
            }
            actors.push((role, id.clone()));
        }
    }
    for (index, id) in args.integrator.iter().enumerate() {
        if !actor_token_valid(id) || id == "airlock" {
            eprintln!("error: --integrator {id:?}: an integrator id is 1 to 64 of A-Z a-z 0-9 - _, and not airlock");
            return exit::USAGE;
        }
        if args.integrator[..index].contains(id) {
            eprintln!("error: --integrator {id} is given twice");
            return exit::USAGE;
        }
    }
    let mut texts = vec![("--listen", &args.listen), ("--store-dir", &args.store_dir)];
    texts.extend(args.cluster.iter().map(|name| ("--cluster", name)));
    texts.push(("--cluster-listen", &args.cluster_listen));
    texts.extend(args.route.iter().map(|route| ("--route", route)));
    for (name, value) in texts {
        if value.is_empty() || value.chars().any(|character| character.is_control() || "\"\\".contains(character)) {
            eprintln!("error: {name} must be non-empty, without quotes, backslashes or control characters");
            return exit::USAGE;
        }
    }
    for route in &args.route {
        let well_formed = route
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && !host.contains(['/', '@']) && port.parse::<u16>().is_ok());
        if !well_formed {
            eprintln!("error: --route {route:?}: a route is HOST:PORT (for example nats-2:6222)");
            return exit::USAGE;
        }
    }
    match write_all(&args, &actors) {
        Ok(written) => {
            report(&args, &written);
            exit::OK
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::FAILED
        }
    }
}

fn write_all(args: &NatsConfigArgs, actors: &[(Role, String)]) -> anyhow::Result<Vec<Written>> {
    let seeds = args.out.join("seeds");
    create_private_dir(&args.out, 0o755)?;
    create_private_dir(&seeds, 0o700)?;
    let mut written = Vec::new();
    let airlock = key_for(&seeds.join("airlock.nk"))?;
    written.push(entry("airlock", "airlock", &airlock, &seeds.join("airlock.nk")));
    let mut users = Vec::new();
    for (role, id) in actors {
        let path = seeds.join(format!("{role}.{id}.nk"));
        let key = key_for(&path)?;
        written.push(entry(role.name(), id, &key, &path));
        users.push(User { role: Some(*role), id: id.clone(), public_key: key.0 });
    }
    for id in &args.integrator {
        let path = seeds.join(format!("integrator.{id}.nk"));
        let key = key_for(&path)?;
        written.push(entry("integrator", id, &key, &path));
        users.push(User { role: None, id: id.clone(), public_key: key.0 });
    }
    let cluster = match &args.cluster {
        Some(name) => Some(ClusterSettings {
            name: name.clone(),
            listen: args.cluster_listen.clone(),
            routes: args.route.clone(),
            secret: route_secret(&seeds.join("cluster-route.secret"))?,
        }),
        None => None,
    };
    let private = cluster.is_some();
    let settings = ServerSettings {
        listen: args.listen.clone(),
        store_dir: args.store_dir.clone(),
        server_name: args.server_name.clone(),
        cluster,
    };
    let text = permissions::config(&settings, &airlock.0, &users);
    let path = args.out.join("nats.conf");
    let temporary = args.out.join("nats.conf.tmp");
    // Readable by its owner only when it holds the routes' secret; else it holds public keys alone.
    write_file(&temporary, text.as_bytes(), if private { 0o600 } else { 0o644 })?;
    std::fs::rename(&temporary, &path).map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    Ok(written)
}

fn entry(role: &str, id: &str, key: &(String, bool), path: &Path) -> Written {
    Written {
        role: role.to_string(),
        id: id.to_string(),
        public_key: key.0.clone(),
        seed_file: path.display().to_string(),
        inbox_prefix: permissions::inbox_prefix(&key.0),
        new: key.1,
    }
}

fn create_private_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))
}

/// Writes `bytes` to `path` (replacing it) with exactly `mode`, whatever the umask and the file's mode before.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    create_new(path, bytes, mode)
}

/// Writes `bytes` to a new file at `path` with exactly `mode`, created exclusively so that no other file is ever
/// overwritten (a seed and the routes' secret at 0600: only their owner can read them).
fn create_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))
}

/// The cluster's route secret at `path`: made once (32 random bytes, hex), in a file only its owner can read, and
/// kept on every later run, so that adding an actor never changes it under a running cluster.
fn route_secret(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let secret = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?
            .trim()
            .to_string();
        anyhow::ensure!(
            secret.len() >= 32 && secret.chars().all(|character| character.is_ascii_hexdigit()),
            "{} does not hold a route secret (hex, as `airlock nats-config --cluster` writes it)",
            path.display()
        );
        return Ok(secret);
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    create_new(path, format!("{secret}\n").as_bytes(), 0o600)?;
    Ok(secret)
}

/// The public key of the seed at `path`, and whether it was made now. An existing seed is kept as it is; a new one
/// is written to a file only its owner can read, created exclusively so that no other file is ever overwritten.
fn key_for(path: &Path) -> anyhow::Result<(String, bool)> {
    if path.exists() {
        let identity = Identity::load(path)?;
        return Ok((identity.public_key, false));
    }
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|_| anyhow::anyhow!("cannot encode a new nkey seed"))?;
    create_new(path, format!("{seed}\n").as_bytes(), 0o600)?;
    Ok((pair.public_key(), true))
}

fn report(args: &NatsConfigArgs, written: &[Written]) {
    let config = args.out.join("nats.conf").display().to_string();
    if args.json {
        let value = serde_json::json!({ "config": config, "users": written });
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON serializes"));
        return;
    }
    let cluster = match &args.cluster {
        Some(name) => format!("; cluster {name}, whose routes need its secret"),
        None => String::new(),
    };
    println!("wrote {config} ({} users; sync_interval: always; anonymous connections refused{cluster})", written.len());
    let header = ["ROLE", "ID", "SEED FILE", "KEY", "PUBLIC KEY"].map(String::from);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(written.iter().map(|user| {
            let kept = if user.new { "new" } else { "kept" };
            [user.role.clone(), user.id.clone(), user.seed_file.clone(), kept.to_string(), user.public_key.clone()]
        }))
        .collect();
    crate::cli::store::print_table(&rows);
    println!(
        "\nGive each actor its seed file, and nothing else; each must use the inbox prefix _INBOX.<its public key>.\n\
         airlock itself: airlock serve --nats nats://{} --nats-nkey {}",
        args.listen, written[0].seed_file
    );
}
