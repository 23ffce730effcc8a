//! What the HTTP benchmarks share: `wrk` (installed when missing) and its figures, and the release
//! `idstream` binary started on the embedded log in a temporary directory, bootstrapped with a
//! tenant `acme` and its administrator. Included by each benchmark that needs it
//! (`#[path = "support/http.rs"] mod harness;`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

pub const TOKEN: &str = "bench-admin-token-0123456789abcdef0123";

/// A knob of the benchmark, from the environment.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one `wrk` run measured.
pub struct Wrk {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: String,
}

fn parse_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

pub fn run_wrk(url: &str, script: &str, seconds: u64, connections: u64) -> anyhow::Result<Wrk> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
            script,
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut wrk = Wrk {
        requests_per_sec: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        errors: String::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            wrk.requests_per_sec = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50%") {
            wrk.p50_us = parse_duration_us(v).unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("99%") {
            wrk.p99_us = parse_duration_us(v).unwrap_or(0.0);
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            wrk.errors.push_str(line);
            wrk.errors.push(' ');
        }
    }
    if wrk.requests_per_sec == 0.0 {
        bail!(
            "wrk printed no throughput:\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(wrk)
}

/// Prints `title` and a table of runs: requests per second, p50 and p99, and any errors.
pub fn print_runs(title: &str, runs: &[(&str, &Wrk)]) {
    println!("\n{title}");
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "", "req/s", "p50 µs", "p99 µs"
    );
    for (name, run) in runs {
        println!(
            "{:<34} {:>12.0} {:>10.0} {:>10.0} {}",
            name, run.requests_per_sec, run.p50_us, run.p99_us, run.errors
        );
    }
}

pub fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "wrk"])
        .status()
        .context("wrk is missing and apt-get is not usable")?;
    if !status.success() {
        bail!("wrk is missing and `apt-get install -y wrk` failed");
    }
    Ok(())
}

pub struct Idstream {
    child: std::process::Child,
    pub base: String,
}

impl Drop for Idstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "bench-Passw0rd-correct-horse";

/// The `idstream` binary measured: `ACCESS_HTTP_BIN` (to compare another build in the same
/// harness), else the one built with this bench.
pub fn idstream_bin() -> String {
    std::env::var("ACCESS_HTTP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_idstream").to_owned())
}

/// `idstream bootstrap`: the tenant `acme` and its administrator, with a password.
pub fn bootstrap(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(idstream_bin())
        .args(["bootstrap", "--tenant", "acme", "--email", ADMIN_EMAIL])
        .args([
            "--first-name",
            "Ada",
            "--last-name",
            "Admin",
            "--password-stdin",
        ])
        .env("IDSTREAM_DATA_DIR", dir)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("spawning idstream bootstrap")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("idstream bootstrap failed");
    }
    Ok(())
}

pub fn start_idstream(dir: &std::path::Path) -> anyhow::Result<Idstream> {
    let mut child = Command::new(idstream_bin())
        .arg("serve")
        .env("IDSTREAM_LISTEN", "127.0.0.1:0")
        .env("IDSTREAM_DATA_DIR", dir)
        .env("IDSTREAM_ADMIN_TOKEN", TOKEN)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning idstream")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("idstream listening on ") {
                    break url.to_owned();
                }
            }
            _ => bail!("idstream exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    println!("idstream (pid {}) listening on {base}", child.id());
    Ok(Idstream { child, base })
}
