//! `eventing`: the operator command. See `eventing --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    eventing_cli::main(std::env::args_os()).await
}
