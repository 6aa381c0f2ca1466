//! Devices and neighbour entries of the calling thread's network namespace,
//! over rtnetlink (`RTM_GETLINK`, `RTM_GETNEIGH` dumps): what `ip link` and
//! `ip neigh` show, without the tools (the node image has none).
use std::{io, net::IpAddr, os::fd::AsRawFd, os::fd::FromRawFd, os::fd::OwnedFd};

const RTM_GETLINK: u16 = 18;
const RTM_GETNEIGH: u16 = 30;
const RTM_GETNSID: u16 = 90;
const RTM_NEWNSID: u16 = 88;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_STATS64: u16 = 23;
const IFF_LOOPBACK: u32 = 0x8;
const NDA_DST: u16 = 1;

/// A device as rtnetlink describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `veth`, `bridge`, `vxlan`, ...
    pub kind: String,
    /// IFLA_LINK: for a veth, its peer's ifindex.
    pub link: Option<u32>,
    /// The peer is in another namespace: its id as this namespace knows it
    /// (IFLA_LINK_NETNSID).
    pub link_netnsid: Option<i32>,
    pub master: Option<u32>,
    pub loopback: bool,
    /// What the device counted (IFLA_STATS64).
    pub stats: Option<LinkStats>,
}

/// A device's packets and bytes received and sent, as the kernel counts
/// them (`ip -s link`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

fn u64_at(v: &[u8], i: usize) -> u64 {
    v.get(i * 8..i * 8 + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0)
}

