//! Issue 22, items 1 and 2: the container image and the compose deployment are wired as airlock expects, checked
//! everywhere (no Docker needed): every file a service mounts exists, the NATS nodes' configurations are valid for
//! nats-server with the users `airlock nats-config` writes from the compose file's own arguments, airlock's settings
//! in the compose file pass `airlock config check` against those files, every AIRLOCK_* name is one airlock reads,
//! every address, port, path and replica count agrees with the service it points at, and the image is non-root with
//! its data in a declared volume, CA certificates, a health check on /readyz and SIGTERM. Where a compose tool is
//! installed, `docker compose config` (or docker-compose's) validates the file too. (No container engine runs on the
//! CI machine, so `docker compose up` itself is not exercised here.) And every NATS configuration airlock writes for
//! the servers it starts itself is valid and durable.

use crate::common;
use clap::CommandFactory;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

fn nats_server_accepts(path: &Path) {
    let output = Command::new(airlock::nats::server::binary()).arg("-t").arg("-c").arg(path).output().unwrap();
    assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// docker-compose.yml, with its merge keys applied, as JSON.
fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    yaml.apply_merge().unwrap();
    serde_json::to_value(yaml).unwrap()
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"].get(name).unwrap_or_else(|| panic!("the compose file has a service {name}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(|item| item.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A service's volumes as (source, target).
fn mounts(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .iter()
        .map(|volume| {
            let mut parts = volume.split(':');
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        })
        .collect()
}

/// Where `source` (a named volume) is mounted in `service`.
fn mounted_at(service: &Value, source: &str) -> String {
    mounts(service)
        .into_iter()
        .find_map(|(from, to)| (from == source).then_some(to))
        .unwrap_or_else(|| panic!("{source} is mounted in {service}"))
}

/// The value after `flag` in a command line.
fn flag<'a>(command: &'a [String], flag: &str) -> &'a str {
    let at = command.iter().position(|arg| arg == flag).unwrap_or_else(|| panic!("{flag} in {command:?}"));
    &command[at + 1]
}

/// Every AIRLOCK_* variable `airlock serve` reads (its own flags' and the global ones'): what the image runs.
fn serve_variables() -> BTreeSet<String> {
    let mut command = airlock::cli::Cli::command();
    command.build();
    let serve = command.find_subcommand("serve").expect("a serve command").clone();
    command
        .get_arguments()
        .chain(serve.get_arguments())
        .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
        .collect()
}

