//! The committed files users run by hand (`deploy/proxy.toml`, `deploy/compose.yaml`) and the
//! proxy's built-in defaults must say what the lab's model says: names, addresses, pools, ports,
//! healthchecks, Redis's memory bound and where the replicas find the object store. When one drifts, this fails and names the difference.

use serde_yaml_ng::Value;
use statelab_formats::{ConfigFile, PoolSection, Strategy};
use statelab_lab::model::{
    docker_proxy_config, native_proxy_config, swarm_discover_target, swarm_proxy_config,
    trusted_range, Design, NativePorts, Part, Replica, Store, StoreNode, ADMIN_READY_PATH,
    CLUSTER_NODE_TIMEOUT_MS, CONTAINER_ADMIN_PORT, CONTAINER_PROXY_PORT, CONTAINER_S3_PORT,
    CONTAINER_SENTINEL_PORT, CONTAINER_SERVICE_PORT, DEFAULT_NET_PREFIX, FIXED_S3_PORT,
    REDIS_MEMORY_FLAGS, REPLICATION_FLAGS, SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS,
    SENTINEL_MASTER_NAME, SENTINEL_QUORUM,
};
use statelab_test_support::workspace_root;

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn fixed_ports() -> NativePorts {
    NativePorts {
        store: [(StoreNode::Redis, 16379)].into_iter().collect(),
        buses: Default::default(),
        objects: FIXED_S3_PORT,
        proxy: 8080,
        admin: 8081,
        replicas: Replica::initial().map(|r| (r, r.fixed_port())).collect(),
    }
}

/// A pool as the proxy routes it: name, effective prefix, strategy, replicas.
fn routing(p: &PoolSection) -> (String, String, Strategy, Vec<(String, String)>) {
    (
        p.name.clone(),
        p.prefix.clone().unwrap_or_else(|| format!("/{}", p.name)),
        p.strategy.unwrap_or(Strategy::RoundRobin),
        p.replicas
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect(),
    )
}

#[test]
fn deploy_proxy_toml_is_the_models_docker_config() {
    let committed: ConfigFile =
        toml::from_str(&read("deploy/proxy.toml")).expect("deploy/proxy.toml parses");
    let model = docker_proxy_config(DEFAULT_NET_PREFIX);
    assert_eq!(
        committed, model,
        "deploy/proxy.toml differs from the lab's model (statelab_lab::model::docker_proxy_config)"
    );
}

#[test]
fn deploy_proxy_swarm_toml_is_the_models_swarm_config() {
    let committed: ConfigFile =
        toml::from_str(&read("deploy/proxy.swarm.toml")).expect("deploy/proxy.swarm.toml parses");
    assert_eq!(
        committed,
        swarm_proxy_config(),
        "deploy/proxy.swarm.toml differs from the lab's model (statelab_lab::model::swarm_proxy_config)"
    );
}

