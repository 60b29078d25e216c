//! The Kubernetes manifests (`deploy/k8s`, applied with `kubectl apply -k deploy/k8s`) must say
//! what the lab's model and its compose file say: the designs and their pools, the replicas' port,
//! command and environment, health paths, Redis's command and where the replicas find Redis and
//! the object store. The proxy's configuration must pass the proxy's own parser and follow the
//! designs' headless Services; the Secret must be referenced and never committed; and every
//! manifest must pass the Kubernetes API's schemas (kubernetes-validate, strict), which in turn
//! must refuse broken copies of them. When one drifts, this fails and names the difference.
//!
//! The schema check runs `STATELAB_K8S_VALIDATE` (scripts/test installs the pinned version into
//! `target/tools/k8s-venv` and exports it), else that virtual environment's when it is there;
//! without either it says NOT RUN, and fails under `CI`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_yaml_ng::{Mapping, Value};
use statelab_formats::ConfigFile;
use statelab_lab::model::{
    docker_proxy_config, Design, Part, ADMIN_READY_PATH, CONTAINER_ADMIN_PORT,
    CONTAINER_PROXY_PORT, CONTAINER_REDIS_PORT, CONTAINER_S3_PORT, CONTAINER_SERVICE_PORT,
    DEFAULT_NET_PREFIX, OBJECTS_NAME, REDIS_MEMORY_FLAGS, REPLICAS_PER_POOL,
};
use statelab_test_support::{workspace_root, TempDir};

/// Where the manifests are, from the workspace root.
const K8S: &str = "deploy/k8s";
/// The Kubernetes version whose schemas the manifests must pass: the newest that the pinned
/// kubernetes-validate (scripts/prereqs.sh, `K8S_VALIDATE_VERSION`) ships.
const KUBERNETES_VERSION: &str = "1.37";
/// The Secret every key comes from: made by hand (docs/kubernetes.md), never committed.
const SECRET: &str = "statelab";
/// The Secret's keys, each for the variable of deploy/lab.env it stands for.
const SECRET_KEYS: [(&str, &str); 3] = [
    ("STATELAB_JWT_SECRET", "jwt-secret"),
    ("STATELAB_S3_ACCESS_KEY", "s3-access-key"),
    ("STATELAB_S3_SECRET_KEY", "s3-secret-key"),
];
/// The Secret's optional key: the proxy's admin token.
const ADMIN_TOKEN_KEY: &str = "admin-token";
/// The ConfigMap kustomize generates from the proxy's configuration, and that file.
const PROXY_CONFIG_MAP: &str = "proxy-config";
const PROXY_CONFIG_FILE: &str = "proxy.toml";
/// How long a cluster's DNS may serve an answer from its cache: CoreDNS's `kubernetes` plugin
/// gives its records a TTL of 5 s by default.
const CLUSTER_DNS_TTL_S: u64 = 5;

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every non-empty YAML document of `text`.
fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what} parses: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match v.get(k) {
        Some(x) => x,
        None => panic!("no {path:?} (stopped at {k:?}) in {}", describe(v)),
    })
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not text in {}", describe(v)))
}

fn number(v: &Value, path: &[&str]) -> u64 {
    get(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a whole number in {}", describe(v)))
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path:?} is not a list in {}", describe(v)))
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

/// `kind/name` of an object, or the start of a value, for messages.
fn describe(v: &Value) -> String {
    match (
        v.get("kind").and_then(Value::as_str),
        v.get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str),
    ) {
        (Some(kind), Some(name)) => format!("{kind}/{name}"),
        _ => {
            let s = serde_yaml_ng::to_string(v).unwrap_or_default();
            s.chars().take(120).collect()
        }
    }
}

/// A string-keyed mapping as a map.
fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .unwrap_or_else(|| panic!("not a mapping: {v:?}"))
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("text keys").to_string(),
                v.as_str().expect("text values").to_string(),
            )
        })
        .collect()
}

/// The kustomization and every object of the files it lists.
struct Manifests {
    kustomization: Value,
    /// (file, object), in the kustomization's order.
    objects: Vec<(String, Value)>,
}

impl Manifests {
    fn load() -> Manifests {
        let kustomization = documents(
            &read(&format!("{K8S}/kustomization.yaml")),
            "kustomization.yaml",
        )
        .into_iter()
        .next()
        .expect("kustomization.yaml holds a document");
        let objects = Self::resources(&kustomization)
            .into_iter()
            .flat_map(|file| {
                documents(&read(&format!("{K8S}/{file}")), &file)
                    .into_iter()
                    .map(move |o| (file.clone(), o))
            })
            .collect();
        Manifests {
            kustomization,
            objects,
        }
    }

