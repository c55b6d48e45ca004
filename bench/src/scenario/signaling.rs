//! `signaling`: pairs of peers in live sessions trading WebRTC signals through the server,
//! both ends of every pair sending to the other, as in a call being set up.

use serde_json::json;

use super::{
    Env, Open, World,
    load::{self, LoadArgs},
    open_all,
};
use crate::{
    report::Figures,
    traffic::{Role, SenderRole, Template, Traffic},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    /// `webrtc:ice_candidate` (about 220 bytes of JSON), as trickled during a call's setup.
    Candidate,
    /// `webrtc:offer` with an SDP of `--size` bytes.
    Offer,
}

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct SignalingArgs {
    /// Pairs of peers (two sockets each).
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Live sessions the pairs are dealt over; one per five pairs by default.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Accounts behind the peers; one per peer up to 500.
    #[arg(long)]
    pub users: Option<usize>,
    /// The signal relayed.
    #[arg(long, value_enum, default_value_t = SignalKind::Candidate)]
    pub kind: SignalKind,
    /// Bytes of SDP with `--kind offer` (the server's signal_max_sdp_bytes is 64 KiB).
    #[arg(long, default_value_t = 2500)]
    pub size: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

impl SignalingArgs {
    pub fn sessions(&self) -> usize {
        self.sessions.unwrap_or(self.pairs.div_ceil(5)).max(1)
    }

    pub fn users(&self) -> usize {
        self.users.unwrap_or((2 * self.pairs).min(500))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.pairs >= 1, "--pairs must be at least 1");
        anyhow::ensure!(
            self.sessions() <= self.pairs,
            "--sessions must not exceed --pairs"
        );
        anyhow::ensure!(self.users() >= 1, "--users must be at least 1");
        self.load.validate()
    }

    /// Peer `i`'s session: pairs are dealt round the sessions.
    fn session_of(&self, peer: usize) -> usize {
        (peer / 2) % self.sessions()
    }
}

/// The payload around the tag for a signal to `to` in `session`.
fn template(kind: SignalKind, session: &str, to: &str, size: usize) -> Template {
    let head = format!("{{\"sessionId\":{},\"to\":{},", json!(session), json!(to));
    match kind {
        SignalKind::Candidate => Template {
            prefix: format!(
                "{head}\"candidate\":{{\"candidate\":\"candidate:842163049 1 udp 1677729535 \
                 203.0.113.57 61432 typ srflx raddr 192.168.1.20 rport 61432 generation 0 \
                 ufrag 4ZcD network-id 1 network-cost 10\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\
                 \"usernameFragment\":\""
            ),
            suffix: "\"}}".into(),
        },
        SignalKind::Offer => {
            let start = "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n\
                         a=group:BUNDLE 0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n\
                         c=IN IP4 0.0.0.0\\r\\na=mid:0\\r\\na=ice-ufrag:";
            // Codec lines pad the SDP to about `size` bytes, as a real offer's are long.
            let line = "a=rtpmap:111 opus/48000/2\\r\\n";
            // Lengths as the SDP's own bytes: each escaped line break is two of them.
            let bytes = |s: &str| s.len() - 2 * s.matches("\\r\\n").count();
            let pad = size.saturating_sub(bytes(start) + 40) / bytes(line);
            Template {
                prefix: format!("{head}\"sdp\":{{\"type\":\"offer\",\"sdp\":\"{start}"),
                suffix: format!("\\r\\n{}\"}}}}", line.repeat(pad)),
            }
        }
    }
}

pub async fn signaling(
    env: &mut Env,
    args: &SignalingArgs,
) -> anyhow::Result<(Figures, serde_json::Value)> {
    let setup_started = std::time::Instant::now();
    let peers = 2 * args.pairs;
    let sessions = args.sessions();
    // Socket i's room index in the world is its session, so enrollments follow sessions.
    let world = World::build(env, 0, sessions, args.users()).await?;
    let mut session_ids = Vec::with_capacity(sessions);
    for course in &world.courses {
        session_ids.push(
            env.api
                .live_session(&world.instructor.token, course)
                .await?,
        );
    }
    let mut pairs: Vec<(usize, usize)> = (0..peers)
        .map(|i| (world.user_index(i), args.session_of(i)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let refs: Vec<_> = pairs
        .iter()
        .map(|&(u, s)| (&world.users[u], &world.courses[s]))
        .collect();
    env.api.enroll_all(&refs, env.setup_concurrency).await?;

    let connector = env.connector(peers);
    let opens = (0..peers)
        .map(|i| Open {
            token: world.user(i).token.clone(),
            join_event: "webrtc:join_session",
            join_data: json!({ "sessionId": session_ids[args.session_of(i)] }).to_string(),
        })
        .collect();
    let (sids, conns): (Vec<String>, Vec<_>) = open_all(&connector, opens, env.connect_concurrency)
        .await?
        .into_iter()
        .unzip();
    let roles = (0..peers)
        .map(|i| Role {
            sender: Some(SenderRole {
                stream: i as u32,
                template: template(
                    args.kind,
                    &session_ids[args.session_of(i)],
                    &sids[i ^ 1],
                    args.size,
                ),
                fanout: 1,
                offset: args.load.offset(i, peers),
                limit: args.load.limit(i, peers),
            }),
        })
        .collect();
    let listens: Vec<Vec<u32>> = (0..peers).map(|i| vec![(i ^ 1) as u32]).collect();
    let setup = json!({
        "setup_s": setup_started.elapsed().as_secs_f64(),
        "users": world.users.len(),
        "sessions": sessions,
        "peers": peers,
    });
    let traffic = match args.kind {
        SignalKind::Candidate => Traffic {
            event: "webrtc:ice_candidate",
            delivery: "webrtc:ice_candidate_received",
            marker: "\"usernameFragment\":\"",
        },
        SignalKind::Offer => Traffic {
            event: "webrtc:offer",
            delivery: "webrtc:offer_received",
            marker: "a=ice-ufrag:",
        },
    };
    let measured = load::run(env, conns, roles, &listens, traffic, &args.load).await?;
    let mut f = Figures::default();
    measured.write(&mut f, !args.load.max, &mut env.warnings);
    Ok((f, setup))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Tag;

    fn filled(t: &Template, tag: &str) -> serde_json::Value {
        serde_json::from_str(&format!("{}{tag}{}", t.prefix, t.suffix)).expect("valid JSON")
    }

    #[test]
    fn templates_are_json_carrying_the_tag_where_the_receiver_looks() {
        let tag = Tag {
            warm_up: false,
            stream: 3,
            seq: 9,
            nanos: 12345,
        }
        .encode();
        let c = filled(&template(SignalKind::Candidate, "s-1", "peer", 0), &tag);
        assert_eq!(c["sessionId"], "s-1");
        assert_eq!(c["to"], "peer");
        assert_eq!(c["candidate"]["usernameFragment"], tag.as_str());

        let t = template(SignalKind::Offer, "s-1", "peer", 2500);
        let o = filled(&t, &tag);
        let sdp = o["sdp"]["sdp"].as_str().unwrap();
        assert!(sdp.contains(&format!("a=ice-ufrag:{tag}\r\n")));
        assert!(
            (2300..=2700).contains(&sdp.len()),
            "SDP of {} bytes",
            sdp.len()
        );
        // The relayed text is JSON again, where the receiver finds the tag after its marker.
        let relayed = serde_json::to_string(&o).unwrap();
        let at = relayed.find("a=ice-ufrag:").unwrap();
        assert_eq!(
            Tag::decode(&relayed[at + "a=ice-ufrag:".len()..])
                .unwrap()
                .seq,
            9
        );
    }
}
