//! decoder → correlator → output, driven the same way by a live trace and
//! by a replay: `event` for each raw ring-buffer record, `tick` when the
//! clock advanced, `finish` at the end. A live run also records here.
use std::collections::HashMap;

use netflow_common::{event_flags, Point};

use crate::{
    correlate::connections::{self, Connection, Connections, CountSource, Counted},
    correlate::filter::FlowFilter,
    correlate::{Config, Correlator, Timeline, Verdict},
    decode::names::Names,
    decode::packet::Tuple,
    decode::{Event, What},
    output::{Sink, Stats},
    record::{CountedRecord, End, Writer},
};

pub struct Pipeline {
    corr: Correlator,
    conns: Connections,
    /// Live: the kernel's counts of only-counted packets.
    counts: Option<Box<dyn CountSource + Send>>,
    /// Replay: the counts the live run read, by tuple.
    recorded_counts: HashMap<Tuple, Counted>,
    /// At exit: what is not printed by then is only counted (a tracer
    /// stopped under a flood must stop now).
    deadline: Option<std::time::Instant>,
    sink: Box<dyn Sink + Send>,
    pub names: Names,
    pub stats: Stats,
    recorder: Option<Writer>,
    filter: FlowFilter,
    /// UDP ports whose packets carry VXLAN (the decoder follows the inner packet).
    vxlan_ports: Vec<u16>,
}

/// `QUEUE_PURGE`, or before drop reasons (5.17) the functions that purge
/// a closing socket's queues.
fn purged_from_a_socket(names: &Names, reason: u32, at: &str) -> bool {
    names.reason(reason) == "QUEUE_PURGE"
        || crate::output::diagnose::reason_from_location(at) == Some("QUEUE_PURGE")
        || at.starts_with("sk_stream_kill_queues")
}

impl Pipeline {
    pub fn new(
        cfg: Config,
        sink: Box<dyn Sink + Send>,
        names: Names,
        recorder: Option<Writer>,
        filter: FlowFilter,
    ) -> Self {
        Pipeline {
            vxlan_ports: cfg.vxlan_ports.clone(),
            corr: Correlator::new(cfg),
            conns: Connections::new(connections::Config::default()),
            counts: None,
            recorded_counts: HashMap::new(),
            deadline: None,
            sink,
            names,
            stats: Stats::default(),
            recorder,
            filter,
        }
    }

    /// Kernels before 6.2 free the ICMPv6 messages they have processed (echo
    /// requests they answered, neighbour discovery) with `kfree_skb` and no
    /// reason, in icmpv6_rcv: that is the kernel taking them, not a drop.
    fn kernel_processed_icmpv6(&self, ev: &Event, reason: u32, location: &str) -> bool {
        let reason = self.names.reason(reason);
        if reason != crate::decode::names::UNAVAILABLE && reason != "NOT_SPECIFIED" {
            return false;
        }
        if !location.starts_with("icmpv6_rcv") {
            return false;
        }
        ev.packet
            .as_ref()
            .is_some_and(|p| p.tuple.proto == crate::decode::packet::Proto::Icmpv6)
    }

    /// A FIN that reaches its connection's TIME_WAIT socket (the local
    /// side closed first and its socket is gone) is answered with an ACK by
    /// that socket, then freed by `tcp_v4_rcv`/`tcp_v6_rcv` with
    /// `kfree_skb` and no reason (6.1 and others): the connection closing
    /// as it should, not a drop.
    fn kernel_processed_tcp_fin(&self, ev: &Event, reason: u32, location: &str) -> bool {
        self.names.reason(reason) == "NOT_SPECIFIED"
            && (location.starts_with("tcp_v4_rcv") || location.starts_with("tcp_v6_rcv"))
            && ev
                .packet
                .as_ref()
                .and_then(|p| p.tcp_flags.as_deref())
                .is_some_and(|f| f.contains('F'))
    }

