//! The browser the ui tests drive: chromedriver and headless Chromium
//! (Debian's `chromium` and `chromium-driver`), one test at a time.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{PATIENCE, workspace_root};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser test at a time: each starts a Chromium of its own.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the browser tests can run here; panics when they must
/// (`NANO_TEST_REQUIRE_BROWSER=1`) and cannot.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMEDRIVER, CHROMIUM]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    if std::env::var("NANO_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("NANO_TEST_REQUIRE_BROWSER=1, but {why}");
    }
    // Once, and past the test harness's capture, so that it shows.
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the browser tests (tests/e2e/ui.rs): {why}; NANO_TEST_REQUIRE_BROWSER=1 makes this a failure"
        );
    });
    false
}

/// chromedriver and one Chromium session, for one test at a time; both end
/// when dropped, and the next browser test may start.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    port: u16,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// The browser for one test, after the tests before it are done; `None`
    /// (the test skips, saying so once) where no browser is installed.
    pub async fn open() -> Option<Self> {
        if !browser_available() {
            return None;
        }
        let turn = TURN.lock().await;
        Some(Self::start(turn).await)
    }

    async fn start(turn: tokio::sync::MutexGuard<'static, ()>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so dropping it ends Chromium too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().expect("chromedriver starts");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened on port {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            PATIENCE,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromedriver starts Chromium in time")
        .expect("chromedriver starts Chromium");
        Self {
            client: Some(client),
            driver,
            port,
            _turn: turn,
        }
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub async fn goto(&self, url: &str) {
        self.client().goto(url).await.unwrap();
    }

    /// Runs `script` (a function body) in the page.
    pub async fn run(&self, script: &str) -> Value {
        self.client().execute(script, Vec::new()).await.unwrap()
    }

    /// Polls `script` until it returns something other than null, false,
    /// 0 or ""; returns that. Fails after PATIENCE, showing the page.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.run(script).await;
            let holds = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if holds {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.run("return document.body.innerText").await;
                panic!("never happened: {what}\npage text:\n{}", text.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The text of the first element matching `selector`, once there.
    pub async fn text_of(&self, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e && e.textContent",
            json!(selector)
        );
        self.until(&format!("{selector} is shown"), &script)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn find(&self, selector: &str) -> fantoccini::elements::Element {
        self.until(
            &format!("{selector} is shown"),
            &format!("return document.querySelector({}) !== null", json!(selector)),
        )
        .await;
        self.client().find(Locator::Css(selector)).await.unwrap()
    }

    pub async fn count(&self, selector: &str) -> u64 {
        self.run(&format!("return document.querySelectorAll({}).length", json!(selector)))
            .await
            .as_u64()
            .unwrap()
    }

    /// What the page logged at error level so far (script errors, refused
    /// requests, Content-Security-Policy violations), from chromedriver's
    /// log endpoint, which fantoccini does not wrap.
    async fn console_errors(&self) -> Vec<String> {
        let session = self.client().session_id().await.unwrap().unwrap();
        let url = format!("http://127.0.0.1:{}/session/{session}/se/log", self.port);
        let log: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Fails the test if the page logged an error.
    pub async fn expect_no_errors(&self) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    }

    /// Types `keys` into whatever has the focus.
    pub async fn press(&self, keys: &str) {
        let focused = self.client().active_element().await.unwrap();
        focused.send_keys(keys).await.unwrap();
    }

    /// With `NANO_UI_SCREENSHOTS=1`: the whole page as `docs/<name>.png`
    /// (the window grown to its height first).
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("NANO_UI_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let height = self
                .run("return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight")
                .await;
            let height = height.as_u64().unwrap().clamp(600, 2400) as u32;
            self.client().set_window_size(1280, height).await.unwrap();
            let png = self.client().screenshot().await.unwrap();
            std::fs::write(workspace_root().join("docs").join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started.
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: a plain syscall on a process group this test created.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
