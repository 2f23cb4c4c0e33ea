//! The command line. One module per command family; each exposes a `run` that returns an exit code. Exit codes are
//! documented in the README: 0 ok, 1 refused or a failed check, 2 usage, 3 unavailable.

pub mod alerts;
pub mod api_key;
pub mod audit;
pub mod bench;
pub mod cancel;
pub mod case;
pub mod case_view;
pub mod config;
pub mod context;
pub mod control;
pub mod demo;
pub mod directory;
pub mod fsm;
pub mod mcp;
pub mod nats_config;
pub mod outbox;
pub mod policy;
pub mod replay;
pub mod review;
pub mod rollback;
pub mod serve;
pub mod simulate;
pub mod store;
pub mod submit;
pub mod target;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// airlock: a support chat can request an account recovery; only deterministic services can perform one.
#[derive(Debug, Parser)]
#[command(name = "airlock", version = env!("AIRLOCK_VERSION"), about, long_about = None)]
pub struct Cli {
    /// A TOML configuration file (keys: `airlock config check --help`). The environment overrides it, and flags
    /// override both.
    #[arg(long, global = true, env = "AIRLOCK_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// A saved context (`airlock context save`): its settings fill in what the flags, the environment and --config
    /// leave unset. Without it, the context chosen by `airlock context use`, if any.
    #[arg(long, global = true, env = "AIRLOCK_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// API keys of the HTTP intake: make one for a requester (shown once), list, revoke.
    ApiKey(api_key::ApiKeyArgs),
    /// Check the projection against the log, and the receipts' hash chain.
    Audit(audit::AuditArgs),
    /// Measure airlock against the raw JetStream rates on the same server, and print the figures.
    #[command(
        after_help = "Examples:\n  airlock bench\n  airlock bench --events 100000 --cases 10000\n  airlock bench --nats nats://127.0.0.1:4222"
    )]
    Bench(bench::BenchArgs),
    /// Cases: one case's state and next steps, a filtered list, or its history from the event log.
    Case(case::CaseArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Examples:\n  airlock completions bash > ~/.local/share/bash-completion/completions/airlock\n  \
airlock completions zsh > \"${fpath[1]}/_airlock\"\n  airlock completions fish > ~/.config/fish/completions/airlock.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Check the configuration file, and show where each setting comes from.
    Config(config::ConfigArgs),
    /// Write the manual pages, one per command, from the same command tree as --help.
    #[command(after_help = "Examples:\n  airlock man --out ./man/man1\n  man -l ./man/man1/airlock-serve.1")]
    Man {
        /// The folder to write airlock.1, airlock-serve.1, ... into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Run three recovery stories end to end on the embedded backend, with a simulated clock.
    #[command(after_help = "Examples:\n  airlock demo\n  airlock demo --keep --data-dir ./demo-data")]
    Demo(demo::DemoArgs),
    /// Manage the embedded account directory.
    Directory(directory::DirectoryArgs),
    /// Serve the AI support agent's tools over MCP (stdio, or streamable HTTP): request a recovery, read its status,
    /// explain the process. Nothing else.
    Mcp(mcp::McpArgs),
    /// Write a nats-server configuration with one least-privilege nkey user per actor, and their seed files.
    NatsConfig(nats_config::NatsConfigArgs),
    /// Named connection settings (where the deployment is, which key is yours): save, use, ls.
    Context(context::ContextArgs),
    /// Campaign alerts: list the active ones, show one with its cases and the rollback that undoes it, acknowledge.
    Alerts(alerts::AlertsArgs),
    /// Pull the kill switch: halt all automated execution (cases wait in cooling-off).
    Halt(control::ControlArgs),
    /// Release the kill switch, explicitly and on the record.
    Resume(control::ControlArgs),
    /// Cancel a change waiting out its cooling-off, as an operator.
    Cancel(cancel::CancelArgs),
    /// List what the embedded notifier sent (one-time codes masked).
    Outbox(outbox::OutboxArgs),
    /// Print the recovery state machine from state-machines/recovery.toml.
    #[command(
        after_help = "Examples:\n  airlock fsm --format mermaid\n  airlock fsm --format dot | dot -Tsvg > fsm.svg"
    )]
    Fsm(fsm::FsmArgs),
    /// Work with the recovery policies (Cedar): validate them and run their test cases.
    Policy(policy::PolicyArgs),
    /// Run a seeded population of owners, attackers and reviewers through airlock with a simulated clock, under one
    /// or more policy folders, and report the trade-off side by side. Exits 1 if any attack succeeded.
    #[command(after_help = "Examples:\n  airlock simulate\n  airlock simulate --seed 7 --json\n  \
