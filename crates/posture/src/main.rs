//! The `posture` binary: see `posture --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    posture::cli::main().await
}