    fn resources(kustomization: &Value) -> Vec<String> {
        strings(get(kustomization, &["resources"]))
    }

    fn namespace(&self) -> &str {
        text(&self.kustomization, &["namespace"])
    }

    fn object(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .map(|(_, o)| o)
            .filter(|o| {
                o.get("kind").and_then(Value::as_str) == Some(kind)
                    && o.get("metadata")
                        .and_then(|m| m.get("name"))
                        .and_then(Value::as_str)
                        == Some(name)
            })
            .collect();
        match found[..] {
            [one] => one,
            [] => panic!("{K8S} has no {kind} named {name:?}"),
            _ => panic!("{K8S} has {} {kind}s named {name:?}", found.len()),
        }
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .map(|(_, o)| o)
            .filter(move |o| o.get("kind").and_then(Value::as_str) == Some(kind))
    }

    /// The pod templates of every Deployment and StatefulSet.
    fn pod_templates(&self) -> impl Iterator<Item = (String, &Value)> + '_ {
        self.of_kind("Deployment")
            .chain(self.of_kind("StatefulSet"))
            .map(|o| (describe(o), get(o, &["spec", "template"])))
    }

    /// The design's headless Service: its port's number, checked to lead to the container port.
    fn headless_service(&self, name: &str, pod: &Value) -> u16 {
        let svc = self.object("Service", name);
        assert_eq!(
            text(svc, &["spec", "clusterIP"]),
            "None",
            "Service {name} is headless: its name resolves to the pods' own addresses"
        );
        assert!(
            !get(svc, &["spec"])
                .get("publishNotReadyAddresses")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            "Service {name} leaves not-ready pods out of its answer (docs/kubernetes.md)"
        );
        selects(svc, pod);
        let ports = list(svc, &["spec", "ports"]);
        assert_eq!(ports.len(), 1, "Service {name} has one port");
        let port = number(&ports[0], &["port"]);
        assert_eq!(
            container_port(only_container(pod), get(&ports[0], &["targetPort"])),
            port,
            "Service {name}: a headless Service's clients connect to the pod's own port, so the \
             Service's port is that port"
        );
        u16::try_from(port).expect("a port")
    }
}

/// The Service's selector picks the template's pods.
fn selects(svc: &Value, pod: &Value) {
    let selector = labels(get(svc, &["spec", "selector"]));
    let pod_labels = labels(get(pod, &["metadata", "labels"]));
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "{}'s selector {k}={v} picks none of the pods",
            describe(svc)
        );
    }
}

fn only_container(pod: &Value) -> &Value {
    let containers = list(pod, &["spec", "containers"]);
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

/// A port given by number or by the name of one of the container's ports, as a number.
fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("a port is a number or a name");
    list(container, &["ports"])
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .map(|p| number(p, &["containerPort"]))
        .unwrap_or_else(|| panic!("no container port named {name:?}"))
}

/// An HTTP probe's (path, port).
fn http_probe(container: &Value, probe: &str) -> (String, u64) {
    let get_ = get(container, &[probe, "httpGet"]);
    (
        text(get_, &["path"]).to_string(),
        container_port(container, get(get_, &["port"])),
    )
}

fn exec_probe(container: &Value, probe: &str) -> Vec<String> {
    strings(get(container, &[probe, "exec", "command"]))
}

/// The container's environment: name to its entry (none without `env`).
fn env(container: &Value) -> BTreeMap<String, Value> {
    if container.get("env").is_none() {
        return BTreeMap::new();
    }
    list(container, &["env"])
        .iter()
        .map(|e| (text(e, &["name"]).to_string(), e.clone()))
        .collect()
}

fn env_value(container: &Value, name: &str) -> String {
    let env = env(container);
    let entry = env
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in the environment"));
    text(entry, &["value"]).to_string()
}

/// compose.yaml with its `<<` merge keys applied.
fn compose() -> Value {
    let mut v: Value = serde_yaml_ng::from_str(&read("deploy/compose.yaml")).expect("compose");
    for _ in 0..4 {
        v.apply_merge().expect("merge keys");
    }
    v
}

/// What compose says a `${VAR:-default}` is when VAR is unset, or the value as it is.
fn compose_default(value: &str) -> String {
    match value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
    {
        Some((_, default)) => default.to_string(),
        None => value.to_string(),
    }
}

