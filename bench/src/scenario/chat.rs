//! `fanout` and `ingest`: chat messages into course rooms, each delivered to every socket in
//! the room (the sender's own included), each stored before it is acknowledged.

use serde_json::json;

use super::{
    Env, Open, World,
    load::{self, LoadArgs},
    open_all, room_payload,
};
use crate::{
    report::Figures,
    traffic::{Role, SenderRole, Template, Traffic},
};

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct FanoutArgs {
    /// Sockets, spread round-robin over the rooms.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Course rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Sockets that send (the first ones, so spread over the rooms like the rest); all of
    /// them by default.
    #[arg(long)]
    pub senders: Option<usize>,
    /// Accounts behind the sockets (socket i is user i mod users); one per socket up to 500.
    #[arg(long)]
    pub users: Option<usize>,
    /// Characters of message content (at most the server's chat_max_message_chars, 4000).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct IngestArgs {
    /// Rooms of one socket each, every one of them sending.
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Characters of message content.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

impl IngestArgs {
    /// Ingest is fan-out with rooms of one: pure persistence throughput.
    pub fn as_fanout(&self) -> FanoutArgs {
        FanoutArgs {
            clients: self.rooms,
            rooms: self.rooms,
            senders: Some(self.rooms),
            users: Some(self.rooms),
            size: self.size,
            load: self.load.clone(),
        }
    }
}

impl FanoutArgs {
    pub fn senders(&self) -> usize {
        self.senders.unwrap_or(self.clients)
    }

    pub fn users(&self) -> usize {
        self.users.unwrap_or(self.clients.min(500))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rooms >= 1, "--rooms must be at least 1");
        anyhow::ensure!(
            self.clients >= self.rooms,
            "--clients must be at least --rooms (a room needs a socket)"
        );
        anyhow::ensure!(
            (1..=self.clients).contains(&self.senders()),
            "--senders must be between 1 and --clients"
        );
        anyhow::ensure!(self.users() >= 1, "--users must be at least 1");
        self.load.validate()
    }
}

/// Filler content: plain words, nothing the moderation plugin masks or flags.
pub fn content(size: usize) -> String {
    const WORDS: &str = "the quick brown fox jumps over the lazy dog ";
    WORDS.chars().cycle().take(size).collect()
}

pub async fn fanout(
    env: &mut Env,
    args: &FanoutArgs,
) -> anyhow::Result<(Figures, serde_json::Value)> {
    let setup_started = std::time::Instant::now();
    let (clients, senders) = (args.clients, args.senders());
    let world = World::build(env, clients, args.rooms, args.users()).await?;
    let connector = env.connector(clients);
    let opens = (0..clients)
        .map(|i| Open {
            token: world.user(i).token.clone(),
            join_event: "chat:join_room",
            join_data: room_payload(&world.room(i).room),
        })
        .collect();
    let conns: Vec<_> = open_all(&connector, opens, env.connect_concurrency)
        .await?
        .into_iter()
        .map(|(_, conn)| conn)
        .collect();

    // Sockets per room, and which senders each room hears.
    let mut room_sockets = vec![0u64; args.rooms];
    let mut room_senders: Vec<Vec<u32>> = vec![Vec::new(); args.rooms];
    for i in 0..clients {
        room_sockets[world.room_index(i)] += 1;
        if i < senders {
            room_senders[world.room_index(i)].push(i as u32);
        }
    }
    let filler = content(args.size);
    let roles = (0..clients)
        .map(|i| Role {
            sender: (i < senders).then(|| SenderRole {
                stream: i as u32,
                template: Template {
                    prefix: format!(
                        "{{\"roomId\":{},\"content\":{},\"clientId\":\"",
                        json!(world.room(i).room),
                        json!(filler)
                    ),
                    suffix: "\"}".into(),
                },
                fanout: room_sockets[world.room_index(i)],
                offset: args.load.offset(i, senders),
                limit: args.load.limit(i, senders),
            }),
        })
        .collect();
    let listens: Vec<Vec<u32>> = (0..clients)
        .map(|i| room_senders[world.room_index(i)].clone())
        .collect();
    let setup = json!({
        "setup_s": setup_started.elapsed().as_secs_f64(),
        "users": world.users.len(),
        "rooms": args.rooms,
        "sockets": clients,
        "senders": senders,
        "room_sockets_max": room_sockets.iter().max(),
    });

    let traffic = Traffic {
        event: "chat:send_message",
        delivery: "chat:new_message",
        marker: "\"clientId\":\"",
    };
    let measured = load::run(env, conns, roles, &listens, traffic, &args.load).await?;
    let mut f = Figures::default();
    measured.write(&mut f, !args.load.max, &mut env.warnings);
    Ok((f, setup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_asked_length_and_nothing_to_moderate() {
        let text = content(100);
        assert_eq!(text.chars().count(), 100);
        assert!(!text.contains("http") && !text.contains('"'));
        assert_eq!(content(0), "");
    }
}