airlock simulate --policies policies --policies ./candidate --scenario \"busy desk\"\n  \
airlock simulate --population simulations/default.toml")]
    Simulate(simulate::SimulateArgs),
    /// Rebuild the projection from the log and swap it in; or verify every decision and row; or show a past moment.
    #[command(after_help = "Examples:\n  airlock replay --data-dir /var/lib/airlock\n  \
airlock replay --verify --policies ./policies-2026-06\n  \
airlock replay --as-of \"2026-06-01 12:00:00\"\n  \
airlock replay --as-of 3d --into ./three-days-ago && airlock case list --data-dir ./three-days-ago\n  \
airlock replay --nats nats://127.0.0.1:4222 --verify --json")]
    Replay(replay::ReplayArgs),
    /// The reviewers' queue: list it, show a case's evidence, approve or deny as a named reviewer.
    Review(review::ReviewArgs),
    /// Undo executed changes: one case, or every case matching an incident's indicator.
    Rollback(rollback::RollbackArgs),
    /// Run airlock against NATS JetStream: intake, the event log, the projector, timers and case queries.
    #[command(after_help = "Examples:\n  airlock serve --nats nats://127.0.0.1:4222 --data-dir /var/lib/airlock\n  \
AIRLOCK_NATS_URL=nats://n1:4222 airlock serve --replicas 3")]
    // Boxed: the serve flags make it far larger than every other command.
    Serve(Box<serve::ServeArgs>),
    /// Send one JSON command (see schemas/) to the embedded store as the given actor, and print the reply.
    #[command(
        after_help = "Examples:\n  airlock submit --actor intake:helpdesk-7 --command request-recovery request.json\n  \
echo '{\"version\":1,...}' | airlock submit --actor owner:verification-page --command submit-proof"
    )]
    Submit(submit::SubmitArgs),
}

/// Exit codes shared by every command.
pub mod exit {
    pub const OK: u8 = 0;
    /// A command was refused or a check failed.
    pub const FAILED: u8 = 1;
    /// The command line itself is wrong (clap uses the same code for its own errors).
    pub const USAGE: u8 = 2;
    /// A dependency (a database, NATS) could not be used.
    pub const UNAVAILABLE: u8 = 3;
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = config::named(&args);
    // `config check` reports every problem of the file itself; every other command refuses to start on a bad one.
    let checking = args.get(1).is_some_and(|arg| arg == "config");
    let file_values = match (&file, checking) {
        (Some(path), false) => match config::load(path) {
            Ok(loaded) => loaded.values(),
            Err(error) => {
                eprintln!("error: {error} (airlock config check --config {} lists every problem)", path.display());
                return ExitCode::from(exit::USAGE);
            }
        },
        (Some(_), true) | (None, _) => Default::default(),
    };
    // A context fills in what the file leaves unset; `airlock context` itself works on contexts, not in one.
    let in_context = args.get(1).is_some_and(|arg| arg != "context");
    let mut values = match context::named(&args).filter(|_| in_context) {
        Some(name) => match context::values(&name) {
            Ok(values) => values,
            Err(error) => {
                eprintln!("error: context {name}: {error}");
                return ExitCode::from(exit::USAGE);
            }
        },
        None => Default::default(),
    };
    values.extend(file_values);
    let matches = match config::with_file_defaults(Cli::command(), &values).try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => usage_error(error, &args),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| usage_error(error, &args));
    let json_logs = matches!(&cli.command, Commands::Serve(args) if args.log_format == serve::LogFormat::Json);
    init_tracing(json_logs);
    let code = match cli.command {
        Commands::Alerts(args) => alerts::run(args),
        Commands::ApiKey(args) => api_key::run(args),
        Commands::Context(args) => context::run(args),
        Commands::Audit(args) => audit::run(args),
        Commands::Bench(args) => bench::run(args),
        Commands::Case(args) => case::run(args),
        Commands::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "airlock", &mut std::io::stdout());
            exit::OK
        }
        Commands::Config(args) => config::run(args, cli.config),
        Commands::Man { out } => man_pages(&out),
        Commands::Demo(args) => demo::run(args),
        Commands::Directory(args) => directory::run(args),
        Commands::Fsm(args) => fsm::run(args),
        Commands::Halt(args) => control::run(args, true),
        Commands::Resume(args) => control::run(args, false),
        Commands::Cancel(args) => cancel::run(args),
        Commands::Mcp(args) => mcp::run(args),
        Commands::NatsConfig(args) => nats_config::run(args),
        Commands::Outbox(args) => outbox::run(args),
        Commands::Policy(args) => policy::run(args),
        Commands::Simulate(args) => simulate::run(args),
        Commands::Replay(args) => replay::run(args),
        Commands::Review(args) => review::run(args),
        Commands::Rollback(args) => rollback::run(args),
        Commands::Serve(args) => serve::run(*args),
        Commands::Submit(args) => submit::run(args),
    };
    ExitCode::from(code)
}