/// Every device of the calling thread's namespace.
pub fn links() -> io::Result<Vec<Link>> {
    let mut out = Vec::new();
    for (ty, body) in request(RTM_GETLINK, true, &[0u8; 16])? {
        if ty != 16 || body.len() < 16 {
            continue;
        }
        let ifindex = i32::from_ne_bytes(body[4..8].try_into().unwrap()) as u32;
        let flags = u32::from_ne_bytes(body[8..12].try_into().unwrap());
        let mut l = Link {
            ifindex,
            loopback: flags & IFF_LOOPBACK != 0,
            ..Default::default()
        };
        for (t, v) in attrs(&body[16..]) {
            match t {
                IFLA_IFNAME => l.name = cstr(v),
                IFLA_LINK => l.link = u32_of(v).filter(|&i| i != 0),
                IFLA_MASTER => l.master = u32_of(v).filter(|&i| i != 0),
                IFLA_LINK_NETNSID => l.link_netnsid = u32_of(v).map(|n| n as i32).or(Some(-1)),
                // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, ...
                IFLA_STATS64 if v.len() >= 32 => {
                    l.stats = Some(LinkStats {
                        rx_packets: u64_at(v, 0),
                        tx_packets: u64_at(v, 1),
                        rx_bytes: u64_at(v, 2),
                        tx_bytes: u64_at(v, 3),
                    })
                }
                IFLA_LINKINFO => {
                    for (t, v) in attrs(v) {
                        if t == IFLA_INFO_KIND {
                            l.kind = cstr(v);
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(l);
    }
    Ok(out)
}

/// The neighbour entries of device `ifindex`: address and state.
pub fn neighbours(ifindex: u32) -> io::Result<Vec<(IpAddr, u16)>> {
    let mut out = Vec::new();
    for (ty, body) in request(RTM_GETNEIGH, true, &[0u8; 12])? {
        if ty != 28 || body.len() < 12 {
            continue;
        }
        let idx = i32::from_ne_bytes(body[4..8].try_into().unwrap()) as u32;
        if idx != ifindex {
            continue;
        }
        let state = u16::from_ne_bytes([body[8], body[9]]);
        for (t, v) in attrs(&body[12..]) {
            if t != NDA_DST {
                continue;
            }
            let addr = match v.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(v).unwrap()),
                16 => IpAddr::from(<[u8; 16]>::try_from(v).unwrap()),
                _ => continue,
            };
            out.push((addr, state));
        }
    }
    Ok(out)
}

/// The id the calling thread's namespace gives the namespace open at `fd`
/// (what IFLA_LINK_NETNSID of a device whose peer is there says); None when
/// it has given it none.
pub fn nsid_of(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<i32>> {
    // struct rtgenmsg (family, padded to 4), then NETNSA_FD.
    let mut payload = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    payload.extend_from_slice(&8u16.to_ne_bytes());
    payload.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    payload.extend_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    for (ty, body) in request(RTM_GETNSID, false, &payload)? {
        if ty != RTM_NEWNSID || body.len() < 4 {
            continue;
        }
        for (t, v) in attrs(&body[4..]) {
            if t == NETNSA_NSID {
                return Ok(u32_of(v).map(|n| n as i32).filter(|&n| n >= 0));
            }
        }
    }
    Ok(None)
}

/// A NUD state as `ip neigh` prints it.
pub fn nud_name(state: u16) -> &'static str {
    match state {
        0x01 => "INCOMPLETE",
        0x02 => "REACHABLE",
        0x04 => "STALE",
        0x08 => "DELAY",
        0x10 => "PROBE",
        0x20 => "FAILED",
        0x40 => "NOARP",
        0x80 => "PERMANENT",
        0 => "NONE",
        _ => "UNKNOWN",
    }
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

fn cstr(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// Route attributes (`struct rtattr`, 4-byte aligned): (type, value).
pub(super) fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    out
}

/// A request (a dump, or one answer) and its messages: (type, body after
/// the header).
fn request(msg_type: u16, dump: bool, payload: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    request_on(libc::NETLINK_ROUTE, msg_type, dump, payload)
}

/// A request on a netlink `protocol` (rtnetlink, nfnetlink).
pub(super) fn request_on(
    protocol: i32,
    msg_type: u16,
    dump: bool,
    payload: &[u8],
) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: a valid fd and a timeval of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let len = 16 + payload.len();
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&msg_type.to_ne_bytes());
    let flags = if dump {
        NLM_F_REQUEST | NLM_F_DUMP
    } else {
        NLM_F_REQUEST
    };
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(payload);
    // SAFETY: a valid fd and buffer; the kernel's netlink is the peer.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: a valid fd and a buffer of buf.len() bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut b = &buf[..n as usize];
        if b.is_empty() {
            return Ok(out);
        }
        while b.len() >= 16 {
            let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            if len < 16 || len > b.len() {
                return Ok(out);
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(b[16..20].try_into().unwrap_or([0; 4]));
                    return if errno == 0 {
                        Ok(out)
                    } else {
                        Err(io::Error::from_raw_os_error(-errno))
                    };
                }
                _ => out.push((ty, b[16..len].to_vec())),
            }
            b = b.get((len + 3) & !3..).unwrap_or(&[]);
        }
        if !dump && !out.is_empty() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        // Any namespace has lo; reading links needs no privilege.
        let l = links().expect("RTM_GETLINK dump");
        assert!(
            l.iter()
                .any(|l| l.name == "lo" && l.ifindex == 1 && l.loopback && l.stats.is_some()),
            "{l:?}"
        );
    }

    #[test]
    fn own_namespace_has_an_answer() {
        // Asking about the caller's own namespace never fails (its id may or
        // may not be assigned).
        let f = std::fs::File::open("/proc/self/ns/net").unwrap();
        use std::os::fd::AsFd;
        assert!(nsid_of(f.as_fd()).is_ok());
    }

    #[test]
    fn attributes_are_walked_with_padding() {
        let b = [6u8, 0, 3, 0, b'l', b'o', 0, 0, 8, 0, 5, 0, 7, 0, 0, 0];
        let a = attrs(&b);
        assert_eq!(a.len(), 2);
        assert_eq!(cstr(a[0].1), "lo");
        assert_eq!(u32_of(a[1].1), Some(7));
    }
}