/// The variables of deploy/lab.env that a design reads. The externalized replicas are not given
/// the JWT key, which compose's shared env_file hands them though they never read it.
fn lab_env_read_by(design: Design) -> Vec<&'static str> {
    match design {
        Design::Stateful => vec![],
        Design::Stateless => vec![
            "STATELAB_JWT_SECRET",
            "STATELAB_S3_ACCESS_KEY",
            "STATELAB_S3_SECRET_KEY",
        ],
        Design::Externalized => vec!["STATELAB_S3_ACCESS_KEY", "STATELAB_S3_SECRET_KEY"],
    }
}

fn secret_key_for(var: &str) -> &'static str {
    SECRET_KEYS
        .iter()
        .find(|(v, _)| *v == var)
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("{var} has no key in the Secret"))
}

fn object_store_url() -> String {
    format!("http://{OBJECTS_NAME}:{CONTAINER_S3_PORT}")
}

#[test]
fn the_kustomization_lists_every_manifest_and_names_every_image() {
    let m = Manifests::load();
    let listed: BTreeSet<String> = Manifests::resources(&m.kustomization).into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(workspace_root().join(K8S))
        .expect("deploy/k8s")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "kustomization.yaml's resources are every manifest in {K8S}"
    );

    let generators = list(&m.kustomization, &["configMapGenerator"]);
    assert_eq!(generators.len(), 1, "one generated ConfigMap");
    assert_eq!(text(&generators[0], &["name"]), PROXY_CONFIG_MAP);
    assert_eq!(
        strings(get(&generators[0], &["files"])),
        [PROXY_CONFIG_FILE]
    );

    let images: BTreeSet<String> = list(&m.kustomization, &["images"])
        .iter()
        .map(|i| text(i, &["name"]).to_string())
        .collect();
    let mut used = BTreeSet::new();
    for (owner, pod) in m.pod_templates() {
        for c in list(pod, &["spec", "containers"]) {
            let image = text(c, &["image"]);
            assert!(
                images.contains(image),
                "{owner}'s image {image:?} is none of the kustomization's images {images:?}, so \
                 `kustomize edit set image` would not retarget it"
            );
            used.insert(image.to_string());
        }
    }
    assert_eq!(used, images, "every image the kustomization names is used");

    let docs = read("docs/kubernetes.md");
    assert!(
        docs.contains(&format!("kubectl create namespace {}", m.namespace())),
        "docs/kubernetes.md creates the kustomization's namespace {}",
        m.namespace()
    );
}

#[test]
fn each_design_is_a_deployment_behind_a_headless_service() {
    let m = Manifests::load();
    let compose = compose();
    for design in Design::ALL {
        let name = design.as_str();
        // Named after the design, so that its pods are `<design>-<hash>-<suffix>`.
        let deploy = m.object("Deployment", name);
        assert_eq!(
            number(deploy, &["spec", "replicas"]),
            u64::from(REPLICAS_PER_POOL),
            "{name}'s replicas"
        );
        let pod = get(deploy, &["spec", "template"]);
        let selector = labels(get(deploy, &["spec", "selector", "matchLabels"]));
        let pod_labels = labels(get(pod, &["metadata", "labels"]));
        for (k, v) in &selector {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{name}'s selector picks its pods"
            );
        }
        let c = only_container(pod);
        assert_eq!(text(c, &["image"]), "statelab", "{name}'s image");
        assert_eq!(strings(get(c, &["args"])), [name], "{name}'s command");
        let ports = list(c, &["ports"]);
        assert_eq!(ports.len(), 1, "{name} listens on one port");
        assert_eq!(
            number(&ports[0], &["containerPort"]),
            u64::from(CONTAINER_SERVICE_PORT),
            "{name}'s port (the image's STATELAB_LISTEN)"
        );

        let service_port = u64::from(CONTAINER_SERVICE_PORT);
        assert_eq!(
            http_probe(c, "readinessProbe"),
            ("/health".to_string(), service_port),
            "{name}'s readiness"
        );
        let live = http_probe(c, "livenessProbe");
        match design {
            // Its /health fails while Redis does; a restart would not bring Redis back.
            Design::Externalized => {
                assert_eq!(live, ("/metrics".to_string(), service_port), "{name}")
            }
            _ => assert_eq!(live, ("/health".to_string(), service_port), "{name}"),
        }
        for what in ["requests", "limits"] {
            assert!(
                get(c, &["resources", what]).get("memory").is_some(),
                "{name} has a memory {what}"
            );
        }

        // The environment: compose's for `<design>-1`, the replica's name from its pod's.
        let k8s_env = env(c);
        let compose_env = labels(get(
            &compose,
            &["services", &format!("{name}-1"), "environment"],
        ));
        let mut want: BTreeSet<String> = compose_env.keys().cloned().collect();
        want.extend(lab_env_read_by(design).into_iter().map(String::from));
        assert_eq!(
            k8s_env.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{name}'s environment: compose's, and the lab.env variables it reads"
        );
        assert_eq!(
            text(
                &k8s_env["STATELAB_REPLICA"],
                &["valueFrom", "fieldRef", "fieldPath"]
            ),
            "metadata.name",
            "{name} names itself after its pod"
        );
        for (var, value) in &compose_env {
            let want = match var.as_str() {
                "STATELAB_REPLICA" => continue,
                // compose finds the store by address, Kubernetes by its Service's name.
                "STATELAB_S3_URL" => object_store_url(),
                _ => compose_default(value),
            };
            assert_eq!(env_value(c, var), want, "{name}'s {var}");
        }
        for var in lab_env_read_by(design) {
            let from = get(&k8s_env[var], &["valueFrom", "secretKeyRef"]);
            assert_eq!(text(from, &["name"]), SECRET, "{name}'s {var}");
            assert_eq!(text(from, &["key"]), secret_key_for(var), "{name}'s {var}");
        }

        let port = m.headless_service(name, pod);
        assert_eq!(u64::from(port), service_port, "Service {name}'s port");
    }
}

