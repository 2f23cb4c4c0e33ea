//! The HTML templates of every page airlock serves (the owners' pages and the console), through MiniJinja: a
//! maintained engine that escapes everything it prints into a `.html` template unless told a value is already safe,
//! so a requester's words or an account's address can never become markup. The templates are compiled into the
//! binary (`templates/`), parsed once.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;
use std::sync::OnceLock;

const TEMPLATES: [(&str, &str); 12] = [
    ("layout.html", include_str!("../../templates/layout.html")),
    ("owner/message.html", include_str!("../../templates/owner/message.html")),
    ("owner/verify.html", include_str!("../../templates/owner/verify.html")),
    ("owner/set_password.html", include_str!("../../templates/owner/set_password.html")),
    ("owner/cancel.html", include_str!("../../templates/owner/cancel.html")),
    ("console/base.html", include_str!("../../templates/console/base.html")),
    ("console/message.html", include_str!("../../templates/console/message.html")),
    ("console/signin.html", include_str!("../../templates/console/signin.html")),
    ("console/queue.html", include_str!("../../templates/console/queue.html")),
    ("console/case.html", include_str!("../../templates/console/case.html")),
    ("console/operators.html", include_str!("../../templates/console/operators.html")),
    ("console/alert.html", include_str!("../../templates/console/alert.html")),
];

fn environment() -> &'static Environment<'static> {
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

/// `template` rendered with `context` as a page with `status`. A template that fails to render (a bug, never input)
/// is a plain 500 page that says so, never a half page.
pub fn render(status: StatusCode, template: &str, context: impl Serialize) -> Response {
    let context = minijinja::Value::from(minijinja::value::Serde(&context));
    let rendered = environment().get_template(template).and_then(|template| template.render(context));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, template, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>This page could not be shown.</p>"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every shipped template parses, and that what the pages print is text: a title or a message with markup
    // in it is escaped (no page takes ready-made HTML), and `inert` shows a bidirectional override as an escape.
    #[test]
    fn the_templates_parse_and_escape() {
        let page = environment()
            .get_template("owner/message.html")
            .unwrap()
            .render(minijinja::value::Serde(serde_json::json!({ "title": "<b>x</b>", "message": "<p>made</p>" })))
            .unwrap();
        assert!(page.contains("<title>&lt;b&gt;x&lt;&#x2f;b&gt;</title>"), "{page}");
        assert!(page.contains("&lt;p&gt;made&lt;&#x2f;p&gt;") && !page.contains("<p>made"), "{page}");
        let inert = environment().template_from_named_str("inert.html", "{{ text | inert }}").unwrap();
        assert_eq!(
            inert.render(minijinja::value::Serde(serde_json::json!({ "text": "a\u{202e}b<" }))).unwrap(),
            "a\\u{202e}b&lt;"
        );
    }
}
