//! uring-probe: a minimal L4 TCP forwarder on io_uring, to measure the I/O
//! model against shoal's epoll (tokio) data path. Not a load balancer: one
//! backend, no health checks, no fleet, no metrics.
//!
//! Layout: one thread per `--threads`, each with its own ring and its own
//! `SO_REUSEPORT` listening socket (the kernel spreads connections, as in
//! shoal's thread-per-core data plane), so nothing is shared between threads.
//!
//! Per thread:
//! - one multishot accept on the listener (re-armed if the kernel ends it);
//! - per accepted client: `socket(2)` for the backend, then a `Connect` SQE;
//! - per direction: a `Recv` with `BUFFER_SELECT` from the thread's provided
//!   buffer ring, so the kernel picks a buffer only when bytes arrive (an
//!   idle connection holds no buffer), then `Send` of those bytes (resubmitted
//!   on a short send), then the buffer goes back to the ring and the next
//!   `Recv` is submitted (or, with `--recv multishot`, one multishot `Recv`
//!   per direction for the connection's life, buffers queued behind the send
//!   in flight);
//! - EOF on one side: shutdown(2) `SHUT_WR` of the other side (half-close;
//!   a plain system call by default, see `--shutdown`),
//!   unless the other direction has ended already, in which case both sockets
//!   are just closed (as shoal's decision 8);
//! - an error on either side: `SHUT_RDWR` of both sockets, which
//!   completes any operation still in flight, then close both;
//! - close is a `Close` SQE: nothing to deregister (no epoll set).
//!
//! A connection slot is freed only when none of its operations is in flight,
//! so a completion never refers to a reused slot.

use clap::Parser;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::net::SocketAddrV4;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

/// Bytes of one provided buffer (shoal's copy buffer is 16 KiB too).
const BUFFER_BYTES: usize = 16 * 1024;
/// Submission queue entries per ring (the completion queue is 4 times that).
const RING_ENTRIES: u32 = 1024;
/// Buffer group id of the thread's provided buffer ring.
const BUFFER_GROUP: u16 = 0;

