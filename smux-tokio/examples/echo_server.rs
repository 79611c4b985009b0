//! An smux echo server: every stream of every connection gets its bytes back.
//!
//! `cargo run -p smux-tokio --example echo_server -- [address]` (default
//! `127.0.0.1:7000`); try it with the `many_streams_client` example.

use smux_tokio::{Config, Listener, Session};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let listener = Listener::bind(&addr, Config::default()).await?;
    eprintln!("smux echo server on {}", listener.local_addr()?);
    loop {
        let (session, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Usually about one connection (reset, out of descriptors): go on.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        eprintln!("{peer}: session started");
        tokio::spawn(async move {
            let reason = serve(session).await;
            eprintln!("{peer}: session ended ({reason})");
        });
    }
}

/// Echoes every stream of `session` until the session ends.
async fn serve(session: Session) -> smux_tokio::EndReason {
    while let Ok(stream) = session.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = stream.into_split();
            // Ends when the client closes the stream (end-of-file) or the session ends.
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
    session.end_reason().unwrap_or(smux_tokio::EndReason::Local)
}
