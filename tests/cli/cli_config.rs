//! The command line as a whole, driven through the binary: every command's `--help` has examples, every read command
//! answers `--json`, shell completions load, and configuration comes from a TOML file with the environment over it and
//! flags over both, checked by `airlock config check` without showing a password.

use crate::common;

use clap::CommandFactory;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], environment: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
    command.args(args).env_remove("AIRLOCK_CONFIG").env_remove("AIRLOCK_DATA_DIR").env_remove("AIRLOCK_REVIEWER");
    command.envs(environment.iter().copied()).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Every command a user can run: the paths to the leaves of the command tree.
fn leaves(command: &clap::Command, path: Vec<String>, found: &mut Vec<Vec<String>>) {
    let subcommands: Vec<&clap::Command> = command.get_subcommands().filter(|sub| sub.get_name() != "help").collect();
    if subcommands.is_empty() {
        found.push(path);
        return;
    }
    for sub in subcommands {
        let mut deeper = path.clone();
        deeper.push(sub.get_name().to_string());
        leaves(sub, deeper, found);
    }
}

// Proves every command's --help (read from the binary, as a user would) ends with examples that start with `airlock`
// and name the command itself.
#[test]
fn every_command_has_help_with_examples() {
    let mut found = Vec::new();
    leaves(&airlock::cli::Cli::command(), Vec::new(), &mut found);
    assert!(found.len() >= 20, "{found:?}");
    let mut missing = Vec::new();
    for path in &found {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = run(&args, &[]);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        let help = stdout(&output);
        let examples = help.split_once("Examples:\n").map(|(_, examples)| examples);
        let named = format!("airlock {}", path.join(" "));
        let good = examples.is_some_and(|examples| {
            let lines: Vec<&str> = examples.lines().take_while(|line| !line.trim().is_empty()).collect();
            !lines.is_empty() && lines.iter().any(|line| line.contains(&named))
        });
        if !good {
            missing.push(path.join(" "));
        }
    }
    assert!(missing.is_empty(), "commands without examples of themselves in --help: {missing:?}");
}

