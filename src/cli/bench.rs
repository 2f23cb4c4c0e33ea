//! `airlock bench`: speed and memory, measured side by side in one run against the same NATS servers. The raw
//! JetStream append rate (with the concurrency header, pipelined across case subjects) is the anchor; airlock's
//! end-to-end rate (JSON commands through the intake stream, decided, appended, projected) is reported as a ratio to
//! it, on a throwaway server with the server's default configuration and on one with `sync_interval: always` (what
//! airlock's own deployments use), each in the same run. On each, latency is then measured open loop at 25%, 50% and
//! 75% of the rate airlock just saturated at. The projection rebuild rate is a ratio to the raw read rate. The last
//! line is one JSON object.

use crate::cli::exit;
use crate::intake::nats::run_intake;
use crate::keys::Keys;
use crate::log::jetstream::{JetStreamConfig, JetStreamLog};
use crate::nats::server::{NatsServer, Options};
use crate::projection::projector::run_projector;
use crate::server::nats::{self as nats_mode, NatsMode};
use async_nats::jetstream;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A NATS server to measure against. Without it, a throwaway nats-server is started on loopback.
    #[arg(long)]
    pub nats: Option<String>,
    /// Events to append in each phase.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Case subjects the events are spread over.
    #[arg(long, default_value_t = 2_000)]
    pub cases: usize,
    /// Where the throwaway servers keep their stores (default: a temporary directory on disk, fsync included).
    #[arg(long)]
    pub store_dir: Option<PathBuf>,
    /// How long each open-loop latency phase sends, in seconds.
    #[arg(long, default_value_t = 5)]
    pub latency_seconds: u64,
}

/// The loads of the open-loop latency phases, as fractions of the rate airlock saturated at in the same run.
const OPEN_LOOP_LOADS: [f64; 3] = [0.25, 0.5, 0.75];

/// A server the benchmark runs against: a throwaway one with the server's default configuration or with
/// `sync_interval: always`, or the one given with `--nats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Default,
    SyncAlways,
    Given,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Default => "default",
            Server::SyncAlways => "sync_always",
            Server::Given => "given",
        }
    }
}

/// Appends in flight at once in the raw phase (one per case at a time, as airlock's optimistic concurrency needs).
const RAW_IN_FLIGHT_MAX: usize = 256;

/// Requests sent and not yet answered at once in the saturation phase: what keeps airlock busy without a backlog the
/// intake stream would refuse (it holds at most `INTAKE_BACKLOG_PER_SUBJECT_MAX` per sender and command). Half of
/// it: a message leaves the stream when airlock acknowledges it, a moment after its answer went out, so answered
/// messages still count for a while.
const REQUESTS_IN_FLIGHT_MAX: usize = 128;
const _: () = assert!((REQUESTS_IN_FLIGHT_MAX as i64) * 2 <= crate::intake::nats::INTAKE_BACKLOG_PER_SUBJECT_MAX);

/// The raw phases' stream.
const RAW_STREAM: &str = "AIRLOCK_BENCH_RAW";

/// Rounds of the raw read and the rebuild; each rate reported is the median of its rounds.
const READ_ROUNDS: usize = 3;

/// Every airlock request in the benchmark appends one commit of this many events (the request, and the withheld
/// challenge of an account the directory does not know).
const EVENTS_PER_REQUEST: usize = 2;

pub fn run(args: BenchArgs) -> u8 {
    let runtime = crate::cli::runtime();
    match runtime.block_on(bench(args)) {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::UNAVAILABLE
        }
    }
}

/// The peak resident set of this process, in MiB (VmHWM), or 0 where /proc is not available.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Latencies as a phase records them: microseconds, in a histogram of fixed size (three significant digits), so that
/// the benchmark's memory does not grow with the requests it sends. Up to an hour; anything longer counts as an hour.
type Latencies = hdrhistogram::Histogram<u64>;

const LATENCY_US_MAX: u64 = 3_600_000_000;

fn latencies() -> Latencies {
    Latencies::new_with_bounds(1, LATENCY_US_MAX, 3).expect("the bounds and precision are valid")
}

