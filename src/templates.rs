//! Every text airlock writes for people from a template (issue 19, issue 20 item 4), through MiniJinja, a maintained
//! engine: the pages (the owners' pages and the console, `.html`, where everything printed is HTML-escaped unless
//! marked as markup made here, so a requester's words or an account's address can never become markup) and the
//! messages to owners (`.txt`, plain text, not escaped). The templates are compiled into the binary (`templates/`),
//! parsed once.

use minijinja::Environment;
use serde::Serialize;
use std::sync::OnceLock;

const TEMPLATES: [(&str, &str); 16] = [
    ("layout.html", include_str!("../templates/layout.html")),
    ("owner/message.html", include_str!("../templates/owner/message.html")),
    ("owner/verify.html", include_str!("../templates/owner/verify.html")),
    ("owner/set_password.html", include_str!("../templates/owner/set_password.html")),
    ("owner/cancel.html", include_str!("../templates/owner/cancel.html")),
    ("console/base.html", include_str!("../templates/console/base.html")),
    ("console/message.html", include_str!("../templates/console/message.html")),
    ("console/signin.html", include_str!("../templates/console/signin.html")),
    ("console/queue.html", include_str!("../templates/console/queue.html")),
    ("console/case.html", include_str!("../templates/console/case.html")),
    ("console/operators.html", include_str!("../templates/console/operators.html")),
    ("console/alert.html", include_str!("../templates/console/alert.html")),
    ("messages/code.txt", include_str!("../templates/messages/code.txt")),
    ("messages/changed.txt", include_str!("../templates/messages/changed.txt")),
    ("messages/reset.txt", include_str!("../templates/messages/reset.txt")),
    ("messages/scheduled.txt", include_str!("../templates/messages/scheduled.txt")),
];

pub fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        for (name, source) in TEMPLATES {
            environment.add_template(name, source).unwrap_or_else(|error| panic!("template {name}: {error}"));
        }
        // Outside text made inert: control, bidirectional and invisible characters shown as escapes (then HTML-escaped
        // like everything else), so that nothing a requester wrote can reorder or hide what a reviewer reads.
        environment.add_filter("inert", |text: String| crate::core::text::for_terminal(&text));
        environment
    })
}

/// A message's text: `template` (under `templates/messages/`) rendered with `context`. The templates are part of the
/// binary and their context is made here, so a failure is a bug: it panics in tests and debug builds, and in a
/// release build the message says only that a notice is due and where to look.
pub fn message(template: &str, context: impl Serialize) -> String {
    let context = minijinja::Value::from(minijinja::value::Serde(&context));
    match environment().get_template(template).and_then(|template| template.render(context)) {
        Ok(text) => text,
        Err(error) => {
            debug_assert!(false, "message {template}: {error}");
            tracing::error!(%error, template, "a message could not be rendered");
            "A change to your account is under way. Contact support from this address if you did not ask for it."
                .to_string()
        }
    }
}