#[derive(Parser, Debug)]
#[command(about = "Minimal io_uring L4 TCP forwarder (an experiment; loopback only)")]
struct Args {
    /// Address to listen on (must be on 127.0.0.0/8).
    #[arg(long)]
    listen: SocketAddrV4,
    /// Backend to forward every connection to (must be on 127.0.0.0/8).
    #[arg(long)]
    backend: SocketAddrV4,
    /// Data threads, each with its own ring and listener.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Proxied connections per thread at most; beyond it a new client is closed.
    #[arg(long, default_value_t = 16384)]
    connections_max: usize,
    /// Provided buffers per thread (a power of two, at most 32768), each 16 KiB.
    #[arg(long, default_value_t = 512)]
    buffers: u16,
    /// How to pass a FIN on: `syscall` calls shutdown(2) at once; `sqe` submits
    /// IORING_OP_SHUTDOWN, which the kernel always runs on an io-wq worker
    /// thread (REQ_F_FORCE_ASYNC), a wake-up and a thread hop per FIN.
    #[arg(long, value_enum, default_value_t = Shutdown::Syscall)]
    shutdown: Shutdown,
    /// `single`: one `Recv` per read, resubmitted after each send; `multishot`:
    /// one multishot `Recv` per direction for the connection's life, filled
    /// buffers queued while a send is in flight. Multishot has no
    /// per-connection backpressure: a slow sink lets its source take buffers
    /// from the thread's ring until `ENOBUFS` (bounded by `--buffers`).
    #[arg(long, value_enum, default_value_t = RecvMode::Single)]
    recv: RecvMode,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RecvMode {
    Single,
    Multishot,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    Syscall,
    Sqe,
}

// Operation kinds, in the low byte of a completion's user data; the
// connection slot is in the bits above.
const OP_ACCEPT: u64 = 0;
const OP_CONNECT: u64 = 1;
const OP_RECV: u64 = 2; // + direction (0 or 1)
const OP_SEND: u64 = 4; // + direction
const OP_SHUTDOWN: u64 = 6;
const OP_CLOSE: u64 = 7; // no slot: fire and forget

fn user_data(slot: usize, op: u64) -> u64 {
    ((slot as u64) << 8) | op
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Waiting in a `Recv` (or for a buffer, if the ring ran dry).
    Receiving,
    /// Sending `len - off` more bytes of buffer `bid`.
    Sending { bid: u16, off: u32, len: u32 },
    /// The source sent FIN.
    Ended,
}

#[derive(Debug)]
struct Conn {
    client: RawFd,
    backend: RawFd,
    /// Direction 0: client to backend; 1: backend to client.
    dirs: [Dir; 2],
    /// Operations submitted and not yet completed.
    inflight: u32,
    failed: bool,
    /// Bumped at every reuse of the slot, for the buffer wait list.
    generation: u32,
    /// Multishot mode, per direction: filled buffers (bid, len) waiting for
    /// the send in flight; whether the multishot `Recv` is armed; whether
    /// the source's FIN has arrived (passed on once the queue is empty).
    queued: [std::collections::VecDeque<(u16, u32)>; 2],
    armed: [bool; 2],
    eof: [bool; 2],
}

impl Conn {
    fn source(&self, dir: usize) -> RawFd {
        if dir == 0 { self.client } else { self.backend }
    }
    fn sink(&self, dir: usize) -> RawFd {
        if dir == 0 { self.backend } else { self.client }
    }
}

/// The thread's provided buffer ring: `count` buffers of `BUFFER_BYTES`, the
/// kernel takes one per `Recv` that finds bytes, we give it back after the send.
struct BufRing {
    entries: *mut types::BufRingEntry,
    buffers: *mut u8,
    count: u16,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16) -> std::io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 32768, "--buffers must be a power of two <= 32768");
        let ring_bytes = count as usize * std::mem::size_of::<types::BufRingEntry>();
        let buf_bytes = count as usize * BUFFER_BYTES;
        // SAFETY: anonymous private mappings, page aligned as the kernel wants;
        // never unmapped (they live as long as the thread's ring).
        let (entries, buffers) = unsafe {
            let map = |len| {
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE,
                           libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
            };
            let e = map(ring_bytes);
            let b = map(buf_bytes);
            if e == libc::MAP_FAILED || b == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            (e as *mut types::BufRingEntry, b as *mut u8)
        };
        let mut br = BufRing { entries, buffers, count, tail: 0 };
        for bid in 0..count {
            br.stage(bid);
        }
        br.publish();
        // SAFETY: the entries stay mapped for the ring's life.
        unsafe { ring.submitter().register_buf_ring_with_flags(entries as u64, count, BUFFER_GROUP, 0)? };
        Ok(br)
    }

    fn ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < count, inside the mapping.
        unsafe { self.buffers.add(bid as usize * BUFFER_BYTES) }
    }

    fn stage(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        // SAFETY: idx < count; the kernel does not read entries past the tail.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(self.ptr(bid) as u64);
        e.set_len(BUFFER_BYTES as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field; the kernel
        // reads it with acquire ordering.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn give_back(&mut self, bid: u16) {
        self.stage(bid);
        self.publish();
    }
}

struct Worker {
    ring: IoUring,
    bufs: BufRing,
    listener: RawFd,
    backend: libc::sockaddr_in,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    shutdown: Shutdown,
    recv_mode: RecvMode,
    /// (slot, generation, direction) waiting for a buffer (`ENOBUFS`).
    waiting: std::collections::VecDeque<(usize, u32, usize)>,
}