/// Starts a throwaway server of the given configuration in `store`.
fn throwaway(server: Server, store: &std::path::Path) -> anyhow::Result<NatsServer> {
    match server {
        Server::SyncAlways | Server::Given => Ok(NatsServer::start(store, &Options::default())?),
        Server::Default => {
            std::fs::create_dir_all(store)?;
            let port = crate::nats::server::free_port()?;
            let always = crate::nats::server::config(port, &store.join("jetstream"), None);
            let default = always.replace("  sync_interval: always\n", "");
            anyhow::ensure!(default != always, "the server configuration no longer sets sync_interval");
            let path = store.join("nats-default.conf");
            std::fs::write(&path, default)?;
            Ok(NatsServer::start_with_config(&path, port, store)?)
        }
    }
}

/// What one server's phases measured.
struct Measured {
    server: Server,
    raw_append_per_s: f64,
    airlock: EndToEnd,
}

impl Measured {
    fn airlock_events_per_s(&self) -> f64 {
        per_second(self.airlock.events, self.airlock.elapsed)
    }

    fn append_ratio(&self) -> f64 {
        round3(self.airlock_events_per_s() / self.raw_append_per_s)
    }

    fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "server": self.server.name(),
            "raw_append_per_s": self.raw_append_per_s.round(),
            "airlock_events_per_s": self.airlock_events_per_s().round(),
            "append_ratio": self.append_ratio(),
            "saturation_p50_ms": round2(self.airlock.saturated.p50_ms),
            "saturation_p99_ms": round2(self.airlock.saturated.p99_ms),
            "cpu_ms_per_request_process": self.airlock.cpu_ms.process.map(round3),
            "cpu_ms_per_request_server": self.airlock.cpu_ms.server.map(round3),
            "open_loop": self.airlock.open_loop.iter().map(OpenLoop::report).collect::<Vec<_>>(),
        })
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events >= EVENTS_PER_REQUEST && args.cases >= 1, "--events and --cases must be positive");
    anyhow::ensure!(args.latency_seconds >= 1, "--latency-seconds must be at least 1");
    let scratch = tempfile::Builder::new().prefix("airlock-bench-").tempdir()?;
    let servers = match args.nats {
        Some(_) => vec![Server::Given],
        None => vec![Server::Default, Server::SyncAlways],
    };
    let mut measured = Vec::new();
    let mut read_side = None;
    for server in servers {
        let (_process, url) = match (&args.nats, server) {
            (Some(url), _) => (None, url.clone()),
            (None, _) => {
                let store = args.store_dir.clone().unwrap_or_else(|| scratch.path().to_path_buf()).join(server.name());
                let process = throwaway(server, &store)?;
                let url = process.url();
                (Some(process), url)
            }
        };
        let client = crate::nats::connect(&url, "airlock-bench").await?;
        let context = jetstream::new(client.clone());
        let run_id = crate::service::new_id("bench");
        let data = scratch.path().join(format!("data-{}", server.name()));
        eprintln!("airlock bench: {} server: raw append", server.name());
        let raw_append = raw_appends(&context, &run_id, args.events, args.cases).await?;
        eprintln!("airlock bench: {} server: airlock end to end, then open loop", server.name());
        let server_pid = _process.as_ref().map(NatsServer::pid);
        let airlock = airlock_end_to_end(&client, &data, &run_id, &args, server_pid).await?;
        measured.push(Measured { server, raw_append_per_s: per_second(args.events, raw_append), airlock });
        // The read side does not depend on how the server flushes: it is measured on the last server.
        if server != Server::Default {
            read_side = Some(read_side_rates(&client, &context, scratch.path(), args.events).await?);
        }
        let _ = context.delete_stream(RAW_STREAM).await;
    }
    let reads = read_side.ok_or_else(|| anyhow::anyhow!("the read side was not measured"))?;
    let main = measured.last().ok_or_else(|| anyhow::anyhow!("no server was measured"))?;
    let at_half = main.airlock.open_loop.iter().find(|phase| phase.load == 0.5);
    let default_ratio = measured.iter().find(|one| one.server == Server::Default).map(Measured::append_ratio);
    let report = serde_json::json!({
        "events": args.events,
        "cases": args.cases,
        "raw_append_per_s": main.raw_append_per_s.round(),
        "airlock_events_per_s": main.airlock_events_per_s().round(),
        "append_ratio": main.append_ratio(),
        "append_ratio_default_config": default_ratio,
        "raw_read_per_s": reads.raw_read_per_s.round(),
        "replay_events_per_s": reads.replay_events_per_s.round(),
        "replay_ratio": round3(reads.replay_events_per_s / reads.raw_read_per_s),
        "p50_ms": round2(main.airlock.saturated.p50_ms),
        "p99_ms": round2(main.airlock.saturated.p99_ms),
        "p99_ms_at_half_load": at_half.map(|phase| round2(phase.latency.p99_ms)),
        "rss_mb": (reads.rss_one_round * 10.0).round() / 10.0,
        "rss_after_airlock_mb": (reads.rss_after_runs * 10.0).round() / 10.0,
        "servers": measured.iter().map(Measured::report).collect::<Vec<_>>(),
    });
    print_table(&args, &measured, &report);
    println!("{report}");
    Ok(())
}