/// The proxy learns each replica's name from its `x-replica`, which is its pod's name: the
/// proxy's own membership change (what discovery does) must take such names into each pool.
#[test]
fn the_proxy_config_parses_and_follows_the_headless_services() {
    let m = Manifests::load();
    let toml_text = read(&format!("{K8S}/{PROXY_CONFIG_FILE}"));
    let config = statelab_proxy::Config::from_toml_str(&toml_text).unwrap_or_else(|e| {
        panic!("the proxy refuses {K8S}/{PROXY_CONFIG_FILE}: {e}");
    });
    let file: ConfigFile = toml::from_str(&toml_text).expect("the file parses");
    let model = docker_proxy_config(DEFAULT_NET_PREFIX);
    assert_eq!(file.health, model.health, "health checks as in the lab");
    assert_eq!(
        file.retry, model.retry,
        "retries and timeouts as in the lab"
    );

    let listen: SocketAddr = file.server.listen.parse().expect("listen");
    assert!(
        listen.ip().is_unspecified(),
        "the public listener takes the Service's traffic"
    );
    assert_eq!(listen.port(), CONTAINER_PROXY_PORT);
    let admin: SocketAddr = file.server.admin_listen.parse().expect("admin_listen");
    assert!(
        admin.ip().is_loopback(),
        "the admin API stays inside the pod"
    );
    assert_eq!(admin.port(), CONTAINER_ADMIN_PORT);
    assert_eq!(file.server.admin_token, None, "no token in the ConfigMap");

    let pools = file.pools.clone().expect("the file lists its pools");
    let model_pools = model.pools.expect("the model lists its pools");
    assert_eq!(pools.len(), Design::ALL.len(), "one pool per design");
    for (design, (pool, modelled)) in Design::ALL.into_iter().zip(pools.iter().zip(&model_pools)) {
        let name = design.as_str();
        assert_eq!(
            (&pool.name, &pool.prefix, pool.strategy),
            (&modelled.name, &modelled.prefix, modelled.strategy),
            "pool {name} routes as in the lab"
        );
        assert!(pool.replicas.is_empty(), "pool {name} lists no replicas");
        let deploy = m.object("Deployment", name);
        let port = m.headless_service(name, get(deploy, &["spec", "template"]));
        assert_eq!(
            pool.discover.as_deref(),
            Some(format!("{name}:{port}").as_str()),
            "pool {name} follows its headless Service"
        );
    }

    let metrics = statelab_proxy::metrics::Metrics::new();
    let proxy_pools = statelab_proxy::pool::Pools::new(&config, &metrics);
    // A Deployment's pod: `<deployment>-<pod-template-hash, up to 10>-<5>`, from Kubernetes'
    // alphabet for generated names.
    for (i, design) in Design::ALL.into_iter().enumerate() {
        for k in 1..=REPLICAS_PER_POOL {
            let pod = format!(
                "{design}-7c9d8f6b5d-x2k4{}",
                ["b", "q", "z"][usize::from(k - 1)]
            );
            let addr = format!("10.244.{i}.{k}:{CONTAINER_SERVICE_PORT}");
            if let Err(e) = proxy_pools.add_replica(design.as_str(), &pod, &addr) {
                panic!("pool {design} refuses the pod name {pod:?}: {e:?}");
            }
        }
    }

    // The proxy's pod: the ConfigMap's file where --config looks, the admin API asked from
    // inside the pod, only the public port in a Service.
    let deploy = m.object("Deployment", "proxy");
    assert_eq!(number(deploy, &["spec", "replicas"]), 1);
    let pod = get(deploy, &["spec", "template"]);
    let c = only_container(pod);
    let args = strings(get(c, &["args"]));
    assert_eq!(args[..2], ["statelab-proxy", "--config"], "{args:?}");
    let config_path = Path::new(&args[2]);
    assert_eq!(
        config_path.file_name().and_then(|f| f.to_str()),
        Some(PROXY_CONFIG_FILE),
        "the generated ConfigMap's key is the file's name"
    );
    let mount = list(c, &["volumeMounts"])
        .iter()
        .find(|v| Path::new(text(v, &["mountPath"])) == config_path.parent().expect("a dir"))
        .unwrap_or_else(|| panic!("nothing is mounted where {} is", config_path.display()));
    let volume = list(pod, &["spec", "volumes"])
        .iter()
        .find(|v| text(v, &["name"]) == text(mount, &["name"]))
        .expect("the mount's volume");
    assert_eq!(text(volume, &["configMap", "name"]), PROXY_CONFIG_MAP);
    let ready = [
        "statelab-healthcheck".to_string(),
        CONTAINER_ADMIN_PORT.to_string(),
        ADMIN_READY_PATH.to_string(),
    ];
    assert_eq!(exec_probe(c, "readinessProbe"), ready);
    assert_eq!(exec_probe(c, "livenessProbe"), ready);
    let ports: Vec<u64> = list(c, &["ports"])
        .iter()
        .map(|p| number(p, &["containerPort"]))
        .collect();
    assert_eq!(ports, [u64::from(CONTAINER_PROXY_PORT)]);

    let svc = m.object("Service", "proxy");
    selects(svc, pod);
    let svc_ports = list(svc, &["spec", "ports"]);
    assert_eq!(
        svc_ports.len(),
        1,
        "the proxy's Service has the public port only"
    );
    assert_eq!(
        number(&svc_ports[0], &["port"]),
        u64::from(CONTAINER_PROXY_PORT)
    );
    assert_eq!(
        container_port(c, get(&svc_ports[0], &["targetPort"])),
        u64::from(CONTAINER_PROXY_PORT)
    );
    for svc in m.of_kind("Service") {
        for p in list(svc, &["spec", "ports"]) {
            assert_ne!(
                number(p, &["port"]),
                u64::from(CONTAINER_ADMIN_PORT),
                "{} exposes the admin port",
                describe(svc)
            );
        }
    }
}

