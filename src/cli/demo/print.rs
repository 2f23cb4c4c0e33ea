//! How the demo shows things to a person: a case's timeline, a receipt, an evidence packet, messages.

use crate::core::ids::CaseId;
use crate::notify::Message;
use crate::projection::Projection;
use crate::projection::evidence::EvidencePacket;
use crate::projection::receipts::Receipt;

pub fn heading(title: &str) {
    println!("\n{}\n{title}\n{}", "=".repeat(title.len()), "=".repeat(title.len()));
}

pub fn step(text: &str) {
    println!("  > {text}");
}

pub fn timeline(projection: &Projection, case_id: &CaseId) -> anyhow::Result<()> {
    println!("\n  Timeline of {case_id}:");
    println!("    {:<20}  {:<28}  {:<20}  {:<12}  what happened", "when (UTC)", "who", "event", "state after");
    for row in projection.timeline(case_id)? {
        println!(
            "    {:<20}  {:<28}  {:<20}  {:<12}  {}",
            row.at.to_string().trim_end_matches('Z').replace('T', " "),
            row.actor,
            row.event_type,
            row.status_after,
            row.detail
        );
    }
    Ok(())
}

/// A message as the recipient would see it, with any one-time code masked: the demo's own output is a log too.
pub fn message(message: &Message) {
    let body = crate::notify::mask_codes(&message.body);
    println!("    to {} — {}", message.address, message.subject);
    for line in body.lines().filter(|line| !line.trim().is_empty()) {
        println!("      | {line}");
    }
}

pub fn receipt(receipt: &Receipt) {
    let body = &receipt.body;
    println!("\n  Receipt #{} ({})", receipt.receipt_sequence, body.kind);
    println!("    case             {}", body.case_id);
    println!("    account          {}", body.account_id);
    println!("    requester        {}", body.requester);
    println!("    action           {} (hash {})", body.action, &body.action_hash[..16]);
    for change in &body.changes {
        println!("    change           {change}");
    }
    println!("    verification     {}", body.verification);
    println!("    policy           {}", body.policy);
    println!("    conversation     {:?}", body.conversation_summary);
    println!("    tool call        {}", body.tool_call);
    println!(
        "    approvers        {}",
        if body.approvers.is_empty() { "(none needed)".into() } else { body.approvers.join(", ") }
    );
    println!("    requested at     {}", body.requested_at);
    println!("    recorded at      {}", body.recorded_at);
    println!("    notified         {}", body.notifications.join(", "));
    println!("    rollback         {}", body.rollback);
    println!("    previous hash    {}", receipt.previous_hash);
    println!("    hash             {}", receipt.hash);
}

pub fn evidence(packet: &EvidencePacket) {
    println!("\n  Evidence packet for {}", packet.case_id);
    println!("    account            {}", packet.account_id);
    println!("    requested by       {}", packet.requested_by);
    println!("    asked              {}", packet.asked);
    for change in &packet.would_change {
        println!("    would change       {change}");
    }
    for line in &packet.verification {
        println!("    verification       {line}");
    }
    println!("    blocking rules     {} (policy {})", packet.blocking_rules.join(", "), packet.policy_version);
    println!("    requester summary  (untrusted, shown as data) \"{}\"", packet.requester_summary_untrusted);
    println!("    signals            {}", packet.signals);
    println!("    action to approve  {}", packet.action_to_approve);
    println!("    action hash        {}", packet.action_hash);
    println!("    reviewers needed   {}", packet.reviewers_required);
    println!("    rollback path      {}", packet.rollback_path);
}
