//! The manifests in `deploy/`, checked offline: each against the Kubernetes
//! API schemas (`kubernetes-validate --strict`, installed by setup.sh; a
//! manifest with a misspelt field must fail it), and against each other
//! (the Service selects the DaemonSet's pods, the ServiceMonitor scrapes the
//! Service's port, the port is the agent's, the image is this version's).
use std::path::PathBuf;

use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn validate(file: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(file)
        .output()
        .expect("kubernetes-validate (scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("ERROR"), text)
}

/// The documents of a YAML file, as JSON.
fn documents(file: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,yaml,json; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .expect("python3 with yaml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn one(name: &str) -> Value {
    let mut docs = documents(&deploy_dir().join(name));
    assert_eq!(docs.len(), 1, "{name}");
    docs.remove(0)
}

#[test]
fn manifests_pass_the_kubernetes_schemas() {
    let mut checked = 0;
    for e in std::fs::read_dir(deploy_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let kind = one(p.file_name().unwrap().to_str().unwrap())["kind"].clone();
        let (ok, text) = validate(&p);
        if kind == "ServiceMonitor" {
            // A CRD of the Prometheus operator: no schema of the Kubernetes
            // API; checked against the Service below.
            assert!(text.contains("Couldn't find schema"), "{text}");
            continue;
        }
        assert!(ok, "{}: {text}", p.display());
        assert!(text.contains("passed"), "{text}");
        checked += 1;
    }
    assert!(checked >= 3, "namespace, daemonset, service: {checked}");
    // The check can fail: a misspelt field is refused.
    let ds = std::fs::read_to_string(deploy_dir().join("daemonset.yaml")).unwrap();
    let bad = std::env::temp_dir().join(format!("netflow-bad-ds-{}.yaml", std::process::id()));
    std::fs::write(&bad, ds.replace("hostNetwork:", "hostNetwrk:")).unwrap();
    let (ok, text) = validate(&bad);
    let _ = std::fs::remove_file(&bad);
    assert!(!ok, "a misspelt field passed: {text}");
}

#[test]
fn manifests_agree_with_each_other_and_the_agent() {
    let ds = one("daemonset.yaml");
    let svc = one("service.yaml");
    let sm = one("servicemonitor.yaml");
    let ns = one("namespace.yaml");
    let name = ns["metadata"]["name"].as_str().unwrap();
    for d in [&ds, &svc, &sm] {
        assert_eq!(d["metadata"]["namespace"], name, "{d}");
    }
    let pod = &ds["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the agents");
    }
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
    let c = &pod["spec"]["containers"][0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "agent");
    assert!(
        args.contains(&format!("--metrics-addr=0.0.0.0:{port}").as_str()),
        "{args:?}"
    );
    // Every JSON line names the Kubernetes node (the downward API's).
    assert!(args.contains(&"--node=$(NODE_NAME)"), "{args:?}");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "NODE_NAME"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
        "{c:#}"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        port.to_string()
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let port_name = c["ports"][0]["name"].as_str().unwrap();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], port_name);
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(
        c["image"],
        format!("localhost/netflow:{}", env!("CARGO_PKG_VERSION")),
        "the image `cargo xtask image` builds"
    );
    assert_eq!(pod["spec"]["hostNetwork"], true);
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for want in ["/run/netns", "/var/run/netns", "/sys/fs/cgroup"] {
        assert!(mounts.contains(&want), "{mounts:?}");
    }
}
