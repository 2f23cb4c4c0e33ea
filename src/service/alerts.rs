//! Campaign alerts in the service (issue 20, ADR 25): after the projection has counted new hits, the indicators they
//! touched are reconciled with the alerts stream (`core::campaign::reconcile`), each append under compare-and-swap
//! on the stream, so that any number of airlock processes raise one alert per indicator and window between them; an
//! operator acknowledges one. The open alerts a new request matches are a policy fact (`context.rs`).

use crate::core::actor::{Actor, Role};
use crate::core::campaign::{AlertEvent, AlertEventBody, AlertsState, CampaignSettings, Check, reconcile};
use crate::core::ids::CommandId;
use crate::core::text::UntrustedText;
use crate::log::envelope::{Stream, encode_alert_event};
use crate::log::{EventLog, alerts_state};
use crate::service::context::blocking;
use crate::service::repository::{Retries, Round, Written};
use crate::service::{Service, ServiceError, new_id, sender_key};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The checks' thresholds, and how far this process has reconciled the projection's hits.
#[derive(Debug, Default)]
pub struct Campaigns {
    pub settings: CampaignSettings,
    /// The log position of the last hit reconciled: the next round looks only at indicators hit after it. Starts at
    /// 0, so a process reconciles every hit its projection keeps once when it starts (a crash between a hit and its
    /// alert loses nothing).
    reconciled: AtomicU64,
    /// The alerts stream as this process last read or wrote it (folded, its events, its last commit): appends are
    /// made on it, and only a lost race reads the stream again.
    known: Mutex<Option<(AlertsState, u64, u64)>>,
}

impl Campaigns {
    pub fn new(settings: CampaignSettings) -> Campaigns {
        Campaigns { settings, reconciled: AtomicU64::new(0), known: Mutex::new(None) }
    }

    fn known(&self) -> Option<(AlertsState, u64, u64)> {
        self.known.lock().expect("the alerts cache lock is never poisoned").clone()
    }

    fn remember(&self, known: Option<(AlertsState, u64, u64)>) {
        *self.known.lock().expect("the alerts cache lock is never poisoned") = known;
    }
}

/// Who appends the alerts airlock raises itself.
fn campaigns_actor() -> Actor {
    Actor::new(Role::System, "campaigns")
}

impl<L: EventLog> Service<L> {
    /// The alerts stream folded, its number of events, and the sequence of its last commit.
    pub async fn alerts_state(&self) -> Result<(AlertsState, u64, u64), ServiceError> {
        Ok(alerts_state(&self.log).await?)
    }

    /// Brings the alerts stream up to what the projection's hits show: raises an alert for an indicator that tripped
    /// its check, adds later cases to an active one. Returns how many alert events were appended.
    pub async fn reconcile_alerts(&self) -> Result<usize, ServiceError> {
        let after = self.campaigns.reconciled.load(Ordering::SeqCst);
        let projection = self.projection.clone();
        let (indicators, last) = blocking(move || Ok(projection.campaign_indicators_after(after)?)).await?;
        let mut appended = 0;
        let mut failed = None;
        // One indicator that cannot be reconciled now does not hold the others up; the round is tried again.
        for (check, indicator) in indicators {
            match self.reconcile_indicator(check, indicator).await {
                Ok(count) => appended += count,
                Err(error) => failed = Some(error),
            }
        }
        if appended > 0 {
            self.project_if_inline().await?;
        }
        match failed {
            Some(error) => Err(error),
            None => {
                self.campaigns.reconciled.fetch_max(last, Ordering::SeqCst);
                Ok(appended)
            }
        }
    }