/// Threads tokio's blocking pool may run at once in airlock's multi-threaded runtimes. The pool runs the stores'
/// SQLite work (a rebuild's writer holds one thread for the whole rebuild, and one runs at a time) and the HTTP
/// client's name lookups. Left at tokio's default (512), it grew to about a hundred threads under `airlock bench`,
/// most of them waiting for one connection's lock, each with a glibc arena and stack pages of its own. With 16 the
/// process used 13-20% less CPU per request, and its resident set after the end-to-end phases grew by 7-14% from
/// 100,000 to 1,000,000 events, against 26-36% (docs/benchmarks.md, session 22). Notices, which wait on mail servers
/// and SMS providers for seconds, go out on threads of their own (`service::notices`), not here.
pub const BLOCKING_THREADS_MAX: usize = 16;

/// The multi-threaded runtime a command runs on, its blocking pool bounded (`BLOCKING_THREADS_MAX`).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Ends the process on a command line clap refused: help and the version as clap prints them, an error with every
/// flag it names followed by the variable that sets it (`name_variables`), since a value may have come from there.
fn usage_error(error: clap::Error, args: &[std::ffi::OsString]) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit()
    }
    let path = command_path(args);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    eprint!("{}", name_variables(&error.render().to_string(), &path));
    std::process::exit(error.exit_code())
}

/// `message` as it is, and after it one line naming the variable that sets each flag it names:
/// `--smtp refused: ...` then `  set by: --smtp or AIRLOCK_SMTP_URL`. Only the flags of the command `path` names
/// (`["serve"]`) and the global ones count, each with the variable that command reads; a `--` inside a word (a path, a
/// URL) and the `Usage:` line are not flags named. A deployment configured by variables (the container image) then
/// reads which one to fix, and the message itself keeps its words.
pub fn name_variables(message: &str, path: &[&str]) -> String {
    let mut variables = std::collections::HashMap::new();
    let mut command = Cli::command();
    command.build();
    let mut levels = vec![command.clone()];
    for name in path {
        let Some(sub) = levels.last().and_then(|level| level.find_subcommand(name)).cloned() else { break };
        levels.push(sub);
    }
    // The innermost command's own flag wins over a global one of the same name.
    for level in levels.iter().rev() {
        for arg in level.get_arguments() {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                variables.entry(format!("--{long}")).or_insert_with(|| env.to_string_lossy().into_owned());
            }
        }
    }
    let mut named: Vec<String> = Vec::new();
    for line in message.lines().filter(|line| !line.starts_with("Usage:")) {
        let mut rest = line;
        while let Some(start) = rest.find("--") {
            let end = rest[start + 2..]
                .find(|character: char| !(character.is_ascii_alphanumeric() || character == '-'))
                .map_or(rest.len(), |offset| start + 2 + offset);
            // A flag starts a word: `--nats`, `'--nats`, `(--nats`; never the middle of a path or a URL.
            let starts_word = rest[..start].chars().next_back().is_none_or(|before| " '\"(`".contains(before));
            let flag = &rest[start..end];
            if let Some(variable) = variables.get(flag).filter(|_| starts_word) {
                let pair = format!("{flag} or {variable}");
                if !named.contains(&pair) {
                    named.push(pair);
                }
            }
            rest = &rest[end.max(start + 2)..];
        }
    }
    if named.is_empty() {
        return message.to_string();
    }
    let (body, newline) = match message.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (message, ""),
    };
    format!("{body}\n  set by: {}{newline}", named.join("; "))
}

