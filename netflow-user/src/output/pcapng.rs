//! `netflow export FILE --pcapng OUT`: every hop of every replayed packet
//! as a pcapng packet, for Wireshark. One interface block per (netns,
//! device) named after the device with its namespace or pod in the
//! description; each hop is an enhanced packet block with its direction and
//! a comment naming the hop, pod, verdict and drop reason.
use std::{borrow::Cow, collections::HashMap, io::Write, time::Duration};

use netflow_common::Point;
use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
        PcapNgWriter,
    },
    DataLink,
};

use crate::{
    correlate::{Note, Timeline},
    decode::names::Names,
    output::diagnose::hook_name,
    output::{
        view::{point_name, verdict_name},
        Sink, Stats,
    },
};

pub struct Pcapng<W: Write> {
    out: PcapNgWriter<W>,
    interfaces: HashMap<(u32, String), u32>,
    realtime_offset_ns: i128,
    pub packets: u64,
}

impl<W: Write> Pcapng<W> {
    pub fn new(w: W, realtime_offset_ns: i128) -> std::io::Result<Self> {
        Ok(Pcapng {
            out: PcapNgWriter::new(w).map_err(std::io::Error::other)?,
            interfaces: HashMap::new(),
            realtime_offset_ns,
            packets: 0,
        })
    }

    fn interface(&mut self, netns: u32, ifname: &str, names: &Names) -> std::io::Result<u32> {
        let key = (netns, ifname.to_string());
        if let Some(id) = self.interfaces.get(&key) {
            return Ok(*id);
        }
        let id = self.interfaces.len() as u32;
        let name = if ifname.is_empty() {
            "(no device)"
        } else {
            ifname
        };
        let block = InterfaceDescriptionBlock {
            // The captured bytes start at the IP header.
            linktype: DataLink::RAW,
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                    "{name} in netns {}",
                    names.netns_label(netns)
                ))),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.out
            .write_pcapng_block(block)
            .map_err(std::io::Error::other)?;
        self.interfaces.insert(key, id);
        Ok(id)
    }
}

impl<W: Write + Send> Sink for Pcapng<W> {
    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        let verdict = verdict_name(tl.verdict);
        let drop = tl
            .drop
            .map(|d| format!(", drop {}", names.reason(d.reason)))
            .unwrap_or_default();
        for (i, h) in tl.hops.iter().enumerate() {
            if h.data.is_empty() || h.packet.is_none() {
                continue;
            }
            let iface = self.interface(h.netns, &h.ifname, names)?;
            let mut comment = format!(
                "netflow packet {} hop {}/{}: {} {} netns {}",
                tl.id,
                i + 1,
                tl.hops.len(),
                point_name(h.point),
                if h.ifname.is_empty() { "-" } else { &h.ifname },
                names.netns_label(h.netns)
            );
            if matches!(h.point, Point::NfEarly | Point::NfLate) {
                comment.push_str(&format!(" hook {}", hook_name(h.hook)));
            }
            comment.push_str(&format!("; verdict {verdict}{drop}"));
            // EPB flags: bits 0-1 direction, 01 inbound, 10 outbound.
            let dir = match h.point {
                Point::Rx | Point::TcIngress => 1,
                Point::Tx | Point::TcEgress => 2,
                _ => 0,
            };
            let ts = (h.ts_ns as i128 + self.realtime_offset_ns).max(0) as u64;
            let block = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_nanos(ts),
                original_len: h.len.max(h.data.len() as u32),
                data: Cow::Borrowed(&h.data),
                options: vec![
                    EnhancedPacketOption::Flags(dir),
                    EnhancedPacketOption::Comment(Cow::Owned(comment)),
                ],
            };
            self.out
                .write_pcapng_block(block)
                .map_err(std::io::Error::other)?;
            self.packets += 1;
        }
        Ok(())
    }

    fn note(&mut self, _n: &Note, _names: &Names) -> std::io::Result<()> {
        Ok(())
    }

    fn connection(
        &mut self,
        _c: &crate::correlate::connections::Connection,
        _names: &Names,
    ) -> std::io::Result<()> {
        Ok(())
    }

    fn stats(&mut self, _s: &Stats, _now: u64) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.get_mut().flush()
    }
}
