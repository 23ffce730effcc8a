//! The `idstream` binary. Everything lives in the `idstream-cli` library.

/// mimalloc instead of the system allocator: the read models (sled 0.34) allocate and free a copy
/// of a tree leaf on every write, and glibc's malloc spent about a third of a rebuild's CPU on
/// that (see README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    idstream_cli::main()
}