/// The subcommand path an argument list names (`airlock --config f review list` -> `["review", "list"]`): each word
/// that is a subcommand of the command reached so far. A flag's value that happens to be a subcommand's name can
/// mislead it; it only chooses which variables an error names.
fn command_path(args: &[std::ffi::OsString]) -> Vec<String> {
    let mut command = Cli::command();
    let mut path = Vec::new();
    for arg in args.iter().skip(1).filter_map(|arg| arg.to_str()) {
        if let Some(sub) = command.find_subcommand(arg).cloned() {
            path.push(arg.to_string());
            command = sub;
        }
    }
    path
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default: warnings only, so command output stays readable;
/// `airlock serve` logs `info` by default). Colours only on a terminal: a log file or a collector gets plain text.
/// Logs go to stderr: text, or one JSON object per line (`serve --log-format json`) for a log collector.
fn init_tracing(json: bool) {
    crate::observe::set_json_logs(json);
    let serving = std::env::args().nth(1).as_deref() == Some("serve");
    let default = if serving { "info,async_nats=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
    };
}

/// `airlock man --out DIR`: one manual page per command (airlock.1, airlock-serve.1, airlock-review-list.1, ...),
/// rendered by `clap_mangen` from the same command tree as `--help`, so the two cannot disagree. Built from the
/// command tree alone: no configuration file or context changes what the pages say.
fn man_pages(out: &std::path::Path) -> u8 {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    match std::fs::create_dir_all(out).and_then(|()| write_man_pages(&command, out)) {
        Ok(pages) => {
            println!("wrote {pages} manual pages to {}", out.display());
            exit::OK
        }
        Err(error) => {
            eprintln!("error: cannot write the manual pages to {}: {error}", out.display());
            exit::FAILED
        }
    }
}

/// Writes the page of `command` and of each of its visible subcommands, and returns how many. Every character
/// outside ASCII is written as a groff escape (`\[u2192]`), so a page renders the same with or without a UTF-8
/// aware front end (`groff -man` alone reads Latin-1 and warns on UTF-8 bytes).
fn write_man_pages(command: &clap::Command, out: &std::path::Path) -> std::io::Result<usize> {
    let mut pages = 0;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        pages += write_man_pages(sub, out)?;
    }
    let man = clap_mangen::Man::new(command.clone());
    let mut rendered = Vec::new();
    man.render(&mut rendered)?;
    let text = String::from_utf8(rendered).map_err(std::io::Error::other)?;
    let escaped: String = text
        .chars()
        .map(|character| match character.is_ascii() {
            true => character.to_string(),
            false => format!("\\[u{:04X}]", character as u32),
        })
        .collect();
    std::fs::write(out.join(man.get_filename()), escaped)?;
    Ok(pages + 1)
}

#[cfg(test)]
mod tests {
    use super::name_variables;

    // Proves each flag a message names is followed, on one closing line, by the variable its own command reads, the
    // message keeping its words: `--nats-nkey` is not `--nats`; a flag of another command or one no variable sets,
    // a `--` inside a path or a URL, and the usage line name none; each flag once.
    #[test]
    fn each_flag_is_named_with_its_own_commands_variable() {
        let serve = |text: &str| name_variables(text, &["serve"]);
        assert_eq!(
            serve("--smtp refused: plaintext"),
            "--smtp refused: plaintext\n  set by: --smtp or AIRLOCK_SMTP_URL"
        );
        assert_eq!(
            serve("--nats-nkey: cannot read; --nats: cannot reach; --nats again"),
            "--nats-nkey: cannot read; --nats: cannot reach; --nats again\n  set by: --nats-nkey or AIRLOCK_NATS_NKEY; \
             --nats or AIRLOCK_NATS_URL"
        );
        assert_eq!(
            serve("error: invalid value 'x' for '--replicas <REPLICAS>': bad\n\nFor more, try '--help'.\n"),
            "error: invalid value 'x' for '--replicas <REPLICAS>': bad\n\nFor more, try '--help'.\n  set by: \
             --replicas or AIRLOCK_REPLICAS\n"
        );
        assert_eq!(serve("see /tmp/--nats/x and http://h/--smtp"), "see /tmp/--nats/x and http://h/--smtp");
        assert_eq!(serve("Usage: airlock serve --nats <NATS>\n"), "Usage: airlock serve --nats <NATS>\n");
        // `--requester` of `api-key create` reads no variable; `mcp --requester` reads AIRLOCK_MCP_REQUESTER.
        assert_eq!(name_variables("--requester is required", &["api-key", "create"]), "--requester is required");
        assert_eq!(
            name_variables("--requester is required", &["mcp"]),
            "--requester is required\n  set by: --requester or AIRLOCK_MCP_REQUESTER"
        );
        // `demo --data-dir` reads no variable; `serve --data-dir` does; `--config` is everyone's.
        assert_eq!(name_variables("--data-dir: full", &["demo"]), "--data-dir: full");
        assert_eq!(serve("--data-dir: full"), "--data-dir: full\n  set by: --data-dir or AIRLOCK_DATA_DIR");
        assert_eq!(serve("--config: bad"), "--config: bad\n  set by: --config or AIRLOCK_CONFIG");
    }
}