impl Worker {
    fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every buffer and address an entry points to outlives its
            // completion (the buffer ring, the worker's `backend` address).
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            self.ring.submit().expect("io_uring_enter");
        }
    }

    fn arm_accept(&mut self) {
        let e = opcode::AcceptMulti::new(types::Fd(self.listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(0, OP_ACCEPT));
        self.push(e);
    }

    fn submit(&mut self, slot: usize, e: squeue::Entry) {
        self.conns[slot].as_mut().unwrap().inflight += 1;
        self.push(e);
    }

    fn recv(&mut self, slot: usize, dir: usize) {
        let multishot = self.recv_mode == RecvMode::Multishot;
        let c = self.conns[slot].as_mut().unwrap();
        let fd = c.source(dir);
        let e = if multishot {
            // A send may be in flight: the direction's state stays as it is.
            c.armed[dir] = true;
            opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP).build()
        } else {
            c.dirs[dir] = Dir::Receiving;
            opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), BUFFER_BYTES as u32)
                .buf_group(BUFFER_GROUP)
                .build()
        };
        let e = e.flags(squeue::Flags::BUFFER_SELECT).user_data(user_data(slot, OP_RECV + dir as u64));
        self.submit(slot, e);
    }

    /// The source of `dir` sent FIN and everything before it has been sent on.
    fn end_dir(&mut self, slot: usize, dir: usize) {
        let c = self.conns[slot].as_mut().unwrap();
        c.dirs[dir] = Dir::Ended;
        if c.dirs[1 - dir] != Dir::Ended {
            // Half-close: pass the FIN on, keep the other way flowing.
            let sink = c.sink(dir);
            self.shutdown(slot, sink, libc::SHUT_WR);
        }
    }

    fn send(&mut self, slot: usize, dir: usize) {
        let c = self.conns[slot].as_ref().unwrap();
        let Dir::Sending { bid, off, len } = c.dirs[dir] else { unreachable!() };
        let fd = c.sink(dir);
        // SAFETY: off < len <= BUFFER_BYTES.
        let ptr = unsafe { self.bufs.ptr(bid).add(off as usize) };
        let e = opcode::Send::new(types::Fd(fd), ptr, len - off)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(slot, OP_SEND + dir as u64));
        self.submit(slot, e);
    }

    fn close_fd(&mut self, fd: RawFd) {
        let e = opcode::Close::new(types::Fd(fd)).build().user_data(user_data(0, OP_CLOSE));
        self.push(e);
    }

    fn give_back(&mut self, bid: u16) {
        self.bufs.give_back(bid);
        while let Some((slot, generation, dir)) = self.waiting.pop_front() {
            let live = self.conns[slot].as_ref().is_some_and(|c| c.generation == generation && !c.failed);
            if live {
                self.recv(slot, dir);
                return;
            }
        }
    }

    /// An error on either side: end both directions at once.
    fn fail(&mut self, slot: usize) {
        let c = self.conns[slot].as_mut().unwrap();
        if c.failed {
            return;
        }
        c.failed = true;
        let (client, backend) = (c.client, c.backend);
        for fd in [client, backend] {
            self.shutdown(slot, fd, libc::SHUT_RDWR);
        }
    }

    /// shutdown(2) of one socket of `slot`: at once, or as an SQE (see `Shutdown`).
    fn shutdown(&mut self, slot: usize, fd: RawFd, how: i32) {
        match self.shutdown {
            Shutdown::Syscall => {
                // SAFETY: a socket of a live connection; errors (ENOTCONN) are moot.
                unsafe { libc::shutdown(fd, how) };
            }
            Shutdown::Sqe => {
                let e = opcode::Shutdown::new(types::Fd(fd), how).build().user_data(user_data(slot, OP_SHUTDOWN));
                self.submit(slot, e);
            }
        }
    }

    /// Frees the slot and closes both sockets once the connection is over
    /// and nothing of it is in flight.
    fn maybe_finish(&mut self, slot: usize) {
        let c = self.conns[slot].as_ref().unwrap();
        let over = c.failed || (c.dirs[0] == Dir::Ended && c.dirs[1] == Dir::Ended);
        if !over || c.inflight > 0 {
            return;
        }
        let c = self.conns[slot].take().unwrap();
        for d in c.dirs {
            if let Dir::Sending { bid, .. } = d {
                self.give_back(bid);
            }
        }
        for &(bid, _) in c.queued.iter().flatten() {
            self.give_back(bid);
        }
        self.close_fd(c.client);
        self.close_fd(c.backend);
        self.free.push(slot);
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.arm_accept();
        }
        if res < 0 {
            return;
        }
        let client = res;
        let Some(slot) = self.free.pop() else {
            self.close_fd(client);
            return;
        };
        // SAFETY: plain socket calls on descriptors this thread owns.
        let backend = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if backend < 0 {
            self.free.push(slot);
            self.close_fd(client);
            return;
        }
        set_nodelay(client);
        set_nodelay(backend);
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.conns[slot] = Some(Conn {
            client,
            backend,
            dirs: [Dir::Receiving; 2],
            inflight: 0,
            failed: false,
            generation: self.generations[slot],
            queued: Default::default(),
            armed: [false; 2],
            eof: [false; 2],
        });
        let e = opcode::Connect::new(
            types::Fd(backend),
            &self.backend as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
        .build()
        .user_data(user_data(slot, OP_CONNECT));
        self.submit(slot, e);
    }

    fn on_conn(&mut self, slot: usize, op: u64, res: i32, flags: u32) {
        let multishot = self.recv_mode == RecvMode::Multishot;
        let is_recv = op == OP_RECV || op == OP_RECV + 1;
        let (failed, generation) = {
            let c = self.conns[slot].as_mut().unwrap();
            // A multishot Recv stays in flight while its completions say "more".
            if !(multishot && is_recv && cqueue::more(flags)) {
                c.inflight -= 1;
                if is_recv {
                    c.armed[(op - OP_RECV) as usize] = false;
                }
            }
            (c.failed, c.generation)
        };
        match op {
            OP_CONNECT => {
                if res < 0 {
                    self.fail(slot);
                } else if !failed {
                    self.recv(slot, 0);
                    self.recv(slot, 1);
                }
            }
            OP_RECV | 3 => {
                let dir = (op - OP_RECV) as usize;
                let bid = cqueue::buffer_select(flags);
                if failed {
                    if let Some(bid) = bid {
                        self.give_back(bid);
                    }
                } else if res == -libc::ENOBUFS {
                    self.waiting.push_back((slot, generation, dir));
                } else if res < 0 {
                    self.fail(slot);
                } else if res == 0 {
                    let c = self.conns[slot].as_mut().unwrap();
                    c.eof[dir] = true;
                    if !matches!(c.dirs[dir], Dir::Sending { .. }) {
                        self.end_dir(slot, dir);
                    }
                } else {
                    let bid = bid.expect("a Recv with BUFFER_SELECT that read bytes names its buffer");
                    let c = self.conns[slot].as_mut().unwrap();
                    if matches!(c.dirs[dir], Dir::Sending { .. }) {
                        c.queued[dir].push_back((bid, res as u32));
                    } else {
                        c.dirs[dir] = Dir::Sending { bid, off: 0, len: res as u32 };
                        self.send(slot, dir);
                    }
                    // The kernel may end a multishot Recv (e.g. CQ overflow): re-arm.
                    let c = self.conns[slot].as_ref().unwrap();
                    if multishot && !c.armed[dir] && !c.eof[dir] {
                        self.recv(slot, dir);
                    }
                }
            }
            OP_SEND | 5 => {
                let dir = (op - OP_SEND) as usize;
                let c = self.conns[slot].as_mut().unwrap();
                let Dir::Sending { bid, off, len } = c.dirs[dir] else { unreachable!() };
                if res < 0 || failed {
                    c.dirs[dir] = Dir::Receiving;
                    self.give_back(bid);
                    self.fail(slot);
                } else if off + (res as u32) < len {
                    c.dirs[dir] = Dir::Sending { bid, off: off + res as u32, len };
                    self.send(slot, dir);
                } else if multishot {
                    c.dirs[dir] = Dir::Receiving;
                    if let Some((next, n)) = c.queued[dir].pop_front() {
                        c.dirs[dir] = Dir::Sending { bid: next, off: 0, len: n };
                        self.give_back(bid);
                        self.send(slot, dir);
                    } else {
                        let eof = c.eof[dir];
                        self.give_back(bid);
                        if eof {
                            self.end_dir(slot, dir);
                        }
                    }
                } else {
                    c.dirs[dir] = Dir::Receiving;
                    self.give_back(bid);
                    self.recv(slot, dir);
                }
            }
            OP_SHUTDOWN => {}
            _ => unreachable!("op {op}"),
        }
        self.maybe_finish(slot);
    }

    fn run(&mut self) -> ! {
        self.arm_accept();
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(4 * RING_ENTRIES as usize);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => panic!("io_uring_enter: {e}"),
            }
            done.clear();
            done.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
            for &(ud, res, flags) in &done {
                let (slot, op) = ((ud >> 8) as usize, ud & 0xff);
                match op {
                    OP_ACCEPT => self.on_accept(res, flags),
                    OP_CLOSE => {}
                    _ => self.on_conn(slot, op, res, flags),
                }
            }
        }
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int.
    unsafe {
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const libc::c_void,
                         std::mem::size_of::<libc::c_int>() as libc::socklen_t);
    }
}