/// The readable summary, one block per server, before the JSON line.
fn print_table(args: &BenchArgs, measured: &[Measured], report: &serde_json::Value) {
    println!("airlock bench: {} events over {} case subjects", args.events, args.cases);
    for one in measured {
        println!("  server configuration: {}", one.server.name());
        println!("  {:<56} {:>12}", "raw JetStream append (expected-seq, pipelined) /s", one.raw_append_per_s.round());
        println!(
            "  {:<56} {:>12}",
            "airlock end to end (intake -> projection) events/s",
            one.airlock_events_per_s().round()
        );
        println!("  {:<56} {:>12}", "  ratio to raw append", one.append_ratio());
        println!("  {:<56} {:>12}", "at saturation: command -> answer p50 ms", round2(one.airlock.saturated.p50_ms));
        println!("  {:<56} {:>12}", "at saturation: command -> answer p99 ms", round2(one.airlock.saturated.p99_ms));
        let shown = |value: Option<f64>| value.map_or("-".to_string(), |value| round3(value).to_string());
        println!(
            "  {:<56} {:>12}",
            "at saturation: CPU ms per request, airlock + client",
            shown(one.airlock.cpu_ms.process)
        );
        println!("  {:<56} {:>12}", "at saturation: CPU ms per request, nats-server", shown(one.airlock.cpu_ms.server));
        for phase in &one.airlock.open_loop {
            let label = format!(
                "open loop at {:.0}% ({:.0} requests/s): p50 / p99 / max ms",
                phase.load * 100.0,
                phase.requests_per_s
            );
            let figures = format!(
                "{} / {} / {}",
                round2(phase.latency.p50_ms),
                round2(phase.latency.p99_ms),
                round2(phase.latency.max_ms)
            );
            println!("  {label:<56} {figures:>12}");
        }
    }
    println!("  read side");
    for (label, key) in [
        ("raw ordered-consumer read /s", "raw_read_per_s"),
        ("airlock projection rebuild events/s", "replay_events_per_s"),
        ("  ratio to raw read", "replay_ratio"),
        ("peak RSS MiB (through the first rebuild)", "rss_mb"),
    ] {
        println!("  {label:<56} {:>12}", report[key]);
    }
}

/// The read side of one server: the raw read and the rebuild, alternating, each the median of its rounds.
struct ReadSide {
    raw_read_per_s: f64,
    replay_events_per_s: f64,
    rss_after_runs: f64,
    rss_one_round: f64,
}