/// The NATS services: those whose configuration is a deploy/nats file.
fn nats_services(compose: &Value) -> Vec<String> {
    compose["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, service)| mounts(service).iter().any(|(from, _)| from.starts_with("./deploy/nats/")))
        .map(|(name, _)| name.clone())
        .collect()
}

// Proves every bind mount names a file in the repository, and that the NATS nodes, started from their compose
// configuration with what the nats-config service writes from the compose file's own arguments, are valid for
// nats-server: the users are included (no anonymous access), sync_interval is always, each node is named as its
// service, the cluster's routes are every NATS service's and authenticate with the deployment's secret, monitoring
// stays on the container's loopback, and no node mounts the seeds.
#[test]
fn the_nats_nodes_take_the_users_nats_config_writes() {
    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        for (from, _) in mounts(service).into_iter().filter(|(from, _)| from.starts_with("./")) {
            assert!(repo().join(&from).is_file(), "{name} mounts {from}, which must exist");
        }
    }
    let nodes = nats_services(&compose);
    assert_eq!(nodes, ["nats-1", "nats-2", "nats-3"], "three NATS nodes");

    // What the one-shot service runs, run here into a folder laid out as the nodes mount it.
    let init = service(&compose, "nats-config");
    let command = strings(&init["command"]);
    assert_eq!(command[0], "nats-config");
    let out_in_container = flag(&command, "--out");
    assert_eq!(mounted_at(init, "nats-config"), out_in_container, "nats-config writes into its volume");
    assert_eq!(mounted_at(init, "nats-seeds"), format!("{out_in_container}/seeds"), "the seeds in their own");
    let routes: Vec<&str> =
        command.windows(2).filter(|pair| pair[0] == "--route").map(|pair| pair[1].as_str()).collect();
    let route_port = flag(&command, "--cluster-listen").rsplit(':').next().unwrap();
    let wanted: Vec<String> = nodes.iter().map(|node| format!("{node}:{route_port}")).collect();
    assert_eq!(routes, wanted, "a route to every NATS service, on the port they listen on");
    let scratch = common::scratch();
    let generated = scratch.path().join("etc-nats");
    let mut args: Vec<String> = command.clone();
    let at = args.iter().position(|arg| arg == "--out").unwrap();
    args[at + 1] = generated.join("airlock").display().to_string();
    let written = Command::new(AIRLOCK).args(&args).output().unwrap();
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let included = std::fs::read_to_string(generated.join("airlock/nats.conf")).unwrap();
    assert!(included.contains("sync_interval: always") && included.contains("authorization {"), "{included}");
    assert!(!included.contains("no_auth_user"), "no anonymous access");
    assert!(included.contains(&format!("listen: \"{}\"", flag(&command, "--listen"))));
    let secret = std::fs::read_to_string(generated.join("airlock/seeds/cluster-route.secret")).unwrap();
    for route in &routes {
        let url = format!("\"nats-route://route:{}@{route}\"", secret.trim());
        assert!(included.contains(&url), "the route to {route} carries the secret");
    }
    assert!(included.contains(&format!("password: \"{}\"", secret.trim())), "and routes must present it");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(generated.join("airlock/nats.conf")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the file holding the routes' secret is its owner's alone");

    for node in &nodes {
        let node_service = service(&compose, node);
        let config_mount =
            mounts(node_service).into_iter().find(|(from, _)| from.starts_with("./deploy/nats/")).unwrap();
        assert_eq!(config_mount.1, "/etc/nats/nats.conf");
        assert_eq!(strings(&node_service["command"]), ["-c", "/etc/nats/nats.conf"]);
        assert_eq!(mounted_at(node_service, "nats-config"), "/etc/nats/airlock", "where the include points");
        assert!(mounts(node_service).iter().all(|(from, _)| from != "nats-seeds"), "{node} holds no seed");
        let store = flag(&command, "--store-dir");
        let data = mounts(node_service).into_iter().find(|(from, _)| from == &format!("{node}-data")).unwrap().1;
        assert!(store.starts_with(&format!("{data}/")), "the JetStream store {store} is in {node}'s volume {data}");
        let text = std::fs::read_to_string(repo().join(&config_mount.0)).unwrap();
        assert!(text.contains("include ./airlock/nats.conf"), "{node} includes the users");
        assert!(text.contains(&format!("server_name: {node}\n")), "{node} is named as its service");
        assert!(text.contains("http: 127.0.0.1:8222"), "{node}'s monitoring answers on its loopback only");
        assert!(!text.contains("cluster {") && !text.contains("nats-route"), "the cluster comes from the include");
        std::fs::write(generated.join("nats.conf"), &text).unwrap();
        nats_server_accepts(&generated.join("nats.conf"));
    }
}

// Proves airlock's service is wired to the others: every AIRLOCK_* name is one airlock reads, its NATS URLs are the
// NATS services on the port nats-config made them listen on, its seed is airlock's in the nats-config volume, as many
// replicas as nodes, SMTP to the mail catcher over loopback in the catcher's network namespace, the owners' page on
// a port that namespace publishes, its data in the image's volume; and the settings pass `airlock config check`
// with the files they name (the generated seed).
#[test]
fn airlock_is_wired_to_nats_mail_and_its_volumes() {
    let compose = compose();
    let airlock = service(&compose, "airlock");
    let environment = airlock["environment"].as_object().unwrap();
    let known = serve_variables();
    for name in environment.keys().filter(|name| name.starts_with("AIRLOCK_")) {
        assert!(known.contains(name), "{name} is a variable airlock reads: {known:?}");
    }
    let setting = |name: &str| environment[name].as_str().unwrap_or_else(|| panic!("{name} is a string")).to_string();

    let init = strings(&service(&compose, "nats-config")["command"]);
    let port = flag(&init, "--listen").rsplit(':').next().unwrap().to_string();
    let nodes = nats_services(&compose);
    let urls: Vec<String> = nodes.iter().map(|node| format!("nats://{node}:{port}")).collect();
    assert_eq!(setting("AIRLOCK_NATS_URL"), urls.join(","));
    assert_eq!(setting("AIRLOCK_REPLICAS"), nodes.len().to_string());
    let seeds_at = mounted_at(airlock, "nats-seeds");
    assert_eq!(seeds_at, format!("{}/seeds", flag(&init, "--out")));
    assert_eq!(setting("AIRLOCK_NATS_NKEY"), format!("{seeds_at}/airlock.nk"));
    assert!(mounts(airlock).iter().all(|(from, _)| from != "nats-config"), "airlock needs its seed, not nats.conf");

    // Plaintext SMTP only to loopback: the mail catcher listens there, in the namespace airlock shares.
    assert_eq!(airlock["network_mode"], "service:mail");
    let mail = service(&compose, "mail");
    let smtp_bind = mail["environment"]["MP_SMTP_BIND_ADDR"].as_str().unwrap();
    let smtp = setting("AIRLOCK_SMTP_URL");
    assert!(smtp.starts_with(&format!("smtp://{smtp_bind}?from=")), "{smtp} goes to the catcher at {smtp_bind}");
    let http_port = setting("AIRLOCK_HTTP").rsplit(':').next().unwrap().to_string();
    let published = strings(&mail["ports"]);
    assert!(published.contains(&format!("127.0.0.1:{http_port}:{http_port}")), "the owners' page is published");
    assert!(setting("AIRLOCK_PUBLIC_URL").ends_with(&format!(":{http_port}")));
    let inbox_port = mail["environment"]["MP_UI_BIND_ADDR"].as_str().unwrap().rsplit(':').next().unwrap();
    assert!(published.contains(&format!("127.0.0.1:{inbox_port}:{inbox_port}")), "the catcher's inbox is published");
    for service in compose["services"].as_object().unwrap().values() {
        for port in strings(&service["ports"]) {
            assert!(port.starts_with("127.0.0.1:"), "{port}: published on the host's loopback only");
        }
    }
    assert_eq!(strings(&service(&compose, "nats-1")["ports"]), [format!("127.0.0.1:{port}:{port}")]);

    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let data_dir = "/var/lib/airlock";
    assert_eq!(mounted_at(airlock, "airlock-data"), data_dir);
    assert!(dockerfile.contains(&format!("VOLUME [\"{data_dir}\"]")));
    let depends: Vec<&String> = airlock["depends_on"].as_object().unwrap().keys().collect();
    for needed in nodes.iter().chain([&"nats-config".to_string(), &"mail".to_string()]) {
        assert!(depends.contains(&needed), "airlock starts after {needed}");
    }
    assert_eq!(airlock["depends_on"]["nats-config"]["condition"], "service_completed_successfully");

    // The settings themselves, with the files they name made here as nats-config makes them.
    let scratch = common::scratch();
    let seeds = scratch.path().join("nats");
    let made = Command::new(AIRLOCK).args(["nats-config", "--out"]).arg(&seeds).output().unwrap();
    assert!(made.status.success());
    let mut check = Command::new(AIRLOCK);
    check.args(["config", "check", "--json"]);
    common::without_airlock_variables(&mut check);
    for (name, value) in environment.iter().filter(|(name, _)| name.starts_with("AIRLOCK_")) {
        check.env(name, value.as_str().unwrap());
    }
    check.env("AIRLOCK_NATS_NKEY", seeds.join("seeds/airlock.nk")).env("AIRLOCK_DATA_DIR", scratch.path());
    let checked = check.output().unwrap();
    let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["valid"], true);
}

