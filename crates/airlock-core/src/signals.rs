//! What the requester's channel observed about the request: network, region, device, claims of urgency. SPEC
//! principle 3: these only ever add friction. The type offers no way to turn a signal into proof: the only
//! function that reads them is `Signals::friction`, and it can only raise risk.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signals {
    /// The source network as the front door saw it (an ASN, a /24, a proxy label).
    pub source_network: Option<String>,
    /// Where the request appears to come from.
    pub region: Option<String>,
    /// Whether the front door saw an anonymising proxy, VPN or hosting network.
    pub via_proxy: bool,
    /// Whether the requester pushed for speed ("urgent", "traveling", "locked out of payroll").
    pub claims_urgency: bool,
    /// Whether the requester offered knowledge facts (birth date, address, card digits). Never proof (THREATS 5).
    pub offered_knowledge_facts: bool,
}

impl Signals {
    /// How many risk-raising signals are present. A plausible story can make this bigger; nothing makes it
    /// negative, so nothing here can shorten a wait or skip a step.
    pub fn friction(&self) -> u32 {
        u32::from(self.via_proxy) + u32::from(self.claims_urgency) + u32::from(self.offered_knowledge_facts)
    }
}