/// A replica told to stop first serves on while the proxy sees its address leave the DNS answer
/// (one discovery round after the cluster DNS's cache), then gets its own shutdown grace.
#[test]
fn a_stopping_replica_serves_until_the_proxy_has_drained_it() {
    let m = Manifests::load();
    let file: ConfigFile =
        toml::from_str(&read(&format!("{K8S}/{PROXY_CONFIG_FILE}"))).expect("parses");
    let services = read("services/src/config.rs");
    let grace: u64 = services
        .lines()
        .find_map(|l| {
            l.split_once("env = \"STATELAB_SHUTDOWN_GRACE\", default_value_t = ")
                .map(|(_, rest)| rest.trim_end_matches(")]").trim())
        })
        .expect("services/src/config.rs's STATELAB_SHUTDOWN_GRACE default")
        .parse()
        .expect("a number of seconds");
    for (design, pool) in Design::ALL.into_iter().zip(file.pools.expect("pools")) {
        let interval_ms = pool.discover_interval_ms.unwrap_or(1000);
        let pod = get(
            m.object("Deployment", design.as_str()),
            &["spec", "template"],
        );
        let stop = strings(get(
            only_container(pod),
            &["lifecycle", "preStop", "exec", "command"],
        ));
        assert_eq!(stop[0], "sleep", "{design}'s preStop: {stop:?}");
        let sleep: u64 = stop[1].parse().expect("whole seconds");
        assert!(
            sleep * 1000 >= CLUSTER_DNS_TTL_S * 1000 + interval_ms,
            "{design}'s preStop sleep ({sleep} s) is shorter than the DNS TTL \
             ({CLUSTER_DNS_TTL_S} s) plus one discovery round ({interval_ms} ms)"
        );
        let allowed = number(pod, &["spec", "terminationGracePeriodSeconds"]);
        assert!(
            allowed > sleep + grace,
            "{design}: terminationGracePeriodSeconds ({allowed}) leaves no room for the preStop \
             sleep ({sleep} s) and the service's shutdown grace ({grace} s)"
        );
    }
}

