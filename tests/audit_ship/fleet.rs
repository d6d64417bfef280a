//! Two instances, one stream: equal to the local audits, verified and searched from NATS,
//! and tampering in the stream is named.

use super::*;

#[tokio::test]
async fn two_instances_ship_into_one_stream_and_the_fleet_verifies() {
    let nats = Nats::start();
    let url = nats.url();
    let a = Node::start("ship_fleet_a", "db-a", &nats);
    let b = Node::start("ship_fleet_b", "db-b", &nats);
    for node in [&a, &b] {
        let load = Load::start(node, 2).await;
        while load.served() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, failed) = load.stop().await;
        assert_eq!(failed, 0);
    }
    for node in [&a, &b] {
        let (shipped, local) = converge(&url, node, Duration::from_secs(30)).await;
        assert!(
            local.len() > 200,
            "{}: {} local records",
            node.instance,
            local.len()
        );
        assert_exactly_once(&shipped, &local, &node.instance);
        let head = seqs(&local).last().copied().unwrap_or(0) as f64;
        assert!(
            wait_until(Duration::from_secs(10), || node
                .metric("pgveil_audit_ship_head_seq")
                == head),
            "ship head metric"
        );
        assert_eq!(node.metric("pgveil_audit_ship_lag_records"), 0.0);
        assert_eq!(node.metric("pgveil_audit_ship_records_total"), head);
    }
    let (na, nb) = (local_lines(&a.audit).len(), local_lines(&b.audit).len());

    // The auditor's view: one command for the fleet.
    let (code, out, err) = cli(&["audit", "verify", "--nats", &url, "--stream", STREAM]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("pgveil.audit.db-a: {na} records verified")),
        "{out}"
    );
    assert!(
        out.contains(&format!("pgveil.audit.db-b: {nb} records verified")),
        "{out}"
    );
    let (code, out, _) = cli(&[
        "audit",
        "verify",
        "--nats",
        &url,
        "--stream",
        STREAM,
        "--instance",
        "db-b",
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("db-a") && out.contains("db-b"), "{out}");
    // The local directories agree with their shipped copies.
    for node in [&a, &b] {
        let (code, out, err) = verify_cli(&node.audit);
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, err) = cli(&[
        "audit",
        "search",
        "--nats",
        &url,
        "--stream",
        STREAM,
        "--role",
        ADMIN,
        "--table",
        "customers",
    ]);
    assert_eq!(code, 0, "{err}");
    let hits: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let per = |s: &str| hits.iter().filter(|h| h["subject"] == s).count();
    assert!(
        per("pgveil.audit.db-a") > 200 && per("pgveil.audit.db-b") > 200,
        "{}",
        hits.len()
    );
    assert!(hits.iter().all(|h| h["login_role"] == ADMIN));

    tamper_and_detect(&url, &a, &b).await;
}

/// Deletes one of b's messages and appends a forged record to a's subject: verify from the
/// stream names both, each under its own instance.
async fn tamper_and_detect(url: &str, a: &Node, b: &Node) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(STREAM).await.unwrap();
    let b_msgs = read_stream(url, STREAM, &b.subject()).await.unwrap();
    assert!(stream.delete_message(b_msgs[10].stream_seq).await.unwrap());

    let last = local_lines(&a.audit).pop().unwrap();
    let mut forged: Value = serde_json::from_str(&last).unwrap();
    forged["prev"] = forged["hash"].clone();
    forged["seq"] = (forged["seq"].as_u64().unwrap() + 1).into();
    forged["login_role"] = "mallory".into();
    js.publish(a.subject(), forged.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let (code, out, err) = cli(&["audit", "verify", "--nats", url, "--stream", STREAM]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("pgveil.audit.db-b") && err.contains("at seq 11: found seq 12"),
        "{err}"
    );
    assert!(err.contains("pgveil.audit.db-a"), "{err}");
    assert!(
        err.contains("hash does not match") || err.contains("not in canonical form"),
        "{err}"
    );
}
