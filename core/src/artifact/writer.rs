//! The deterministic tar writer.
//!
//! One header dialect (GNU, with GNU long-name records for paths over 100 bytes), uid/gid 0
//! with empty owner names, every mtime = SOURCE_DATE_EPOCH, modes as planned. The bytes go
//! through [`HashingSink`], which hashes and writes them on a second thread while this one
//! reads the next file, so neither the hash nor the disk write sits on the critical path.

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::{
    io::{self, Read, Write},
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
/// Buffers in flight between the writing thread and the hashing thread: bounds memory to
/// (DEPTH + 1) MiB whatever the artifact size.
const DEPTH: usize = 4;

/// A `Write` that collects 1 MiB buffers, writes each to the inner writer on the caller's
/// thread and hands it to a second thread that computes the SHA-256 of everything written.
/// Writing (kernel time) and hashing (CPU time) then proceed in parallel.
#[derive(Debug)]
pub struct HashingSink<W: Write> {
    out: W,
    n: u64,
    buf: Box<[u8]>,
    len: usize,
    tx: Option<mpsc::SyncSender<(Box<[u8]>, usize)>>,
    recycle: mpsc::Receiver<Box<[u8]>>,
    hasher: Option<thread::JoinHandle<Digest>>,
}

fn new_buf() -> Box<[u8]> {
    vec![0u8; BUF].into_boxed_slice()
}

impl<W: Write> HashingSink<W> {
    pub fn new(out: W) -> Self {
        let (tx, rx) = mpsc::sync_channel::<(Box<[u8]>, usize)>(DEPTH);
        let (back_tx, recycle) = mpsc::channel::<Box<[u8]>>();
        let hasher = thread::spawn(move || {
            let mut h = Sha256::new();
            for (buf, len) in rx {
                h.update(&buf[..len]);
                let _ = back_tx.send(buf);
            }
            Digest::from_bytes(h.finalize().into())
        });
        HashingSink {
            out,
            n: 0,
            buf: new_buf(),
            len: 0,
            tx: Some(tx),
            recycle,
            hasher: Some(hasher),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.out.write_all(&self.buf[..self.len])?;
        self.n += self.len as u64;
        let next = self.recycle.try_recv().unwrap_or_else(|_| new_buf());
        let full = std::mem::replace(&mut self.buf, next);
        let len = std::mem::take(&mut self.len);
        match &self.tx {
            Some(tx) if tx.send((full, len)).is_ok() => Ok(()),
            _ => Err(io::Error::other("the hashing thread stopped")),
        }
    }

    /// Copies exactly `n` bytes from `r` straight into the outgoing buffers (no intermediate
    /// copy). Fails with `UnexpectedEof` if `r` ends early.
    pub fn copy_exact(&mut self, r: &mut impl Read, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.len == BUF {
                self.send()?;
            }
            let room = (BUF - self.len).min(usize::try_from(n).unwrap_or(usize::MAX));
            let got = match r.read(&mut self.buf[self.len..self.len + room]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.len += got;
            n -= got as u64;
        }
        Ok(())
    }

    /// Flushes, waits for the hasher, and returns the SHA-256 and length of all bytes written.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.send()?;
        self.out.flush()?;
        drop(self.tx.take());
        let digest = self
            .hasher
            .take()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .ok_or_else(|| io::Error::other("finished twice"))?;
        Ok((digest, self.n))
    }
}

impl<W: Write> Write for HashingSink<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.len == BUF {
            self.send()?;
        }
        let n = data.len().min(BUF - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