async fn read_side_rates(
    client: &async_nats::Client,
    context: &jetstream::Context,
    scratch: &std::path::Path,
    events: usize,
) -> anyhow::Result<ReadSide> {
    let rss_after_runs = peak_rss_mb();
    // The two read-side rates alternate, so that a machine whose speed drifts (a shared VM) slows both alike, and
    // each is the median of its rounds.
    let (mut raw_read_rates, mut replay_rates, mut rss_one_round) = (Vec::new(), Vec::new(), 0.0);
    for round in 0..READ_ROUNDS {
        raw_read_rates.push(per_second(events, raw_reads(context, events).await?));
        let rebuilt = scratch.join(format!("rebuilt-{round}.db"));
        let replay = replay(client, &rebuilt).await?;
        replay_rates.push(per_second(replay.events as usize, replay.elapsed));
        std::fs::remove_file(&rebuilt)?;
        if round == 0 {
            // One rebuild is what `airlock replay` runs. Later rounds would raise the high-water mark further only
            // because glibc keeps the pages a finished round freed in its per-thread arenas (measured: the resident
            // set after round 1 equals that after round 0), so the memory figure is taken here.
            rss_one_round = peak_rss_mb();
        }
    }
    Ok(ReadSide {
        raw_read_per_s: median(&mut raw_read_rates),
        replay_events_per_s: median(&mut replay_rates),
        rss_after_runs,
        rss_one_round,
    })
}

/// (a) N appends over M subjects of a stream configured like airlock's, each with the expected last subject sequence;
/// subjects proceed in parallel, each subject's appends in order.
async fn raw_appends(
    context: &jetstream::Context,
    run_id: &str,
    events: usize,
    cases: usize,
) -> anyhow::Result<Duration> {
    let config =
        JetStreamConfig { stream_name: RAW_STREAM.into(), subject_prefix: "airlock-bench.raw".into(), replicas: 1 };
    let _ = context.delete_stream(&config.stream_name).await;
    context.create_stream(config.stream_config()).await?;
    let payload = bytes::Bytes::from(vec![7u8; 300]);
    let started = Instant::now();
    let per_case = events.div_ceil(cases);
    let appends = (0..cases).map(|case| {
        let (context, payload) = (context.clone(), payload.clone());
        let subject = format!("airlock-bench.raw.case.{run_id}-{case}");
        let count = per_case.min(events.saturating_sub(case * per_case));
        async move {
            let mut last = 0;
            for index in 0..count {
                let message = jetstream::message::PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(format!("{subject}-{index}"))
                    .expected_last_subject_sequence(last);
                last = context.send_publish(subject.clone(), message).await?.await?.sequence;
            }
            Ok::<usize, anyhow::Error>(count)
        }
    });
    let appended: usize = futures::stream::iter(appends)
        .buffer_unordered(RAW_IN_FLIGHT_MAX)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<usize>>>()?
        .into_iter()
        .sum();
    anyhow::ensure!(appended == events, "raw phase appended {appended} of {events}");
    Ok(started.elapsed())
}

/// (c) Reads the raw stream back with an ordered consumer.
async fn raw_reads(context: &jetstream::Context, events: usize) -> anyhow::Result<Duration> {
    let stream = context.get_stream(RAW_STREAM).await?;
    let started = Instant::now();
    let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    while read < events {
        let message = messages.next().await.ok_or_else(|| anyhow::anyhow!("the raw stream ended early"))??;
        std::hint::black_box(message.payload.len());
        read += 1;
    }
    Ok(started.elapsed())
}

/// Latencies of one phase, publish (or, open loop, the moment it was due) to answer.
#[derive(Clone, Copy, Debug, Default)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(latencies: &Latencies) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if latencies.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_ms: ms(latencies.value_at_quantile(0.50)),
            p99_ms: ms(latencies.value_at_quantile(0.99)),
            max_ms: ms(latencies.max()),
        }
    }
}

/// One open-loop phase: requests sent at a fixed rate whatever the answers do.
struct OpenLoop {
    load: f64,
    requests_per_s: f64,
    requests: usize,
    /// Requests the intake stream refused: airlock had fallen behind by a full backlog.
    refused: usize,
    latency: Latency,
}

impl OpenLoop {
    fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "load": self.load,
            "requests_per_s": self.requests_per_s.round(),
            "requests": self.requests,
            "refused": self.refused,
            "p50_ms": round2(self.latency.p50_ms),
            "p99_ms": round2(self.latency.p99_ms),
            "max_ms": round2(self.latency.max_ms),
        })
    }
}

struct EndToEnd {
    events: usize,
    elapsed: Duration,
    saturated: Latency,
    open_loop: Vec<OpenLoop>,
    cpu_ms: CpuPerRequest,
}

