//! The `idstream` binary. Everything lives in the `idstream-cli` library.

fn main() -> std::process::ExitCode {
    idstream_cli::main()
}
