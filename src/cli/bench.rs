//! `airlock bench`: speed and memory, measured side by side in one run against the same NATS server. The raw
//! JetStream append rate (with the concurrency header, pipelined across case subjects) is the anchor; airlock's
//! end-to-end rate (JSON commands through the intake stream, decided, appended, projected) and its projection
//! rebuild rate are reported as ratios to the raw append and raw read rates. The last line is one JSON object.

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
    /// Where the throwaway server keeps its store (default: a temporary directory on disk, fsync included).
    #[arg(long)]
    pub store_dir: Option<PathBuf>,
}

/// Appends in flight at once in the raw phase (one per case at a time, as airlock's optimistic concurrency needs).
const RAW_IN_FLIGHT_MAX: usize = 256;

/// The raw phases' stream.
const RAW_STREAM: &str = "AIRLOCK_BENCH_RAW";

/// Rounds of the raw read and the rebuild; each rate reported is the median of its rounds.
const READ_ROUNDS: usize = 3;

/// Every airlock request in the benchmark appends one commit of this many events (the request, and the withheld
/// challenge of an account the directory does not know).
const EVENTS_PER_REQUEST: usize = 2;

pub fn run(args: BenchArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
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

fn percentile(sorted_ms: &[f64], fraction: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let index = ((sorted_ms.len() as f64 - 1.0) * fraction).round() as usize;
    sorted_ms[index]
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events >= EVENTS_PER_REQUEST && args.cases >= 1, "--events and --cases must be positive");
    let scratch = tempfile::Builder::new().prefix("airlock-bench-").tempdir()?;
    let (_server, url) = match &args.nats {
        Some(url) => (None, url.clone()),
        None => {
            let store = args.store_dir.clone().unwrap_or_else(|| scratch.path().join("nats"));
            let server = NatsServer::start(&store, &Options::default())?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let client = crate::nats::connect(&url, "airlock-bench").await?;
    let context = jetstream::new(client.clone());
    let run_id = crate::service::new_id("bench");

    let raw_append = raw_appends(&context, &run_id, args.events, args.cases).await?;
    let airlock = airlock_end_to_end(&client, &scratch.path().join("data"), &run_id, args.events, args.cases).await?;
    let rss_after_run = peak_rss_mb();
    // The two read-side rates alternate, so that a machine whose speed drifts (a shared VM) slows both alike, and
    // each is the median of its rounds.
    let (mut raw_read_rates, mut replay_rates, mut rss_one_round) = (Vec::new(), Vec::new(), 0.0);
    for round in 0..READ_ROUNDS {
        raw_read_rates.push(per_second(args.events, raw_reads(&context, args.events).await?));
        let rebuilt = scratch.path().join(format!("rebuilt-{round}.db"));
        let replay = replay(&client, &rebuilt).await?;
        replay_rates.push(per_second(replay.events as usize, replay.elapsed));
        std::fs::remove_file(&rebuilt)?;
        if round == 0 {
            // One rebuild is what `airlock replay` runs. Later rounds would raise the high-water mark further only
            // because glibc keeps the pages a finished round freed in its per-thread arenas (measured: the resident
            // set after round 1 equals that after round 0), so the memory figure is taken here.
            rss_one_round = peak_rss_mb();
        }
    }
    let _ = context.delete_stream(RAW_STREAM).await;

    let raw_append_per_s = per_second(args.events, raw_append);
    let raw_read_per_s = median(&mut raw_read_rates);
    let airlock_events_per_s = per_second(airlock.events, airlock.elapsed);
    let replay_events_per_s = median(&mut replay_rates);
    let report = serde_json::json!({
        "events": args.events,
        "cases": args.cases,
        "raw_append_per_s": raw_append_per_s.round(),
        "airlock_events_per_s": airlock_events_per_s.round(),
        "append_ratio": (airlock_events_per_s / raw_append_per_s * 1000.0).round() / 1000.0,
        "raw_read_per_s": raw_read_per_s.round(),
        "replay_events_per_s": replay_events_per_s.round(),
        "replay_ratio": (replay_events_per_s / raw_read_per_s * 1000.0).round() / 1000.0,
        "p50_ms": (airlock.p50_ms * 100.0).round() / 100.0,
        "p99_ms": (airlock.p99_ms * 100.0).round() / 100.0,
        "rss_mb": (rss_one_round * 10.0).round() / 10.0,
        "rss_after_airlock_mb": (rss_after_run * 10.0).round() / 10.0,
    });
    println!("airlock bench: {} events over {} case subjects, NATS at {url}", args.events, args.cases);
    println!("  {:<44} {:>12}", "measure", "value");
    for (label, key) in [
        ("raw JetStream append (expected-seq, pipelined) /s", "raw_append_per_s"),
        ("airlock end to end (intake -> projection) events/s", "airlock_events_per_s"),
        ("  ratio to raw append", "append_ratio"),
        ("raw ordered-consumer read /s", "raw_read_per_s"),
        ("airlock projection rebuild events/s", "replay_events_per_s"),
        ("  ratio to raw read", "replay_ratio"),
        ("command -> decision p50 ms", "p50_ms"),
        ("command -> decision p99 ms", "p99_ms"),
        ("peak RSS MiB (through the first rebuild)", "rss_mb"),
    ] {
        println!("  {label:<52} {:>12}", report[key]);
    }
    println!("{report}");
    Ok(())
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

struct EndToEnd {
    events: usize,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

/// (b) JSON requests published to the intake stream, decided, appended and projected by airlock's own consumers,
/// until the projection's checkpoint reaches the log's end. Latency is publish to answer in the results stream.
async fn airlock_end_to_end(
    client: &async_nats::Client,
    data_dir: &std::path::Path,
    run_id: &str,
    events: usize,
    cases: usize,
) -> anyhow::Result<EndToEnd> {
    let NatsMode { service, projection, events: events_stream, context, intake } =
        nats_mode::open(client, data_dir, 1, RAW_IN_FLIGHT_MAX, Keys::generate(), crate::policy::Engine::shared())
            .await?;
    let service = std::sync::Arc::new(service);
    let (stop, shutdown) = watch::channel(false);
    let mut answers = client.subscribe(format!("airlock.result.intake.{run_id}")).await?;
    let intake_task = tokio::spawn(run_intake(service.clone(), context.clone(), intake.clone(), shutdown.clone()));
    let projector_task =
        tokio::spawn(run_projector(projection.clone(), events_stream.clone(), format!("{run_id}-projector"), shutdown));

    let requests = events / EVENTS_PER_REQUEST;
    let subject = format!("airlock.intake.intake.{run_id}.request_recovery");
    // Answers are read while requests are still being sent, so neither side buffers the whole run.
    let sent_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let collector = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut latencies_ms = Vec::with_capacity(requests);
            while latencies_ms.len() < requests {
                let answer = tokio::time::timeout(Duration::from_secs(60), answers.next())
                    .await
                    .map_err(|_| anyhow::anyhow!("only {} of {requests} answers arrived", latencies_ms.len()))?
                    .ok_or_else(|| anyhow::anyhow!("the answer subscription ended"))?;
                let command_id = answer.headers.as_ref().and_then(|headers| headers.get("Airlock-Command-Id"));
                let sent = command_id.and_then(|id| sent_at.lock().expect("not poisoned").remove(id.as_str()));
                if let Some(sent) = sent {
                    latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Ok::<Vec<f64>, anyhow::Error>(latencies_ms)
        })
    };
    let started = Instant::now();
    let mut pending = Vec::with_capacity(RAW_IN_FLIGHT_MAX);
    for index in 0..requests {
        let command_id = format!("c{index}");
        let body = serde_json::json!({
            "version": 1, "command_id": command_id, "account_id": format!("bench-account-{}", index % cases),
            "action": { "type": "reset_password" }, "summary": "benchmark", "signals": {}
        });
        sent_at.lock().expect("not poisoned").insert(command_id, Instant::now());
        let message = jetstream::message::PublishMessage::build().payload(serde_json::to_vec(&body)?.into());
        pending.push(context.send_publish(subject.clone(), message).await?);
        if pending.len() >= RAW_IN_FLIGHT_MAX {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await?;
    }
    let mut latencies_ms = collector.await??;
    let last = events_stream.get_info().await?.state.last_sequence;
    let projected = || {
        let projection = projection.clone();
        tokio::task::spawn_blocking(move || projection.last_sequence())
    };
    while projected().await?? < last {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    intake_task.await??;
    projector_task.await??;
    latencies_ms.sort_by(f64::total_cmp);
    Ok(EndToEnd {
        events: requests * EVENTS_PER_REQUEST,
        elapsed,
        p50_ms: percentile(&latencies_ms, 0.50),
        p99_ms: percentile(&latencies_ms, 0.99),
    })
}

/// (d) Rebuilds a projection from the whole event log into a fresh file, as `airlock replay` does.
async fn replay(
    client: &async_nats::Client,
    path: &std::path::Path,
) -> anyhow::Result<crate::projection::replay::RebuildStats> {
    let log = JetStreamLog::open(client.clone(), JetStreamConfig::default()).await?;
    Ok(crate::projection::replay::rebuild(&log, path, |_, _| {}).await?)
}