/// CPU time per request of the saturation phase, in milliseconds: of this process (the in-process airlock, its
/// projector and the benchmark's own client) and of the throwaway server. Steadier than the rates on a shared machine
/// (they count work done, not how long it waited for a core), so two builds can be compared by it.
struct CpuPerRequest {
    process: Option<f64>,
    server: Option<f64>,
}

/// The `/proc` times are in clock ticks of `USER_HZ`, which Linux fixes at 100 for user space on every architecture
/// airlock ships for (x86_64, aarch64).
const PROC_TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds used so far by the process `pid` (this process without one), from `/proc`; `None`
/// where `/proc` is not there.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the command name.
    Some((ticks(11)? + ticks(12)?) / PROC_TICKS_PER_SECOND)
}

/// When each request went out (or was due), by command id; the collector takes each answer's entry.
type SentAt = Arc<std::sync::Mutex<HashMap<String, Instant>>>;

/// Reads answers until as many were matched to a request as `expected` says (it may be set once sending is over),
/// and returns their latencies; each answer gives `window` (the sender's requests in flight) one permit back.
fn collect_answers(
    mut answers: async_nats::Subscriber,
    sent_at: SentAt,
    mut expected: watch::Receiver<usize>,
    window: Option<Arc<tokio::sync::Semaphore>>,
) -> tokio::task::JoinHandle<anyhow::Result<(Latencies, async_nats::Subscriber)>> {
    tokio::spawn(async move {
        let collected = collect(&mut answers, &sent_at, &mut expected, window.as_deref()).await;
        // A sender waiting for a permit learns the collector is done (an error: no answers came) instead of waiting.
        if let Some(window) = &window {
            window.close();
        }
        collected.map(|latencies| (latencies, answers))
    })
}

async fn collect(
    answers: &mut async_nats::Subscriber,
    sent_at: &SentAt,
    expected: &mut watch::Receiver<usize>,
    window: Option<&tokio::sync::Semaphore>,
) -> anyhow::Result<Latencies> {
    let mut latencies = latencies();
    loop {
        let count = *expected.borrow_and_update();
        if latencies.len() >= count as u64 {
            return Ok(latencies);
        }
        let answer = tokio::select! {
            answer = tokio::time::timeout(Duration::from_secs(60), answers.next()) => answer
                .map_err(|_| anyhow::anyhow!("only {} answers of {count} arrived", latencies.len()))?
                .ok_or_else(|| anyhow::anyhow!("the answer subscription ended"))?,
            // A sender that has said its last count (and is gone) leaves only the answers to wait for.
            Ok(()) = expected.changed() => continue,
        };
        let command_id = answer.headers.as_ref().and_then(|headers| headers.get("Airlock-Command-Id"));
        let sent = command_id.and_then(|id| sent_at.lock().expect("not poisoned").remove(id.as_str()));
        if let Some(sent) = sent {
            latencies.saturating_record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            if let Some(window) = window {
                window.add_permits(1);
            }
        }
    }
}

/// Whether a publish was refused because the sender's backlog in the intake stream is full (JetStream error 10077,
/// maximum messages per subject): airlock has not taken that many of its messages yet.
fn backlog_full(error: &impl std::fmt::Display) -> bool {
    error.to_string().contains("error code 10077")
}

