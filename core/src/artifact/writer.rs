//! The deterministic tar writer.
//!
//! One header dialect (GNU, with GNU long-name records for paths over 100 bytes), uid/gid 0
//! with empty owner names, every mtime = SOURCE_DATE_EPOCH, modes as planned. The bytes go
//! through [`HashingSink`], which hashes and writes them on a second thread while this one
//! reads the next file, so neither the hash nor the disk write sits on the critical path.

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::{
    io::{self, Write},
    sync::mpsc,
    thread,
};
use tar::{EntryType, Header};

/// A header for one entry; callers set the path through `tar::Builder`.
pub fn header(entry_type: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

const BUF: usize = 1 << 20;
/// Buffers in flight between the tar thread and the hashing thread: bounds memory to
/// (DEPTH + 1) MiB whatever the artifact size.
const DEPTH: usize = 4;

/// A `Write` that hands 1 MiB buffers to a thread which hashes them (SHA-256) and writes
/// them to the inner writer.
#[derive(Debug)]
pub struct HashingSink {
    buf: Vec<u8>,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    recycle: mpsc::Receiver<Vec<u8>>,
    worker: Option<thread::JoinHandle<io::Result<(Digest, u64)>>>,
}

impl HashingSink {
    pub fn new<W: Write + Send + 'static>(mut out: W) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
        let (back_tx, recycle) = mpsc::channel::<Vec<u8>>();
        let worker = thread::spawn(move || {
            let mut h = Sha256::new();
            let mut n = 0u64;
            for mut buf in rx {
                h.update(&buf);
                out.write_all(&buf)?;
                n += buf.len() as u64;
                buf.clear();
                let _ = back_tx.send(buf);
            }
            out.flush()?;
            Ok((Digest::from_bytes(h.finalize().into()), n))
        });
        HashingSink {
            buf: Vec::with_capacity(BUF),
            tx: Some(tx),
            recycle,
            worker: Some(worker),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .recycle
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUF));
        let full = std::mem::replace(&mut self.buf, next);
        let sent = self.tx.as_ref().map(|tx| tx.send(full).is_ok());
        if sent == Some(true) {
            Ok(())
        } else {
            // The worker stopped: its write error is reported by `finish`.
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "output writer stopped",
            ))
        }
    }

    /// Flushes, waits for the worker, and returns the SHA-256 and length of all bytes written.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        let sent = self.send();
        drop(self.tx.take());
        let res = self
            .worker
            .take()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .unwrap_or_else(|| Err(io::Error::other("finished twice")));
        let res = res?;
        sent?;
        Ok(res)
    }
}

impl Write for HashingSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BUF - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BUF {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
