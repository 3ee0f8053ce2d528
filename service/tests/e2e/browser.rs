//! A real headless Chromium, driven over WebDriver by Debian's
//! `chromedriver` (both installed by scripts/test), for the dashboard's
//! tests: pages, clicks, the DOM, screenshots, and the console's errors.

use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

/// A browser session; the driver (and its browser) ends when dropped.
pub(crate) struct Browser {
    pub(crate) client: Client,
    _session: count_bench::browser::Browser,
}

/// A chromedriver command of its own (outside W3C WebDriver), as
/// `session/{id}/{path}` with a JSON body.
#[derive(Debug)]
struct DriverCommand {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for DriverCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` ×
    /// `height` pixels, keeping the console's messages.
    pub(crate) async fn start(width: u32, height: u32) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:loggingPrefs".to_owned(), json!({ "browser": "ALL" }));
        let session = count_bench::browser::Browser::start(width, height, capabilities)
            .await
            .expect("a browser session")
            .expect("chromedriver (Debian's chromium-driver, which scripts/test installs)");
        Browser {
            client: session.client.clone(),
            _session: session,
        }
    }

    /// The console's errors (and failed loads), and the page's own
    /// warnings, since the last call.
    pub(crate) async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(DriverCommand {
                path: "se/log",
                body: json!({ "type": "browser" }),
            })
            .await
            .expect("the browser's log");
        entries
            .as_array()
            .expect("log entries")
            .iter()
            .filter(|entry| {
                entry["level"] == "SEVERE"
                    || (entry["level"] == "WARNING" && entry["source"] == "console-api")
            })
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The browser's cookies, as the DevTools protocol describes them
    /// (with `httpOnly`, `sameSite`, `path`), which a page's script cannot
    /// all see.
    pub(crate) async fn cookies(&self) -> Vec<Value> {
        let answer = self
            .client
            .issue_cmd(DriverCommand {
                path: "goog/cdp/execute",
                body: json!({ "cmd": "Storage.getCookies", "params": {} }),
            })
            .await
            .expect("the cookies");
        answer["cookies"].as_array().expect("cookies").clone()
    }

    /// Renders as if the system asked for a dark (or light) page.
    pub(crate) async fn prefer_dark(&self, dark: bool) {
        self.client
            .issue_cmd(DriverCommand {
                path: "goog/cdp/execute",
                body: json!({
                    "cmd": "Emulation.setEmulatedMedia",
                    "params": { "features": [
                        { "name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" } }
                    ] },
                }),
            })
            .await
            .expect("emulated media");
    }

    /// Saves the window as `target/screenshots/{name}.png`, for a person
    /// to look at.
    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let folder = target.join("screenshots");
        std::fs::create_dir_all(&folder).expect("the screenshots folder");
        std::fs::write(folder.join(format!("{name}.png")), png).expect("the screenshot");
    }

    /// The attribute `name` of the first element `css` selects, if any.
    pub(crate) async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        // None too when a redraw replaced the element between the two.
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(name).await.ok().flatten()
    }

    /// Waits until the attribute `name` of `css` reads `expected`, for at
    /// most `limit`; the last value read is in the failure.
    pub(crate) async fn wait_for_attribute(
        &self,
        css: &str,
        name: &str,
        expected: &str,
        limit: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let value = self.attribute(css, name).await;
            if value.as_deref() == Some(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} [{name}] is {value:?}, not {expected:?}, after {limit:?}; page errors: {:?}",
                self.text("#error").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element `css` selects.
    pub(crate) async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.expect("text"),
            Err(_) => String::new(),
        }
    }

    /// Runs `script` in the page and returns its value.
    pub(crate) async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("a script")
    }
}