#[test]
fn redis_and_the_object_store_are_statefulsets_the_replicas_find_by_name() {
    let m = Manifests::load();
    let compose = compose();

    let redis = Part::REDIS.to_string();
    let sts = m.object("StatefulSet", &redis);
    let pod = get(sts, &["spec", "template"]);
    let c = only_container(pod);
    let args = strings(get(c, &["args"]));
    assert_eq!(
        args,
        strings(get(&compose, &["services", &redis, "command"])),
        "Redis runs as in compose"
    );
    assert!(
        args.windows(4).any(|w| w == REDIS_MEMORY_FLAGS),
        "Redis has the model's memory bound {REDIS_MEMORY_FLAGS:?}: {args:?}"
    );
    let dir = args
        .windows(2)
        .find(|w| w[0] == "--dir")
        .map(|w| w[1].clone())
        .expect("--dir");
    claim_mounted_at(sts, c, &dir);
    assert_eq!(exec_probe(c, "readinessProbe"), ["redis-cli", "ping"]);
    let port = store_service(&m, sts, &redis, CONTAINER_REDIS_PORT);
    let url = format!("redis://{redis}:{port}");
    for (design, var) in [
        (Design::Externalized, "STATELAB_REDIS_URL"),
        (Design::Stateless, "STATELAB_CHAT_REDIS_URL"),
    ] {
        let replica = only_container(get(
            m.object("Deployment", design.as_str()),
            &["spec", "template"],
        ));
        assert_eq!(
            env_value(replica, var),
            url,
            "{design} reaches Redis by its Service"
        );
    }

    let sts = m.object("StatefulSet", OBJECTS_NAME);
    let c = only_container(get(sts, &["spec", "template"]));
    let command = strings(get(c, &["args"])).join(" ");
    for want in [
        "s3s-fs --host 0.0.0.0".to_string(),
        format!("--port {CONTAINER_S3_PORT}"),
        "--access-key \"$STATELAB_S3_ACCESS_KEY\"".to_string(),
        "--secret-key \"$STATELAB_S3_SECRET_KEY\"".to_string(),
        "trap 'kill -INT".to_string(),
    ] {
        assert!(command.contains(&want), "s3's command lacks '{want}'");
    }
    let mount = list(c, &["volumeMounts"])
        .iter()
        .map(|v| text(v, &["mountPath"]).to_string())
        .find(|p| command.contains(&format!(" {p} &")))
        .expect("s3s-fs serves a mounted folder");
    claim_mounted_at(sts, c, &mount);
    let check = [
        "statelab-healthcheck".to_string(),
        CONTAINER_S3_PORT.to_string(),
        "/".into(),
        "403".into(),
    ];
    assert_eq!(exec_probe(c, "readinessProbe"), check);
    let port = store_service(&m, sts, OBJECTS_NAME, CONTAINER_S3_PORT);
    assert_eq!(format!("http://{OBJECTS_NAME}:{port}"), object_store_url());
    let store_env = env(c);
    for (var, _) in &SECRET_KEYS[1..] {
        let from = get(&store_env[*var], &["valueFrom", "secretKeyRef"]);
        assert_eq!(text(from, &["name"]), SECRET);
        assert_eq!(text(from, &["key"]), secret_key_for(var));
    }
}

/// A volume claim template of `sts` is mounted in `c` at `path`.
fn claim_mounted_at(sts: &Value, c: &Value, path: &str) {
    let claims: Vec<&str> = list(sts, &["spec", "volumeClaimTemplates"])
        .iter()
        .map(|t| text(t, &["metadata", "name"]))
        .collect();
    assert!(
        list(c, &["volumeMounts"])
            .iter()
            .any(|v| { claims.contains(&text(v, &["name"])) && text(v, &["mountPath"]) == path }),
        "{} keeps {path} on a volume claim {claims:?}",
        describe(sts)
    );
}

