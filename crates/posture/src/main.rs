//! The `posture` binary: see `posture --help`.

/// mimalloc instead of the system allocator: every request allocates and
/// frees many small buffers (headers, keys, bodies) on both cores, and under
/// load glibc's malloc took about a fifth of the server's CPU time in the
/// profile of issue 8 (see the README's Performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    posture::cli::main().await
}
