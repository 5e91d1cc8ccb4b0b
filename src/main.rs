//! The `profusion` binary: a thin entry point; the commands live in the library's `cli`
//! module (see [`profusion::cli::main`] for why the binary holds nothing else).

fn main() -> std::process::ExitCode {
    profusion::cli::main()
}