/// The store's Service (governing its StatefulSet) on the model's port, and its NetworkPolicy
/// admitting the designs that use it on that port. Returns the port.
fn store_service(m: &Manifests, sts: &Value, name: &str, model_port: u16) -> u16 {
    assert_eq!(text(sts, &["spec", "serviceName"]), name);
    assert_eq!(number(sts, &["spec", "replicas"]), 1);
    let pod = get(sts, &["spec", "template"]);
    let c = only_container(pod);
    let svc = m.object("Service", name);
    selects(svc, pod);
    let ports = list(svc, &["spec", "ports"]);
    assert_eq!(ports.len(), 1);
    let port = number(&ports[0], &["port"]);
    assert_eq!(port, u64::from(model_port), "Service {name}'s port");
    assert_eq!(
        container_port(c, get(&ports[0], &["targetPort"])),
        u64::from(model_port)
    );

    let policy = m.object("NetworkPolicy", name);
    let picked = labels(get(policy, &["spec", "podSelector", "matchLabels"]));
    assert_eq!(
        picked,
        labels(get(svc, &["spec", "selector"])),
        "NetworkPolicy {name} guards the Service's pods"
    );
    let rules = list(policy, &["spec", "ingress"]);
    assert_eq!(rules.len(), 1);
    let allowed: Vec<u64> = list(&rules[0], &["ports"])
        .iter()
        .map(|p| number(p, &["port"]))
        .collect();
    assert_eq!(allowed, [port], "NetworkPolicy {name}'s port");
    let from = list(&rules[0], &["from"]);
    assert_eq!(from.len(), 1);
    let expr = list(&from[0], &["podSelector", "matchExpressions"]);
    assert_eq!(text(&expr[0], &["key"]), "app.kubernetes.io/name");
    assert_eq!(text(&expr[0], &["operator"]), "In");
    assert_eq!(
        strings(get(&expr[0], &["values"])),
        [Design::Stateless.as_str(), Design::Externalized.as_str()],
        "NetworkPolicy {name} admits the designs that use it"
    );
    u16::try_from(port).expect("a port")
}

#[test]
fn the_secret_is_referenced_and_never_committed() {
    let m = Manifests::load();
    assert!(
        m.of_kind("Secret").next().is_none(),
        "{K8S} commits a Secret"
    );
    assert!(
        m.kustomization.get("secretGenerator").is_none(),
        "kustomization.yaml generates a Secret"
    );

    let mut required = BTreeSet::new();
    let mut optional = BTreeSet::new();
    for (owner, pod) in m.pod_templates() {
        for c in list(pod, &["spec", "containers"]) {
            for (var, entry) in env(c) {
                let secretish = ["SECRET", "KEY", "TOKEN"].iter().any(|w| var.contains(w));
                let Some(from) = entry.get("valueFrom").and_then(|v| v.get("secretKeyRef")) else {
                    assert!(!secretish, "{owner}'s {var} is not from the Secret");
                    continue;
                };
                assert_eq!(text(from, &["name"]), SECRET, "{owner}'s {var}");
                let key = text(from, &["key"]).to_string();
                if from
                    .get("optional")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    optional.insert(key);
                } else {
                    required.insert(key);
                }
            }
        }
    }
    let keys: BTreeSet<String> = SECRET_KEYS.iter().map(|(_, k)| k.to_string()).collect();
    assert_eq!(required, keys, "the Secret's keys the pods need");
    assert_eq!(optional, BTreeSet::from([ADMIN_TOKEN_KEY.to_string()]));

    // The docs make the Secret with every key the pods need, from random bytes.
    let docs = read("docs/kubernetes.md");
    assert!(
        docs.contains(&format!("create secret generic {SECRET}")),
        "docs/kubernetes.md makes the Secret {SECRET}"
    );
    for key in keys.iter().chain(&optional) {
        assert!(
            docs.contains(&format!("--from-literal={key}=\"$(openssl rand -hex")),
            "docs/kubernetes.md makes the key {key} from random bytes"
        );
    }

    // None of the lab's published secrets is anywhere in deploy/k8s.
    let lab_env = read("deploy/lab.env");
    let published: Vec<&str> = lab_env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim()))
        .filter(|v| !v.is_empty())
        .collect();
    assert!(!published.is_empty(), "deploy/lab.env has its secrets");
    for entry in std::fs::read_dir(workspace_root().join(K8S)).expect("deploy/k8s") {
        let path = entry.expect("an entry").path();
        let content = std::fs::read_to_string(&path).expect("a text file");
        for secret in &published {
            assert!(
                !content.contains(secret),
                "{} holds a secret of deploy/lab.env",
                path.display()
            );
        }
    }
}

/// What kubernetes-validate found in one file: the objects that passed, or why it failed.
fn validate(tool: &Path, file: &Path, objects: usize) -> Result<(), String> {
    let out = Command::new(tool)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = report
        .lines()
        .filter(|l| {
            l.starts_with("INFO ")
                && l.contains(" passed for resource ")
                && l.ends_with(&format!(" against version {KUBERNETES_VERSION}"))
        })
        .count();
    // A kind without a schema (a misspelt kind or apiVersion) is only a warning, with exit 0.
    let complaint = report
        .lines()
        .any(|l| ["WARN", "ERROR", "FATAL"].iter().any(|w| l.starts_with(w)));
    if out.status.success() && !complaint && passed == objects {
        Ok(())
    } else {
        Err(format!(
            "{} ({}; {passed} of {objects} objects passed):\n{report}",
            file.display(),
            out.status
        ))
    }
}

