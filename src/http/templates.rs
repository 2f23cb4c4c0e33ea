//! The pages' side of the templates (`crate::templates`): a template rendered as an HTTP answer.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::templates::environment;

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
