//! A real containerd for the CRI tests: started with its own root, state,
//! sockets and CNI config under a temp dir, a pause image built locally
//! (busybox) and imported with `ctr`. Dropping it removes the pods, stops
//! containerd and removes what it left (bridge, IPAM state, mounts).
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    runtime_service_client::RuntimeServiceClient, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatusRequest, PortMapping, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{sh, sh_quiet};

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    bridge: String,
    net_name: String,
    child: Option<Child>,
    pods: Vec<String>,
    rt: tokio::runtime::Runtime,
    /// The pods' address block, held while this runs.
    _block: crate::lab::Reservation,
}

impl Containerd {
    /// `tag` makes names unique; the pods get an address block of their own.
    pub fn start(tag: &str) -> Self {
        let block = crate::lab::Reservation::take();
        let subnet = format!("10.{}", block.octet);
        crate::require_root();
        for bin in ["containerd", "ctr", "runc"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {bin}"))
                    .status()
                    .unwrap()
                    .success(),
                "{bin} not installed: run scripts/setup.sh"
            );
        }
        let dir = std::env::temp_dir().join(format!("netflow-cri-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        let socket = dir.join("containerd.sock");
        let bridge = format!("nfcni{tag}");
        let net_name = format!("netflow-test-{tag}");
        std::fs::write(
            dir.join("cni/10-test.conflist"),
            format!(
                r#"{{"cniVersion":"0.4.0","name":"{net_name}","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}.0.0/16"}}]]}}}}]}}"#
            ),
        )
        .unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"localhost/pause:test\"\n  restrict_oom_score_adj = true\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"/usr/lib/cni\"\n    conf_dir = \"{d}/cni\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = Containerd {
            dir,
            socket,
            bridge,
            net_name,
            child: Some(child),
            pods: Vec::new(),
            rt,
            _block: block,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let tar = c.dir.join("pause.tar");
        sh(&format!(
            "python3 {}/src/mkpause.py {}",
            env!("CARGO_MANIFEST_DIR"),
            tar.display()
        ));
        sh(&format!(
            "ctr -a {} -n k8s.io images import {}",
            c.socket.display(),
            tar.display()
        ));
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        let sock = self.socket.clone();
        let channel = self
            .rt
            .block_on(
                Endpoint::try_from("http://[::]:50051")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let sock = sock.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(sock).await?,
                            ))
                        }
                    })),
            )
            .expect("connect to containerd");
        RuntimeServiceClient::new(channel)
    }

    /// RunPodSandbox: a real pod sandbox with its network namespace from CNI.
    pub fn run_pod(&mut self, namespace: &str, name: &str) -> String {
        self.run(namespace, name, None)
    }

    /// A hostNetwork pod (the node's namespace) declaring `ports`, as the
    /// kubelet asks for one: namespace mode NODE, a port mapping per port.
    pub fn run_host_pod(&mut self, namespace: &str, name: &str, ports: &[u16]) -> String {
        self.run(namespace, name, Some(ports))
    }

    fn run(&mut self, namespace: &str, name: &str, host_ports: Option<&[u16]>) -> String {
        let mut client = self.client();
        let mut config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: namespace.into(),
                uid: format!("uid-{namespace}-{name}"),
                attempt: 0,
            }),
            ..Default::default()
        };
        if let Some(ports) = host_ports {
            config.port_mappings = ports
                .iter()
                .map(|p| PortMapping {
                    protocol: 0,
                    container_port: *p as i32,
                    host_port: *p as i32,
                    host_ip: String::new(),
                })
                .collect();
            config.linux = Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let id = self
            .rt
            .block_on(client.run_pod_sandbox(req))
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.log()))
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        id
    }
}

impl Containerd {
    /// The pod's IP as the runtime reports it (PodSandboxStatus): what a
    /// test expects comes from the runtime, not from netflow.
    pub fn pod_ip(&mut self, id: &str) -> String {
        let mut client = self.client();
        let status = self
            .rt
            .block_on(client.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            }))
            .unwrap_or_else(|e| panic!("PodSandboxStatus: {e}\n{}", self.log()))
            .into_inner()
            .status
            .expect("pod status");
        status
            .network
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| panic!("the runtime reports no IP for pod {id}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.socket.exists() {
            let mut client = self.client();
            for id in std::mem::take(&mut self.pods) {
                let _ = self
                    .rt
                    .block_on(client.stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    }));
                let _ = self.rt.block_on(
                    client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
                );
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        sh_quiet(&format!("ip link del {}", self.bridge));
        sh_quiet(&format!(
            "rm -rf /var/lib/cni/networks/{} /var/lib/cni/results/{}-*",
            self.net_name, self.net_name
        ));
        // Mounts containerd made under its root/state (snapshots, shm).
        sh_quiet(&format!(
            "grep -o ' {d}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            d = self.dir.display()
        ));
        let _ = std::fs::remove_dir_all(&self.dir);
        // Directories containerd and CNI create outside it, removed only when
        // empty (a runtime of the machine's own keeps its files).
        sh_quiet(
            "rmdir /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd \
             /var/lib/cni/networks /var/lib/cni/results /var/lib/cni 2>/dev/null; \
             for c in /sys/fs/cgroup/*/k8s.io; do rmdir \"$c\"/* \"$c\" 2>/dev/null; done",
        );
    }
}