/// A fault put into a copy of a manifest: what it is, the word the failure must name, the edit.
type Breakage = (&'static str, &'static str, fn(&mut Value));

/// The kubernetes-validate to run: `STATELAB_K8S_VALIDATE`, else the one scripts/test installs.
fn validator() -> Option<PathBuf> {
    if let Some(given) = std::env::var_os("STATELAB_K8S_VALIDATE").filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        assert!(
            given.is_file(),
            "STATELAB_K8S_VALIDATE={} is no file",
            given.display()
        );
        return Some(given);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| workspace_root().join(t))
        .unwrap_or_else(|| workspace_root().join("target"));
    let installed = target.join("tools/k8s-venv/bin/kubernetes-validate");
    installed.is_file().then_some(installed)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas_and_broken_ones_do_not() {
    let Some(tool) = validator() else {
        let message =
            "\n!!! NOT RUN: the Kubernetes manifests' schema validation (lab/tests/k8s.rs)\n\
             !!!   no kubernetes-validate: set STATELAB_K8S_VALIDATE, or run scripts/test, which\n\
             !!!   installs it into target/tools/k8s-venv\n";
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !ci,
            "{message}!!!   CI is set, and CI must run every test: this is a failure.\n"
        );
        say(message);
        return;
    };
    let pinned = read("scripts/prereqs.sh")
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VALIDATE_VERSION=").map(str::to_string))
        .expect("scripts/prereqs.sh pins K8S_VALIDATE_VERSION");
    let version = Command::new(&tool)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        pinned,
        "{} is not the pinned kubernetes-validate (scripts/test installs it)",
        tool.display()
    );

    let m = Manifests::load();
    for file in Manifests::resources(&m.kustomization) {
        let objects = m.objects.iter().filter(|(f, _)| *f == file).count();
        let path = workspace_root().join(K8S).join(&file);
        if let Err(e) = validate(&tool, &path, objects) {
            panic!("{K8S}/{file} fails the Kubernetes {KUBERNETES_VERSION} schemas: {e}");
        }
    }

    // The ConfigMap kustomize generates from proxy.toml.
    let dir = TempDir::new("k8s-validate");
    let mut data = Mapping::new();
    data.insert(
        PROXY_CONFIG_FILE.into(),
        read(&format!("{K8S}/{PROXY_CONFIG_FILE}")).into(),
    );
    let config_map: Value = serde_yaml_ng::from_str(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {PROXY_CONFIG_MAP}\n  namespace: {}\n",
        m.namespace()
    ))
    .expect("a ConfigMap");
    let mut config_map = config_map;
    config_map
        .as_mapping_mut()
        .expect("a mapping")
        .insert("data".into(), Value::Mapping(data));
    let path = dir.join("configmap.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&config_map).expect("YAML")).expect("write");
    if let Err(e) = validate(&tool, &path, 1) {
        panic!("the generated ConfigMap fails the schemas: {e}");
    }

    // Broken copies of a Deployment must fail, each for its own reason: else the check above
    // proves nothing.
    let good = m.object("Deployment", Design::Stateless.as_str()).clone();
    let breakages: [Breakage; 4] = [
        ("replicas as text", "replicas", |d| {
            d["spec"]["replicas"] = "three".into();
        }),
        ("a misspelt field", "imagePullPolicyy", |d| {
            let c = d["spec"]["template"]["spec"]["containers"][0]
                .as_mapping_mut()
                .expect("a container");
            let policy = c.remove("imagePullPolicy").expect("imagePullPolicy");
            c.insert("imagePullPolicyy".into(), policy);
        }),
        ("no selector", "selector", |d| {
            d["spec"]
                .as_mapping_mut()
                .expect("spec")
                .remove("selector")
                .expect("a selector");
        }),
        ("a misspelt kind", "Deploymnet", |d| {
            d["kind"] = "Deploymnet".into();
        }),
    ];
    for (what, named, breakage) in breakages {
        let mut broken = good.clone();
        breakage(&mut broken);
        let path = dir.join(format!("{}.yaml", what.replace(' ', "-")));
        std::fs::write(&path, serde_yaml_ng::to_string(&broken).expect("YAML")).expect("write");
        match validate(&tool, &path, 1) {
            Ok(()) => panic!("kubernetes-validate accepts a Deployment with {what}"),
            Err(e) => assert!(
                e.contains(named),
                "the failure for {what} does not name {named}: {e}"
            ),
        }
    }
}
