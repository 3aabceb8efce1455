//! The `kiln` binary: parses arguments and hands over to the CLI layer.

fn main() -> std::process::ExitCode {
    kiln::memory::tune();
    kiln::cli::main()
}
