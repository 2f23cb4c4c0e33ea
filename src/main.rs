//! The `airlock` binary: parse the command line and run the command. Everything else lives in the library.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    airlock::cli::main()
}
