//! An smux echo server: every stream of every session gets its bytes back.
//!
//! ```text
//! cargo run -p smux-smol --example smol_echo_server -- 127.0.0.1:9000
//! cargo run -p smux-smol --example smol_many_streams_client -- 127.0.0.1:9000 1000
//! ```
//!
//! Each session's driver runs on smol's global executor (spawned by the listener);
//! one task per session accepts and one task per stream copies bytes.

use std::io;

use smux_smol::{Config, Listener, Session, Stream};

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    smol::block_on(async {
        let listener = Listener::bind(addr.as_str(), Config::default())?;
        println!("smux echo server on {}", listener.local_addr()?);
        loop {
            let (session, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: wait a little and go on.
                    eprintln!("accept failed: {e}");
                    smol::Timer::after(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            println!("{peer}: session started");
            smol::spawn(async move {
                serve(&session).await;
                println!("{peer}: session ended: {}", session.closed().await);
            })
            .detach();
        }
    })
}

async fn serve(session: &Session) {
    while let Ok(stream) = session.accept().await {
        smol::spawn(echo(stream)).detach();
    }
}

async fn echo(stream: Stream) {
    let (reader, mut writer) = stream.into_split();
    // Ends at the peer's FIN (end-of-file); dropping the halves closes the stream.
    let _ = smol::io::copy(reader, &mut writer).await;
}
