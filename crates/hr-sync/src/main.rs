//! The `idstream-hr-sync` binary. Everything lives in the `idstream-hr-sync` library; the binary
//! target is owned by the root package so that the integration tests can run it.

fn main() -> std::process::ExitCode {
    idstream_hr_sync::main()
}