    async fn reconcile_indicator(&self, check: Check, indicator: String) -> Result<usize, ServiceError> {
        let threshold = self.campaigns.settings.threshold(check);
        let (projection, wanted) = (self.projection.clone(), indicator.clone());
        let hits = blocking(move || Ok(projection.campaign_hits(check, &wanted)?)).await?;
        let mut appended = 0;
        // Every event takes at least one hit into an alert, so there are never more events than hits.
        let events_max = hits.len();
        let mut retries = Retries::new("the alerts stream");
        loop {
            let (state, version, last_sequence) = match self.campaigns.known() {
                Some(known) => known,
                None => self.alerts_state().await?,
            };
            let Some(body) = reconcile(check, &indicator, threshold, &hits, &state) else {
                self.campaigns.remember(Some((state, version, last_sequence)));
                return Ok(appended);
            };
            if appended >= events_max {
                tracing::error!(check = check.name(), appended, "campaign alerts: reconciling does not settle");
                return Err(ServiceError::Corrupt(format!("the alerts of one {check} indicator do not settle")));
            }
            let event = AlertEvent {
                at: self.clock.now(),
                actor: campaigns_actor(),
                command_id: CommandId::new(new_id("alert")),
                body,
            };
            let round = match self.append_alert(version, last_sequence, &event).await? {
                Written::Conflict => {
                    self.campaigns.remember(None);
                    Round::Conflict
                }
                Written::New { first_sequence } => {
                    self.campaigns.remember(Some((state.evolve(&event), version + 1, first_sequence)));
                    Round::Done(())
                }
                Written::Duplicate => {
                    self.campaigns.remember(None);
                    Round::Done(())
                }
            };
            if retries.settle(round).await?.is_some() {
                appended += 1;
                retries = Retries::new("the alerts stream");
                if let AlertEventBody::AlertRaised { alert_id, .. } = &event.body {
                    metrics::counter!("airlock_alerts_raised_total", "check" => check.name()).increment(1);
                    // The alert's id, not its indicator: an address or a requester's text has no place in the log.
                    tracing::warn!(check = check.name(), alert = %alert_id, "campaign alert raised");
                }
            }
        }
    }

    /// An operator acknowledges an alert: read (it stays open to the policy), or `benign` (no campaign; policies stop
    /// seeing it). Recorded in the alerts stream as the operator.
    pub async fn acknowledge_alert(
        &self,
        command_id: CommandId,
        actor: Actor,
        alert_id: &str,
        reason: UntrustedText,
        benign: bool,
    ) -> Result<(), ServiceError> {
        if actor.role != Role::Operator {
            return Err(ServiceError::Rejected(crate::core::rejection::Rejection::RoleNotAllowed {
                role: actor.role,
                command: crate::core::command::CommandKind::AcknowledgeAlert,
            }));
        }
        let mut retries = Retries::new("the alerts stream");
        loop {
            let (state, version, last_sequence) = self.alerts_state().await?;
            let body = match state.acknowledge(alert_id, reason.clone(), benign) {
                Ok(body) => body,
                // The same command again (a retry whose answer was lost) finds its own acknowledgement.
                Err(crate::core::rejection::Rejection::AlertAlreadyAcknowledged)
                    if state.alerts[alert_id]
                        .acknowledged
                        .as_ref()
                        .is_some_and(|ack| ack.by == actor && ack.command_id == command_id) =>
                {
                    return Ok(());
                }
                Err(rejection) => return Err(ServiceError::Rejected(rejection)),
            };
            let event = AlertEvent { at: self.clock.now(), actor: actor.clone(), command_id: command_id.clone(), body };
            let round = match self.append_alert_as(version, last_sequence, &event, &actor).await? {
                Written::Conflict => Round::Conflict,
                Written::New { .. } | Written::Duplicate => Round::Done(()),
            };
            // This process's copy of the stream is behind now: the next reconcile reads it again.
            self.campaigns.remember(None);
            if retries.settle(round).await?.is_some() {
                self.project_if_inline().await?;
                return Ok(());
            }
        }
    }

    async fn append_alert(
        &self,
        version: u64,
        last_sequence: u64,
        event: &AlertEvent,
    ) -> Result<Written, ServiceError> {
        self.append_alert_as(version, last_sequence, event, &campaigns_actor()).await
    }

    async fn append_alert_as(
        &self,
        version: u64,
        last_sequence: u64,
        event: &AlertEvent,
        sender: &Actor,
    ) -> Result<Written, ServiceError> {
        let key = format!("alert:{}", sender_key(sender, &event.command_id));
        let encoded = vec![encode_alert_event(version + 1, event)];
        crate::service::repository::written(self.log.append(&Stream::Alerts, last_sequence, &key, encoded).await)
    }
}
