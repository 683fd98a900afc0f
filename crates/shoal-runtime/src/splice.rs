//! Zero-copy forwarding with Linux `splice(2)`: socket → pipe → socket.
//!
//! The bytes stay in the kernel: `splice` moves page references from the
//! source socket into a pipe and from the pipe into the destination socket,
//! where a user-space copy loop would copy every byte in and out of a
//! buffer. HAProxy does the same (`option splice-auto`).
//!
//! A pipe costs two file descriptors and three system calls to make and
//! close, so [`crate::proxy`] only turns to it inside a burst that has
//! already filled [`SPLICE_AFTER_FULL_READS`] buffers, and gives it back as
//! soon as the source has nothing more: small requests and idle
//! connections never hold one.

use nix::fcntl::{SpliceFFlags, splice};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Full buffers read in one burst before the burst turns to `splice`.
pub const SPLICE_AFTER_FULL_READS: u32 = 4;

/// Bytes asked of one `splice` call: the default pipe capacity (16 pages).
const PIPE_BYTES: usize = 64 * 1024;

/// A pipe and the bytes sitting in it.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    held: usize,
}

/// How a splice burst ended.
#[derive(Debug)]
pub enum Burst {
    /// The source has nothing more for now; the pipe is empty and dropped.
    Drained,
    /// The source sent FIN; every byte before it was forwarded.
    Fin,
}

/// Which side failed.
#[derive(Debug)]
pub enum Failed {
    Read(io::Error),
    Write(io::Error),
}

impl Pipe {
    /// A non-blocking pipe, or `None` (out of descriptors, say): the caller
    /// keeps copying through its buffer then.
    pub fn new() -> Option<Pipe> {
        let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC;
        let (read, write) = nix::unistd::pipe2(flags).ok()?;
        Some(Pipe {
            read,
            write,
            held: 0,
        })
    }

    /// Forwards from `from` to `to` through the pipe until `from` has
    /// nothing more (or FIN), calling `moved` for every chunk written.
    pub async fn burst(
        mut self,
        from: &TcpStream,
        to: &TcpStream,
        mut moved: impl FnMut(usize),
    ) -> Result<Burst, Failed> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            // Like every other I/O, yield when the task's budget is spent,
            // so a long stream does not starve this thread's other
            // connections.
            tokio::task::consume_budget().await;
            // Fill: socket → pipe. Only when the pipe is empty, so a chunk
            // is always written out before the next is read.
            let filled = from.try_io(Interest::READABLE, || {
                splice(
                    from.as_fd(),
                    None,
                    self.write.as_fd(),
                    None,
                    PIPE_BYTES,
                    flags,
                )
                .map_err(io::Error::from)
            });
            match filled {
                Ok(0) => return Ok(Burst::Fin),
                Ok(n) => self.held = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
                Err(e) => return Err(Failed::Read(e)),
            }
            // Drain: pipe → socket, waiting for room as needed.
            while self.held > 0 {
                let sent = to.try_io(Interest::WRITABLE, || {
                    splice(self.read.as_fd(), None, to.as_fd(), None, self.held, flags)
                        .map_err(io::Error::from)
                });
                match sent {
                    Ok(n) => {
                        self.held -= n;
                        moved(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        to.writable().await.map_err(Failed::Write)?;
                    }
                    Err(e) => return Err(Failed::Write(e)),
                }
            }
        }
    }
}
