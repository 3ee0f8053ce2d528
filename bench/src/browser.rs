//! A headless Chromium session through Debian's chromedriver: the
//! dashboard's first load here, and the dashboard's tests in the service.

use std::time::Duration;

use std::os::unix::process::CommandExt;

use crate::error::{Error, Result};

/// A WebDriver session; its driver and browser end when dropped.
pub struct Browser {
    /// The session.
    pub client: fantoccini::Client,
    _driver: DriverGroup,
}

/// chromedriver in a process group of its own, with the Chromium it starts:
/// killed whole when dropped. Killing the driver alone leaves its browser
/// running, and a test that fails cannot close its session first.
struct DriverGroup(std::process::Child);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium window of
    /// `width` × `height` through it, with the `extra` capabilities
    /// (`goog:loggingPrefs`, say); `None` when chromedriver is not
    /// installed.
    pub async fn start(
        width: u32,
        height: u32,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Browser>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("finding a free port"))?
            .port();
        let driver = match std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
        {
            Ok(driver) => driver,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io("starting chromedriver")(error)),
        };
        let driver = DriverGroup(driver);
        let mut capabilities = extra;
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                // As root, Chromium runs only without its sandbox.
                // No crash reporter: its handler leaves the process group.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-crash-reporter",
                         "--disable-breakpad", format!("--window-size={width},{height}")],
            }),
        );
        // The driver takes a moment to listen: retried for up to 30 s.
        let mut last = String::new();
        for _ in 0..150 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Ok(Some(Browser {
                        client,
                        _driver: driver,
                    }));
                }
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::Check(format!(
            "chromedriver started no session: {last}"
        )))
    }
}
