//! The page shell every page shares, and small pieces (status badges, durations).

use maud::{DOCTYPE, Markup, html};

pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pikaci" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header { a.home href="/" { "pikaci" } " " span.title { (title) } }
                main { (body) }
            }
        }
    }
}

/// A status as its JSON name, styled by it; failures also carry `failure`, so a status
/// added later is still marked when it is one.
pub fn status_badge(status: &str, failure: bool) -> Markup {
    html! {
        span class={ "status status-" (status) @if failure { " failure" } } data-status=(status) {
            (status)
        }
    }
}

pub fn duration(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_string(), crate::report::short_duration)
}

pub fn error_page(title: &str, detail: &str) -> Markup {
    page(
        title,
        html! {
            p.error { (detail) }
            p { a href="/" { "All runs" } }
        },
    )
}
