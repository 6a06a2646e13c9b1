//! Runs causeway inside this program: starts a server on a loopback port, answers requests with
//! the in-process client, and shows that a network client (here another in-process one, but any
//! NATS client pointed at `client_url()` works the same) gets the replies.
//!
//! Run with `cargo run --example embedded`.

use causeway::{Config, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Loopback, ephemeral port; `Config::default()` would listen on 127.0.0.1:4222.
    let server = Server::start(Config::loopback()).await?;
    println!("NATS clients can connect to {}", server.client_url());

    // A service answering on `greet.*`, running in this process without a socket.
    let client = server.client();
    let mut requests = client.subscribe("greet.*").await?;
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            let name = msg.subject.trim_start_matches("greet.").to_string();
            if let Some(reply) = msg.reply {
                let _ = responder
                    .publish(reply, format!("hello, {name}").into())
                    .await;
            }
        }
    });

    let answer = client.request("greet.world", "".into()).await?;
    println!("{}", String::from_utf8_lossy(&answer.payload));

    server.shutdown().await;
    Ok(())
}
