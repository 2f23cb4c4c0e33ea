//! The `airlock` binary: parse the command line and run the command. Everything else lives in the library.

#![forbid(unsafe_code)]

/// The stack of the thread every command runs on: what glibc gives a main thread.
const COMMAND_STACK_BYTES: usize = 8 * 1024 * 1024;

fn main() -> std::process::ExitCode {
    // Every command runs on a thread whose stack airlock sizes, not on the process's main thread: musl (the static
    // release archives) reports a main thread's stack as only the pages touched so far, so a stack-depth check asking
    // how much is left (Cedar's evaluator and validator ask `stacker`) would refuse at once.
    let command = std::thread::Builder::new()
        .name("airlock".into())
        .stack_size(COMMAND_STACK_BYTES)
        .spawn(airlock::cli::main)
        .expect("the command's thread starts");
    command.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