/// Waits for a request's publish to be stored; while the sender's backlog is full, sends it again a moment later,
/// as a desk honouring the intake's limit would (for at most a minute).
async fn stored(
    context: &jetstream::Context,
    subject: &str,
    payload: bytes::Bytes,
    mut ack: jetstream::context::PublishAckFuture,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ack.await {
            Ok(_) => return Ok(()),
            Err(error) if backlog_full(&error) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let message = jetstream::message::PublishMessage::build().payload(payload.clone());
                ack = context.send_publish(subject.to_string(), message).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn request(command_id: &str, account: usize) -> anyhow::Result<bytes::Bytes> {
    let body = serde_json::json!({
        "version": 1, "command_id": command_id, "account_id": format!("bench-account-{account}"),
        "action": { "type": "reset_password" }, "summary": "benchmark", "signals": {}
    });
    Ok(serde_json::to_vec(&body)?.into())
}

/// (b) JSON requests published to the intake stream, decided, appended and projected by airlock's own consumers,
/// `REQUESTS_IN_FLIGHT_MAX` unanswered at any moment, until the projection's checkpoint reaches the log's end; latency
/// is publish to answer in the results stream (mostly queueing: the load is saturation). Then the open-loop phases on
/// the same airlock.
async fn airlock_end_to_end(
    client: &async_nats::Client,
    data_dir: &std::path::Path,
    run_id: &str,
    args: &BenchArgs,
    server_pid: Option<u32>,
) -> anyhow::Result<EndToEnd> {
    let NatsMode { service, projection, events: events_stream, context, intake } =
        nats_mode::open(client, data_dir, 1, RAW_IN_FLIGHT_MAX, Keys::generate(), crate::policy::Engine::shared())
            .await?;
    let service = std::sync::Arc::new(service);
    let (stop, shutdown) = watch::channel(false);
    let answers = client.subscribe(format!("airlock.result.intake.{run_id}")).await?;
    let intake_task = tokio::spawn(run_intake(service.clone(), context.clone(), intake.clone(), shutdown.clone()));
    let projector_task =
        tokio::spawn(run_projector(projection.clone(), events_stream.clone(), format!("{run_id}-projector"), shutdown));

    let requests = args.events / EVENTS_PER_REQUEST;
    let subject = format!("airlock.intake.intake.{run_id}.request_recovery");
    // Answers are read while requests are still being sent, so neither side buffers the whole run.
    let sent_at = SentAt::default();
    let window = Arc::new(tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT_MAX));
    let (_, expected) = watch::channel(requests);
    let collector = collect_answers(answers, sent_at.clone(), expected, Some(window.clone()));
    let started = Instant::now();
    let cpu_before = (cpu_seconds(None), server_pid.and_then(|pid| cpu_seconds(Some(pid))));
    let mut pending = Vec::with_capacity(REQUESTS_IN_FLIGHT_MAX);
    for index in 0..requests {
        if let Err(closed) = window.acquire().await.map(tokio::sync::SemaphorePermit::forget) {
            // The collector stopped before every answer came: its error says why.
            collector.await??;
            return Err(closed.into());
        }
        let command_id = format!("c{index}");
        let payload = request(&command_id, index % args.cases)?;
        sent_at.lock().expect("not poisoned").insert(command_id, Instant::now());
        let message = jetstream::message::PublishMessage::build().payload(payload.clone());
        pending.push((payload, context.send_publish(subject.clone(), message).await?));
        // Every request in flight is known stored (or sent again) before the window can run dry: a refused publish
        // holds its permit until it is stored and answered.
        if pending.len() >= REQUESTS_IN_FLIGHT_MAX {
            for (payload, ack) in pending.drain(..) {
                stored(&context, &subject, payload, ack).await?;
            }
        }
    }
    for (payload, ack) in pending.drain(..) {
        stored(&context, &subject, payload, ack).await?;
    }
    let (latencies, answers) = collector.await??;
    let last = events_stream.get_info().await?.state.last_sequence;
    let projected = || {
        let projection = projection.clone();
        tokio::task::spawn_blocking(move || projection.last_sequence())
    };
    while projected().await?? < last {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu_after = (cpu_seconds(None), server_pid.and_then(|pid| cpu_seconds(Some(pid))));
    let per_request_ms = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) * 1000.0 / requests as f64).filter(|_| requests > 0)
    };
    let cpu_ms = CpuPerRequest {
        process: per_request_ms(cpu_before.0, cpu_after.0),
        server: per_request_ms(cpu_before.1, cpu_after.1),
    };
    let saturation_per_s = per_second(requests, elapsed);
    let mut open_loop = Vec::new();
    let mut answers = answers;
    for (phase, load) in OPEN_LOOP_LOADS.into_iter().enumerate() {
        let (measured, rest) =
            open_loop_phase(&context, answers, &subject, phase, load, saturation_per_s, args).await?;
        open_loop.push(measured);
        answers = rest;
    }
    let _ = stop.send(true);
    intake_task.await??;
    projector_task.await??;
    Ok(EndToEnd {
        events: requests * EVENTS_PER_REQUEST,
        elapsed,
        saturated: Latency::of(&latencies),
        open_loop,
        cpu_ms,
    })
}

