//! Chat rooms through the real native lab's proxy: users in rooms of four, their sockets placed
//! by the proxy. Stateful rooms live in each replica's memory, so a room's users spread over three
//! replicas hear about a third of each other; externalized and stateless rooms go through the
//! lab's Redis, and every user hears every peer, across a replica killed under them too.

mod support;

use statelab_load::report::RunReport;
use statelab_test_support::{NativeLab, TempDir};
use support::run_load;

fn chat_run(lab: &NativeLab, tmp: &TempDir, service: &str, extra: &[&str]) -> (RunReport, String) {
    let mut args = vec![
        "--workflow",
        "chat",
        "--model",
        "closed",
        "--users",
        "12",
        "--room-size",
        "4",
        "--think-ms",
        "100",
        "--duration",
        "5",
    ];
    args.extend(extra);
    run_load(lab, service, &tmp.join(service), &args)
}

#[test]
fn rooms_in_memory_split_across_replicas_and_a_broker_joins_them() {
    let tmp = TempDir::new("load-chat");
    let lab = NativeLab::up("load-chat-lab");

    let (split, text) = chat_run(&lab, &tmp, "stateful", &[]);
    let chat = split.chat.expect("chat figures");
    assert_eq!(chat.sockets_opened, 12, "{text}");
    assert!(chat.owed > 500, "{text}");
    assert!(
        chat.delivery < 0.8,
        "peers on other replicas are in other rooms:\n{text}"
    );

    let (shared, text) = chat_run(&lab, &tmp, "stateless", &[]);
    let chat = shared.chat.expect("chat figures");
    assert!(chat.delivery > 0.99, "{text}");
    assert_eq!(chat.sockets_lost, 0, "{text}");

    // A replica killed under its sockets: they open again elsewhere, and what they missed comes
    // back in the history.
    let (killed, text) = chat_run(&lab, &tmp, "externalized", &["--kill", "externalized-2@2"]);
    let chat = killed.chat.expect("chat figures");
    assert!(
        chat.sockets_lost > 0,
        "the killed replica's sockets ended:\n{text}"
    );
    assert!(chat.sockets_opened > 12, "and opened again:\n{text}");
    assert!(chat.delivery > 0.99, "{text}");
}
