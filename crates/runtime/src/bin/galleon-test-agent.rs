//! The instance agent as a binary of this crate alone, invoked like the real one (`<program> agent DIR`),
//! so the runtime's tests spawn real agents without building the whole `galleon` binary. It owns nothing:
//! everything is `galleon_runtime::agent_main`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [verb, dir] if verb == "agent" => {
            ExitCode::from(u8::try_from(galleon_runtime::agent_main(std::path::Path::new(dir))).unwrap_or(1))
        }
        _ => {
            eprintln!("usage: galleon-test-agent agent DIR");
            ExitCode::from(2)
        }
    }
}
