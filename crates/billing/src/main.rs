//! The `idstream-billing` binary. Everything lives in the `idstream-billing` library; the binary
//! target is owned by the root package so that the integration tests can run it.

fn main() -> std::process::ExitCode {
    idstream_billing::main()
}
