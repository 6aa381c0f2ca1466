//! Asking the container runtime for pods over CRI (gRPC on a unix socket,
//! as crictl does), with the maintained `k8s-cri` bindings.
//!
//! Without a runtime socket (off Kubernetes, tests) the named network
//! namespaces stand in for pods.
use std::{net::IpAddr, path::PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    runtime_service_client::RuntimeServiceClient, ListPodSandboxRequest, NamespaceMode,
    PodSandboxState, PodSandboxStatusRequest,
};
use tonic::transport::{Endpoint, Uri};

use crate::{
    live::select::error::SelectError,
    live::select::pod::{netns_pods, Pod},
};

/// Where runtimes listen, in the order crictl tries them.
pub const DEFAULT_ENDPOINTS: [&str; 3] = [
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

/// The pods of this node: from the runtime at `endpoint` (or a standard
/// socket), else from named network namespaces.
pub fn list_pods(endpoint: Option<&str>) -> Result<Vec<Pod>, SelectError> {
    let path = match endpoint {
        Some(e) => socket_path(e),
        None => match DEFAULT_ENDPOINTS
            .iter()
            .map(|e| socket_path(e))
            .find(|p| p.exists())
        {
            Some(p) => p,
            None => return Ok(netns_pods()),
        },
    };
    // A thread with its own runtime: callers may already run inside tokio.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SelectError::Runtime(e.to_string()))?;
        let shown = path.display().to_string();
        rt.block_on(async {
            tokio::time::timeout(CRI_TIMEOUT, query(path))
                .await
                .unwrap_or_else(|_| {
                    Err(SelectError::Runtime(format!(
                        "the container runtime at {shown} did not answer within {}s: is it overloaded or stuck? (--runtime-endpoint to pick another; named network namespaces are used when no runtime socket exists)",
                        CRI_TIMEOUT.as_secs()
                    )))
                })
        })
    })
    .join()
    .map_err(|_| SelectError::Runtime("CRI client thread panicked".into()))?
}

/// The longest netflow waits for the container runtime (all calls together).
const CRI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn query(path: PathBuf) -> Result<Vec<Pod>, SelectError> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        SelectError::Runtime(format!("{what} {}: {e}", path.display()))
    };
    let sock = path.clone();
    let channel = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| err("bad endpoint", &e))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
        .map_err(|e| err("cannot connect to", &e))?;
    let mut client = RuntimeServiceClient::new(channel);
    let list = client
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .map_err(|e| err("ListPodSandbox on", &e.message()))?
        .into_inner();
    let mut pods = Vec::new();
    for sb in list.items {
        if sb.state != PodSandboxState::SandboxReady as i32 {
            continue; // not ready
        }
        let Some(meta) = sb.metadata else { continue };
        let status = match client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sb.id.clone(),
                verbose: true,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            // Deleted between the list and now: not a pod any more.
            Err(e) if e.code() == tonic::Code::NotFound => continue,
            Err(e) => return Err(err("PodSandboxStatus on", &e.message())),
        };
        let info = status.info.get("info");
        let host_network = status
            .status
            .as_ref()
            .and_then(|s| s.linux.as_ref())
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.as_ref())
            .is_some_and(|o| o.network == NamespaceMode::Node as i32);
        let (netns, host_ports) = if host_network {
            // The node's own namespace: the pod is its ports.
            let ports = info.map(|i| ports_from_info(i)).unwrap_or_default();
            (PathBuf::from("/proc/1/ns/net"), Some(ports))
        } else {
            let Some(netns) = info.and_then(|i| netns_from_info(i)) else {
                continue;
            };
            (netns, None)
        };
        let mut ips = Vec::new();
        if let Some(net) = status.status.and_then(|s| s.network) {
            ips.extend(net.ip.parse::<IpAddr>().ok());
            ips.extend(
                net.additional_ips
                    .iter()
                    .filter_map(|a| a.ip.parse::<IpAddr>().ok()),
            );
        }
        pods.push(Pod {
            namespace: Some(meta.namespace),
            name: meta.name,
            netns,
            ips,
            host_ports,
        });
    }
    Ok(pods)
}

/// The network namespace path in a sandbox's verbose info (containerd:
/// `runtimeSpec.linux.namespaces[type=network].path`).
pub fn netns_from_info(info: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(info).ok()?;
    v["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The ports a sandbox declares, from its config in the verbose info
/// (containerd: `config.port_mappings[].host_port`, else `container_port`;
/// the kubelet lists a hostNetwork pod's container ports there).
pub fn ports_from_info(info: &str) -> Vec<u16> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(info) else {
        return Vec::new();
    };
    let mut out: Vec<u16> = v["config"]["port_mappings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let port = |k: &str| m[k].as_u64().filter(|p| *p > 0 && *p <= 65535);
                    port("host_port").or_else(|| port("container_port"))
                })
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_netns_in_containerd_info() {
        let info = r#"{"pid":42,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1234"}]}}}"#;
        assert_eq!(
            netns_from_info(info),
            Some(PathBuf::from("/var/run/netns/cni-1234"))
        );
        assert_eq!(netns_from_info(r#"{"runtimeSpec":{}}"#), None);
        assert_eq!(netns_from_info("not json"), None);
    }

    #[test]
    fn a_host_network_sandbox_declares_its_ports() {
        let info = r#"{"config":{"port_mappings":[{"container_port":9400,"host_port":9400},{"protocol":1,"container_port":53},{"container_port":9400}]}}"#;
        assert_eq!(ports_from_info(info), vec![53, 9400]);
        assert!(ports_from_info(r#"{"config":{}}"#).is_empty());
    }
}
