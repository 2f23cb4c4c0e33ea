//! Whether `airlock serve` is alive, ready and how busy (issue 17, item 5): `/healthz` (the process answers),
//! `/readyz` (it can do its work now: NATS connected, the projector within the lag allowed, the projection readable;
//! 503 naming the failing checks otherwise) and `/metrics` in the Prometheus text format, through the `metrics`
//! facade and `metrics-exporter-prometheus` (well kept, and the exporter renders into our own axum route, so no
//! second HTTP server). Counters are recorded where things happen (commands, decisions, effects); the gauges of
//! state (cases by state, the review queue, the kill switch, lag) are read from the projection at each scrape.

use crate::projection::Projection;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// The projector may be this many events behind the log before `/readyz` says not ready, unless configured.
pub const READY_LAG_DEFAULT: u64 = 1_000;

/// What the readiness and metrics endpoints look at.
pub struct Health {
    /// The NATS connection, in NATS mode.
    pub nats: Option<async_nats::Client>,
    /// The event stream, in NATS mode: its last sequence against the projection's gives the projector's lag.
    pub events: Option<async_nats::jetstream::stream::Stream>,
    pub projection: Arc<Projection>,
    pub max_lag: u64,
}

impl Health {
    /// The failing checks, by name and reason; empty when ready.
    pub async fn failing(&self) -> Vec<String> {
        let mut failing = Vec::new();
        if let Some(client) = &self.nats
            && client.connection_state() != async_nats::connection::State::Connected
        {
            failing.push("nats: not connected".to_string());
        }
        match self.lag().await {
            Ok(Some(lag)) if lag > self.max_lag => {
                failing.push(format!("projector: {lag} events behind the log (at most {} allowed)", self.max_lag))
            }
            Ok(_) => {}
            Err(reason) => failing.push(reason),
        }
        let projection = self.projection.clone();
        if let Ok(Err(error)) | Err(error) =
            tokio::task::spawn_blocking(move || projection.halted().map_err(|error| error.to_string()))
                .await
                .map_err(|error| error.to_string())
        {
            failing.push(format!("projection: {error}"));
        }
        failing
    }

    /// How far the projection is behind the event stream (NATS mode); `None` on the embedded store, where the
    /// projection is written with the log.
    async fn lag(&self) -> Result<Option<u64>, String> {
        let Some(events) = &self.events else { return Ok(None) };
        let mut events = events.clone();
        let info = tokio::time::timeout(std::time::Duration::from_secs(2), events.info())
            .await
            .map_err(|_| "nats: the event stream did not answer within 2 s".to_string())?
            .map_err(|error| format!("nats: cannot read the event stream: {error}"))?;
        let last = info.state.last_sequence;
        let projection = self.projection.clone();
        let applied = tokio::task::spawn_blocking(move || projection.last_sequence())
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("projection: {error}"))?;
        Ok(Some(last.saturating_sub(applied)))
    }

    /// The Prometheus text: the counters recorded so far, and the state read now.
    pub async fn metrics(&self) -> String {
        let handle = crate::observe::recorder();
        let projection = self.projection.clone();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let state = tokio::task::spawn_blocking(move || -> Result<_, crate::projection::ProjectionError> {
            let alerts = projection.alerts(false, now, usize::MAX)?;
            Ok((projection.count_by_status()?, projection.review_queue()?, projection.halted()?, alerts))
        })
        .await;
        if let Ok(Ok((by_status, queue, halted, alerts))) = state {
            for check in crate::core::campaign::Check::ALL {
                let (active, unacknowledged) = alerts.iter().filter(|alert| alert.check == check.name()).fold(
                    (0, 0),
                    |(active, unacknowledged), alert| {
                        (active + 1, unacknowledged + usize::from(alert.acknowledged_by.is_none()))
                    },
                );
                metrics::gauge!("airlock_alerts_active", "check" => check.name()).set(active as f64);
                metrics::gauge!("airlock_alerts_unacknowledged", "check" => check.name()).set(unacknowledged as f64);
            }
            for status in crate::core::state::Status::ALL.iter().skip(1) {
                let count = by_status.iter().find(|(name, _)| name == status.name()).map_or(0, |(_, count)| *count);
                metrics::gauge!("airlock_cases", "state" => status.name()).set(count as f64);
            }
            metrics::gauge!("airlock_review_queue_length").set(queue.len() as f64);
            let oldest = queue.iter().map(|row| now.0.saturating_sub(row.entered_at.0)).max().unwrap_or(0);
            metrics::gauge!("airlock_review_queue_oldest_seconds").set(oldest as f64 / 1_000.0);
            metrics::gauge!("airlock_kill_switch_on").set(if halted { 1.0 } else { 0.0 });
        }
        if let Ok(Some(lag)) = self.lag().await {
            metrics::gauge!("airlock_projector_lag_events").set(lag as f64);
        }
        if let Some(client) = &self.nats {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            metrics::gauge!("airlock_nats_connected").set(if connected { 1.0 } else { 0.0 });
        }
        handle.run_upkeep();
        handle.render()
    }
}

/// `/healthz`, `/readyz` and `/metrics`, for `serve --metrics ADDR`.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render))
        .with_state(health)
}

async fn ready(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let failing = health.failing().await;
    if failing.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", failing.join("; ")))
    }
}

async fn render(State(health): State<Arc<Health>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], health.metrics().await)
}