/// `airlock ARGS --json` on `data` (none for commands that read no store): it must succeed and print one JSON value.
fn json(data: Option<&Path>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    if let Some(data) = data {
        all.extend(["--data-dir", data.to_str().unwrap()]);
    }
    let output = run(&all, &[]);
    assert_eq!(output.status.code(), Some(0), "{all:?}: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|_| panic!("{all:?} did not print JSON: {}", stdout(&output)))
}

// Proves every read command answers --json with its documented top-level shape, on the demo's kept store.
#[test]
fn every_read_command_answers_json() {
    let scratch = common::scratch();
    let data = scratch.path().join("demo");
    let demo = run(&["demo", "--keep", "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(demo.status.code(), Some(0), "{}", stderr(&demo));
    let cases = json(Some(&data), &["case", "list"]);
    let case_id = cases["items"][0]["case_id"].as_str().unwrap().to_string();
    assert!(json(Some(&data), &["case", "show", &case_id])["next_steps"].is_array());
    assert!(json(Some(&data), &["case", "history", &case_id])["events"].is_array());
    assert_eq!(json(Some(&data), &["review", "list"])["more"], false);
    let queued = json(Some(&data), &["review", "list"])["items"][0]["case_id"].as_str().unwrap().to_string();
    assert!(json(Some(&data), &["review", "show", &queued])["action_hash"].is_string());
    assert!(json(Some(&data), &["outbox"])["items"].is_array());
    assert_eq!(json(Some(&data), &["audit", "verify"])["differences"], serde_json::json!([]));
    assert_eq!(json(Some(&data), &["replay", "--verify"])["clean"], true);
    assert!(json(Some(&data), &["replay", "--as-of", "0s"])["states"].is_object());
    let table = json(None, &["fsm"]);
    assert_eq!(table["initial"], "none");
    assert!(table["transitions"].as_array().unwrap().iter().any(|edge| edge["on"] == "cooling_off_started"));
    let tests = json(None, &["policy", "test"]);
    assert_eq!(tests["failed"], 0, "{tests}");
    assert!(tests["passed"].as_u64().unwrap() > 0, "{tests}");
    assert!(json(None, &["config", "check"])["settings"].is_array());

    // A read that fails says so in JSON too, with a stable code, whatever the command.
    let nowhere = scratch.path().join("nowhere");
    let nowhere = nowhere.to_str().unwrap();
    let failures: [(&[&str], &str); 8] = [
        (&["case", "show", "case-nope", "--data-dir", nowhere], "unavailable"),
        (&["case", "show", "case-nope", "--data-dir", data.to_str().unwrap()], "not_found"),
        (&["case", "history", "case-nope", "--data-dir", data.to_str().unwrap()], "not_found"),
        (&["review", "list", "--data-dir", nowhere], "unavailable"),
        (&["outbox", "--data-dir", nowhere], "unavailable"),
        (&["audit", "verify", "--data-dir", nowhere], "unavailable"),
        (&["replay", "--verify", "--data-dir", nowhere], "unavailable"),
        (&["replay", "--as-of", "someday", "--data-dir", nowhere], "invalid_value"),
    ];
    for (args, code) in failures {
        let output = run(&[args, &["--json"]].concat(), &[]);
        assert_ne!(output.status.code(), Some(0), "{args:?}");
        let answer: Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|_| panic!("{args:?} printed no JSON error: {}", stdout(&output)));
        assert_eq!(answer["error"]["code"], code, "{args:?}: {answer}");
        assert!(answer["error"]["reason"].as_str().is_some_and(|reason| !reason.is_empty()), "{answer}");
    }
}

// Proves the completion scripts: bash's loads in a real bash and registers a completion for airlock that offers the
// subcommands; every other shell's script names airlock; an unknown shell is a usage error (exit 2).
#[test]
fn completions_load_in_the_shell() {
    let bash = run(&["completions", "bash"], &[]);
    assert_eq!(bash.status.code(), Some(0), "{}", stderr(&bash));
    let scratch = common::scratch();
    let script = scratch.path().join("airlock.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let probe = format!(
        "source {}; complete -p airlock; COMP_WORDS=(airlock re); COMP_CWORD=1; COMP_LINE='airlock re'; \
         COMP_POINT=10; _airlock airlock re airlock; echo \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let loaded = Command::new("bash").args(["--norc", "-c", &probe]).output().unwrap();
    let said = stdout(&loaded);
    assert!(loaded.status.success(), "{said} {}", String::from_utf8_lossy(&loaded.stderr));
    assert!(
        said.lines().next().is_some_and(|line| line.contains("-F _airlock") && line.ends_with(" airlock")),
        "{said}"
    );
    let offered = said.lines().last().unwrap_or_default();
    for expected in ["replay", "review", "resume"] {
        assert!(offered.split_whitespace().any(|word| word == expected), "{expected} not offered: {offered}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = run(&["completions", shell], &[]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(stdout(&output).contains("airlock"), "{shell}");
    }
    assert_eq!(run(&["completions", "tcsh"], &[]).status.code(), Some(2));
}

// Proves the configuration file and its precedence: a value from the file is used (its data_dir is where
// `case list` reads), the environment overrides the file, a flag overrides both; `config check` shows each value's
// source, masks the SMTP password, flags it in a file others can read, and exits 1 on a misspelt key or a bad value
// (naming the line); every other command refuses to start on a bad file (exit 2); no file means the defaults.
#[test]
fn configuration_comes_from_a_file_the_environment_and_flags() {
    let scratch = common::scratch();
    let from_file = scratch.path().join("from-file");
    let from_env = scratch.path().join("from-env");
    let from_flag = scratch.path().join("from-flag");
    for (directory, account) in [(&from_file, "ana"), (&from_env, "ben"), (&from_flag, "cid")] {
        common::import_accounts(directory, serde_json::json!([common::threats::email_account(account)]));
        let body = common::threats::request_body(
            "c-1",
            account,
            common::threats::reset_password(),
            "locked out",
            serde_json::json!({}),
        );
        let (code, reply) = common::submit(directory, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
    }
    let file = scratch.path().join("airlock.toml");
    std::fs::write(&file, format!("data_dir = {:?}\nreviewer = \"ana\"\n", from_file.to_str().unwrap())).unwrap();
    let file_arg = file.to_str().unwrap();
    let account_listed = |output: &Output| -> String {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
        let listed: Value = serde_json::from_str(&stdout(output)).unwrap();
        listed["items"][0]["account_id"].as_str().unwrap().to_string()
    };
    let env_dir = [("AIRLOCK_DATA_DIR", from_env.to_str().unwrap())];
    assert_eq!(account_listed(&run(&["--config", file_arg, "case", "list", "--json"], &[])), "ana");
    assert_eq!(account_listed(&run(&["case", "list", "--json"], &[("AIRLOCK_CONFIG", file_arg)])), "ana");
    assert_eq!(account_listed(&run(&["--config", file_arg, "case", "list", "--json"], &env_dir)), "ben");
    let flagged = ["--config", file_arg, "case", "list", "--json", "--data-dir", from_flag.to_str().unwrap()];
    assert_eq!(account_listed(&run(&flagged, &env_dir)), "cid");

    let check = |environment: &[(&str, &str)]| -> (i32, Value) {
        let output = run(&["config", "check", "--config", file_arg, "--json"], environment);
        (output.status.code().unwrap(), serde_json::from_str(&stdout(&output)).unwrap())
    };
    let setting = |report: &Value, key: &str| -> (Value, Value) {
        let found = report["settings"].as_array().unwrap().iter().find(|setting| setting["key"] == key).unwrap();
        (found["value"].clone(), found["source"].clone())
    };
    let (code, report) = check(&[]);
    assert_eq!((code, &report["valid"]), (0, &Value::Bool(true)), "{report}");
    assert_eq!(setting(&report, "data_dir"), (from_file.to_str().unwrap().into(), "file".into()));
    assert_eq!(setting(&report, "reviewer"), ("ana".into(), "file".into()));
    assert_eq!(setting(&report, "nats_url"), (Value::Null, "default".into()));
    let (_, report) = check(&[("AIRLOCK_REVIEWER", "bo")]);
    assert_eq!(setting(&report, "reviewer"), ("bo".into(), "environment".into()));
    let (code, report) = check(&[("AIRLOCK_TICK", "often")]);
    assert_eq!(code, 1, "{report}");
    assert!(report["problems"][0]["problem"].as_str().unwrap().contains("from the environment"), "{report}");

    let password = "hunter2-not-for-logs";
    let secret = format!("smtp_url = \"smtps://bot:{password}@mail.example.com?from=r@example.com\"\n");
    std::fs::write(&file, &secret).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let shown = run(&["config", "check", "--config", file_arg], &[]);
    let both = format!("{}{}", stdout(&shown), stderr(&shown));
    assert!(!both.contains(password), "the password was shown: {both}");
    assert!(both.contains("smtps://bot:***@mail.example.com"), "{both}");
    assert_eq!(shown.status.code(), Some(1), "{both}");
    assert!(both.contains("readable by others"), "{both}");
    let help = run(&["--config", file_arg, "serve", "--help"], &[]);
    assert!(!stdout(&help).contains(password), "the password was shown in --help");
    #[cfg(unix)]
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(run(&["config", "check", "--config", file_arg], &[]).status.code(), Some(0));

    std::fs::write(&file, "data_dri = \"/tmp\"\n").unwrap();
    let (code, report) = check(&[]);
    assert_eq!(code, 1, "{report}");
    let problem = report["problems"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("line 1") && problem.contains("data_dri"), "{problem}");
    let refused = run(&["--config", file_arg, "case", "list"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("airlock config check"), "{}", stderr(&refused));
    let none = run(&["config", "check", "--json"], &[]);
    assert_eq!(none.status.code(), Some(0), "{}", stderr(&none));
}

// Proves issue 17's contexts: `context save` refuses a seed file others can read (and says to chmod it), saves one
// that is private, `context ls` lists it; a context fills in the data directory for `--context NAME`, for the one
// `context use` chose, and loses to a flag; and once its seed file becomes readable by others, every command that
// would use the context refuses to start (exit 2).
#[test]
fn contexts_name_a_deployment_and_a_private_key() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = common::scratch();
    let contexts = scratch.path().join("contexts");
    let contexts = contexts.to_str().unwrap();
    let environment = [("AIRLOCK_CONTEXTS_DIR", contexts)];
    let data = scratch.path().join("lab-data");
    common::import_accounts(&data, serde_json::json!([common::threats::email_account("acct-1")]));
    let body = common::threats::request_body(
        "c-1",
        "acct-1",
        common::threats::reset_password(),
        "locked out",
        serde_json::json!({}),
    );
    let (code, reply) = common::submit(&data, "intake:desk", "request-recovery", body.to_string().as_bytes());
    assert_eq!(code, 0, "{reply}");

    let seed = scratch.path().join("operator.ops.nk");
    std::fs::write(&seed, format!("{}\n", nkeys::KeyPair::new_user().seed().unwrap())).unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let save = ["context", "save", "prod", "--nats", "nats://127.0.0.1:4222", "--nats-nkey", seed.to_str().unwrap()];
    let refused = run(&save, &environment);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("chmod 600"), "{}", stderr(&refused));
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let saved = run(&save, &environment);
    assert_eq!(saved.status.code(), Some(0), "{}", stderr(&saved));
    let lab = run(&["context", "save", "lab", "--data-dir", data.to_str().unwrap()], &environment);
    assert_eq!(lab.status.code(), Some(0), "{}", stderr(&lab));
    let listed: Value = serde_json::from_str(&stdout(&run(&["context", "ls", "--json"], &environment))).unwrap();
    let names: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|item| item["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lab", "prod"], "{listed}");

    // The lab context names the data directory: the case is there; a flag still wins.
    let cases = |args: &[&str]| -> Value {
        let output = run(&[&["case", "list", "--json"][..], args].concat(), &environment);
        serde_json::from_str(&stdout(&output)).unwrap_or(Value::Null)
    };
    assert_eq!(cases(&["--context", "lab"])["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(run(&["context", "use", "lab"], &environment).status.code(), Some(0));
    assert_eq!(cases(&[])["items"].as_array().map(Vec::len), Some(1), "the context in use");
    let elsewhere = scratch.path().join("elsewhere");
    let flagged = cases(&["--data-dir", elsewhere.to_str().unwrap()]);
    assert_eq!(flagged["error"]["code"], "unavailable", "{flagged}");
    assert!(flagged["error"]["reason"].as_str().unwrap().contains("elsewhere"), "a flag wins over the context");

    // A key that became readable by others is refused wherever the context would be used.
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o640)).unwrap();
    let stale = run(&["--context", "prod", "review", "list"], &environment);
    assert_eq!(stale.status.code(), Some(2), "{}", stderr(&stale));
    assert!(stderr(&stale).contains("can be read by others"), "{}", stderr(&stale));
    let unknown = run(&["--context", "nope", "case", "list"], &environment);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no context \"nope\""), "{}", stderr(&unknown));
}

/// Every `AIRLOCK_*` variable an argument of `command` or its subcommands reads.
fn environment_variables(command: &clap::Command, found: &mut std::collections::BTreeSet<String>) {
    for argument in command.get_arguments() {
        if let Some(variable) = argument.get_env() {
            found.insert(variable.to_string_lossy().into_owned());
        }
    }
    for subcommand in command.get_subcommands() {
        environment_variables(subcommand, found);
    }
}

// Proves the file can hold every setting of `airlock serve` (and every other command): each `AIRLOCK_*` variable a
// flag reads has its key in the file, except the ones that are per-invocation by nature (the context to use, the file
// itself); and the keys added for issue 17 are checked like the others (a bad log format or metrics address is a
// problem `config check` names, a good one comes from the file).
#[test]
fn every_setting_has_a_key_in_the_configuration_file() {
    let mut variables = std::collections::BTreeSet::new();
    environment_variables(&airlock::cli::Cli::command(), &mut variables);
    let keyed: std::collections::BTreeSet<String> =
        airlock::cli::config::KEYS.iter().map(|(_, variable, _)| variable.to_string()).collect();
    let per_invocation = ["AIRLOCK_CONFIG", "AIRLOCK_CONTEXT"];
    let missing: Vec<&String> = variables
        .iter()
        .filter(|variable| !keyed.contains(*variable) && !per_invocation.contains(&variable.as_str()))
        .collect();
    assert!(missing.is_empty(), "settings the configuration file cannot hold: {missing:?}");

    let scratch = common::scratch();
    let file = scratch.path().join("airlock.toml");
    std::fs::write(&file, "metrics = \"127.0.0.1:9090\"\nready_lag = 500\nlog_format = \"json\"\n").unwrap();
    let output = run(&["config", "check", "--config", file.to_str().unwrap(), "--json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(output.status.code(), Some(0), "{report}");
    let value = |key: &str| {
        report["settings"].as_array().unwrap().iter().find(|setting| setting["key"] == key).unwrap()["value"].clone()
    };
    assert_eq!(
        (value("metrics"), value("ready_lag"), value("log_format")),
        ("127.0.0.1:9090".into(), "500".into(), "json".into())
    );
    std::fs::write(
        &file,
        "metrics = \"everywhere\"\nlog_format = \"xml\"\ndirectory = \"ldap\"\n\
         directory_url = \"http://bot:hunter2@adapter.example.com\"\n",
    )
    .unwrap();
    let output = run(&["config", "check", "--config", file.to_str().unwrap(), "--json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(output.status.code(), Some(1), "{report}");
    let problems = report["problems"].to_string();
    assert!(problems.contains("everywhere") && problems.contains("xml") && problems.contains("ldap"), "{report}");
    assert!(problems.contains("holds a user or password"), "{report}");
    assert!(!stdout(&output).contains("hunter2"), "the password was shown: {report}");
}

// Proves `config check` names what `serve` would refuse of the webhooks (issue 20, item 2): a plain-http endpoint that
// is not loopback, a token in a query (never shown), an endpoint without a secrets file, as many secrets files as
// neither one nor the endpoints, attempts out of range, a backoff that is not a duration.
#[test]
fn config_check_names_every_webhook_setting_serve_would_refuse() {
    let scratch = common::scratch();
    let file = scratch.path().join("airlock.toml");
    std::fs::write(
        &file,
        "webhook = \"http://siem.example/hook,https://tickets.example/hook?token=s3cr3t\"\n\
         webhook_attempts = 0\nwebhook_backoff_max = \"soon\"\n",
    )
    .unwrap();
    let output = run(&["config", "check", "--config", file.to_str().unwrap(), "--json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(output.status.code(), Some(1), "{report}");
    let problems = report["problems"].to_string();
    for expected in ["use https://", "webhook needs webhook_secrets", "from 1 to 100", "\\\"soon\\\" is not a duration"]
    {
        assert!(problems.contains(expected), "{expected}: {report}");
    }
    assert!(!stdout(&output).contains("s3cr3t"), "a token was shown: {report}");
    let shown = report["settings"].as_array().unwrap().iter().find(|setting| setting["key"] == "webhook").unwrap();
    assert_eq!(shown["value"], "http://siem.example/***,https://tickets.example/***", "origins only: {shown}");

    let secrets = scratch.path().join("secrets");
    std::fs::write(&secrets, format!("whsec_{}\n", "A".repeat(40))).unwrap();
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let secrets = secrets.to_str().unwrap();
    std::fs::write(
        &file,
        format!(
            "webhook = \"https://a.example/hook,https://b.example/hook,https://c.example/hook\"\n\
             webhook_secrets = \"{secrets},{secrets}\"\n"
        ),
    )
    .unwrap();
    let output = run(&["config", "check", "--config", file.to_str().unwrap(), "--json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(report["problems"].to_string().contains("3 webhook endpoints and 2 webhook_secrets files"), "{report}");
    std::fs::write(
        &file,
        format!(
            "webhook = \"https://a.example/hook,https://a.example/hook\"\nwebhook_secrets = \"{secrets}\"\n\
             webhook_timeout = \"1h\"\n"
        ),
    )
    .unwrap();
    let output = run(&["config", "check", "--config", file.to_str().unwrap(), "--json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let problems = report["problems"].to_string();
    assert!(problems.contains("https://a.example is given twice") && problems.contains("at most 5m"), "{report}");
    std::fs::write(&file, format!("webhook = \"https://a.example/hook\"\nwebhook_secrets = \"{secrets}\"\n")).unwrap();
    let output = run(&["config", "check", "--config", file.to_str().unwrap(), "--json"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}