// Proves the image is what a team can run: built from a release build with the archives' settings, non-root,
// with CA certificates, its data directory declared as a volume, set in AIRLOCK_DATA_DIR and the working directory,
// owned by its user, the manual pages installed, a health check on /readyz at the probes' address, SIGTERM, and
// every AIRLOCK_* it sets one airlock reads.
#[test]
fn the_image_is_non_root_with_certificates_a_volume_and_a_health_check() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().filter(|line| !line.trim_start().starts_with('#')).collect();
    let text = lines.join("\n");
    let stages = lines.iter().filter(|line| line.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "multi-stage: a build stage and a small runtime");
    let runtime = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(runtime.contains("FROM debian:bookworm-slim"));
    assert!(runtime.contains("ca-certificates"), "CA certificates for smtps://, webhooks, OIDC, SCIM");
    assert!(text.contains("cargo build --release --locked --bin airlock --target \"$target\""));
    assert!(text.contains("target=\"$(uname -m)-unknown-linux-musl\""), "the archives' static musl build");
    assert!(runtime.contains("COPY --from=build /airlock /usr/local/bin/airlock"));
    assert!(text.contains("CARGO_PROFILE_RELEASE_DEBUG=0") && text.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"));
    let release_script = std::fs::read_to_string(repo().join("scripts/release.sh")).unwrap();
    assert!(
        release_script.contains("CARGO_PROFILE_RELEASE_DEBUG=0")
            && release_script.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"),
        "the image's binary is built as the archives' are"
    );
    let user = runtime.lines().find_map(|line| line.strip_prefix("USER ")).expect("a USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "non-root: {user}");
    let uid = user.split(':').next().unwrap();
    assert!(runtime.contains(&format!("--uid {uid}")), "the user {uid} exists");
    let data_dir = "/var/lib/airlock";
    assert!(runtime.contains(&format!("WORKDIR {data_dir}")));
    assert!(runtime.contains(&format!("AIRLOCK_DATA_DIR={data_dir}")));
    assert!(runtime.contains(&format!("VOLUME [\"{data_dir}\"]")));
    assert!(runtime.contains(&format!("chown airlock:airlock {data_dir}")), "the data directory is the user's");
    assert!(
        runtime.contains("/etc/airlock/nats/seeds") && runtime.contains("chmod 0700 /etc/airlock/nats/seeds"),
        "a fresh seeds volume starts out as the user's alone"
    );
    assert!(runtime.contains("/usr/local/share/man/man1/"), "the manual pages are installed");
    assert!(runtime.contains("STOPSIGNAL SIGTERM"));
    let known = serve_variables();
    let set: Vec<&str> = runtime
        .split(|character: char| character.is_whitespace() || character == '\\')
        .filter_map(|word| word.split_once('=').map(|(name, _)| name))
        .filter(|name| name.starts_with("AIRLOCK_"))
        .collect();
    assert!(!set.is_empty());
    for name in &set {
        assert!(known.contains(*name), "{name} is a variable airlock reads");
    }
    let metrics = runtime
        .split_whitespace()
        .find_map(|word| word.strip_prefix("AIRLOCK_METRICS="))
        .expect("the probes' address is set");
    let health = runtime.lines().skip_while(|line| !line.starts_with("HEALTHCHECK")).take(2).collect::<String>();
    assert!(health.contains(&format!("http://{metrics}/readyz")), "the health check asks /readyz at {metrics}");
    assert!(runtime.contains("apt-get install -y --no-install-recommends ca-certificates curl"), "curl for it");
    assert!(runtime.contains("ENTRYPOINT [\"airlock\"]"));
    let ignored = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for kept_out in ["target", ".git", "airlock-data", "*.nk", "dist"] {
        assert!(ignored.lines().any(|line| line == kept_out), "{kept_out} stays out of the build context");
    }
}

/// A compose tool, if this machine has one: `docker compose` (v2), else docker-compose (v1).
fn compose_tool() -> Option<Vec<&'static str>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program).args(args).output().map(|output| output.status.success()).unwrap_or(false)
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

// Proves the compose tool itself accepts the file (schema, merge keys, depends_on conditions), where one is
// installed; scripts/test.sh installs Debian's docker-compose.
#[test]
fn the_compose_tool_validates_the_file_where_it_is_installed() {
    let Some(tool) = compose_tool() else {
        assert!(std::env::var_os("CI").is_none(), "scripts/test.sh installs a compose tool for CI");
        eprintln!("no compose tool here: the wiring tests above are what checks the file");
        return;
    };
    let file: PathBuf = repo().join("docker-compose.yml");
    let validated = Command::new(tool[0])
        .args(&tool[1..])
        .arg("--file")
        .arg(&file)
        .args(["config", "--quiet"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(validated.status.success(), "{tool:?} config: {}", String::from_utf8_lossy(&validated.stderr));
}

// Proves the configuration airlock writes for the servers it starts itself is valid and durable, alone and clustered.
#[test]
fn generated_nats_configs_are_valid_and_durable() {
    let directory = tempfile::tempdir().unwrap();
    let member = airlock::nats::server::ClusterMember {
        cluster_name: "c".into(),
        server_name: "n1".into(),
        route_port: 16222,
        peers: vec![16222, 16223, 16224],
    };
    for (name, cluster) in [("single", None), ("member", Some(&member))] {
        let text = airlock::nats::server::config(14222, &directory.path().join("js"), cluster);
        assert!(text.contains("sync_interval: always"));
        assert!(text.contains("listen: 127.0.0.1:14222"), "loopback only");
        let path = directory.path().join(format!("{name}.conf"));
        std::fs::write(&path, text).unwrap();
        nats_server_accepts(&path);
    }
}

/// Variables `serve` is given, the exit code it must stop with, and what its error must say.
type Variant<'a> = (Vec<(&'a str, &'a str)>, i32, Vec<&'a str>);

/// Runs `airlock serve` configured by `variables` alone, as a container is, and returns its exit code and what it
/// printed; fails the test if it does not stop by itself.
fn serve_with(data: &Path, variables: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(AIRLOCK);
    command.arg("serve").current_dir(data);
    common::without_airlock_variables(&mut command);
    command.env("AIRLOCK_DATA_DIR", data.join("data")).env("HOME", data);
    for (name, value) in variables {
        command.env(name, value);
    }
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut status = None;
    common::wait_for(
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
        "serve to stop on a refused setting",
    );
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (status.unwrap().code(), said)
}

// Proves a setting the container's process refuses, or one that is missing, stops `airlock serve` at once with an
// error naming the flag and the variable to fix, and an exit code (2: the command line; 3: a dependency), never a
// silent start or a crash: each variant of a setting airlock reads from the environment, including NATS refusing a
// connection without a user's key, and a key file holding no seed (whose text is not echoed).
#[test]
fn a_refused_or_missing_setting_stops_serve_naming_its_variable() {
    let scratch = common::scratch();
    let port = airlock::nats::server::free_port().unwrap();
    let written = Command::new(AIRLOCK)
        .args(["nats-config", "--out"])
        .arg(scratch.path().join("nats"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--store-dir"])
        .arg(scratch.path().join("jetstream"))
        .output()
        .unwrap();
    assert!(written.status.success());
    let _server = airlock::nats::server::NatsServer::start_with_config(
        &scratch.path().join("nats/nats.conf"),
        port,
        &scratch.path().join("nats-logs"),
    )
    .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let not_a_seed = scratch.path().join("not-a-seed.nk");
    std::fs::write(&not_a_seed, "SUsecret-looking-text\n").unwrap();
    let blocked = scratch.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let data_under_a_file = blocked.join("data");
    let variants: Vec<Variant> = vec![
        (
            vec![("AIRLOCK_NATS_URL", &url)],
            3,
            vec!["--nats: cannot reach NATS", "set by: --nats or AIRLOCK_NATS_URL; --nats-nkey or AIRLOCK_NATS_NKEY"],
        ),
        (
            vec![("AIRLOCK_NATS_URL", &url), ("AIRLOCK_NATS_NKEY", "/nonexistent/airlock.nk")],
            3,
            vec![
                "--nats-nkey: cannot read the nkey seed file /nonexistent/airlock.nk",
                "set by: --nats-nkey or AIRLOCK_NATS_NKEY",
            ],
        ),
        (
            vec![("AIRLOCK_NATS_URL", &url), ("AIRLOCK_NATS_NKEY", not_a_seed.to_str().unwrap())],
            3,
            vec!["--nats-nkey:", "does not hold a NATS user nkey seed", "set by: --nats-nkey or AIRLOCK_NATS_NKEY"],
        ),
        (
            vec![("AIRLOCK_DATA_DIR", data_under_a_file.to_str().unwrap())],
            3,
            vec!["--data-dir: cannot create", "set by: --data-dir or AIRLOCK_DATA_DIR"],
        ),
        (
            vec![("AIRLOCK_REPLICAS", "three")],
            2,
            vec!["'--replicas <REPLICAS>'", "set by: --replicas or AIRLOCK_REPLICAS"],
        ),
        (
            vec![("AIRLOCK_SMTP_URL", "smtp://mail.example.com:25?from=recovery@example.com")],
            3,
            vec!["--smtp refused: refusing plaintext SMTP", "set by: --smtp or AIRLOCK_SMTP_URL"],
        ),
        (
            vec![("AIRLOCK_SMS_SECRETS", "/etc/airlock/sms-secrets")],
            3,
            vec![
                "--sms-secrets goes with --sms-url",
                "set by: --sms-secrets or AIRLOCK_SMS_SECRETS; --sms-url or AIRLOCK_SMS_URL",
            ],
        ),
        (vec![("AIRLOCK_HTTP", "not-an-address")], 2, vec!["set by: --http or AIRLOCK_HTTP"]),
    ];
    for (variables, code, wanted) in variants {
        let (exited, said) = serve_with(scratch.path(), &variables);
        assert_eq!(exited, Some(code), "{variables:?}: {said}");
        for text in wanted {
            assert!(said.contains(text), "{variables:?}: {text:?} in {said}");
        }
        assert!(!said.contains("secret-looking-text"), "a key file's text is never echoed: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
}

// Proves the cluster `airlock nats-config --cluster` writes forms with its routes' secret and keeps out a server
// without it: three servers, each including the configuration written for it (one set of seeds and one secret, as
// the compose file's one-shot service writes them), elect a JetStream leader among themselves; a fourth with routes
// to them but not the secret is refused by the members (authentication error) and never joins.
#[test]
fn the_cluster_forms_with_its_secret_and_refuses_a_server_without_it() {
    use airlock::nats::server::{NatsServer, free_port};
    let scratch = common::scratch();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port().unwrap(), free_port().unwrap())).collect();
    let mut args = vec!["--cluster".to_string(), "test".to_string()];
    for (_, route) in &ports {
        args.extend(["--route".to_string(), format!("127.0.0.1:{route}")]);
    }
    let mut members = Vec::new();
    for (index, (client, route)) in ports.iter().enumerate() {
        let out = scratch.path().join(format!("n{index}"));
        if index > 0 {
            // Every member takes the first one's seeds and secret, as the compose file's members share one volume.
            std::fs::create_dir_all(out.join("seeds")).unwrap();
            for entry in std::fs::read_dir(scratch.path().join("n0/seeds")).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), out.join("seeds").join(entry.file_name())).unwrap();
            }
        }
        let written = Command::new(AIRLOCK)
            .args(["nats-config", "--out"])
            .arg(&out)
            .args(["--listen", &format!("127.0.0.1:{client}"), "--store-dir"])
            .arg(out.join("jetstream"))
            .args(["--cluster-listen", &format!("127.0.0.1:{route}")])
            .args(&args)
            .output()
            .unwrap();
        assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
        std::fs::write(out.join("node.conf"), format!("include ./nats.conf\nserver_name: n{index}\n")).unwrap();
        members.push(NatsServer::start_with_config(&out.join("node.conf"), *client, &out.join("logs")).unwrap());
    }
    let log = |index: usize| {
        let (client, _) = ports[index];
        std::fs::read_to_string(scratch.path().join(format!("n{index}/logs/nats-{client}.log"))).unwrap_or_default()
    };
    for index in 0..3 {
        common::wait_for(
            || {
                let text = log(index);
                text.contains("new metadata leader") || text.contains("Self is new JetStream cluster metadata leader")
            },
            "the members to elect a JetStream leader among themselves",
        );
    }

    let rogue = scratch.path().join("rogue");
    std::fs::create_dir_all(&rogue).unwrap();
    let rogue_port = free_port().unwrap();
    let config = format!(
        "listen: 127.0.0.1:{rogue_port}\nserver_name: rogue\njetstream {{ store_dir: {:?} }}\ncluster {{\n  name: test\n  \
         listen: 127.0.0.1:{}\n  routes: [ nats-route://127.0.0.1:{} ]\n}}\n",
        rogue.join("jetstream").display().to_string(),
        free_port().unwrap(),
        ports[0].1
    );
    std::fs::write(rogue.join("rogue.conf"), config).unwrap();
    let _rogue = NatsServer::start_with_config(&rogue.join("rogue.conf"), rogue_port, &rogue).unwrap();
    let rogue_log = || std::fs::read_to_string(rogue.join(format!("nats-{rogue_port}.log"))).unwrap_or_default();
    common::wait_for(
        || rogue_log().contains("Authorization Violation") && log(0).contains("Authentication Failure"),
        "the member to refuse the route without the secret",
    );
    for index in 0..3 {
        assert!(!log(index).contains("rogue"), "n{index} never took the rogue server as a peer: {}", log(index));
    }
    assert!(!rogue_log().contains("new metadata leader"), "the rogue server joined no JetStream cluster");
    drop(members);
}
