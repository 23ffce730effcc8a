//! The `idstream` command line (being wired up).

pub fn main() -> std::process::ExitCode {
    eprintln!("idstream: the service is being wired up");
    std::process::ExitCode::FAILURE
}
