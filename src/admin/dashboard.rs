//! The dashboard: one hand-written HTML page with inline JavaScript (no build step, nothing
//! fetched from the internet) that polls `/api/v1/stats` and `/api/v1/clients` and plots the
//! message rates of the last minutes on a canvas. With a token, it is read from the page's
//! `#token=...` fragment (never sent to the server in the URL) and sent as a bearer token.

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