/// The stack's services are the model's parts, one service per design with three tasks named
/// after their slot, each pool of the proxy following its design's service on the service port,
/// the replicas' healthchecks on that port, every service without a virtual IP, and the proxy's
/// two ports published on the node.
#[test]
fn deploy_stack_yaml_is_the_models_swarm_stack() {
    let doc = compose_file("deploy/stack.yaml");
    let services = get(&doc, &["services"])
        .as_mapping()
        .expect("services is a mapping");
    let mut names: Vec<String> = services
        .keys()
        .map(|k| k.as_str().expect("a service name").to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = [Part::Store(StoreNode::Redis), Part::Objects, Part::Proxy]
        .iter()
        .map(Part::to_string)
        .chain(Design::ALL.iter().map(|d| d.to_string()))
        .collect();
    want.sort();
    assert_eq!(names, want, "the stack's services differ from the model");
    for name in &names {
        let endpoint = get(&doc, &["services", name, "deploy", "endpoint_mode"]);
        assert_eq!(
            endpoint.as_str(),
            Some("dnsrr"),
            "{name}: endpoint_mode must be dnsrr (no virtual IP: it needs IPVS)"
        );
    }
    let pools = swarm_proxy_config().pools.expect("the model's pools");
    for design in Design::ALL {
        let service = design.to_string();
        let replicas = get(&doc, &["services", &service, "deploy", "replicas"]);
        let initial = Replica::initial().filter(|r| r.design == design).count();
        assert_eq!(
            replicas.as_u64(),
            Some(initial as u64),
            "{service}: deploy.replicas"
        );
        let named = get(
            &doc,
            &["services", &service, "environment", "STATELAB_REPLICA"],
        );
        assert_eq!(
            named.as_str(),
            Some(format!("{design}-{{{{.Task.Slot}}}}").as_str()),
            "{service}: each task names itself after its slot"
        );
        let health = strings(get(&doc, &["services", &service, "healthcheck", "test"]));
        assert_eq!(
            health,
            [
                "CMD",
                "statelab-healthcheck",
                &CONTAINER_SERVICE_PORT.to_string(),
                "/health"
            ],
            "{service}: healthcheck"
        );
        let pool = pools
            .iter()
            .find(|p| p.name == design.as_str())
            .expect("a pool per design");
        assert_eq!(
            pool.discover.as_deref(),
            Some(swarm_discover_target(design).as_str())
        );
        assert_eq!(
            swarm_discover_target(design),
            format!("tasks.{service}:{CONTAINER_SERVICE_PORT}"),
            "the pool follows the stack's service on the service port"
        );
    }
    let ports = get(&doc, &["services", "proxy", "ports"])
        .as_sequence()
        .expect("the proxy's ports");
    let published: Vec<(u64, String)> = ports
        .iter()
        .map(|p| {
            (
                get(p, &["target"]).as_u64().expect("a target port"),
                get(p, &["mode"]).as_str().expect("a mode").to_string(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            (u64::from(CONTAINER_PROXY_PORT), "host".to_string()),
            (u64::from(CONTAINER_ADMIN_PORT), "host".to_string())
        ],
        "the proxy publishes its two ports in mode host (the ingress mesh needs IPVS)"
    );
    let config = get(&doc, &["configs", "proxy", "file"]);
    assert_eq!(
        config.as_str(),
        Some("${STATELAB_PROXY_CONFIG:-./proxy.swarm.toml}")
    );
}

#[test]
fn generated_configs_are_valid_for_the_proxy() {
    for (what, file) in [
        ("native", native_proxy_config(&fixed_ports())),
        ("docker", docker_proxy_config("10.99.7")),
        ("swarm", swarm_proxy_config()),
    ] {
        let text = toml::to_string(&file).expect("serialise");
        if let Err(e) = statelab_proxy::Config::from_toml_str(&text) {
            panic!("the generated {what} config is refused by the proxy: {e}\n{text}");
        }
    }
}

#[test]
fn the_proxys_defaults_are_the_native_lab_on_fixed_ports() {
    let model = native_proxy_config(&fixed_ports());
    let defaults = ConfigFile::default();
    assert_eq!(model.server.listen, defaults.server.listen);
    assert_eq!(model.server.admin_listen, defaults.server.admin_listen);
    let ours: Vec<_> = model.pools_or_default().iter().map(routing).collect();
    let theirs: Vec<_> = defaults.pools_or_default().iter().map(routing).collect();
    assert_eq!(
        ours, theirs,
        "the proxy's default pools differ from the model"
    );
}

/// compose.yaml with its `<<` merge keys applied.
fn compose() -> Value {
    compose_file("deploy/compose.yaml")
}

fn compose_file(rel: &str) -> Value {
    let mut v: Value = serde_yaml_ng::from_str(&read(rel)).expect("the compose file parses");
    // A merged mapping can itself merge another (`x-externalized` merges `x-replica`): one pass
    // per level of nesting.
    for _ in 0..4 {
        v.apply_merge().expect("merge keys");
    }
    let text = serde_yaml_ng::to_string(&v).expect("serialise");
    assert!(
        !text.contains("<<:"),
        "merge keys nested deeper than 4 levels"
    );
    v
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match v.get(k) {
        Some(x) => x,
        None => panic!("compose.yaml: no {path:?} (stopped at {k:?})"),
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

fn address(octet: u16) -> String {
    format!("${{STATELAB_NET_PREFIX:-{DEFAULT_NET_PREFIX}}}.{octet}")
}

#[test]
fn deploy_compose_yaml_has_the_models_parts_addresses_and_healthchecks() {
    let doc = compose();
    let services = get(&doc, &["services"])
        .as_mapping()
        .expect("services is a mapping");
    let mut names: Vec<String> = services
        .keys()
        .map(|k| k.as_str().expect("service names are text").to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = Part::initial(Store::Single)
        .iter()
        .map(Part::to_string)
        .collect();
    want.sort();
    assert_eq!(
        names, want,
        "compose services differ from the model's parts"
    );

    for part in Part::initial(Store::Single) {
        let name = part.to_string();
        let svc = get(&doc, &["services", &name]);
        assert_eq!(
            get(svc, &["networks", "lab", "ipv4_address"]).as_str(),
            Some(address(part.container_octet()).as_str()),
            "{name}'s address"
        );
        let check = strings(get(svc, &["healthcheck", "test"]));
        match part {
            Part::REDIS | Part::Store(_) => {
                assert_eq!(check, ["CMD", "redis-cli", "ping"], "{name}");
                let command = strings(get(svc, &["command"]));
                assert!(
                    command.windows(4).any(|w| w == REDIS_MEMORY_FLAGS),
                    "redis's command lacks the model's memory bound {REDIS_MEMORY_FLAGS:?}: \
                     {command:?}"
                );
            }
            Part::Objects => {
                assert_eq!(
                    check,
                    [
                        "CMD",
                        "statelab-healthcheck",
                        &CONTAINER_S3_PORT.to_string(),
                        "/",
                        "403"
                    ],
                    "{name}'s healthcheck (s3s-fs answers an unsigned request with 403)"
                );
                let command = strings(get(svc, &["command"])).join(" ");
                for want in [
                    "exec s3s-fs --host 0.0.0.0".to_string(),
                    format!("--port {CONTAINER_S3_PORT}"),
                    "--access-key \"$$STATELAB_S3_ACCESS_KEY\"".to_string(),
                    "--secret-key \"$$STATELAB_S3_SECRET_KEY\"".to_string(),
                ] {
                    assert!(command.contains(&want), "{name}'s command lacks '{want}'");
                }
                assert_eq!(get(svc, &["env_file"]).as_str(), Some("lab.env"), "{name}");
                let volumes = strings(get(svc, &["volumes"]));
                assert!(
                    volumes
                        .iter()
                        .any(|v| v.starts_with("s3-data:")
                            && command.ends_with(&v["s3-data:".len()..])),
                    "{name} keeps its files on the named volume s3-data: {volumes:?}, {command}"
                );
            }
            Part::Proxy => {
                assert_eq!(
                    check,
                    [
                        "CMD",
                        "statelab-healthcheck",
                        &CONTAINER_ADMIN_PORT.to_string(),
                        ADMIN_READY_PATH
                    ],
                    "{name}'s healthcheck (the path that needs no token)"
                );
                assert_eq!(
                    get(svc, &["environment", "STATELAB_ADMIN_TOKEN"]).as_str(),
                    Some("${STATELAB_ADMIN_TOKEN:-}"),
                    "the proxy's admin token comes from the environment, with no default"
                );
                let ports = strings(get(svc, &["ports"]));
                let inside: Vec<&str> = ports
                    .iter()
                    .map(|p| p.rsplit(':').next().expect("a port mapping"))
                    .collect();
                assert_eq!(
                    inside,
                    [
                        CONTAINER_PROXY_PORT.to_string(),
                        CONTAINER_ADMIN_PORT.to_string()
                    ],
                    "the proxy publishes its two listeners"
                );
                for p in &ports {
                    assert!(p.starts_with("${STATELAB_BIND:-127.0.0.1}:"), "{p}");
                }
                let deps = get(svc, &["depends_on"]).as_mapping().expect("depends_on");
                for r in Replica::initial() {
                    let dep = deps
                        .get(r.to_string())
                        .unwrap_or_else(|| panic!("proxy does not wait for {r}"));
                    assert_eq!(get(dep, &["condition"]).as_str(), Some("service_healthy"));
                }
            }
            Part::Replica(r) => {
                assert_eq!(
                    check,
                    [
                        "CMD",
                        "statelab-healthcheck",
                        &CONTAINER_SERVICE_PORT.to_string(),
                        "/health"
                    ],
                    "{name}'s healthcheck"
                );
                assert_eq!(
                    strings(get(svc, &["command"])),
                    [r.design.as_str()],
                    "{name}"
                );
                assert_eq!(
                    get(svc, &["environment", "STATELAB_REPLICA"]).as_str(),
                    Some(name.as_str())
                );
                if r.design == Design::Externalized {
                    assert_eq!(
                        get(svc, &["environment", "STATELAB_REDIS_URL"]).as_str(),
                        Some("redis://redis:6379"),
                        "{name} reaches Redis by its service name"
                    );
                }
                let broker = svc
                    .get("environment")
                    .and_then(|e| e.get("STATELAB_CHAT_REDIS_URL"))
                    .and_then(Value::as_str);
                if r.design == Design::Stateless {
                    assert_eq!(
                        broker,
                        Some("redis://redis:6379"),
                        "{name}'s chat rooms go through the single Redis"
                    );
                } else {
                    assert_eq!(broker, None, "{name} names no other chat broker");
                }
                let objects = svc
                    .get("environment")
                    .and_then(|e| e.get("STATELAB_S3_URL"))
                    .and_then(Value::as_str);
                if r.design == Design::Stateful {
                    assert_eq!(objects, None, "{name} keeps avatars on its own disk");
                } else {
                    let want = format!(
                        "http://{}:{CONTAINER_S3_PORT}",
                        address(Part::Objects.container_octet())
                    );
                    assert_eq!(
                        objects,
                        Some(want.as_str()),
                        "{name} finds the object store"
                    );
                    assert_eq!(
                        get(svc, &["env_file"]).as_str(),
                        Some("lab.env"),
                        "{name} has the object store's keys"
                    );
                    let dep = get(svc, &["depends_on", &Part::Objects.to_string()]);
                    assert_eq!(
                        get(dep, &["condition"]).as_str(),
                        Some("service_healthy"),
                        "{name} waits for the object store"
                    );
                }
            }
        }
    }

    let ipam = &get(&doc, &["networks", "lab", "ipam", "config"])
        .as_sequence()
        .expect("ipam config")[0];
    assert_eq!(
        get(ipam, &["subnet"]).as_str(),
        Some(format!("${{STATELAB_NET_PREFIX:-{DEFAULT_NET_PREFIX}}}.0/24").as_str())
    );
    assert_eq!(get(ipam, &["gateway"]).as_str(), Some(address(1).as_str()));
    assert_eq!(
        get(ipam, &["ip_range"]).as_str(),
        Some(trusted_range(&format!("${{STATELAB_NET_PREFIX:-{DEFAULT_NET_PREFIX}}}")).as_str()),
        "in-network load generators get addresses from the range the proxy trusts"
    );
}

/// The source-mode image build copies every workspace member: cargo resolves the whole workspace
/// even to build two packages, so a member missing from the Dockerfile breaks the build.
/// A topology's compose file adds exactly its nodes, sets the three externalized replicas' store
/// and takes the single Redis away as the stateless replicas' chat broker, nothing else.
fn assert_adds_store_nodes(doc: &Value, store: Store) {
    let services = get(doc, &["services"])
        .as_mapping()
        .expect("services is a mapping");
    let mut names: Vec<String> = services
        .keys()
        .map(|k| k.as_str().expect("service names are text").to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = store
        .nodes()
        .iter()
        .map(ToString::to_string)
        .chain((1..=3).map(|k| format!("externalized-{k}")))
        .chain((1..=3).map(|k| format!("stateless-{k}")))
        .collect();
    want.sort();
    assert_eq!(names, want, "the {} file's services", store.name());
}

#[test]
fn deploy_compose_sentinel_yaml_has_the_models_nodes_and_settings() {
    let doc = compose_file("deploy/compose.sentinel.yaml");
    assert_adds_store_nodes(&doc, Store::Sentinel);

    let sentinels: Vec<String> = Store::Sentinel
        .nodes()
        .into_iter()
        .filter(|n| n.is_sentinel())
        .map(|n| format!("{}:{CONTAINER_SENTINEL_PORT}", address(n.container_octet())))
        .collect();
    for n in Store::Sentinel.nodes() {
        let name = n.to_string();
        let svc = get(&doc, &["services", &name]);
        let own = address(n.container_octet());
        assert_eq!(
            get(svc, &["networks", "lab", "ipv4_address"]).as_str(),
            Some(own.as_str()),
            "{name}'s address"
        );
        let command = strings(get(svc, &["command"])).join(" ");
        if n.is_sentinel() {
            for line in [
                format!("sentinel announce-ip {own}"),
                format!(
                    "sentinel monitor {SENTINEL_MASTER_NAME} {} 6379 {SENTINEL_QUORUM}",
                    address(StoreNode::Data(1).container_octet())
                ),
                format!("sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}"),
                format!("sentinel failover-timeout {SENTINEL_MASTER_NAME} {SENTINEL_FAILOVER_TIMEOUT_MS}"),
            ] {
                assert!(command.contains(&line), "{name}'s configuration lacks '{line}'");
            }
        } else {
            let words = strings(get(svc, &["command"]));
            assert!(words.windows(4).any(|w| w == REDIS_MEMORY_FLAGS), "{name}");
            assert!(words.windows(2).any(|w| w == REPLICATION_FLAGS), "{name}");
            assert!(
                command.contains(&format!("--replica-announce-ip {own}")),
                "{name}"
            );
            let replica = command.contains("--replicaof");
            assert_eq!(
                replica,
                n != StoreNode::Data(1),
                "{name}: only redis-1 starts as primary"
            );
        }
    }
    for k in 1..=3 {
        let env = get(
            &doc,
            &["services", &format!("externalized-{k}"), "environment"],
        );
        assert_eq!(
            get(env, &["STATELAB_REDIS_SENTINEL"]).as_str(),
            Some(sentinels.join(",").as_str()),
            "externalized-{k} asks every Sentinel"
        );
        assert_eq!(
            get(env, &["STATELAB_REDIS_MASTER_NAME"]).as_str(),
            Some(SENTINEL_MASTER_NAME)
        );
    }
    no_chat_broker(&doc);
}

/// Without the single Redis, the stateless replicas are given no chat broker (an empty URL).
fn no_chat_broker(doc: &Value) {
    for k in 1..=3 {
        let env = get(doc, &["services", &format!("stateless-{k}"), "environment"]);
        assert_eq!(
            get(env, &["STATELAB_CHAT_REDIS_URL"]).as_str(),
            Some(""),
            "stateless-{k} names no chat broker"
        );
    }
}

#[test]
fn deploy_compose_cluster_yaml_has_the_models_nodes_and_settings() {
    let doc = compose_file("deploy/compose.cluster.yaml");
    assert_adds_store_nodes(&doc, Store::Cluster);
    let seeds: Vec<String> = Store::Cluster
        .nodes()
        .into_iter()
        .map(|n| format!("{}:6379", address(n.container_octet())))
        .collect();
    for n in Store::Cluster.nodes() {
        let name = n.to_string();
        let svc = get(&doc, &["services", &name]);
        let own = address(n.container_octet());
        assert_eq!(
            get(svc, &["networks", "lab", "ipv4_address"]).as_str(),
            Some(own.as_str()),
            "{name}'s address"
        );
        let words = strings(get(svc, &["command"]));
        let command = words.join(" ");
        assert!(words.windows(4).any(|w| w == REDIS_MEMORY_FLAGS), "{name}");
        assert!(words.windows(2).any(|w| w == REPLICATION_FLAGS), "{name}");
        for want in [
            "--cluster-enabled yes".to_string(),
            format!("--cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}"),
            format!("--cluster-announce-ip {own}"),
        ] {
            assert!(command.contains(&want), "{name} lacks '{want}'");
        }
    }
    for k in 1..=3 {
        let env = get(
            &doc,
            &["services", &format!("externalized-{k}"), "environment"],
        );
        assert_eq!(
            get(env, &["STATELAB_REDIS_CLUSTER"]).as_str(),
            Some(seeds.join(",").as_str()),
            "externalized-{k} knows every node"
        );
    }
    no_chat_broker(&doc);
}

/// The lab-only keys the object store and the replicas share.
#[test]
fn deploy_lab_env_has_the_object_stores_keys() {
    let env = read("deploy/lab.env");
    for key in ["STATELAB_S3_ACCESS_KEY", "STATELAB_S3_SECRET_KEY"] {
        let value = env
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("deploy/lab.env has no {key}"));
        assert!(
            value.contains("lab-only"),
            "{key} in deploy/lab.env says it is lab-only"
        );
    }
}

/// The image's object store is the one the tests run: the Dockerfile's default s3s-fs version is
/// scripts/prereqs.sh's.
#[test]
fn the_dockerfile_installs_the_tests_s3s_fs_version() {
    let version = |text: &str, prefix: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
            .trim()
            .to_string()
    };
    assert_eq!(
        version(&read("deploy/Dockerfile"), "ARG S3S_FS_VERSION="),
        version(&read("scripts/prereqs.sh"), "S3S_FS_VERSION="),
    );
}

#[test]
fn the_dockerfile_copies_every_workspace_member() {
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    let dockerfile = read("deploy/Dockerfile");
    let ignore = read("deploy/Dockerfile.dockerignore");
    for m in members {
        let m = m.as_str().expect("a member path");
        assert!(
            dockerfile.contains(&format!("COPY {m} {m}")),
            "deploy/Dockerfile does not copy the workspace member {m}"
        );
        assert!(
            ignore.lines().any(|l| l == format!("!{m}/")),
            "deploy/Dockerfile.dockerignore does not let {m}/ into the build context"
        );
    }
}
