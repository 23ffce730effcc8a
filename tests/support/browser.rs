//! A real browser for the page tests: Debian's Chromium, headless, driven through its
//! ChromeDriver (WebDriver) with `fantoccini`. Each browser has a profile directory of its own,
//! which outlives a restart of the browser (so cookies kept on disk can be seen to survive).
//! A failed expectation saves a screenshot under `target/browser-failures/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

/// ChromeDriver, started on a free port.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub async fn start() -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; .ci/test installs it)");
        // Wait until it listens.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Driver { child, port }
    }

    /// A headless Chromium with the profile in `profile`.
    pub async fn browser(&self, profile: &Path, name: &str) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=900,900", format!("--user-data-dir={}", profile.display())],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            name: name.to_owned(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One browser window.
pub struct Browser {
    pub client: Client,
    name: String,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Waits (a few seconds at most) until the address satisfies `wanted`, and answers it.
    pub async fn wait_for_url(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if wanted(&url) || std::time::Instant::now() >= deadline {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the field with id `id`.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no field #{id}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing matches {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// The page's text, or empty while a navigation replaces the page.
    pub async fn text_now(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits (a few seconds at most) until the page shows `text`, then fails with a screenshot.
    pub async fn expect_text(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut shown = self.text_now().await;
        while !shown.contains(text) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            shown = self.text_now().await;
        }
        if !shown.contains(text) {
            let path = self.screenshot("expect_text").await;
            panic!(
                "{}: the page at {} does not show {text:?} (screenshot {}): {shown}",
                self.name,
                self.url().await,
                path.display()
            );
        }
    }

    /// Waits (a few seconds at most) until the page no longer shows `text`, then fails.
    pub async fn expect_no_text(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.text_now().await.contains(text) {
            if std::time::Instant::now() >= deadline {
                let path = self.screenshot("expect_no_text").await;
                panic!(
                    "{}: the page at {} still shows {text:?} (screenshot {})",
                    self.name,
                    self.url().await,
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot under `target/browser-failures/`.
    pub async fn screenshot(&self, what: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{what}.png", self.name));
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(&path, png).unwrap();
        }
        path
    }

    /// Runs axe-core (the npm package that `.ci/test` installs under `target/axe`) in the page
    /// and fails, with a screenshot, on any serious or critical violation.
    pub async fn check_accessibility(&self) {
        let violations = self.serious_violations().await;
        if !violations.is_empty() {
            let shot = self.screenshot("accessibility").await;
            panic!(
                "{}: {} has accessibility violations (screenshot {}):\n{}",
                self.name,
                self.url().await,
                shot.display(),
                violations.join("\n")
            );
        }
    }

    /// axe-core's serious and critical violations on the page.
    pub async fn serious_violations(&self) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/axe/node_modules/axe-core/axe.min.js");
        let axe = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "axe-core is not at {} ({e}): run ./.ci/test, or `npm install --prefix target/axe axe-core@4`",
                path.display()
            )
        });
        self.client
            .execute(&axe, Vec::new())
            .await
            .expect("axe-core loads in the page");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at '
                          + v.nodes.map(n => n.target.join(' ')).join(', '))))
                   .catch(e => done(['axe failed: ' + e]));",
                Vec::new(),
            )
            .await
            .expect("axe-core runs");
        serde_json::from_value(found).expect("axe-core answers a list of violations")
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// A command of WebDriver's WebAuthn extension (W3C WebAuthn Level 2, §11: the virtual
/// authenticators of automation), which fantoccini does not know: sent as a raw command.
#[derive(Debug)]
struct WebAuthnCommand {
    method: http::Method,
    /// After `session/{id}/webauthn/`.
    path: String,
    body: Option<serde_json::Value>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(|body| body.to_string()),
        )
    }
}

/// A virtual authenticator of the browser (Chromium's, through WebDriver): a platform
/// authenticator holding resident keys that verifies its user, as a phone or laptop does.
pub struct VirtualAuthenticator {
    pub id: String,
}

impl Browser {
    async fn webauthn(
        &self,
        method: http::Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        self.client
            .issue_cmd(WebAuthnCommand { method, path, body })
            .await
            .unwrap_or_else(|e| panic!("a WebAuthn command of the browser: {e}"))
    }

    /// Adds a virtual authenticator (CTAP2, internal, resident keys, user verification).
    pub async fn add_virtual_authenticator(&self) -> VirtualAuthenticator {
        let answer = self
            .webauthn(
                http::Method::POST,
                "authenticator".into(),
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                })),
            )
            .await;
        VirtualAuthenticator {
            id: answer
                .as_str()
                .expect("the virtual authenticator's id")
                .to_owned(),
        }
    }

    /// The credentials the authenticator holds (`credentialId`, `rpId`, `privateKey`,
    /// `userHandle`, `signCount`, `isResidentCredential`).
    pub async fn authenticator_credentials(
        &self,
        authenticator: &VirtualAuthenticator,
    ) -> Vec<serde_json::Value> {
        let answer = self
            .webauthn(
                http::Method::GET,
                format!("authenticator/{}/credentials", authenticator.id),
                None,
            )
            .await;
        answer.as_array().cloned().unwrap_or_default()
    }

    /// Empties the authenticator.
    pub async fn remove_authenticator_credentials(&self, authenticator: &VirtualAuthenticator) {
        self.webauthn(
            http::Method::DELETE,
            format!("authenticator/{}/credentials", authenticator.id),
            None,
        )
        .await;
    }

    /// Puts `credential` (as [`Browser::authenticator_credentials`] lists them) into the
    /// authenticator: a copy of a key, with whatever signature counter it says.
    pub async fn add_authenticator_credential(
        &self,
        authenticator: &VirtualAuthenticator,
        credential: serde_json::Value,
    ) {
        self.webauthn(
            http::Method::POST,
            format!("authenticator/{}/credential", authenticator.id),
            Some(credential),
        )
        .await;
    }
}