fn listener(addr: SocketAddrV4) -> std::io::Result<RawFd> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&std::net::SocketAddr::V4(addr).into())?;
    s.listen(4096)?;
    Ok(s.into_raw_fd())
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

fn main() {
    let args = Args::parse();
    for a in [args.listen, args.backend] {
        if !a.ip().is_loopback() {
            eprintln!("uring-probe: {a} is not on 127.0.0.0/8; this experiment stays on loopback");
            std::process::exit(2);
        }
    }
    // SAFETY: ignoring SIGPIPE (sends also pass MSG_NOSIGNAL).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let threads = args.threads.clamp(1, 64);
    let mut handles = Vec::new();
    for t in 0..threads {
        let listen_fd = listener(args.listen).unwrap_or_else(|e| {
            eprintln!("uring-probe: bind {}: {e}", args.listen);
            std::process::exit(1)
        });
        let backend = sockaddr(args.backend);
        let (conns_max, buffers, shutdown, recv_mode) = (args.connections_max, args.buffers, args.shutdown, args.recv);
        handles.push(std::thread::Builder::new().name(format!("uring-{t}")).spawn(move || {
            let ring = IoUring::builder()
                .setup_cqsize(4 * RING_ENTRIES)
                .setup_single_issuer()
                .setup_coop_taskrun()
                // Completions' task work runs only when this thread enters the
                // ring to wait, not as interrupts in the middle of its work.
                .setup_defer_taskrun()
                .build(RING_ENTRIES)
                .expect("io_uring_setup (is io_uring disabled or blocked by seccomp?)");
            let bufs = BufRing::new(&ring, buffers).expect("provided buffer ring");
            let mut w = Worker {
                ring,
                bufs,
                listener: listen_fd,
                backend,
                conns: (0..conns_max).map(|_| None).collect(),
                free: (0..conns_max).rev().collect(),
                generations: vec![0; conns_max],
                shutdown,
                recv_mode,
                waiting: Default::default(),
            };
            w.run()
        }).expect("spawn"));
    }
    eprintln!("uring-probe: {} -> {} on {threads} threads", args.listen, args.backend);
    for h in handles {
        let _ = h.join();
    }
}