    /// One record as the kernel wrote it.
    pub fn event(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stats.events += 1;
        match Event::decode(bytes, &self.vxlan_ports) {
            Ok(mut ev) => {
                if let What::End { reason, location } = ev.what {
                    // The location's name first: a replay knows it when the event comes.
                    let at = self.names.location(location);
                    if let Some(r) = &mut self.recorder {
                        r.symbol(location, &at)?;
                    }
                    if ev.point == Point::Drop
                        && !self.corr.is_open(ev.skb)
                        && purged_from_a_socket(&self.names, reason, &at)
                    {
                        // Freed from a socket's queue when it closed, never
                        // seen on its way (loopback is not followed): it had
                        // arrived; not a drop on its path.
                        ev.flags |= event_flags::AFTER_DELIVERY;
                    } else if ev.point == Point::Drop {
                        if self.kernel_processed_icmpv6(&ev, reason, &at)
                            || self.kernel_processed_tcp_fin(&ev, reason, &at)
                        {
                            ev.point = Point::Consume;
                        } else if is_symbol(&at)
                            && !in_netfilter(&at)
                            && self.names.reason(reason) != "NETFILTER_DROP"
                        {
                            ev.flags |= event_flags::OUTSIDE_HOOK;
                        }
                    }
                }
                if let Some(r) = &mut self.recorder {
                    r.event(bytes)?;
                }
                self.corr.push(ev);
            }
            Err(e) => {
                if let Some(r) = &mut self.recorder {
                    r.event(bytes)?;
                }
                self.stats.decode_errors += 1;
                log::debug!("undecodable event: {e}");
            }
        }
        Ok(())
    }

    /// The monotonic clock reads `now`: print what is complete.
    pub fn tick(&mut self, now: u64) -> std::io::Result<()> {
        self.sink.progress(&self.stats);
        let tls = self.corr.expire(now);
        let tls = self.completed(tls);
        let notes = self.corr.take_notes();
        let conns = {
            let mut counts = counts(
                &mut self.counts,
                &mut self.recorded_counts,
                &mut self.recorder,
            );
            self.conns.expire(now, &mut counts)
        };
        if tls.is_empty() && notes.is_empty() && conns.is_empty() {
            return Ok(());
        }
        if let Some(r) = &mut self.recorder {
            r.tick(now)?;
        }
        self.emit(tls, notes)?;
        self.emit_connections(conns)
    }

    /// Where a live run reads the kernel's counts of only-counted packets.
    pub fn set_counts(&mut self, source: Box<dyn CountSource + Send>) {
        self.counts = Some(source);
    }

    /// A replayed record of counts the live run read.
    pub fn recorded_counts(&mut self, t: Tuple, c: Counted) {
        *self.recorded_counts.entry(t).or_default() = c;
    }

    /// The kernel's count of only-counted packets so far.
    pub fn sampled(&mut self, total: u64) {
        self.stats.sampled = total;
    }

    /// The kernel's count of lost events, read at monotonic time `now`:
    /// what was open when events went missing is incomplete.
    pub fn lost(&mut self, total: u64, now: u64) {
        if total > self.stats.lost {
            self.stats.lost = total;
            self.corr.mark_incomplete();
            self.conns.mark_incomplete(now);
        }
    }

    /// Tell the output what is traced.
    pub fn start(
        &mut self,
        summary: &str,
        probes: &[crate::output::ProbeStatus],
    ) -> std::io::Result<()> {
        self.sink.start(summary, probes)
    }

    /// Names changed (namespaces or devices came and went).
    pub fn names_changed(&mut self) -> std::io::Result<()> {
        if let Some(r) = &mut self.recorder {
            r.names(&self.names.snapshot())?;
        }
        Ok(())
    }

    /// Past the exit deadline (looked at every 256 items).
    fn out_of_time(&self, i: usize) -> bool {
        i.is_multiple_of(256) && self.deadline.is_some_and(|d| std::time::Instant::now() > d)
    }

    /// Completed timelines that pass the filter, counted into their connections.
    fn completed(&mut self, mut tls: Vec<Timeline>) -> Vec<Timeline> {
        tls.retain(|tl| !tl.hops.is_empty() && self.filter.timeline(tl, &self.names));
        for (i, tl) in tls.iter().enumerate() {
            if self.out_of_time(i) {
                // Stopping under a flood: the rest is counted, not printed.
                self.stats.unreported += (tls.len() - i) as u64;
                tls.truncate(i);
                break;
            }
            self.conns.add(tl);
        }
        tls
    }