/// One open-loop phase: `load` times the saturation rate, for `--latency-seconds`. Each request is due at a fixed
/// moment and its latency counts from that moment, so a sender held up by a slow answer cannot hide the wait
/// (coordinated omission); publish acknowledgements are awaited off the sending path. A request the intake stream
/// refuses because airlock has fallen behind (its backlog for the sender is full) is counted as refused, not waited for.
async fn open_loop_phase(
    context: &jetstream::Context,
    answers: async_nats::Subscriber,
    subject: &str,
    phase: usize,
    load: f64,
    saturation_per_s: f64,
    args: &BenchArgs,
) -> anyhow::Result<(OpenLoop, async_nats::Subscriber)> {
    let requests_per_s = (saturation_per_s * load).max(1.0);
    let requests = ((requests_per_s * args.latency_seconds as f64) as usize).max(1);
    let sent_at = SentAt::default();
    let (expect, expected) = watch::channel(usize::MAX);
    let collector = collect_answers(answers, sent_at.clone(), expected, None);
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(String, jetstream::context::PublishAckFuture)>();
    let forget = sent_at.clone();
    let acknowledged = tokio::spawn(async move {
        let mut refused = 0;
        while let Some((command_id, ack)) = acked.recv().await {
            match ack.await {
                Ok(_) => {}
                Err(error) if backlog_full(&error) => {
                    refused += 1;
                    forget.lock().expect("not poisoned").remove(&command_id);
                }
                Err(error) => return Err(anyhow::Error::from(error).context("an open-loop request was not stored")),
            }
        }
        Ok::<usize, anyhow::Error>(refused)
    });
    let interval = Duration::from_secs_f64(1.0 / requests_per_s);
    let start = tokio::time::Instant::now();
    for index in 0..requests {
        let due = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let command_id = format!("o{phase}-{index}");
        let payload = request(&command_id, index % args.cases)?;
        sent_at.lock().expect("not poisoned").insert(command_id.clone(), due.into_std());
        let message = jetstream::message::PublishMessage::build().payload(payload);
        let ack = context.send_publish(subject.to_string(), message).await?;
        if acks.send((command_id, ack)).is_err() {
            break;
        }
    }
    drop(acks);
    let refused = acknowledged.await??;
    let _ = expect.send(requests - refused);
    let (latencies, answers) = collector.await??;
    let latency = Latency::of(&latencies);
    Ok((OpenLoop { load, requests_per_s, requests, refused, latency }, answers))
}

/// (d) Rebuilds a projection from the whole event log into a fresh file, as `airlock replay` does.
async fn replay(
    client: &async_nats::Client,
    path: &std::path::Path,
) -> anyhow::Result<crate::projection::replay::RebuildStats> {
    let log = JetStreamLog::open(client.clone(), JetStreamConfig::default()).await?;
    Ok(crate::projection::replay::rebuild(&log, path, |_, _| {}).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the latencies a phase reports are the percentiles of what it recorded, to the histogram's precision
    // (three significant digits), and that a phase with no answer reports zeros rather than failing.
    #[test]
    fn latency_percentiles_come_from_the_recorded_values() {
        let mut recorded = latencies();
        for ms in 1..=1_000u64 {
            recorded.saturating_record(ms * 1_000);
        }
        let latency = Latency::of(&recorded);
        let close = |found: f64, wanted: f64| (found - wanted).abs() <= wanted / 1_000.0;
        assert!(close(latency.p50_ms, 500.0), "{latency:?}");
        assert!(close(latency.p99_ms, 990.0), "{latency:?}");
        assert!(close(latency.max_ms, 1_000.0), "{latency:?}");
        let none = Latency::of(&latencies());
        assert_eq!((none.p50_ms, none.p99_ms, none.max_ms), (0.0, 0.0, 0.0));
    }
}