    fn emit(
        &mut self,
        tls: Vec<Timeline>,
        notes: Vec<crate::correlate::Note>,
    ) -> std::io::Result<()> {
        for n in notes {
            if !self.filter.tuple(&n.tuple) {
                continue;
            }
            self.stats.notes += 1;
            self.sink.note(&n, &self.names)?;
        }
        let mut late = false;
        for (i, tl) in tls.into_iter().enumerate() {
            late = late || self.out_of_time(i);
            if late {
                self.stats.unreported += 1;
                continue;
            }
            self.stats.packets += 1;
            match tl.verdict {
                Verdict::Dropped => self.stats.dropped += 1,
                // Still on its way when the trace stopped: not a vanished packet.
                Verdict::Unknown if tl.incomplete => self.stats.in_flight += 1,
                Verdict::Unknown => self.stats.unknown += 1,
                Verdict::Unclaimed => self.stats.unclaimed += 1,
                Verdict::Delivered | Verdict::Forwarded => {}
            }
            if tl.after.is_some() {
                self.stats.after_delivery += 1;
            }
            self.sink.timeline(&tl, &self.names)?;
        }
        self.stats.after_delivery += self.corr.take_late_after();
        self.sink.flush()
    }

    fn emit_connections(&mut self, conns: Vec<Connection>) -> std::io::Result<()> {
        self.stats.evicted = self.conns.evicted();
        if conns.is_empty() {
            return Ok(());
        }
        let mut late = false;
        for (i, c) in conns.into_iter().enumerate() {
            late = late || self.out_of_time(i);
            if late {
                self.stats.unreported += 1;
                continue;
            }
            self.stats.connections += 1;
            if c.outcome != connections::Outcome::Ok {
                self.stats.connections_failed += 1;
            }
            self.sink.connection(&c, &self.names)?;
        }
        self.sink.flush()
    }

    /// Everything still open, the stats line; `lost` as the kernel counted.
    /// With `budget`, what is not printed within it is counted as
    /// `unreported` instead (stopping a tracer under a flood).
    pub fn finish(
        mut self,
        lost: u64,
        now: u64,
        budget: Option<std::time::Duration>,
    ) -> std::io::Result<Stats> {
        self.deadline = budget.map(|b| std::time::Instant::now() + b);
        self.lost(lost, now);
        let tls = self.corr.flush();
        let tls = self.completed(tls);
        let notes = self.corr.take_notes();
        self.emit(tls, notes)?;
        let conns = {
            let mut counts = counts(
                &mut self.counts,
                &mut self.recorded_counts,
                &mut self.recorder,
            );
            self.conns.flush(&mut counts)
        };
        self.emit_connections(conns)?;
        self.sink.stats(&self.stats)?;
        self.sink.flush()?;
        if let Some(r) = self.recorder.take() {
            r.end(&End {
                events: self.stats.events,
                lost,
                sampled: self.stats.sampled,
            })?;
        }
        Ok(self.stats)
    }
}

/// The counts of only-counted packets of a connection's tuple: from the
/// kernel (and recorded, for the replay) or from the recording.
fn counts<'a>(
    source: &'a mut Option<Box<dyn CountSource + Send>>,
    recorded: &'a mut HashMap<Tuple, Counted>,
    recorder: &'a mut Option<Writer>,
) -> impl FnMut(&Tuple) -> Option<Counted> + 'a {
    move |t: &Tuple| {
        let k = match source {
            Some(src) => src.take(t),
            None => recorded.remove(t),
        }?;
        if let Some(r) = recorder.as_mut() {
            if let Err(e) = r.counted(&CountedRecord::new(t, k)) {
                log::warn!("recording: {e}");
            }
        }
        Some(k)
    }
}

/// A location in netfilter's code (the hook loop, nftables, x_tables,
/// conntrack, NAT): where a hook's verdict frees a packet.
fn in_netfilter(location: &str) -> bool {
    [
        "nf_",
        "nft_",
        "ipt_",
        "ip6t_",
        "ebt_",
        "xt_",
        "ipv4_conntrack",
        "ipv6_conntrack",
    ]
    .iter()
    .any(|p| location.starts_with(p))
}

/// A location that names a kernel function (`sym+0xoff`), not a bare
/// address (no symbols readable, or a recording without them).
fn is_symbol(location: &str) -> bool {
    !location.is_empty() && !location.starts_with("0x")
}
